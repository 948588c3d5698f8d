// Every example pipeline runs on both engines. Each directory under
// pipelines/ must pass its fixtures (`sluice test`) on in-memory SQLite and
// on a real PostgreSQL server (`sluice test --db postgresql://...`), case for
// case; the orders pipeline must also produce, from the embedded broker into
// PostgreSQL, the curated tables an independent reference computes
// (tests/orders_reference.h), and running it again must change nothing.
// `sluice test --db` must leave no scratch schema behind.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "orders_reference.h"
#include "pg_server.h"
#include "test_support.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;
using testing::FreshDatabase;
using testing::PgClient;
using testing::RunSluice;

// Every directory under pipelines/: a new one is covered without being named here.
std::vector<std::string> PipelineDirectories() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(fs::path(SLUICE_SOURCE_DIR) / "pipelines", ec)) {
    if (entry.is_directory(ec)) names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// The cases a pipeline ships: the directories under DIR/tests.
std::vector<std::string> CaseDirectories(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir / "tests", ec)) {
    if (entry.is_directory(ec)) names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// What `sluice test` printed about its cases: the names after "PASS ", and
// every other line that reports a case or the totals.
struct TestOutput {
  std::vector<std::string> passed;
  std::vector<std::string> failed;
  std::string totals;  // "N passed, M failed"
};

TestOutput ParseTestOutput(const std::string& output) {
  TestOutput parsed;
  std::istringstream lines(output);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("PASS ", 0) == 0) parsed.passed.push_back(line.substr(5));
    else if (line.rfind("FAIL ", 0) == 0) parsed.failed.push_back(line.substr(5));
    else if (line.find(" passed, ") != std::string::npos && line.find(" failed") != std::string::npos) parsed.totals = line;
  }
  std::sort(parsed.passed.begin(), parsed.passed.end());
  return parsed;
}

std::string PostgresUrl() {
  std::string error;
  std::string url = FreshDatabase(&error);
  EXPECT_FALSE(url.empty()) << "PostgreSQL: " << error;
  return url;
}

TEST(PipelineDirectories, TheSevenExamplesAreFound) {
  std::vector<std::string> found = PipelineDirectories();
  EXPECT_GE(found.size(), 7u) << "pipelines/ holds only: " << ::testing::PrintToString(found);
  for (const char* name : {"dedup", "late_events", "orders", "reprocessing", "rolling_aggregates", "scd_dimension",
                           "schema_drift"}) {
    EXPECT_TRUE(std::find(found.begin(), found.end(), name) != found.end()) << name << " is missing";
  }
}

class PipelinePortability : public ::testing::TestWithParam<std::string> {};

TEST_P(PipelinePortability, EveryFixtureCasePassesOnSqliteAndOnPostgres) {
  const fs::path dir = fs::path(SLUICE_SOURCE_DIR) / "pipelines" / GetParam();
  std::vector<std::string> cases = CaseDirectories(dir);
  ASSERT_FALSE(cases.empty()) << dir << " has no fixture cases under tests/";
  const std::string totals = std::to_string(cases.size()) + " passed, 0 failed";

  std::string sqlite_output;
  int sqlite_code = RunSluice({"test", dir.string()}, &sqlite_output);
  TestOutput sqlite = ParseTestOutput(sqlite_output);
  EXPECT_EQ(sqlite_code, 0) << "on SQLite:\n" << testing::Tail(sqlite_output);
  EXPECT_EQ(sqlite.passed, cases) << "on SQLite:\n" << testing::Tail(sqlite_output);
  EXPECT_TRUE(sqlite.failed.empty()) << "on SQLite:\n" << testing::Tail(sqlite_output);
  EXPECT_EQ(sqlite.totals, totals) << "on SQLite:\n" << testing::Tail(sqlite_output);

  std::string url = PostgresUrl();
  ASSERT_FALSE(url.empty());
  std::string pg_output;
  int pg_code = RunSluice({"test", dir.string(), "--db", url}, &pg_output);
  TestOutput pg = ParseTestOutput(pg_output);
  EXPECT_EQ(pg_code, 0) << "on PostgreSQL:\n" << testing::Tail(pg_output);
  EXPECT_EQ(pg.passed, cases) << "on PostgreSQL:\n" << testing::Tail(pg_output);
  EXPECT_TRUE(pg.failed.empty()) << "on PostgreSQL:\n" << testing::Tail(pg_output);
  EXPECT_EQ(pg.totals, totals) << "on PostgreSQL:\n" << testing::Tail(pg_output);

  EXPECT_EQ(sqlite.passed, pg.passed) << "the engines report different cases";
}

std::string CaseName(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = info.param;
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(Pipelines, PipelinePortability, ::testing::ValuesIn(PipelineDirectories()), CaseName);

// --- No scratch schema is left behind ---------------------------------------------

std::string ScratchSchemas(PgClient* pg) {
  auto rows = pg->Rows("select nspname from pg_namespace where nspname like 'sluice\\_scratch\\_%' order by 1");
  if (!rows) return "ERROR: " + pg->error();
  std::string all;
  for (const auto& row : *rows) all += (all.empty() ? "" : ", ") + row;
  return all;
}

TEST(FixturesOnPostgres, LeaveNoScratchSchemaBehindWhetherCasesPassOrFail) {
  std::string url = PostgresUrl();
  ASSERT_FALSE(url.empty());
  PgClient pg(url);
  ASSERT_TRUE(pg.ok()) << pg.error();

  // Passing cases, and one whose run must fail (a data check rolls it back).
  std::string output;
  const std::string orders = std::string(SLUICE_SOURCE_DIR) + "/pipelines/orders";
  ASSERT_EQ(RunSluice({"test", orders, "--db", url}, &output), 0) << output;
  EXPECT_EQ(ScratchSchemas(&pg), "") << "after sluice test --db with passing cases";

  // A case whose tables differ from what it expects.
  testing::TempDir dir;
  const std::string copy = dir / "orders";
  fs::copy(orders, copy, fs::copy_options::recursive);
  testing::WriteFile(copy + "/tests/dedup/expected/orders_curated.csv", "order_id,amount\nnot-an-order,1.00\n");
  EXPECT_NE(RunSluice({"test", copy, "--db", url, "--case", "dedup"}, &output), 0) << output;
  EXPECT_TRUE(testing::Contains(output, "FAIL dedup")) << output;
  EXPECT_EQ(ScratchSchemas(&pg), "") << "after a case that failed its comparison:\n" << testing::Tail(output);

  // Cases whose pipeline cannot run at all (a step the server refuses).
  testing::WriteFile(copy + "/steps/25_broken.sql", "select * from no_such_table;\n");
  EXPECT_NE(RunSluice({"test", copy, "--db", url}, &output), 0) << output;
  EXPECT_TRUE(testing::Contains(output, "no_such_table")) << output;
  EXPECT_EQ(ScratchSchemas(&pg), "") << "after cases whose pipeline failed:\n" << testing::Tail(output);
}

// --- The orders pipeline end to end on PostgreSQL ---------------------------------

using namespace orders_reference;  // the independent reference (tests/orders_reference.h)
constexpr int kCount = 3000;
constexpr int kBatch = 400;

class OrdersOnPostgres : public testing::BrokerTest {
 protected:
  void SetUp() override {
    url = PostgresUrl();
    ASSERT_FALSE(url.empty());
    ASSERT_NO_FATAL_FAILURE(StartEmbeddedBroker("orders", kPartitions));
    ASSERT_NO_FATAL_FAILURE(Generate());
    ASSERT_NO_FATAL_FAILURE(Produce());

    // A copy of pipelines/orders writing into the PostgreSQL database, in small batches.
    pipeline = dir / "orders";
    fs::copy(std::string(SLUICE_SOURCE_DIR) + "/pipelines/orders", pipeline, fs::copy_options::recursive);
    std::string conf = testing::ReadFile(pipeline + "/pipeline.conf");
    ASSERT_TRUE(testing::ReplaceFirst(&conf, "database = orders.db", "database = " + url)) << conf;
    ASSERT_TRUE(testing::ReplaceFirst(&conf, "max_messages = 50000", "max_messages = " + std::to_string(kBatch)));
    ASSERT_TRUE(testing::ReplaceFirst(&conf, "max_wait = 2s", "max_wait = 500ms"));
    testing::WriteFile(pipeline + "/pipeline.conf", conf);
  }

  // The repository's generator, read as staging would read it.
  void Generate() {
    const std::string command = GeneratorCommand(kCount, 11);
    std::string output;
    ASSERT_EQ(testing::RunShell(command, &output), 0) << command;
    events = EventsFromGenerator(output);
    ASSERT_EQ(events.size(), static_cast<size_t>(kCount));
    seeds = LoadSeeds(std::string(SLUICE_SOURCE_DIR) + "/pipelines/orders");
  }

  // key = order_id, timestamp = event_time, partition = FNV(key) % 4.
  void Produce() {
    Status produced = ProduceMessages(brokers, "orders", MessagesFor(events));
    ASSERT_TRUE(produced.ok()) << produced.message();
  }

  int Run(const std::string& mode, std::string* output) {
    return RunSluice({"run", pipeline, mode, "--brokers", brokers}, output);
  }

  // Everything the pipeline keeps, read back with libpq.
  std::vector<std::string> Snapshot(PgClient* pg) const {
    std::vector<std::string> all;
    for (const char* sql : {"select * from orders_curated order by order_id",
                            "select * from revenue_hourly order by hour, region, category, currency",
                            "select \"partition\", \"offset\", error from _sluice_quarantine order by 1, 2",
                            "select topic, \"partition\", next_offset from _sluice_offsets order by 1, 2",
                            "select count(*), sum(messages) from _sluice_runs where status = 'ok' and messages > 0"}) {
      auto rows = pg->Rows(sql);
      EXPECT_TRUE(rows.has_value()) << sql << ": " << pg->error();
      all.push_back(std::string("-- ") + sql);
      if (rows) all.insert(all.end(), rows->begin(), rows->end());
    }
    return all;
  }

  std::string url;
  std::string pipeline;
  std::vector<Event> events;
  Seeds seeds;
};

TEST_F(OrdersOnPostgres, CuratedTablesMatchTheReferenceAndASecondRunChangesNothing) {
  std::string output;
  ASSERT_EQ(Run("--until-caught-up", &output), 0) << testing::Tail(output);
  PgClient pg(url);
  ASSERT_TRUE(pg.ok()) << pg.error();

  // The run log: several batches, none failed, every message once.
  size_t staged = 0, quarantined = 0;
  std::map<int32_t, int64_t> end_offsets;
  for (const Event& e : events) {
    (e.staged ? staged : quarantined) += 1;
    end_offsets[e.partition] = std::max(end_offsets[e.partition], e.offset + 1);
  }
  EXPECT_GT(quarantined, 0u);
  EXPECT_EQ(pg.One("select count(*) from _sluice_runs where status <> 'ok'"), "0");
  EXPECT_GE(std::stoi(pg.One("select count(*) from _sluice_runs where status = 'ok' and messages > 0")), kCount / kBatch);
  EXPECT_EQ(pg.One("select max(messages) from _sluice_runs"), std::to_string(kBatch));
  EXPECT_EQ(pg.One("select sum(messages) from _sluice_runs where status = 'ok'"), std::to_string(kCount));
  EXPECT_EQ(pg.One("select count(*) from _sluice_quarantine"), std::to_string(quarantined));

  // _sluice_offsets: the end offset of every partition.
  std::vector<std::string> expected_offsets;
  for (const auto& [partition, end] : end_offsets) {
    expected_offsets.push_back("orders|" + std::to_string(partition) + "|" + std::to_string(end));
  }
  auto offsets = pg.Rows("select topic, \"partition\", next_offset from _sluice_offsets order by 1, 2");
  ASSERT_TRUE(offsets) << pg.error();
  EXPECT_EQ(*offsets, expected_offsets);

  // orders_curated: one row per order, every column exact, amount to the cent.
  std::map<std::string, std::pair<const Event*, std::string>> reference = NewestVersions(events);
  EXPECT_GT(reference.size(), 100u);
  auto rows = pg.Rows(std::string("select ") + kCuratedColumns + " from orders_curated");
  ASSERT_TRUE(rows) << pg.error();
  std::vector<std::string> expected_rows, actual_rows;
  for (const auto& [id, kept] : reference) {
    std::vector<std::string> columns = ExpectedColumns(*kept.first, seeds);
    columns.push_back(kept.first->amount ? Fixed2(*kept.first->amount) : "NULL");
    columns.push_back(kept.second);
    std::string row;
    for (const auto& cell : columns) row += (row.empty() ? "" : "|") + cell;
    expected_rows.push_back(row);
  }
  for (const std::string& row : *rows) {
    std::vector<std::string> cells = Split(row);
    ASSERT_EQ(cells.size(), 15u) << row;
    if (cells[13] != "NULL") cells[13] = Fixed2(std::strtod(cells[13].c_str(), nullptr));
    std::string normalized;
    for (const auto& cell : cells) normalized += (normalized.empty() ? "" : "|") + cell;
    actual_rows.push_back(normalized);
  }
  EXPECT_EQ(testing::DiffRows("orders_curated (" + std::string(kCuratedColumns) + ")", expected_rows, actual_rows), "");

  // revenue_hourly: non-cancelled orders by hour, region, category and currency.
  const Revenue expected_revenue = ExpectedRevenue(reference, seeds);
  auto revenue = pg.Rows("select hour, region, category, currency, orders, revenue from revenue_hourly");
  ASSERT_TRUE(revenue) << pg.error();
  Revenue actual_revenue;
  ASSERT_NO_FATAL_FAILURE(ParseRevenue(*revenue, &actual_revenue));
  EXPECT_GT(expected_revenue.size(), 20u);
  ExpectRevenueMatches(expected_revenue, actual_revenue);

  // Again, with nothing new: until caught up runs no batch at all, and one
  // forced (empty) batch changes no row.
  std::vector<std::string> before = Snapshot(&pg);
  std::string runs_before = pg.One("select count(*) from _sluice_runs");
  ASSERT_EQ(Run("--until-caught-up", &output), 0) << testing::Tail(output);
  EXPECT_EQ(pg.One("select count(*) from _sluice_runs"), runs_before);
  EXPECT_EQ(Snapshot(&pg), before);
  ASSERT_EQ(Run("--once", &output), 0) << testing::Tail(output);
  EXPECT_EQ(pg.One("select count(*) || ' ' || max(messages) from _sluice_runs where run_id > " + runs_before), "1 0");
  EXPECT_EQ(Snapshot(&pg), before);
}

}  // namespace
}  // namespace sluice
