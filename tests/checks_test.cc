// Data checks (checks/*.sql): one query returning the rows that break an
// expectation, run after the steps inside the batch transaction. A failing
// check rolls the batch back (nothing commits, offsets stay); a warning check
// commits and records its count.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "test_support.h"

namespace sluice {
namespace {

using testing::AppendPipeline;
using testing::Contains;
using testing::IdAmountValues;
using testing::ProduceValues;
using testing::QueryOne;
using testing::RunSluice;
using testing::TempDir;

void WriteCheck(const std::string& dir, const std::string& name, const std::string& sql) {
  std::filesystem::create_directories(dir + "/checks");
  testing::WriteFile(dir + "/checks/" + name, sql);
}

// events(id, amount, ...) gets every batch row; amounts are 0..count-1.
std::unique_ptr<EmbeddedBroker> Start(const std::string& dir, int count) {
  auto broker = testing::StartBroker("events", 1);
  if (broker == nullptr) return nullptr;
  testing::WritePipeline(dir, AppendPipeline(broker->bootstrap()));
  ProduceValues(broker->bootstrap(), "events", IdAmountValues("e", 0, count));
  return broker;
}

TEST(Checks, AFailingCheckRollsTheBatchBackAndNamesItself) {
  TempDir dir;
  auto broker = Start(dir.path(), 5);
  ASSERT_NE(broker, nullptr);
  WriteCheck(dir.path(), "amount_below_three.sql",
             "-- amounts stay below 3\nselect id, amount from events where amount >= 3 order by id;\n");
  std::string output;
  EXPECT_EQ(RunSluice({"run", dir.path()}, &output), 1) << output;
  EXPECT_TRUE(Contains(output, "checks/amount_below_three.sql: the check failed: 2 rows break it (id=e3, amount=3.0; "
                               "id=e4, amount=4.0)"))
      << output;
  const std::string db = dir / "pipeline.db";
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM events"), "0");
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM _sluice_offsets"), "0");
  EXPECT_TRUE(Contains(QueryOne(db, "SELECT error FROM _sluice_runs WHERE status = 'failed'"),
                       "checks/amount_below_three.sql"));
}

TEST(Checks, AWarningCheckCommitsAndRecordsItsCount) {
  TempDir dir;
  auto broker = Start(dir.path(), 5);
  ASSERT_NE(broker, nullptr);
  WriteCheck(dir.path(), "amount_below_three.sql",
             "-- severity: warn\nselect id, amount from events where amount >= 3;\n");
  WriteCheck(dir.path(), "ids_present.sql", "select * from events where id is null;\n");
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path()}, &output), 0) << output;
  EXPECT_TRUE(Contains(output, "checks/amount_below_three.sql: 2 rows break the check (severity warn)")) << output;
  const std::string db = dir / "pipeline.db";
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM events"), "5");
  EXPECT_TRUE(Contains(QueryOne(db, "SELECT notes FROM _sluice_runs WHERE status = 'ok'"),
                       "checks/amount_below_three.sql: 2 rows (warn)"));
  EXPECT_EQ(QueryOne(db, "SELECT group_concat(\"check\" || ':' || severity || ':' || \"rows\", ' ') FROM "
                         "(SELECT * FROM _sluice_checks ORDER BY \"check\")"),
            "checks/amount_below_three.sql:warn:2 checks/ids_present.sql:error:0");
  ASSERT_EQ(RunSluice({"status", dir.path()}, &output), 0) << output;
  EXPECT_TRUE(Contains(output, "checks/amount_below_three.sql")) << output;
}

TEST(Checks, BrokenChecksAreFoundBeforeAnythingIsConsumed) {
  TempDir dir;
  auto broker = Start(dir.path(), 2);
  ASSERT_NE(broker, nullptr);
  std::string output;
  WriteCheck(dir.path(), "writes.sql", "delete from events;\n");
  EXPECT_EQ(RunSluice({"validate", dir.path()}, &output), 1) << output;
  EXPECT_TRUE(Contains(output, "checks/writes.sql:1: a check is one read-only query")) << output;
  std::filesystem::remove(dir / "checks/writes.sql");
  WriteCheck(dir.path(), "two.sql", "select 1 where 0;\nselect 2 where 0;\n");
  EXPECT_EQ(RunSluice({"validate", dir.path()}, &output), 1) << output;
  EXPECT_TRUE(Contains(output, "checks/two.sql:1: a check holds exactly one query")) << output;
  std::filesystem::remove(dir / "checks/two.sql");
  WriteCheck(dir.path(), "typo.sql", "select *\nfrom evnts;\n");
  EXPECT_EQ(RunSluice({"run", dir.path()}, &output), 1) << output;
  EXPECT_TRUE(Contains(output, "checks/typo.sql:2: no such table: evnts")) << output;
  std::filesystem::remove(dir / "checks/typo.sql");
  WriteCheck(dir.path(), "severity.sql", "-- severity: fatal\nselect 1 where 0;\n");
  EXPECT_EQ(RunSluice({"validate", dir.path()}, &output), 1) << output;
  EXPECT_TRUE(Contains(output, "checks/severity.sql:1: severity 'fatal' is not one of: error, warn")) << output;
  // `run` validates first: nothing was created, let alone consumed.
  EXPECT_FALSE(std::filesystem::exists(dir / "pipeline.db"));
}

}  // namespace
}  // namespace sluice
