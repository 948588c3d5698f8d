// Staging implementation: the staging table and view, prepared inserts.
#include "sql/sqlite/staging.h"

#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <cctype>
#include <map>
#include <set>

namespace sluice {
namespace {

// SQLite's date modifier for "`retention` ago": "-86400.000000 seconds".
std::string RetentionModifier(std::chrono::milliseconds retention) {
  return "-" + std::to_string(retention.count() / 1000.0) + " seconds";
}

std::string Upper(std::string text) {
  for (char& c : text) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return text;
}

}  // namespace

std::string StagingTableDdl(const std::vector<ColumnSpec>& columns, const std::string& table) {
  std::string ddl = "CREATE TABLE " + QuoteIdentifier(table) + " (";
  for (const auto& column : columns) {
    const char* affinity = column.type == ColumnType::kBoolean ? "INTEGER" : column.type == ColumnType::kJson ? "TEXT"
                                                                                                              : ColumnTypeName(column.type);
    ddl += QuoteIdentifier(column.name) + " " + affinity + ", ";
  }
  ddl += "_kafka_topic TEXT, _kafka_partition INTEGER, _kafka_offset INTEGER, _kafka_timestamp INTEGER, "
         "_kafka_key TEXT, _kafka_value TEXT, _sluice_run_id INTEGER)";
  return ddl;
}

std::string BatchViewDdl(const std::vector<ColumnSpec>& columns, const std::string& view, const std::string& table,
                         bool keep_history) {
  std::string ddl = "CREATE VIEW " + QuoteIdentifier(view) + " AS SELECT ";
  for (const auto& column : columns) ddl += QuoteIdentifier(column.name) + ", ";
  ddl += "_kafka_topic, _kafka_partition, _kafka_offset, _kafka_timestamp, _kafka_key, _kafka_value FROM " +
         QuoteIdentifier(table);
  // With history kept, the staging table holds past batches too: the view
  // shows the batch of the run in progress (the one 'running' row, which
  // exists only inside the batch transaction).
  if (keep_history) {
    ddl += " WHERE _sluice_run_id = (SELECT max(run_id) FROM _sluice_runs WHERE status = 'running')";
  }
  return ddl;
}

namespace {

// The declared type of a staging column for `column`.
std::string StagingAffinity(const ColumnSpec& column) {
  return column.type == ColumnType::kBoolean ? "INTEGER"
         : column.type == ColumnType::kJson  ? "TEXT"
                                             : ColumnTypeName(column.type);
}

// A message is quarantined at most once per (pipeline, topic, partition,
// offset): databases from before keep their newest row of each, and their
// rows become this pipeline's.
Status MigrateQuarantine(Database* db, const std::string& pipeline) {
  if (!db->TableExists("_sluice_quarantine")) return Status::Ok();
  Result<int64_t> has_pipeline =
      db->QueryInt("SELECT count(*) FROM pragma_table_info('_sluice_quarantine') WHERE name = 'pipeline'");
  if (!has_pipeline.ok()) return has_pipeline.status();
  if (*has_pipeline == 0) {
    SLUICE_RETURN_IF_ERROR(db->Exec("ALTER TABLE _sluice_quarantine ADD COLUMN pipeline TEXT NOT NULL DEFAULT ''"));
    Result<Statement> assign = db->Prepare("UPDATE _sluice_quarantine SET pipeline = ?");
    if (!assign.ok()) return assign.status();
    assign->BindText(1, pipeline);
    SLUICE_RETURN_IF_ERROR(assign->Run());
  }
  Result<int64_t> has_index = db->QueryInt(
      "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name = '_sluice_quarantine_message'");
  if (!has_index.ok()) return has_index.status();
  if (*has_index > 0) return Status::Ok();
  return db->Exec(
      "UPDATE _sluice_quarantine SET pipeline = '' WHERE pipeline IS NULL; "
      "DELETE FROM _sluice_quarantine WHERE rowid NOT IN (SELECT max(rowid) FROM _sluice_quarantine "
      "GROUP BY pipeline, topic, \"partition\", \"offset\"); "
      "CREATE UNIQUE INDEX _sluice_quarantine_message ON _sluice_quarantine(pipeline, topic, \"partition\", "
      "\"offset\");");
}

}  // namespace

Result<std::unique_ptr<StagingWriter>> StagingWriter::Create(Database* db, std::vector<ColumnSpec> columns,
                                                           std::chrono::milliseconds retention, std::string pipeline) {
  bool keep_history = retention.count() > 0;
  Status migrated = MigrateQuarantine(db, pipeline);
  if (!migrated.ok()) return migrated.WithContext("cannot migrate _sluice_quarantine");
  std::string ddl;
  if (!keep_history || !db->TableExists(kTable)) {
    // Nothing worth keeping: start from the declared shape.
    ddl = "DROP VIEW IF EXISTS " + QuoteIdentifier(kView) + "; DROP TABLE IF EXISTS " + QuoteIdentifier(kTable) + "; " +
          StagingTableDdl(columns, kTable) + ";";
  } else {
    // Keep past batches: add columns declared since (old ones stay, NULL
    // for new rows).
    Result<Statement> info = db->Prepare(std::string("SELECT name, type FROM pragma_table_info('") + kTable + "')");
    if (!info.ok()) return info.status();
    std::vector<std::pair<std::string, std::string>> existing;  // in table order
    std::map<std::string, std::string> types;
    while (true) {
      Result<bool> row = info->Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      existing.emplace_back(info->ColumnText(0), info->ColumnText(1));
      types[info->ColumnText(0)] = Upper(info->ColumnText(1));
    }
    bool retyped = false;
    for (const auto& column : columns) {
      auto found = types.find(column.name);
      if (found != types.end() && found->second != StagingAffinity(column)) retyped = true;
    }
    ddl = "DROP VIEW IF EXISTS " + QuoteIdentifier(kView) + ";";
    if (retyped) {
      // A column's declared type changed: a table kept with the old type
      // would convert new values by the old affinity ("0042" declared TEXT
      // staged as 42). Rebuild it with the declared types, keeping past
      // batches (their values take the new types) and the columns no longer
      // declared.
      std::string old_table = std::string(kTable) + "_retyped";
      std::set<std::string> declared;
      for (const auto& column : columns) declared.insert(column.name);
      ddl += " DROP TABLE IF EXISTS " + QuoteIdentifier(old_table) + "; ALTER TABLE " + QuoteIdentifier(kTable) +
             " RENAME TO " + QuoteIdentifier(old_table) + "; " + StagingTableDdl(columns, kTable) + ";";
      std::set<std::string> fresh;
      {
        // Names the new table has.
        for (const auto& column : columns) fresh.insert(column.name);
        for (const char* name : {"_kafka_topic", "_kafka_partition", "_kafka_offset", "_kafka_timestamp",
                                 "_kafka_key", "_kafka_value", "_sluice_run_id"}) {
          fresh.insert(name);
        }
      }
      std::string copied;
      for (const auto& [name, type] : existing) {
        if (!fresh.count(name)) {
          ddl += " ALTER TABLE " + QuoteIdentifier(kTable) + " ADD COLUMN " + QuoteIdentifier(name) +
                 (type.empty() ? "" : " " + type) + ";";
        }
        copied += (copied.empty() ? "" : ", ") + QuoteIdentifier(name);
      }
      ddl += " INSERT INTO " + QuoteIdentifier(kTable) + " (" + copied + ") SELECT " + copied + " FROM " +
             QuoteIdentifier(old_table) + "; DROP TABLE " + QuoteIdentifier(old_table) + ";";
    } else {
      for (const auto& column : columns) {
        if (!types.count(column.name)) {
          ddl += " ALTER TABLE " + QuoteIdentifier(kTable) + " ADD COLUMN " + QuoteIdentifier(column.name) + " " +
                 StagingAffinity(column) + ";";
        }
      }
    }
  }
  if (keep_history) {
    ddl += std::string(" CREATE INDEX IF NOT EXISTS _sluice_staging_by_run ON ") + QuoteIdentifier(kTable) +
           "(_sluice_run_id);";
  }
  ddl += " " + BatchViewDdl(columns, kView, kTable, keep_history) + ";";
  Status st = db->Exec(ddl);
  if (!st.ok()) return st.WithContext("cannot create the staging table");
  std::unique_ptr<StagingWriter> writer(new StagingWriter(std::move(columns)));
  writer->retention_ = retention;
  writer->pipeline_ = std::move(pipeline);
  std::string names, placeholders;
  for (const auto& column : writer->columns_) {
    names += QuoteIdentifier(column.name) + ", ";
    placeholders += "?, ";
  }
  names += "_kafka_topic, _kafka_partition, _kafka_offset, _kafka_timestamp, _kafka_key, _kafka_value, _sluice_run_id";
  placeholders += "?, ?, ?, ?, ?, ?, ?";
  Result<Statement> insert =
      db->Prepare("INSERT INTO " + QuoteIdentifier(kTable) + " (" + names + ") VALUES (" + placeholders + ")");
  if (!insert.ok()) return insert.status();
  // Once per message: quarantined again (a reset, a rerun), its row takes
  // the latest reason and run.
  Result<Statement> quarantine = db->Prepare(
      "INSERT INTO _sluice_quarantine(topic, \"partition\", \"offset\", \"timestamp\", key, value, error, run_id, "
      "quarantined_at, pipeline) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, strftime('%Y-%m-%dT%H:%M:%fZ','now'), ?9) "
      "ON CONFLICT(pipeline, topic, \"partition\", \"offset\") DO UPDATE SET \"timestamp\" = excluded.\"timestamp\", "
      "key = excluded.key, value = excluded.value, error = excluded.error, run_id = excluded.run_id, "
      "quarantined_at = excluded.quarantined_at");
  if (!quarantine.ok()) return quarantine.status();
  // Without history, every batch starts from an empty table; with it, only
  // the batches of runs older than the retention go.
  Result<Statement> clear = db->Prepare(keep_history ? HistoryPruneSql() : "DELETE FROM " + QuoteIdentifier(kTable));
  if (!clear.ok()) return clear.status();
  writer->insert_ = std::move(*insert);
  writer->quarantine_ = std::move(*quarantine);
  writer->clear_ = std::move(*clear);
  return writer;
}

std::string StagingWriter::HistoryPruneSql() {
  // Runs older than the retention (?1: "-N seconds"), and rows of runs that
  // never committed.
  return "DELETE FROM " + QuoteIdentifier(kTable) +
         " WHERE _sluice_run_id IN (SELECT run_id FROM _sluice_runs WHERE started_at < "
         "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?1)) OR _sluice_run_id NOT IN (SELECT run_id FROM _sluice_runs)";
}

Result<int64_t> StagingWriter::PruneHistory(Database* db, std::chrono::milliseconds retention) {
  if (retention.count() <= 0 || !db->TableExists(kTable)) return int64_t{0};
  Result<Statement> prune = db->Prepare(HistoryPruneSql());
  if (!prune.ok()) return prune.status();
  prune->BindText(1, RetentionModifier(retention));
  SLUICE_RETURN_IF_ERROR(prune->Run());
  return db->Changes();
}

Status StagingWriter::Clear() {
  if (retention_.count() > 0) clear_.BindText(1, RetentionModifier(retention_));
  Status st = clear_.Run();
  clear_.Reset();
  return st;
}

namespace {

// True when `text` is valid UTF-8 without NUL bytes, i.e. safe to store as TEXT.
bool IsCleanUtf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    size_t extra = 0;
    if (c == 0) return false;
    if (c < 0x80) extra = 0;
    else if ((c & 0xE0) == 0xC0) extra = 1;
    else if ((c & 0xF0) == 0xE0) extra = 2;
    else if ((c & 0xF8) == 0xF0) extra = 3;
    else return false;
    if (i + extra >= text.size()) return false;
    for (size_t k = 1; k <= extra; ++k) {
      if ((static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80) return false;
    }
    i += extra + 1;
  }
  return true;
}

// `value_is_clean`: the value is known to be valid UTF-8 without NUL bytes
// (the decoder checked), so it need not be scanned again.
void BindMetadata(Statement* stmt, int first, const Message& message, bool value_is_clean) {
  stmt->BindText(first, message.topic, true);
  stmt->BindInt(first + 1, message.partition);
  stmt->BindInt(first + 2, message.offset);
  if (message.timestamp) stmt->BindInt(first + 3, *message.timestamp);
  else stmt->BindNull(first + 3);
  if (!message.key) stmt->BindNull(first + 4);
  else if (IsCleanUtf8(*message.key)) stmt->BindText(first + 4, *message.key, true);
  else stmt->BindBlob(first + 4, *message.key, true);
  if (!message.value) stmt->BindNull(first + 5);
  else if (value_is_clean || IsCleanUtf8(*message.value)) stmt->BindText(first + 5, *message.value, true);
  else stmt->BindBlob(first + 5, *message.value, true);
}

}  // namespace

Status StagingWriter::Write(const Message& message, const DecodedRow& row, int64_t run_id, StageCounts* counts) {
  if (row.error) {
    BindMetadata(&quarantine_, 1, message, false);
    quarantine_.BindText(7, *row.error);
    quarantine_.BindInt(8, run_id);
    quarantine_.BindText(9, pipeline_);
    Status st = quarantine_.Run();
    quarantine_.Reset();
    if (!st.ok()) return st.WithContext("cannot write to _sluice_quarantine");
    ++counts->quarantined;
    return Status::Ok();
  }
  int index = 1;
  for (const Cell& cell : row.cells) {
    switch (cell.kind) {
      case Cell::Kind::kNull: insert_.BindNull(index); break;
      case Cell::Kind::kInt: insert_.BindInt(index, cell.int_value); break;
      case Cell::Kind::kReal: insert_.BindDouble(index, cell.real_value); break;
      case Cell::Kind::kText: insert_.BindText(index, cell.text, true); break;
    }
    ++index;
  }
  BindMetadata(&insert_, index, message, row.value_is_text);
  insert_.BindInt(index + 6, run_id);
  Status st = insert_.Run();
  insert_.Reset();
  if (!st.ok()) return st.WithContext("cannot write to the staging table");
  ++counts->staged;
  return Status::Ok();
}

}  // namespace sluice
