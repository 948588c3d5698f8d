// Target: the database a pipeline writes into, as the engine and the commands
// see it. Everything sluice needs of a database goes through this interface:
// the batch transaction (stage decoded rows, run the step files, load seeds,
// store offsets and the run record, commit), the pipeline check before
// anything is consumed, and the reads and writes of `status`, `reset`,
// `quarantine`, `compact` and `sluice test`. sql/sqlite/ implements it for an
// SQLite file; a PostgreSQL implementation fits behind the same calls
// (a batch is one server transaction; offsets are stored in it; Open's lock
// becomes advisory locks or compare-and-set fencing).
//
// Contract for every implementation:
//  - One batch is one transaction: BeginBatch() ... CommitBatch(), or
//    RollbackBatch() leaving no trace of the batch (no staged row, no offset,
//    no run row). Calls marked "in a batch" require an open batch.
//  - A failed call returns a Status whose message names what failed (the
//    step file and line, the table, the database); Unavailable for a
//    condition worth waiting for and retrying (locked, busy); RetryBatch
//    when the database aborted the batch's transaction for a reason the
//    next attempt does not share (serialization failure, deadlock, the
//    connection lost mid-batch): the engine runs the batch again.
//  - Not thread-safe: one thread (the engine's) uses a Target. The interrupt
//    check is the only callback, and it is called on that thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/message.h"
#include "common/status.h"
#include "connectors/decoder.h"
#include "connectors/source.h"
#include "sql/seed_file.h"
#include "sql/sql_file.h"

namespace sluice {

// One partition's range within a batch.
struct PartitionRange {
  TopicPartition partition;
  int64_t first_offset = 0;
  int64_t last_offset = 0;
  int64_t count = 0;
};

// One row of _sluice_runs.
struct RunRecord {
  int64_t run_id = 0;
  std::string started_at;  // ISO-8601 UTC
  std::string status;      // running | ok | failed | reset
  int64_t messages = 0;
  int64_t staged = 0;
  int64_t quarantined = 0;
  std::vector<PartitionRange> ranges;
  std::string error;
  std::string notes;
  // Where the batch's time went. stage_ms includes parse_ms (decoding values
  // into typed cells); commit_ms covers the database and the Kafka commits.
  double fetch_ms = 0, stage_ms = 0, parse_ms = 0, steps_ms = 0, commit_ms = 0;
};

// _sluice_runs.offsets: the run's ranges as a JSON array of {topic,
// partition, first, last, count}, written by RapidJSON (every control
// character a --from-file name may hold is escaped). The same on every target.
std::string RangesJson(const std::vector<PartitionRange>& ranges);

struct StageCounts {
  int64_t staged = 0;
  int64_t quarantined = 0;
  double parse_ms = 0;  // time spent decoding values into typed cells
};

// What a data check found: the rows that break its expectation.
struct CheckOutcome {
  int64_t rows = 0;
  std::vector<std::string> sample;  // the first few rows, "column=value, ..."
};

// The identity of a `run --from-file` input at a position (_sluice_inputs).
struct InputRecord {
  int64_t next_offset = 1;
  int64_t bytes = 0;
  std::string checksum;
};

// What `sluice status` shows of the database.
struct RunSummary {
  int64_t run_id = 0;
  std::string status, started_at, error;
  int64_t messages = 0, staged = 0, quarantined = 0;
  double duration_ms = 0;
};
struct CheckSummary {
  std::string check, severity, sample;
  int64_t rows = 0, run_id = 0;
};
struct QuarantineReason {
  std::string reason;
  int64_t messages = 0;
  std::string where;    // "orders[0] 5..9, orders[3] 12"
  std::string example;  // the start of one value
};
struct TargetReport {
  OffsetMap stored;                          // this pipeline's stored offsets
  std::optional<int64_t> seconds_since_ok;  // since the last successful batch
  std::vector<RunSummary> runs;             // newest first
  std::vector<CheckSummary> checks;         // the latest result of each check
  std::vector<QuarantineReason> quarantine;  // most frequent first
};

// The quarantine as `quarantine replay` takes it.
struct QuarantineSnapshot {
  std::vector<Message> messages;  // those before the stored offsets, in quarantine order
  int64_t through = 0;            // the replay removes rows up to this one
  int64_t ahead = 0;              // messages at or past the stored offsets (the next run reads them)
};

// What `sluice reset` changes, in one transaction.
struct ResetPlan {
  OffsetMap offsets;                   // the new next offsets
  std::vector<std::string> truncate;   // tables emptied first
  std::vector<std::string> forget_inputs;  // --from-file inputs whose positions are forgotten
  RunRecord record;                    // recorded with status "reset"
};
struct ResetOutcome {
  std::vector<std::string> reloaded_seeds;  // truncated seed tables, loaded again by the next batch
};

struct CompactOutcome {
  int64_t pruned_rows = 0;
  int64_t bytes_before = 0, bytes_after = 0;
};

// A value read back by Query(), typed as the database holds it.
struct Value {
  // kDecimal: an exact decimal number (PostgreSQL numeric, what sum(bigint)
  // returns): `text` holds every digit, `real` the nearest double.
  enum class Type { kNull, kInteger, kReal, kDecimal, kText, kBlob };
  Type type = Type::kNull;
  int64_t integer = 0;
  double real = 0;
  std::string text;  // text and blobs; for REAL, as the database renders it
};
struct QueryResult {
  std::vector<std::string> columns;
  std::vector<std::vector<Value>> rows;
};

struct TargetOptions {
  // A file path (":memory:" for a scratch database) for SQLite, or a
  // postgresql:// URL.
  std::string database;
  std::string pipeline;  // the consumer group: keys offsets, quarantine and checks
  int busy_timeout_ms = 10000;
  unsigned file_mode = 0600;  // of a database created now
  enum class Access {
    kCreate,    // open, creating the database if needed
    kExisting,  // fail, saying `sluice run` creates it, when there is none
    kReadOnly,  // an existing database, never written (status, quarantine list)
  };
  Access access = Access::kCreate;
  // The pipeline lock: exclusive for one `assignment = all` process or a
  // command that needs the database to itself, shared for group members.
  enum class Lock { kNone, kShared, kExclusive };
  Lock lock = Lock::kNone;
  std::string lock_hint;  // ends a refusal: what the refused command should do instead
  // A throwaway database for one `sluice test` case, gone when the target
  // closes: SQLite opens ":memory:" whatever `database` names; PostgreSQL
  // creates a fresh schema (sluice_scratch_<pid>_<n>) on the server
  // `database` names, puts it first on the session's search path, and drops
  // it with everything in it on close. A scratch target takes no pipeline
  // lock, so fixtures run beside a live pipeline on the same server.
  bool scratch = false;
};

// True for a database given as a URL ("postgresql://...", "postgres://..."),
// not a file path.
bool IsDatabaseUrl(const std::string& database);

// The database as messages show it: a URL without its password.
std::string DescribeDatabase(const std::string& database);

// "SQLite 3.40.1": the database libraries the targets are built with.
std::string TargetLibraries();

class Target {
 public:
  // Opens the target `options.database` names, taking the lock first. Fails
  // at once (never waits) when the lock is held, naming the holder.
  static Result<std::unique_ptr<Target>> Open(const TargetOptions& options);
  virtual ~Target() = default;

  // "orders.db": for messages.
  virtual std::string Describe() const = 0;

  // --- Set-up, before anything is consumed -------------------------------
  // Installs sluice's tables (migrating older ones), runs schema.sql and
  // creates the staging table for `columns` and the `batch` view. With a
  // non-zero `retention` past batches stay that long. Idempotent.
  virtual Status Prepare(const std::optional<SqlFile>& schema, const std::vector<ColumnSpec>& columns,
                         std::chrono::milliseconds retention) = 0;
  // True when the last Prepare() migrated an offsets table from before
  // offsets were keyed by pipeline.
  virtual bool migrated() const = 0;
  // Runs seeds that changed, every step and every check over an empty batch
  // in a transaction that is rolled back: a syntax error or a missing table
  // fails here, naming the file and line. Requires Prepare().
  virtual Status CheckSteps(const std::vector<SqlFile>& steps, const std::vector<SqlFile>& checks,
                            const std::vector<SeedFile>& seeds) = 0;
  // Loads one seed into a scratch target and reports what is wrong with it
  // (validation reports every broken seed, not the first).
  virtual Status CheckSeed(const SeedFile& seed) = 0;

  // --- The batch -----------------------------------------------------------
  virtual Status BeginBatch() = 0;
  // Commits the batch. Fails without committing when the database is no
  // longer the one opened (deleted or replaced); usable() is then false.
  virtual Status CommitBatch() = 0;
  virtual void RollbackBatch() = 0;
  // In a batch: inserts the run row (status 'running') and returns its id.
  virtual Result<int64_t> BeginRun(const std::string& started_at) = 0;
  // In a batch: loads the seeds whose content changed; `loaded` (optional)
  // receives their tables. A table not loaded from a seed is never replaced.
  virtual Status LoadChangedSeeds(const std::vector<SeedFile>& seeds, std::vector<std::string>* loaded) = 0;
  // In a batch: empties what the next batch must not see in staging.
  virtual Status ClearStaging() = 0;
  // In a batch: stages `message` with the decoded `row`, or quarantines it
  // with row.error.
  virtual Status Stage(const Message& message, const DecodedRow& row, int64_t run_id, StageCounts* counts) = 0;
  // In a batch: drops the quarantine rows of messages this run read again
  // and staged (in `ranges`, not quarantined by `run_id`).
  virtual Status ClearPassedQuarantine(const std::vector<PartitionRange>& ranges, int64_t run_id) = 0;
  // In a batch: runs every statement of a step file. Errors name the file
  // and the line.
  virtual Status RunStep(const SqlFile& step) = 0;
  // In a batch: runs a data check (one read-only query returning the rows
  // that break an expectation).
  virtual Result<CheckOutcome> RunCheck(const SqlFile& check) = 0;
  // In a batch: records the latest result of a check.
  virtual Status RecordCheck(const std::string& check, const std::string& severity, int64_t rows,
                             const std::string& sample, int64_t run_id) = 0;
  // Stored next offsets of this pipeline for `partitions` (absent: none).
  virtual Result<OffsetMap> StoredOffsets(const std::vector<TopicPartition>& partitions) = 0;
  // In a batch: upserts next offsets, with the last message read per
  // partition (`last_read`, optional) to recognise the log next time.
  virtual Status StoreOffsets(const OffsetMap& next, int64_t run_id, const LastReadMap* last_read) = 0;
  // Completes the run row BeginRun created, or inserts one (run_id == 0: a
  // failed run recorded after its batch rolled back, in its own
  // transaction when no batch is open). Returns the id.
  virtual Result<int64_t> FinishRun(const RunRecord& run) = 0;
  // After the commit: the commit time of a committed run.
  virtual Status RecordCommitTime(int64_t run_id, double commit_ms) = 0;

  // --- Offsets outside a batch --------------------------------------------
  virtual Result<OffsetMap> AllStoredOffsets() = 0;
  virtual Result<LastReadMap> LastRead() = 0;
  // Other pipelines that stored offsets for any of `topics` here.
  virtual Result<std::vector<std::string>> OtherPipelines(const std::vector<std::string>& topics) = 0;

  // --- Run-time hooks -------------------------------------------------------
  // While set, a running statement is interrupted as soon as `check`
  // returns true. nullptr removes it.
  virtual void SetInterruptCheck(std::function<bool()> check) = 0;
  // False once the database is known to be gone (deleted or replaced while
  // open): write nothing more.
  virtual bool usable() const = 0;
  // After each committed batch: housekeeping that must not wait (warn about
  // a log a reader keeps from shrinking).
  virtual void AfterCommit() = 0;
  // Before the process idles between passes: leave nothing stale beside the
  // database (empty the write-ahead log when no reader needs it).
  virtual void BeforeIdle() = 0;

  // --- Commands -------------------------------------------------------------
  virtual Result<TargetReport> Report(int recent_runs) = 0;
  virtual Result<QuarantineSnapshot> TakeQuarantine() = 0;
  // In a batch: removes the quarantine rows a replay took (up to
  // `snapshot.through`, except those the next run reads again).
  virtual Status ForgetReplayed(int64_t through) = 0;
  virtual Result<bool> HasTable(const std::string& name) = 0;
  // `sluice reset`: the whole plan in one transaction, or nothing.
  virtual Result<ResetOutcome> Reset(const ResetPlan& plan) = 0;
  // `sluice compact`: prunes staging history older than `retention`,
  // reclaims space.
  virtual Result<CompactOutcome> Compact(std::chrono::milliseconds retention) = 0;
  // File inputs (`run --from-file`): their identity per position.
  virtual Result<std::optional<InputRecord>> FindInput(const std::string& input, int64_t next_offset) = 0;
  virtual Status SaveInput(const std::string& input, const InputRecord& record) = 0;
  virtual Status ForgetInput(const std::string& input) = 0;
  // The inputs of this pipeline that are not any of `topics`, sorted.
  virtual Result<std::vector<std::string>> FileInputs(const std::vector<std::string>& topics) = 0;
  // A read-only query, for fixtures and tests.
  virtual Result<QueryResult> Query(const std::string& sql) = 0;
};

}  // namespace sluice
