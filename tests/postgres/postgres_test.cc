// sluice against a real PostgreSQL server the suite starts itself (initdb in
// a temporary directory; see pg_server.h), fed by the embedded broker. Each
// test gets a database of its own. What is checked is read back with libpq,
// not through sluice.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "pg_server.h"
#include "sql/target.h"
#include "test_support.h"

namespace sluice::testing {
namespace {

class Postgres : public BrokerTest {
 protected:
  void SetUp() override {
    std::string error;
    url = FreshDatabase(&error);
    ASSERT_FALSE(url.empty()) << "PostgreSQL: " << error;
    ASSERT_NO_FATAL_FAILURE(StartEmbeddedBroker("events", 2));
  }

  // A pipeline that upserts the latest amount per id into `totals` and
  // appends every row to `seen` (a message processed twice is there twice).
  PipelineFiles Upserts(const std::string& extra_target = "") const {
    PipelineFiles files;
    files.conf = "[source]\nbrokers = " + brokers +
                 "\ntopic = events\ngroup = pg-test\nstart = earliest\nconnect_timeout = 10s\n"
                 "[batch]\nmax_messages = 7\nmax_wait = 300ms\n"
                 "[columns]\nid = TEXT\namount = REAL\n[target]\ndatabase = " + url + "\n" + extra_target;
    files.schema =
        "create table if not exists totals (id text primary key, amount double precision, part integer, "
        "off bigint);\n"
        "create table if not exists seen (id text, part integer, off bigint);\n";
    files.steps["10_seen.sql"] = "insert into seen (id, part, off) select id, _kafka_partition, _kafka_offset from batch;\n";
    files.steps["20_upsert.sql"] =
        "insert into totals (id, amount, part, off)\n"
        "select id, amount, _kafka_partition, _kafka_offset from batch\n"
        "where true\n"
        "on conflict (id) do update set amount = excluded.amount, part = excluded.part, off = excluded.off;\n";
    return files;
  }

  std::string url;
};

TEST_F(Postgres, RunsThePipelineAndStoresOffsetsInTheSameDatabase) {
  WritePipeline(dir.path(), Upserts());
  ProduceValues(brokers, "events", IdAmountValues("a", 0, 20), 0);
  ProduceValues(brokers, "events", IdAmountValues("b", 0, 11), 1);
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "--until-caught-up"}, &output), 0) << output;

  PgClient pg(url);
  ASSERT_TRUE(pg.ok()) << pg.error();
  EXPECT_EQ(pg.One("select count(*) from seen"), "31");
  EXPECT_EQ(pg.One("select count(*) from totals"), "31");
  EXPECT_EQ(pg.One("select sum(amount) from totals"), std::to_string(190 + 55));
  auto offsets = pg.Rows("select topic, partition, next_offset from _sluice_offsets where pipeline = 'pg-test' "
                         "order by partition");
  ASSERT_TRUE(offsets) << pg.error();
  EXPECT_EQ(*offsets, (std::vector<std::string>{"events|0|20", "events|1|11"}));
  EXPECT_EQ(pg.One("select count(*) from _sluice_runs where status = 'ok' and messages > 0"), "5");  // 7 per batch

  // More messages, and a second run: only the new ones are read.
  ProduceValues(brokers, "events", IdAmountValues("a", 20, 5), 0);
  ASSERT_EQ(RunSluice({"run", dir.path(), "--until-caught-up"}, &output), 0) << output;
  EXPECT_EQ(pg.One("select count(*) from seen"), "36");
  EXPECT_EQ(pg.One("select count(*) from (select id, part, off from seen group by 1, 2, 3 having count(*) > 1) d"),
            "0");
  EXPECT_EQ(pg.One("select next_offset from _sluice_offsets where partition = 0"), "25");
}

// A schema created in front of the catalog (one named after the role, which
// the default search path puts first) would take a second, empty catalog:
// the run must refuse, not read everything again.
TEST_F(Postgres, ASchemaInFrontOfTheCatalogIsRefusedNotReadAgain) {
  WritePipeline(dir.path(), Upserts());
  ProduceValues(brokers, "events", IdAmountValues("a", 0, 6), 0);
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "--until-caught-up"}, &output), 0) << output;
  PgClient pg(url);
  ASSERT_TRUE(pg.Exec("create schema sluice")) << pg.error();  // the role is sluice: "$user" now names it
  ProduceValues(brokers, "events", IdAmountValues("a", 6, 2), 0);
  EXPECT_NE(RunSluice({"run", dir.path(), "--until-caught-up"}, &output), 0) << output;
  EXPECT_TRUE(Contains(output, "the pipeline's catalog (_sluice_offsets) is in schema \"public\"")) << output;
  EXPECT_EQ(pg.One("select count(*) from seen"), "6");
  EXPECT_EQ(pg.One("select count(*) from pg_tables where schemaname = 'sluice'"), "0");
}

TEST_F(Postgres, ABrokenStepNamesFileAndLineAndAdvancesNothing) {
  PipelineFiles files = Upserts();
  files.steps["20_upsert.sql"] = "insert into totals (id, amount)\nselect id, amount from batch\nwhere nonsense >;\n";
  WritePipeline(dir.path(), files);
  ProduceValues(brokers, "events", IdAmountValues("a", 0, 5), 0);
  std::string output;
  EXPECT_NE(RunSluice({"run", dir.path(), "--until-caught-up"}, &output), 0) << output;
  EXPECT_TRUE(Contains(output, "steps/20_upsert.sql:3")) << output;
  PgClient pg(url);
  EXPECT_EQ(pg.One("select count(*) from seen"), "0");
  EXPECT_EQ(pg.One("select count(*) from _sluice_offsets"), "0");
}

TEST_F(Postgres, ValidateChecksTheStepsOnTheServerInAScratchSchemaItDropsAfterwards) {
  PipelineFiles files = Upserts();
  files.steps["30_broken.sql"] = "insert into totals (id)\nselect id from batch\nwhere ifnull(amount, 0) > 0;\n";
  WritePipeline(dir.path(), files);
  std::string output;
  // SQLite has ifnull; PostgreSQL has not: only the server can tell.
  EXPECT_EQ(RunSluice({"validate", dir.path(), "--db", "pipeline.db"}, &output), 0) << output;
  EXPECT_EQ(RunSluice({"validate", dir.path()}, &output), 1) << output;
  EXPECT_TRUE(Contains(output, "steps/30_broken.sql:3: function ifnull")) << output;

  files.steps.erase("30_broken.sql");
  WritePipeline(dir.path(), files);
  std::remove((dir.path() + "/steps/30_broken.sql").c_str());
  EXPECT_EQ(RunSluice({"validate", dir.path()}, &output), 0) << output;
  PgClient pg(url);
  ASSERT_TRUE(pg.ok()) << pg.error();
  // Neither the pipeline's tables nor the catalog were created in the live
  // schema, and the scratch schema is gone.
  EXPECT_EQ(pg.One("select count(*) from pg_tables where schemaname = 'public'"), "0");
  EXPECT_EQ(pg.One("select count(*) from pg_namespace where nspname like 'sluice_scratch%'"), "0");
}

TEST_F(Postgres, FixturesCompareNumericValuesWithEveryDigit) {
  // sum(bigint) is numeric on PostgreSQL: 2^53 + 1 has no double of its own,
  // so only an exact comparison tells it from 2^53.
  PipelineFiles files;
  files.conf = "[source]\nbrokers = localhost:1\ntopic = events\ngroup = pg-test\n[columns]\nid = TEXT\nbig = INTEGER\n";
  files.schema = "create table if not exists sums (id text primary key, total numeric);\n";
  files.steps["10_sum.sql"] =
      "insert into sums (id, total) select id, sum(big) from batch group by id\n"
      "on conflict (id) do update set total = sums.total + excluded.total;\n";
  WritePipeline(dir.path(), files);
  const std::map<std::string, std::string> cases = {
      {"exact", "9007199254740993"}, {"written_otherwise", "9007199254740993.0"}, {"off_by_one", "9007199254740992"}};
  for (const auto& [name, total] : cases) {
    const std::string case_dir = dir.path() + "/tests/" + name;
    std::filesystem::create_directories(case_dir + "/expected");
    WriteFile(case_dir + "/input.jsonl", "{\"id\":\"a\",\"big\":9007199254740992}\n{\"id\":\"a\",\"big\":1}\n");
    WriteFile(case_dir + "/expected/sums.csv", "id,total\na," + total + "\n");
  }
  std::string output;
  EXPECT_EQ(RunSluice({"test", dir.path(), "--db", url}, &output), 1) << output;
  EXPECT_TRUE(Contains(output, "PASS exact")) << output;
  EXPECT_TRUE(Contains(output, "PASS written_otherwise")) << output;
  EXPECT_TRUE(Contains(output, "FAIL off_by_one")) << output;
  EXPECT_TRUE(Contains(output, "+ a | 9007199254740993")) << output;
}

TEST_F(Postgres, MalformedMessagesGoToTheQuarantineWithTheirReason) {
  WritePipeline(dir.path(), Upserts());
  ProduceValues(brokers, "events", {R"({"id":"ok1","amount":1})", R"({"id":"bad","amount":"abc"})", "not json",
                                    R"({"id":"ok2","amount":"2.50"})"},
                0);
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "--until-caught-up"}, &output), 0) << output;
  PgClient pg(url);
  EXPECT_EQ(pg.One("select count(*) from totals"), "2");
  EXPECT_EQ(pg.One("select amount from totals where id = 'ok2'"), "2.5");
  auto reasons = pg.Rows("select \"offset\", error from _sluice_quarantine order by \"offset\"");
  ASSERT_TRUE(reasons) << pg.error();
  ASSERT_EQ(reasons->size(), 2u);
  EXPECT_TRUE(Contains((*reasons)[0], "1|column amount")) << (*reasons)[0];
  EXPECT_TRUE(Contains((*reasons)[1], "2|invalid JSON")) << (*reasons)[1];
  EXPECT_EQ(pg.One("select next_offset from _sluice_offsets where partition = 0"), "4");
}

TEST_F(Postgres, StatusReadsTheSameCatalog) {
  WritePipeline(dir.path(), Upserts());
  ProduceValues(brokers, "events", IdAmountValues("a", 0, 3), 0);
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "--until-caught-up"}, &output), 0) << output;
  ASSERT_EQ(RunSluice({"status", dir.path()}, &output), 0) << output;
  EXPECT_TRUE(Contains(output, "events[0]")) << output;
  EXPECT_TRUE(Contains(output, "last successful batch")) << output;
}

TEST_F(Postgres, ThePasswordNeverReachesTheOutput) {
  PipelineFiles files = Upserts();
  std::string secret = "s3cr3t-pass-word";
  std::string with_password = url;
  with_password.replace(with_password.find("sluice@"), 7, "nobody:" + secret + "@");
  ReplaceFirst(&files.conf, "database = " + url, "database = " + with_password);
  WritePipeline(dir.path(), files);
  std::string output;
  EXPECT_NE(RunSluice({"run", dir.path(), "--once"}, &output), 0) << output;
  EXPECT_FALSE(Contains(output, secret)) << output;
  EXPECT_TRUE(Contains(output, "nobody")) << output;  // the error still says who could not connect
}


// ---------------------------------------------------------------------------
// sluice's SQL functions on PostgreSQL: the values tests/functions_test.cc
// checks on SQLite, through a target's own session (sluice on its
// search_path), unqualified as steps write them.

class PostgresFunctions : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    url = FreshDatabase(&error);
    ASSERT_FALSE(url.empty()) << "PostgreSQL: " << error;
    TargetOptions options;
    options.database = url;
    options.pipeline = "functions";
    Result<std::unique_ptr<Target>> opened = Target::Open(options);
    ASSERT_TRUE(opened.ok()) << opened.status().message();
    target_ = std::move(*opened);
    Status prepared = target_->Prepare(std::nullopt, {}, std::chrono::milliseconds(0));
    ASSERT_TRUE(prepared.ok()) << prepared.message();
  }

  // The single value of `select EXPRESSION` as text ("NULL" for NULL), or
  // "error: <message>".
  std::string Eval(const std::string& expression) {
    Result<QueryResult> result = target_->Query("select " + expression);
    if (!result.ok()) return "error: " + result.status().message();
    if (result->rows.empty() || result->rows[0].empty()) return "NO ROW";
    const Value& value = result->rows[0][0];
    return value.type == Value::Type::kNull ? "NULL" : value.text;
  }

  std::string url;
  std::unique_ptr<Target> target_;
};

TEST_F(PostgresFunctions, DateTruncToEveryUnit) {
  const std::string ts = "'2026-11-21T08:34:19.706Z'";  // a Saturday
  EXPECT_EQ(Eval("date_trunc('millisecond', " + ts + ")"), "2026-11-21T08:34:19.706Z");
  EXPECT_EQ(Eval("date_trunc('second', " + ts + ")"), "2026-11-21T08:34:19Z");
  EXPECT_EQ(Eval("date_trunc('minute', " + ts + ")"), "2026-11-21T08:34:00Z");
  EXPECT_EQ(Eval("date_trunc('hour', " + ts + ")"), "2026-11-21T08:00:00Z");
  EXPECT_EQ(Eval("date_trunc('day', " + ts + ")"), "2026-11-21T00:00:00Z");
  EXPECT_EQ(Eval("date_trunc('week', " + ts + ")"), "2026-11-16T00:00:00Z");
  EXPECT_EQ(Eval("date_trunc('month', " + ts + ")"), "2026-11-01T00:00:00Z");
  EXPECT_EQ(Eval("date_trunc('quarter', " + ts + ")"), "2026-10-01T00:00:00Z");
  EXPECT_EQ(Eval("date_trunc('year', " + ts + ")"), "2026-01-01T00:00:00Z");
}

TEST_F(PostgresFunctions, UnitsArePluralOrSingularInAnyCase) {
  EXPECT_EQ(Eval("date_trunc('HOURS', '2026-11-21T08:34:19Z')"), "2026-11-21T08:00:00Z");
  EXPECT_EQ(Eval("date_trunc('Month', '2026-11-21T08:34:19Z')"), "2026-11-01T00:00:00Z");
  EXPECT_EQ(Eval("date_diff('Weeks', '2026-11-16', '2026-11-30')"), "2");
  EXPECT_EQ(Eval("date_diff('milliseconds', '2026-11-16', '2026-11-16T00:00:01Z')"), "1000");
  EXPECT_EQ(Eval("date_diff('QUARTERS', '2026-01-01', '2027-01-01')"), "4");
}

TEST_F(PostgresFunctions, WeeksStartOnMonday) {
  EXPECT_EQ(Eval("date_trunc('week', '2026-11-16T00:00:00Z')"), "2026-11-16T00:00:00Z");  // Monday itself
  EXPECT_EQ(Eval("date_trunc('week', '2026-11-22T23:59:59.999Z')"), "2026-11-16T00:00:00Z");  // Sunday
  EXPECT_EQ(Eval("date_trunc('week', '2026-11-23')"), "2026-11-23T00:00:00Z");
  // Across a year boundary: Thursday 2026-01-01 is in the week of Monday 2025-12-29.
  EXPECT_EQ(Eval("date_trunc('week', '2026-01-01')"), "2025-12-29T00:00:00Z");
  // Sunday to the next Monday crosses one week boundary; Monday to Sunday none.
  EXPECT_EQ(Eval("date_diff('week', '2026-11-22T23:59:59Z', '2026-11-23T00:00:00Z')"), "1");
  EXPECT_EQ(Eval("date_diff('week', '2026-11-16', '2026-11-22T23:59:59.999Z')"), "0");
  EXPECT_EQ(Eval("date_diff('week', '2025-12-31', '2026-01-01')"), "0");
  EXPECT_EQ(Eval("date_diff('week', '2026-11-23', '2026-11-22')"), "-1");
}

TEST_F(PostgresFunctions, QuarterTruncationAndDiff) {
  EXPECT_EQ(Eval("date_trunc('quarter', '2026-01-01')"), "2026-01-01T00:00:00Z");
  EXPECT_EQ(Eval("date_trunc('quarter', '2026-03-31T23:59:59.999Z')"), "2026-01-01T00:00:00Z");
  EXPECT_EQ(Eval("date_trunc('quarter', '2026-04-01')"), "2026-04-01T00:00:00Z");
  EXPECT_EQ(Eval("date_trunc('quarter', '2026-08-15')"), "2026-07-01T00:00:00Z");
  EXPECT_EQ(Eval("date_trunc('quarter', '2026-12-31T23:59:59Z')"), "2026-10-01T00:00:00Z");
  EXPECT_EQ(Eval("date_diff('quarter', '2026-03-31', '2026-04-01')"), "1");
  EXPECT_EQ(Eval("date_diff('quarter', '2026-01-01', '2026-03-31')"), "0");
  EXPECT_EQ(Eval("date_diff('quarter', '2025-11-15', '2026-02-15')"), "1");
}

TEST_F(PostgresFunctions, MonthEndsCountCalendarBoundaries) {
  EXPECT_EQ(Eval("date_diff('month', '2026-01-31', '2026-02-01')"), "1");
  EXPECT_EQ(Eval("date_diff('month', '2026-01-01', '2026-01-31T23:59:59.999Z')"), "0");
  EXPECT_EQ(Eval("date_diff('month', '2026-01-31', '2026-03-01')"), "2");
  EXPECT_EQ(Eval("date_diff('month', '2026-03-31', '2026-02-28')"), "-1");
  EXPECT_EQ(Eval("date_diff('month', '2025-12-31', '2027-01-01')"), "13");
  EXPECT_EQ(Eval("date_trunc('month', '2026-04-30T23:59:59.999Z')"), "2026-04-01T00:00:00Z");
  EXPECT_EQ(Eval("date_diff('day', '2026-01-31', '2026-02-01')"), "1");
}

TEST_F(PostgresFunctions, LeapYears) {
  EXPECT_EQ(Eval("epoch_ms('2024-02-29')"), "1709164800000");
  EXPECT_EQ(Eval("epoch_ms('2000-02-29')"), "951782400000");  // divisible by 400: leap
  EXPECT_EQ(Eval("date_trunc('month', '2024-02-29T12:00:00Z')"), "2024-02-01T00:00:00Z");
  EXPECT_EQ(Eval("date_diff('day', '2024-02-28', '2024-03-01')"), "2");
  EXPECT_EQ(Eval("date_diff('day', '2000-02-28', '2000-03-01')"), "2");
  EXPECT_EQ(Eval("date_diff('day', '2100-02-28', '2100-03-01')"), "1");  // divisible by 100: not leap
  EXPECT_EQ(Eval("date_diff('day', '2023-02-28', '2023-03-01')"), "1");
  EXPECT_EQ(Eval("date_diff('day', '2024-01-01', '2025-01-01')"), "366");
  EXPECT_EQ(Eval("date_diff('day', '2100-01-01', '2101-01-01')"), "365");
  EXPECT_EQ(Eval("date_diff('year', '2024-02-29', '2025-02-28')"), "1");
  EXPECT_EQ(Eval("to_timestamp(epoch_ms('2024-02-29') + 86400000)"), "2024-03-01T00:00:00.000Z");
  EXPECT_EQ(Eval("epoch_ms('2100-02-29')"), "error: epoch_ms: '2100-02-29' is not a valid timestamp: 2100-02 has no day 29");
  EXPECT_EQ(Eval("epoch_ms('2023-02-29T00:00:00Z')"),
            "error: epoch_ms: '2023-02-29T00:00:00Z' is not a valid timestamp: 2023-02 has no day 29");
}

TEST_F(PostgresFunctions, YearBoundaries) {
  const std::string last = "'2025-12-31T23:59:59.999Z'";
  const std::string first = "'2026-01-01T00:00:00Z'";
  EXPECT_EQ(Eval("date_diff('millisecond', " + last + ", " + first + ")"), "1");
  EXPECT_EQ(Eval("date_diff('second', " + last + ", " + first + ")"), "1");
  EXPECT_EQ(Eval("date_diff('minute', " + last + ", " + first + ")"), "1");
  EXPECT_EQ(Eval("date_diff('hour', " + last + ", " + first + ")"), "1");
  EXPECT_EQ(Eval("date_diff('day', " + last + ", " + first + ")"), "1");
  EXPECT_EQ(Eval("date_diff('month', " + last + ", " + first + ")"), "1");
  EXPECT_EQ(Eval("date_diff('quarter', " + last + ", " + first + ")"), "1");
  EXPECT_EQ(Eval("date_diff('year', " + last + ", " + first + ")"), "1");
  EXPECT_EQ(Eval("date_diff('year', " + first + ", " + last + ")"), "-1");
  EXPECT_EQ(Eval("date_diff('year', '2026-01-01', '2026-12-31T23:59:59.999Z')"), "0");
  EXPECT_EQ(Eval("date_diff('year', '2026-01-01', '2024-12-31')"), "-2");
  EXPECT_EQ(Eval("date_trunc('year', " + last + ")"), "2025-01-01T00:00:00Z");
  EXPECT_EQ(Eval("to_timestamp(epoch_ms(" + last + ") + 1)"), "2026-01-01T00:00:00.000Z");
}

TEST_F(PostgresFunctions, DiffsCountBoundariesNotElapsedTime) {
  EXPECT_EQ(Eval("date_diff('hour', '2026-01-01T00:59:59Z', '2026-01-01T01:00:00Z')"), "1");
  EXPECT_EQ(Eval("date_diff('hour', '2026-01-01T01:00:00Z', '2026-01-01T01:59:59.999Z')"), "0");
  EXPECT_EQ(Eval("date_diff('minute', '2026-01-01T00:00:59.999Z', '2026-01-01T00:01:00Z')"), "1");
  EXPECT_EQ(Eval("date_diff('second', '2026-01-01T00:00:00.999Z', '2026-01-01T00:00:01.000Z')"), "1");
  EXPECT_EQ(Eval("date_diff('day', '2026-01-01T23:59:00Z', '2026-01-02T00:01:00Z')"), "1");
  EXPECT_EQ(Eval("date_diff('day', '2026-01-01T00:00:00Z', '2026-01-01T23:59:59Z')"), "0");
  EXPECT_EQ(Eval("date_diff('hour', '2026-01-02', '2026-01-01')"), "-24");
}

TEST_F(PostgresFunctions, UtcOffsetsAreNormalisedToUtc) {
  // 00:30 at +01:00 is 23:30 UTC the day before.
  EXPECT_EQ(Eval("date_trunc('day', '2026-03-01T00:30:00+01:00')"), "2026-02-28T00:00:00Z");
  EXPECT_EQ(Eval("date_trunc('month', '2026-03-01T00:30:00+01:00')"), "2026-02-01T00:00:00Z");
  EXPECT_EQ(Eval("to_timestamp('2026-03-01T00:30:00+01:00')"), "2026-02-28T23:30:00.000Z");
  EXPECT_EQ(Eval("epoch_ms('2026-03-01T00:30:00+01:00')"), "1772321400000");
  EXPECT_EQ(Eval("to_timestamp('2025-12-31T20:00:00-05:00')"), "2026-01-01T01:00:00.000Z");
  EXPECT_EQ(Eval("to_timestamp('2026-01-01T05:30:00+0530')"), "2026-01-01T00:00:00.000Z");
  EXPECT_EQ(Eval("to_timestamp('2026-01-01T05:30:00+05:30')"), "2026-01-01T00:00:00.000Z");
  EXPECT_EQ(Eval("to_timestamp('2026-01-01T09:00:00+09')"), "2026-01-01T00:00:00.000Z");
  EXPECT_EQ(Eval("to_timestamp('2026-01-01T00:00:00-00:00')"), "2026-01-01T00:00:00.000Z");
  // The same instant in two zones is zero apart.
  EXPECT_EQ(Eval("date_diff('millisecond', '2026-06-01T12:00:00+02:00', '2026-06-01T10:00:00Z')"), "0");
  // Day boundaries are UTC days, whatever the input's offset.
  EXPECT_EQ(Eval("date_diff('day', '2026-06-01T23:00:00-02:00', '2026-06-02T00:30:00+00:00')"), "0");
}

TEST_F(PostgresFunctions, AcceptedTextForms) {
  EXPECT_EQ(Eval("to_timestamp('2026-11-21')"), "2026-11-21T00:00:00.000Z");
  EXPECT_EQ(Eval("to_timestamp('2026-11-21 08:34:19')"), "2026-11-21T08:34:19.000Z");  // space, no offset: UTC
  EXPECT_EQ(Eval("to_timestamp('2026-11-21T08:34:19')"), "2026-11-21T08:34:19.000Z");
  EXPECT_EQ(Eval("to_timestamp('2026-11-21t08:34:19z')"), "2026-11-21T08:34:19.000Z");
  EXPECT_EQ(Eval("to_timestamp('2026-11-21T08:34')"), "2026-11-21T08:34:00.000Z");
  EXPECT_EQ(Eval("to_timestamp('2026-11-21 08:34:19.706+00:00')"), "2026-11-21T08:34:19.706Z");
  EXPECT_EQ(Eval("epoch_ms('2026-11-21T08:34:19.706Z')"), "1795250059706");
  EXPECT_EQ(Eval("epoch_ms('1970-01-01')"), "0");
}

TEST_F(PostgresFunctions, FractionalSecondsOfAnyLengthAreTruncatedToMilliseconds) {
  EXPECT_EQ(Eval("epoch_ms('1970-01-01T00:00:01.7Z')"), "1700");
  EXPECT_EQ(Eval("epoch_ms('1970-01-01T00:00:01.70Z')"), "1700");
  EXPECT_EQ(Eval("epoch_ms('1970-01-01T00:00:01.706Z')"), "1706");
  EXPECT_EQ(Eval("epoch_ms('1970-01-01T00:00:01.7069Z')"), "1706");
  EXPECT_EQ(Eval("epoch_ms('1970-01-01T00:00:01.123456789Z')"), "1123");
  EXPECT_EQ(Eval("epoch_ms('1970-01-01T00:00:01.000999+00:00')"), "1000");
  EXPECT_EQ(Eval("epoch_ms('1970-01-01T00:00:01.0')"), "1000");
  EXPECT_EQ(Eval("to_timestamp('2026-11-21T08:34:19.5Z')"), "2026-11-21T08:34:19.500Z");
  EXPECT_EQ(Eval("date_trunc('millisecond', '2026-11-21T08:34:19.123999Z')"), "2026-11-21T08:34:19.123Z");
  EXPECT_EQ(Eval("date_trunc('second', '2026-11-21T08:34:19.999999Z')"), "2026-11-21T08:34:19Z");
}

TEST_F(PostgresFunctions, InstantsBefore1970) {
  EXPECT_EQ(Eval("epoch_ms('1969-12-31T23:59:59.999Z')"), "-1");
  EXPECT_EQ(Eval("to_timestamp(-1)"), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(Eval("date_trunc('second', -1)"), "1969-12-31T23:59:59Z");
  EXPECT_EQ(Eval("date_trunc('minute', -1)"), "1969-12-31T23:59:00Z");
  EXPECT_EQ(Eval("date_trunc('day', -1)"), "1969-12-31T00:00:00Z");
  EXPECT_EQ(Eval("date_trunc('month', -1)"), "1969-12-01T00:00:00Z");
  EXPECT_EQ(Eval("date_trunc('week', 0)"), "1969-12-29T00:00:00Z");  // 1970-01-01 was a Thursday
  EXPECT_EQ(Eval("date_diff('second', -1, 0)"), "1");
  EXPECT_EQ(Eval("date_diff('day', -1, 0)"), "1");
  EXPECT_EQ(Eval("date_diff('year', -1, 0)"), "1");
  EXPECT_EQ(Eval("date_diff('second', -1001, -1000)"), "1");
  EXPECT_EQ(Eval("date_diff('second', -1999, -1000)"), "1");
  EXPECT_EQ(Eval("date_diff('second', -2000, -1001)"), "0");
  EXPECT_EQ(Eval("epoch_ms('1969-07-20T20:17:40Z')"), "-14182940000");
  EXPECT_EQ(Eval("date_trunc('week', '1969-07-20T20:17:40Z')"), "1969-07-14T00:00:00Z");  // a Sunday
  EXPECT_EQ(Eval("epoch_ms('1900-01-01')"), "-2208988800000");
  EXPECT_EQ(Eval("to_timestamp(-2208988800000)"), "1900-01-01T00:00:00.000Z");
  EXPECT_EQ(Eval("to_timestamp(-309188369544)"), "1960-03-15T10:20:30.456Z");
  EXPECT_EQ(Eval("date_trunc('quarter', -309188369544)"), "1960-01-01T00:00:00Z");
  EXPECT_EQ(Eval("date_diff('day', '1900-01-01', '2000-01-01')"), "36524");
  EXPECT_EQ(Eval("epoch_ms('0001-01-01')"), "-62135596800000");
}

TEST_F(PostgresFunctions, IntegerMillisecondInputs) {
  EXPECT_EQ(Eval("epoch_ms(1795250059706)"), "1795250059706");
  EXPECT_EQ(Eval("epoch_ms(-5)"), "-5");
  EXPECT_EQ(Eval("to_timestamp(0)"), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(Eval("to_timestamp(1795250059706)"), "2026-11-21T08:34:19.706Z");
  EXPECT_EQ(Eval("date_trunc('hour', 1795250059706)"), "2026-11-21T08:00:00Z");
  EXPECT_EQ(Eval("date_diff('day', 0, '1970-01-02')"), "1");  // integer and text mix
  EXPECT_EQ(Eval("date_diff('millisecond', 1000, 250)"), "-750");
  // A REAL holding a whole number counts as milliseconds (JSON numbers can arrive as REAL).
  EXPECT_EQ(Eval("to_timestamp(1795250059706.0)"), "2026-11-21T08:34:19.706Z");
  EXPECT_EQ(Eval("epoch_ms(1795250059706.0)"), "1795250059706");
  EXPECT_EQ(Eval("to_timestamp(epoch_ms('2026-11-21T08:34:19.706Z'))"), "2026-11-21T08:34:19.706Z");
}

TEST_F(PostgresFunctions, NullInNullOut) {
  EXPECT_EQ(Eval("date_trunc('day', NULL)"), "NULL");
  EXPECT_EQ(Eval("date_trunc(NULL, '2026-01-01')"), "NULL");
  EXPECT_EQ(Eval("date_diff('day', NULL, '2026-01-01')"), "NULL");
  EXPECT_EQ(Eval("date_diff('day', '2026-01-01', NULL)"), "NULL");
  EXPECT_EQ(Eval("date_diff(NULL, '2026-01-01', '2026-01-02')"), "NULL");
  EXPECT_EQ(Eval("epoch_ms(NULL)"), "NULL");
  EXPECT_EQ(Eval("to_timestamp(NULL)"), "NULL");
}

TEST_F(PostgresFunctions, ResultTypesAreTextAndBigint) {
  EXPECT_EQ(Eval("pg_typeof(date_trunc('day', '2026-11-21T08:34:19.706Z'))"), "text");
  EXPECT_EQ(Eval("pg_typeof(date_diff('day', '2026-01-01', '2026-01-02'))"), "bigint");
  EXPECT_EQ(Eval("pg_typeof(epoch_ms('2026-01-01'))"), "bigint");
  EXPECT_EQ(Eval("pg_typeof(epoch_ms(1795250059706.0))"), "bigint");
  EXPECT_EQ(Eval("pg_typeof(to_timestamp(0))"), "text");
  EXPECT_EQ(Eval("pg_typeof(to_timestamp(NULL::bigint))"), "text");
}

TEST_F(PostgresFunctions, UntypedLiteralsAndTypedValuesPickSluicesVersions) {
  // PostgreSQL has date_trunc(text, timestamp[tz]) and to_timestamp(double
  // precision); an untyped literal, an integer, a bigint, a numeric and text
  // all choose sluice's overloads.
  EXPECT_EQ(Eval("date_trunc('hour', '2026-01-01T05:30:00Z')"), "2026-01-01T05:00:00Z");
  EXPECT_EQ(Eval("date_trunc('hour', '2026-01-01T05:30:00Z'::text)"), "2026-01-01T05:00:00Z");
  EXPECT_EQ(Eval("date_trunc('hour', 1795250059706::bigint)"), "2026-11-21T08:00:00Z");
  EXPECT_EQ(Eval("date_trunc('hour', 1795250059706.0)"), "2026-11-21T08:00:00Z");
  EXPECT_EQ(Eval("date_trunc('day', 86400000.0::double precision)"), "1970-01-02T00:00:00Z");
  EXPECT_EQ(Eval("to_timestamp(0)"), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(Eval("to_timestamp('2026-01-01')"), "2026-01-01T00:00:00.000Z");
  EXPECT_EQ(Eval("date_diff('day', 0, '1970-01-02')"), "1");
  EXPECT_EQ(Eval("date_diff('day', '1970-01-01'::text, 86400000::bigint)"), "1");
  // A double precision value reaches PostgreSQL's own to_timestamp (seconds,
  // a timestamptz); sluice.to_timestamp says which one is meant.
  EXPECT_EQ(Eval("pg_typeof(to_timestamp(1.5::double precision))"), "timestamp with time zone");
  EXPECT_EQ(Eval("sluice_functions.to_timestamp(1795250059706::double precision)"), "2026-11-21T08:34:19.706Z");
  // PostgreSQL's own versions remain for its own types.
  EXPECT_EQ(Eval("pg_typeof(date_trunc('hour', timestamp '2026-01-01 05:30'))"), "timestamp without time zone");
}

TEST_F(PostgresFunctions, RangeAndErrorsNameTheFunctionAndTheValue) {
  EXPECT_EQ(Eval("to_timestamp(253402300799999)"), "9999-12-31T23:59:59.999Z");
  EXPECT_EQ(Eval("to_timestamp(-62167219200000)"), "0000-01-01T00:00:00.000Z");
  EXPECT_EQ(Eval("epoch_ms('9999-12-31T23:59:59.999Z')"), "253402300799999");
  EXPECT_EQ(Eval("to_timestamp(253402300800000)"),
            "error: to_timestamp: 253402300800000 ms is outside the supported range (years 0000 to 9999: "
            "-62167219200000 to 253402300799999)");
  EXPECT_EQ(Eval("epoch_ms('9999-12-31T23:00:00-01:00')"),
            "error: epoch_ms: '9999-12-31T23:00:00-01:00' is not a valid timestamp: in UTC it is outside years 0000 "
            "to 9999");
  EXPECT_EQ(Eval("date_trunc('week', '0000-01-01')"),
            "error: date_trunc: the week holding '0000-01-01' starts before 0000-01-01 (supported years are 0000 "
            "to 9999)");
  EXPECT_EQ(Eval("date_trunc('week', -62167219200000)"),
            "error: date_trunc: the week holding -62167219200000 starts before 0000-01-01 (supported years are 0000 "
            "to 9999)");
  EXPECT_EQ(Eval("date_trunc('week', '0000-01-03')"), "0000-01-03T00:00:00Z");
  EXPECT_EQ(Eval("date_diff('week', '0000-01-01', '0000-01-03')"), "1");
  EXPECT_EQ(Eval("date_diff('year', '0000-01-01', '9999-12-31')"), "9999");
  EXPECT_EQ(Eval("epoch_ms(9223372036854775807)"), "9223372036854775807");

  EXPECT_EQ(Eval("date_trunc('fortnight', '2026-01-01')"),
            "error: date_trunc: 'fortnight' is not a unit (use millisecond, second, minute, hour, day, week, month, "
            "quarter, year)");
  EXPECT_EQ(Eval("date_diff('decade', '2026-01-01', '2036-01-01')"),
            "error: date_diff: 'decade' is not a unit (use millisecond, second, minute, hour, day, week, month, "
            "quarter, year)");
  EXPECT_EQ(Eval("date_trunc('hr', NULL::text)"),
            "error: date_trunc: 'hr' is not a unit (use millisecond, second, minute, hour, day, week, month, "
            "quarter, year)");
  EXPECT_EQ(Eval("epoch_ms('yesterday')"),
            "error: epoch_ms: 'yesterday' is not an ISO-8601 timestamp (expected YYYY-MM-DD, optionally followed by "
            "THH:MM[:SS[.fff]] and Z, +HH:MM or -HH:MM; for example 2026-11-21T08:34:19.706Z)");
  EXPECT_EQ(Eval("to_timestamp('1795250059706')"),
            "error: to_timestamp: '1795250059706' is not an ISO-8601 timestamp (epoch milliseconds must be a number, "
            "not text: use CAST(... AS bigint))");
  EXPECT_EQ(Eval("date_diff('day', '2026-01-01', '2026-13-01')"),
            "error: date_diff: '2026-13-01' is not a valid timestamp: month 13 does not exist");
  EXPECT_EQ(Eval("epoch_ms('2026-04-31')"), "error: epoch_ms: '2026-04-31' is not a valid timestamp: 2026-04 has no day 31");
  EXPECT_EQ(Eval("epoch_ms('2026-01-01T24:00:00Z')"),
            "error: epoch_ms: '2026-01-01T24:00:00Z' is not a valid timestamp: hour 24 does not exist (use 00 to 23)");
  EXPECT_EQ(Eval("epoch_ms('2026-01-01T10:60:00Z')"),
            "error: epoch_ms: '2026-01-01T10:60:00Z' is not a valid timestamp: minute 60 does not exist (use 00 to 59)");
  EXPECT_EQ(Eval("epoch_ms('2016-12-31T23:59:60Z')"),
            "error: epoch_ms: '2016-12-31T23:59:60Z' is not a valid timestamp: second 60 does not exist (leap seconds "
            "are not supported)");
  EXPECT_EQ(Eval("epoch_ms('2026-01-01T10:00:00+24:00')"),
            "error: epoch_ms: '2026-01-01T10:00:00+24:00' is not a valid timestamp: UTC offset +24:00 is not between "
            "-23:59 and +23:59");
  EXPECT_EQ(Eval("to_timestamp(1.5)"), "error: to_timestamp: 1.5 is not a whole number of epoch milliseconds");
  for (const char* bad : {"2026-1-01", "2026-01-01T", "2026-01-01T10", "2026-01-01T10:00:00.", "2026-01-01T10:00:00Zjunk",
                          "2026-01-01T10:00:00+1", "2026-01-01T10:00:00 +01:00", " 2026-01-01", "2026-01-01Z", "",
                          "26-01-01"}) {
    EXPECT_NE(Eval("epoch_ms('" + std::string(bad) + "')").find("is not an ISO-8601 timestamp"), std::string::npos)
        << bad;
  }
  std::string shortened = "error: epoch_ms: '" + std::string(57, 'x') + "...' is not an ISO-8601 timestamp";
  EXPECT_EQ(Eval("epoch_ms('" + std::string(100, 'x') + "')").substr(0, shortened.size()), shortened);
}

TEST_F(PostgresFunctions, JsonExtractTakesSimplePaths) {
  const std::string doc = "'{\"a\": {\"b\": \"text\", \"n\": 2.5, \"i\": 42, \"t\": true, \"f\": false, \"z\": null}, "
                          "\"list\": [10, \"x\", {\"k\": \"v\"}], \"odd key\": 1}'";
  EXPECT_EQ(Eval("json_extract(" + doc + ", '$.a.b')"), "text");
  EXPECT_EQ(Eval("json_extract(" + doc + ", '$.a.n')"), "2.5");
  EXPECT_EQ(Eval("json_extract(" + doc + ", '$.a.i')"), "42");
  EXPECT_EQ(Eval("json_extract(" + doc + ", '$.a.t')"), "1");
  EXPECT_EQ(Eval("json_extract(" + doc + ", '$.a.f')"), "0");
  EXPECT_EQ(Eval("json_extract(" + doc + ", '$.a.z')"), "NULL");
  EXPECT_EQ(Eval("json_extract(" + doc + ", '$.a.missing')"), "NULL");
  EXPECT_EQ(Eval("json_extract(" + doc + ", '$.list[0]')"), "10");
  EXPECT_EQ(Eval("json_extract(" + doc + ", '$.list[1]')"), "x");
  EXPECT_EQ(Eval("json_extract(" + doc + ", '$.list[2].k')"), "v");
  EXPECT_EQ(Eval("json_extract(" + doc + ", '$.list[9]')"), "NULL");
  EXPECT_EQ(Eval("json_extract(" + doc + ", '$.\"odd key\"')"), "1");
  EXPECT_EQ(Eval("json_extract(" + doc + ", '$.list[2]')"), "{\"k\": \"v\"}");
  EXPECT_EQ(Eval("json_extract(NULL, '$.a')"), "NULL");
  EXPECT_EQ(Eval("json_extract(" + doc + "::jsonb, '$.a.i')"), "42");
  EXPECT_EQ(Eval("json_extract(" + doc + ", 'a.b')"), "error: json_extract: bad JSON path: 'a.b'");
  EXPECT_EQ(Eval("json_extract(" + doc + ", '$.list[x]')"), "error: json_extract: bad JSON path: '$.list[x]'");
  EXPECT_EQ(Eval("epoch_ms(json_extract('{\"ts\": \"2026-11-21T08:34:19.706Z\"}', '$.ts'))"), "1795250059706");
}

TEST_F(PostgresFunctions, QualifiedNamesWorkWithoutSluiceOnTheSearchPath) {
  PgClient pg(url);
  ASSERT_TRUE(pg.ok()) << pg.error();
  EXPECT_EQ(pg.One("select sluice_functions.date_trunc('hour', '2026-11-21T08:34:19.706Z')"), "2026-11-21T08:00:00Z");
  EXPECT_EQ(pg.One("select sluice_functions.epoch_ms('2026-11-21T08:34:19.706Z')"), "1795250059706");
  EXPECT_EQ(pg.One("select sluice_functions.to_timestamp(1795250059706)"), "2026-11-21T08:34:19.706Z");
  EXPECT_EQ(pg.One("select sluice_functions.date_diff('month', '2026-01-31', '2026-02-01')"), "1");
  EXPECT_EQ(pg.One("select sluice_functions.json_extract('{\"a\":[1,2]}', '$.a[1]')"), "2");
  EXPECT_EQ(pg.One("select obj_description('sluice_functions'::regnamespace, 'pg_namespace')"), "sluice SQL functions, version 2");
  // Usable in an index and a generated column (they are IMMUTABLE).
  ASSERT_TRUE(pg.Exec("create table events(ts text, day text generated always as (sluice_functions.date_trunc('day', ts)) stored);"
                      "create index events_hour on events(sluice_functions.date_trunc('hour', ts));"
                      "insert into events(ts) values ('2026-11-21T08:34:19.706Z'), ('2026-11-21T23:59:59+01:00')"))
      << pg.error();
  EXPECT_EQ(pg.One("select string_agg(day, ',') from events"), "2026-11-21T00:00:00Z,2026-11-21T00:00:00Z");

  // A second Prepare (another worker, a restart) leaves them in place.
  Status again = target_->Prepare(std::nullopt, {}, std::chrono::milliseconds(0));
  ASSERT_TRUE(again.ok()) << again.message();
  EXPECT_EQ(Eval("date_trunc('day', '2026-11-21T08:34:19Z')"), "2026-11-21T00:00:00Z");
}

// The contract: every function gives, on PostgreSQL, what it gives on SQLite
// (sql/sqlite/functions.cc) for the same input, errors included (the same
// message after the function's name). The inputs are generated from a fixed
// seed: valid instants across years 0000 to 9999 in every accepted form, and
// near misses of each kind the parser refuses.
class PostgresFunctionsMatchSqlite : public PostgresFunctions {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(PostgresFunctions::SetUp());
    TargetOptions options;
    options.database = ":memory:";
    options.pipeline = "functions";
    Result<std::unique_ptr<Target>> opened = Target::Open(options);
    ASSERT_TRUE(opened.ok()) << opened.status().message();
    sqlite_ = std::move(*opened);
    Status prepared = sqlite_->Prepare(std::nullopt, {}, std::chrono::milliseconds(0));
    ASSERT_TRUE(prepared.ok()) << prepared.message();
  }

  // The value as text ("NULL" for NULL), or "error: " and the message from
  // the function's name on (SQLite and libpq put different prefixes before it).
  static std::string Outcome(Target* target, const std::string& function, const std::string& expression) {
    Result<QueryResult> result = target->Query("select " + expression);
    if (!result.ok()) {
      const std::string& message = result.status().message();
      const size_t at = message.find(function + ": ");
      std::string text = "error: " + (at == std::string::npos ? message : message.substr(at));
      // The one intended difference: the hint names each database's types.
      text = ReplaceAll(std::move(text), "must be a number, not text: use CAST(... AS bigint)",
                        "must be an INTEGER, not TEXT: use CAST(... AS INTEGER)");
      return text;
    }
    if (result->rows.empty() || result->rows[0].empty()) return "NO ROW";
    const Value& value = result->rows[0][0];
    if (value.type == Value::Type::kNull) return "NULL";
    if (value.type == Value::Type::kInteger) return std::to_string(value.integer);
    return value.text;
  }

  static std::string ReplaceAll(std::string text, const std::string& from, const std::string& to) {
    for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
      text.replace(at, from.size(), to);
    }
    return text;
  }

  // Compares `expression` on both; `sqlite_expression` when SQLite spells it
  // differently.
  void Compare(const std::string& function, const std::string& expression, std::string sqlite_expression = "") {
    if (sqlite_expression.empty()) sqlite_expression = expression;
    const std::string on_postgres = Outcome(target_.get(), function, expression);
    const std::string on_sqlite = Outcome(sqlite_.get(), function, sqlite_expression);
    ++compared_;
    if (on_postgres.rfind("error: ", 0) == 0) ++errors_;
    EXPECT_EQ(on_postgres, on_sqlite) << expression;
  }

  std::unique_ptr<Target> sqlite_;
  int compared_ = 0, errors_ = 0;
};

std::string Quoted(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

std::string Padded(long value, int width) {
  std::string digits = std::to_string(value);
  return std::string(digits.size() < static_cast<size_t>(width) ? width - digits.size() : 0, '0') + digits;
}

// Timestamps as text: mostly valid, in every accepted form, and invalid ones.
std::vector<std::string> GeneratedTimestamps(int count) {
  std::mt19937_64 random(20261121);
  auto pick = [&](long low, long high) { return std::uniform_int_distribution<long>(low, high)(random); };
  auto leap = [](long year) { return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0); };
  std::vector<std::string> out = {
      "0000-01-01", "0000-01-01T00:00:00Z", "0000-01-02", "0000-01-03", "0000-01-01T00:30:00+01:00",
      "0000-01-01T00:30:00-01:00", "9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.9999999Z",
      "9999-12-31T23:30:00-01:00", "9999-12-31T23:30:00+01:00", "1970-01-01", "1969-12-31T23:59:59.999Z",
      "2000-02-29", "1900-02-29", "2100-02-29", "2400-02-29", "2026-02-30", "2026-13-01", "2026-00-10",
      "2026-01-00", "2026-04-31", "2026-01-01T24:00:00Z", "2026-01-01T23:60:00Z", "2016-12-31T23:59:60Z",
      "2026-01-01T10:00:00+24:00", "2026-01-01T10:00:00+23:60", "2026-01-01T10:00:00-99", "2026-01-01T10:00:00+2359",
      "2026-01-01T10:00:00+1", "2026-01-01T10:00:00+01:0", "2026-01-01T10:00:00.Z", "2026-01-01T10:00Z",
      "2026-01-01t10:00:00z", "2026-01-01 10:00:00", "2026-01-01T10:00:00 +01:00", " 2026-01-01", "2026-01-01 ",
      "2026-01-01Z", "2026-01-01T", "2026-1-01", "26-01-01", "", "yesterday", "now", "1795250059706",
      "-1795250059706", "12345", "1234", "-1234", "-", "2026-01-01T10:00:00+01:00:00", "2026-01-01T10:00:00Zjunk",
      "２０２６-01-01", "2026-01-01T10:00:00.123456789+05:30", std::string(100, 'x'),
      std::string(56, 'x') + "\xc3\xa9\xc3\xa9" + std::string(10, 'y'), std::string(55, 'x') + "\xe2\x82\xac" + "zzzzzz",
      std::string(60, 'x'), std::string(61, 'x')};
  while (static_cast<int>(out.size()) < count) {
    const long year = pick(0, 20) == 0 ? (pick(0, 1) == 0 ? pick(0, 2) : pick(9997, 9999)) : pick(0, 9999);
    long month = pick(1, 12);
    const long days_in_month = month == 2 ? (leap(year) ? 29 : 28) : (month == 4 || month == 6 || month == 9 || month == 11) ? 30 : 31;
    long day = pick(0, 6) == 0 ? days_in_month : pick(1, days_in_month);
    long hour = pick(0, 23), minute = pick(0, 59), second = pick(0, 59);
    const long broken = pick(0, 14);  // one field in fifteen inputs is out of its range
    if (broken == 1) month = pick(0, 1) == 0 ? 0 : pick(13, 99);
    if (broken == 2) day = pick(0, 1) == 0 ? 0 : days_in_month + pick(1, 99 - days_in_month);
    if (broken == 3) hour = pick(24, 99);
    if (broken == 4) minute = pick(60, 99);
    if (broken == 5) second = pick(60, 99);
    std::string text = Padded(year, 4) + "-" + Padded(month, 2) + "-" + Padded(day, 2);
    const long form = pick(0, 9);
    if (form != 0 || broken >= 3) {
      text += "Tt "[pick(0, 2)];
      text += Padded(hour, 2) + ":" + Padded(minute, 2);
      if (pick(0, 4) != 0 || broken == 5) {
        text += ":" + Padded(second, 2);
        if (pick(0, 1) == 0) {
          text += ".";
          const long digits = pick(1, 9);
          for (long digit = 0; digit < digits; ++digit) text += static_cast<char>('0' + pick(0, 9));
        }
      }
      switch (pick(0, 6)) {
        case 0: break;
        case 1: text += "Z"; break;
        case 2: text += "z"; break;
        case 3: text += std::string(pick(0, 1) ? "+" : "-") + Padded(pick(0, 23), 2); break;
        case 4: text += std::string(pick(0, 1) ? "+" : "-") + Padded(pick(0, 23), 2) + Padded(pick(0, 59), 2); break;
        case 5: text += std::string(pick(0, 1) ? "+" : "-") + Padded(pick(0, 23), 2) + ":" + Padded(pick(0, 59), 2); break;
        default: text += std::string(pick(0, 1) ? "+" : "-") + Padded(pick(0, 30), 2) + ":" + Padded(pick(0, 70), 2);
      }
    }
    if (broken == 6) text.insert(static_cast<size_t>(pick(0, static_cast<long>(text.size()))), 1, "x:-.Z+9 "[pick(0, 7)]);
    if (broken == 7) text.erase(static_cast<size_t>(pick(0, static_cast<long>(text.size()) - 1)), 1);
    out.push_back(text);
  }
  return out;
}

TEST_F(PostgresFunctionsMatchSqlite, OnGeneratedTimestampsUnitsAndNumbers) {
  const std::vector<std::string> units = {
      "millisecond", "second", "minute", "hour", "day", "week", "month", "quarter", "year", "milliseconds", "SECONDS",
      "Minute", "HOURS", "Days", "weeks", "MONTH", "Quarters", "YEARS", "fortnight", "s", "ss", "", "hr", "ms",
      "years ", "decade", "weekss", std::string(70, 'u')};
  const std::vector<std::string> stamps = GeneratedTimestamps(3000);
  std::mt19937_64 random(7);
  auto pick = [&](size_t size) { return std::uniform_int_distribution<size_t>(0, size - 1)(random); };
  for (size_t index = 0; index < stamps.size(); ++index) {
    const std::string ts = Quoted(stamps[index]);
    const std::string other = Quoted(stamps[pick(stamps.size())]);
    Compare("epoch_ms", "epoch_ms(" + ts + ")");
    Compare("to_timestamp", "to_timestamp(" + ts + ")");
    Compare("date_trunc", "date_trunc(" + Quoted(units[index % 9]) + ", " + ts + ")");
    Compare("date_trunc", "date_trunc(" + Quoted(units[pick(units.size())]) + ", " + ts + ")");
    Compare("date_diff", "date_diff(" + Quoted(units[pick(units.size())]) + ", " + ts + ", " + other + ")");
  }
  for (const std::string& unit : units) {
    Compare("date_trunc", "date_trunc(" + Quoted(unit) + ", NULL)");
    Compare("date_diff", "date_diff(" + Quoted(unit) + ", '2026-01-01', NULL)");
    Compare("date_diff", "date_diff(" + Quoted(unit) + ", NULL, '2026-13-01')");
  }
  Compare("date_trunc", "date_trunc(NULL, 'garbage')");
  Compare("date_diff", "date_diff(NULL, 'garbage', 1)");

  // Epoch milliseconds: integers (epoch_ms passes them through unchanged),
  // whole and fractional REALs (double precision and numeric on PostgreSQL).
  std::vector<std::string> integers = {"0", "1", "-1", "86399999", "-86400001", "1795250059706", "-62167219200000",
                                       "-62167219200001", "253402300799999", "253402300800000", "-62167046400001",
                                       "9223372036854775807", "-9223372036854775807", "2147483647", "-2147483648"};
  std::vector<std::string> reals = {"0.0", "1.5", "-0.5", "1795250059706.0", "-62167219200000.0", "253402300799999.0",
                                    "-1.25", "86400000.0", "1795250059706.5", "-62135596800000.0"};
  std::uniform_int_distribution<long> instant(-62167219200000, 253402300799999);
  for (int count = 0; count < 300; ++count) {
    const long ms = instant(random);
    integers.push_back(std::to_string(ms));
    if (count % 3 == 0) reals.push_back(std::to_string(ms / 1000 * 1000) + ".0");
  }
  for (size_t index = 0; index < integers.size(); ++index) {
    const std::string& ms = integers[index];
    Compare("epoch_ms", "epoch_ms(" + ms + ")");
    Compare("to_timestamp", "to_timestamp(" + ms + ")");
    Compare("date_trunc", "date_trunc(" + Quoted(units[index % 9]) + ", " + ms + ")");
    Compare("date_trunc", "date_trunc(" + Quoted(units[pick(units.size())]) + ", " + ms + ")");
    Compare("date_diff", "date_diff(" + Quoted(units[pick(units.size())]) + ", " + ms + ", " +
                             Quoted(stamps[pick(stamps.size())]) + ")");
    const std::string unit = Quoted(units[pick(9)]), end = integers[pick(integers.size())];
    Compare("date_diff", "date_diff(" + unit + ", " + ms + "::bigint, " + end + ")",
            "date_diff(" + unit + ", " + ms + ", " + end + ")");
  }
  for (size_t index = 0; index < reals.size(); ++index) {
    const std::string& ms = reals[index];
    for (const std::string& written : {ms, ms + "::double precision"}) {
      const std::string qualified = written == ms ? "" : "sluice_functions.";  // PostgreSQL's to_timestamp(double)
      Compare("epoch_ms", "epoch_ms(" + written + ")", "epoch_ms(" + ms + ")");
      Compare("to_timestamp", qualified + "to_timestamp(" + written + ")", "to_timestamp(" + ms + ")");
      Compare("date_trunc", "date_trunc(" + Quoted(units[index % 9]) + ", " + written + ")",
              "date_trunc(" + Quoted(units[index % 9]) + ", " + ms + ")");
      Compare("date_diff", "date_diff('day', " + written + ", '2026-01-01')", "date_diff('day', " + ms + ", '2026-01-01')");
    }
  }
  RecordProperty("compared", compared_);
  RecordProperty("errors", errors_);
  EXPECT_GT(compared_, 15000);
  EXPECT_GT(errors_, 1000);
}

TEST_F(PostgresFunctionsMatchSqlite, JsonExtract) {
  const std::string doc = "'{\"a\": {\"b\": \"text\", \"n\": 2.5, \"i\": 42, \"t\": true, \"f\": false, \"z\": null, "
                          "\"q\\\"k\": 3, \"x\": [1, [2, 3]]}, \"list\": [10, \"x\", {\"k\": \"v\"}], \"odd key\": 1, "
                          "\"0\": \"zero\", \"d.e\": 4}'";
  // Objects and arrays are left out: PostgreSQL prints them with spaces
  // after ':' and ',' (and jsonb's key order), SQLite without.
  for (const char* path : {"$.a.b", "$.a.n", "$.a.i", "$.a.t", "$.a.f", "$.a.z", "$.a.missing", "$.list[0]",
                           "$.list[1]", "$.list[2].k", "$.list[9]", "$.\"odd key\"", "$.a.x[1][0]", "$.0",
                           "$.\"d.e\"", "$.a.b.c", "$.list.k"}) {
    Compare("json_extract", "json_extract(" + doc + ", " + Quoted(path) + ")");
  }
  for (const char* path : {"a.b", "$.", "$..a", "$.list[x]", "$.list[]", "$[", "$.\"unterminated", "$a", ""}) {
    const std::string on_postgres = Outcome(target_.get(), "json_extract", "json_extract(" + doc + ", " + Quoted(path) + ")");
    const std::string on_sqlite = Outcome(sqlite_.get(), "json_extract", "json_extract(" + doc + ", " + Quoted(path) + ")");
    // SQLite words its own message; both refuse the path.
    EXPECT_EQ(on_postgres, "error: json_extract: bad JSON path: " + Quoted(path)) << path;
    EXPECT_EQ(on_sqlite.rfind("error: ", 0), 0u) << path << ": " << on_sqlite;
  }
}

TEST_F(Postgres, StepsUseSluicesFunctionsUnqualified) {
  PipelineFiles files = Upserts();
  files.schema += "create table if not exists hours (id text, hour text, ms bigint, again text);\n";
  files.steps["30_hours.sql"] =
      "insert into hours select id, date_trunc('hour', _kafka_timestamp), epoch_ms(to_timestamp(_kafka_timestamp)), "
      "json_extract(_kafka_value, '$.id') from batch;\n";
  WritePipeline(dir.path(), files);
  ProduceValues(brokers, "events", IdAmountValues("a", 0, 3), 0);
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "--until-caught-up"}, &output), 0) << output;
  PgClient pg(url);
  EXPECT_EQ(pg.One("select count(*) from hours where hour like '____-__-__T__:00:00Z' and ms > 0 and again = id"), "3");
}

}  // namespace
}  // namespace sluice::testing
