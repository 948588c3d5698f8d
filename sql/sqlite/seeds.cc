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
    Result<std::vector<SeedColumn>> columns = PlanSeedColumns(*csv, seed.display);
    if (!columns.ok()) return columns.status();

    // Every cell as it will be bound; declared types are checked here.
    std::vector<std::string> errors;
    size_t bad_cells = 0;
    for (size_t row_idx = 0; row_idx < csv->rows.size(); ++row_idx) {
      for (size_t column_idx = 0; column_idx < columns->size(); ++column_idx) {
        const SeedColumn& column = (*columns)[column_idx];
        const auto& cell = csv->rows[row_idx][column_idx];
        if (!cell || !column.declared || column.type == SeedType::kText) continue;
        int64_t integer = 0;
        double real = 0;
        bool fits = column.type == SeedType::kInteger ? ParseSeedInteger(*cell, &integer) : ParseSeedReal(*cell, &real);
        if (!fits && ++bad_cells <= kMaxSeedErrorsPerFile) {
          errors.push_back(seed.display + ":" + std::to_string(csv->lines[row_idx]) + ": column " + column.name +
                           " is declared " + SeedTypeName(column.type) + " but '" + *cell + "' is not " +
                           (column.type == SeedType::kInteger ? "a whole number that fits 64 bits" : "a number"));
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
      const SeedColumn& column = (*columns)[column_idx];
      ddl += (column_idx ? ", " : "") + QuoteIdentifier(column.name) + " " + SeedTypeName(column.type);
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
        } else if ((*columns)[column_idx].type == SeedType::kInteger && ParseSeedInteger(*cell, &integer)) {
          insert->BindInt(index, integer);
        } else if ((*columns)[column_idx].type == SeedType::kReal && ParseSeedReal(*cell, &real)) {
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
