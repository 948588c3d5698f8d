// The sluice binary: crash recovery at the crash points, the pipeline lock,
// run modes (--once, --until-caught-up, --every with SIGTERM), and the
// --version, broker --help, produce and error paths.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "test_support.h"

extern char** environ;

namespace sluice {
namespace {

using testing::BasicConf;
using testing::PipelineFiles;
using testing::ProduceValues;
using testing::Query;
using testing::QueryOne;
using testing::RunSluice;
using testing::TempDir;
using testing::WriteFile;
using testing::WritePipeline;

using Rows = std::vector<std::string>;
using Clock = std::chrono::steady_clock;

std::vector<std::string> Values(const std::string& prefix, int first, int count) {
  std::vector<std::string> values;
  for (int i = first; i < first + count; ++i) {
    values.push_back(R"({"id":")" + prefix + std::to_string(i) + R"(","amount":)" + std::to_string(i) + "}");
  }
  return values;
}

// Appends every batch row to `events`: no key, so a message processed twice
// would be there twice.
PipelineFiles AppendPipeline(const std::string& brokers) {
  PipelineFiles files;
  files.conf = BasicConf(brokers, "events", "id = TEXT\namount = REAL");
  files.schema = "CREATE TABLE IF NOT EXISTS events(id TEXT, amount REAL, off INTEGER);\n";
  files.steps["10_append.sql"] = "INSERT INTO events(id, amount, off) SELECT id, amount, _kafka_offset FROM batch;\n";
  return files;
}

bool Contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string Lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text;
}

// The single value of `sql`, or nullopt while the database or table is not
// there yet (unlike testing::QueryOne, which reports those as failures).
std::optional<std::string> TryQueryOne(const std::string& path, const std::string& sql) {
  if (access(path.c_str(), F_OK) != 0) return std::nullopt;
  sqlite3* db = nullptr;
  std::optional<std::string> value;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 2000);
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK && sqlite3_step(stmt) == SQLITE_ROW) {
      const unsigned char* text = sqlite3_column_text(stmt, 0);
      value = text ? reinterpret_cast<const char*>(text) : "NULL";
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  return value;
}

// Polls `done` every 50 ms until it is true or `timeout` passes.
bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return done();
}

// `sluice ARGS...` in the background, stdout and stderr to `log`. The
// destructor kills (SIGKILL) and reaps it if it is still running, so no test
// path leaves a process behind.
class Background {
 public:
  Background(const std::vector<std::string>& args, const std::string& log) : log_(log) {
    std::vector<std::string> argv_strings = {SLUICE_BINARY};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& arg : argv_strings) argv.push_back(arg.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) pid_ = -1;
  }
  ~Background() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      int status = 0;
      waitpid(pid_, &status, 0);
    }
  }
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;

  pid_t pid() const { return pid_; }
  bool running() {
    if (pid_ <= 0) return false;
    int status = 0;
    pid_t done = waitpid(pid_, &status, WNOHANG);
    if (done == pid_) {
      pid_ = -1;
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
      return false;
    }
    return true;
  }
  // Sends `signal` and waits up to `timeout` for the exit; returns the exit
  // code (128 + signal when killed by one), or nullopt on timeout.
  std::optional<int> Stop(int signal, std::chrono::milliseconds timeout) {
    if (pid_ > 0) kill(pid_, signal);
    if (!WaitFor([&] { return !running(); }, timeout)) return std::nullopt;
    return exit_code_;
  }
  // The end of what it printed (a runaway process can print a lot).
  std::string output() const {
    std::string all = testing::ReadFile(log_);
    return all.size() > 3000 ? "...\n" + all.substr(all.size() - 3000) : all;
  }

 private:
  std::string log_;
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
};

// ---------------------------------------------------------------------------
// Crash recovery.

// Produces 5 messages, runs with SLUICE_CRASH_AT=`point` and 2 messages per
// batch (killed during the first batch), then reruns without it.
void CrashDuringFirstBatchThenRerun(const std::string& point, bool first_batch_committed) {
  auto broker = testing::StartBroker("events", 1);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  std::string db = dir / "pipeline.db";
  WritePipeline(dir.path(), AppendPipeline(broker->bootstrap()));
  ProduceValues(broker->bootstrap(), "events", Values("e", 0, 5));

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
  size_t at = files.conf.find("group = test-group\n");
  ASSERT_NE(at, std::string::npos);
  files.conf.insert(at, "assignment = all\n");
  WritePipeline(dir.path(), files);
  ProduceValues(broker->bootstrap(), "events", Values("e", 0, 2));

  Background first({"run", dir.path(), "--brokers", broker->bootstrap(), "--every", "1s"}, dir / "first.log");
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
  auto broker = testing::StartBroker("events", 1);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  std::string db = dir / "pipeline.db";
  WritePipeline(dir.path(), AppendPipeline(broker->bootstrap()));
  ProduceValues(broker->bootstrap(), "events", Values("e", 0, 5));

  std::string output;
  int code = RunSluice({"run", dir.path(), "--brokers", broker->bootstrap(), "--once", "--max-messages", "2"}, &output);
  ASSERT_EQ(code, 0) << output;
  EXPECT_EQ(Query(db, "SELECT status, messages, staged FROM _sluice_runs"), (Rows{"ok|2|2"}));
  EXPECT_EQ(Query(db, "SELECT id FROM events ORDER BY off"), (Rows{"e0", "e1"}));
  EXPECT_EQ(Query(db, "SELECT next_offset FROM _sluice_offsets"), (Rows{"2"}));
  EXPECT_TRUE(Contains(output, "run 1: pulled 2 messages from events[0]")) << output;
}

TEST(Cli, UntilCaughtUpProcessesEverythingInCappedBatches) {
  auto broker = testing::StartBroker("events", 1);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  std::string db = dir / "pipeline.db";
  WritePipeline(dir.path(), AppendPipeline(broker->bootstrap()));
  ProduceValues(broker->bootstrap(), "events", Values("e", 0, 5));

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
  size_t at = files.conf.find("max_wait = 500ms");
  ASSERT_NE(at, std::string::npos);
  files.conf.replace(at, std::string("max_wait = 500ms").size(), "max_wait = 2s");
  WritePipeline(dir.path(), files);
  ProduceValues(broker->bootstrap(), "events", Values("a", 0, 2));

  Background run({"run", dir.path(), "--brokers", broker->bootstrap(), "--every", "300ms"}, dir / "run.log");
  ASSERT_GT(run.pid(), 0);
  ASSERT_TRUE(WaitFor([&] { return TryQueryOne(db, "SELECT count(*) FROM events") == "2"; }, std::chrono::seconds(10)))
      << run.output();
  ASSERT_TRUE(run.running()) << run.output();

  // Produced while it runs: picked up by a later tick.
  ProduceValues(broker->bootstrap(), "events", Values("b", 0, 3));
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
