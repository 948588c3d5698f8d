// Seeds: dimension tables from CSV files. seeds/customers.csv becomes table
// customers. The first row is the header (column names); column types are
// inferred (INTEGER when every non-empty cell is a whole number, REAL when
// every one is a number, else TEXT); an empty cell is NULL. A seed is
// reloaded, inside the batch transaction, only when its content changed
// (checksum in _sluice_seeds).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "engine/status.h"
#include "sql/database.h"

namespace sluice {

struct SeedFile {
  std::string path;     // on disk
  std::string display;  // in messages: "seeds/customers.csv"
  std::string table;    // "customers"
};

struct CsvTable {
  std::vector<std::string> header;
  std::vector<std::vector<std::optional<std::string>>> rows;  // nullopt: empty cell
};

// Parses RFC 4180 CSV (quoted fields, doubled quotes, embedded newlines).
// Errors name `display` and the line: a ragged row, an unterminated quote, an
// empty or duplicate header cell.
Result<CsvTable> ParseCsv(const std::string& text, const std::string& display);

// FNV-1a 64 of `text`, as 16 hex digits.
std::string Checksum(const std::string& text);

// Loads every seed whose checksum differs from the stored one. `loaded`
// receives the tables (re)loaded. Call inside a transaction.
Status LoadChangedSeeds(Database* db, const std::vector<SeedFile>& seeds, std::vector<std::string>* loaded);

}  // namespace sluice
