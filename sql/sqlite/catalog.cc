// Catalog implementation.
#include "sql/sqlite/catalog.h"

#include <chrono>
#include <ctime>
#include <set>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace sluice {

Result<bool> Catalog::LegacyOffsetsTable() {
  Result<int64_t> tables = db_->QueryInt("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = '_sluice_offsets'");
  if (!tables.ok()) return tables.status();
  if (*tables == 0) return false;
  Result<int64_t> keyed = db_->QueryInt("SELECT count(*) FROM pragma_table_info('_sluice_offsets') WHERE name = 'pipeline'");
  if (!keyed.ok()) return keyed.status();
  return *keyed == 0;
}

Status Catalog::Install() {
  // Offsets were keyed by (topic, partition) before they belonged to a
  // pipeline: the rows of such a table belong to the pipeline opening it.
  Result<bool> legacy = LegacyOffsetsTable();
  if (!legacy.ok()) return legacy.status();
  if (*legacy) {
    SLUICE_RETURN_IF_ERROR(db_->Exec("ALTER TABLE _sluice_offsets RENAME TO _sluice_offsets_unkeyed"));
  }
  SLUICE_RETURN_IF_ERROR(db_->Exec(R"sql(
CREATE TABLE IF NOT EXISTS _sluice_offsets (
  pipeline TEXT NOT NULL,
  topic TEXT NOT NULL,
  "partition" INTEGER NOT NULL,
  next_offset INTEGER NOT NULL,
  run_id INTEGER,
  updated_at TEXT NOT NULL,
  last_offset INTEGER,
  last_fingerprint INTEGER,
  PRIMARY KEY (pipeline, topic, "partition")
);
CREATE TABLE IF NOT EXISTS _sluice_checks (
  pipeline TEXT NOT NULL,
  "check" TEXT NOT NULL,
  severity TEXT NOT NULL,
  "rows" INTEGER NOT NULL,
  sample TEXT,
  run_id INTEGER,
  checked_at TEXT NOT NULL,
  PRIMARY KEY (pipeline, "check")
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
  pipeline TEXT NOT NULL DEFAULT '',
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
  if (*legacy) {
    Result<Statement> copy = db_->Prepare(
        "INSERT INTO _sluice_offsets(pipeline, topic, \"partition\", next_offset, run_id, updated_at) "
        "SELECT ?, topic, \"partition\", next_offset, run_id, updated_at FROM _sluice_offsets_unkeyed");
    if (!copy.ok()) return copy.status();
    copy->BindText(1, pipeline_);
    SLUICE_RETURN_IF_ERROR(copy->Run());
    SLUICE_RETURN_IF_ERROR(db_->Exec("DROP TABLE _sluice_offsets_unkeyed"));
    migrated_ = true;
  }
  // Columns added since the first release, for databases created before.
  Result<int64_t> has_last =
      db_->QueryInt("SELECT count(*) FROM pragma_table_info('_sluice_offsets') WHERE name = 'last_fingerprint'");
  if (!has_last.ok()) return has_last.status();
  if (*has_last == 0) {
    SLUICE_RETURN_IF_ERROR(db_->Exec("ALTER TABLE _sluice_offsets ADD COLUMN last_offset INTEGER; "
                                     "ALTER TABLE _sluice_offsets ADD COLUMN last_fingerprint INTEGER"));
  }
  Result<int64_t> has_parse = db_->QueryInt("SELECT count(*) FROM pragma_table_info('_sluice_runs') WHERE name = 'parse_ms'");
  if (!has_parse.ok()) return has_parse.status();
  if (*has_parse == 0) SLUICE_RETURN_IF_ERROR(db_->Exec("ALTER TABLE _sluice_runs ADD COLUMN parse_ms REAL"));
  return InstallInputs();
}

Result<OffsetMap> Catalog::StoredOffsets(const std::vector<TopicPartition>& partitions) {
  Result<Statement> stmt =
      db_->Prepare("SELECT next_offset FROM _sluice_offsets WHERE pipeline = ?3 AND topic = ?1 AND \"partition\" = ?2");
  if (!stmt.ok()) return stmt.status();
  OffsetMap stored;
  for (const auto& tp : partitions) {
    stmt->BindText(1, tp.first);
    stmt->BindInt(2, tp.second);
    stmt->BindText(3, pipeline_);
    Result<bool> row = stmt->Step();
    if (!row.ok()) return row.status();
    if (*row) stored[tp] = stmt->ColumnInt(0);
    stmt->Reset();
  }
  return stored;
}

Result<OffsetMap> Catalog::AllStoredOffsets() {
  // A table not migrated yet (read-only commands) holds this pipeline's rows.
  Result<bool> legacy = LegacyOffsetsTable();
  if (!legacy.ok()) return legacy.status();
  Result<Statement> stmt = db_->Prepare(
      *legacy ? "SELECT topic, \"partition\", next_offset FROM _sluice_offsets WHERE ?1 IS NOT NULL"
              : "SELECT topic, \"partition\", next_offset FROM _sluice_offsets WHERE pipeline = ?1");
  if (!stmt.ok()) return stmt.status();
  stmt->BindText(1, pipeline_);
  OffsetMap stored;
  while (true) {
    Result<bool> row = stmt->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    stored[{stmt->ColumnText(0), static_cast<int32_t>(stmt->ColumnInt(1))}] = stmt->ColumnInt(2);
  }
  return stored;
}

Result<std::vector<std::string>> Catalog::OtherPipelines(const std::vector<std::string>& topics) {
  std::vector<std::string> names;
  Result<bool> legacy = LegacyOffsetsTable();
  if (!legacy.ok()) return legacy.status();
  if (*legacy) return names;
  Result<Statement> stmt = db_->Prepare(
      "SELECT DISTINCT pipeline FROM _sluice_offsets WHERE pipeline <> ?1 AND topic = ?2 ORDER BY pipeline");
  if (!stmt.ok()) return stmt.status();
  std::set<std::string> seen;
  for (const auto& topic : topics) {
    stmt->BindText(1, pipeline_);
    stmt->BindText(2, topic);
    while (true) {
      Result<bool> row = stmt->Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      if (seen.insert(stmt->ColumnText(0)).second) names.push_back(stmt->ColumnText(0));
    }
    stmt->Reset();
  }
  return names;
}

Result<LastReadMap> Catalog::LastRead() {
  LastReadMap last;
  Result<Statement> stmt = db_->Prepare(
      "SELECT topic, \"partition\", last_offset, last_fingerprint FROM _sluice_offsets WHERE pipeline = ?1 AND "
      "last_offset IS NOT NULL AND last_fingerprint IS NOT NULL AND last_offset < next_offset");
  if (!stmt.ok()) return stmt.status();
  stmt->BindText(1, pipeline_);
  while (true) {
    Result<bool> row = stmt->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    last[{stmt->ColumnText(0), static_cast<int32_t>(stmt->ColumnInt(1))}] = {stmt->ColumnInt(2), stmt->ColumnInt(3)};
  }
  return last;
}

Status Catalog::StoreOffsets(const OffsetMap& next, int64_t run_id, const LastReadMap* last_read) {
  // With `last_read`, partitions it names get their last message's offset
  // and fingerprint and the others keep theirs; without (a reset moved the
  // positions by hand), both are cleared.
  Result<Statement> stmt = db_->Prepare(
      "INSERT INTO _sluice_offsets(topic, \"partition\", next_offset, run_id, updated_at, pipeline, last_offset, "
      "last_fingerprint) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
      "ON CONFLICT(pipeline, topic, \"partition\") DO UPDATE SET next_offset = excluded.next_offset, "
      "run_id = excluded.run_id, updated_at = excluded.updated_at, "
      "last_offset = CASE WHEN ?9 THEN coalesce(excluded.last_offset, last_offset) END, "
      "last_fingerprint = CASE WHEN ?9 THEN coalesce(excluded.last_fingerprint, last_fingerprint) END");
  if (!stmt.ok()) return stmt.status();
  std::string now = NowIso();
  for (const auto& [tp, offset] : next) {
    if (offset < 0) {
      return Status::InvalidInput("refusing to store offset " + std::to_string(offset) + " for " + tp.first + "[" +
                                  std::to_string(tp.second) + "]: offsets are never negative");
    }
    stmt->BindText(6, pipeline_);
    auto last = last_read != nullptr ? last_read->find(tp) : LastReadMap::const_iterator{};
    if (last_read != nullptr && last != last_read->end()) {
      stmt->BindInt(7, last->second.first);
      stmt->BindInt(8, last->second.second);
    } else {
      stmt->BindNull(7);
      stmt->BindNull(8);
    }
    stmt->BindInt(9, last_read != nullptr ? 1 : 0);
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
  stmt->BindText(2, NowIso());
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

Status Catalog::InstallInputs() {
  return db_->Exec(R"sql(
CREATE TABLE IF NOT EXISTS _sluice_inputs (
  pipeline TEXT NOT NULL,
  input TEXT NOT NULL,
  next_offset INTEGER NOT NULL,
  bytes INTEGER NOT NULL,
  checksum TEXT NOT NULL,
  recorded_at TEXT NOT NULL,
  PRIMARY KEY (pipeline, input, next_offset)
);
)sql");
}

Result<std::optional<InputRecord>> Catalog::FindInput(const std::string& input, int64_t next_offset) {
  if (!db_->TableExists("_sluice_inputs")) return std::optional<InputRecord>();
  Result<Statement> stmt = db_->Prepare(
      "SELECT bytes, checksum FROM _sluice_inputs WHERE pipeline = ?1 AND input = ?2 AND next_offset = ?3");
  if (!stmt.ok()) return stmt.status();
  stmt->BindText(1, pipeline_);
  stmt->BindText(2, input);
  stmt->BindInt(3, next_offset);
  Result<bool> row = stmt->Step();
  if (!row.ok()) return row.status();
  if (!*row) return std::optional<InputRecord>();
  InputRecord record;
  record.next_offset = next_offset;
  record.bytes = stmt->ColumnInt(0);
  record.checksum = stmt->ColumnText(1);
  return std::optional<InputRecord>(record);
}

Status Catalog::SaveInput(const std::string& input, const InputRecord& record) {
  SLUICE_RETURN_IF_ERROR(InstallInputs());
  Result<Statement> save = db_->Prepare(
      "INSERT OR REPLACE INTO _sluice_inputs(pipeline, input, next_offset, bytes, checksum, recorded_at) "
      "VALUES (?1, ?2, ?3, ?4, ?5, strftime('%Y-%m-%dT%H:%M:%fZ','now'))");
  if (!save.ok()) return save.status();
  save->BindText(1, pipeline_);
  save->BindText(2, input);
  save->BindInt(3, record.next_offset);
  save->BindInt(4, record.bytes);
  save->BindText(5, record.checksum);
  SLUICE_RETURN_IF_ERROR(save->Run());
  // Records behind the stored position are never checked again.
  Result<Statement> prune = db_->Prepare(
      "DELETE FROM _sluice_inputs WHERE pipeline = ?1 AND input = ?2 AND next_offset < "
      "(SELECT max(next_offset) FROM _sluice_offsets WHERE pipeline = ?1 AND topic = ?2)");
  if (!prune.ok()) return prune.status();
  prune->BindText(1, pipeline_);
  prune->BindText(2, input);
  return prune->Run();
}

Status Catalog::ForgetInput(const std::string& input) {
  SLUICE_RETURN_IF_ERROR(InstallInputs());
  for (const char* sql : {"DELETE FROM _sluice_offsets WHERE pipeline = ?1 AND topic = ?2",
                          "DELETE FROM _sluice_inputs WHERE pipeline = ?1 AND input = ?2"}) {
    Result<Statement> stmt = db_->Prepare(sql);
    if (!stmt.ok()) return stmt.status();
    stmt->BindText(1, pipeline_);
    stmt->BindText(2, input);
    SLUICE_RETURN_IF_ERROR(stmt->Run());
  }
  return Status::Ok();
}

Result<std::vector<std::string>> Catalog::FileInputs(const std::vector<std::string>& topics) {
  std::set<std::string> names;
  Result<OffsetMap> stored = AllStoredOffsets();
  if (!stored.ok()) return stored.status();
  for (const auto& [tp, offset] : *stored) names.insert(tp.first);
  if (db_->TableExists("_sluice_inputs")) {
    Result<Statement> stmt = db_->Prepare("SELECT DISTINCT input FROM _sluice_inputs WHERE pipeline = ?1");
    if (!stmt.ok()) return stmt.status();
    stmt->BindText(1, pipeline_);
    while (true) {
      Result<bool> row = stmt->Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      names.insert(stmt->ColumnText(0));
    }
  }
  for (const auto& topic : topics) names.erase(topic);
  return std::vector<std::string>(names.begin(), names.end());
}

Status Catalog::RecordCheck(const std::string& check, const std::string& severity, int64_t rows,
                            const std::string& sample, int64_t run_id) {
  Result<Statement> stmt = db_->Prepare(
      "INSERT INTO _sluice_checks(pipeline, \"check\", severity, \"rows\", sample, run_id, checked_at) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(pipeline, \"check\") DO UPDATE SET severity = excluded.severity, "
      "\"rows\" = excluded.\"rows\", sample = excluded.sample, run_id = excluded.run_id, checked_at = excluded.checked_at");
  if (!stmt.ok()) return stmt.status();
  stmt->BindText(1, pipeline_);
  stmt->BindText(2, check);
  stmt->BindText(3, severity);
  stmt->BindInt(4, rows);
  if (sample.empty()) stmt->BindNull(5);
  else stmt->BindText(5, sample);
  stmt->BindInt(6, run_id);
  stmt->BindText(7, NowIso());
  return stmt->Run();
}

Status Catalog::ClearPassedQuarantine(const std::vector<PartitionRange>& ranges, int64_t run_id) {
  Result<Statement> stmt = db_->Prepare(
      "DELETE FROM _sluice_quarantine WHERE pipeline = ?1 AND topic = ?2 AND \"partition\" = ?3 AND \"offset\" "
      "BETWEEN ?4 AND ?5 AND run_id IS NOT ?6");
  if (!stmt.ok()) return stmt.status();
  for (const auto& range : ranges) {
    stmt->BindText(1, pipeline_);
    stmt->BindText(2, range.partition.first);
    stmt->BindInt(3, range.partition.second);
    stmt->BindInt(4, range.first_offset);
    stmt->BindInt(5, range.last_offset);
    stmt->BindInt(6, run_id);
    SLUICE_RETURN_IF_ERROR(stmt->Run());
    stmt->Reset();
  }
  return Status::Ok();
}

}  // namespace sluice
