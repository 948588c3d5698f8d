// sluice against a real PostgreSQL server the suite starts itself (initdb in
// a temporary directory; see pg_server.h), fed by the embedded broker. Each
// test gets a database of its own. What is checked is read back with libpq,
// not through sluice.
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <vector>

#include "pg_server.h"
#include "test_support.h"

namespace sluice::testing {
namespace {

PgServer* g_server = nullptr;
std::string g_server_error;

class ServerEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { server_ = PgServer::Start(&g_server_error), g_server = server_.get(); }
  void TearDown() override { server_.reset(), g_server = nullptr; }

 private:
  std::unique_ptr<PgServer> server_;
};
const auto* const kEnvironment = ::testing::AddGlobalTestEnvironment(new ServerEnvironment);

class Postgres : public BrokerTest {
 protected:
  void SetUp() override {
    ASSERT_NE(g_server, nullptr) << "PostgreSQL did not start: " << g_server_error;
    static std::atomic<int> counter{0};
    database_ = "t" + std::to_string(::getpid()) + "_" + std::to_string(++counter);
    std::string error;
    ASSERT_TRUE(g_server->CreateDatabase(database_, &error)) << error;
    url = g_server->Url(database_);
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

  std::string database_;
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
  std::string with_password = g_server->Url(database_);
  with_password.replace(with_password.find("sluice@"), 7, "nobody:" + secret + "@");
  ReplaceFirst(&files.conf, "database = " + url, "database = " + with_password);
  WritePipeline(dir.path(), files);
  std::string output;
  EXPECT_NE(RunSluice({"run", dir.path(), "--once"}, &output), 0) << output;
  EXPECT_FALSE(Contains(output, secret)) << output;
  EXPECT_TRUE(Contains(output, "nobody")) << output;  // the error still says who could not connect
}

}  // namespace
}  // namespace sluice::testing
