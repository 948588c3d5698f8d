// Staging implementation: JSON path lookup, lenient casts, prepared inserts.
#include "sql/staging.h"

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

constexpr size_t kValueBufferSize = 64 * 1024;
constexpr size_t kMaxJsonDepth = 1000;

// The deepest nesting of [ and { in `text`, outside strings.
size_t JsonDepth(std::string_view text) {
  size_t depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}
constexpr unsigned kParseFlags = rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag;

std::string Upper(std::string text) {
  for (char& c : text) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return text;
}

std::string Lower(std::string_view text) {
  std::string lower(text);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower;
}

std::string_view Trim(std::string_view text) {
  size_t begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string_view::npos) return {};
  size_t end = text.find_last_not_of(" \t\r\n");
  return text.substr(begin, end - begin + 1);
}

Result<std::vector<ColumnSpec::PathElement>> ParsePath(const std::string& path) {
  std::vector<ColumnSpec::PathElement> elements;
  if (path.empty() || path[0] != '$') return Status::InvalidConfig("a JSON path starts with $ (for example $.customer.id)");
  size_t pos = 1;
  while (pos < path.size()) {
    if (path[pos] == '.') {
      size_t end = path.find_first_of(".[", pos + 1);
      std::string member = path.substr(pos + 1, end == std::string::npos ? std::string::npos : end - pos - 1);
      if (member.empty()) return Status::InvalidConfig("empty member name in JSON path " + path);
      elements.push_back({member, -1});
      pos = end == std::string::npos ? path.size() : end;
    } else if (path[pos] == '[') {
      size_t end = path.find(']', pos);
      if (end == std::string::npos) return Status::InvalidConfig("unclosed [ in JSON path " + path);
      std::string inside = path.substr(pos + 1, end - pos - 1);
      if (inside.size() >= 2 && (inside.front() == '"' || inside.front() == '\'') && inside.back() == inside.front()) {
        elements.push_back({inside.substr(1, inside.size() - 2), -1});
      } else {
        char* parse_end = nullptr;
        errno = 0;
        long long index = std::strtoll(inside.c_str(), &parse_end, 10);
        if (inside.empty() || *parse_end != '\0' || index < 0 || errno != 0) {
          return Status::InvalidConfig("[" + inside + "] in JSON path " + path + " is not an array index or a quoted name");
        }
        elements.push_back({"", index});
      }
      pos = end + 1;
    } else {
      return Status::InvalidConfig("unexpected '" + std::string(1, path[pos]) + "' in JSON path " + path +
                                   " (use $.a.b or $.a[0])");
    }
  }
  return elements;
}

std::string ToJson(const rapidjson::Value& value) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  value.Accept(writer);
  return std::string(buffer.GetString(), buffer.GetSize());
}

// Shows a value in an error message, shortened.
std::string Show(const rapidjson::Value& value) {
  std::string json = ToJson(value);
  if (json.size() > 60) json = json.substr(0, 57) + "...";
  return json;
}

const char* KindOf(const rapidjson::Value& value) {
  if (value.IsObject()) return "an object";
  if (value.IsArray()) return "an array";
  if (value.IsString()) return "a string";
  if (value.IsBool()) return "a boolean";
  if (value.IsNumber()) return "a number";
  return "null";
}

bool ParseDouble(std::string_view text, double* out) {
  std::string trimmed(Trim(text));
  if (trimmed.empty()) return false;
  char* end = nullptr;
  errno = 0;
  double parsed = std::strtod(trimmed.c_str(), &end);
  if (*end != '\0' || errno == ERANGE || !std::isfinite(parsed)) return false;
  *out = parsed;
  return true;
}

bool DoubleToInt(double value, int64_t* out) {
  if (!std::isfinite(value) || std::floor(value) != value) return false;
  if (value < -9223372036854775808.0 || value >= 9223372036854775808.0) return false;
  *out = static_cast<int64_t>(value);
  return true;
}

bool ParseInteger(std::string_view text, int64_t* out) {
  std::string trimmed(Trim(text));
  if (trimmed.empty()) return false;
  char* end = nullptr;
  errno = 0;
  long long parsed = std::strtoll(trimmed.c_str(), &end, 10);
  if (*end == '\0' && errno == 0) {
    *out = parsed;
    return true;
  }
  double as_double = 0;
  return ParseDouble(trimmed, &as_double) && DoubleToInt(as_double, out);
}

}  // namespace

const char* ColumnTypeName(ColumnType type) {
  switch (type) {
    case ColumnType::kText: return "TEXT";
    case ColumnType::kInteger: return "INTEGER";
    case ColumnType::kReal: return "REAL";
    case ColumnType::kBoolean: return "BOOLEAN";
    case ColumnType::kJson: return "JSON";
  }
  return "TEXT";
}

Result<ColumnSpec> ParseColumnSpec(const std::string& name, const std::string& spec) {
  ColumnSpec column;
  column.name = name;
  std::string_view trimmed = Trim(spec);
  size_t space = trimmed.find_first_of(" \t");
  std::string type = Upper(std::string(trimmed.substr(0, space)));
  if (type == "TEXT") column.type = ColumnType::kText;
  else if (type == "INTEGER") column.type = ColumnType::kInteger;
  else if (type == "REAL") column.type = ColumnType::kReal;
  else if (type == "BOOLEAN") column.type = ColumnType::kBoolean;
  else if (type == "JSON") column.type = ColumnType::kJson;
  else {
    return Status::InvalidConfig("unknown type '" + std::string(trimmed.substr(0, space)) +
                                 "' (use TEXT, INTEGER, REAL, BOOLEAN or JSON, optionally followed by a path like $.a.b)");
  }
  if (space != std::string_view::npos) {
    column.path_text = std::string(Trim(trimmed.substr(space)));
    Result<std::vector<ColumnSpec::PathElement>> path = ParsePath(column.path_text);
    if (!path.ok()) return path.status();
    column.path = *path;
  }
  return column;
}

RowParser::RowParser(std::vector<ColumnSpec> columns)
    : columns_(std::move(columns)),
      cells_(columns_.size()),
      value_buffer_(new char[kValueBufferSize]),
      value_allocator_(value_buffer_.get(), kValueBufferSize) {}

Status RowParser::Parse(const std::optional<std::string>& value) {
  for (Cell& cell : cells_) {
    cell.kind = Cell::Kind::kNull;
    cell.text = {};
  }
  if (!value) return Status::Ok();  // tombstone
  if (value->empty()) return Status::InvalidInput("empty value: not a JSON document");
  if (const void* nul = std::memchr(value->data(), '\0', value->size())) {
    return Status::InvalidInput("the value contains a NUL byte at offset " +
                                std::to_string(static_cast<const char*>(nul) - value->data()) +
                                " (JSON text cannot; escape it as \\u0000)");
  }
  // SQLite's JSON functions refuse documents nested deeper than this (2000 in
  // 3.40, 1000 from 3.45): such a message would stage, then fail every step
  // that reads _kafka_value, and block the pipeline.
  if (value->size() > 2 * kMaxJsonDepth && JsonDepth(*value) > kMaxJsonDepth) {
    return Status::InvalidInput("the value is nested more than " + std::to_string(kMaxJsonDepth) +
                                " levels deep, more than SQLite's JSON functions accept");
  }
  value_allocator_.Clear();
  stack_allocator_.Clear();
  using Document = rapidjson::GenericDocument<rapidjson::UTF8<>, rapidjson::MemoryPoolAllocator<>,
                                              rapidjson::MemoryPoolAllocator<>>;
  Document doc(&value_allocator_, 1024, &stack_allocator_);
  doc.Parse<kParseFlags>(value->data(), value->size());
  if (doc.HasParseError()) {
    return Status::InvalidInput("invalid JSON at byte " + std::to_string(doc.GetErrorOffset()) + ": " +
                                rapidjson::GetParseError_En(doc.GetParseError()));
  }
  if (!doc.IsObject()) {
    return Status::InvalidInput(std::string("the value is ") + KindOf(doc) + ", not a JSON object");
  }
  if (columns_.empty()) return Status::Ok();
  // The document's strings live in value_allocator_ (which never frees) until
  // the next Parse(), so cells may point into them.
  for (size_t column_idx = 0; column_idx < columns_.size(); ++column_idx) {
    const ColumnSpec& column = columns_[column_idx];
    const rapidjson::Value* node = &doc;
    if (column.path.empty()) {
      auto member = doc.FindMember(rapidjson::StringRef(column.name.data(), column.name.size()));
      node = member == doc.MemberEnd() ? nullptr : &member->value;
    } else {
      for (const auto& element : column.path) {
        if (element.index >= 0) {
          if (!node->IsArray() || static_cast<size_t>(element.index) >= node->Size()) {
            node = nullptr;
            break;
          }
          node = &(*node)[static_cast<rapidjson::SizeType>(element.index)];
        } else {
          if (!node->IsObject()) {
            node = nullptr;
            break;
          }
          auto member = node->FindMember(rapidjson::StringRef(element.member.data(), element.member.size()));
          if (member == node->MemberEnd()) {
            node = nullptr;
            break;
          }
          node = &member->value;
        }
      }
    }
    SLUICE_RETURN_IF_ERROR(Convert(column, node, &cells_[column_idx]));
  }
  return Status::Ok();
}

Status RowParser::Convert(const ColumnSpec& column, const rapidjson::Value* value, Cell* cell) {
  cell->kind = Cell::Kind::kNull;
  if (value == nullptr || value->IsNull()) return Status::Ok();
  auto fail = [&](const std::string& why) {
    std::string where = column.path_text.empty() ? column.name : column.name + " (" + column.path_text + ")";
    return Status::InvalidInput("column " + where + ": " + Show(*value) + " " + why + " (declared " +
                                ColumnTypeName(column.type) + ")");
  };
  auto set_owned_text = [&](std::string text) {
    cell->owned = std::move(text);
    cell->text = cell->owned;
    cell->kind = Cell::Kind::kText;
  };
  switch (column.type) {
    case ColumnType::kText:
      if (value->IsString()) {
        cell->kind = Cell::Kind::kText;
        cell->text = std::string_view(value->GetString(), value->GetStringLength());
      } else {
        set_owned_text(ToJson(*value));
      }
      return Status::Ok();
    case ColumnType::kJson:
      set_owned_text(ToJson(*value));
      return Status::Ok();
    case ColumnType::kInteger: {
      int64_t parsed = 0;
      if (value->IsInt64()) {
        parsed = value->GetInt64();
      } else if (value->IsUint64()) {
        return fail("is out of range for a 64-bit integer");
      } else if (value->IsDouble()) {
        double number = value->GetDouble();
        if (std::fabs(number) >= 9223372036854775808.0) return fail("is out of range for a 64-bit integer");
        if (!DoubleToInt(number, &parsed)) return fail("is not a whole number");
      } else if (value->IsString()) {
        std::string_view text(value->GetString(), value->GetStringLength());
        if (!ParseInteger(text, &parsed)) {
          double number = 0;
          if (ParseDouble(text, &number) && std::fabs(number) >= 9223372036854775808.0) {
            return fail("is out of range for a 64-bit integer");
          }
          return fail("is not a whole number");
        }
      } else if (value->IsBool()) {
        parsed = value->GetBool() ? 1 : 0;
      } else {
        return fail(std::string("is ") + KindOf(*value) + ", not a whole number");
      }
      cell->kind = Cell::Kind::kInt;
      cell->int_value = parsed;
      return Status::Ok();
    }
    case ColumnType::kReal: {
      double parsed = 0;
      if (value->IsNumber()) {
        parsed = value->GetDouble();
      } else if (value->IsString()) {
        if (!ParseDouble(std::string_view(value->GetString(), value->GetStringLength()), &parsed)) {
          return fail("is not a number");
        }
      } else {
        return fail(std::string("is ") + KindOf(*value) + ", not a number");
      }
      cell->kind = Cell::Kind::kReal;
      cell->real_value = parsed;
      return Status::Ok();
    }
    case ColumnType::kBoolean: {
      int64_t parsed = -1;
      if (value->IsBool()) {
        parsed = value->GetBool() ? 1 : 0;
      } else if (value->IsNumber()) {
        double number = value->GetDouble();
        if (number == 0 || number == 1) parsed = static_cast<int64_t>(number);
      } else if (value->IsString()) {
        std::string text = Lower(Trim(std::string_view(value->GetString(), value->GetStringLength())));
        if (text == "true" || text == "t" || text == "yes" || text == "y" || text == "1") parsed = 1;
        if (text == "false" || text == "f" || text == "no" || text == "n" || text == "0") parsed = 0;
      }
      if (parsed < 0) return fail("is not a boolean (use true/false, 1/0 or \"yes\"/\"no\")");
      cell->kind = Cell::Kind::kInt;
      cell->int_value = parsed;
      return Status::Ok();
    }
  }
  return Status::Ok();
}

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
  std::unique_ptr<StagingWriter> writer(new StagingWriter(db, std::move(columns)));
  writer->retention_ = retention;
  writer->pipeline_ = std::move(pipeline);
  std::string names, placeholders;
  for (const auto& column : writer->parser_.columns()) {
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
  Result<Statement> clear = db->Prepare(
      keep_history ? "DELETE FROM " + QuoteIdentifier(kTable) +
                         " WHERE _sluice_run_id IN (SELECT run_id FROM _sluice_runs WHERE started_at < "
                         "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?)) OR _sluice_run_id NOT IN (SELECT run_id FROM "
                         "_sluice_runs)"
                   : "DELETE FROM " + QuoteIdentifier(kTable));
  if (!clear.ok()) return clear.status();
  writer->insert_ = std::move(*insert);
  writer->quarantine_ = std::move(*quarantine);
  writer->clear_ = std::move(*clear);
  return writer;
}

Status StagingWriter::Clear() {
  if (retention_.count() > 0) {
    clear_.BindText(1, "-" + std::to_string(retention_.count() / 1000.0) + " seconds");
  }
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
// (RowParser accepted it: it checks for NULs and validates the encoding), so
// it need not be scanned again.
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

Status StagingWriter::Write(const Message& message, int64_t run_id, StageCounts* counts) {
  auto parse_start = std::chrono::steady_clock::now();
  Status parsed = message.envelope_error ? Status::InvalidInput(*message.envelope_error) : parser_.Parse(message.value);
  counts->parse_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - parse_start).count();
  if (!parsed.ok()) {
    BindMetadata(&quarantine_, 1, message, false);
    quarantine_.BindText(7, parsed.message());
    quarantine_.BindInt(8, run_id);
    quarantine_.BindText(9, pipeline_);
    Status st = quarantine_.Run();
    quarantine_.Reset();
    if (!st.ok()) return st.WithContext("cannot write to _sluice_quarantine");
    ++counts->quarantined;
    return Status::Ok();
  }
  const auto& cells = parser_.cells();
  int index = 1;
  for (const Cell& cell : cells) {
    switch (cell.kind) {
      case Cell::Kind::kNull: insert_.BindNull(index); break;
      case Cell::Kind::kInt: insert_.BindInt(index, cell.int_value); break;
      case Cell::Kind::kReal: insert_.BindDouble(index, cell.real_value); break;
      case Cell::Kind::kText: insert_.BindText(index, cell.text, true); break;
    }
    ++index;
  }
  BindMetadata(&insert_, index, message, true);
  insert_.BindInt(index + 6, run_id);
  Status st = insert_.Run();
  insert_.Reset();
  if (!st.ok()) return st.WithContext("cannot write to the staging table");
  ++counts->staged;
  return Status::Ok();
}

}  // namespace sluice
