// SqliteTarget implementation: the batch transaction, the pipeline check, and
// the catalog reads and writes of the commands.
#include "sql/sqlite/sqlite_target.h"

#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>

#include "common/time.h"
#include "sql/sqlite/seeds.h"
#include "sql/sqlite/sql_file.h"

namespace sluice {
namespace {

int64_t FileSize(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
}

// Steps `stmt`: true while it yields rows; an error is kept in `*error`.
bool NextRow(Statement* stmt, Status* error) {
  Result<bool> row = stmt->Step();
  if (!row.ok()) {
    *error = row.status();
    return false;
  }
  return *row;
}

}  // namespace

Result<std::unique_ptr<SqliteTarget>> SqliteTarget::Open(const TargetOptions& options) {
  if (options.database.empty()) return Status::InvalidConfig("no database given ([target] database or --db)");
  const bool in_memory = options.database == ":memory:";
  if (options.access != TargetOptions::Access::kCreate && !in_memory &&
      !std::filesystem::exists(options.database)) {
    return Status::IoError("no database at " + options.database + " yet: `sluice run` creates it");
  }
  std::unique_ptr<PipelineLock> lock;
  if (options.lock != TargetOptions::Lock::kNone && !in_memory) {
    Result<std::unique_ptr<PipelineLock>> taken =
        options.lock_hint.empty()
            ? PipelineLock::Acquire(options.database, options.lock == TargetOptions::Lock::kExclusive)
            : PipelineLock::Acquire(options.database, options.lock == TargetOptions::Lock::kExclusive,
                                    options.lock_hint);
    if (!taken.ok()) return taken.status();
    lock = std::move(*taken);
  }
  DatabaseOptions db_options;
  db_options.busy_timeout_ms = options.busy_timeout_ms;
  db_options.file_mode = options.file_mode;
  db_options.read_only = options.access == TargetOptions::Access::kReadOnly;
  Result<std::unique_ptr<Database>> db = Database::Open(options.database, db_options);
  if (!db.ok()) return db.status();
  return std::unique_ptr<SqliteTarget>(new SqliteTarget(std::move(lock), std::move(*db), options.pipeline));
}

Status SqliteTarget::Prepare(const std::optional<SqlFile>& schema, const std::vector<ColumnSpec>& columns,
                             std::chrono::milliseconds retention) {
  Result<std::unique_ptr<Transaction>> tx = Transaction::Begin(db_.get());
  if (!tx.ok()) return tx.status();
  SLUICE_RETURN_IF_ERROR(catalog_->Install().WithContext("cannot create sluice's tables in " + db_->path()));
  if (schema) SLUICE_RETURN_IF_ERROR(RunSqlFile(db_.get(), *schema));
  Result<std::unique_ptr<StagingWriter>> staging = StagingWriter::Create(db_.get(), columns, retention, pipeline_);
  if (!staging.ok()) return staging.status();
  staging_ = std::move(*staging);
  return (*tx)->Commit();
}

Status SqliteTarget::CheckSteps(const std::vector<SqlFile>& steps, const std::vector<SqlFile>& checks,
                                const std::vector<SeedFile>& seeds) {
  Result<std::unique_ptr<Transaction>> check = Transaction::Begin(db_.get());
  if (!check.ok()) return check.status();
  SLUICE_RETURN_IF_ERROR(sluice::LoadChangedSeeds(db_.get(), seeds, nullptr));
  SLUICE_RETURN_IF_ERROR(db_->Exec(std::string("DELETE FROM ") + QuoteIdentifier(StagingWriter::kTable)));
  for (const auto& step : steps) SLUICE_RETURN_IF_ERROR(RunSqlFile(db_.get(), step));
  // Checks run too (over the empty batch's results), so a broken one is
  // found before anything is consumed; what they find here is not judged.
  for (const auto& data_check : checks) {
    Result<CheckOutcome> outcome = RunCheckFile(db_.get(), data_check);
    if (!outcome.ok()) return outcome.status();
  }
  (*check)->Rollback();
  return Status::Ok();
}

Status SqliteTarget::CheckSeed(const SeedFile& seed) {
  SLUICE_RETURN_IF_ERROR(catalog_->Install());
  return sluice::LoadChangedSeeds(db_.get(), {seed}, nullptr);
}

Status SqliteTarget::BeginBatch() {
  if (batch_) return Status::SqlError("internal error: a batch is already open on " + db_->path());
  Result<std::unique_ptr<Transaction>> tx = Transaction::Begin(db_.get());
  if (!tx.ok()) return tx.status();
  batch_ = std::move(*tx);
  return Status::Ok();
}

Status SqliteTarget::CommitBatch() {
  if (!batch_) return Status::SqlError("internal error: no batch is open on " + db_->path());
  // The file we opened must still be the one the path names: a deleted or
  // replaced database would take the batch (and, after it, the group's
  // offsets) with it.
  Status same = db_->CheckSameFile();
  if (!same.ok()) {
    RollbackBatch();
    return same;
  }
  Status committed = batch_->Commit();
  if (!committed.ok()) {
    RollbackBatch();
    return committed;
  }
  batch_.reset();
  return Status::Ok();
}

void SqliteTarget::RollbackBatch() {
  if (batch_) batch_->Rollback();
  batch_.reset();
}

Status SqliteTarget::LoadChangedSeeds(const std::vector<SeedFile>& seeds, std::vector<std::string>* loaded) {
  return sluice::LoadChangedSeeds(db_.get(), seeds, loaded);
}

Status SqliteTarget::ClearStaging() {
  if (!staging_) return Status::SqlError("internal error: staging used before Prepare()");
  return staging_->Clear();
}

Status SqliteTarget::Stage(const Message& message, const DecodedRow& row, int64_t run_id, StageCounts* counts) {
  return staging_->Write(message, row, run_id, counts);
}

Status SqliteTarget::RunStep(const SqlFile& step) { return RunSqlFile(db_.get(), step); }

Result<CheckOutcome> SqliteTarget::RunCheck(const SqlFile& check) { return RunCheckFile(db_.get(), check); }

Result<int64_t> SqliteTarget::FinishRun(const RunRecord& run) {
  if (batch_) return catalog_->FinishRun(run);
  // Outside a batch (a failed run recorded after its batch rolled back): in
  // a transaction of its own.
  Result<std::unique_ptr<Transaction>> tx = Transaction::Begin(db_.get());
  if (!tx.ok()) return tx.status();
  Result<int64_t> id = catalog_->FinishRun(run);
  if (!id.ok()) return id.status();
  SLUICE_RETURN_IF_ERROR((*tx)->Commit());
  return id;
}

void SqliteTarget::AfterCommit() {
  const std::string& path = db_->path();
  if (path == ":memory:" || path.empty()) return;
  struct stat wal, main;
  if (::stat((path + "-wal").c_str(), &wal) != 0 || ::stat(path.c_str(), &main) != 0) return;
  const int64_t bound = std::max<int64_t>(4 * static_cast<int64_t>(main.st_size), 64LL << 20);
  if (wal.st_size <= bound) return;
  // Checkpoint what readers allow; the log only shrinks once no reader holds
  // a snapshot older than its end.
  Status checkpointed = db_->Exec("PRAGMA wal_checkpoint(PASSIVE)");
  if (!checkpointed.ok()) spdlog::debug("checkpoint: {}", checkpointed.message());
  auto now = std::chrono::steady_clock::now();
  if (wal_warned_ != std::chrono::steady_clock::time_point{} && now - wal_warned_ < std::chrono::minutes(10)) return;
  wal_warned_ = now;
  spdlog::warn("the write-ahead log {}-wal is {} MiB ({} MiB database): a reader holds an old snapshot (an open "
               "transaction in a sqlite3 shell, a BI tool or a notebook), so SQLite cannot reuse it. End that "
               "transaction; the log is reused at the next checkpoint",
               path, wal.st_size >> 20, main.st_size >> 20);
}

Result<TargetReport> SqliteTarget::Report(int recent_runs) {
  TargetReport report;
  Result<OffsetMap> stored = catalog_->AllStoredOffsets();
  if (!stored.ok()) {
    const std::string& message = stored.status().message();
    return Status::IoError("cannot read " + db_->path() + ": " + message +
                           (message.find("readonly") != std::string::npos
                                ? " (a database in WAL mode is read through its -shm file, which needs a writable "
                                  "directory, or a -shm file left by a writer)"
                                : ""));
  }
  report.stored = std::move(*stored);
  Result<int64_t> since_ok = db_->QueryInt(
      "SELECT CAST((julianday('now') - julianday(max(finished_at))) * 86400 AS INTEGER) FROM _sluice_runs WHERE "
      "status = 'ok'",
      -1);
  if (since_ok.ok() && *since_ok >= 0) report.seconds_since_ok = *since_ok;
  Status error;
  Result<Statement> runs = db_->Prepare(
      "SELECT run_id, status, started_at, messages, staged, quarantined, "
      "coalesce(fetch_ms,0) + coalesce(stage_ms,0) + coalesce(steps_ms,0) + coalesce(commit_ms,0), coalesce(error, '') "
      "FROM _sluice_runs ORDER BY run_id DESC LIMIT ?");
  if (!runs.ok()) return runs.status();
  runs->BindInt(1, recent_runs);
  while (NextRow(&*runs, &error)) {
    RunSummary run;
    run.run_id = runs->ColumnInt(0);
    run.status = runs->ColumnText(1);
    run.started_at = runs->ColumnText(2);
    run.messages = runs->ColumnInt(3);
    run.staged = runs->ColumnInt(4);
    run.quarantined = runs->ColumnInt(5);
    run.duration_ms = runs->ColumnDouble(6);
    run.error = runs->ColumnText(7);
    report.runs.push_back(std::move(run));
  }
  if (!error.ok()) return error;
  // The latest result of each data check (a failing check rolls its batch
  // back, so its failure shows in the runs).
  if (db_->TableExists("_sluice_checks")) {
    Result<Statement> checks = db_->Prepare(
        "SELECT \"check\", severity, \"rows\", run_id, ifnull(sample, '') FROM _sluice_checks WHERE pipeline = ? "
        "ORDER BY \"check\"");
    if (!checks.ok()) return checks.status();
    checks->BindText(1, pipeline_);
    while (NextRow(&*checks, &error)) {
      CheckSummary check;
      check.check = checks->ColumnText(0);
      check.severity = checks->ColumnText(1);
      check.rows = checks->ColumnInt(2);
      check.run_id = checks->ColumnInt(3);
      check.sample = checks->ColumnText(4);
      report.checks.push_back(std::move(check));
    }
    if (!error.ok()) return error;
  }
  // Per reason: the partitions in order, each with its own offset range.
  Result<Statement> reasons = db_->Prepare(
      "WITH per_partition AS (SELECT error, topic, \"partition\", count(*) AS n, min(\"offset\") AS first, "
      "max(\"offset\") AS last FROM _sluice_quarantine GROUP BY error, topic, \"partition\"), "
      "reasons AS (SELECT error, count(*) AS n, substr(min(CAST(value AS TEXT)), 1, 80) AS example "
      "FROM _sluice_quarantine GROUP BY error) "
      "SELECT r.error, r.n, (SELECT group_concat(topic || '[' || \"partition\" || '] ' || "
      "CASE WHEN first = last THEN first ELSE first || '..' || last END, ', ') FROM (SELECT * FROM per_partition p "
      "WHERE p.error = r.error ORDER BY topic, \"partition\")), r.example FROM reasons r "
      "ORDER BY r.n DESC, r.error");
  if (!reasons.ok()) return reasons.status();
  while (NextRow(&*reasons, &error)) {
    QuarantineReason reason;
    reason.reason = reasons->ColumnText(0);
    reason.messages = reasons->ColumnInt(1);
    reason.where = reasons->ColumnText(2);
    reason.example = reasons->ColumnText(3);
    report.quarantine.push_back(std::move(reason));
  }
  if (!error.ok()) return error;
  return report;
}

Result<QuarantineSnapshot> SqliteTarget::TakeQuarantine() {
  QuarantineSnapshot snapshot;
  Result<Statement> rows = db_->Prepare(
      "SELECT rowid, topic, \"partition\", \"offset\", \"timestamp\", key, value FROM _sluice_quarantine "
      "WHERE pipeline = ? ORDER BY rowid");
  if (!rows.ok()) return rows.status();
  rows->BindText(1, pipeline_);
  // Messages at or past the stored position (after a reset) are read again
  // by the next run: replaying them too would stage them twice.
  Result<OffsetMap> stored = catalog_->AllStoredOffsets();
  if (!stored.ok()) return stored.status();
  Status error;
  while (NextRow(&*rows, &error)) {
    snapshot.through = rows->ColumnInt(0);
    auto position = stored->find({rows->ColumnText(1), static_cast<int32_t>(rows->ColumnInt(2))});
    if (position != stored->end() && rows->ColumnInt(3) >= position->second) {
      ++snapshot.ahead;
      continue;
    }
    Message message;
    message.topic = rows->ColumnText(1);
    message.partition = static_cast<int32_t>(rows->ColumnInt(2));
    message.offset = rows->ColumnInt(3);
    if (!rows->IsNull(4)) message.timestamp = rows->ColumnInt(4);
    if (!rows->IsNull(5)) message.key = rows->ColumnText(5);
    if (!rows->IsNull(6)) message.value = rows->ColumnText(6);
    snapshot.messages.push_back(std::move(message));
  }
  if (!error.ok()) return error;
  return snapshot;
}

Status SqliteTarget::ForgetReplayed(int64_t through) {
  // The rows replayed: up to the last one taken, except those the next run
  // reads again.
  Result<Statement> remove = db_->Prepare(
      "DELETE FROM _sluice_quarantine AS q WHERE rowid <= ?1 AND pipeline = ?2 AND NOT EXISTS (SELECT 1 FROM "
      "_sluice_offsets AS o WHERE o.pipeline = ?2 AND o.topic = q.topic AND o.\"partition\" = q.\"partition\" AND "
      "q.\"offset\" >= o.next_offset)");
  if (!remove.ok()) return remove.status();
  remove->BindInt(1, through);
  remove->BindText(2, pipeline_);
  return remove->Run();
}

Result<ResetOutcome> SqliteTarget::Reset(const ResetPlan& plan) {
  ResetOutcome outcome;
  SLUICE_RETURN_IF_ERROR(catalog_->Install());
  Result<std::unique_ptr<Transaction>> tx = Transaction::Begin(db_.get());
  if (!tx.ok()) return tx.status();
  RunRecord record = plan.record;
  for (const auto& table : plan.truncate) {
    SLUICE_RETURN_IF_ERROR(db_->Exec("DELETE FROM " + QuoteIdentifier(table)).WithContext("cannot empty " + table));
    // A seed's table is filled again by the next batch (its checksum is
    // forgotten), never left empty for good.
    Result<bool> seed = ForgetSeedChecksum(db_.get(), table);
    if (!seed.ok()) return seed.status();
    if (*seed) outcome.reloaded_seeds.push_back(table);
  }
  for (const auto& input : plan.forget_inputs) {
    SLUICE_RETURN_IF_ERROR(catalog_->ForgetInput(input));
    record.notes += "; forgot the position of --from-file input " + input;
  }
  for (const auto& table : plan.truncate) record.notes += "; emptied " + table;
  for (const auto& table : outcome.reloaded_seeds) record.notes += "; seed " + table + " reloads at the next batch";
  Result<int64_t> run_id = catalog_->FinishRun(record);
  if (!run_id.ok()) return run_id.status();
  SLUICE_RETURN_IF_ERROR(catalog_->StoreOffsets(plan.offsets, *run_id));
  SLUICE_RETURN_IF_ERROR((*tx)->Commit());
  return outcome;
}

Result<CompactOutcome> SqliteTarget::Compact(std::chrono::milliseconds retention) {
  CompactOutcome outcome;
  const std::string& path = db_->path();
  outcome.bytes_before = FileSize(path) + FileSize(path + "-wal");
  Result<int64_t> pruned = StagingWriter::PruneHistory(db_.get(), retention);
  if (!pruned.ok()) return pruned.status();
  outcome.pruned_rows = *pruned;
  Result<int64_t> auto_vacuum = db_->QueryInt("PRAGMA auto_vacuum");
  std::string maintenance = "PRAGMA wal_checkpoint(TRUNCATE); PRAGMA optimize; ";
  maintenance += auto_vacuum.ok() && *auto_vacuum == 2 ? "PRAGMA incremental_vacuum; " : "VACUUM; ";
  maintenance += "PRAGMA wal_checkpoint(TRUNCATE);";
  SLUICE_RETURN_IF_ERROR(db_->Exec(maintenance).WithContext("compact"));
  outcome.bytes_after = FileSize(path) + FileSize(path + "-wal");
  return outcome;
}

Result<QueryResult> SqliteTarget::Query(const std::string& sql) {
  Result<Statement> stmt = db_->Prepare(sql);
  if (!stmt.ok()) return stmt.status();
  QueryResult result;
  const int columns = sqlite3_column_count(stmt->get());
  for (int column = 0; column < columns; ++column) result.columns.push_back(sqlite3_column_name(stmt->get(), column));
  Status error;
  while (NextRow(&*stmt, &error)) {
    std::vector<Value> row;
    for (int column = 0; column < columns; ++column) {
      Value value;
      switch (sqlite3_column_type(stmt->get(), column)) {
        case SQLITE_INTEGER: value.type = Value::Type::kInteger; break;
        case SQLITE_FLOAT: value.type = Value::Type::kReal; break;
        case SQLITE_TEXT: value.type = Value::Type::kText; break;
        case SQLITE_BLOB: value.type = Value::Type::kBlob; break;
        default: value.type = Value::Type::kNull; break;
      }
      if (value.type == Value::Type::kInteger) value.integer = stmt->ColumnInt(column);
      if (value.type == Value::Type::kReal) value.real = stmt->ColumnDouble(column);
      if (value.type != Value::Type::kNull) value.text = stmt->ColumnText(column);
      row.push_back(std::move(value));
    }
    result.rows.push_back(std::move(row));
  }
  if (!error.ok()) return error;
  return result;
}

}  // namespace sluice
