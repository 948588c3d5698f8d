// Fixtures implementation: each case through a fresh in-memory pipeline.
#include "engine/fixtures.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <optional>
#include <sstream>

#include "connectors/file_source.h"
#include "engine/config.h"
#include "engine/engine.h"
#include "sql/identifier.h"
#include "sql/seed_file.h"

namespace sluice {
namespace fs = std::filesystem;

namespace {

using Row = std::vector<std::optional<std::string>>;

std::string ShowRow(const Row& row) {
  std::string out;
  for (size_t column_idx = 0; column_idx < row.size(); ++column_idx) {
    if (column_idx) out += " | ";
    out += row[column_idx] ? *row[column_idx] : "NULL";
  }
  return out;
}

// A value of the table, with its SQLite storage class.
struct Actual {
  Value::Type type = Value::Type::kNull;
  int64_t integer = 0;
  double real = 0;
  std::string text;  // as SQLite renders it (REAL: 15 significant digits)
};
using ActualRow = std::vector<Actual>;

std::string ShowActual(const Actual& value) {
  if (value.type == Value::Type::kNull) return "NULL";
  if (value.type == Value::Type::kText &&
      (value.text.empty() || std::isspace(static_cast<unsigned char>(value.text.front())) ||
       std::isspace(static_cast<unsigned char>(value.text.back())))) {
    return "'" + value.text + "'";  // so that '' and ' 5' can be told from NULL and 5
  }
  return value.text;
}

std::string ShowActualRow(const ActualRow& row) {
  std::string out;
  for (size_t column_idx = 0; column_idx < row.size(); ++column_idx) {
    if (column_idx) out += " | ";
    out += ShowActual(row[column_idx]);
  }
  return out;
}

// An exact decimal number: digits * 10^exponent, digits without leading or
// trailing zeros (empty for zero).
struct Decimal {
  bool negative = false;
  std::string digits;
  int64_t exponent = 0;
  bool operator==(const Decimal& other) const {
    if (digits.empty() || other.digits.empty()) return digits.empty() && other.digits.empty();
    return negative == other.negative && digits == other.digits && exponent == other.exponent;
  }
};

void Normalize(Decimal* number) {
  size_t first = number->digits.find_first_not_of('0');
  if (first == std::string::npos) {
    number->digits.clear();
    number->exponent = 0;
    return;
  }
  number->digits.erase(0, first);
  size_t last = number->digits.find_last_not_of('0');
  number->exponent += static_cast<int64_t>(number->digits.size() - last - 1);
  number->digits.erase(last + 1);
}

// Parses [+-]?(D+(.D*)?|.D+)([eE][+-]?D+)? exactly. `decimals` receives the
// number of digits written after the point, `scientific` whether it had an
// exponent.
std::optional<Decimal> ParseDecimal(const std::string& text, int* decimals = nullptr, bool* scientific = nullptr) {
  Decimal number;
  size_t i = 0;
  if (i < text.size() && (text[i] == '+' || text[i] == '-')) number.negative = text[i++] == '-';
  size_t integer_digits = 0, fraction_digits = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    number.digits += text[i++];
    ++integer_digits;
  }
  if (i < text.size() && text[i] == '.') {
    ++i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
      number.digits += text[i++];
      ++fraction_digits;
    }
  }
  if (integer_digits + fraction_digits == 0) return std::nullopt;
  number.exponent = -static_cast<int64_t>(fraction_digits);
  bool has_exponent = false;
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    bool negative = false;
    if (i < text.size() && (text[i] == '+' || text[i] == '-')) negative = text[i++] == '-';
    size_t start = i;
    int64_t exponent = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
      if (exponent < 100000) exponent = exponent * 10 + (text[i] - '0');
      ++i;
    }
    if (i == start) return std::nullopt;
    number.exponent += negative ? -exponent : exponent;
    has_exponent = true;
  }
  if (i != text.size()) return std::nullopt;
  if (decimals) *decimals = static_cast<int>(fraction_digits);
  if (scientific) *scientific = has_exponent;
  Normalize(&number);
  return number;
}

// `number` rounded to `places` decimals, half away from zero.
Decimal RoundTo(Decimal number, int places) {
  int64_t target = -static_cast<int64_t>(places);
  if (number.digits.empty() || number.exponent >= target) return number;
  size_t drop = static_cast<size_t>(target - number.exponent);
  if (drop > number.digits.size()) {
    number.digits.clear();  // below half a unit of the last place
    number.exponent = 0;
    return number;
  }
  bool up = number.digits[number.digits.size() - drop] >= '5';
  std::string kept = number.digits.substr(0, number.digits.size() - drop);
  if (up) {
    int idx = static_cast<int>(kept.size()) - 1;
    while (idx >= 0 && kept[idx] == '9') kept[idx--] = '0';
    if (idx >= 0) ++kept[idx];
    else kept.insert(kept.begin(), '1');
  }
  number.digits = kept;
  number.exponent = target;
  Normalize(&number);
  return number;
}

// How an expected cell matches a value of the table:
//   NULL (empty cell)  only NULL
//   INTEGER            the same whole number, exactly (42, +42, 42.0, 4.2e1)
//   REAL               the value rounded to the decimals written (12.6 matches
//                      12.6000000001 and 12.64, not 12.66); a cell written
//                      without a point or with an exponent must equal it, to
//                      the 15 significant digits SQLite shows
//   TEXT, BLOB         the same characters (01234 is not 1234, ' 5' is not 5)
// With a tolerance (header `column~0.01`), numbers match within it.
bool CellMatches(const std::optional<std::string>& expected, const Actual& actual, std::optional<double> tolerance) {
  if (!expected || actual.type == Value::Type::kNull) return !expected && actual.type == Value::Type::kNull;
  if (actual.type == Value::Type::kText || actual.type == Value::Type::kBlob) return *expected == actual.text;
  int decimals = 0;
  bool scientific = false;
  std::optional<Decimal> want = ParseDecimal(*expected, &decimals, &scientific);
  if (!want) return false;
  if (tolerance) {
    double value = actual.type == Value::Type::kInteger ? static_cast<double>(actual.integer) : actual.real;
    double target = std::strtod(expected->c_str(), nullptr);
    double slack = 4 * std::numeric_limits<double>::epsilon() * std::max(std::fabs(value), std::fabs(target));
    return std::fabs(value - target) <= *tolerance + slack;
  }
  if (actual.type == Value::Type::kInteger) return *want == *ParseDecimal(std::to_string(actual.integer));
  if (actual.type == Value::Type::kDecimal) {
    // Every digit the database holds, compared exactly: to the decimals
    // written in the cell, like a REAL, but without a double in between
    // (a sum of bigints past 2^53 keeps its last digits).
    std::optional<Decimal> have = ParseDecimal(actual.text);
    if (!have) return false;  // NaN, Infinity
    if (scientific || expected->find('.') == std::string::npos) return *want == *have;
    return *want == RoundTo(*have, decimals);
  }
  if (std::strtod(expected->c_str(), nullptr) == actual.real) return true;  // all the digits, written out
  char shown[64];
  std::snprintf(shown, sizeof(shown), "%.15g", actual.real);
  std::optional<Decimal> have = ParseDecimal(shown);
  if (!have) return false;  // inf, nan
  if (scientific || expected->find('.') == std::string::npos) return *want == *have;
  return *want == RoundTo(*have, decimals);
}

// Maximum matching of expected rows to actual rows (a row matches one row
// at most); `pair[actual]` receives the expected row or -1.
bool Augment(size_t want, const std::vector<std::vector<size_t>>& candidates, std::vector<bool>* visited,
             std::vector<int64_t>* pair) {
  for (size_t have : candidates[want]) {
    if ((*visited)[have]) continue;
    (*visited)[have] = true;
    if ((*pair)[have] < 0 || Augment(static_cast<size_t>((*pair)[have]), candidates, visited, pair)) {
      (*pair)[have] = static_cast<int64_t>(want);
      return true;
    }
  }
  return false;
}

Result<std::vector<int64_t>> ReadBatches(const fs::path& path) {
  std::vector<int64_t> sizes;
  std::ifstream in(path);
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    line = line.substr(0, line.find('#'));
    line.erase(0, line.find_first_not_of(" \t\r"));
    line.erase(line.find_last_not_of(" \t\r") + 1);
    if (line.empty()) continue;
    char* end = nullptr;
    long long size = std::strtoll(line.c_str(), &end, 10);
    if (*end != '\0' || size < 1) {
      return Status::InvalidConfig(path.string() + ":" + std::to_string(number) + ": '" + line +
                                   "' is not a number of lines (one positive number per line)");
    }
    sizes.push_back(size);
  }
  return sizes;
}

// Compares `table` in `db` with the expected CSV; appends differences to `report`.
bool CompareTable(Target* target, const fs::path& expected_path, std::string* report) {
  std::string table = expected_path.stem().string();
  std::ifstream in(expected_path, std::ios::binary);
  std::ostringstream content;
  content << in.rdbuf();
  std::string display = "expected/" + expected_path.filename().string();
  if (!in) {
    *report += "  " + display + ": cannot read the file\n";
    return false;
  }
  Result<CsvTable> expected = ParseCsv(content.str(), display);
  if (!expected.ok()) {
    std::istringstream lines(expected.status().message());
    std::string line;
    while (std::getline(lines, line)) *report += "  " + line + "\n";
    return false;
  }
  // `column~0.01`: compare the column's numbers within 0.01.
  std::vector<std::string> names;
  std::vector<std::optional<double>> tolerances;
  bool header_ok = true;
  for (const auto& cell : expected->header) {
    size_t tilde = cell.rfind('~');
    names.push_back(cell.substr(0, tilde));
    tolerances.emplace_back(std::nullopt);
    if (tilde == std::string::npos) continue;
    std::string written = cell.substr(tilde + 1);
    char* end = nullptr;
    double tolerance = std::strtod(written.c_str(), &end);
    if (written.empty() || *end != '\0' || !std::isfinite(tolerance) || tolerance < 0 || names.back().empty() ||
        written.find_first_of(" \tnNiIxX") != std::string::npos) {
      *report += "  " + display + ": header cell '" + cell +
                 "': write column~TOLERANCE with a number >= 0 after ~, as in amount~0.005\n";
      header_ok = false;
      continue;
    }
    tolerances.back() = tolerance;
  }
  if (!header_ok) return false;
  Result<bool> exists = target->HasTable(table);
  if (!exists.ok() || !*exists) {
    *report += "  " + table + ": no such table (from " + display + ")\n";
    return false;
  }
  std::string columns;
  for (const auto& name : names) columns += (columns.empty() ? "" : ", ") + QuoteIdentifier(name);
  Result<QueryResult> rows = target->Query("SELECT " + columns + " FROM " + QuoteIdentifier(table));
  if (!rows.ok()) {
    *report += "  " + table + ": " + rows.status().message() + "\n";
    return false;
  }
  std::vector<ActualRow> actual;
  for (auto& row : rows->rows) {
    ActualRow actual_row;
    for (auto& value : row) {
      Actual cell;
      cell.type = value.type;
      cell.integer = value.integer;
      cell.real = value.real;
      cell.text = std::move(value.text);
      actual_row.push_back(std::move(cell));
    }
    actual.push_back(std::move(actual_row));
  }
  // Which actual rows each expected row matches, then a maximum matching,
  // so that the order of the rows never decides the outcome.
  std::vector<std::vector<size_t>> candidates(expected->rows.size());
  for (size_t want = 0; want < expected->rows.size(); ++want) {
    for (size_t have = 0; have < actual.size(); ++have) {
      bool equal = true;
      for (size_t column_idx = 0; column_idx < names.size() && equal; ++column_idx) {
        equal = CellMatches(expected->rows[want][column_idx], actual[have][column_idx], tolerances[column_idx]);
      }
      if (equal) candidates[want].push_back(have);
    }
  }
  std::vector<int64_t> pair(actual.size(), -1);
  for (size_t want = 0; want < expected->rows.size(); ++want) {
    std::vector<bool> visited(actual.size(), false);
    Augment(want, candidates, &visited, &pair);
  }
  std::vector<bool> found(expected->rows.size(), false);
  for (int64_t want : pair) {
    if (want >= 0) found[static_cast<size_t>(want)] = true;
  }
  size_t missing = std::count(found.begin(), found.end(), false);
  size_t unexpected = std::count(pair.begin(), pair.end(), -1);
  if (missing == 0 && unexpected == 0) return true;
  std::string header;
  for (const auto& name : expected->header) header += (header.empty() ? "" : " | ") + name;
  *report += "  " + table + " (" + header + "): " + std::to_string(missing) + " expected row(s) missing, " +
             std::to_string(unexpected) + " unexpected\n";
  for (size_t want = 0; want < expected->rows.size(); ++want) {
    if (!found[want]) *report += "    - " + ShowRow(expected->rows[want]) + "\n";
  }
  for (size_t have = 0; have < actual.size(); ++have) {
    if (pair[have] < 0) *report += "    + " + ShowActualRow(actual[have]) + "\n";
  }
  return false;
}

FixtureResult RunCase(const Pipeline& base, const fs::path& case_dir) {
  FixtureResult result;
  result.name = case_dir.filename().string();
  fs::path input = case_dir / "input.jsonl";
  if (!fs::exists(input)) {
    result.report = "  missing " + input.string() + "\n";
    return result;
  }
  Pipeline pipeline = base;
  FileSourceOptions file;
  file.path = input.string();
  if (fs::exists(case_dir / "batches")) {
    Result<std::vector<int64_t>> sizes = ReadBatches(case_dir / "batches");
    if (!sizes.ok()) {
      result.report = "  " + sizes.status().message() + "\n";
      return result;
    }
    file.batch_sizes = *sizes;
  }
  EngineOptions options;
  options.exclusive_lock = false;
  options.scratch = true;
  auto engine = Engine::Open(pipeline, std::make_unique<FileSource>(file), options);
  if (!engine.ok()) {
    result.report = "  " + engine.status().message() + "\n";
    return result;
  }
  RunOptions run;
  run.mode = RunMode::kUntilCaughtUp;
  std::atomic<bool> stop{false};
  Status st = (*engine)->Run(run, stop);
  // expected_failure: the case passes only if the run fails with an error
  // holding this text (a data check that must catch the input, say); the
  // tables are then compared as the failed batch left them (rolled back).
  std::optional<std::string> expected_failure;
  if (fs::exists(case_dir / "expected_failure")) {
    std::ifstream in(case_dir / "expected_failure", std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    std::string want = text.str();
    while (!want.empty() && std::isspace(static_cast<unsigned char>(want.back()))) want.pop_back();
    while (!want.empty() && std::isspace(static_cast<unsigned char>(want.front()))) want.erase(0, 1);
    if (want.empty()) {
      result.report = "  expected_failure is empty: write the text the error must contain\n";
      return result;
    }
    expected_failure = want;
  }
  if (expected_failure) {
    if (st.ok()) {
      result.report = "  expected the run to fail with \"" + *expected_failure + "\", but it succeeded\n";
      return result;
    }
    if (st.message().find(*expected_failure) == std::string::npos) {
      result.report = "  expected the run to fail with \"" + *expected_failure + "\", but it failed with: " +
                      st.message() + "\n";
      return result;
    }
    if (!fs::exists(case_dir / "expected")) {
      result.passed = true;
      return result;
    }
  } else if (!st.ok()) {
    result.report = "  the pipeline failed: " + st.message() + "\n";
    return result;
  }
  std::vector<fs::path> expected;
  std::vector<std::string> refused;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(case_dir / "expected", ec)) {
    if (entry.path().extension() == ".csv" && entry.is_regular_file(ec)) expected.push_back(entry.path());
    else refused.push_back(entry.path().filename().string());
  }
  std::sort(expected.begin(), expected.end());
  std::sort(refused.begin(), refused.end());
  // A file that is not compared must not look like a passing specification.
  for (const auto& name : refused) {
    result.report += "  expected/" + name +
                     ": not read; expected/ may hold only <table>.csv files (lower-case .csv); rename or remove it\n";
  }
  if (expected.empty()) {
    result.report += "  no expected/*.csv: nothing to compare\n";
    return result;
  }
  result.passed = refused.empty();
  for (const auto& path : expected) {
    if (!CompareTable((*engine)->target(), path, &result.report)) result.passed = false;
  }
  return result;
}

}  // namespace

Result<std::vector<FixtureResult>> RunFixtures(const std::string& dir, const std::string& only,
                                               const std::string& database) {
  // The engine of `database` chooses the per-engine files (schema.postgres.sql ...).
  ConfigOverrides overrides;
  overrides.database = database.empty() ? std::string(":memory:") : database;
  Result<Pipeline> pipeline = LoadPipeline(dir, overrides);
  if (!pipeline.ok()) return pipeline.status();
  fs::path tests = fs::path(dir) / "tests";
  std::vector<fs::path> cases;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(tests, ec)) {
    if (entry.is_directory() && (only.empty() || entry.path().filename() == only)) cases.push_back(entry.path());
  }
  std::sort(cases.begin(), cases.end());
  if (cases.empty()) {
    return Status::InvalidConfig(tests.string() + ": no test cases" + (only.empty() ? "" : " named " + only) +
                                 " (each case is a directory with input.jsonl and expected/<table>.csv)");
  }
  std::vector<FixtureResult> results;
  for (const auto& case_dir : cases) results.push_back(RunCase(*pipeline, case_dir));
  return results;
}

}  // namespace sluice
