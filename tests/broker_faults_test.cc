// Broker faults, injected with the mock cluster's controls
// (rd_kafka_mock_broker_set_down/up, rd_kafka_mock_push_request_errors,
// rd_kafka_mock_broker_set_rtt) while the real `sluice` binary runs:
//   - broker down at start: a clear error within [source] connect_timeout,
//     non-zero exit, nothing written;
//   - broker down in the middle of an --every run: no partial batch, the run
//     resumes exactly where the last commit left off;
//   - the Kafka offset commit fails after the SQLite commit: a warning, the
//     run succeeds, and the next run starts from the SQLite offsets;
//   - offsets out of range (the broker dropped data sluice never read): an
//     error naming the partition and the number of lost messages, or with
//     on_data_loss = skip, the gap recorded in _sluice_runs.notes;
//   - a slow broker and transient fetch errors: nothing lost or doubled.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <spawn.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "connectors/kafka_source.h"
#include "test_support.h"

extern char** environ;

namespace sluice {
namespace {

using testing::TempDir;
using Rows = std::vector<std::string>;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr const char* kTopic = "events";
constexpr const char* kGroup = "faults-group";
constexpr int32_t kBrokerId = 1;            // the embedded broker's only broker
constexpr int16_t kApiFetch = 1;            // RD_KAFKAP_Fetch
constexpr int16_t kApiOffsetCommit = 8;     // RD_KAFKAP_OffsetCommit

bool Contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

size_t CountOccurrences(const std::string& text, const std::string& part) {
  size_t count = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + part.size())) ++count;
  return count;
}

// ---------------------------------------------------------------------------
// Child processes (posix_spawn; killed and reaped by the destructor).

class Child {
 public:
  Child(const std::vector<std::string>& args, const std::string& log) : log_(log) {
    std::vector<std::string> argv_strings = {SLUICE_BINARY};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& arg : argv_strings) argv.push_back(arg.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_strings;
    for (char** entry = environ; *entry != nullptr; ++entry) {
      if (std::string(*entry).rfind("SLUICE_CRASH_AT=", 0) != 0) env_strings.push_back(*entry);
    }
    std::vector<char*> envp;
    for (auto& entry : env_strings) envp.push_back(entry.data());
    envp.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    start_size_ = testing::ReadFile(log).size();
    int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
      pid_ = -1;
      ADD_FAILURE() << "cannot start " << SLUICE_BINARY << ": " << rc;
    }
  }
  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      Reap(0);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  bool running() {
    if (pid_ <= 0) return false;
    Reap(WNOHANG);
    return pid_ > 0;
  }
  std::optional<int> exit_code() const { return exit_code_; }
  std::optional<int> Wait(milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    while (running()) {
      if (Clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(milliseconds(5));
    }
    return exit_code_;
  }
  std::optional<int> Stop(int signal, milliseconds timeout) {
    if (pid_ > 0) ::kill(pid_, signal);
    return Wait(timeout);
  }
  // What this process printed (not earlier runs sharing the log).
  std::string output() const { return testing::ReadFile(log_).substr(start_size_); }
  std::string tail(size_t max = 4000) const {
    std::string all = output();
    return all.size() > max ? "...\n" + all.substr(all.size() - max) : all;
  }

 private:
  void Reap(int flags) {
    int status = 0;
    pid_t done = ::waitpid(pid_, &status, flags);
    if (done == pid_) {
      pid_ = -1;
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
    } else if (done < 0) {
      pid_ = -1;
    }
  }
  std::string log_;
  size_t start_size_ = 0;
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
};

int RunToEnd(const std::vector<std::string>& args, const std::string& log, std::string* output,
             milliseconds timeout = milliseconds(60000)) {
  Child child(args, log);
  std::optional<int> code = child.Wait(timeout);
  if (output) *output = child.output();
  if (!code) {
    ADD_FAILURE() << "sluice did not finish within " << timeout.count() << " ms\n" << child.tail();
    return -1;
  }
  return *code;
}

// ---------------------------------------------------------------------------
// Reading the database.

Rows QueryRows(const std::string& path, const std::string& sql, std::string* error = nullptr) {
  Rows rows;
  sqlite3* db = nullptr;
  auto fail = [&](const std::string& what) {
    if (error) *error = what;
    else ADD_FAILURE() << what;
  };
  if (access(path.c_str(), F_OK) != 0 || sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    fail("cannot open " + path);
    sqlite3_close(db);
    return rows;
  }
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    fail(sql + ": " + sqlite3_errmsg(db));
    sqlite3_close(db);
    return rows;
  }
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    std::string row;
    for (int column = 0; column < sqlite3_column_count(stmt); ++column) {
      if (column) row += "|";
      const unsigned char* text = sqlite3_column_text(stmt, column);
      row += text ? std::string(reinterpret_cast<const char*>(text), sqlite3_column_bytes(stmt, column)) : "NULL";
    }
    rows.push_back(row);
  }
  if (rc != SQLITE_DONE) fail(sql + ": " + sqlite3_errmsg(db));
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return rows;
}

std::string One(const std::string& path, const std::string& sql) {
  Rows rows = QueryRows(path, sql);
  return rows.empty() ? "<no row>" : rows[0];
}

std::optional<std::string> TryOne(const std::string& path, const std::string& sql) {
  std::string error;
  Rows rows = QueryRows(path, sql, &error);
  if (!error.empty() || rows.empty()) return std::nullopt;
  return rows[0];
}

bool WaitFor(const std::function<bool()>& done, milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(milliseconds(50));
  }
  return done();
}

std::string DiffRows(const std::string& what, Rows expected, Rows actual) {
  std::sort(expected.begin(), expected.end());
  std::sort(actual.begin(), actual.end());
  if (expected == actual) return "";
  Rows missing, extra;
  std::set_difference(expected.begin(), expected.end(), actual.begin(), actual.end(), std::back_inserter(missing));
  std::set_difference(actual.begin(), actual.end(), expected.begin(), expected.end(), std::back_inserter(extra));
  std::ostringstream out;
  out << what << ": expected " << expected.size() << " rows, found " << actual.size() << "; " << missing.size()
      << " missing, " << extra.size() << " unexpected (or doubled)";
  for (size_t i = 0; i < std::min<size_t>(missing.size(), 5); ++i) out << "\n    missing:    " << missing[i];
  for (size_t i = 0; i < std::min<size_t>(extra.size(), 5); ++i) out << "\n    unexpected: " << extra[i];
  return out.str() + "\n";
}

// ---------------------------------------------------------------------------
// The pipeline and the produced events.

std::string Conf(const std::string& brokers, const std::string& extra_source = "",
                 const std::string& extra_kafka = "") {
  return "[source]\nbrokers = " + brokers + "\ntopic = " + kTopic + "\ngroup = " + kGroup +
         "\nstart = earliest\n" + extra_source +
         "[batch]\nmax_messages = 50\nmax_wait = 500ms\n"
         "[columns]\neid = TEXT\nn = INTEGER\n"
         "[target]\ndatabase = pipeline.db\n"
         "[kafka]\nfetch.wait.max.ms = 100\n" +
         extra_kafka;
}

void WriteFaultsPipeline(const std::string& dir, const std::string& conf) {
  testing::PipelineFiles files;
  files.conf = conf;
  files.schema =
      "CREATE TABLE IF NOT EXISTS history (part INTEGER, off INTEGER, eid TEXT, run_id INTEGER);\n"
      "CREATE TABLE IF NOT EXISTS totals (part INTEGER PRIMARY KEY, n INTEGER NOT NULL, total INTEGER NOT NULL);\n";
  files.steps["10_history.sql"] =
      "INSERT INTO history SELECT _kafka_partition, _kafka_offset, eid,\n"
      "  (SELECT max(run_id) FROM _sluice_runs WHERE status = 'running') FROM batch;\n";
  files.steps["20_totals.sql"] =
      "INSERT INTO totals SELECT _kafka_partition, count(*), sum(n) FROM batch WHERE true GROUP BY 1\n"
      "ON CONFLICT(part) DO UPDATE SET n = n + excluded.n, total = total + excluded.total;\n";
  testing::WritePipeline(dir, files);
}

struct Produced {
  int32_t partition;
  int64_t offset;
  std::string eid;
  int64_t n;
};

class Events {
 public:
  explicit Events(std::string brokers) : brokers_(std::move(brokers)) {}
  // Produces `count` events to `partition` (-1: round robin over
  // `partitions`), each padded with `pad` bytes.
  void Produce(int count, int32_t partition = -1, int partitions = 4, size_t pad = 0) {
    std::vector<OutgoingMessage> messages;
    std::vector<Produced> made;
    for (int i = 0; i < count; ++i) {
      int64_t n = ++counter_;
      int32_t p = partition >= 0 ? partition : static_cast<int32_t>(n % partitions);
      Produced event{p, next_[p]++, "e" + std::to_string(n), n};
      OutgoingMessage message;
      message.partition = p;
      message.value = R"({"eid":")" + event.eid + R"(","n":)" + std::to_string(n) +
                      (pad ? R"(,"pad":")" + std::string(pad, 'x') + "\"" : std::string()) + "}";
      messages.push_back(std::move(message));
      made.push_back(event);
    }
    Status st = ProduceMessages(brokers_, kTopic, messages);
    ASSERT_TRUE(st.ok()) << st.message();
    events_.insert(events_.end(), made.begin(), made.end());
  }
  const std::vector<Produced>& events() const { return events_; }
  std::map<int32_t, int64_t> ends() const { return next_; }
  size_t size() const { return events_.size(); }

 private:
  std::string brokers_;
  int64_t counter_ = 0;
  std::map<int32_t, int64_t> next_;
  std::vector<Produced> events_;
};

// Checks that the database holds every produced event exactly once, except
// those for which `skipped` is true (and none of them), that the stored
// offsets are `ends`, and that each committed run's rows are its own.
std::string CheckExactlyOnce(const std::string& db, const Events& events, const std::map<int32_t, int64_t>& ends,
                             const std::function<bool(const Produced&)>& skipped = nullptr) {
  std::string problems;
  Rows expected;
  std::map<int32_t, std::pair<int64_t, int64_t>> totals;
  for (const auto& event : events.events()) {
    if (skipped && skipped(event)) continue;
    expected.push_back(std::to_string(event.partition) + "|" + std::to_string(event.offset) + "|" + event.eid);
    totals[event.partition].first += 1;
    totals[event.partition].second += event.n;
  }
  problems += DiffRows("history (partition|offset|eid)", expected, QueryRows(db, "SELECT part, off, eid FROM history"));
  Rows expected_totals;
  for (const auto& [p, t] : totals) {
    expected_totals.push_back(std::to_string(p) + "|" + std::to_string(t.first) + "|" + std::to_string(t.second));
  }
  problems += DiffRows("totals", expected_totals, QueryRows(db, "SELECT part, n, total FROM totals"));
  Rows expected_offsets;
  for (const auto& [p, o] : ends) expected_offsets.push_back(std::to_string(p) + "|" + std::to_string(o));
  problems += DiffRows("_sluice_offsets", expected_offsets,
                       QueryRows(db, "SELECT \"partition\", next_offset FROM _sluice_offsets"));
  for (const auto& row : QueryRows(db,
                                   "SELECT r.run_id, r.messages, r.staged, r.quarantined, "
                                   "(SELECT count(*) FROM history h WHERE h.run_id = r.run_id) FROM _sluice_runs r "
                                   "WHERE r.status = 'ok' AND (r.staged + r.quarantined <> r.messages OR r.staged <> "
                                   "(SELECT count(*) FROM history h WHERE h.run_id = r.run_id))")) {
    problems += "run accounting (run|messages|staged|quarantined|history rows): " + row + "\n";
  }
  std::string orphans = One(db,
                            "SELECT count(*) FROM history WHERE run_id IS NULL OR run_id NOT IN "
                            "(SELECT run_id FROM _sluice_runs WHERE status = 'ok')");
  if (orphans != "0") problems += orphans + " history rows belong to no committed run\n";
  std::string integrity = One(db, "PRAGMA integrity_check");
  if (integrity != "ok") problems += "integrity_check: " + integrity + "\n";
  return problems;
}

// The group's committed offsets, read through a KafkaSource that does not
// join the group.
std::map<int32_t, std::optional<int64_t>> GroupCommitted(const std::string& brokers) {
  KafkaSourceOptions options;
  options.brokers = brokers;
  options.topics = {kTopic};
  options.group = kGroup;
  options.connect_timeout = milliseconds(10000);
  KafkaSource source(options);
  Result<std::vector<PartitionState>> states = source.Inspect();
  std::map<int32_t, std::optional<int64_t>> committed;
  EXPECT_TRUE(states.ok()) << states.status().message();
  if (!states.ok()) return committed;
  for (const auto& state : *states) committed[state.partition.second] = state.committed;
  return committed;
}

std::pair<int64_t, int64_t> Watermarks(const std::string& brokers, int32_t partition) {
  KafkaSourceOptions options;
  options.brokers = brokers;
  options.topics = {kTopic};
  options.group = kGroup;
  options.connect_timeout = milliseconds(10000);
  KafkaSource source(options);
  Result<std::vector<PartitionState>> states = source.Inspect();
  EXPECT_TRUE(states.ok()) << states.status().message();
  if (states.ok()) {
    for (const auto& state : *states) {
      if (state.partition.second == partition) return {state.low, state.high};
    }
  }
  return {-1, -1};
}

// ---------------------------------------------------------------------------

TEST(BrokerFaults, BrokerDownAtStartFailsWithinConnectTimeoutAndWritesNothing) {
  auto broker = testing::StartBroker(kTopic, 4);
  ASSERT_NE(broker, nullptr);
  const std::string brokers = broker->bootstrap();
  TempDir dir;
  const std::string db = dir / "pipeline.db";
  WriteFaultsPipeline(dir.path(), Conf(brokers, "connect_timeout = 3s\n"));
  Events events(brokers);
  ASSERT_NO_FATAL_FAILURE(events.Produce(40));

  ASSERT_EQ(rd_kafka_mock_broker_set_down(broker->cluster(), kBrokerId), RD_KAFKA_RESP_ERR_NO_ERROR);
  auto start = Clock::now();
  std::string output;
  int code = RunToEnd({"run", dir.path(), "--brokers", brokers}, dir / "down.log", &output, milliseconds(30000));
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_NE(code, 0) << output;
  EXPECT_EQ(code, 1) << output;
  EXPECT_GE(seconds, 2.5) << "gave up before connect_timeout\n" << output;
  EXPECT_LT(seconds, 3.0 + 4.0) << "took much longer than connect_timeout = 3s\n" << output;
  EXPECT_TRUE(Contains(output, "cannot reach brokers " + brokers + " within 3s")) << output;
  EXPECT_TRUE(Contains(output, "check [source] brokers or --brokers")) << output;
  // Nothing written: no run, no offset, no row (the catalog tables and the
  // schema may exist: they are created before the source is opened).
  EXPECT_EQ(One(db, "SELECT count(*) FROM _sluice_runs"), "0");
  EXPECT_EQ(One(db, "SELECT count(*) FROM _sluice_offsets"), "0");
  EXPECT_EQ(One(db, "SELECT count(*) FROM history"), "0");

  // Once the broker is back, a run takes everything exactly once.
  ASSERT_EQ(rd_kafka_mock_broker_set_up(broker->cluster(), kBrokerId), RD_KAFKA_RESP_ERR_NO_ERROR);
  code = RunToEnd({"run", dir.path(), "--brokers", brokers}, dir / "up.log", &output);
  ASSERT_EQ(code, 0) << output;
  EXPECT_EQ(CheckExactlyOnce(db, events, events.ends()), "");
}

TEST(BrokerFaults, BrokerDownMidRunCommitsNoPartialBatchAndResumesWhereItLeftOff) {
  auto broker = testing::StartBroker(kTopic, 4);
  ASSERT_NE(broker, nullptr);
  const std::string brokers = broker->bootstrap();
  TempDir dir;
  const std::string db = dir / "pipeline.db";
  const std::string log = dir / "run.log";
  WriteFaultsPipeline(dir.path(), Conf(brokers, "connect_timeout = 15s\n"));
  Events events(brokers);
  ASSERT_NO_FATAL_FAILURE(events.Produce(600));
  // A slow broker, so that the backlog takes several seconds and the outage
  // hits batches in flight.
  rd_kafka_mock_broker_set_rtt(broker->cluster(), kBrokerId, 60);

  auto run = std::make_unique<Child>(
      std::vector<std::string>{"run", dir.path(), "--brokers", brokers, "--every", "300ms", "--max-messages", "20"},
      log);
  ASSERT_TRUE(WaitFor([&] { return CountOccurrences(run->output(), ": pulled ") >= 3; }, milliseconds(20000)))
      << run->tail();
  std::string committed_before = One(db, "SELECT ifnull(sum(next_offset), 0) FROM _sluice_offsets");
  ASSERT_NE(committed_before, std::to_string(events.size())) << "the backlog was done before the outage";

  size_t output_at_down = run->output().size();
  ASSERT_EQ(rd_kafka_mock_broker_set_down(broker->cluster(), kBrokerId), RD_KAFKA_RESP_ERR_NO_ERROR);
  std::this_thread::sleep_for(milliseconds(3000));
  bool survived_outage = run->running();
  // While the broker is down, whatever was committed is a consistent prefix.
  EXPECT_EQ(One(db,
                "SELECT count(*) FROM _sluice_offsets o WHERE next_offset <> "
                "(SELECT count(*) FROM history h WHERE h.part = o.\"partition\")"),
            "0");
  std::string committed_at_up = One(db, "SELECT ifnull(sum(next_offset), 0) FROM _sluice_offsets");
  size_t output_at_up = run->output().size();
  ASSERT_EQ(rd_kafka_mock_broker_set_up(broker->cluster(), kBrokerId), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_mock_broker_set_rtt(broker->cluster(), kBrokerId, 0);
  ASSERT_NO_FATAL_FAILURE(events.Produce(100));

  const std::string want = std::to_string(events.size());
  WaitFor([&] { return TryOne(db, "SELECT count(*) FROM history") == want || !run->running(); },
          milliseconds(40000));
  std::string first_output = run->output();
  if (run->running()) {
    std::optional<int> code = run->Stop(SIGTERM, milliseconds(15000));
    ASSERT_TRUE(code.has_value()) << "did not stop after SIGTERM\n" << run->tail();
    EXPECT_EQ(*code, 0) << run->tail();
  } else {
    ADD_FAILURE() << "sluice run --every exited (code " << run->exit_code().value_or(-1)
                  << ") during or after a 3 s broker outage (connect_timeout = 15s); survived the outage itself: "
                  << survived_outage << "\n"
                  << run->tail();
    // Whatever happened, a restart must continue exactly where the last
    // commit left off.
    std::string output;
    int code = RunToEnd({"run", dir.path(), "--brokers", brokers, "--max-messages", "20"}, log, &output);
    EXPECT_EQ(code, 0) << output;
  }
  EXPECT_EQ(CheckExactlyOnce(db, events, events.ends()), "") << first_output.substr(
      first_output.size() > 4000 ? first_output.size() - 4000 : 0);
  // Failed batches (if the outage failed any) left nothing behind.
  EXPECT_EQ(One(db, "SELECT count(*) FROM history WHERE run_id IN (SELECT run_id FROM _sluice_runs WHERE status <> 'ok')"),
            "0");
  std::cout << "[ outage ] committed messages: " << committed_before << " when the broker went down, "
            << committed_at_up << " when it came back (of " << events.size() - 100 << " then produced)" << std::endl;
  std::string during = first_output.substr(std::min(output_at_down, first_output.size()),
                                           output_at_up > output_at_down ? output_at_up - output_at_down : 0);
  std::cout << "[ outage ] log while the broker was down:\n" << (during.size() > 3000 ? during.substr(0, 3000) : during)
            << std::endl;
  std::cout << "[ outage ] failed runs recorded: "
            << One(db, "SELECT count(*) FROM _sluice_runs WHERE status <> 'ok'")
            << ", warnings logged: " << CountOccurrences(first_output, " warning ") << std::endl;
}

TEST(BrokerFaults, OffsetCommitFailureAfterSqliteCommitWarnsAndNextRunStartsFromSqlite) {
  auto broker = testing::StartBroker(kTopic, 4);
  ASSERT_NE(broker, nullptr);
  const std::string brokers = broker->bootstrap();
  TempDir dir;
  const std::string db = dir / "pipeline.db";
  const std::string log = dir / "run.log";
  WriteFaultsPipeline(dir.path(), Conf(brokers));
  Events events(brokers);
  ASSERT_NO_FATAL_FAILURE(events.Produce(100));

  // 1. A normal run: the group's committed offsets follow the database.
  std::string output;
  ASSERT_EQ(RunToEnd({"run", dir.path(), "--brokers", brokers}, log, &output), 0) << output;
  std::map<int32_t, int64_t> first_ends = events.ends();
  auto committed = GroupCommitted(brokers);
  for (const auto& [partition, end] : first_ends) {
    EXPECT_EQ(committed[partition], std::optional<int64_t>(end)) << "partition " << partition;
  }

  // 2. Every OffsetCommit now fails with NOT_COORDINATOR.
  std::vector<rd_kafka_resp_err_t> errors(500, RD_KAFKA_RESP_ERR_NOT_COORDINATOR);
  rd_kafka_mock_push_request_errors_array(broker->cluster(), kApiOffsetCommit, errors.size(), errors.data());
  ASSERT_NO_FATAL_FAILURE(events.Produce(200));
  auto start = Clock::now();
  int code = RunToEnd({"run", dir.path(), "--brokers", brokers, "--max-messages", "30"}, log, &output);
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_EQ(code, 0) << output;
  EXPECT_TRUE(Contains(output, "offset commit to group failed")) << output;
  EXPECT_TRUE(Contains(output, "the database holds the offsets; the next run starts from them")) << output;
  EXPECT_TRUE(Contains(output, " warning ")) << output;
  EXPECT_EQ(CheckExactlyOnce(db, events, events.ends()), "");
  std::cout << "[ commit failures ] run took " << seconds << " s, "
            << CountOccurrences(output, "offset commit to group failed") << " failed Kafka commits, "
            << CountOccurrences(output, ": pulled ") << " batches" << std::endl;
  rd_kafka_mock_clear_request_errors(broker->cluster(), kApiOffsetCommit);

  // The group still holds the older offsets; the database is ahead.
  committed = GroupCommitted(brokers);
  bool group_behind = false;
  for (const auto& [partition, end] : events.ends()) {
    if (!committed[partition] || *committed[partition] < end) group_behind = true;
  }
  EXPECT_TRUE(group_behind) << "the failed commits reached the group anyway; this test proves nothing";

  // 3. The next run starts from the SQLite offsets, not the group's: nothing
  //    is processed twice.
  std::string stored_before = One(db, "SELECT group_concat(\"partition\" || '=' || next_offset, ' ') FROM "
                                       "(SELECT * FROM _sluice_offsets ORDER BY \"partition\")");
  int64_t last_run = std::stoll(One(db, "SELECT max(run_id) FROM _sluice_runs"));
  ASSERT_NO_FATAL_FAILURE(events.Produce(40));
  code = RunToEnd({"run", dir.path(), "--brokers", brokers}, log, &output);
  ASSERT_EQ(code, 0) << output;
  EXPECT_EQ(CheckExactlyOnce(db, events, events.ends()), "") << "offsets before the run: " << stored_before;
  // Its first batch began at the stored offsets.
  Rows firsts = QueryRows(db,
                          "SELECT p || '=' || min(first) FROM (SELECT json_extract(j.value, '$.partition') AS p, "
                          "json_extract(j.value, '$.first') AS first FROM _sluice_runs r, json_each(r.offsets) j "
                          "WHERE r.status = 'ok' AND r.run_id > " +
                              std::to_string(last_run) + ") GROUP BY p ORDER BY p");
  std::string joined;
  for (const auto& row : firsts) joined += (joined.empty() ? "" : " ") + row;
  EXPECT_EQ(joined, stored_before);
  // And the group caught up again.
  committed = GroupCommitted(brokers);
  for (const auto& [partition, end] : events.ends()) {
    EXPECT_EQ(committed[partition], std::optional<int64_t>(end)) << "partition " << partition;
  }
}

TEST(BrokerFaults, OffsetsOutOfRangeStopNamingPartitionAndLossThenSkipRecordsTheGap) {
  auto broker = testing::StartBroker(kTopic, 2);
  ASSERT_NE(broker, nullptr);
  const std::string brokers = broker->bootstrap();
  TempDir dir;
  const std::string db = dir / "pipeline.db";
  const std::string log = dir / "run.log";
  WriteFaultsPipeline(dir.path(), Conf(brokers, "connect_timeout = 10s\n"));
  Events events(brokers);
  ASSERT_NO_FATAL_FAILURE(events.Produce(3, 0));
  ASSERT_NO_FATAL_FAILURE(events.Produce(3, 1));
  std::string output;
  ASSERT_EQ(RunToEnd({"run", dir.path(), "--brokers", brokers}, log, &output), 0) << output;
  ASSERT_EQ(QueryRows(db, "SELECT \"partition\", next_offset FROM _sluice_offsets ORDER BY 1"), (Rows{"0|3", "1|3"}));

  // More than the embedded broker keeps (5 MiB per partition): the oldest
  // messages of partition 0, including offset 3 where sluice resumes, go.
  ASSERT_NO_FATAL_FAILURE(events.Produce(6000, 0, 2, 1024));
  ASSERT_NO_FATAL_FAILURE(events.Produce(2, 1));
  auto [low, high] = Watermarks(brokers, 0);
  ASSERT_GT(low, 3) << "the broker kept everything; cannot provoke offsets out of range";
  ASSERT_EQ(high, 6003);
  const int64_t lost = low - 3;

  // on_data_loss = fail (the default): stop, name the partition and the loss.
  int code = RunToEnd({"run", dir.path(), "--brokers", brokers}, log, &output);
  EXPECT_EQ(code, 1) << output;
  const std::string what = "events[0]: " + std::to_string(lost) + " messages (offsets 3.." + std::to_string(low - 1) +
                           ") were deleted by the broker before sluice read them";
  EXPECT_TRUE(Contains(output, what)) << "expected: " << what << "\n" << output;
  EXPECT_TRUE(Contains(output, "on_data_loss = skip")) << output;
  EXPECT_EQ(QueryRows(db, "SELECT \"partition\", next_offset FROM _sluice_offsets ORDER BY 1"), (Rows{"0|3", "1|3"}));
  EXPECT_EQ(One(db, "SELECT count(*) FROM _sluice_runs WHERE status = 'failed' AND error LIKE '%" + what + "%'"), "1");
  EXPECT_EQ(One(db, "SELECT count(*) FROM history"), "6");

  // on_data_loss = skip: continue from the low watermark, record the gap.
  WriteFaultsPipeline(dir.path(), Conf(brokers, "connect_timeout = 10s\non_data_loss = skip\n"));
  code = RunToEnd({"run", dir.path(), "--brokers", brokers, "--max-messages", "2000"}, log, &output,
                  milliseconds(90000));
  EXPECT_EQ(code, 0) << output.substr(output.size() > 4000 ? output.size() - 4000 : 0);
  EXPECT_TRUE(Contains(output, "skipping to " + std::to_string(low))) << output.substr(0, 4000);
  EXPECT_EQ(CheckExactlyOnce(db, events, events.ends(),
                             [&](const Produced& e) { return e.partition == 0 && e.offset >= 3 && e.offset < low; }),
            "");
  std::string notes = One(db, "SELECT ifnull(group_concat(notes, ' / '), 'NULL') FROM _sluice_runs WHERE notes IS NOT NULL "
                              "AND notes LIKE '%events[0]%'");
  EXPECT_TRUE(Contains(notes, "events[0]") && Contains(notes, std::to_string(lost)))
      << "_sluice_runs.notes does not record the skipped gap of " << lost << " messages on events[0]; notes: " << notes
      << "\nall runs: "
      << ::testing::PrintToString(QueryRows(db, "SELECT run_id, status, messages, notes, error FROM _sluice_runs"));
}

TEST(BrokerFaults, SlowBrokerAndTransientFetchErrorsLoseAndDoubleNothing) {
  auto broker = testing::StartBroker(kTopic, 4);
  ASSERT_NE(broker, nullptr);
  const std::string brokers = broker->bootstrap();
  TempDir dir;
  const std::string db = dir / "pipeline.db";
  WriteFaultsPipeline(dir.path(), Conf(brokers, "connect_timeout = 15s\n"));
  Events events(brokers);
  ASSERT_NO_FATAL_FAILURE(events.Produce(300));

  rd_kafka_mock_broker_set_rtt(broker->cluster(), kBrokerId, 150);
  std::vector<rd_kafka_resp_err_t> errors = {
      RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
      RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION};
  rd_kafka_mock_push_request_errors_array(broker->cluster(), kApiFetch, errors.size(), errors.data());
  std::string output;
  int code = RunToEnd({"run", dir.path(), "--brokers", brokers, "--max-messages", "40"}, dir / "run.log", &output,
                      milliseconds(90000));
  rd_kafka_mock_broker_set_rtt(broker->cluster(), kBrokerId, 0);
  EXPECT_EQ(code, 0) << output;
  EXPECT_EQ(CheckExactlyOnce(db, events, events.ends()), "") << output;
  EXPECT_EQ(One(db, "SELECT count(*) FROM _sluice_runs WHERE status <> 'ok'"), "0") << output;
}

// README: SIGINT/SIGTERM finish the batch in flight and exit 0. The Kafka
// offset commit after the SQLite commit is advisory (the database holds the
// offsets), so a broker outage must not keep the process from stopping.
TEST(BrokerFaults, SigtermWhileBrokerIsDownStopsWithinBoundedTime) {
  auto broker = testing::StartBroker(kTopic, 4);
  ASSERT_NE(broker, nullptr);
  const std::string brokers = broker->bootstrap();
  TempDir dir;
  const std::string db = dir / "pipeline.db";
  const std::string log = dir / "run.log";
  WriteFaultsPipeline(dir.path(), Conf(brokers, "connect_timeout = 15s\n"));
  Events events(brokers);
  ASSERT_NO_FATAL_FAILURE(events.Produce(600));
  rd_kafka_mock_broker_set_rtt(broker->cluster(), kBrokerId, 60);
  {
    Child run({"run", dir.path(), "--brokers", brokers, "--every", "300ms", "--max-messages", "20"}, log);
    ASSERT_TRUE(WaitFor([&] { return CountOccurrences(run.output(), ": pulled ") >= 3; }, milliseconds(20000)))
        << run.tail();
    ASSERT_EQ(rd_kafka_mock_broker_set_down(broker->cluster(), kBrokerId), RD_KAFKA_RESP_ERR_NO_ERROR);
    std::this_thread::sleep_for(milliseconds(2000));
    ASSERT_TRUE(run.running()) << run.tail();
    auto start = Clock::now();
    std::optional<int> code = run.Stop(SIGTERM, milliseconds(15000));
    double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    EXPECT_TRUE(code.has_value()) << "sluice did not stop within 15 s of SIGTERM while the broker was down (stored "
                                  << One(db, "SELECT group_concat(\"partition\" || '=' || next_offset) FROM "
                                             "_sluice_offsets")
                                  << "; it is blocked in the synchronous Kafka offset commit after the SQLite "
                                     "commit)\n"
                                  << run.tail();
    if (code) {
      EXPECT_EQ(*code, 0) << run.tail();
      std::cout << "[ sigterm during outage ] stopped after " << seconds << " s" << std::endl;
    }
  }  // ~Child kills it (SIGKILL) if it is still running
  ASSERT_EQ(rd_kafka_mock_broker_set_up(broker->cluster(), kBrokerId), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_mock_broker_set_rtt(broker->cluster(), kBrokerId, 0);
  // Whatever state it was left in, a restart continues exactly once.
  std::string output;
  ASSERT_EQ(RunToEnd({"run", dir.path(), "--brokers", brokers}, log, &output), 0) << output;
  EXPECT_EQ(CheckExactlyOnce(db, events, events.ends()), "");
}

}  // namespace
}  // namespace sluice
