// Seed files: CSV parsing, stable snapshots of a file, the seeds of a
// pipeline directory and their names. Nothing here touches a database.
#include "sql/seed_file.h"

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

#include "sql/identifier.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;

// The version of the loading rules, stored after the file's checksum: a seed
// loaded under other rules (version 1: leading zeros dropped, 20-digit ids
// as REAL, quoted numbers as numbers) is loaded again once.
constexpr const char* kRulesVersion = "/2";
constexpr int kReadAttempts = 5;

std::function<void(const std::string&, int)>& ReadHook() {
  static std::function<void(const std::string&, int)> hook;
  return hook;
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

}  // namespace

std::string JoinLines(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& line : lines) out += (out.empty() ? "" : "\n") + line;
  return out;
}

std::string LowerAscii(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

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
        if (++ragged <= kMaxSeedErrorsPerFile) {
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
  if (ragged > kMaxSeedErrorsPerFile) {
    errors.push_back(display + ": " + std::to_string(ragged - kMaxSeedErrorsPerFile) +
                     " more rows with the wrong number of fields");
  }
  if (!have_header && errors.empty()) {
    errors.push_back(display + ": the file is empty; the first line must name the columns");
  }
  if (!errors.empty()) return Status::InvalidInput(JoinLines(errors));
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
  if (!errors.empty()) return Status::InvalidConfig(JoinLines(errors));
  return Status::Ok();
}

// --- Column types -------------------------------------------------------------

// [+-]?[0-9]+
static bool LooksInteger(const std::string& text) {
  size_t start = (!text.empty() && (text[0] == '+' || text[0] == '-')) ? 1 : 0;
  if (start == text.size()) return false;
  for (size_t i = start; i < text.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(text[i]))) return false;
  }
  return true;
}

// A whole number that fits 64 bits.
bool ParseSeedInteger(const std::string& text, int64_t* value) {
  if (!LooksInteger(text)) return false;
  char* end = nullptr;
  errno = 0;
  long long parsed = std::strtoll(text.c_str(), &end, 10);
  if (*end != '\0' || errno != 0) return false;
  *value = parsed;
  return true;
}

// A finite decimal number (no spaces, hex, nan or inf).
bool ParseSeedReal(const std::string& text, double* value) {
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
static bool HasLeadingZero(const std::string& text) {
  size_t start = (!text.empty() && (text[0] == '+' || text[0] == '-')) ? 1 : 0;
  return text.size() >= start + 2 && text[start] == '0' && std::isdigit(static_cast<unsigned char>(text[start + 1]));
}

const char* SeedTypeName(SeedType kind) {
  switch (kind) {
    case SeedType::kInteger:
      return "INTEGER";
    case SeedType::kReal:
      return "REAL";
    case SeedType::kText:
      return "TEXT";
  }
  return "TEXT";
}

// What an undeclared, non-empty cell looks like.
static SeedType Classify(const std::string& cell, bool quoted) {
  if (quoted || HasLeadingZero(cell)) return SeedType::kText;
  int64_t integer = 0;
  double real = 0;
  if (LooksInteger(cell)) return ParseSeedInteger(cell, &integer) ? SeedType::kInteger : SeedType::kText;
  return ParseSeedReal(cell, &real) ? SeedType::kReal : SeedType::kText;
}

// Column names and types: `name:TYPE` header cells declare, the others are
// inferred from their cells.
Result<std::vector<SeedColumn>> PlanSeedColumns(const CsvTable& csv, const std::string& display) {
  std::vector<std::string> errors;
  std::vector<SeedColumn> columns(csv.header.size());
  std::map<std::string, std::string> seen;  // lower-case name -> name as written
  const std::string at = display + ":" + std::to_string(csv.header_line) + ": ";
  for (size_t column_idx = 0; column_idx < csv.header.size(); ++column_idx) {
    const std::string& cell = csv.header[column_idx];
    SeedColumn& column = columns[column_idx];
    column.name = cell;
    size_t colon = cell.rfind(':');
    if (colon != std::string::npos) {
      std::string type = LowerAscii(cell.substr(colon + 1));
      column.name = cell.substr(0, colon);
      column.declared = true;
      if (type == "text") column.type = SeedType::kText;
      else if (type == "integer") column.type = SeedType::kInteger;
      else if (type == "real") column.type = SeedType::kReal;
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
                                 "' differ only in case; SQL column names ignore case, so rename one");
    }
  }
  if (!errors.empty()) return Status::InvalidInput(JoinLines(errors));
  for (size_t column_idx = 0; column_idx < columns.size(); ++column_idx) {
    SeedColumn& column = columns[column_idx];
    if (column.declared) continue;
    bool all_integer = true, all_number = true;
    for (size_t row_idx = 0; row_idx < csv.rows.size() && all_number; ++row_idx) {
      const auto& cell = csv.rows[row_idx][column_idx];
      if (!cell) continue;
      SeedType kind = Classify(*cell, csv.quoted[row_idx][column_idx]);
      all_integer = all_integer && kind == SeedType::kInteger;
      all_number = all_number && kind != SeedType::kText;
    }
    column.type = all_integer ? SeedType::kInteger : all_number ? SeedType::kReal : SeedType::kText;
  }
  return columns;
}

}  // namespace sluice
