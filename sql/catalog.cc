// Catalog implementation.
#include "sql/catalog.h"

#include <chrono>
#include <ctime>

namespace sluice {

Status Catalog::Install() {
  SLUICE_RETURN_IF_ERROR(db_->Exec(R"sql(
CREATE TABLE IF NOT EXISTS _sluice_offsets (
  topic TEXT NOT NULL,
  "partition" INTEGER NOT NULL,
  next_offset INTEGER NOT NULL,
  run_id INTEGER,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (topic, "partition")
);
CREATE TABLE IF NOT EXISTS _sluice_runs (
  run_id INTEGER PRIMARY KEY AUTOINCREMENT,
  started_at TEXT NOT NULL,
  finished_at TEXT,
  status TEXT NOT NULL,
  messages INTEGER NOT NULL DEFAULT 0,
  staged INTEGER NOT NULL DEFAULT 0,
  quarantined INTEGER NOT NULL DEFAULT 0,
  offsets TEXT,
  error TEXT,
  notes TEXT,
  fetch_ms REAL,
  stage_ms REAL,
  parse_ms REAL,
  steps_ms REAL,
  commit_ms REAL
);
CREATE TABLE IF NOT EXISTS _sluice_quarantine (
  topic TEXT,
  "partition" INTEGER,
  "offset" INTEGER,
  "timestamp" INTEGER,
  key TEXT,
  value TEXT,
  error TEXT NOT NULL,
  run_id INTEGER,
  quarantined_at TEXT
);
CREATE INDEX IF NOT EXISTS _sluice_quarantine_by_run ON _sluice_quarantine(run_id);
CREATE TABLE IF NOT EXISTS _sluice_seeds (
  name TEXT PRIMARY KEY,
  checksum TEXT NOT NULL,
  "rows" INTEGER NOT NULL,
  loaded_at TEXT NOT NULL
);
)sql"));
  // Columns added since the first release, for databases created before.
  Result<int64_t> has_parse = db_->QueryInt("SELECT count(*) FROM pragma_table_info('_sluice_runs') WHERE name = 'parse_ms'");
  if (!has_parse.ok()) return has_parse.status();
  if (*has_parse == 0) SLUICE_RETURN_IF_ERROR(db_->Exec("ALTER TABLE _sluice_runs ADD COLUMN parse_ms REAL"));
  return Status::Ok();
}

Result<OffsetMap> Catalog::StoredOffsets(const std::vector<TopicPartition>& partitions) {
  Result<Statement> stmt = db_->Prepare("SELECT next_offset FROM _sluice_offsets WHERE topic = ? AND \"partition\" = ?");
  if (!stmt.ok()) return stmt.status();
  OffsetMap stored;
  for (const auto& tp : partitions) {
    stmt->BindText(1, tp.first);
    stmt->BindInt(2, tp.second);
    Result<bool> row = stmt->Step();
    if (!row.ok()) return row.status();
    if (*row) stored[tp] = stmt->ColumnInt(0);
    stmt->Reset();
  }
  return stored;
}

Result<OffsetMap> Catalog::AllStoredOffsets() {
  Result<Statement> stmt = db_->Prepare("SELECT topic, \"partition\", next_offset FROM _sluice_offsets");
  if (!stmt.ok()) return stmt.status();
  OffsetMap stored;
  while (true) {
    Result<bool> row = stmt->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    stored[{stmt->ColumnText(0), static_cast<int32_t>(stmt->ColumnInt(1))}] = stmt->ColumnInt(2);
  }
  return stored;
}

Status Catalog::StoreOffsets(const OffsetMap& next, int64_t run_id) {
  Result<Statement> stmt = db_->Prepare(
      "INSERT INTO _sluice_offsets(topic, \"partition\", next_offset, run_id, updated_at) VALUES (?, ?, ?, ?, ?) "
      "ON CONFLICT(topic, \"partition\") DO UPDATE SET next_offset = excluded.next_offset, run_id = excluded.run_id, "
      "updated_at = excluded.updated_at");
  if (!stmt.ok()) return stmt.status();
  std::string now = Now();
  for (const auto& [tp, offset] : next) {
    stmt->BindText(1, tp.first);
    stmt->BindInt(2, tp.second);
    stmt->BindInt(3, offset);
    stmt->BindInt(4, run_id);
    stmt->BindText(5, now);
    SLUICE_RETURN_IF_ERROR(stmt->Run());
    stmt->Reset();
  }
  return Status::Ok();
}

Result<int64_t> Catalog::BeginRun(const std::string& started_at) {
  Result<Statement> stmt = db_->Prepare("INSERT INTO _sluice_runs(started_at, status) VALUES (?, 'running')");
  if (!stmt.ok()) return stmt.status();
  stmt->BindText(1, started_at);
  SLUICE_RETURN_IF_ERROR(stmt->Run());
  return db_->QueryInt("SELECT last_insert_rowid()");
}

Result<int64_t> Catalog::FinishRun(const RunRecord& run) {
  std::string sql =
      run.run_id == 0
          ? "INSERT INTO _sluice_runs(started_at, finished_at, status, messages, staged, quarantined, offsets, error, "
            "notes, fetch_ms, stage_ms, steps_ms, commit_ms, parse_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, "
            "?12, ?13, ?15)"
          : "UPDATE _sluice_runs SET started_at = ?1, finished_at = ?2, status = ?3, messages = ?4, staged = ?5, "
            "quarantined = ?6, offsets = ?7, error = ?8, notes = ?9, fetch_ms = ?10, stage_ms = ?11, steps_ms = ?12, "
            "commit_ms = ?13, parse_ms = ?15 WHERE run_id = ?14";
  Result<Statement> stmt = db_->Prepare(sql);
  if (!stmt.ok()) return stmt.status();
  stmt->BindText(1, run.started_at);
  stmt->BindText(2, Now());
  stmt->BindText(3, run.status);
  stmt->BindInt(4, run.messages);
  stmt->BindInt(5, run.staged);
  stmt->BindInt(6, run.quarantined);
  stmt->BindText(7, RangesJson(run.ranges));
  if (run.error.empty()) stmt->BindNull(8);
  else stmt->BindText(8, run.error);
  if (run.notes.empty()) stmt->BindNull(9);
  else stmt->BindText(9, run.notes);
  stmt->BindDouble(10, run.fetch_ms);
  stmt->BindDouble(11, run.stage_ms);
  stmt->BindDouble(12, run.steps_ms);
  stmt->BindDouble(13, run.commit_ms);
  if (run.run_id != 0) stmt->BindInt(14, run.run_id);
  stmt->BindDouble(15, run.parse_ms);
  SLUICE_RETURN_IF_ERROR(stmt->Run());
  if (run.run_id != 0) return run.run_id;
  return db_->QueryInt("SELECT last_insert_rowid()");
}

Status Catalog::RecordCommitTime(int64_t run_id, double commit_ms) {
  Result<Statement> stmt = db_->Prepare("UPDATE _sluice_runs SET commit_ms = ? WHERE run_id = ?");
  if (!stmt.ok()) return stmt.status();
  stmt->BindDouble(1, commit_ms);
  stmt->BindInt(2, run_id);
  return stmt->Run();
}

std::string Catalog::Now() {
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char buffer[40];
  std::strftime(buffer, sizeof(buffer), "%Y-%m-%dT%H:%M:%S", &utc);
  char out[48];
  std::snprintf(out, sizeof(out), "%s.%03dZ", buffer, static_cast<int>(ms % 1000));
  return out;
}

std::string Catalog::RangesJson(const std::vector<PartitionRange>& ranges) {
  std::string json = "[";
  for (const auto& range : ranges) {
    if (json.size() > 1) json += ",";
    std::string topic;
    for (char c : range.partition.first) {
      if (c == '"' || c == '\\') topic += '\\';
      topic += c;
    }
    json += "{\"topic\":\"" + topic + "\",\"partition\":" + std::to_string(range.partition.second) +
            ",\"first\":" + std::to_string(range.first_offset) + ",\"last\":" + std::to_string(range.last_offset) +
            ",\"count\":" + std::to_string(range.count) + "}";
  }
  return json + "]";
}

}  // namespace sluice
