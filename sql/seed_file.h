// Seeds: dimension tables from CSV files. seeds/customers.csv becomes table
// customers. The first row is the header (column names, each optionally
// annotated with a type: `customer_id:TEXT`); undeclared column types are
// inferred (INTEGER when every non-empty cell is a 64-bit whole number, REAL
// when every one is a number, else TEXT; a quoted cell, a number with a
// leading zero such as 007 and a whole number beyond 64 bits are text); an
// empty cell is NULL. A seed is reloaded, inside the batch transaction, only
// when its content changed (checksum in _sluice_seeds), from one complete
// snapshot of the file; sluice never drops a table it did not load from a seed.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace sluice {

struct SeedFile {
  std::string path;     // on disk
  std::string display;  // in messages: "seeds/customers.csv"
  std::string table;    // "customers"
};

struct CsvTable {
  std::vector<std::string> header;
  std::vector<std::vector<std::optional<std::string>>> rows;  // nullopt: empty cell
  // Parallel to `rows`: which cells were quoted in the file, and the line
  // each row starts on.
  std::vector<std::vector<bool>> quoted;
  std::vector<int> lines;
  int header_line = 1;
};

// Parses RFC 4180 CSV (quoted fields, doubled quotes, embedded newlines).
// Errors name `display` and the line: a ragged row, an unterminated quote, an
// empty or duplicate header cell. Every ragged row is reported (one per line
// of the message, up to 20), not only the first.
Result<CsvTable> ParseCsv(const std::string& text, const std::string& display);

// FNV-1a 64 of `text`, as 16 hex digits.
std::string Checksum(const std::string& text);

// What _sluice_seeds.checksum holds for a seed file with content `text`: its
// Checksum() and the version of the loading rules ("<16 hex>/2"), so that a
// seed loaded under older type rules is loaded again once.
std::string SeedChecksum(const std::string& text);

// Reads the whole file into memory and returns it only if the file did not
// change while it was read (size, modification time and inode before and
// after; re-read up to 5 times). IoError naming `display` otherwise.
Result<std::string> ReadSeedSnapshot(const std::string& path, const std::string& display);

// The seeds of the pipeline directory `dir` (dir/seeds/*.csv), sorted, with
// every problem of the directory in `problems` (all of them, not the first):
// a file name that cannot be a table name, a name that differs only in case
// from another seed's (SQLite table names ignore case), a file whose
// extension is .csv in another case (it would not be loaded). Seeds with a
// bad name are left out of the result.
std::vector<SeedFile> FindSeeds(const std::string& dir, std::vector<std::string>* problems);

// Fails, naming both files, when two seeds would load into the same table
// (names that differ only in case).
Status CheckSeedNames(const std::vector<SeedFile>& seeds);

// The type of a seed column: declared in the header (`customer_id:TEXT`) or
// inferred from its cells (the rules above). Every target creates the same
// columns from these, in its own types.
enum class SeedType { kInteger, kReal, kText };
const char* SeedTypeName(SeedType type);  // "INTEGER", "REAL", "TEXT"
struct SeedColumn {
  std::string name;
  SeedType type = SeedType::kText;
  bool declared = false;
};
// The columns of a parsed seed file. Errors (an unknown type, a declared
// type without a name, a name twice, names differing only in case) name
// `display` and the header line, all of them.
Result<std::vector<SeedColumn>> PlanSeedColumns(const CsvTable& csv, const std::string& display);
// A cell as the loaders read it: a whole number that fits 64 bits; a finite
// decimal number (no spaces, hex, nan or inf).
bool ParseSeedInteger(const std::string& text, int64_t* value);
bool ParseSeedReal(const std::string& text, double* value);

// Errors beyond this many in one file are summarised in one line.
constexpr size_t kMaxSeedErrorsPerFile = 20;
// The lines joined with newlines (one error per line).
std::string JoinLines(const std::vector<std::string>& lines);
// `text` with ASCII letters in lower case (SQL names ignore their case).
std::string LowerAscii(std::string text);

// For tests: called with the path and the attempt number (0, 1, ...) after a
// seed file was read and before it is checked for changes. nullptr removes it.
void SetSeedReadHookForTesting(std::function<void(const std::string& path, int attempt)> hook);

}  // namespace sluice
