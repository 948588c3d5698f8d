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
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "connectors/kafka_source.h"
#include "test_support.h"

namespace sluice {
namespace {

using testing::Child;
using testing::Contains;
using testing::CountOccurrences;
using testing::QueryOne;
using testing::RunToEnd;
using Rows = std::vector<std::string>;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr const char* kTopic = "events";
constexpr const char* kGroup = "faults-group";
constexpr int32_t kBrokerId = 1;            // the embedded broker's only broker
constexpr int16_t kApiFetch = 1;            // RD_KAFKAP_Fetch
constexpr int16_t kApiOffsetCommit = 8;     // RD_KAFKAP_OffsetCommit

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
  problems += testing::DiffRows("history (partition|offset|eid)", expected,
                                testing::Query(db, "SELECT part, off, eid FROM history"));
  Rows expected_totals;
  for (const auto& [p, t] : totals) {
    expected_totals.push_back(std::to_string(p) + "|" + std::to_string(t.first) + "|" + std::to_string(t.second));
  }
  problems += testing::DiffRows("totals", expected_totals, testing::Query(db, "SELECT part, n, total FROM totals"));
  Rows expected_offsets;
  for (const auto& [p, o] : ends) expected_offsets.push_back(std::to_string(p) + "|" + std::to_string(o));
  problems += testing::DiffRows("_sluice_offsets", expected_offsets,
                                testing::Query(db, "SELECT \"partition\", next_offset FROM _sluice_offsets"));
  for (const auto& row : testing::Query(db,
                                        "SELECT r.run_id, r.messages, r.staged, r.quarantined, "
                                        "(SELECT count(*) FROM history h WHERE h.run_id = r.run_id) FROM _sluice_runs r "
                                        "WHERE r.status = 'ok' AND (r.staged + r.quarantined <> r.messages OR r.staged <> "
                                        "(SELECT count(*) FROM history h WHERE h.run_id = r.run_id))")) {
    problems += "run accounting (run|messages|staged|quarantined|history rows): " + row + "\n";
  }
  std::string orphans = QueryOne(db,
                            "SELECT count(*) FROM history WHERE run_id IS NULL OR run_id NOT IN "
                            "(SELECT run_id FROM _sluice_runs WHERE status = 'ok')");
  if (orphans != "0") problems += orphans + " history rows belong to no committed run\n";
  std::string integrity = QueryOne(db, "PRAGMA integrity_check");
  if (integrity != "ok") problems += "integrity_check: " + integrity + "\n";
  return problems;
}

// The topic's partitions as seen by a KafkaSource that does not join the group.
std::vector<PartitionState> InspectTopic(const std::string& brokers) {
  KafkaSourceOptions options;
  options.brokers = brokers;
  options.topics = {kTopic};
  options.group = kGroup;
  options.connect_timeout = milliseconds(10000);
  KafkaSource source(options);
  Result<std::vector<PartitionState>> states = source.Inspect();
  EXPECT_TRUE(states.ok()) << states.status().message();
  return states.ok() ? *states : std::vector<PartitionState>{};
}

// The group's committed offsets.
std::map<int32_t, std::optional<int64_t>> GroupCommitted(const std::string& brokers) {
  std::map<int32_t, std::optional<int64_t>> committed;
  for (const auto& state : InspectTopic(brokers)) committed[state.partition.second] = state.committed;
  return committed;
}

std::pair<int64_t, int64_t> Watermarks(const std::string& brokers, int32_t partition) {
  for (const auto& state : InspectTopic(brokers)) {
    if (state.partition.second == partition) return {state.low, state.high};
  }
  return {-1, -1};
}

// ---------------------------------------------------------------------------

// Every test: an embedded broker with kTopic, the faults pipeline on it in the
// fixture's directory, and the events produced to it.
class BrokerFaults : public testing::BrokerTest {
 protected:
  // Starts the broker with `partitions` partitions and writes the pipeline
  // with `extra_source` lines in [source].
  void Start(int partitions, const std::string& extra_source = "") {
    ASSERT_NO_FATAL_FAILURE(StartEmbeddedBroker(kTopic, partitions));
    WriteFaultsPipeline(dir.path(), Conf(brokers, extra_source));
    events = std::make_unique<Events>(brokers);
  }

  // 600 events behind a slow broker (60 ms round trips, so that the backlog
  // takes several seconds and an outage hits batches in flight), and
  // `sluice run --every` in batches of 20 once it has pulled three of them.
  void StartEveryRunOnSlowBacklog(std::unique_ptr<Child>* run) {
    ASSERT_NO_FATAL_FAILURE(events->Produce(600));
    rd_kafka_mock_broker_set_rtt(broker->cluster(), kBrokerId, 60);
    *run = std::make_unique<Child>(
        std::vector<std::string>{"run", dir.path(), "--brokers", brokers, "--every", "300ms", "--max-messages", "20"},
        log);
    ASSERT_TRUE(testing::WaitFor([&] { return CountOccurrences((*run)->full_output(), ": pulled ") >= 3; },
                                 milliseconds(20000)))
        << (*run)->output();
  }

  // The broker back up, at full speed.
  void BrokerUp() {
    ASSERT_EQ(rd_kafka_mock_broker_set_up(broker->cluster(), kBrokerId), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_mock_broker_set_rtt(broker->cluster(), kBrokerId, 0);
  }

  std::unique_ptr<Events> events;
};

TEST_F(BrokerFaults, BrokerDownAtStartFailsWithinConnectTimeoutAndWritesNothing) {
  ASSERT_NO_FATAL_FAILURE(Start(4, "connect_timeout = 3s\n"));
  ASSERT_NO_FATAL_FAILURE(events->Produce(40));

  ASSERT_EQ(rd_kafka_mock_broker_set_down(broker->cluster(), kBrokerId), RD_KAFKA_RESP_ERR_NO_ERROR);
  auto start = Clock::now();
  std::string output;
  int code = RunToEnd({"run", dir.path(), "--brokers", brokers}, dir / "down.log", &output, {}, milliseconds(30000));
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_NE(code, 0) << output;
  EXPECT_EQ(code, 1) << output;
  EXPECT_GE(seconds, 2.5) << "gave up before connect_timeout\n" << output;
  EXPECT_LT(seconds, 3.0 + 4.0) << "took much longer than connect_timeout = 3s\n" << output;
  EXPECT_TRUE(Contains(output, "cannot reach brokers " + brokers + " within 3s")) << output;
  EXPECT_TRUE(Contains(output, "check [source] brokers or --brokers")) << output;
  // Nothing written: no run, no offset, no row (the catalog tables and the
  // schema may exist: they are created before the source is opened).
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM _sluice_runs"), "0");
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM _sluice_offsets"), "0");
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM history"), "0");

  // Once the broker is back, a run takes everything exactly once.
  ASSERT_EQ(rd_kafka_mock_broker_set_up(broker->cluster(), kBrokerId), RD_KAFKA_RESP_ERR_NO_ERROR);
  code = RunToEnd({"run", dir.path(), "--brokers", brokers}, dir / "up.log", &output);
  ASSERT_EQ(code, 0) << output;
  EXPECT_EQ(CheckExactlyOnce(db, *events, events->ends()), "");
}

TEST_F(BrokerFaults, BrokerDownMidRunCommitsNoPartialBatchAndResumesWhereItLeftOff) {
  ASSERT_NO_FATAL_FAILURE(Start(4, "connect_timeout = 15s\n"));
  std::unique_ptr<Child> run;
  ASSERT_NO_FATAL_FAILURE(StartEveryRunOnSlowBacklog(&run));
  std::string committed_before = QueryOne(db, "SELECT ifnull(sum(next_offset), 0) FROM _sluice_offsets");
  ASSERT_NE(committed_before, std::to_string(events->size())) << "the backlog was done before the outage";

  size_t output_at_down = run->full_output().size();
  ASSERT_EQ(rd_kafka_mock_broker_set_down(broker->cluster(), kBrokerId), RD_KAFKA_RESP_ERR_NO_ERROR);
  std::this_thread::sleep_for(milliseconds(3000));
  bool survived_outage = run->running();
  // While the broker is down, whatever was committed is a consistent prefix.
  EXPECT_EQ(QueryOne(db,
                "SELECT count(*) FROM _sluice_offsets o WHERE next_offset <> "
                "(SELECT count(*) FROM history h WHERE h.part = o.\"partition\")"),
            "0");
  std::string committed_at_up = QueryOne(db, "SELECT ifnull(sum(next_offset), 0) FROM _sluice_offsets");
  size_t output_at_up = run->full_output().size();
  ASSERT_NO_FATAL_FAILURE(BrokerUp());
  ASSERT_NO_FATAL_FAILURE(events->Produce(100));

  const std::string want = std::to_string(events->size());
  testing::WaitFor(
      [&] { return testing::TryQueryOne(db, "SELECT count(*) FROM history") == want || !run->running(); },
      milliseconds(40000));
  std::string first_output = run->full_output();
  if (run->running()) {
    std::optional<int> code = run->Stop(SIGTERM, milliseconds(15000));
    ASSERT_TRUE(code.has_value()) << "did not stop after SIGTERM\n" << run->output();
    EXPECT_EQ(*code, 0) << run->output();
  } else {
    ADD_FAILURE() << "sluice run --every exited (code " << run->exit_code().value_or(-1)
                  << ") during or after a 3 s broker outage (connect_timeout = 15s); survived the outage itself: "
                  << survived_outage << "\n"
                  << run->output();
    // Whatever happened, a restart must continue exactly where the last
    // commit left off.
    std::string output;
    int code = RunToEnd({"run", dir.path(), "--brokers", brokers, "--max-messages", "20"}, log, &output);
    EXPECT_EQ(code, 0) << output;
  }
  EXPECT_EQ(CheckExactlyOnce(db, *events, events->ends()), "") << testing::Tail(first_output);
  // Failed batches (if the outage failed any) left nothing behind.
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM history WHERE run_id IN (SELECT run_id FROM _sluice_runs WHERE status <> 'ok')"),
            "0");
  std::cout << "[ outage ] committed messages: " << committed_before << " when the broker went down, "
            << committed_at_up << " when it came back (of " << events->size() - 100 << " then produced)" << std::endl;
  std::string during = first_output.substr(std::min(output_at_down, first_output.size()),
                                           output_at_up > output_at_down ? output_at_up - output_at_down : 0);
  std::cout << "[ outage ] log while the broker was down:\n" << (during.size() > 3000 ? during.substr(0, 3000) : during)
            << std::endl;
  std::cout << "[ outage ] failed runs recorded: "
            << QueryOne(db, "SELECT count(*) FROM _sluice_runs WHERE status <> 'ok'")
            << ", warnings logged: " << CountOccurrences(first_output, " warning ") << std::endl;
}

TEST_F(BrokerFaults, OffsetCommitFailureAfterSqliteCommitWarnsAndNextRunStartsFromSqlite) {
  ASSERT_NO_FATAL_FAILURE(Start(4));
  ASSERT_NO_FATAL_FAILURE(events->Produce(100));

  // 1. A normal run: the group's committed offsets follow the database.
  std::string output;
  ASSERT_EQ(RunToEnd({"run", dir.path(), "--brokers", brokers}, log, &output), 0) << output;
  std::map<int32_t, int64_t> first_ends = events->ends();
  auto committed = GroupCommitted(brokers);
  for (const auto& [partition, end] : first_ends) {
    EXPECT_EQ(committed[partition], std::optional<int64_t>(end)) << "partition " << partition;
  }

  // 2. Every OffsetCommit now fails with NOT_COORDINATOR.
  std::vector<rd_kafka_resp_err_t> errors(500, RD_KAFKA_RESP_ERR_NOT_COORDINATOR);
  rd_kafka_mock_push_request_errors_array(broker->cluster(), kApiOffsetCommit, errors.size(), errors.data());
  ASSERT_NO_FATAL_FAILURE(events->Produce(200));
  auto start = Clock::now();
  int code = RunToEnd({"run", dir.path(), "--brokers", brokers, "--max-messages", "30"}, log, &output);
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_EQ(code, 0) << output;
  EXPECT_TRUE(Contains(output, "offset commit to group failed")) << output;
  EXPECT_TRUE(Contains(output, "the database holds the offsets; the next run starts from them")) << output;
  EXPECT_TRUE(Contains(output, " warning ")) << output;
  EXPECT_EQ(CheckExactlyOnce(db, *events, events->ends()), "");
  std::cout << "[ commit failures ] run took " << seconds << " s, "
            << CountOccurrences(output, "offset commit to group failed") << " failed Kafka commits, "
            << CountOccurrences(output, ": pulled ") << " batches" << std::endl;
  rd_kafka_mock_clear_request_errors(broker->cluster(), kApiOffsetCommit);

  // The group still holds the older offsets; the database is ahead.
  committed = GroupCommitted(brokers);
  bool group_behind = false;
  for (const auto& [partition, end] : events->ends()) {
    if (!committed[partition] || *committed[partition] < end) group_behind = true;
  }
  EXPECT_TRUE(group_behind) << "the failed commits reached the group anyway; this test proves nothing";

  // 3. The next run starts from the SQLite offsets, not the group's: nothing
  //    is processed twice.
  std::string stored_before = QueryOne(db, "SELECT group_concat(\"partition\" || '=' || next_offset, ' ') FROM "
                                       "(SELECT * FROM _sluice_offsets ORDER BY \"partition\")");
  int64_t last_run = std::stoll(QueryOne(db, "SELECT max(run_id) FROM _sluice_runs"));
  ASSERT_NO_FATAL_FAILURE(events->Produce(40));
  code = RunToEnd({"run", dir.path(), "--brokers", brokers}, log, &output);
  ASSERT_EQ(code, 0) << output;
  EXPECT_EQ(CheckExactlyOnce(db, *events, events->ends()), "") << "offsets before the run: " << stored_before;
  // Its first batch began at the stored offsets.
  Rows firsts = testing::Query(db,
                          "SELECT p || '=' || min(first) FROM (SELECT json_extract(j.value, '$.partition') AS p, "
                          "json_extract(j.value, '$.first') AS first FROM _sluice_runs r, json_each(r.offsets) j "
                          "WHERE r.status = 'ok' AND r.run_id > " +
                              std::to_string(last_run) + ") GROUP BY p ORDER BY p");
  std::string joined;
  for (const auto& row : firsts) joined += (joined.empty() ? "" : " ") + row;
  EXPECT_EQ(joined, stored_before);
  // And the group caught up again.
  committed = GroupCommitted(brokers);
  for (const auto& [partition, end] : events->ends()) {
    EXPECT_EQ(committed[partition], std::optional<int64_t>(end)) << "partition " << partition;
  }
}

TEST_F(BrokerFaults, OffsetsOutOfRangeStopNamingPartitionAndLossThenSkipRecordsTheGap) {
  ASSERT_NO_FATAL_FAILURE(Start(2, "connect_timeout = 10s\n"));
  ASSERT_NO_FATAL_FAILURE(events->Produce(3, 0));
  ASSERT_NO_FATAL_FAILURE(events->Produce(3, 1));
  std::string output;
  ASSERT_EQ(RunToEnd({"run", dir.path(), "--brokers", brokers}, log, &output), 0) << output;
  ASSERT_EQ(testing::Query(db, "SELECT \"partition\", next_offset FROM _sluice_offsets ORDER BY 1"), (Rows{"0|3", "1|3"}));

  // More than the embedded broker keeps (5 MiB per partition): the oldest
  // messages of partition 0, including offset 3 where sluice resumes, go.
  ASSERT_NO_FATAL_FAILURE(events->Produce(6000, 0, 2, 1024));
  ASSERT_NO_FATAL_FAILURE(events->Produce(2, 1));
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
  EXPECT_EQ(testing::Query(db, "SELECT \"partition\", next_offset FROM _sluice_offsets ORDER BY 1"), (Rows{"0|3", "1|3"}));
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM _sluice_runs WHERE status = 'failed' AND error LIKE '%" + what + "%'"), "1");
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM history"), "6");

  // on_data_loss = skip: continue from the low watermark, record the gap.
  WriteFaultsPipeline(dir.path(), Conf(brokers, "connect_timeout = 10s\non_data_loss = skip\n"));
  code = RunToEnd({"run", dir.path(), "--brokers", brokers, "--max-messages", "2000"}, log, &output, {},
                  milliseconds(90000));
  EXPECT_EQ(code, 0) << testing::Tail(output);
  EXPECT_TRUE(Contains(output, "skipping to " + std::to_string(low))) << output.substr(0, 4000);
  EXPECT_EQ(CheckExactlyOnce(db, *events, events->ends(),
                             [&](const Produced& e) { return e.partition == 0 && e.offset >= 3 && e.offset < low; }),
            "");
  std::string notes = QueryOne(db, "SELECT ifnull(group_concat(notes, ' / '), 'NULL') FROM _sluice_runs WHERE notes IS NOT NULL "
                              "AND notes LIKE '%events[0]%'");
  EXPECT_TRUE(Contains(notes, "events[0]") && Contains(notes, std::to_string(lost)))
      << "_sluice_runs.notes does not record the skipped gap of " << lost << " messages on events[0]; notes: " << notes
      << "\nall runs: "
      << ::testing::PrintToString(testing::Query(db, "SELECT run_id, status, messages, notes, error FROM _sluice_runs"));
}

TEST_F(BrokerFaults, SlowBrokerAndTransientFetchErrorsLoseAndDoubleNothing) {
  ASSERT_NO_FATAL_FAILURE(Start(4, "connect_timeout = 15s\n"));
  ASSERT_NO_FATAL_FAILURE(events->Produce(300));

  rd_kafka_mock_broker_set_rtt(broker->cluster(), kBrokerId, 150);
  std::vector<rd_kafka_resp_err_t> errors = {
      RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
      RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION};
  rd_kafka_mock_push_request_errors_array(broker->cluster(), kApiFetch, errors.size(), errors.data());
  std::string output;
  int code = RunToEnd({"run", dir.path(), "--brokers", brokers, "--max-messages", "40"}, dir / "run.log", &output, {},
                      milliseconds(90000));
  rd_kafka_mock_broker_set_rtt(broker->cluster(), kBrokerId, 0);
  EXPECT_EQ(code, 0) << output;
  EXPECT_EQ(CheckExactlyOnce(db, *events, events->ends()), "") << output;
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM _sluice_runs WHERE status <> 'ok'"), "0") << output;
}

// README: SIGINT/SIGTERM finish the batch in flight and exit 0. The Kafka
// offset commit after the SQLite commit is advisory (the database holds the
// offsets), so a broker outage must not keep the process from stopping.
TEST_F(BrokerFaults, SigtermWhileBrokerIsDownStopsWithinBoundedTime) {
  ASSERT_NO_FATAL_FAILURE(Start(4, "connect_timeout = 15s\n"));
  {
    std::unique_ptr<Child> run;
    ASSERT_NO_FATAL_FAILURE(StartEveryRunOnSlowBacklog(&run));
    ASSERT_EQ(rd_kafka_mock_broker_set_down(broker->cluster(), kBrokerId), RD_KAFKA_RESP_ERR_NO_ERROR);
    std::this_thread::sleep_for(milliseconds(2000));
    ASSERT_TRUE(run->running()) << run->output();
    auto start = Clock::now();
    std::optional<int> code = run->Stop(SIGTERM, milliseconds(15000));
    double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    EXPECT_TRUE(code.has_value()) << "sluice did not stop within 15 s of SIGTERM while the broker was down (stored "
                                  << QueryOne(db, "SELECT group_concat(\"partition\" || '=' || next_offset) FROM "
                                             "_sluice_offsets")
                                  << "; it is blocked in the synchronous Kafka offset commit after the SQLite "
                                     "commit)\n"
                                  << run->output();
    if (code) {
      EXPECT_EQ(*code, 0) << run->output();
      std::cout << "[ sigterm during outage ] stopped after " << seconds << " s" << std::endl;
    }
  }  // ~Child kills it (SIGKILL) if it is still running
  ASSERT_NO_FATAL_FAILURE(BrokerUp());
  // Whatever state it was left in, a restart continues exactly once.
  std::string output;
  ASSERT_EQ(RunToEnd({"run", dir.path(), "--brokers", brokers}, log, &output), 0) << output;
  EXPECT_EQ(CheckExactlyOnce(db, *events, events->ends()), "");
}

}  // namespace
}  // namespace sluice
