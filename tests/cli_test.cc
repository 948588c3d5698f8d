// The sluice binary: crash recovery at the crash points, the pipeline lock,
// run modes (--once, --until-caught-up, --every with SIGTERM), and the
// --version, broker --help, produce and error paths.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "test_support.h"

namespace sluice {
namespace {

using testing::AppendPipeline;
using testing::Child;
using testing::Contains;
using testing::IdAmountValues;
using testing::PipelineFiles;
using testing::ProduceValues;
using testing::Query;
using testing::QueryOne;
using testing::RunSluice;
using testing::TempDir;
using testing::TryQueryOne;
using testing::WaitFor;
using testing::WriteFile;
using testing::WritePipeline;

using Rows = std::vector<std::string>;
using Clock = std::chrono::steady_clock;

std::string Lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text;
}

// ---------------------------------------------------------------------------
// Crash recovery.

// Produces 5 messages, runs with SLUICE_CRASH_AT=`point` and 2 messages per
// batch (killed during the first batch), then reruns without it.
void CrashDuringFirstBatchThenRerun(const std::string& point, bool first_batch_committed) {
  TempDir dir;
  std::string db = dir / "pipeline.db";
  auto broker = testing::StartAppendPipeline(dir.path(), 5);
  ASSERT_NE(broker, nullptr);

  std::string output;
  int code = RunSluice({"run", dir.path(), "--brokers", broker->bootstrap(), "--max-messages", "2"}, &output,
                       {"SLUICE_CRASH_AT=" + point});
  ASSERT_EQ(code, 137) << output;  // SIGKILL
  if (first_batch_committed) {
    EXPECT_EQ(Query(db, "SELECT id FROM events ORDER BY off"), (Rows{"e0", "e1"}));
    EXPECT_EQ(Query(db, "SELECT next_offset FROM _sluice_offsets"), (Rows{"2"}));
    EXPECT_EQ(Query(db, "SELECT status, messages FROM _sluice_runs"), (Rows{"ok|2"}));
  } else {
    EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM events"), "0");
    EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM _sluice_offsets"), "0");
    EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM _sluice_runs"), "0");
  }

  code = RunSluice({"run", dir.path(), "--brokers", broker->bootstrap()}, &output);
  ASSERT_EQ(code, 0) << output;
  EXPECT_EQ(Query(db, "SELECT id, off FROM events ORDER BY off, id"), (Rows{"e0|0", "e1|1", "e2|2", "e3|3", "e4|4"}));
  EXPECT_EQ(Query(db, "SELECT next_offset FROM _sluice_offsets"), (Rows{"5"}));
  EXPECT_EQ(Query(db, "SELECT status, messages FROM _sluice_runs ORDER BY run_id"),
            first_batch_committed ? (Rows{"ok|2", "ok|3"}) : (Rows{"ok|5"}));
  EXPECT_EQ(QueryOne(db, "PRAGMA integrity_check"), "ok");
}

TEST(Cli, CrashAfterSqliteCommitBeforeKafkaCommitNeitherLosesNorDoubles) {
  CrashDuringFirstBatchThenRerun("after_sqlite_commit", /*first_batch_committed=*/true);
}

TEST(Cli, CrashAfterStageCommitsNothingAndRerunProcessesBatchOnce) {
  CrashDuringFirstBatchThenRerun("after_stage", /*first_batch_committed=*/false);
}

TEST(Cli, CrashBeforeSqliteCommitCommitsNothingAndRerunProcessesBatchOnce) {
  CrashDuringFirstBatchThenRerun("before_sqlite_commit", /*first_batch_committed=*/false);
}

// ---------------------------------------------------------------------------
// The pipeline lock.

TEST(Cli, SecondProcessIsRefusedWhileFirstHoldsTheLock) {
  auto broker = testing::StartBroker("events", 1);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  std::string db = dir / "pipeline.db";
  PipelineFiles files = AppendPipeline(broker->bootstrap());
  ASSERT_TRUE(testing::ReplaceFirst(&files.conf, "group = test-group\n", "assignment = all\ngroup = test-group\n"));
  WritePipeline(dir.path(), files);
  ProduceValues(broker->bootstrap(), "events", IdAmountValues("e", 0, 2));

  Child first({"run", dir.path(), "--brokers", broker->bootstrap(), "--every", "1s"}, dir / "first.log");
  ASSERT_GT(first.pid(), 0);
  std::string holder = "sluice pid " + std::to_string(first.pid()) + " ";
  ASSERT_TRUE(
      WaitFor([&] { return Contains(testing::ReadFile(db + "-sluice.lock"), holder); }, std::chrono::seconds(10)))
      << first.output();
  // Let it finish a batch so the refusal is not an accident of start-up.
  ASSERT_TRUE(WaitFor([&] { return TryQueryOne(db, "SELECT count(*) FROM events") == "2"; }, std::chrono::seconds(10)))
      << first.output();

  std::string output;
  int code = RunSluice({"run", dir.path(), "--brokers", broker->bootstrap(), "--once"}, &output);
  EXPECT_NE(code, 0) << output;
  EXPECT_TRUE(Contains(output, "pid " + std::to_string(first.pid()))) << output;
  EXPECT_TRUE(Contains(output, "is in use by")) << output;
  EXPECT_TRUE(first.running()) << first.output();

  std::optional<int> exit_code = first.Stop(SIGTERM, std::chrono::seconds(10));
  ASSERT_TRUE(exit_code.has_value()) << "did not stop within 10 s after SIGTERM\n" << first.output();
  EXPECT_EQ(*exit_code, 0) << first.output();
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM events"), "2");
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM _sluice_runs WHERE status <> 'ok'"), "0");

  // The lock went with the process: a new run is accepted.
  code = RunSluice({"run", dir.path(), "--brokers", broker->bootstrap(), "--once"}, &output);
  EXPECT_EQ(code, 0) << output;
}

// ---------------------------------------------------------------------------
// Run modes.

TEST(Cli, OnceRunsExactlyOneBatch) {
  TempDir dir;
  std::string db = dir / "pipeline.db";
  auto broker = testing::StartAppendPipeline(dir.path(), 5);
  ASSERT_NE(broker, nullptr);

  std::string output;
  int code = RunSluice({"run", dir.path(), "--brokers", broker->bootstrap(), "--once", "--max-messages", "2"}, &output);
  ASSERT_EQ(code, 0) << output;
  EXPECT_EQ(Query(db, "SELECT status, messages, staged FROM _sluice_runs"), (Rows{"ok|2|2"}));
  EXPECT_EQ(Query(db, "SELECT id FROM events ORDER BY off"), (Rows{"e0", "e1"}));
  EXPECT_EQ(Query(db, "SELECT next_offset FROM _sluice_offsets"), (Rows{"2"}));
  EXPECT_TRUE(Contains(output, "run 1: pulled 2 messages from events[0]")) << output;
}

TEST(Cli, UntilCaughtUpProcessesEverythingInCappedBatches) {
  TempDir dir;
  std::string db = dir / "pipeline.db";
  auto broker = testing::StartAppendPipeline(dir.path(), 5);
  ASSERT_NE(broker, nullptr);

  std::string output;
  int code = RunSluice(
      {"run", dir.path(), "--brokers", broker->bootstrap(), "--until-caught-up", "--max-messages", "2"}, &output);
  ASSERT_EQ(code, 0) << output;
  EXPECT_EQ(Query(db, "SELECT status, messages FROM _sluice_runs ORDER BY run_id"), (Rows{"ok|2", "ok|2", "ok|1"}));
  EXPECT_EQ(QueryOne(db, "SELECT count(*) || ' ' || count(DISTINCT off) FROM events"), "5 5");
  EXPECT_EQ(Query(db, "SELECT next_offset FROM _sluice_offsets"), (Rows{"5"}));
}

TEST(Cli, EveryPicksUpNewMessagesAndExitsZeroOnSigterm) {
  auto broker = testing::StartBroker("events", 1);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  std::string db = dir / "pipeline.db";
  PipelineFiles files = AppendPipeline(broker->bootstrap());
  // The default max_wait (2s) rather than BasicConf's 500ms: each pass then
  // ends when the partition reports its end, as it would in production.
  ASSERT_TRUE(testing::ReplaceFirst(&files.conf, "max_wait = 500ms", "max_wait = 2s"));
  WritePipeline(dir.path(), files);
  ProduceValues(broker->bootstrap(), "events", IdAmountValues("a", 0, 2));

  Child run({"run", dir.path(), "--brokers", broker->bootstrap(), "--every", "300ms"}, dir / "run.log");
  ASSERT_GT(run.pid(), 0);
  ASSERT_TRUE(WaitFor([&] { return TryQueryOne(db, "SELECT count(*) FROM events") == "2"; }, std::chrono::seconds(10)))
      << run.output();
  ASSERT_TRUE(run.running()) << run.output();

  // Produced while it runs: picked up by a later tick.
  ProduceValues(broker->bootstrap(), "events", IdAmountValues("b", 0, 3));
  ASSERT_TRUE(WaitFor([&] { return TryQueryOne(db, "SELECT count(*) FROM events") == "5"; }, std::chrono::seconds(10)))
      << "events: " << TryQueryOne(db, "SELECT count(*) FROM events").value_or("?") << ", runs recorded: "
      << TryQueryOne(db, "SELECT count(*) || ' (' || sum(messages = 0) || ' empty)' FROM _sluice_runs").value_or("?")
      << "\n"
      << run.output();
  ASSERT_TRUE(run.running()) << run.output();

  std::optional<int> exit_code = run.Stop(SIGTERM, std::chrono::seconds(10));
  ASSERT_TRUE(exit_code.has_value()) << "did not stop within 10 s after SIGTERM\n" << run.output();
  EXPECT_EQ(*exit_code, 0) << run.output();
  EXPECT_EQ(Query(db, "SELECT id FROM events ORDER BY off"), (Rows{"a0", "a1", "b0", "b1", "b2"}));
  EXPECT_EQ(Query(db, "SELECT next_offset FROM _sluice_offsets"), (Rows{"5"}));
  EXPECT_EQ(QueryOne(db, "SELECT sum(messages) FROM _sluice_runs WHERE status = 'ok'"), "5");
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM _sluice_runs WHERE status <> 'ok'"), "0");
  EXPECT_EQ(QueryOne(db, "PRAGMA integrity_check"), "ok");
}

// ---------------------------------------------------------------------------
// Other commands and error paths.

TEST(Cli, VersionNamesLibrdkafkaAndSqlite) {
  std::string output;
  int code = RunSluice({"--version"}, &output);
  EXPECT_EQ(code, 0) << output;
  EXPECT_EQ(output.rfind("sluice ", 0), 0u) << output;
  EXPECT_TRUE(Contains(output, "librdkafka ")) << output;
  EXPECT_TRUE(Contains(output, "SQLite 3.")) << output;
}

TEST(Cli, RunWithBadPipelineConfExitsNonZeroNamingTheKey) {
  TempDir dir;
  WriteFile(dir / "pipeline.conf",
            "[source]\nbrokers = 127.0.0.1:1\ntopic = events\nbatch_size = 10\n[columns]\nid = TEXT\n");
  std::string output;
  int code = RunSluice({"run", dir.path(), "--once"}, &output);
  EXPECT_EQ(code, 1) << output;
  EXPECT_TRUE(Contains(output, "pipeline.conf:4: [source] batch_size: unknown key")) << output;
  EXPECT_NE(access((dir / "pipeline.db").c_str(), F_OK), 0) << "no database should be created";
}

TEST(Cli, BrokerHelpWarnsAboutMemoryAndSizeLimit) {
  std::string output;
  int code = RunSluice({"broker", "--help"}, &output);
  EXPECT_EQ(code, 0) << output;
  EXPECT_TRUE(Contains(Lower(output), "memory")) << output;
  EXPECT_TRUE(Contains(output, "5 MiB")) << output;
}

TEST(Cli, ProduceReportsDeliveredCountAndMessagesArrive) {
  auto broker = testing::StartBroker("events", 1);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  std::string db = dir / "pipeline.db";
  WritePipeline(dir.path(), AppendPipeline(broker->bootstrap()));
  WriteFile(dir / "input.jsonl",
            "{\"id\":\"x\",\"amount\":1}\n\n{\"id\":\"y\",\"amount\":2}\n{\"id\":\"z\",\"amount\":3}\n");

  std::string output;
  int code = RunSluice(
      {"produce", "--brokers", broker->bootstrap(), "--topic", "events", "--key-field", "id", dir / "input.jsonl"},
      &output);
  EXPECT_EQ(code, 0) << output;
  EXPECT_TRUE(Contains(output, "delivered 3 of 3")) << output;

  code = RunSluice({"run", dir.path(), "--brokers", broker->bootstrap()}, &output);
  ASSERT_EQ(code, 0) << output;
  EXPECT_EQ(Query(db, "SELECT id, amount FROM events ORDER BY off"), (Rows{"x|1.0", "y|2.0", "z|3.0"}));
  EXPECT_EQ(Query(db, "SELECT _kafka_key FROM batch ORDER BY _kafka_offset"), (Rows{"x", "y", "z"}));
}

TEST(Cli, UnreachableBrokerFailsWithinBoundedTimeNamingIt) {
  TempDir dir;
  std::string db = dir / "pipeline.db";
  PipelineFiles files;
  files.conf =
      "[source]\nbrokers = 127.0.0.1:1\ntopic = events\nconnect_timeout = 2s\n"
      "[columns]\nid = TEXT\n[target]\ndatabase = pipeline.db\n";
  files.schema = "CREATE TABLE IF NOT EXISTS events(id TEXT);\n";
  files.steps["10_append.sql"] = "INSERT INTO events SELECT id FROM batch;\n";
  WritePipeline(dir.path(), files);

  auto start = Clock::now();
  std::string output;
  int code = RunSluice({"run", dir.path()}, &output);
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_EQ(code, 1) << output;
  EXPECT_LT(seconds, 20.0);
  EXPECT_TRUE(Contains(output, "cannot reach brokers 127.0.0.1:1")) << output;
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM _sluice_runs WHERE status = 'ok'"), "0");
}

}  // namespace
}  // namespace sluice
