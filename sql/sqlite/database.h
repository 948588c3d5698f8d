// The SQLite layer's foundation: move-only owners for sqlite3* and
// sqlite3_stmt*, a Transaction guard that rolls back unless committed, and
// identifier quoting. Every connection sluice opens goes through
// Database::Open so that it gets the same pragmas (WAL, busy timeout) and the
// same safety settings (no extension loading, file created 0600).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <utility>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "sql/identifier.h"

struct sqlite3;
struct sqlite3_stmt;

namespace sluice {

class Statement {
 public:
  Statement() = default;
  explicit Statement(sqlite3_stmt* stmt) : stmt_(stmt) {}
  Statement(Statement&& other) noexcept : stmt_(other.stmt_) { other.stmt_ = nullptr; }
  Statement& operator=(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  // Parameters are 1-based. Text and blobs are copied unless `static_data` is
  // set, in which case the caller keeps them alive until Reset().
  void BindNull(int index);
  void BindInt(int index, int64_t value);
  void BindDouble(int index, double value);
  void BindText(int index, std::string_view value, bool static_data = false);
  void BindBlob(int index, std::string_view value, bool static_data = false);

  // Steps once: true when a row is available, false when done.
  Result<bool> Step();
  // Steps to completion, discarding rows.
  Status Run();
  // Resets for re-execution and clears bindings.
  void Reset();

  bool IsNull(int column) const;
  int64_t ColumnInt(int column) const;
  double ColumnDouble(int column) const;
  std::string ColumnText(int column) const;

  sqlite3_stmt* get() const { return stmt_; }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

struct DatabaseOptions {
  int busy_timeout_ms = 10000;
  // Create the file (and its WAL) readable by the owner only, or with
  // `file_mode` when set.
  bool private_file = true;
  unsigned file_mode = 0600;
  bool read_only = false;
};

// The Status for SQLite result code `rc`: Unavailable when the database is
// busy or locked, SqlError otherwise.
Status SqliteError(int rc, const std::string& message);

class Database {
 public:
  // Opens (creating if needed) the database at `path` (":memory:" works).
  static Result<std::unique_ptr<Database>> Open(const std::string& path, const DatabaseOptions& options = {});
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // Runs one or more statements; rows are discarded.
  Status Exec(const std::string& sql);
  Result<Statement> Prepare(const std::string& sql);
  // Runs a query that returns a single integer (NULL and no row give `fallback`).
  Result<int64_t> QueryInt(const std::string& sql, int64_t fallback = 0);
  bool TableExists(const std::string& name);

  // The last error of this connection, for messages.
  std::string LastError() const;
  int64_t Changes() const;
  sqlite3* handle() const { return db_; }
  const std::string& path() const { return path_; }

  // Fails when `path()` no longer names the file that was opened (deleted,
  // or replaced by another file): committing then would write into a file
  // nobody can read. Ok for in-memory databases.
  // Once it fails, the log files beside the path that belong to the old
  // file are moved aside (so they never corrupt the file that now has the
  // name) and lost() is true: write nothing more.
  Status CheckSameFile();
  bool lost() const { return lost_; }

  // Copies the write-ahead log into the database and empties it, if no
  // reader holds an old snapshot (never waits). Between passes this leaves
  // no log beside the file that a copy or restore could pick up stale.
  void CheckpointTruncate();

  // While set, a running statement is interrupted (SQLITE_INTERRUPT) as soon
  // as `check` returns true; polled every few thousand virtual machine
  // instructions. Pass nullptr to remove it.
  void SetInterruptCheck(std::function<bool()> check);

 private:
  Database(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  sqlite3* db_;
  std::string path_;
  std::optional<std::pair<uint64_t, uint64_t>> identity_;  // device and inode at open
  std::optional<std::pair<uint64_t, uint64_t>> wal_identity_, shm_identity_;  // our -wal and -shm files
  bool lost_ = false;  // the path no longer names the file open
  int busy_timeout_ms_ = 0;
  std::function<bool()> interrupt_check_;
};

// BEGIN IMMEDIATE on construction (so a batch never fails half-way on a lock
// upgrade); ROLLBACK on destruction unless Commit() succeeded.
class Transaction {
 public:
  static Result<std::unique_ptr<Transaction>> Begin(Database* db);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  Status Commit();
  void Rollback();

 private:
  explicit Transaction(Database* db) : db_(db) {}
  Database* db_;
  bool open_ = true;
};

}  // namespace sluice
