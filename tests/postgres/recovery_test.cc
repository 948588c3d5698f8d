// Recovery on PostgreSQL: a batch the database aborts (a serialization
// failure, a deadlock, the connection lost mid-batch, the server restarted)
// is rolled back and run again, logged and bounded, and every message lands
// exactly once. Fed by the embedded broker; what is checked is read back
// with libpq, not through sluice.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "pg_server.h"
#include "test_support.h"

namespace sluice::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// Brings the shared server back when a test that stopped it ends, however
// it ends: the other tests of this binary need it.
class ServerBack {
 public:
  explicit ServerBack(PgServer* server) : server_(server) {}
  ~ServerBack() {
    if (!down_) return;
    std::string error;
    if (!server_->Restart(&error)) ADD_FAILURE() << "cannot start PostgreSQL again: " << error;
  }
  void Down() { down_ = true; }
  // Starts the server now; false with the reason in *error.
  bool Up(std::string* error) {
    down_ = false;
    return server_->Restart(error);
  }

 private:
  PgServer* server_;
  bool down_ = false;
};

class PostgresRecovery : public BrokerTest {
 protected:
  void SetUp() override {
    std::string error;
    url = FreshDatabase(&error);
    ASSERT_FALSE(url.empty()) << "PostgreSQL: " << error;
    server = SharedServer(&error);
    ASSERT_NE(server, nullptr) << error;
    ASSERT_NO_FATAL_FAILURE(StartEmbeddedBroker("events", 1));
  }

  // Upserts the latest amount per id into `totals` and appends every row to
  // `seen` (a message processed twice is there twice), in batches of 7.
  // `flaky(fail_first, errcode)` raises `errcode` while the sequence
  // `attempts` (which no rollback resets) is at most `fail_first`; the
  // steps in `extra_steps` run between the two.
  PipelineFiles Pipeline(const std::map<std::string, std::string>& extra_steps,
                         const std::string& extra_target = "") const {
    PipelineFiles files;
    files.conf = "[source]\nbrokers = " + brokers +
                 "\ntopic = events\ngroup = pg-test\nstart = earliest\nconnect_timeout = 10s\n"
                 "[batch]\nmax_messages = 7\nmax_wait = 300ms\n"
                 "[columns]\nid = TEXT\namount = REAL\n[target]\ndatabase = " + url + "\n" + extra_target;
    files.schema =
        "create table if not exists totals (id text primary key, amount double precision, part integer, "
        "off bigint);\n"
        "create table if not exists seen (id text, part integer, off bigint);\n"
        "create sequence if not exists attempts;\n"
        "create or replace function flaky(fail_first bigint, code text) returns void language plpgsql as $$\n"
        "begin\n"
        "  if nextval('attempts') <= fail_first then\n"
        "    raise exception 'simulated % on attempt %', code, currval('attempts') using errcode = code;\n"
        "  end if;\n"
        "end $$;\n";
    files.steps["10_seen.sql"] = "insert into seen (id, part, off) select id, _kafka_partition, _kafka_offset from batch;\n";
    files.steps["30_upsert.sql"] =
        "insert into totals (id, amount, part, off)\n"
        "select id, amount, _kafka_partition, _kafka_offset from batch\n"
        "where true\n"
        "on conflict (id) do update set amount = excluded.amount, part = excluded.part, off = excluded.off;\n";
    for (const auto& [name, sql] : extra_steps) files.steps[name] = sql;
    return files;
  }

  // A step calling flaky() once per batch (never on the empty batch the
  // pipeline check runs).
  static std::map<std::string, std::string> FlakyStep(int fail_first, const std::string& code) {
    return {{"20_flaky.sql", "select flaky(" + std::to_string(fail_first) + ", '" + code +
                                 "') from (select 1 from batch limit 1) b;\n"}};
  }

  // A step that sleeps `seconds` per batch, so a test can act mid-batch.
  static std::map<std::string, std::string> SlowStep(const std::string& seconds) {
    return {{"20_slow.sql", "select pg_sleep(" + seconds + ") from (select 1 from batch limit 1) b;\n"}};
  }

  // Every one of `messages` messages (ids e0...) exactly once in the tables,
  // and the stored offset at the end of the partition.
  void ExpectExactlyOnce(int messages) {
    PgClient pg(url);
    ASSERT_TRUE(pg.ok()) << pg.error();
    const std::string n = std::to_string(messages);
    EXPECT_EQ(pg.One("select count(*) from seen"), n);
    EXPECT_EQ(pg.One("select count(distinct id) from seen"), n);
    EXPECT_EQ(pg.One("select count(*) from (select off from seen group by off having count(*) > 1) d"), "0");
    EXPECT_EQ(pg.One("select count(*) from totals"), n);
    EXPECT_EQ(pg.One("select min(off) || '-' || max(off) from seen"), "0-" + std::to_string(messages - 1));
    EXPECT_EQ(pg.One("select next_offset from _sluice_offsets where pipeline = 'pg-test' and topic = 'events' and "
                     "partition = 0"),
              n);
  }

  // Waits until sluice's session on this database is inside pg_sleep (a
  // step of a batch) after at least `committed` batches committed.
  bool WaitForSluiceMidBatch(int committed) {
    PgClient pg(url);
    return WaitFor(
        [&] {
          const std::string ok = pg.One("select count(*) from _sluice_runs where status = 'ok' and messages > 0");
          if (ok.rfind("ERROR", 0) == 0 || std::stoi(ok) < committed) return false;
          return pg.One("select count(*) from pg_stat_activity where datname = current_database() and "
                        "application_name like 'sluice pid%' and wait_event = 'PgSleep'") == "1";
        },
        seconds(30));
  }

  std::string url;
  PgServer* server = nullptr;
};

TEST_F(PostgresRecovery, ASerializationFailureRollsTheBatchBackAndRetriesItLogged) {
  WritePipeline(dir.path(), Pipeline(FlakyStep(2, "serialization_failure")));
  ProduceValues(brokers, "events", IdAmountValues("e", 0, 10), 0);
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "--until-caught-up"}, &output), 0) << output;

  EXPECT_TRUE(Contains(output, "simulated serialization_failure on attempt 1; retrying the batch (attempt 2 of 4)"))
      << output;
  EXPECT_TRUE(Contains(output, "simulated serialization_failure on attempt 2; retrying the batch (attempt 3 of 4)"))
      << output;
  EXPECT_FALSE(Contains(output, "attempt 4 of 4")) << output;
  ExpectExactlyOnce(10);
  PgClient pg(url);
  // Two failed attempts of the first batch, then it and the second batch.
  EXPECT_EQ(pg.One("select count(*) from _sluice_runs where status = 'failed' and error like "
                   "'%20_flaky.sql:1: simulated serialization_failure%'"),
            "2");
  EXPECT_EQ(pg.One("select count(*) from _sluice_runs where status = 'ok' and messages > 0"), "2");
  EXPECT_EQ(pg.One("select last_value from attempts"), "4");
}

TEST_F(PostgresRecovery, ASerializationFailureThatPersistsFailsAfterFourAttempts) {
  WritePipeline(dir.path(), Pipeline(FlakyStep(1000, "serialization_failure")));
  ProduceValues(brokers, "events", IdAmountValues("e", 0, 10), 0);
  std::string output;
  EXPECT_NE(RunSluice({"run", dir.path(), "--until-caught-up"}, &output), 0) << output;

  EXPECT_TRUE(Contains(output, "(attempt 4 of 4)")) << output;
  EXPECT_TRUE(Contains(output, "simulated serialization_failure on attempt 4 (the batch was tried 4 times, each "
                               "attempt rolled back; offsets unchanged)"))
      << output;
  PgClient pg(url);
  EXPECT_EQ(pg.One("select last_value from attempts"), "4");
  EXPECT_EQ(pg.One("select count(*) from _sluice_runs where status = 'failed'"), "4");
  EXPECT_EQ(pg.One("select count(*) from seen"), "0");
  EXPECT_EQ(pg.One("select count(*) from _sluice_offsets"), "0");
}

TEST_F(PostgresRecovery, ADeadlockIsRetriedLikeASerializationFailure) {
  WritePipeline(dir.path(), Pipeline(FlakyStep(1, "deadlock_detected")));
  ProduceValues(brokers, "events", IdAmountValues("e", 0, 10), 0);
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "--until-caught-up"}, &output), 0) << output;

  EXPECT_TRUE(Contains(output, "simulated deadlock_detected on attempt 1; retrying the batch (attempt 2 of 4)"))
      << output;
  ExpectExactlyOnce(10);
  PgClient pg(url);
  EXPECT_EQ(pg.One("select count(*) from _sluice_runs where status = 'failed'"), "1");
}

TEST_F(PostgresRecovery, RunOnceRetriesTheBatchToo) {
  WritePipeline(dir.path(), Pipeline(FlakyStep(1, "serialization_failure")));
  ProduceValues(brokers, "events", IdAmountValues("e", 0, 5), 0);
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "--once"}, &output), 0) << output;
  EXPECT_TRUE(Contains(output, "retrying the batch (attempt 2 of 4)")) << output;
  ExpectExactlyOnce(5);
}

TEST_F(PostgresRecovery, AServerRestartMidRunIsSurvivedWithEveryMessageOnce) {
  WritePipeline(dir.path(), Pipeline(SlowStep("0.2")));
  const int messages = 150;  // 22 batches of at least 0.2 s
  ProduceValues(brokers, "events", IdAmountValues("e", 0, messages), 0);
  Child sluice({"run", dir.path(), "--until-caught-up"}, log);
  ASSERT_TRUE(WaitForSluiceMidBatch(3)) << sluice.output();

  std::string error;
  ASSERT_TRUE(server->Restart(&error)) << error;
  std::optional<int> exit_code = sluice.Wait(seconds(120));
  ASSERT_TRUE(exit_code.has_value()) << sluice.output();
  const std::string output = sluice.full_output();
  EXPECT_EQ(*exit_code, 0) << Tail(output);
  EXPECT_TRUE(Contains(output, "lost the connection to " + url)) << Tail(output);
  EXPECT_TRUE(Contains(output, "connected to " + url + " again")) << Tail(output);
  ExpectExactlyOnce(messages);
}

TEST_F(PostgresRecovery, AServerBackWithinBusyTimeoutIsReconnectedToWithBackoff) {
  WritePipeline(dir.path(), Pipeline(SlowStep("0.2")));  // busy_timeout 10s
  const int messages = 100;
  ProduceValues(brokers, "events", IdAmountValues("e", 0, messages), 0);
  Child sluice({"run", dir.path(), "--until-caught-up"}, log);
  ASSERT_TRUE(WaitForSluiceMidBatch(2)) << sluice.output();

  ServerBack back(server);
  back.Down();
  std::string error;
  ASSERT_TRUE(server->Stop(&error)) << error;
  ASSERT_TRUE(WaitFor([&] { return Contains(sluice.full_output(), "connecting again"); }, seconds(20)))
      << sluice.output();
  std::this_thread::sleep_for(milliseconds(1500));  // a few failed attempts to connect
  ASSERT_TRUE(back.Up(&error)) << error;
  std::optional<int> exit_code = sluice.Wait(seconds(60));
  ASSERT_TRUE(exit_code.has_value()) << sluice.output();
  const std::string output = sluice.full_output();
  EXPECT_EQ(*exit_code, 0) << Tail(output);
  EXPECT_EQ(CountOccurrences(output, "connecting again"), 1u) << Tail(output);  // logged once, not per attempt
  EXPECT_TRUE(Contains(output, "connected to " + url + " again after")) << Tail(output);
  ExpectExactlyOnce(messages);
}

TEST_F(PostgresRecovery, AServerDownLongerThanBusyTimeoutFailsNamingItAndARerunCompletesOnce) {
  WritePipeline(dir.path(), Pipeline(SlowStep("0.2"), "busy_timeout = 1s\n"));
  const int messages = 150;
  ProduceValues(brokers, "events", IdAmountValues("e", 0, messages), 0);
  Child sluice({"run", dir.path(), "--until-caught-up"}, log);
  ASSERT_TRUE(WaitForSluiceMidBatch(2)) << sluice.output();

  ServerBack back(server);
  back.Down();
  std::string error;
  ASSERT_TRUE(server->Stop(&error)) << error;
  std::optional<int> exit_code = sluice.Wait(seconds(60));
  ASSERT_TRUE(exit_code.has_value()) << sluice.output();
  const std::string output = sluice.full_output();
  EXPECT_NE(*exit_code, 0) << Tail(output);
  EXPECT_TRUE(Contains(output, "lost the connection to " + url + " and cannot connect again")) << Tail(output);
  EXPECT_TRUE(Contains(output, "[target] busy_timeout")) << Tail(output);

  ASSERT_TRUE(back.Up(&error)) << error;
  std::string rerun;
  ASSERT_EQ(RunSluice({"run", dir.path(), "--until-caught-up"}, &rerun), 0) << rerun;
  ExpectExactlyOnce(messages);
}

TEST_F(PostgresRecovery, ASessionTerminatedMidBatchIsReconnectedAndTheBatchRetriedOnce) {
  WritePipeline(dir.path(), Pipeline(SlowStep("0.5")));
  const int messages = 30;  // 5 batches of at least 0.5 s
  ProduceValues(brokers, "events", IdAmountValues("e", 0, messages), 0);
  Child sluice({"run", dir.path(), "--until-caught-up"}, log);
  ASSERT_TRUE(WaitForSluiceMidBatch(1)) << sluice.output();

  PgClient pg(url);
  EXPECT_EQ(pg.One("select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity where "
                   "application_name like 'sluice pid%') t"),
            "1");
  std::optional<int> exit_code = sluice.Wait(seconds(60));
  ASSERT_TRUE(exit_code.has_value()) << sluice.output();
  const std::string output = sluice.full_output();
  EXPECT_EQ(*exit_code, 0) << Tail(output);
  EXPECT_TRUE(Contains(output, "terminating connection due to administrator command")) << Tail(output);
  EXPECT_TRUE(Contains(output, "retrying the batch (attempt 2 of 4)")) << Tail(output);
  EXPECT_TRUE(Contains(output, "connected to " + url + " again")) << Tail(output);
  ExpectExactlyOnce(messages);
}

TEST_F(PostgresRecovery, ASessionEndedBetweenBatchesIsReconnectedToWithoutAFailedBatch) {
  WritePipeline(dir.path(), Pipeline({}));
  ProduceValues(brokers, "events", IdAmountValues("e", 0, 10), 0);
  Child sluice({"run", dir.path(), "--every", "1s"}, log);
  PgClient pg(url);
  ASSERT_TRUE(WaitFor([&] { return pg.One("select count(*) from seen") == "10"; }, seconds(30))) << sluice.output();
  ASSERT_TRUE(WaitFor([&] { return Contains(sluice.full_output(), "caught up; next pass at"); }, seconds(30)))
      << sluice.output();

  EXPECT_EQ(pg.One("select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity where "
                   "application_name like 'sluice pid%') t"),
            "1");
  ProduceValues(brokers, "events", IdAmountValues("e", 10, 10), 0);
  ASSERT_TRUE(WaitFor([&] { return pg.One("select count(*) from seen") == "20"; }, seconds(30))) << sluice.output();
  ASSERT_EQ(sluice.Stop(SIGTERM, seconds(20)), std::optional<int>(0)) << sluice.output();
  const std::string output = sluice.full_output();
  EXPECT_TRUE(Contains(output, "connected to " + url + " again")) << Tail(output);
  EXPECT_FALSE(Contains(output, "failed")) << Tail(output);
  ExpectExactlyOnce(20);
}

TEST_F(PostgresRecovery, AStopRequestWhileWaitingForTheServerStopsPromptly) {
  WritePipeline(dir.path(), Pipeline(SlowStep("0.2"), "busy_timeout = 60s\n"));
  ProduceValues(brokers, "events", IdAmountValues("e", 0, 100), 0);
  Child sluice({"run", dir.path(), "--until-caught-up"}, log);
  ASSERT_TRUE(WaitForSluiceMidBatch(1)) << sluice.output();

  ServerBack back(server);
  back.Down();
  std::string error;
  ASSERT_TRUE(server->Stop(&error)) << error;
  ASSERT_TRUE(WaitFor([&] { return Contains(sluice.full_output(), "connecting again"); }, seconds(20)))
      << sluice.output();
  auto asked = std::chrono::steady_clock::now();
  std::optional<int> exit_code = sluice.Stop(SIGTERM, seconds(20));
  ASSERT_TRUE(exit_code.has_value()) << sluice.output();
  EXPECT_LT(std::chrono::steady_clock::now() - asked, seconds(5)) << sluice.output();
  EXPECT_EQ(*exit_code, 0) << sluice.output();
  EXPECT_TRUE(Contains(sluice.full_output(), "stopped by")) << sluice.output();

  ASSERT_TRUE(back.Up(&error)) << error;
  std::string rerun;
  ASSERT_EQ(RunSluice({"run", dir.path(), "--until-caught-up"}, &rerun), 0) << rerun;
  ExpectExactlyOnce(100);
}

TEST_F(PostgresRecovery, ADatabaseDroppedAndCreatedAgainMidRunIsRefusedByName) {
  WritePipeline(dir.path(), Pipeline({}));
  ProduceValues(brokers, "events", IdAmountValues("e", 0, 10), 0);
  Child sluice({"run", dir.path(), "--every", "1s"}, log);
  {
    PgClient pg(url);
    ASSERT_TRUE(WaitFor([&] { return pg.One("select count(*) from seen") == "10"; }, seconds(30))) << sluice.output();
  }
  // An operator recreates the database under the same name while sluice
  // runs: the process's positions belong to the old one.
  const size_t at = url.find("@/") + 2;  // postgresql://sluice@/NAME?host=...
  const std::string name = url.substr(at, url.find('?') - at);
  PgClient admin(server->Url());
  ASSERT_TRUE(admin.Exec("DROP DATABASE \"" + name + "\" WITH (FORCE)")) << admin.error();
  std::string error;
  ASSERT_TRUE(server->CreateDatabase(name, &error)) << error;
  ProduceValues(brokers, "events", IdAmountValues("e", 10, 10), 0);

  std::optional<int> exit_code = sluice.Wait(seconds(60));
  ASSERT_TRUE(exit_code.has_value()) << sluice.output();
  const std::string output = sluice.full_output();
  EXPECT_NE(*exit_code, 0) << Tail(output);
  EXPECT_TRUE(Contains(output, "was dropped and created again")) << Tail(output);
  {
    // Nothing of the second half went into the new database.
    PgClient pg(url);
    EXPECT_EQ(pg.One("select count(*) from pg_tables where schemaname = 'public'"), "0");
  }
  // Started again, sluice begins there from [source] start.
  std::string rerun;
  ASSERT_EQ(RunSluice({"run", dir.path(), "--until-caught-up"}, &rerun), 0) << rerun;
  ExpectExactlyOnce(20);
}

}  // namespace
}  // namespace sluice::testing
