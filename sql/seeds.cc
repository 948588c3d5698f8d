// Seeds implementation: CSV parsing, stable snapshots, column types (declared
// or inferred), ownership and checksummed reloads.
#include "sql/seeds.h"

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

#include "sql/catalog.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;

// Errors beyond this many in one file are summarised in one line.
constexpr size_t kMaxErrorsPerFile = 20;
// The version of the loading rules, stored after the file's checksum: a seed
// loaded under other rules (version 1: leading zeros dropped, 20-digit ids
// as REAL, quoted numbers as numbers) is loaded again once.
constexpr const char* kRulesVersion = "/2";
constexpr int kReadAttempts = 5;

std::function<void(const std::string&, int)>& ReadHook() {
  static std::function<void(const std::string&, int)> hook;
  return hook;
}

std::string Join(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& line : lines) out += (out.empty() ? "" : "\n") + line;
  return out;
}

std::string LowerAscii(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

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
  if (!errors.empty()) return Status::InvalidInput(Join(errors));
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

struct FileStamp {
  bool ok = false;
  dev_t device = 0;
  ino_t inode = 0;
  off_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  bool operator==(const FileStamp& other) const {
    return ok && other.ok && device == other.device && inode == other.inode && size == other.size &&
           mtime_ns == other.mtime_ns && ctime_ns == other.ctime_ns;
  }
};

FileStamp Stamp(const struct stat& info) {
  FileStamp stamp;
  stamp.ok = true;
  stamp.device = info.st_dev;
  stamp.inode = info.st_ino;
  stamp.size = info.st_size;
  stamp.mtime_ns = static_cast<int64_t>(info.st_mtim.tv_sec) * 1000000000 + info.st_mtim.tv_nsec;
  stamp.ctime_ns = static_cast<int64_t>(info.st_ctim.tv_sec) * 1000000000 + info.st_ctim.tv_nsec;
  return stamp;
}

FileStamp StampOfPath(const std::string& path) {
  struct stat info;
  if (::stat(path.c_str(), &info) != 0) return FileStamp{};
  return Stamp(info);
}

FileStamp StampOfFd(int fd) {
  struct stat info;
  if (::fstat(fd, &info) != 0) return FileStamp{};
  return Stamp(info);
}

// One read of the whole file, with the file's stamp before and after.
bool ReadOnce(const std::string& path, int attempt, std::string* text, FileStamp* before, FileStamp* after,
              std::string* error) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *error = std::strerror(errno);
    return false;
  }
  *before = StampOfFd(fd);
  text->clear();
  char buffer[1 << 16];
  while (true) {
    ssize_t got = ::read(fd, buffer, sizeof(buffer));
    if (got < 0) {
      if (errno == EINTR) continue;
      *error = std::strerror(errno);
      ::close(fd);
      return false;
    }
    if (got == 0) break;
    text->append(buffer, static_cast<size_t>(got));
  }
  if (ReadHook()) ReadHook()(path, attempt);
  *after = StampOfFd(fd);
  ::close(fd);
  return true;
}

bool BadSeedName(const std::string& table) {
  std::string lower = LowerAscii(table);
  return !IsPlainIdentifier(table) || lower.rfind("_sluice_", 0) == 0 || lower.rfind("sqlite_", 0) == 0 ||
         lower == "batch";
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

void SetSeedReadHookForTesting(std::function<void(const std::string& path, int attempt)> hook) {
  ReadHook() = std::move(hook);
}

Result<CsvTable> ParseCsv(const std::string& input, const std::string& display) {
  // Spreadsheets often start UTF-8 files with a byte-order mark; it is not
  // part of the first column's name.
  const std::string text = input.compare(0, 3, "\xEF\xBB\xBF") == 0 ? input.substr(3) : input;
  CsvTable table;
  std::vector<std::string> errors;
  size_t ragged = 0;  // ragged rows, reported or not
  bool have_header = false;
  std::vector<std::optional<std::string>> row;
  std::vector<bool> row_quoted;
  std::string field;
  bool quoted = false;       // inside a quoted field
  bool was_quoted = false;   // the current field was quoted ("" is an empty string, not NULL)
  int line = 1;
  int row_line = 1;
  size_t i = 0;
  auto end_field = [&]() {
    if (field.empty() && !was_quoted) row.emplace_back(std::nullopt);
    else row.emplace_back(field);
    row_quoted.push_back(was_quoted);
    field.clear();
    was_quoted = false;
  };
  auto end_row = [&]() {
    end_field();
    bool blank = row.size() == 1 && !row[0];
    if (!blank) {
      if (!have_header) {
        have_header = true;
        table.header_line = row_line;
        std::set<std::string> seen;
        for (size_t column_idx = 0; column_idx < row.size(); ++column_idx) {
          std::string name = row[column_idx].value_or("");
          if (name.empty()) {
            errors.push_back(display + ":" + std::to_string(row_line) + ": header cell " +
                             std::to_string(column_idx + 1) + " is empty; every column needs a name");
          } else if (!seen.insert(name).second) {
            errors.push_back(display + ":" + std::to_string(row_line) + ": column '" + name +
                             "' appears twice in the header");
          }
          table.header.push_back(name);
        }
      } else if (row.size() != table.header.size()) {
        if (++ragged <= kMaxErrorsPerFile) {
          errors.push_back(display + ":" + std::to_string(row_line) + ": row has " + std::to_string(row.size()) +
                           " fields but the header has " + std::to_string(table.header.size()));
        }
      } else {
        table.rows.push_back(std::move(row));
        table.quoted.push_back(std::move(row_quoted));
        table.lines.push_back(row_line);
      }
    }
    row.clear();
    row_quoted.clear();
    row_line = line;
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
      end_row();
    } else {
      field += c;
    }
    ++i;
  }
  if (quoted) {
    errors.push_back(display + ":" + std::to_string(row_line) + ": a quoted field is never closed");
  } else if (!field.empty() || was_quoted || !row.empty()) {
    end_row();
  }
  if (ragged > kMaxErrorsPerFile) {
    errors.push_back(display + ": " + std::to_string(ragged - kMaxErrorsPerFile) +
                     " more rows with the wrong number of fields");
  }
  if (!have_header && errors.empty()) {
    errors.push_back(display + ": the file is empty; the first line must name the columns");
  }
  if (!errors.empty()) return Status::InvalidInput(Join(errors));
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

std::string SeedChecksum(const std::string& text) { return Checksum(text) + kRulesVersion; }

Result<std::string> ReadSeedSnapshot(const std::string& path, const std::string& display) {
  std::string text;
  for (int attempt = 0; attempt < kReadAttempts; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(20 * attempt));
    FileStamp before, after;
    std::string error;
    if (!ReadOnce(path, attempt, &text, &before, &after, &error)) {
      return Status::IoError("cannot read " + display + (error.empty() ? "" : ": " + error));
    }
    // The file did not change while it was read, all of it was read, and the
    // path still names the file that was read (not replaced by a rename).
    if (before == after && static_cast<off_t>(text.size()) == after.size && StampOfPath(path) == after) {
      return text;
    }
  }
  return Status::IoError("cannot read " + display + ": it kept changing while it was read (" +
                         std::to_string(kReadAttempts) +
                         " attempts); write the new version to another file and rename it over the seed");
}

std::vector<SeedFile> FindSeeds(const std::string& dir, std::vector<std::string>* problems) {
  std::vector<SeedFile> seeds;
  fs::path folder = fs::path(dir) / "seeds";
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) return seeds;
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(folder, ec)) {
    if (!entry.is_regular_file(ec)) continue;
    std::string extension = entry.path().extension().string();
    if (extension == ".csv") {
      files.push_back(entry.path());
    } else if (LowerAscii(extension) == ".csv") {
      problems->push_back("seeds/" + entry.path().filename().string() + ": not loaded: a seed's file name must end in " +
                          ".csv in lower case; rename it to " + entry.path().stem().string() + ".csv");
    }
  }
  std::sort(files.begin(), files.end());
  for (const auto& file : files) {
    std::string table = file.stem().string();
    std::string display = "seeds/" + file.filename().string();
    if (BadSeedName(table)) {
      problems->push_back(display + ": a seed's file name becomes its table name, so it must be letters, digits and _ "
                                    "(not starting with a digit, not _sluice_*, sqlite_* or batch); rename the file");
      continue;
    }
    seeds.push_back({file.string(), display, table});
  }
  Status names = CheckSeedNames(seeds);
  if (!names.ok()) {
    std::string message = names.message();
    size_t start = 0;
    while (start <= message.size()) {
      size_t end = message.find('\n', start);
      problems->push_back(message.substr(start, end == std::string::npos ? std::string::npos : end - start));
      if (end == std::string::npos) break;
      start = end + 1;
    }
  }
  return seeds;
}

Status CheckSeedNames(const std::vector<SeedFile>& seeds) {
  std::vector<std::string> errors;
  std::map<std::string, const SeedFile*> tables;  // lower-case table -> first seed
  for (const auto& seed : seeds) {
    auto [it, inserted] = tables.emplace(LowerAscii(seed.table), &seed);
    if (!inserted) {
      errors.push_back(seed.display + ": loads into the same table as " + it->second->display +
                       " (SQLite table names ignore case), so one would overwrite the other; rename or remove one");
    }
  }
  if (!errors.empty()) return Status::InvalidConfig(Join(errors));
  return Status::Ok();
}

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
        if (!fits && ++bad_cells <= kMaxErrorsPerFile) {
          errors.push_back(seed.display + ":" + std::to_string(csv->lines[row_idx]) + ": column " + column.name +
                           " is declared " + KindName(column.kind) + " but '" + *cell + "' is not " +
                           (column.kind == Kind::kInteger ? "a whole number that fits 64 bits" : "a number"));
        }
      }
    }
    if (bad_cells > kMaxErrorsPerFile) {
      errors.push_back(seed.display + ": " + std::to_string(bad_cells - kMaxErrorsPerFile) +
                       " more cells that do not fit their declared type");
    }
    if (!errors.empty()) return Status::InvalidInput(Join(errors));

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
    record->BindText(4, Catalog::Now());
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
