// Offsets belong to the pipeline and are checked against the log; no silent
// exit, no hang. Each test pins one way data was lost, doubled or left
// unreported (a recreated topic, `start = latest` re-resolved at every run,
// two pipelines on one database, impossible stored offsets, a deleted
// database, a write lock held past busy_timeout, a step that never ends,
// signals), against the embedded broker. What it cannot express (transaction
// markers, partitions added, retention) is in the real-broker tier.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "test_support.h"

namespace sluice {
namespace {

using testing::AppendPipeline;
using testing::BackgroundSluice;
using testing::Contains;
using testing::IdAmountValues;
using testing::PipelineFiles;
using testing::ProduceValues;
using testing::QueryOne;
using testing::RunSluice;
using testing::TempDir;
using testing::TryQueryOne;
using testing::WaitFor;
using testing::WritePipeline;
using std::chrono::milliseconds;

// A pipeline on "events" with `extra` appended to pipeline.conf's [source].
PipelineFiles AppendWith(const std::string& brokers, const std::string& source_extra,
                         const std::string& conf_tail = "") {
  PipelineFiles files = AppendPipeline(brokers);
  testing::ReplaceFirst(&files.conf, "start = earliest\n", source_extra.empty() ? "start = earliest\n" : source_extra);
  files.conf += conf_tail;
  return files;
}

TEST(Offsets, RecreatedTopicIsRefusedNotSkipped) {
  TempDir dir;
  auto first = testing::StartBroker("events", 1);
  ASSERT_NE(first, nullptr);
  WritePipeline(dir.path(), AppendPipeline(first->bootstrap()));
  ProduceValues(first->bootstrap(), "events", IdAmountValues("a", 0, 20));
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path()}, &output), 0) << output;
  ASSERT_EQ(QueryOne(dir / "pipeline.db", "SELECT count(*) FROM events"), "20");

  // The same topic name on another cluster stands in for a deleted and
  // recreated topic: its log ends at 5, below the stored offset 20.
  auto second = testing::StartBroker("events", 1);
  ASSERT_NE(second, nullptr);
  ProduceValues(second->bootstrap(), "events", IdAmountValues("b", 0, 5));
  for (const std::vector<std::string>& mode : {std::vector<std::string>{"--until-caught-up"},
                                               std::vector<std::string>{"--once"},
                                               std::vector<std::string>{"--every", "200ms"}}) {
    std::vector<std::string> args = {"run", dir.path(), "--brokers", second->bootstrap()};
    args.insert(args.end(), mode.begin(), mode.end());
    int code = RunSluice(args, &output);
    EXPECT_EQ(code, 1) << mode[0] << "\n" << output;
    EXPECT_TRUE(Contains(output, "events[0]: the stored offset 20 is past the end of the log (5)")) << output;
    EXPECT_TRUE(Contains(output, "sluice reset")) << output;
  }
  EXPECT_EQ(QueryOne(dir / "pipeline.db", "SELECT count(*) FROM events"), "20");
  EXPECT_EQ(QueryOne(dir / "pipeline.db", "SELECT next_offset FROM _sluice_offsets"), "20");
}

TEST(Offsets, RecreatedTopicThatGrewPastTheStoredOffsetIsRefused) {
  TempDir dir;
  auto first = testing::StartBroker("events", 1);
  ASSERT_NE(first, nullptr);
  WritePipeline(dir.path(), AppendPipeline(first->bootstrap()));
  ProduceValues(first->bootstrap(), "events", IdAmountValues("a", 0, 20));
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path()}, &output), 0) << output;
  // The new log is longer than the old one: its offsets alone look fine.
  auto second = testing::StartBroker("events", 1);
  ASSERT_NE(second, nullptr);
  ProduceValues(second->bootstrap(), "events", IdAmountValues("b", 0, 30));
  EXPECT_EQ(RunSluice({"run", dir.path(), "--brokers", second->bootstrap()}, &output), 1) << output;
  EXPECT_TRUE(Contains(output, "events[0]: the message at offset 19 is not the one this pipeline read")) << output;
  EXPECT_EQ(QueryOne(dir / "pipeline.db", "SELECT count(*) FROM events"), "20");
  // After `sluice reset`, the new log is read from its start.
  ASSERT_EQ(RunSluice({"reset", dir.path(), "--brokers", second->bootstrap(), "--to", "earliest", "--yes"}, &output), 0)
      << output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "--brokers", second->bootstrap()}, &output), 0) << output;
  EXPECT_EQ(QueryOne(dir / "pipeline.db", "SELECT count(*) FROM events WHERE id LIKE 'b%'"), "30");
}

TEST(Offsets, RecreatedTopicWithSkipContinuesFromTheNewLogAndSaysSo) {
  TempDir dir;
  auto first = testing::StartBroker("events", 1);
  ASSERT_NE(first, nullptr);
  WritePipeline(dir.path(), AppendWith(first->bootstrap(), "start = earliest\non_data_loss = skip\n"));
  ProduceValues(first->bootstrap(), "events", IdAmountValues("a", 0, 20));
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path()}, &output), 0) << output;
  auto second = testing::StartBroker("events", 1);
  ASSERT_NE(second, nullptr);
  ProduceValues(second->bootstrap(), "events", IdAmountValues("b", 0, 5));
  ASSERT_EQ(RunSluice({"run", dir.path(), "--brokers", second->bootstrap()}, &output), 0) << output;
  EXPECT_EQ(QueryOne(dir / "pipeline.db", "SELECT count(*) FROM events WHERE id LIKE 'b%'"), "5");
  EXPECT_TRUE(Contains(QueryOne(dir / "pipeline.db", "SELECT group_concat(notes) FROM _sluice_runs"),
                       "past the end of the log"));
}

TEST(Offsets, StartLatestIsResolvedOnceAndStored) {
  auto broker = testing::StartBroker("events", 2);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  WritePipeline(dir.path(), AppendWith(broker->bootstrap(), "start = latest\n"));
  ProduceValues(broker->bootstrap(), "events", IdAmountValues("old", 0, 3), 0);
  std::string output;
  // Deployed: nothing new yet. The start is stored although no message came.
  ASSERT_EQ(RunSluice({"run", dir.path(), "--once"}, &output), 0) << output;
  EXPECT_EQ(QueryOne(dir / "pipeline.db", "SELECT group_concat(\"partition\" || '=' || next_offset) FROM "
                                          "(SELECT * FROM _sluice_offsets ORDER BY 1, 2, 3)"),
            "0=3,1=0");
  // Produced while sluice was not running, to both partitions: all read.
  ProduceValues(broker->bootstrap(), "events", IdAmountValues("new", 0, 10), 0);
  ProduceValues(broker->bootstrap(), "events", IdAmountValues("new", 10, 4), 1);
  ASSERT_EQ(RunSluice({"run", dir.path()}, &output), 0) << output;
  EXPECT_EQ(QueryOne(dir / "pipeline.db", "SELECT count(*) FROM events"), "14") << output;
  EXPECT_EQ(QueryOne(dir / "pipeline.db", "SELECT count(*) FROM events WHERE id LIKE 'old%'"), "0");
}

TEST(Offsets, TwoPipelinesShareOneDatabase) {
  auto broker = testing::StartBroker("events", 1);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  const std::string db = dir / "shared.db";
  PipelineFiles a = AppendPipeline(broker->bootstrap());
  testing::ReplaceFirst(&a.conf, "group = test-group", "group = pipeline-a");
  PipelineFiles b = AppendPipeline(broker->bootstrap());
  testing::ReplaceFirst(&b.conf, "group = test-group", "group = pipeline-b");
  b.schema = "CREATE TABLE IF NOT EXISTS events_b(id TEXT, amount REAL, part INTEGER, off INTEGER);\n";
  b.steps["10_append.sql"] = "INSERT INTO events_b SELECT id, amount, _kafka_partition, _kafka_offset FROM batch;\n";
  WritePipeline(dir / "a", a);
  WritePipeline(dir / "b", b);
  ProduceValues(broker->bootstrap(), "events", IdAmountValues("e", 0, 50));
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir / "a", "--db", db}, &output), 0) << output;
  ASSERT_EQ(RunSluice({"run", dir / "b", "--db", db}, &output), 0) << output;
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM events"), "50");
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM events_b"), "50");
  EXPECT_EQ(QueryOne(db, "SELECT group_concat(pipeline || ':' || next_offset) FROM (SELECT * FROM _sluice_offsets "
                         "ORDER BY pipeline)"),
            "pipeline-a:50,pipeline-b:50");
}

TEST(Offsets, ImpossibleStoredOffsetsAreRefused) {
  TempDir dir;
  auto broker = testing::StartAppendPipeline(dir.path(), 10);
  ASSERT_NE(broker, nullptr);
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path()}, &output), 0) << output;
  for (const char* offset : {"-1", "-2", "-2003"}) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir / "pipeline.db").c_str(), &db), SQLITE_OK);
    std::string sql = std::string("UPDATE _sluice_offsets SET next_offset = ") + offset;
    ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
    ProduceValues(broker->bootstrap(), "events", IdAmountValues("x", 0, 1));
    EXPECT_EQ(RunSluice({"run", dir.path()}, &output), 1) << offset << "\n" << output;
    EXPECT_TRUE(Contains(output, std::string("the stored offset ") + offset + " is impossible")) << output;
  }
  EXPECT_EQ(QueryOne(dir / "pipeline.db", "SELECT count(*) FROM events"), "10");
}

TEST(Offsets, MigratesAnOffsetsTableFromBeforePipelines) {
  TempDir dir;
  auto broker = testing::StartAppendPipeline(dir.path(), 10);
  ASSERT_NE(broker, nullptr);
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir / "pipeline.db").c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db,
                           "CREATE TABLE _sluice_offsets (topic TEXT NOT NULL, \"partition\" INTEGER NOT NULL, "
                           "next_offset INTEGER NOT NULL, run_id INTEGER, updated_at TEXT NOT NULL, PRIMARY KEY "
                           "(topic, \"partition\"));"
                           "INSERT INTO _sluice_offsets VALUES ('events', 0, 6, 1, '2026-01-01T00:00:00.000Z');",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path()}, &output), 0) << output;
  EXPECT_TRUE(Contains(output, "_sluice_offsets is now keyed by pipeline")) << output;
  EXPECT_EQ(QueryOne(dir / "pipeline.db", "SELECT count(*) FROM events"), "4");
  EXPECT_EQ(QueryOne(dir / "pipeline.db", "SELECT pipeline || ':' || next_offset FROM _sluice_offsets"), "test-group:10");
}

TEST(Offsets, FreshDatabaseWarnsWhenTheGroupHasCommittedOffsets) {
  TempDir dir;
  auto broker = testing::StartAppendPipeline(dir.path(), 10);
  ASSERT_NE(broker, nullptr);
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path()}, &output), 0) << output;
  for (const char* file : {"pipeline.db", "pipeline.db-wal", "pipeline.db-shm"}) std::filesystem::remove(dir / file);
  // No silent fallback to the group's offsets: it starts where `start` says
  // (earliest: everything again) and says why.
  ASSERT_EQ(RunSluice({"run", dir.path()}, &output), 0) << output;
  EXPECT_TRUE(Contains(output, "consumer group 'test-group' has committed offsets")) << output;
  EXPECT_EQ(QueryOne(dir / "pipeline.db", "SELECT count(*) FROM events"), "10");
}

TEST(Offsets, StartGroupTakesOverFromTheGroupsOffsets) {
  TempDir dir;
  auto broker = testing::StartAppendPipeline(dir.path(), 10);
  ASSERT_NE(broker, nullptr);
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path()}, &output), 0) << output;
  PipelineFiles files = AppendWith(broker->bootstrap(), "start = group\n");
  TempDir other;
  WritePipeline(other.path(), files);
  ProduceValues(broker->bootstrap(), "events", IdAmountValues("n", 0, 3));
  ASSERT_EQ(RunSluice({"run", other.path()}, &output), 0) << output;
  EXPECT_EQ(QueryOne(other / "pipeline.db", "SELECT count(*) FROM events"), "3") << output;
}

TEST(Offsets, DeletedDatabaseStopsTheServiceBeforeItCommits) {
  TempDir dir;
  auto broker = testing::StartAppendPipeline(dir.path(), 5);
  ASSERT_NE(broker, nullptr);
  const std::string db = dir / "pipeline.db";
  BackgroundSluice run({"run", dir.path(), "--every", "200ms"}, dir / "run.log");
  ASSERT_TRUE(WaitFor([&] { return TryQueryOne(db, "SELECT count(*) FROM events") == "5"; }, milliseconds(15000)))
      << run.output();
  std::filesystem::remove(db);
  ProduceValues(broker->bootstrap(), "events", IdAmountValues("late", 0, 3));
  ASSERT_TRUE(WaitFor([&] { return !run.running(); }, milliseconds(15000))) << run.output();
  std::optional<int> code = run.Stop(SIGTERM, milliseconds(1000));
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 1) << run.output();
  EXPECT_TRUE(Contains(run.output(), "was deleted while sluice had it open")) << run.output();
}

// A database restored by `mv` over the one a service has open: the service
// stops, and the restored file is never touched by the old file's log (SQLite
// would apply the stale log to it and corrupt it).
TEST(Offsets, ReplacedDatabaseStopsTheServiceAndStaysIntact) {
  TempDir dir;
  auto broker = testing::StartAppendPipeline(dir.path(), 5);
  ASSERT_NE(broker, nullptr);
  const std::string db = dir / "pipeline.db";
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "--db", dir / "backup.db"}, &output), 0) << output;
  BackgroundSluice run({"run", dir.path(), "--every", "200ms"}, dir / "run.log");
  ASSERT_TRUE(WaitFor([&] { return TryQueryOne(db, "SELECT count(*) FROM events") == "5"; }, milliseconds(15000)))
      << run.output();
  std::filesystem::rename(dir / "backup.db", db);
  ProduceValues(broker->bootstrap(), "events", IdAmountValues("late", 0, 3));
  ASSERT_TRUE(WaitFor([&] { return !run.running(); }, milliseconds(15000))) << run.output();
  std::optional<int> code = run.Stop(SIGTERM, milliseconds(1000));
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 1) << run.output();
  EXPECT_TRUE(Contains(run.output(), "was replaced while sluice had it open")) << run.output();
  EXPECT_EQ(QueryOne(db, "PRAGMA integrity_check"), "ok");
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM events"), "5");
  // The next run continues on the restored database, exactly once.
  ASSERT_EQ(RunSluice({"run", dir.path()}, &output), 0) << output;
  EXPECT_EQ(QueryOne(db, "PRAGMA integrity_check"), "ok");
  EXPECT_EQ(QueryOne(db, "SELECT count(*) || '/' || count(DISTINCT off) FROM events"), "8/8");
}

TEST(Offsets, SymlinkToTheDatabaseSharesItsLock) {
  TempDir dir;
  auto broker = testing::StartAppendPipeline(dir.path(), 2);
  ASSERT_NE(broker, nullptr);
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path()}, &output), 0) << output;
  ASSERT_EQ(::symlink((dir / "pipeline.db").c_str(), (dir / "alias.db").c_str()), 0);
  BackgroundSluice first({"run", dir.path(), "--every", "1s"}, dir / "first.log");
  ASSERT_TRUE(WaitFor([&] { return Contains(first.output(), "caught up"); }, milliseconds(15000))) << first.output();
  int code = RunSluice({"run", dir.path(), "--db", dir / "alias.db", "--once"}, &output);
  EXPECT_EQ(code, 1) << output;
  EXPECT_TRUE(Contains(output, "is in use by")) << output;
}

// An analyst's open write transaction in the sqlite3 shell.
class WriteLock {
 public:
  explicit WriteLock(const std::string& path) {
    sqlite3_open(path.c_str(), &db_);
    ok_ = sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK;
  }
  ~WriteLock() {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(db_);
  }
  bool ok() const { return ok_; }

 private:
  sqlite3* db_ = nullptr;
  bool ok_ = false;
};

TEST(Offsets, WriteLockPastBusyTimeoutIsReportedNotSilent) {
  TempDir dir;
  auto broker = testing::StartBroker("events", 1);
  ASSERT_NE(broker, nullptr);
  WritePipeline(dir.path(), AppendWith(broker->bootstrap(), "", "busy_timeout = 300ms\n"));
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "--once"}, &output), 0) << output;
  ProduceValues(broker->bootstrap(), "events", IdAmountValues("e", 0, 3));
  WriteLock lock(dir / "pipeline.db");
  ASSERT_TRUE(lock.ok());
  int code = RunSluice({"run", dir.path(), "--once"}, &output);
  EXPECT_EQ(code, 1) << output;
  EXPECT_TRUE(Contains(output, "database is locked")) << output;
  EXPECT_TRUE(Contains(output, "busy_timeout")) << output;
}

TEST(Offsets, EveryRetriesATransientLockThenCarriesOn) {
  TempDir dir;
  auto broker = testing::StartBroker("events", 1);
  ASSERT_NE(broker, nullptr);
  WritePipeline(dir.path(), AppendWith(broker->bootstrap(), "", "busy_timeout = 200ms\n"));
  const std::string db = dir / "pipeline.db";
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "--once"}, &output), 0) << output;
  BackgroundSluice run({"run", dir.path(), "--every", "300ms"}, dir / "run.log");
  ASSERT_TRUE(WaitFor([&] { return Contains(run.output(), "caught up"); }, milliseconds(15000))) << run.output();
  {
    WriteLock lock(db);
    ASSERT_TRUE(lock.ok());
    ProduceValues(broker->bootstrap(), "events", IdAmountValues("e", 0, 3));
    ASSERT_TRUE(WaitFor([&] { return Contains(run.output(), "retrying in"); }, milliseconds(15000))) << run.output();
    ASSERT_TRUE(run.running()) << run.output();
  }
  ASSERT_TRUE(WaitFor([&] { return TryQueryOne(db, "SELECT count(*) FROM events") == "3"; }, milliseconds(20000)))
      << run.output();
  std::optional<int> code = run.Stop(SIGTERM, milliseconds(10000));
  ASSERT_TRUE(code.has_value()) << run.output();
  EXPECT_EQ(*code, 0) << run.output();
}

TEST(Offsets, EveryRetriesALockHeldAtStart) {
  TempDir dir;
  auto broker = testing::StartBroker("events", 1);
  ASSERT_NE(broker, nullptr);
  WritePipeline(dir.path(), AppendWith(broker->bootstrap(), "", "busy_timeout = 200ms\n"));
  const std::string db = dir / "pipeline.db";
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "--once"}, &output), 0) << output;
  ProduceValues(broker->bootstrap(), "events", IdAmountValues("e", 0, 3));
  std::optional<BackgroundSluice> run;
  {
    WriteLock lock(db);
    ASSERT_TRUE(lock.ok());
    run.emplace(std::vector<std::string>{"run", dir.path(), "--every", "300ms"}, dir / "run.log");
    ASSERT_TRUE(WaitFor([&] { return Contains(run->output(), "transient failure at start; retrying in"); },
                        milliseconds(15000)))
        << run->output();
    ASSERT_TRUE(run->running()) << run->output();
  }
  ASSERT_TRUE(WaitFor([&] { return TryQueryOne(db, "SELECT count(*) FROM events") == "3"; }, milliseconds(20000)))
      << run->output();
  std::optional<int> code = run->Stop(SIGTERM, milliseconds(10000));
  ASSERT_TRUE(code.has_value()) << run->output();
  EXPECT_EQ(*code, 0) << run->output();
}

// A step that never finishes once the batch has a row: a recursive CTE with
// no end (over an empty batch, as in the pipeline check, it ends at once).
const char* kEndlessStep =
    "WITH RECURSIVE n(i) AS (SELECT 1 FROM batch UNION ALL SELECT i + 1 FROM n) "
    "INSERT INTO events(id) SELECT 'x' FROM n WHERE i < 0;\n";

TEST(Offsets, StepTimeoutFailsTheStepNamingTheFile) {
  TempDir dir;
  auto broker = testing::StartBroker("events", 1);
  ASSERT_NE(broker, nullptr);
  PipelineFiles files = AppendPipeline(broker->bootstrap());
  testing::ReplaceFirst(&files.conf, "[batch]\n", "[batch]\nstep_timeout = 1s\n");
  files.steps["20_endless.sql"] = kEndlessStep;
  WritePipeline(dir.path(), files);
  ProduceValues(broker->bootstrap(), "events", IdAmountValues("e", 0, 2));
  auto start = std::chrono::steady_clock::now();
  std::string output;
  int code = RunSluice({"run", dir.path(), "--once"}, &output);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(code, 1) << output;
  EXPECT_TRUE(Contains(output, "steps/20_endless.sql: ran longer than [batch] step_timeout")) << output;
  EXPECT_LT(seconds, 20) << output;
  EXPECT_EQ(QueryOne(dir / "pipeline.db", "SELECT count(*) FROM events"), "0");
}

TEST(Offsets, SignalsInterruptARunawayStepAndRollBack) {
  for (int signal : {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGALRM}) {
    TempDir dir;
    auto broker = testing::StartBroker("events", 1);
    ASSERT_NE(broker, nullptr);
    PipelineFiles files = AppendPipeline(broker->bootstrap());
    files.steps["20_endless.sql"] = kEndlessStep;
    WritePipeline(dir.path(), files);
    ProduceValues(broker->bootstrap(), "events", IdAmountValues("e", 0, 2));
    BackgroundSluice run({"run", dir.path(), "--every", "1s", "-v"}, dir / "run.log");
    ASSERT_TRUE(WaitFor([&] { return Contains(run.output(), "reloaded seeds") || Contains(run.output(), "into "); },
                        milliseconds(15000)))
        << run.output();
    std::this_thread::sleep_for(milliseconds(1500));  // inside the endless step by now
    auto start = std::chrono::steady_clock::now();
    std::optional<int> code = run.Stop(signal, milliseconds(8000));
    ASSERT_TRUE(code.has_value()) << "did not stop within 8 s of signal " << signal << "\n" << run.output();
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 8);
    EXPECT_EQ(*code, 0) << run.output();
    EXPECT_TRUE(Contains(run.output(), "rolled back")) << run.output();
    EXPECT_EQ(QueryOne(dir / "pipeline.db", "SELECT count(*) FROM events"), "0");
    EXPECT_EQ(QueryOne(dir / "pipeline.db", "SELECT count(*) FROM _sluice_offsets"), "0");
  }
}

TEST(Offsets, LogsPipedIntoHeadDoNotKillSluice) {
  TempDir dir;
  auto broker = testing::StartAppendPipeline(dir.path(), 30);
  ASSERT_NE(broker, nullptr);
  std::string output;
  std::string command = "bash -c " + testing::ShellQuote(std::string(SLUICE_BINARY) + " run " +
                                                         testing::ShellQuote(dir.path()) +
                                                         " -v --max-messages 3 2>&1 | head -c 1 >/dev/null; "
                                                         "echo \"exit=${PIPESTATUS[0]}\"");
  ASSERT_EQ(testing::RunShell(command, &output), 0) << output;
  EXPECT_TRUE(Contains(output, "exit=0")) << output;
  EXPECT_EQ(QueryOne(dir / "pipeline.db", "SELECT count(*) FROM events"), "30");
}

TEST(Offsets, InitNamesTheGroupAfterTheDirectory) {
  TempDir dir;
  std::string output;
  ASSERT_EQ(RunSluice({"init", dir / "alpha"}, &output), 0) << output;
  ASSERT_EQ(RunSluice({"init", dir / "beta"}, &output), 0) << output;
  EXPECT_TRUE(Contains(testing::ReadFile(dir / "alpha/pipeline.conf"), "group = sluice-alpha ")) << output;
  EXPECT_TRUE(Contains(testing::ReadFile(dir / "beta/pipeline.conf"), "group = sluice-beta ")) << output;
}

// A full disk, simulated with a file size limit (ulimit -f): the batch
// fails with SQLite's message, nothing half-written stays, and once there is
// room again every message is there exactly once.
TEST(Offsets, FullDiskFailsTheBatchWithAMessageAndLosesNothing) {
  TempDir dir;
  auto broker = testing::StartBroker("events", 1);
  ASSERT_NE(broker, nullptr);
  testing::WritePipeline(dir.path(), AppendPipeline(broker->bootstrap()));
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "--once"}, &output), 0) << output;
  std::vector<std::string> values;
  for (int i = 0; i < 4000; ++i) values.push_back(R"({"id":"e)" + std::to_string(i) + R"(","amount":1,"pad":")" + std::string(400, 'x') + "\"}");
  ProduceValues(broker->bootstrap(), "events", values);
  std::string command = "ulimit -f 2048; " + std::string(SLUICE_BINARY) + " run " + testing::ShellQuote(dir.path()) +
                        " 2>&1; echo exit=$?";
  ASSERT_EQ(testing::RunShell("sh -c " + testing::ShellQuote(command), &output), 0) << output;
  EXPECT_TRUE(Contains(output, "exit=1")) << output;
  EXPECT_TRUE(Contains(output, "disk is full") || Contains(output, "disk I/O error")) << output;
  ASSERT_EQ(RunSluice({"run", dir.path()}, &output), 0) << output;
  EXPECT_EQ(QueryOne(dir / "pipeline.db", "SELECT count(*) || '/' || count(DISTINCT off) FROM events"), "4000/4000");
}

// A reader that keeps a snapshot open (a transaction left open in a notebook)
// stops SQLite from reusing its write-ahead log, which then grows without
// bound: sluice says so, naming the cause.
TEST(Offsets, GrowingWriteAheadLogBehindAnOldSnapshotIsWarnedAbout) {
  TempDir dir;
  auto broker = testing::StartBroker("events", 1);
  ASSERT_NE(broker, nullptr);
  PipelineFiles files = AppendPipeline(broker->bootstrap());
  files.schema += "CREATE TABLE IF NOT EXISTS blobs(b BLOB);\n";
  files.steps["20_blobs.sql"] = "INSERT INTO blobs SELECT randomblob(25 * 1024 * 1024) FROM batch;\n";
  testing::WritePipeline(dir.path(), files);
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "--once"}, &output), 0) << output;
  sqlite3* reader = nullptr;
  ASSERT_EQ(sqlite3_open((dir / "pipeline.db").c_str(), &reader), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(reader, "BEGIN; SELECT count(*) FROM events;", nullptr, nullptr, nullptr), SQLITE_OK);
  ProduceValues(broker->bootstrap(), "events", IdAmountValues("e", 0, 3));
  int code = RunSluice({"run", dir.path()}, &output);
  sqlite3_exec(reader, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(reader);
  ASSERT_EQ(code, 0) << output;
  EXPECT_TRUE(Contains(output, "a reader holds an old snapshot")) << output;
}

}  // namespace
}  // namespace sluice
