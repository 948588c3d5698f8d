// PostgresTarget: the Target (sql/target.h) for a PostgreSQL database, named
// by a postgresql:// (or postgres://) URL, through libpq.
//
//  - A batch is one server transaction on one connection (READ COMMITTED).
//  - The pipeline lock is a session-level advisory lock keyed by the
//    pipeline (its consumer group): exclusive for `assignment = all` and the
//    commands that need the pipeline to themselves, shared for group
//    members. The server drops it when the session ends, so a killed
//    process never leaves a stale lock.
//  - Offsets are stored in the batch transaction; StoredOffsets() first
//    takes a transaction-level advisory lock per partition (and reads the
//    rows FOR UPDATE), so two workers committing the same partition
//    serialize and the second sees the first's offsets: the engine's
//    compare-and-set then rolls it back as a conflict.
//  - Staging is a TEMPORARY table (_sluice_staging, with a TEMPORARY view
//    `batch`): private to the session, so several workers on one database
//    never see each other's batch, and never WAL-logged. Rows are buffered
//    in COPY text format and sent with one COPY per batch before anything
//    else of the batch runs.
//  - Step files are sent as they are (one simple query: several statements
//    run in the open transaction); transaction control is refused before
//    anything is sent; errors name the file and line.
//  - The catalog tables have the names and columns of SQLite's
//    (sql/sqlite/catalog.h), in PostgreSQL types, so the commands read them
//    the same way. _sluice_quarantine has three more columns: quarantine_id
//    (its order, what SQLite's rowid is) and key_bytes / value_bytes (a key or
//    value that is not UTF-8 text, kept as bytea; key / value are then NULL).
//
// libpq is private to sluice_sql: this header does not include it.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sql/target.h"

struct pg_conn;
struct pg_result;

namespace sluice {

class PostgresTarget : public Target {
 public:
  static Result<std::unique_ptr<PostgresTarget>> Open(const TargetOptions& options);
  ~PostgresTarget() override;
  PostgresTarget(const PostgresTarget&) = delete;
  PostgresTarget& operator=(const PostgresTarget&) = delete;

  // "libpq 15.18"
  static std::string LibraryVersion();
  // `url` without its password (user:PASSWORD@ and password= / sslpassword=
  // parameters): what messages may show.
  static std::string RedactUrl(const std::string& url);

  std::string Describe() const override { return described_; }

  Status Prepare(const std::optional<SqlFile>& schema, const std::vector<ColumnSpec>& columns,
                 std::chrono::milliseconds retention) override;
  bool migrated() const override { return false; }
  Status CheckSteps(const std::vector<SqlFile>& steps, const std::vector<SqlFile>& checks,
                    const std::vector<SeedFile>& seeds) override;
  Status CheckSeed(const SeedFile& seed) override;

  Status BeginBatch() override;
  Status CommitBatch() override;
  void RollbackBatch() override;
  Result<int64_t> BeginRun(const std::string& started_at) override;
  Status LoadChangedSeeds(const std::vector<SeedFile>& seeds, std::vector<std::string>* loaded) override;
  Status ClearStaging() override;
  Status Stage(const Message& message, const DecodedRow& row, int64_t run_id, StageCounts* counts) override;
  Status ClearPassedQuarantine(const std::vector<PartitionRange>& ranges, int64_t run_id) override;
  Status RunStep(const SqlFile& step) override;
  Result<CheckOutcome> RunCheck(const SqlFile& check) override;
  Status RecordCheck(const std::string& check, const std::string& severity, int64_t rows, const std::string& sample,
                     int64_t run_id) override;
  Result<OffsetMap> StoredOffsets(const std::vector<TopicPartition>& partitions) override;
  Status StoreOffsets(const OffsetMap& next, int64_t run_id, const LastReadMap* last_read) override;
  Result<int64_t> FinishRun(const RunRecord& run) override;
  Status RecordCommitTime(int64_t run_id, double commit_ms) override;

  Result<OffsetMap> AllStoredOffsets() override;
  Result<LastReadMap> LastRead() override;
  Result<std::vector<std::string>> OtherPipelines(const std::vector<std::string>& topics) override;

  void SetInterruptCheck(std::function<bool()> check) override { interrupt_ = std::move(check); }
  bool usable() const override;
  void AfterCommit() override {}
  void BeforeIdle() override {}

  Result<TargetReport> Report(int recent_runs) override;
  Result<QuarantineSnapshot> TakeQuarantine() override;
  Status ForgetReplayed(int64_t through) override;
  Result<bool> HasTable(const std::string& name) override;
  Result<ResetOutcome> Reset(const ResetPlan& plan) override;
  Result<CompactOutcome> Compact(std::chrono::milliseconds retention) override;
  Result<std::optional<InputRecord>> FindInput(const std::string& input, int64_t next_offset) override;
  Status SaveInput(const std::string& input, const InputRecord& record) override;
  Status ForgetInput(const std::string& input) override;
  Result<std::vector<std::string>> FileInputs(const std::vector<std::string>& topics) override;
  Result<QueryResult> Query(const std::string& sql) override;

 private:
  // The rows of a statement; nullopt parameters are NULL.
  class Rows;
  using Params = std::vector<std::optional<std::string>>;

  PostgresTarget(pg_conn* conn, TargetOptions options, std::string described);

  // --- Statements --------------------------------------------------------
  // Runs `sql` (one statement; parameters $1...), returning its rows.
  Result<Rows> Run(const std::string& sql, const Params& params = {});
  // Run() outside a batch, on a session connected again first when the
  // server ended the old one (the stored offsets a rebalance looks up while
  // the server restarts). In a batch, Run().
  Result<Rows> RunBetweenBatches(const std::string& sql, const Params& params = {});
  // Runs one or more statements without parameters, discarding rows.
  Status Exec(const std::string& sql);
  // The Status for a failed statement's result (nullptr: the connection's
  // own error): RetryBatch when the transaction is gone for a reason the
  // next attempt does not share (the connection lost or the session ended,
  // a serialization failure, a deadlock), Unavailable when it is worth
  // waiting for (a lock timeout, the server starting or out of resources),
  // SqlError otherwise. `context` prefixes the message.
  Status Failure(const pg_result* result, const std::string& context = {}) const;
  // COPY `copy_sql` ... FROM STDIN with `data` (COPY text format).
  Status CopyIn(const std::string& copy_sql, const std::string& data);

  // --- Pieces ------------------------------------------------------------
  // `text` with the URL's password replaced by ***.
  std::string Scrub(std::string text) const;
  Status ConfigureSession();  // lock_timeout, read-only access
  Status TakeLock();
  Status Install();  // the catalog tables, in the open transaction
  Status EnsureInstalled();  // Install() in a transaction of its own when missing
  Status CreateStaging();
  Status Flush();  // the buffered staging and quarantine rows
  void DiscardBuffers();
  Status FlushQuarantine();
  Status RunFile(const SqlFile& file);
  Status LoadSeeds(const std::vector<SeedFile>& seeds, std::vector<std::string>* loaded);
  Result<bool> ForgetSeedChecksum(const std::string& table);
  Result<bool> RelationExists(const std::string& name);
  Status DeleteInput(const std::string& input);
  Result<int64_t> FinishRunRow(const RunRecord& run);
  Status StoreOffsetRows(const OffsetMap& next, int64_t run_id, const LastReadMap* last_read);
  // Connects again after the connection was lost, with backoff for up to
  // [target] busy_timeout, and sets the new session up (settings, the
  // pipeline lock, the staging table); Unavailable naming the server when
  // it does not come back.
  Status Reconnect();
  // "DATABASE_OID/OFFSETS_TABLE_OID": which database this is (Prepare keeps
  // it; Reconnect compares).
  Result<std::string> Identity();
  // libpq's last connection error on one line, without the password.
  std::string ConnectionError() const;
  bool Interrupted() const { return interrupt_ && interrupt_(); }

  pg_conn* conn_;
  TargetOptions options_;
  std::string described_;
  std::string secret_;  // the password of the URL, scrubbed from every message
  std::function<bool()> interrupt_;
  bool in_batch_ = false;
  bool session_ready_ = true;  // false from a lost connection until Reconnect() set the new session up
  std::string scratch_schema_;  // TargetOptions::scratch: created by Open, dropped on close

  // The staging table's shape (Prepare), to create it again on a new session.
  std::vector<ColumnSpec> columns_;
  std::vector<std::string> column_names_;  // as created (see StagingName in the .cc)
  std::string copy_sql_;  // COPY _sluice_staging (...) FROM STDIN
  bool prepared_ = false;
  bool installed_ = false;  // the catalog tables are known to exist
  std::string identity_;    // Identity() when prepared
  std::string replaced_;    // why the database is no longer the one prepared (usable() is then false)

  // Rows waiting for the COPY, in COPY text format.
  std::string staging_buffer_;
  struct QuarantineRow {
    Message message;
    std::string error;
    int64_t run_id = 0;
  };
  std::vector<QuarantineRow> quarantine_buffer_;
};

}  // namespace sluice
