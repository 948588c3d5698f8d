// Seeds implementation: CSV parsing, type inference, checksummed reloads.
#include "sql/seeds.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "sql/catalog.h"

namespace sluice {
namespace {

bool IsInteger(const std::string& text) {
  if (text.empty()) return false;
  char* end = nullptr;
  errno = 0;
  std::strtoll(text.c_str(), &end, 10);
  return *end == '\0' && errno == 0 && text.find_first_of(" \t") == std::string::npos;
}

bool IsReal(const std::string& text) {
  if (text.empty() || text.find_first_of(" \tnNiIxX") != std::string::npos) return false;
  char* end = nullptr;
  errno = 0;
  std::strtod(text.c_str(), &end);
  return *end == '\0' && errno == 0;
}

}  // namespace

Result<CsvTable> ParseCsv(const std::string& input, const std::string& display) {
  // Spreadsheets often start UTF-8 files with a byte-order mark; it is not
  // part of the first column's name.
  const std::string text = input.compare(0, 3, "\xEF\xBB\xBF") == 0 ? input.substr(3) : input;
  CsvTable table;
  std::vector<std::optional<std::string>> row;
  std::string field;
  bool quoted = false;       // inside a quoted field
  bool was_quoted = false;   // the current field was quoted ("" is an empty string, not NULL)
  int line = 1;
  int row_line = 1;
  size_t i = 0;
  auto end_field = [&]() {
    if (field.empty() && !was_quoted) row.emplace_back(std::nullopt);
    else row.emplace_back(field);
    field.clear();
    was_quoted = false;
  };
  auto end_row = [&]() -> Status {
    end_field();
    bool blank = row.size() == 1 && !row[0];
    if (!blank) {
      if (table.header.empty()) {
        std::set<std::string> seen;
        for (size_t column_idx = 0; column_idx < row.size(); ++column_idx) {
          std::string name = row[column_idx].value_or("");
          if (name.empty()) {
            return Status::InvalidInput(display + ":" + std::to_string(row_line) + ": header cell " +
                                        std::to_string(column_idx + 1) + " is empty; every column needs a name");
          }
          if (!seen.insert(name).second) {
            return Status::InvalidInput(display + ":" + std::to_string(row_line) + ": column '" + name +
                                        "' appears twice in the header");
          }
          table.header.push_back(name);
        }
      } else if (row.size() != table.header.size()) {
        return Status::InvalidInput(display + ":" + std::to_string(row_line) + ": row has " + std::to_string(row.size()) +
                                    " fields but the header has " + std::to_string(table.header.size()));
      } else {
        table.rows.push_back(std::move(row));
      }
    }
    row.clear();
    row_line = line;
    return Status::Ok();
  };
  while (i < text.size()) {
    char c = text[i];
    if (quoted) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field += '"';
          ++i;
        } else {
          quoted = false;
        }
      } else {
        if (c == '\n') ++line;
        field += c;
      }
    } else if (c == '"' && field.empty()) {
      quoted = true;
      was_quoted = true;
    } else if (c == ',') {
      end_field();
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      ++line;
      SLUICE_RETURN_IF_ERROR(end_row());
    } else {
      field += c;
    }
    ++i;
  }
  if (quoted) {
    return Status::InvalidInput(display + ":" + std::to_string(row_line) + ": a quoted field is never closed");
  }
  if (!field.empty() || was_quoted || !row.empty()) SLUICE_RETURN_IF_ERROR(end_row());
  if (table.header.empty()) return Status::InvalidInput(display + ": the file is empty; the first line must name the columns");
  return table;
}

std::string Checksum(const std::string& text) {
  uint64_t hash = 14695981039346656037ULL;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 1099511628211ULL;
  }
  char out[17];
  std::snprintf(out, sizeof(out), "%016llx", static_cast<unsigned long long>(hash));
  return out;
}

Status LoadChangedSeeds(Database* db, const std::vector<SeedFile>& seeds, std::vector<std::string>* loaded) {
  for (const auto& seed : seeds) {
    std::ifstream in(seed.path, std::ios::binary);
    if (!in) return Status::IoError("cannot read " + seed.display);
    std::ostringstream content;
    content << in.rdbuf();
    std::string text = content.str();
    std::string checksum = Checksum(text);

    Result<Statement> stored = db->Prepare("SELECT checksum FROM _sluice_seeds WHERE name = ?");
    if (!stored.ok()) return stored.status();
    stored->BindText(1, seed.table);
    Result<bool> row = stored->Step();
    if (!row.ok()) return row.status();
    bool unchanged = *row && stored->ColumnText(0) == checksum;
    stored->Reset();  // an open read statement would block the DROP TABLE below
    if (unchanged && db->TableExists(seed.table)) continue;

    Result<CsvTable> csv = ParseCsv(text, seed.display);
    if (!csv.ok()) return csv.status();
    std::vector<const char*> types(csv->header.size(), "INTEGER");
    for (size_t column_idx = 0; column_idx < csv->header.size(); ++column_idx) {
      bool all_integer = true, all_real = true;
      for (const auto& cells : csv->rows) {
        const auto& cell = cells[column_idx];
        if (!cell) continue;
        all_integer = all_integer && IsInteger(*cell);
        all_real = all_real && IsReal(*cell);
      }
      types[column_idx] = all_integer ? "INTEGER" : all_real ? "REAL" : "TEXT";
    }
    std::string ddl = "DROP TABLE IF EXISTS " + QuoteIdentifier(seed.table) + "; CREATE TABLE " +
                      QuoteIdentifier(seed.table) + " (";
    std::string placeholders;
    for (size_t column_idx = 0; column_idx < csv->header.size(); ++column_idx) {
      ddl += (column_idx ? ", " : "") + QuoteIdentifier(csv->header[column_idx]) + " " + types[column_idx];
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
        if (!cell) insert->BindNull(index);
        else if (types[column_idx][0] == 'I') insert->BindInt(index, std::strtoll(cell->c_str(), nullptr, 10));
        else if (types[column_idx][0] == 'R') insert->BindDouble(index, std::strtod(cell->c_str(), nullptr));
        else insert->BindText(index, *cell);
      }
      Status run = insert->Run();
      insert->Reset();
      if (!run.ok()) return run.WithContext("cannot load " + seed.display);
    }
    Result<Statement> record = db->Prepare(
        "INSERT INTO _sluice_seeds(name, checksum, \"rows\", loaded_at) VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE "
        "SET checksum = excluded.checksum, \"rows\" = excluded.\"rows\", loaded_at = excluded.loaded_at");
    if (!record.ok()) return record.status();
    record->BindText(1, seed.table);
    record->BindText(2, checksum);
    record->BindInt(3, static_cast<int64_t>(csv->rows.size()));
    record->BindText(4, Catalog::Now());
    SLUICE_RETURN_IF_ERROR(record->Run());
    if (loaded) loaded->push_back(seed.table);
  }
  return Status::Ok();
}

}  // namespace sluice
