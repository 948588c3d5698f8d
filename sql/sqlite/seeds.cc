// Seeds into SQLite: column types (declared or inferred), ownership and
// checksummed reloads inside the batch transaction.
#include "sql/sqlite/seeds.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include "sql/sqlite/catalog.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;

// [+-]?[0-9]+
bool LooksInteger(const std::string& text) {
  size_t start = (!text.empty() && (text[0] == '+' || text[0] == '-')) ? 1 : 0;
  if (start == text.size()) return false;
  for (size_t i = start; i < text.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(text[i]))) return false;
  }
  return true;
}

// A whole number that fits 64 bits.
bool ParseInteger(const std::string& text, int64_t* value) {
  if (!LooksInteger(text)) return false;
  char* end = nullptr;
  errno = 0;
  long long parsed = std::strtoll(text.c_str(), &end, 10);
  if (*end != '\0' || errno != 0) return false;
  *value = parsed;
  return true;
}

// A finite decimal number (no spaces, hex, nan or inf).
bool ParseReal(const std::string& text, double* value) {
  if (text.empty() || text.find_first_of(" \t\r\n\f\vnNiIxXpP") != std::string::npos) return false;
  char* end = nullptr;
  errno = 0;
  double parsed = std::strtod(text.c_str(), &end);
  if (*end != '\0' || errno != 0 || !std::isfinite(parsed)) return false;
  *value = parsed;
  return true;
}

// 007, -01, 00.5: a zero that a number would drop, so the cell is an
// identifier or a code. 0, 0.5 and -0.25 are numbers.
bool HasLeadingZero(const std::string& text) {
  size_t start = (!text.empty() && (text[0] == '+' || text[0] == '-')) ? 1 : 0;
  return text.size() >= start + 2 && text[start] == '0' && std::isdigit(static_cast<unsigned char>(text[start + 1]));
}

enum class Kind { kInteger, kReal, kText };

const char* KindName(Kind kind) {
  switch (kind) {
    case Kind::kInteger:
      return "INTEGER";
    case Kind::kReal:
      return "REAL";
    case Kind::kText:
      return "TEXT";
  }
  return "TEXT";
}

// What an undeclared, non-empty cell looks like.
Kind Classify(const std::string& cell, bool quoted) {
  if (quoted || HasLeadingZero(cell)) return Kind::kText;
  int64_t integer = 0;
  double real = 0;
  if (LooksInteger(cell)) return ParseInteger(cell, &integer) ? Kind::kInteger : Kind::kText;
  return ParseReal(cell, &real) ? Kind::kReal : Kind::kText;
}

struct Column {
  std::string name;
  Kind kind = Kind::kText;
  bool declared = false;
};

// Column names and types: `name:TYPE` header cells declare, the others are
// inferred from their cells.
Result<std::vector<Column>> PlanColumns(const CsvTable& csv, const std::string& display) {
  std::vector<std::string> errors;
  std::vector<Column> columns(csv.header.size());
  std::map<std::string, std::string> seen;  // lower-case name -> name as written
  const std::string at = display + ":" + std::to_string(csv.header_line) + ": ";
  for (size_t column_idx = 0; column_idx < csv.header.size(); ++column_idx) {
    const std::string& cell = csv.header[column_idx];
    Column& column = columns[column_idx];
    column.name = cell;
    size_t colon = cell.rfind(':');
    if (colon != std::string::npos) {
      std::string type = LowerAscii(cell.substr(colon + 1));
      column.name = cell.substr(0, colon);
      column.declared = true;
      if (type == "text") column.kind = Kind::kText;
      else if (type == "integer") column.kind = Kind::kInteger;
      else if (type == "real") column.kind = Kind::kReal;
      else {
        errors.push_back(at + "column '" + cell + "': unknown type '" + cell.substr(colon + 1) +
                         "'; a header cell name:TYPE declares TEXT, INTEGER or REAL (as in customer_id:TEXT)");
        continue;
      }
      if (column.name.empty()) {
        errors.push_back(at + "header cell " + std::to_string(column_idx + 1) + " ('" + cell +
                         "') declares a type but has no column name");
        continue;
      }
    }
    auto [it, inserted] = seen.emplace(LowerAscii(column.name), column.name);
    if (!inserted) {
      errors.push_back(it->second == column.name
                           ? at + "column '" + column.name + "' appears twice in the header"
                           : at + "columns '" + it->second + "' and '" + column.name +
                                 "' differ only in case; SQLite column names ignore case, so rename one");
    }
  }
  if (!errors.empty()) return Status::InvalidInput(JoinLines(errors));
  for (size_t column_idx = 0; column_idx < columns.size(); ++column_idx) {
    Column& column = columns[column_idx];
    if (column.declared) continue;
    bool all_integer = true, all_number = true;
    for (size_t row_idx = 0; row_idx < csv.rows.size() && all_number; ++row_idx) {
      const auto& cell = csv.rows[row_idx][column_idx];
      if (!cell) continue;
      Kind kind = Classify(*cell, csv.quoted[row_idx][column_idx]);
      all_integer = all_integer && kind == Kind::kInteger;
      all_number = all_number && kind != Kind::kText;
    }
    column.kind = all_integer ? Kind::kInteger : all_number ? Kind::kReal : Kind::kText;
  }
  return columns;
}

// The _sluice_seeds row of `table`, matched as SQLite matches table names
// (ASCII case ignored): its name as stored and its checksum.
Result<std::optional<std::pair<std::string, std::string>>> StoredSeed(Database* db, const std::string& table) {
  Result<Statement> stored = db->Prepare("SELECT name, checksum FROM _sluice_seeds WHERE name = ? COLLATE NOCASE");
  if (!stored.ok()) return stored.status();
  stored->BindText(1, table);
  Result<bool> row = stored->Step();
  if (!row.ok()) return row.status();
  std::optional<std::pair<std::string, std::string>> found;
  if (*row) found = std::make_pair(stored->ColumnText(0), stored->ColumnText(1));
  stored->Reset();  // an open read statement would block a DROP TABLE
  return found;
}

// The type ('table', 'view', 'index') and name of the schema object named
// `name` in the main database, case ignored, if any.
Result<std::optional<std::pair<std::string, std::string>>> SchemaObject(Database* db, const std::string& name) {
  Result<Statement> object = db->Prepare(
      "SELECT type, name FROM main.sqlite_schema WHERE name = ? COLLATE NOCASE AND type IN ('table', 'view', 'index')");
  if (!object.ok()) return object.status();
  object->BindText(1, name);
  Result<bool> row = object->Step();
  if (!row.ok()) return row.status();
  std::optional<std::pair<std::string, std::string>> found;
  if (*row) found = std::make_pair(object->ColumnText(0), object->ColumnText(1));
  object->Reset();
  return found;
}

}  // namespace

Status LoadChangedSeeds(Database* db, const std::vector<SeedFile>& seeds, std::vector<std::string>* loaded) {
  SLUICE_RETURN_IF_ERROR(CheckSeedNames(seeds));
  for (const auto& seed : seeds) {
    // One snapshot: what is checksummed is what is loaded.
    Result<std::string> text = ReadSeedSnapshot(seed.path, seed.display);
    if (!text.ok()) return text.status();
    std::string checksum = SeedChecksum(*text);

    auto stored = StoredSeed(db, seed.table);
    if (!stored.ok()) return stored.status();
    auto existing = SchemaObject(db, seed.table);
    if (!existing.ok()) return existing.status();
    if (*stored && (*stored)->second == checksum && *existing && (*existing)->first == "table") continue;
    if (!*stored && *existing) {
      // Not loaded from a seed: schema.sql, a step or someone else created
      // it, and dropping it would lose its rows.
      return Status::InvalidConfig(seed.display + ": the database already has a " + (*existing)->first + " named " +
                                   (*existing)->second +
                                   " that sluice did not load from a seed (schema.sql, a step or a person created it); "
                                   "sluice will not drop it. Rename the seed file or that " + (*existing)->first);
    }

    Result<CsvTable> csv = ParseCsv(*text, seed.display);
    if (!csv.ok()) return csv.status();
    Result<std::vector<Column>> columns = PlanColumns(*csv, seed.display);
    if (!columns.ok()) return columns.status();

    // Every cell as it will be bound; declared types are checked here.
    std::vector<std::string> errors;
    size_t bad_cells = 0;
    for (size_t row_idx = 0; row_idx < csv->rows.size(); ++row_idx) {
      for (size_t column_idx = 0; column_idx < columns->size(); ++column_idx) {
        const Column& column = (*columns)[column_idx];
        const auto& cell = csv->rows[row_idx][column_idx];
        if (!cell || !column.declared || column.kind == Kind::kText) continue;
        int64_t integer = 0;
        double real = 0;
        bool fits = column.kind == Kind::kInteger ? ParseInteger(*cell, &integer) : ParseReal(*cell, &real);
        if (!fits && ++bad_cells <= kMaxSeedErrorsPerFile) {
          errors.push_back(seed.display + ":" + std::to_string(csv->lines[row_idx]) + ": column " + column.name +
                           " is declared " + KindName(column.kind) + " but '" + *cell + "' is not " +
                           (column.kind == Kind::kInteger ? "a whole number that fits 64 bits" : "a number"));
        }
      }
    }
    if (bad_cells > kMaxSeedErrorsPerFile) {
      errors.push_back(seed.display + ": " + std::to_string(bad_cells - kMaxSeedErrorsPerFile) +
                       " more cells that do not fit their declared type");
    }
    if (!errors.empty()) return Status::InvalidInput(JoinLines(errors));

    std::string ddl = "DROP TABLE IF EXISTS " + QuoteIdentifier(seed.table) + "; CREATE TABLE " +
                      QuoteIdentifier(seed.table) + " (";
    std::string placeholders;
    for (size_t column_idx = 0; column_idx < columns->size(); ++column_idx) {
      const Column& column = (*columns)[column_idx];
      ddl += (column_idx ? ", " : "") + QuoteIdentifier(column.name) + " " + KindName(column.kind);
      placeholders += column_idx ? ", ?" : "?";
    }
    ddl += ");";
    Status st = db->Exec(ddl);
    if (!st.ok()) return st.WithContext("cannot create seed table from " + seed.display);
    Result<Statement> insert = db->Prepare("INSERT INTO " + QuoteIdentifier(seed.table) + " VALUES (" + placeholders + ")");
    if (!insert.ok()) return insert.status().WithContext(seed.display);
    for (const auto& cells : csv->rows) {
      for (size_t column_idx = 0; column_idx < cells.size(); ++column_idx) {
        int index = static_cast<int>(column_idx) + 1;
        const auto& cell = cells[column_idx];
        int64_t integer = 0;
        double real = 0;
        if (!cell) {
          insert->BindNull(index);
        } else if ((*columns)[column_idx].kind == Kind::kInteger && ParseInteger(*cell, &integer)) {
          insert->BindInt(index, integer);
        } else if ((*columns)[column_idx].kind == Kind::kReal && ParseReal(*cell, &real)) {
          insert->BindDouble(index, real);
        } else {
          insert->BindText(index, *cell);
        }
      }
      Status run = insert->Run();
      insert->Reset();
      if (!run.ok()) return run.WithContext("cannot load " + seed.display);
    }
    // The record names the table as this seed spells it; a row from a file
    // whose name differed only in case is replaced.
    Result<Statement> forget = db->Prepare("DELETE FROM _sluice_seeds WHERE name = ? COLLATE NOCASE");
    if (!forget.ok()) return forget.status();
    forget->BindText(1, seed.table);
    SLUICE_RETURN_IF_ERROR(forget->Run());
    Result<Statement> record =
        db->Prepare("INSERT INTO _sluice_seeds(name, checksum, \"rows\", loaded_at) VALUES (?, ?, ?, ?)");
    if (!record.ok()) return record.status();
    record->BindText(1, seed.table);
    record->BindText(2, checksum);
    record->BindInt(3, static_cast<int64_t>(csv->rows.size()));
    record->BindText(4, NowIso());
    SLUICE_RETURN_IF_ERROR(record->Run());
    if (loaded) loaded->push_back(seed.table);
  }
  return Status::Ok();
}

Result<bool> ForgetSeedChecksum(Database* db, const std::string& table) {
  if (!db->TableExists("_sluice_seeds")) return false;
  Result<Statement> forget = db->Prepare("UPDATE _sluice_seeds SET checksum = '' WHERE name = ? COLLATE NOCASE");
  if (!forget.ok()) return forget.status();
  forget->BindText(1, table);
  SLUICE_RETURN_IF_ERROR(forget->Run());
  return db->Changes() > 0;
}

}  // namespace sluice
