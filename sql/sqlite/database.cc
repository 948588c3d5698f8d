// Database, Statement and Transaction implementations.
#include "sql/sqlite/database.h"

#include "sql/sqlite/functions.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>

namespace sluice {

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    sqlite3_finalize(stmt_);
    stmt_ = other.stmt_;
    other.stmt_ = nullptr;
  }
  return *this;
}

Statement::~Statement() { sqlite3_finalize(stmt_); }

void Statement::BindNull(int index) { sqlite3_bind_null(stmt_, index); }
void Statement::BindInt(int index, int64_t value) { sqlite3_bind_int64(stmt_, index, value); }
void Statement::BindDouble(int index, double value) { sqlite3_bind_double(stmt_, index, value); }
void Statement::BindText(int index, std::string_view value, bool static_data) {
  sqlite3_bind_text64(stmt_, index, value.data(), value.size(), static_data ? SQLITE_STATIC : SQLITE_TRANSIENT,
                      SQLITE_UTF8);
}
void Statement::BindBlob(int index, std::string_view value, bool static_data) {
  sqlite3_bind_blob64(stmt_, index, value.data(), value.size(), static_data ? SQLITE_STATIC : SQLITE_TRANSIENT);
}

Status SqliteError(int rc, const std::string& message) {
  // Locked or busy past the busy timeout: another connection holds the lock
  // (an analyst's open transaction); worth retrying later.
  int primary = rc & 0xff;
  if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) {
    return Status::Unavailable(message + " (another connection holds the database's write lock longer than "
                               "[target] busy_timeout; an open transaction in a sqlite3 shell or a BI tool?)");
  }
  return Status::SqlError(message);
}

Result<bool> Statement::Step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return SqliteError(rc, sqlite3_errmsg(sqlite3_db_handle(stmt_)));
}

Status Statement::Run() {
  while (true) {
    Result<bool> row = Step();
    if (!row.ok()) return row.status();
    if (!*row) return Status::Ok();
  }
}

void Statement::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

bool Statement::IsNull(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }
int64_t Statement::ColumnInt(int column) const { return sqlite3_column_int64(stmt_, column); }
double Statement::ColumnDouble(int column) const { return sqlite3_column_double(stmt_, column); }
std::string Statement::ColumnText(int column) const {
  const unsigned char* text = sqlite3_column_text(stmt_, column);
  if (text == nullptr) return std::string();
  return std::string(reinterpret_cast<const char*>(text), sqlite3_column_bytes(stmt_, column));
}

namespace {
// Device and inode of `path`, or nothing when it does not exist.
std::optional<std::pair<uint64_t, uint64_t>> FileIdentity(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return std::make_pair(static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino));
}
}  // namespace

Result<std::unique_ptr<Database>> Database::Open(const std::string& path, const DatabaseOptions& options) {
  bool in_memory = path == ":memory:" || path.empty();
  if (!in_memory && options.private_file && !options.read_only) {
    // Create the file ourselves so it starts 0600; SQLite gives its WAL and
    // shared-memory files the same permissions.
    bool created = ::access(path.c_str(), F_OK) != 0;
    int fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, options.file_mode);
    if (fd < 0) {
      return Status::IoError("cannot open database " + path + ": " + std::strerror(errno) +
                             " (check [target] database or --db and the directory's permissions)");
    }
    if (created) ::fchmod(fd, options.file_mode);  // exactly, whatever the umask
    ::close(fd);
  }
  sqlite3* db = nullptr;
  int flags = options.read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  int rc = sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string what = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return Status::IoError("cannot open database " + path + ": " + what);
  }
  std::unique_ptr<Database> database(new Database(db, path));
  if (!in_memory) {
    struct stat st;
    if (::stat(path.c_str(), &st) == 0) database->identity_ = {static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
  }
  sqlite3_extended_result_codes(db, 1);
  // Step SQL cannot weaken the database file (writable_schema, corrupting
  // PRAGMAs, shadow-table writes).
  sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);
  sqlite3_busy_timeout(db, options.busy_timeout_ms);
  database->busy_timeout_ms_ = options.busy_timeout_ms;
  // Step SQL must not load native code.
  sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, nullptr);
  sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, nullptr);
  Status registered = RegisterFunctions(db);
  if (!registered.ok()) return registered;
  if (!options.read_only && !in_memory) {
    // A new file gets incremental auto-vacuum, so `sluice compact` can give
    // pages back without rewriting the database; it must precede any table.
    Result<int64_t> pages = database->QueryInt("PRAGMA page_count");
    if (pages.ok() && *pages == 0) {
      Status vacuum = database->Exec("PRAGMA auto_vacuum=INCREMENTAL");
      if (!vacuum.ok()) return vacuum.WithContext("cannot prepare database " + path);
    }
    Status st = database->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;");
    if (!st.ok()) return st.WithContext("cannot prepare database " + path);
    database->wal_identity_ = FileIdentity(path + "-wal");
    database->shm_identity_ = FileIdentity(path + "-shm");
  }
  return database;
}

Database::~Database() { sqlite3_close_v2(db_); }

Status Database::CheckSameFile() {
  if (!identity_) return Status::Ok();
  std::optional<std::pair<uint64_t, uint64_t>> now = FileIdentity(path_);
  if (now == identity_) {
    // Remember which write-ahead log and shared-memory files are ours.
    if (!wal_identity_) wal_identity_ = FileIdentity(path_ + "-wal");
    if (!shm_identity_) shm_identity_ = FileIdentity(path_ + "-shm");
    return Status::Ok();
  }
  std::string what = now ? "was replaced while sluice had it open (another file now has its name)"
                         : "was deleted while sluice had it open";
  if (!lost_) {
    lost_ = true;
    // Our log and shared memory still sit beside the path: SQLite would
    // apply that log to whatever file has the name now, and corrupt it. Move
    // them aside, and keep SQLite from deleting a log by that name on close.
    int persist = 1;
    sqlite3_file_control(db_, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
    std::string moved;
    for (const auto& [suffix, identity] : {std::make_pair(std::string("-wal"), wal_identity_),
                                           std::make_pair(std::string("-shm"), shm_identity_)}) {
      std::string file = path_ + suffix;
      if (!identity || FileIdentity(file) != identity) continue;
      std::string aside = file + ".orphaned-" + std::to_string(::getpid());
      if (::rename(file.c_str(), aside.c_str()) == 0) moved += (moved.empty() ? "" : ", ") + aside;
    }
    if (!moved.empty()) what += "; its write-ahead log was moved aside to " + moved;
  }
  return Status::IoError("the database file " + path_ + " " + what + "; nothing more is committed into it");
}

void Database::CheckpointTruncate() {
  if (lost_ || path_ == ":memory:" || path_.empty()) return;
  sqlite3_busy_timeout(db_, 0);
  sqlite3_wal_checkpoint_v2(db_, "main", SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
  sqlite3_busy_timeout(db_, busy_timeout_ms_);
}

namespace {
int ProgressHandler(void* opaque) {
  auto* check = static_cast<std::function<bool()>*>(opaque);
  return (*check)() ? 1 : 0;
}
}  // namespace

void Database::SetInterruptCheck(std::function<bool()> check) {
  interrupt_check_ = std::move(check);
  if (interrupt_check_) {
    sqlite3_progress_handler(db_, 4000, &ProgressHandler, &interrupt_check_);
  } else {
    sqlite3_progress_handler(db_, 0, nullptr, nullptr);
  }
}

Status Database::Exec(const std::string& sql) {
  char* error = nullptr;
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error);
  if (rc != SQLITE_OK) {
    std::string what = error ? error : sqlite3_errstr(rc);
    sqlite3_free(error);
    return SqliteError(sqlite3_extended_errcode(db_), what);
  }
  return Status::Ok();
}

Result<Statement> Database::Prepare(const std::string& sql) {
  sqlite3_stmt* stmt = nullptr;
  const char* tail = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &stmt, &tail);
  if (rc != SQLITE_OK) return SqliteError(rc, sqlite3_errmsg(db_));
  Statement prepared(stmt);
  // One statement only: anything after the first would be ignored silently.
  for (const char* rest = tail; rest != nullptr && *rest != '\0'; ++rest) {
    if (!std::isspace(static_cast<unsigned char>(*rest)) && *rest != ';') {
      return Status::SqlError("Prepare takes one statement; this text has more after the first: " + std::string(rest));
    }
  }
  return prepared;
}

Result<int64_t> Database::QueryInt(const std::string& sql, int64_t fallback) {
  Result<Statement> stmt = Prepare(sql);
  if (!stmt.ok()) return stmt.status();
  Result<bool> row = stmt->Step();
  if (!row.ok()) return row.status();
  if (!*row || stmt->IsNull(0)) return fallback;
  return stmt->ColumnInt(0);
}

bool Database::TableExists(const std::string& name) {
  Result<Statement> stmt = Prepare("SELECT 1 FROM sqlite_schema WHERE type IN ('table','view') AND name = ?");
  if (!stmt.ok()) return false;
  stmt->BindText(1, name);
  Result<bool> row = stmt->Step();
  return row.ok() && *row;
}

std::string Database::LastError() const { return sqlite3_errmsg(db_); }
int64_t Database::Changes() const { return sqlite3_changes64(db_); }

Result<std::unique_ptr<Transaction>> Transaction::Begin(Database* db) {
  Status st = db->Exec("BEGIN IMMEDIATE");
  if (!st.ok()) return st.WithContext("cannot begin a write transaction on " + db->path());
  return std::unique_ptr<Transaction>(new Transaction(db));
}

Transaction::~Transaction() { Rollback(); }

Status Transaction::Commit() {
  if (!open_) return Status::SqlError("transaction is no longer open");
  Status st = db_->Exec("COMMIT");
  if (!st.ok()) return st.WithContext("commit failed");
  open_ = false;
  return Status::Ok();
}

void Transaction::Rollback() {
  if (!open_) return;
  open_ = false;
  // A failed ROLLBACK leaves nothing to do: SQLite has already rolled the
  // transaction back when it reports one.
  if (!sqlite3_get_autocommit(db_->handle())) (void)db_->Exec("ROLLBACK");
}

}  // namespace sluice
