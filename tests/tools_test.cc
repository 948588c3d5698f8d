// The analyst commands of the sluice binary: init, validate, test (fixtures),
// run --from-file, status, reset, quarantine list|replay, compact, and the
// progress bar of `run --until-caught-up`. Every command runs through the real
// binary; the database is read back with sqlite.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test_support.h"

namespace sluice {
namespace {

using testing::AppendPipeline;
using testing::BasicConf;
using testing::Child;
using testing::Contains;
using testing::IdAmountValues;
using testing::PipelineFiles;
using testing::ProduceValues;
using testing::Query;
using testing::QueryOne;
using testing::ReadFile;
using testing::RunSluice;
using testing::RunSluiceNoStdin;
using testing::RunSluicePipedFrom;
using testing::TempDir;
using testing::TryQueryOne;
using testing::WaitFor;
using testing::WriteFile;
using testing::WritePipeline;

using Rows = std::vector<std::string>;
using Clock = std::chrono::steady_clock;

bool Exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

// Runs `sluice ARGS...` with stderr on a pseudo-terminal (stdout and stdin on
// /dev/null) and returns what it wrote there; *code gets the exit code.
// Bounded by `timeout`: the process is killed and reaped on every path.
std::string RunWithStderrOnTerminal(const std::vector<std::string>& args, int* code,
                                    std::chrono::milliseconds timeout) {
  *code = -1;
  int master = posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) {
    if (master >= 0) close(master);
    ADD_FAILURE() << "no pseudo-terminal available";
    return "";
  }
  // No newline translation: a '\r' in the output is then one sluice wrote.
  struct termios settings {};
  if (tcgetattr(master, &settings) == 0) {
    settings.c_oflag &= ~static_cast<tcflag_t>(ONLCR);
    tcsetattr(master, TCSANOW, &settings);
  }
  std::string slave_name = ptsname(master);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, slave_name.c_str(), O_RDWR | O_NOCTTY, 0);
  posix_spawn_file_actions_addclose(&actions, master);
  pid_t pid = testing::SpawnSluice(args, &actions);
  posix_spawn_file_actions_destroy(&actions);
  if (pid < 0) {
    close(master);
    ADD_FAILURE() << "cannot spawn " << SLUICE_BINARY;
    return "";
  }
  fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
  std::string out;
  char buffer[4096];
  auto drain = [&] {
    while (true) {
      ssize_t n = read(master, buffer, sizeof(buffer));
      if (n > 0) out.append(buffer, static_cast<size_t>(n));
      else break;
    }
  };
  auto deadline = Clock::now() + timeout;
  int status = 0;
  bool exited = false;
  while (Clock::now() < deadline) {
    drain();
    if (waitpid(pid, &status, WNOHANG) == pid) {
      exited = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!exited) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    ADD_FAILURE() << "sluice did not finish within the timeout";
  }
  drain();
  close(master);
  *code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

// The whitespace-separated fields of the first line of `text` that starts with `prefix`.
std::vector<std::string> LineFields(const std::string& text, const std::string& prefix) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(prefix, 0) != 0) continue;
    std::istringstream words(line);
    std::vector<std::string> fields;
    std::string word;
    while (words >> word) fields.push_back(word);
    return fields;
  }
  return {};
}

// ---------------------------------------------------------------------------
// sluice init

TEST(Init, CreatesDirectoryThatPassesValidateAndTest) {
  TempDir tmp;
  std::string dir = tmp / "fresh";
  std::string output;
  int code = RunSluice({"init", dir}, &output);
  ASSERT_EQ(code, 0) << output;
  EXPECT_TRUE(Exists(dir + "/pipeline.conf"));
  EXPECT_TRUE(Exists(dir + "/schema.sql"));

  code = RunSluice({"validate", dir}, &output);
  EXPECT_EQ(code, 0) << output;
  EXPECT_TRUE(Contains(output, "ok")) << output;

  code = RunSluice({"test", dir}, &output);
  EXPECT_EQ(code, 0) << output;
  EXPECT_TRUE(Contains(output, "1 passed, 0 failed")) << output;
  // Neither validate nor test touched a database file.
  EXPECT_FALSE(Exists(dir + "/events.db"));
}

TEST(Init, RefusesNonEmptyDirectory) {
  TempDir tmp;
  WriteFile(tmp / "notes.txt", "mine\n");
  std::string output;
  int code = RunSluice({"init", tmp.path()}, &output);
  EXPECT_NE(code, 0) << output;
  EXPECT_TRUE(Contains(output, "not empty")) << output;
  EXPECT_FALSE(Exists(tmp / "pipeline.conf"));
  EXPECT_EQ(ReadFile(tmp / "notes.txt"), "mine\n");
}

// ---------------------------------------------------------------------------
// sluice validate

// A valid pipeline that points at a broker nobody listens on.
PipelineFiles OfflinePipeline() {
  PipelineFiles files;
  files.conf = BasicConf("127.0.0.1:1", "events", "id = TEXT\namount = REAL");
  files.schema = "CREATE TABLE IF NOT EXISTS curated(id TEXT PRIMARY KEY, amount REAL);\n";
  files.steps["10_upsert.sql"] =
      "INSERT INTO curated(id, amount)\nSELECT id, amount FROM batch WHERE true\n"
      "ON CONFLICT(id) DO UPDATE SET amount = excluded.amount;\n";
  return files;
}

// Writes `files` into a fresh temporary directory and runs `sluice validate` on
// it; returns the exit code and stores stdout+stderr in *output.
int RunValidate(const PipelineFiles& files, std::string* output) {
  TempDir dir;
  WritePipeline(dir.path(), files);
  return RunSluice({"validate", dir.path()}, output);
}

TEST(Validate, SyntaxErrorNamesStepFileAndLine) {
  PipelineFiles files = OfflinePipeline();
  files.steps["20_broken.sql"] = "-- keep only big ones\nINSERT INTO curated(id, amount)\nSELEC id, amount FROM batch;\n";
  std::string output;
  int code = RunValidate(files, &output);
  EXPECT_EQ(code, 1) << output;
  EXPECT_TRUE(Contains(output, "steps/20_broken.sql:3")) << output;
  EXPECT_FALSE(Contains(output, ": ok")) << output;
}

TEST(Validate, ListsEveryConfigProblemBeforeAnySqlCheck) {
  PipelineFiles files = OfflinePipeline();
  files.conf =
      "[source]\nbrokers = 127.0.0.1:1\ntopic = events\nstart = beginning\nbatch_size = 10\n"
      "[batch]\nmax_wait = soon\n[columns]\nid = TEXT\n[target]\ndatabase = pipeline.db\n";
  files.steps["20_broken.sql"] = "SELEC 1;\n";
  std::string output;
  int code = RunValidate(files, &output);
  EXPECT_EQ(code, 1) << output;
  EXPECT_TRUE(Contains(output, "pipeline.conf:4: [source] start:")) << output;
  EXPECT_TRUE(Contains(output, "pipeline.conf:5: [source] batch_size: unknown key")) << output;
  EXPECT_TRUE(Contains(output, "pipeline.conf:7: [batch] max_wait:")) << output;
  EXPECT_TRUE(Contains(output, "3 problems")) << output;
  // Config errors stop the checks before the SQL.
  EXPECT_FALSE(Contains(output, "steps/20_broken.sql")) << output;
}

TEST(Validate, RaggedSeedRowsAreReportedWithFileAndLine) {
  PipelineFiles files = OfflinePipeline();
  files.seeds["regions.csv"] = "code,name\nn,North\ns\nw,West\n";
  files.seeds["cities.csv"] = "city,region,pop\nOslo,n,700\nBergen,w,280,extra\n";
  std::string output;
  int code = RunValidate(files, &output);
  EXPECT_EQ(code, 1) << output;
  EXPECT_TRUE(Contains(output, "seeds/regions.csv:3")) << output;
  EXPECT_TRUE(Contains(output, "seeds/cities.csv:3")) << output;
  EXPECT_TRUE(Contains(output, "2 problems")) << output;
}

TEST(Validate, NeedsNoBrokerAndCreatesNoDatabase) {
  TempDir dir;
  PipelineFiles files = OfflinePipeline();
  files.seeds["regions.csv"] = "code,name\nn,North\n";
  WritePipeline(dir.path(), files);
  auto start = Clock::now();
  std::string output;
  int code = RunSluice({"validate", dir.path()}, &output);
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_EQ(code, 0) << output;
  EXPECT_TRUE(Contains(output, "ok")) << output;
  EXPECT_LT(seconds, 5.0) << "validate should not try to reach 127.0.0.1:1";
  EXPECT_FALSE(Exists(dir / "pipeline.db"));
  EXPECT_FALSE(Exists(dir / "pipeline.db-wal"));
  EXPECT_FALSE(Exists(dir / "pipeline.db-sluice.lock"));
}

// ---------------------------------------------------------------------------
// sluice test (fixtures)

// A pipeline whose step keeps, per id, the value of the newest event *within
// the batch* and overwrites the curated row without comparing with what is
// already there: correct only if a late event never arrives in a later batch.
PipelineFiles LatestInBatchPipeline() {
  PipelineFiles files;
  files.conf = BasicConf("127.0.0.1:1", "events", "id = TEXT\namount = REAL");
  files.schema = "CREATE TABLE IF NOT EXISTS latest(id TEXT PRIMARY KEY, amount REAL);\n";
  files.steps["10_latest.sql"] =
      "INSERT INTO latest(id, amount)\n"
      "SELECT id, amount FROM batch AS b\n"
      "WHERE _kafka_timestamp = (SELECT max(_kafka_timestamp) FROM batch WHERE id = b.id)\n"
      "ON CONFLICT(id) DO UPDATE SET amount = excluded.amount;\n";
  return files;
}

TEST(Fixtures, MismatchPrintsMissingAndUnexpectedRowsAndExitsOne) {
  TempDir dir;
  WritePipeline(dir.path(), LatestInBatchPipeline());
  WriteFile(dir / "tests/wrong/input.jsonl", "{\"id\":\"a\",\"amount\":5}\n{\"id\":\"b\",\"amount\":7}\n");
  WriteFile(dir / "tests/wrong/expected/latest.csv", "id,amount\na,5\nc,9\n");
  std::string output;
  int code = RunSluice({"test", dir.path()}, &output);
  EXPECT_EQ(code, 1) << output;
  EXPECT_TRUE(Contains(output, "FAIL wrong")) << output;
  EXPECT_TRUE(Contains(output, "- c | 9")) << output;
  EXPECT_TRUE(Contains(output, "+ b | 7.0")) << output;
  EXPECT_FALSE(Contains(output, "- a |")) << "a matched and must not be listed\n" << output;
  EXPECT_TRUE(Contains(output, "0 passed, 1 failed")) << output;
}

TEST(Fixtures, BatchesFileChangesOutcomeWhenLateEventLandsInItsOwnBatch) {
  TempDir dir;
  WritePipeline(dir.path(), LatestInBatchPipeline());
  // The event for "a" at t=1000 arrives after the one at t=2000.
  std::string input =
      "{\"id\":\"a\",\"amount\":1,\"_kafka_timestamp\":2000}\n"
      "{\"id\":\"a\",\"amount\":2,\"_kafka_timestamp\":1000}\n";
  for (const std::string name : {"one_batch", "late_alone"}) {
    WriteFile(dir / ("tests/" + name + "/input.jsonl"), input);
    WriteFile(dir / ("tests/" + name + "/expected/latest.csv"), "id,amount\na,1\n");
  }
  WriteFile(dir / "tests/late_alone/batches", "# the late event in a batch of its own\n1\n1\n");
  std::string output;
  int code = RunSluice({"test", dir.path()}, &output);
  EXPECT_EQ(code, 1) << output;
  EXPECT_TRUE(Contains(output, "PASS one_batch")) << output;
  EXPECT_TRUE(Contains(output, "FAIL late_alone")) << output;
  // The late event overwrote the newer value.
  EXPECT_TRUE(Contains(output, "- a | 1")) << output;
  EXPECT_TRUE(Contains(output, "+ a | 2.0")) << output;
  EXPECT_TRUE(Contains(output, "1 passed, 1 failed")) << output;
}

TEST(Fixtures, NumbersCompareNumericallyAndEmptyCellIsNull) {
  TempDir dir;
  PipelineFiles files;
  files.conf = BasicConf("127.0.0.1:1", "events", "id = TEXT\namount = REAL\nnote = TEXT");
  files.schema = "CREATE TABLE IF NOT EXISTS seen(id TEXT, amount REAL, note TEXT);\n";
  files.steps["10_copy.sql"] = "INSERT INTO seen SELECT id, amount, note FROM batch;\n";
  WritePipeline(dir.path(), files);
  std::string input = "{\"id\":\"a\",\"amount\":42,\"note\":\"\"}\n{\"id\":\"b\",\"note\":\"x\"}\n";
  auto add_case = [&](const std::string& name, const std::string& csv) {
    WriteFile(dir / ("tests/" + name + "/input.jsonl"), input);
    WriteFile(dir / ("tests/" + name + "/expected/seen.csv"), csv);
  };
  // 42 is stored as REAL 42.0; b has no amount (NULL).
  add_case("a_numeric", "id,amount\na,42\nb,\n");
  add_case("b_other_number", "id,amount\na,42.5\nb,\n");
  add_case("c_zero_is_not_null", "id,amount\na,42\nb,0\n");
  // a's note is the empty string, which an empty cell (NULL) does not match.
  add_case("d_empty_string_is_not_null", "id,note\na,\nb,x\n");
  std::string output;
  int code = RunSluice({"test", dir.path()}, &output);
  EXPECT_EQ(code, 1) << output;
  EXPECT_TRUE(Contains(output, "PASS a_numeric")) << output;
  EXPECT_TRUE(Contains(output, "FAIL b_other_number")) << output;
  EXPECT_TRUE(Contains(output, "- a | 42.5")) << output;
  EXPECT_TRUE(Contains(output, "FAIL c_zero_is_not_null")) << output;
  EXPECT_TRUE(Contains(output, "- b | 0")) << output;
  EXPECT_TRUE(Contains(output, "+ b | NULL")) << output;
  EXPECT_TRUE(Contains(output, "FAIL d_empty_string_is_not_null")) << output;
  EXPECT_TRUE(Contains(output, "- a | NULL")) << output;
  EXPECT_TRUE(Contains(output, "1 passed, 3 failed")) << output;
}

TEST(Fixtures, EnvelopeFieldsLandInMetadataAndLeaveTheValue) {
  TempDir dir;
  PipelineFiles files;
  files.conf = BasicConf("127.0.0.1:1", "events", "id = TEXT\namount = REAL");
  files.schema =
      "CREATE TABLE IF NOT EXISTS seen(id TEXT, amount REAL, k TEXT, p INTEGER, ts INTEGER, off INTEGER, v TEXT,"
      " has_key INTEGER);\n";
  files.steps["10_copy.sql"] =
      "INSERT INTO seen SELECT id, amount, _kafka_key, _kafka_partition, _kafka_timestamp, _kafka_offset,"
      " _kafka_value, json_extract(_kafka_value, '$._kafka_key') IS NOT NULL FROM batch;\n";
  WritePipeline(dir.path(), files);
  WriteFile(dir / "tests/envelope/input.jsonl",
            "{\"id\":\"a\",\"amount\":3,\"_kafka_key\":\"K1\",\"_kafka_partition\":3,"
            "\"_kafka_timestamp\":1700000000000}\n"
            "\n"
            "{\"id\":\"b\",\"amount\":4}\n");
  // Defaults: partition 0, offset and timestamp = line number, no key.
  WriteFile(dir / "tests/envelope/expected/seen.csv",
            "id,amount,k,p,ts,off,v,has_key\n"
            "a,3,K1,3,1700000000000,1,\"{\"\"id\"\":\"\"a\"\",\"\"amount\"\":3}\",0\n"
            "b,4,,0,3,3,\"{\"\"id\"\":\"\"b\"\",\"\"amount\"\":4}\",0\n");
  std::string output;
  int code = RunSluice({"test", dir.path()}, &output);
  EXPECT_EQ(code, 0) << output;
  EXPECT_TRUE(Contains(output, "PASS envelope")) << output;
  EXPECT_TRUE(Contains(output, "1 passed, 0 failed")) << output;
}

// The rest of the value stays as written: only the envelope fields go.
TEST(Fixtures, EnvelopeRemovalKeepsTheRestOfTheValueAsWritten) {
  TempDir dir;
  PipelineFiles files;
  files.conf = BasicConf("127.0.0.1:1", "events", "id = TEXT");
  files.schema = "CREATE TABLE IF NOT EXISTS seen(id TEXT, v TEXT);\n";
  files.steps["10_copy.sql"] = "INSERT INTO seen SELECT id, _kafka_value FROM batch;\n";
  WritePipeline(dir.path(), files);
  WriteFile(dir / "tests/order/input.jsonl",
            "{\"_kafka_key\":\"K1\",\"id\":\"a\",\"x\":1,\"y\":2}\n"
            "{\"id\":\"b\",\"_kafka_timestamp\":5,\"x\":1,\"y\":2}\n");
  WriteFile(dir / "tests/order/expected/seen.csv",
            "id,v\n"
            "a,\"{\"\"id\"\":\"\"a\"\",\"\"x\"\":1,\"\"y\"\":2}\"\n"
            "b,\"{\"\"id\"\":\"\"b\"\",\"\"x\"\":1,\"\"y\"\":2}\"\n");
  std::string output;
  int code = RunSluice({"test", dir.path()}, &output);
  EXPECT_EQ(code, 0) << output;
  EXPECT_TRUE(Contains(output, "PASS order")) << output;
}

TEST(Fixtures, CaseOptionRunsOnlyThatCase) {
  TempDir dir;
  WritePipeline(dir.path(), LatestInBatchPipeline());
  WriteFile(dir / "tests/good/input.jsonl", "{\"id\":\"a\",\"amount\":5}\n");
  WriteFile(dir / "tests/good/expected/latest.csv", "id,amount\na,5\n");
  WriteFile(dir / "tests/bad/input.jsonl", "{\"id\":\"a\",\"amount\":5}\n");
  WriteFile(dir / "tests/bad/expected/latest.csv", "id,amount\na,6\n");

  std::string output;
  int code = RunSluice({"test", dir.path(), "--case", "good"}, &output);
  EXPECT_EQ(code, 0) << output;
  EXPECT_TRUE(Contains(output, "PASS good")) << output;
  EXPECT_FALSE(Contains(output, "bad")) << output;
  EXPECT_TRUE(Contains(output, "1 passed, 0 failed")) << output;

  code = RunSluice({"test", dir.path(), "--case", "bad"}, &output);
  EXPECT_EQ(code, 1) << output;
  EXPECT_TRUE(Contains(output, "FAIL bad")) << output;
  EXPECT_FALSE(Contains(output, "good")) << output;
  EXPECT_TRUE(Contains(output, "0 passed, 1 failed")) << output;

  code = RunSluice({"test", dir.path(), "--case", "nosuch"}, &output);
  EXPECT_NE(code, 0) << output;
  EXPECT_TRUE(Contains(output, "nosuch")) << output;
}

// ---------------------------------------------------------------------------
// sluice run --from-file

// Copies every batch row to `seen` with its topic and offset; amount must stay
// below 100 (a CHECK failure fails the batch).
PipelineFiles FilePipeline() {
  PipelineFiles files;
  files.conf = BasicConf("127.0.0.1:1", "events", "id = TEXT\namount = REAL");
  files.schema =
      "CREATE TABLE IF NOT EXISTS seen(id TEXT, amount REAL CHECK (amount < 100), topic TEXT, part INTEGER,"
      " off INTEGER);\n";
  files.steps["10_copy.sql"] =
      "INSERT INTO seen SELECT id, amount, _kafka_topic, _kafka_partition, _kafka_offset FROM batch;\n";
  return files;
}

TEST(FromFile, ProcessesFileWithFileNameAsTopicAndLineNumberAsOffset) {
  TempDir dir;
  std::string db = dir / "pipeline.db";
  WritePipeline(dir.path(), FilePipeline());
  std::string input = dir / "orders.jsonl";
  WriteFile(input, "{\"id\":\"a\",\"amount\":1}\n\n{\"id\":\"b\",\"amount\":2}\n{\"id\":\"c\",\"amount\":\"x\"}\n");
  std::string output;
  int code = RunSluice({"run", dir.path(), "--from-file", input, "--max-messages", "2"}, &output);
  ASSERT_EQ(code, 0) << output;
  EXPECT_EQ(Query(db, "SELECT id, amount, topic, part, off FROM seen ORDER BY off"),
            (Rows{"a|1.0|orders.jsonl|0|1", "b|2.0|orders.jsonl|0|3"}));
  EXPECT_EQ(Query(db, "SELECT topic, \"partition\", \"offset\" FROM _sluice_quarantine"),
            (Rows{"orders.jsonl|0|4"}));
  EXPECT_EQ(Query(db, "SELECT topic, \"partition\", next_offset FROM _sluice_offsets"), (Rows{"orders.jsonl|0|5"}));
  EXPECT_EQ(Query(db, "SELECT status, messages, staged, quarantined FROM _sluice_runs ORDER BY run_id"),
            (Rows{"ok|2|2|0", "ok|1|0|1"}));
}

TEST(FromFile, FailingStepAdvancesNothingAndRerunProcessesTheSameLines) {
  TempDir dir;
  std::string db = dir / "pipeline.db";
  PipelineFiles files = FilePipeline();
  WritePipeline(dir.path(), files);
  std::string input = dir / "in.jsonl";
  WriteFile(input, "{\"id\":\"a\",\"amount\":1}\n{\"id\":\"b\",\"amount\":500}\n");
  std::string output;
  int code = RunSluice({"run", dir.path(), "--from-file", input}, &output);
  EXPECT_EQ(code, 1) << output;
  EXPECT_TRUE(Contains(output, "steps/10_copy.sql:1")) << output;
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM seen"), "0");
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM _sluice_offsets"), "0");
  EXPECT_EQ(Query(db, "SELECT status FROM _sluice_runs"), (Rows{"failed"}));

  // Fix the data: the same lines are processed, once.
  WriteFile(input, "{\"id\":\"a\",\"amount\":1}\n{\"id\":\"b\",\"amount\":50}\n");
  code = RunSluice({"run", dir.path(), "--from-file", input}, &output);
  ASSERT_EQ(code, 0) << output;
  EXPECT_EQ(Query(db, "SELECT id, off FROM seen ORDER BY off"), (Rows{"a|1", "b|2"}));
  EXPECT_EQ(Query(db, "SELECT next_offset FROM _sluice_offsets"), (Rows{"3"}));
}

TEST(FromFile, RerunSkipsStoredLinesAndAppendedLinesAreProcessedOnce) {
  TempDir dir;
  std::string db = dir / "pipeline.db";
  WritePipeline(dir.path(), FilePipeline());
  std::string input = dir / "in.jsonl";
  WriteFile(input, "{\"id\":\"a\",\"amount\":1}\n{\"id\":\"b\",\"amount\":2}\n{\"id\":\"c\",\"amount\":3}\n");
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "--from-file", input}, &output), 0) << output;
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM seen"), "3");
  std::string runs_before = QueryOne(db, "SELECT count(*) || '/' || sum(messages) FROM _sluice_runs");

  // Same file again: nothing new.
  ASSERT_EQ(RunSluice({"run", dir.path(), "--from-file", input}, &output), 0) << output;
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM seen"), "3");
  EXPECT_EQ(QueryOne(db, "SELECT coalesce(sum(messages), 0) FROM _sluice_runs"), "3") << output;
  EXPECT_EQ(QueryOne(db, "SELECT count(*) || '/' || sum(messages) FROM _sluice_runs WHERE messages > 0"),
            runs_before);

  // Two lines appended: only they are processed.
  WriteFile(input, ReadFile(input) + "{\"id\":\"d\",\"amount\":4}\n{\"id\":\"e\",\"amount\":5}\n");
  ASSERT_EQ(RunSluice({"run", dir.path(), "--from-file", input}, &output), 0) << output;
  EXPECT_EQ(Query(db, "SELECT id, off FROM seen ORDER BY off"), (Rows{"a|1", "b|2", "c|3", "d|4", "e|5"}));
  EXPECT_EQ(QueryOne(db, "SELECT sum(messages) FROM _sluice_runs WHERE status = 'ok'"), "5");
  EXPECT_EQ(Query(db, "SELECT topic, next_offset FROM _sluice_offsets"), (Rows{"in.jsonl|6"}));
}

// Lines may name their partition (_kafka_partition); the offset is still the
// line number, so a rerun must skip every line already processed, whatever
// its partition.
TEST(FromFile, RerunSkipsProcessedLinesOfEveryEnvelopePartition) {
  TempDir dir;
  std::string db = dir / "pipeline.db";
  WritePipeline(dir.path(), FilePipeline());
  std::string input = dir / "in.jsonl";
  WriteFile(input,
            "{\"id\":\"a\",\"amount\":1}\n{\"id\":\"b\",\"amount\":2}\n"
            "{\"id\":\"c\",\"amount\":3,\"_kafka_partition\":1}\n");
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "--from-file", input}, &output), 0) << output;
  ASSERT_EQ(Query(db, "SELECT id, part, off FROM seen ORDER BY off"), (Rows{"a|0|1", "b|0|2", "c|1|3"}));

  // Same file again: nothing new.
  ASSERT_EQ(RunSluice({"run", dir.path(), "--from-file", input}, &output), 0) << output;
  EXPECT_EQ(Query(db, "SELECT id, part, off FROM seen ORDER BY off"), (Rows{"a|0|1", "b|0|2", "c|1|3"})) << output;
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM _sluice_runs WHERE status <> 'ok'"), "0") << output;

  // One line appended: only it is processed.
  WriteFile(input, ReadFile(input) + "{\"id\":\"d\",\"amount\":4}\n");
  ASSERT_EQ(RunSluice({"run", dir.path(), "--from-file", input}, &output), 0) << output;
  EXPECT_EQ(Query(db, "SELECT id, part, off FROM seen ORDER BY off, id"),
            (Rows{"a|0|1", "b|0|2", "c|1|3", "d|0|4"}))
      << output;
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM _sluice_runs WHERE status <> 'ok'"), "0") << output;
}

TEST(FromFile, DashReadsStandardInput) {
  TempDir dir;
  std::string db = dir / "pipeline.db";
  WritePipeline(dir.path(), FilePipeline());
  std::string input = dir / "in.jsonl";
  WriteFile(input, "{\"id\":\"a\",\"amount\":1}\n{\"id\":\"b\",\"amount\":2}\n\n{\"id\":\"c\",\"amount\":3}\n");
  std::string output;
  int code = RunSluicePipedFrom(input, {"run", dir.path(), "--from-file", "-", "--max-messages", "2"}, &output);
  ASSERT_EQ(code, 0) << output;
  EXPECT_EQ(Query(db, "SELECT id, topic, off FROM seen ORDER BY off"), (Rows{"a|stdin|1", "b|stdin|2", "c|stdin|4"}));
  EXPECT_EQ(Query(db, "SELECT topic, next_offset FROM _sluice_offsets"), (Rows{"stdin|5"}));
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM _sluice_runs WHERE status <> 'ok'"), "0");

  // The same stream again, one line longer: only the new line is processed.
  WriteFile(input, ReadFile(input) + "{\"id\":\"d\",\"amount\":4}\n");
  code = RunSluicePipedFrom(input, {"run", dir.path(), "--from-file", "-"}, &output);
  ASSERT_EQ(code, 0) << output;
  EXPECT_EQ(Query(db, "SELECT id, off FROM seen ORDER BY off"), (Rows{"a|1", "b|2", "c|4", "d|5"}));
  EXPECT_EQ(Query(db, "SELECT topic, next_offset FROM _sluice_offsets"), (Rows{"stdin|6"}));
}

// ---------------------------------------------------------------------------
// sluice status

TEST(Status, ShowsStoredCommittedEndAndLagPerPartition) {
  TempDir dir;
  auto broker = testing::StartAppendPipeline(dir.path(), 5);
  ASSERT_NE(broker, nullptr);
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "--brokers", broker->bootstrap(), "--once", "--max-messages", "3"}, &output),
            0)
      << output;

  int code = RunSluice({"status", dir.path(), "--brokers", broker->bootstrap()}, &output);
  ASSERT_EQ(code, 0) << output;
  // partition, stored, committed, end, lag
  EXPECT_EQ(LineFields(output, "events[0]"), (std::vector<std::string>{"events[0]", "3", "3", "5", "2"})) << output;
  EXPECT_EQ(LineFields(output, "total"), (std::vector<std::string>{"total", "2"})) << output;
  EXPECT_FALSE(Contains(output, "kafka:")) << output;
}

TEST(Status, JsonHasTotalLagRunsAndQuarantineCountsByReason) {
  auto broker = testing::StartBroker("events", 1);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  WritePipeline(dir.path(), AppendPipeline(broker->bootstrap()));
  ProduceValues(broker->bootstrap(), "events",
                {R"({"id":"a","amount":1})", R"({"id":"b","amount":"abc"})", R"({"id":"c","amount":"abc"})",
                 R"({"id":"d","amount":4})", R"({"id":"e","amount":5})"});
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "--brokers", broker->bootstrap(), "--once", "--max-messages", "3"}, &output),
            0)
      << output;
  const std::string reason = "column amount: \"abc\" is not a number (declared REAL)";

  int code = RunSluice({"status", dir.path(), "--brokers", broker->bootstrap(), "--json"}, &output);
  ASSERT_EQ(code, 0) << output;
  rapidjson::Document doc;
  doc.Parse(output.c_str());
  ASSERT_FALSE(doc.HasParseError()) << output;
  ASSERT_TRUE(doc.IsObject()) << output;
  ASSERT_TRUE(doc.HasMember("total_lag") && doc["total_lag"].IsInt64()) << output;
  EXPECT_EQ(doc["total_lag"].GetInt64(), 2) << output;
  EXPECT_TRUE(doc["kafka_error"].IsNull()) << output;
  ASSERT_TRUE(doc["partitions"].IsArray() && doc["partitions"].Size() == 1) << output;
  const auto& partition = doc["partitions"][0];
  EXPECT_STREQ(partition["topic"].GetString(), "events");
  EXPECT_EQ(partition["partition"].GetInt(), 0);
  EXPECT_EQ(partition["stored_offset"].GetInt64(), 3);
  EXPECT_EQ(partition["end_offset"].GetInt64(), 5);
  EXPECT_EQ(partition["lag"].GetInt64(), 2);
  ASSERT_TRUE(doc["runs"].IsArray() && doc["runs"].Size() == 1) << output;
  const auto& run = doc["runs"][0];
  EXPECT_EQ(run["run_id"].GetInt64(), 1);
  EXPECT_STREQ(run["status"].GetString(), "ok");
  EXPECT_EQ(run["messages"].GetInt64(), 3);
  EXPECT_EQ(run["staged"].GetInt64(), 1);
  EXPECT_EQ(run["quarantined"].GetInt64(), 2);
  EXPECT_TRUE(run["error"].IsNull());
  ASSERT_TRUE(doc["quarantine"].IsArray() && doc["quarantine"].Size() == 1) << output;
  EXPECT_EQ(std::string(doc["quarantine"][0]["reason"].GetString()), reason);
  EXPECT_EQ(doc["quarantine"][0]["messages"].GetInt64(), 2);

  // The table form shows the same count by reason.
  code = RunSluice({"status", dir.path(), "--brokers", broker->bootstrap()}, &output);
  ASSERT_EQ(code, 0) << output;
  EXPECT_EQ(LineFields(output, "        2  column amount"),
            (std::vector<std::string>{"2", "column", "amount:", "\"abc\"", "is", "not", "a", "number", "(declared",
                                      "REAL)"}))
      << output;
}

// ---------------------------------------------------------------------------
// sluice reset

struct ResetFixture {
  std::unique_ptr<EmbeddedBroker> broker;
  TempDir dir;
  std::string db;
};

// A broker with `count` messages on each of `partitions` partitions of events, all processed.
void ProcessedPipeline(ResetFixture* f, int count, int partitions = 1) {
  f->broker = testing::StartBroker("events", partitions);
  ASSERT_NE(f->broker, nullptr);
  f->db = f->dir / "pipeline.db";
  WritePipeline(f->dir.path(), AppendPipeline(f->broker->bootstrap()));
  for (int partition = 0; partition < partitions; ++partition) {
    ProduceValues(f->broker->bootstrap(), "events", IdAmountValues("p" + std::to_string(partition) + "_", 0, count),
                  partition);
  }
  std::string output;
  ASSERT_EQ(RunSluice({"run", f->dir.path(), "--brokers", f->broker->bootstrap()}, &output), 0) << output;
  ASSERT_EQ(QueryOne(f->db, "SELECT count(*) FROM events"), std::to_string(count * partitions));
}

// Messages processed by the ok runs after the last reset.
std::string MessagesSinceReset(const std::string& db) {
  return QueryOne(db,
                  "SELECT coalesce(sum(messages), 0) FROM _sluice_runs WHERE status = 'ok' AND run_id > "
                  "(SELECT coalesce(max(run_id), 0) FROM _sluice_runs WHERE status = 'reset')");
}

TEST(Reset, ToEarliestMakesNextRunReprocessEverything) {
  ResetFixture f;
  ASSERT_NO_FATAL_FAILURE(ProcessedPipeline(&f, 4));
  std::string output;
  int code = RunSluice({"reset", f.dir.path(), "--brokers", f.broker->bootstrap(), "--to", "earliest", "--yes"}, &output);
  ASSERT_EQ(code, 0) << output;
  EXPECT_EQ(Query(f.db, "SELECT topic, \"partition\", next_offset FROM _sluice_offsets"), (Rows{"events|0|0"}));
  EXPECT_EQ(QueryOne(f.db, "SELECT count(*) FROM _sluice_runs WHERE status = 'reset'"), "1");

  code = RunSluice({"run", f.dir.path(), "--brokers", f.broker->bootstrap()}, &output);
  ASSERT_EQ(code, 0) << output;
  EXPECT_EQ(MessagesSinceReset(f.db), "4");
  EXPECT_EQ(QueryOne(f.db, "SELECT count(*) || ' ' || count(DISTINCT off) FROM events"), "8 4");
  EXPECT_EQ(Query(f.db, "SELECT next_offset FROM _sluice_offsets"), (Rows{"4"}));
}

TEST(Reset, DryRunChangesNothing) {
  ResetFixture f;
  ASSERT_NO_FATAL_FAILURE(ProcessedPipeline(&f, 4));
  Rows offsets_before = Query(f.db, "SELECT * FROM _sluice_offsets");
  Rows runs_before = Query(f.db, "SELECT run_id, status FROM _sluice_runs");
  std::string output;
  int code = RunSluice(
      {"reset", f.dir.path(), "--brokers", f.broker->bootstrap(), "--to", "earliest", "--dry-run", "--yes"}, &output);
  ASSERT_EQ(code, 0) << output;
  EXPECT_TRUE(Contains(output, "dry run")) << output;
  EXPECT_EQ(LineFields(output, "events[0]"), (std::vector<std::string>{"events[0]", "4", "4", "0"})) << output;
  EXPECT_EQ(Query(f.db, "SELECT * FROM _sluice_offsets"), offsets_before);
  EXPECT_EQ(Query(f.db, "SELECT run_id, status FROM _sluice_runs"), runs_before);

  code = RunSluice({"run", f.dir.path(), "--brokers", f.broker->bootstrap()}, &output);
  ASSERT_EQ(code, 0) << output;
  EXPECT_EQ(QueryOne(f.db, "SELECT count(*) FROM events"), "4");
}

TEST(Reset, DryRunOnPipelineThatNeverRanCreatesNoDatabase) {
  TempDir dir;
  auto broker = testing::StartAppendPipeline(dir.path(), 2);
  ASSERT_NE(broker, nullptr);
  std::string output;
  int code = RunSluice({"reset", dir.path(), "--brokers", broker->bootstrap(), "--to", "earliest", "--dry-run"},
                       &output);
  EXPECT_EQ(code, 0) << output;
  EXPECT_TRUE(Contains(output, "dry run")) << output;
  EXPECT_FALSE(Exists(dir / "pipeline.db")) << "a dry run created the target database";
}

TEST(Reset, WithoutYesAndNoTerminalRefusesAndChangesNothing) {
  ResetFixture f;
  ASSERT_NO_FATAL_FAILURE(ProcessedPipeline(&f, 4));
  Rows offsets_before = Query(f.db, "SELECT * FROM _sluice_offsets");
  std::string output;
  int code =
      RunSluiceNoStdin({"reset", f.dir.path(), "--brokers", f.broker->bootstrap(), "--to", "earliest"}, &output);
  EXPECT_NE(code, 0) << output;
  EXPECT_TRUE(Contains(output, "--yes")) << output;
  EXPECT_EQ(Query(f.db, "SELECT * FROM _sluice_offsets"), offsets_before);
  EXPECT_EQ(QueryOne(f.db, "SELECT count(*) FROM _sluice_runs WHERE status = 'reset'"), "0");
}

TEST(Reset, PartitionOffsetMovesOnlyThatPartition) {
  ResetFixture f;
  ASSERT_NO_FATAL_FAILURE(ProcessedPipeline(&f, 3, /*partitions=*/2));
  ASSERT_EQ(Query(f.db, "SELECT \"partition\", next_offset FROM _sluice_offsets ORDER BY 1"), (Rows{"0|3", "1|3"}));
  std::string output;
  int code = RunSluice({"reset", f.dir.path(), "--brokers", f.broker->bootstrap(), "--partition", "0", "--offset",
                        "2", "--yes"},
                       &output);
  ASSERT_EQ(code, 0) << output;
  EXPECT_EQ(Query(f.db, "SELECT \"partition\", next_offset FROM _sluice_offsets ORDER BY 1"), (Rows{"0|2", "1|3"}));

  code = RunSluice({"run", f.dir.path(), "--brokers", f.broker->bootstrap()}, &output);
  ASSERT_EQ(code, 0) << output;
  EXPECT_EQ(MessagesSinceReset(f.db), "1");
  EXPECT_EQ(Query(f.db, "SELECT part, off, count(*) FROM events GROUP BY part, off HAVING count(*) > 1"),
            (Rows{"0|2|2"}));
}

TEST(Reset, TruncateEmptiesTheTableForAFullRebuild) {
  ResetFixture f;
  ASSERT_NO_FATAL_FAILURE(ProcessedPipeline(&f, 4));
  std::string output;
  int code = RunSluice({"reset", f.dir.path(), "--brokers", f.broker->bootstrap(), "--to", "earliest", "--truncate",
                        "events", "--yes"},
                       &output);
  ASSERT_EQ(code, 0) << output;
  EXPECT_EQ(QueryOne(f.db, "SELECT count(*) FROM events"), "0");
  EXPECT_EQ(Query(f.db, "SELECT next_offset FROM _sluice_offsets"), (Rows{"0"}));

  code = RunSluice({"run", f.dir.path(), "--brokers", f.broker->bootstrap()}, &output);
  ASSERT_EQ(code, 0) << output;
  EXPECT_EQ(Query(f.db, "SELECT off FROM events ORDER BY off"), (Rows{"0", "1", "2", "3"}));

  // sluice's own tables are refused.
  code = RunSluice({"reset", f.dir.path(), "--brokers", f.broker->bootstrap(), "--to", "earliest", "--truncate",
                    "_sluice_runs", "--yes"},
                   &output);
  EXPECT_NE(code, 0) << output;
  EXPECT_NE(QueryOne(f.db, "SELECT count(*) FROM _sluice_runs"), "0");
}

TEST(Reset, ToTimeRejectsBadTimesAndRefusesWhenTheBrokerFindsNothingAfterIt) {
  auto broker = testing::StartBroker("events", 1);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  std::string db = dir / "pipeline.db";
  WritePipeline(dir.path(), AppendPipeline(broker->bootstrap()));
  // 2026-01-01T00:00:00Z, then one message per hour.
  const int64_t base = 1767225600000;
  std::vector<OutgoingMessage> messages;
  for (int i = 0; i < 4; ++i) {
    OutgoingMessage message;
    message.value = R"({"id":"h)" + std::to_string(i) + R"(","amount":1})";
    message.partition = 0;
    message.timestamp = base + i * 3600 * 1000;
    messages.push_back(message);
  }
  Status st = ProduceMessages(broker->bootstrap(), "events", messages);
  ASSERT_TRUE(st.ok()) << st.message();
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "--brokers", broker->bootstrap()}, &output), 0) << output;
  ASSERT_EQ(Query(db, "SELECT next_offset FROM _sluice_offsets"), (Rows{"4"}));

  // An unreadable time is a usage error that changes nothing.
  int code =
      RunSluice({"reset", dir.path(), "--brokers", broker->bootstrap(), "--to", "yesterday", "--yes"}, &output);
  EXPECT_EQ(code, 2) << output;
  EXPECT_TRUE(Contains(output, "ISO-8601")) << output;
  EXPECT_EQ(Query(db, "SELECT next_offset FROM _sluice_offsets"), (Rows{"4"}));

  // The embedded broker cannot look offsets up by time: it answers "nothing
  // at or after" for every partition. Moving to the end would skip all data
  // silently, so reset refuses and changes nothing.
  code = RunSluice(
      {"reset", dir.path(), "--brokers", broker->bootstrap(), "--to", "2026-01-01T01:30:00Z", "--yes"}, &output);
  EXPECT_EQ(code, 1) << output;
  EXPECT_TRUE(Contains(output, "cannot look up offsets by time")) << output;
  EXPECT_EQ(Query(db, "SELECT next_offset FROM _sluice_offsets"), (Rows{"4"}));
}

TEST(Reset, RefusedWhileRunHoldsThePipeline) {
  TempDir dir;
  std::string db = dir / "pipeline.db";
  auto broker = testing::StartAppendPipeline(dir.path(), 3);
  ASSERT_NE(broker, nullptr);

  Child run({"run", dir.path(), "--brokers", broker->bootstrap(), "--every", "1s"}, dir / "run.log");
  ASSERT_GT(run.pid(), 0);
  ASSERT_TRUE(WaitFor([&] { return TryQueryOne(db, "SELECT count(*) FROM events") == "3"; }, std::chrono::seconds(10)))
      << run.output();
  ASSERT_TRUE(run.running()) << run.output();

  std::string output;
  int code = RunSluice({"reset", dir.path(), "--brokers", broker->bootstrap(), "--to", "earliest", "--yes"}, &output);
  EXPECT_NE(code, 0) << output;
  EXPECT_TRUE(Contains(output, "pid " + std::to_string(run.pid()))) << output;
  EXPECT_EQ(Query(db, "SELECT next_offset FROM _sluice_offsets"), (Rows{"3"}));
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM _sluice_runs WHERE status = 'reset'"), "0");
  EXPECT_TRUE(run.running()) << run.output();

  std::optional<int> exit_code = run.Stop(SIGTERM, std::chrono::seconds(10));
  ASSERT_TRUE(exit_code.has_value()) << "did not stop within 10 s after SIGTERM\n" << run.output();
  EXPECT_EQ(*exit_code, 0) << run.output();
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM events"), "3");
}

// ---------------------------------------------------------------------------
// sluice quarantine

// amount declared INTEGER; curated(id, amount, off) filled by an upsert.
PipelineFiles IntegerAmountPipeline(const std::string& brokers, const std::string& amount_type = "INTEGER") {
  PipelineFiles files;
  files.conf = BasicConf(brokers, "events", "id = TEXT\namount = " + amount_type);
  files.schema = "CREATE TABLE IF NOT EXISTS curated(id TEXT PRIMARY KEY, amount REAL, off INTEGER);\n";
  files.steps["10_upsert.sql"] =
      "INSERT INTO curated(id, amount, off) SELECT id, amount, _kafka_offset FROM batch WHERE true\n"
      "ON CONFLICT(id) DO UPDATE SET amount = excluded.amount, off = excluded.off;\n";
  return files;
}

TEST(Quarantine, ListGroupsByReason) {
  auto broker = testing::StartBroker("events", 1);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  WritePipeline(dir.path(), IntegerAmountPipeline(broker->bootstrap()));
  ProduceValues(broker->bootstrap(), "events",
                {R"({"id":"a","amount":1})", R"({"id":"b","amount":"1.5"})", R"({"id":"c","amount":"abc"})",
                 R"({"id":"d","amount":"1.5"})", "not json"});
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "--brokers", broker->bootstrap()}, &output), 0) << output;

  int code = RunSluice({"quarantine", dir.path(), "list"}, &output);
  ASSERT_EQ(code, 0) << output;
  // The largest group first, with its count and offsets.
  size_t whole = output.find("2  column amount: \"1.5\" is not a whole number (declared INTEGER)");
  size_t abc = output.find("1  column amount: \"abc\"");
  ASSERT_NE(whole, std::string::npos) << output;
  ASSERT_NE(abc, std::string::npos) << output;
  EXPECT_LT(whole, abc) << output;
  EXPECT_TRUE(Contains(output, "at events[0] 1..3;")) << output;
  EXPECT_TRUE(Contains(output, "4 quarantined messages")) << output;
  // Three distinct reasons: the "1.5" group, "abc", and the invalid JSON.
  std::istringstream lines(output);
  std::string line;
  int groups = 0;
  while (std::getline(lines, line)) {
    if (!line.empty() && std::isdigit(static_cast<unsigned char>(line[0])) && Contains(line, "  ") &&
        !Contains(line, "quarantined message")) {
      ++groups;
    }
  }
  EXPECT_EQ(groups, 3) << output;
}

TEST(Quarantine, ReplayAfterFixMovesValidMessagesAndLeavesOffsets) {
  auto broker = testing::StartBroker("events", 1);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  std::string db = dir / "pipeline.db";
  WritePipeline(dir.path(), IntegerAmountPipeline(broker->bootstrap()));
  ProduceValues(broker->bootstrap(), "events",
                {R"({"id":"a","amount":1})", R"({"id":"b","amount":"1.5"})", R"({"id":"c","amount":"abc"})",
                 R"({"id":"d","amount":2.5})"});
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "--brokers", broker->bootstrap()}, &output), 0) << output;
  ASSERT_EQ(Query(db, "SELECT id FROM curated ORDER BY id"), (Rows{"a"}));
  ASSERT_EQ(QueryOne(db, "SELECT count(*) FROM _sluice_quarantine"), "3");
  Rows offsets_before = Query(db, "SELECT * FROM _sluice_offsets");
  ASSERT_EQ(offsets_before.size(), 1u);

  // The fix: amounts are decimals.
  WritePipeline(dir.path(), IntegerAmountPipeline(broker->bootstrap(), "REAL"));
  int code = RunSluice({"quarantine", dir.path(), "replay"}, &output);
  ASSERT_EQ(code, 0) << output;
  EXPECT_TRUE(Contains(output, "replayed 3 messages")) << output;
  EXPECT_TRUE(Contains(output, "2 now pass")) << output;
  EXPECT_TRUE(Contains(output, "1 still fail")) << output;

  EXPECT_EQ(Query(db, "SELECT id, amount, off FROM curated ORDER BY id"), (Rows{"a|1.0|0", "b|1.5|1", "d|2.5|3"}));
  EXPECT_EQ(Query(db, "SELECT \"offset\", error FROM _sluice_quarantine"),
            (Rows{"2|column amount: \"abc\" is not a number (declared REAL)"}));
  EXPECT_EQ(Query(db, "SELECT * FROM _sluice_offsets"), offsets_before);

  // Nothing to consume afterwards: the offsets were not moved back either.
  code = RunSluice({"run", dir.path(), "--brokers", broker->bootstrap()}, &output);
  ASSERT_EQ(code, 0) << output;
  EXPECT_EQ(Query(db, "SELECT id FROM curated ORDER BY id"), (Rows{"a", "b", "d"}));
  EXPECT_EQ(Query(db, "SELECT * FROM _sluice_offsets"), offsets_before);
}

// ---------------------------------------------------------------------------
// [staging] retention and sluice compact

TEST(Compact, RetentionKeepsPastBatchesOutsideTheBatchView) {
  TempDir dir;
  std::string db = dir / "pipeline.db";
  WritePipeline(dir.path(), FilePipeline());
  WriteFile(dir / "pipeline.conf", ReadFile(dir / "pipeline.conf") + "[staging]\nretention = 1h\n");
  std::string input = dir / "in.jsonl";
  WriteFile(input, "{\"id\":\"a\",\"amount\":1}\n{\"id\":\"b\",\"amount\":2}\n{\"id\":\"c\",\"amount\":3}\n");
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "--from-file", input, "--max-messages", "2"}, &output), 0) << output;
  ASSERT_EQ(QueryOne(db, "SELECT count(*) FROM _sluice_runs WHERE status = 'ok'"), "2");
  // Each batch saw only its own rows.
  EXPECT_EQ(Query(db, "SELECT id FROM seen ORDER BY off"), (Rows{"a", "b", "c"}));
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM batch"), "0");
  EXPECT_EQ(Query(db, "SELECT id, _sluice_run_id FROM _sluice_staging ORDER BY _kafka_offset"),
            (Rows{"a|1", "b|1", "c|2"}));
}

TEST(Compact, PrunesExpiredStagingRowsAndKeepsTheDatabaseIntact) {
  TempDir dir;
  std::string db = dir / "pipeline.db";
  WritePipeline(dir.path(), FilePipeline());
  WriteFile(dir / "pipeline.conf", ReadFile(dir / "pipeline.conf") + "[staging]\nretention = 1s\n");
  std::string input = dir / "in.jsonl";
  WriteFile(input, "{\"id\":\"a\",\"amount\":1}\n{\"id\":\"b\",\"amount\":2}\n{\"id\":\"c\",\"amount\":3}\n");
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "--from-file", input, "--max-messages", "2"}, &output), 0) << output;
  ASSERT_EQ(QueryOne(db, "SELECT count(*) FROM _sluice_staging"), "3");
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM batch"), "0");

  std::this_thread::sleep_for(std::chrono::milliseconds(1300));
  int code = RunSluice({"compact", dir.path()}, &output);
  ASSERT_EQ(code, 0) << output;
  EXPECT_TRUE(Contains(output, "pruned 3 staging rows")) << output;
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM _sluice_staging"), "0");
  EXPECT_EQ(QueryOne(db, "PRAGMA integrity_check"), "ok");
  // Curated data and catalog untouched.
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM seen"), "3");
  EXPECT_EQ(Query(db, "SELECT next_offset FROM _sluice_offsets"), (Rows{"4"}));

  // Nothing left to prune.
  code = RunSluice({"compact", dir.path()}, &output);
  ASSERT_EQ(code, 0) << output;
  EXPECT_TRUE(Contains(output, "pruned 0 staging rows")) << output;
}

// ---------------------------------------------------------------------------
// The progress bar of run --until-caught-up

TEST(Progress, NoProgressBarWhenStderrIsNotATerminal) {
  TempDir dir;
  auto broker = testing::StartAppendPipeline(dir.path(), 5);
  ASSERT_NE(broker, nullptr);
  std::string output;
  int code = RunSluice(
      {"run", dir.path(), "--brokers", broker->bootstrap(), "--until-caught-up", "--max-messages", "2"}, &output);
  ASSERT_EQ(code, 0) << output;
  EXPECT_TRUE(Contains(output, "run 3: pulled 1 message ")) << output;
  EXPECT_EQ(output.find('\r'), std::string::npos) << output;
  EXPECT_FALSE(Contains(output, "msg/s")) << output;
}

// The control for the test above: on a terminal the bar is drawn.
TEST(Progress, ProgressBarWhenStderrIsATerminal) {
  TempDir dir;
  auto broker = testing::StartAppendPipeline(dir.path(), 5);
  ASSERT_NE(broker, nullptr);
  int code = -1;
  std::string output = RunWithStderrOnTerminal(
      {"run", dir.path(), "--brokers", broker->bootstrap(), "--until-caught-up", "--max-messages", "2"}, &code,
      std::chrono::seconds(20));
  EXPECT_EQ(code, 0) << output;
  EXPECT_NE(output.find('\r'), std::string::npos) << output;
  EXPECT_TRUE(Contains(output, "5/5 msgs")) << output;
}

}  // namespace
}  // namespace sluice
