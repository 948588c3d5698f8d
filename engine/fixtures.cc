// Fixtures implementation and the `sluice test` command.
#include "engine/fixtures.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "connectors/file_source.h"
#include "engine/cli.h"
#include "engine/config.h"
#include "engine/engine.h"
#include "sql/seeds.h"

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

bool AsNumber(const std::string& text, double* value) {
  if (text.empty()) return false;
  char* end = nullptr;
  *value = std::strtod(text.c_str(), &end);
  return *end == '\0';
}

bool CellsEqual(const std::optional<std::string>& expected, const std::optional<std::string>& actual) {
  if (!expected || !actual) return !expected && !actual;
  if (*expected == *actual) return true;
  double a = 0, b = 0;
  if (AsNumber(*expected, &a) && AsNumber(*actual, &b)) {
    return std::fabs(a - b) <= 1e-9 * std::max({1.0, std::fabs(a), std::fabs(b)});
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
bool CompareTable(Database* db, const fs::path& expected_path, std::string* report) {
  std::string table = expected_path.stem().string();
  std::ifstream in(expected_path, std::ios::binary);
  std::ostringstream content;
  content << in.rdbuf();
  std::string display = "expected/" + expected_path.filename().string();
  Result<CsvTable> expected = ParseCsv(content.str(), display);
  if (!expected.ok()) {
    *report += "  " + expected.status().message() + "\n";
    return false;
  }
  if (!db->TableExists(table)) {
    *report += "  " + table + ": no such table (from " + display + ")\n";
    return false;
  }
  std::string columns;
  for (const auto& name : expected->header) columns += (columns.empty() ? "" : ", ") + QuoteIdentifier(name);
  Result<Statement> stmt = db->Prepare("SELECT " + columns + " FROM " + QuoteIdentifier(table));
  if (!stmt.ok()) {
    *report += "  " + table + ": " + stmt.status().message() + "\n";
    return false;
  }
  std::vector<Row> actual;
  while (true) {
    Result<bool> has_row = stmt->Step();
    if (!has_row.ok()) {
      *report += "  " + table + ": " + has_row.status().message() + "\n";
      return false;
    }
    if (!*has_row) break;
    Row row;
    for (size_t column_idx = 0; column_idx < expected->header.size(); ++column_idx) {
      int column = static_cast<int>(column_idx);
      if (stmt->IsNull(column)) row.emplace_back(std::nullopt);
      else row.emplace_back(stmt->ColumnText(column));
    }
    actual.push_back(std::move(row));
  }
  std::vector<bool> matched(actual.size(), false);
  std::vector<const Row*> missing;
  for (const Row& want : expected->rows) {
    bool found = false;
    for (size_t row_idx = 0; row_idx < actual.size() && !found; ++row_idx) {
      if (matched[row_idx]) continue;
      bool equal = true;
      for (size_t column_idx = 0; column_idx < want.size() && equal; ++column_idx) {
        equal = CellsEqual(want[column_idx], actual[row_idx][column_idx]);
      }
      if (equal) matched[row_idx] = found = true;
    }
    if (!found) missing.push_back(&want);
  }
  size_t unexpected = std::count(matched.begin(), matched.end(), false);
  if (missing.empty() && unexpected == 0) return true;
  std::string header;
  for (const auto& name : expected->header) header += (header.empty() ? "" : " | ") + name;
  *report += "  " + table + " (" + header + "): " + std::to_string(missing.size()) + " expected row(s) missing, " +
             std::to_string(unexpected) + " unexpected\n";
  for (const Row* row : missing) *report += "    - " + ShowRow(*row) + "\n";
  for (size_t row_idx = 0; row_idx < actual.size(); ++row_idx) {
    if (!matched[row_idx]) *report += "    + " + ShowRow(actual[row_idx]) + "\n";
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
  pipeline.config.database = ":memory:";
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
  auto engine = Engine::Open(pipeline, std::make_unique<FileSource>(file), options);
  if (!engine.ok()) {
    result.report = "  " + engine.status().message() + "\n";
    return result;
  }
  RunOptions run;
  run.mode = RunMode::kUntilCaughtUp;
  std::atomic<bool> stop{false};
  Status st = (*engine)->Run(run, stop);
  if (!st.ok()) {
    result.report = "  the pipeline failed: " + st.message() + "\n";
    return result;
  }
  std::vector<fs::path> expected;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(case_dir / "expected", ec)) {
    if (entry.path().extension() == ".csv") expected.push_back(entry.path());
  }
  std::sort(expected.begin(), expected.end());
  if (expected.empty()) {
    result.report = "  no expected/*.csv: nothing to compare\n";
    return result;
  }
  result.passed = true;
  for (const auto& path : expected) {
    if (!CompareTable((*engine)->database(), path, &result.report)) result.passed = false;
  }
  return result;
}

}  // namespace

Result<std::vector<FixtureResult>> RunFixtures(const std::string& dir, const std::string& only) {
  Result<Pipeline> pipeline = LoadPipeline(dir);
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

namespace cli {

int CommandTest(const std::vector<std::string>& args) {
  namespace po = boost::program_options;
  po::options_description options("options");
  options.add_options()
      ("help,h", "show this help")
      ("case", po::value<std::string>(), "run only this case")
      ("verbose,v", "log the batches");
  po::variables_map vm = cli::ParseWithDir(args, options);
  if (vm.count("help") || !vm.count("dir")) {
    std::cout << "usage: sluice test DIR [--case NAME] [-v]\n\n"
                 "Runs the pipeline over each fixture in DIR/tests/<case>/ against a fresh in-memory database, with\n"
                 "no broker, and compares tables with DIR/tests/<case>/expected/<table>.csv.\n"
                 "  input.jsonl   one message per line; optional _kafka_key, _kafka_partition and _kafka_timestamp\n"
                 "                fields override the defaults (partition 0, offset and timestamp = line number)\n"
                 "  batches       optional: lines per batch, one number per line\n"
                 "  expected/     <table>.csv: the header names the columns compared; rows in any order; an\n"
                 "                empty cell is NULL; numbers compare as numbers\n"
                 "Exits non-zero if any case fails.\n\n"
              << options;
    return vm.count("help") ? kExitOk : kExitUsage;
  }
  SetupLogging(vm.count("verbose") ? 0 : -1);
  std::string dir = vm["dir"].as<std::string>();
  Result<std::vector<FixtureResult>> results = RunFixtures(dir, vm.count("case") ? vm["case"].as<std::string>() : "");
  if (!results.ok()) {
    std::cerr << results.status().message() << "\n";
    return kExitFailure;
  }
  int failed = 0;
  for (const auto& result : *results) {
    std::cout << (result.passed ? "PASS " : "FAIL ") << result.name << "\n" << result.report;
    if (!result.passed) ++failed;
  }
  std::cout << (results->size() - failed) << " passed, " << failed << " failed\n";
  return failed ? kExitFailure : kExitOk;
}

}  // namespace cli
}  // namespace sluice
