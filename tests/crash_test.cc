// Crash harness: runs the real `sluice` binary against an embedded broker in
// this process and kills it (SIGKILL) at every named crash point, at random
// moments chosen by a seeded generator, and in the middle of a consumer-group
// rebalance. After every kill it checks that the database holds exactly a
// consistent prefix of the topic (per partition, everything below the stored
// offset and nothing else), and at the end that the curated tables equal a
// reference computed here from the produced events, that every (partition,
// offset) is in the history exactly once, that _sluice_offsets equals the
// end offsets and that PRAGMA integrity_check says ok.
//
// The random part prints its seed; SLUICE_CRASH_SEED=<n> replays a run.
#include <gtest/gtest.h>

#include <filesystem>
#include <signal.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "test_support.h"

namespace sluice {
namespace {

using testing::Child;
using testing::Contains;
using testing::CountOccurrences;
using testing::RunToEnd;
using testing::TryQueryOne;
using Rows = std::vector<std::string>;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr int kPartitions = 4;
constexpr const char* kTopic = "events";
constexpr const char* kGroup = "crash-group";

// ---------------------------------------------------------------------------
// The pipeline: a seed, a dedup+upsert step, an append-only audit step and
// an additive totals step (which doubles if a batch is applied twice).

std::string PipelineConf(const std::string& brokers, bool group) {
  std::string conf = "[source]\nbrokers = " + brokers + "\ntopic = " + kTopic + "\ngroup = " + kGroup +
                     "\nstart = earliest\nconnect_timeout = 15s\n";
  if (group) conf += "assignment = group\n";
  conf +=
      "[batch]\nmax_messages = 40\nmax_wait = 500ms\n"
      "[columns]\neid = TEXT\nid = TEXT\ncustomer = TEXT\ncents = INTEGER\nversion = INTEGER\n"
      "[target]\ndatabase = pipeline.db\n"
      // Without it the first fetch after start-up waits out the default
      // 500 ms long poll (about 1.5 s per run against the embedded broker).
      "[kafka]\nfetch.wait.max.ms = 100\n";
  if (group) conf += "session.timeout.ms = 6000\nheartbeat.interval.ms = 500\n";
  return conf;
}

const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS curated (
  id TEXT PRIMARY KEY, customer TEXT, region TEXT, cents INTEGER, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS history (part INTEGER, off INTEGER, eid TEXT, run_id INTEGER);
CREATE TABLE IF NOT EXISTS totals (customer TEXT PRIMARY KEY, n INTEGER NOT NULL, cents INTEGER NOT NULL);
)sql";

// Keeps the latest version of each id (within the batch, then against the
// table): the result does not depend on the order batches arrive in.
const char* kUpsertStep = R"sql(
INSERT INTO curated(id, customer, region, cents, version)
SELECT d.id, d.customer, c.region, d.cents, d.version
FROM (SELECT id, customer, cents, version,
             row_number() OVER (PARTITION BY id ORDER BY version DESC) AS rn
      FROM batch WHERE id IS NOT NULL) AS d
LEFT JOIN customers AS c ON c.customer = d.customer
WHERE d.rn = 1
ON CONFLICT(id) DO UPDATE SET customer = excluded.customer, region = excluded.region,
  cents = excluded.cents, version = excluded.version
WHERE excluded.version > curated.version;
)sql";

// Every batch row, no key: a message processed twice is there twice.
const char* kAuditStep = R"sql(
INSERT INTO history(part, off, eid, run_id)
SELECT _kafka_partition, _kafka_offset, eid,
       (SELECT max(run_id) FROM _sluice_runs WHERE status = 'running')
FROM batch;
)sql";

const char* kTotalsStep = R"sql(
INSERT INTO totals(customer, n, cents)
SELECT customer, count(*), sum(cents) FROM batch WHERE customer IS NOT NULL GROUP BY customer
ON CONFLICT(customer) DO UPDATE SET n = n + excluded.n, cents = cents + excluded.cents;
)sql";

const std::vector<std::string> kStepFiles = {"10_upsert.sql", "20_audit.sql", "30_totals.sql"};

std::string SeedCsv(const std::map<std::string, std::string>& regions) {
  std::string csv = "customer,region\n";
  for (const auto& [customer, region] : regions) csv += customer + "," + region + "\n";
  return csv;
}

std::map<std::string, std::string> InitialRegions() {
  // c8 and c9 have no seed row: their region is NULL.
  return {{"c0", "north"}, {"c1", "south"}, {"c2", "east"}, {"c3", "west"},
          {"c4", "north"}, {"c5", "south"}, {"c6", "east"}, {"c7", "west"}};
}

void WriteCrashPipeline(const std::string& dir, const std::string& brokers, bool group,
                        const std::map<std::string, std::string>& regions) {
  testing::PipelineFiles files;
  files.conf = PipelineConf(brokers, group);
  files.schema = kSchema;
  files.steps[kStepFiles[0]] = kUpsertStep;
  files.steps[kStepFiles[1]] = kAuditStep;
  files.steps[kStepFiles[2]] = kTotalsStep;
  files.seeds["customers.csv"] = SeedCsv(regions);
  testing::WritePipeline(dir, files);
}

// ---------------------------------------------------------------------------
// The produced events and the reference computed from them.

struct Event {
  int32_t partition = 0;
  int64_t offset = 0;
  std::string eid;
  std::string key;
  std::string customer;
  int64_t cents = 0;
  int64_t version = 0;
  bool valid = true;  // invalid ones carry "cents":"lots" and are quarantined
};

class Workload {
 public:
  Workload(std::string brokers, uint32_t seed) : brokers_(std::move(brokers)), rng_(seed) {}

  // Produces `count` events to random partitions. Offsets are known because
  // one producer per call delivers each partition in order, and this is the
  // only producer.
  void Produce(int count, int customers = 10, std::optional<std::string> extra_customer = std::nullopt) {
    if (count <= 0) return;
    std::vector<OutgoingMessage> messages;
    std::vector<Event> made;
    std::uniform_int_distribution<int> partition(0, kPartitions - 1);
    std::uniform_int_distribution<int> key(0, 59);
    std::uniform_int_distribution<int> customer(0, customers - 1);
    std::uniform_int_distribution<int> cents(1, 100000);
    std::uniform_int_distribution<int> percent(0, 99);
    for (int i = 0; i < count; ++i) {
      Event event;
      event.partition = partition(rng_);
      event.offset = next_offset_[event.partition]++;
      event.version = ++next_version_;
      event.eid = "e" + std::to_string(event.version);
      event.key = "k" + std::to_string(key(rng_));
      event.customer = extra_customer && percent(rng_) < 30 ? *extra_customer : "c" + std::to_string(customer(rng_));
      event.cents = cents(rng_);
      event.valid = percent(rng_) >= 4;
      OutgoingMessage message;
      message.key = event.key;
      message.partition = event.partition;
      message.value = R"({"eid":")" + event.eid + R"(","id":")" + event.key + R"(","customer":")" + event.customer +
                      R"(","cents":)" + (event.valid ? std::to_string(event.cents) : std::string(R"("lots")")) +
                      R"(,"version":)" + std::to_string(event.version) + "}";
      messages.push_back(std::move(message));
      made.push_back(std::move(event));
    }
    Status st = ProduceMessages(brokers_, kTopic, messages);
    ASSERT_TRUE(st.ok()) << st.message();
    events_.insert(events_.end(), made.begin(), made.end());
  }

  const std::vector<Event>& events() const { return events_; }
  std::map<int32_t, int64_t> ends() const {
    std::map<int32_t, int64_t> ends;
    for (int32_t p = 0; p < kPartitions; ++p) {
      if (next_offset_[p] > 0) ends[p] = next_offset_[p];
    }
    return ends;
  }
  std::mt19937& rng() { return rng_; }

 private:
  std::string brokers_;
  std::mt19937 rng_;
  int64_t next_offset_[kPartitions] = {0, 0, 0, 0};
  int64_t next_version_ = 0;
  std::vector<Event> events_;
};

struct Reference {
  Rows curated;   // id|customer|region|cents|version
  Rows totals;    // customer|n|cents
  Rows ledger;    // part|off|eid, staged and quarantined alike
  int64_t valid = 0;
  int64_t invalid = 0;
};

// What the database must hold once it has processed, in each partition, the
// events below `upto[partition]`.
Reference ComputeReference(const std::vector<Event>& events, const std::map<int32_t, int64_t>& upto,
                           const std::map<std::string, std::string>& regions) {
  Reference ref;
  std::map<std::string, const Event*> latest;
  std::map<std::string, std::pair<int64_t, int64_t>> totals;
  for (const auto& event : events) {
    auto limit = upto.find(event.partition);
    if (limit == upto.end() || event.offset >= limit->second) continue;
    ref.ledger.push_back(std::to_string(event.partition) + "|" + std::to_string(event.offset) + "|" + event.eid);
    if (!event.valid) {
      ++ref.invalid;
      continue;
    }
    ++ref.valid;
    const Event*& best = latest[event.key];
    if (best == nullptr || best->version < event.version) best = &event;
    auto& total = totals[event.customer];
    total.first += 1;
    total.second += event.cents;
  }
  for (const auto& [key, event] : latest) {
    auto region = regions.find(event->customer);
    ref.curated.push_back(key + "|" + event->customer + "|" + (region == regions.end() ? "NULL" : region->second) +
                          "|" + std::to_string(event->cents) + "|" + std::to_string(event->version));
  }
  for (const auto& [customer, total] : totals) {
    ref.totals.push_back(customer + "|" + std::to_string(total.first) + "|" + std::to_string(total.second));
  }
  return ref;
}

// Checks the database against the events. With `complete`, the stored offsets
// must be the end offsets; otherwise any stored offsets are accepted and the
// database must equal the reference for exactly the prefix they describe (a
// killed run leaves either a whole batch or nothing). Returns "" when all is
// well, else every problem found.
std::string CheckDatabase(const std::string& db, const Workload& workload,
                          const std::map<std::string, std::string>& regions, bool complete) {
  std::string problems;
  // Killed before it created the database (a slow start, as under the
  // sanitizers): nothing was stored, so nothing can be lost or doubled yet.
  if (!complete && !std::filesystem::exists(db)) return problems;
  auto query = [&](const std::string& sql) {
    std::string error;
    Rows rows = testing::Query(db, sql, &error);
    if (!error.empty()) problems += error + "\n";
    return rows;
  };
  std::map<int32_t, int64_t> stored;
  for (const auto& row : query(std::string("SELECT \"partition\" || '|' || next_offset FROM _sluice_offsets "
                                           "WHERE topic = '") + kTopic + "'")) {
    size_t bar = row.find('|');
    stored[std::stoi(row.substr(0, bar))] = std::stoll(row.substr(bar + 1));
  }
  if (!problems.empty()) return problems;
  for (auto it = stored.begin(); it != stored.end();) it = it->second == 0 ? stored.erase(it) : std::next(it);
  std::map<int32_t, int64_t> ends = workload.ends();
  for (const auto& [partition, offset] : stored) {
    auto end = ends.find(partition);
    if (end == ends.end() || offset > end->second) {
      problems += "_sluice_offsets: partition " + std::to_string(partition) + " is at " + std::to_string(offset) +
                  ", past the end offset " + (end == ends.end() ? std::string("0") : std::to_string(end->second)) + "\n";
    }
  }
  if (complete && stored != ends) {
    std::string want, got;
    for (const auto& [p, o] : ends) want += " [" + std::to_string(p) + "]=" + std::to_string(o);
    for (const auto& [p, o] : stored) got += " [" + std::to_string(p) + "]=" + std::to_string(o);
    problems += "_sluice_offsets:" + got + " but the end offsets are" + want + "\n";
  }

  Reference ref = ComputeReference(workload.events(), stored, regions);
  problems += testing::DiffRows("curated", ref.curated,
                                query("SELECT id, customer, region, cents, version FROM curated"));
  problems += testing::DiffRows("totals", ref.totals, query("SELECT customer, n, cents FROM totals"));
  problems += testing::DiffRows("history + quarantine (partition|offset|eid)", ref.ledger,
                                query("SELECT part, off, eid FROM history UNION ALL "
                                      "SELECT \"partition\", \"offset\", json_extract(value, '$.eid') FROM "
                                      "_sluice_quarantine"));

  // Run accounting: staged + quarantined == fetched for every committed
  // batch, and each batch's rows are exactly its own.
  Rows sums = query(
      "SELECT count(*), ifnull(sum(messages), 0), ifnull(sum(staged), 0), ifnull(sum(quarantined), 0) "
      "FROM _sluice_runs WHERE status = 'ok'");
  std::string want_sums = std::to_string(ref.valid + ref.invalid) + "|" + std::to_string(ref.valid) + "|" +
                          std::to_string(ref.invalid);
  if (sums.size() == 1 && sums[0].substr(sums[0].find('|') + 1) != want_sums) {
    problems += "_sluice_runs (ok): messages|staged|quarantined = " + sums[0].substr(sums[0].find('|') + 1) +
                ", expected " + want_sums + "\n";
  }
  Rows mismatched = query(
      "SELECT r.run_id, r.staged, r.quarantined, "
      "  (SELECT count(*) FROM history h WHERE h.run_id = r.run_id), "
      "  (SELECT count(*) FROM _sluice_quarantine q WHERE q.run_id = r.run_id) "
      "FROM _sluice_runs r WHERE r.status = 'ok' AND (r.staged + r.quarantined <> r.messages "
      "  OR r.staged <> (SELECT count(*) FROM history h WHERE h.run_id = r.run_id) "
      "  OR r.quarantined <> (SELECT count(*) FROM _sluice_quarantine q WHERE q.run_id = r.run_id))");
  for (const auto& row : mismatched) problems += "run accounting (run|staged|quarantined|history|quarantine): " + row + "\n";
  Rows orphans = query(
      "SELECT count(*) FROM history WHERE run_id IS NULL OR run_id NOT IN "
      "(SELECT run_id FROM _sluice_runs WHERE status = 'ok')");
  if (!orphans.empty() && orphans[0] != "0") problems += orphans[0] + " history rows belong to no committed run\n";
  Rows running = query("SELECT count(*) FROM _sluice_runs WHERE status = 'running'");
  if (!running.empty() && running[0] != "0") problems += running[0] + " runs are left in status 'running'\n";

  // The offset ranges of committed runs tile each partition from 0 to the
  // stored offset, without gap or overlap.
  Rows ranges = query(
      "SELECT json_extract(j.value, '$.partition'), json_extract(j.value, '$.first'), "
      "json_extract(j.value, '$.last'), json_extract(j.value, '$.count'), r.run_id "
      "FROM _sluice_runs r, json_each(r.offsets) j WHERE r.status = 'ok' ORDER BY 1, 2");
  std::map<int32_t, int64_t> next;
  for (const auto& row : ranges) {
    std::istringstream in(row);
    std::string field;
    std::vector<int64_t> v;
    while (std::getline(in, field, '|')) v.push_back(std::stoll(field));
    if (v.size() != 5) continue;
    int32_t partition = static_cast<int32_t>(v[0]);
    if (v[1] != next[partition] || v[3] != v[2] - v[1] + 1) {
      problems += "run " + std::to_string(v[4]) + " covers partition " + std::to_string(partition) + " offsets " +
                  std::to_string(v[1]) + ".." + std::to_string(v[2]) + " (count " + std::to_string(v[3]) +
                  ") but the previous committed run ended before " + std::to_string(next[partition]) + "\n";
    }
    next[partition] = v[2] + 1;
  }
  for (auto it = next.begin(); it != next.end();) it = it->second == 0 ? next.erase(it) : std::next(it);
  if (next != stored) problems += "the committed runs' offset ranges do not end at the stored offsets\n";

  Rows integrity = query("PRAGMA integrity_check");
  if (integrity != Rows{"ok"}) {
    problems += "integrity_check:";
    for (const auto& row : integrity) problems += " " + row;
    problems += "\n";
  }
  return problems;
}

int64_t CountOkRuns(const std::string& db) {
  std::optional<std::string> count = TryQueryOne(db, "SELECT count(*) FROM _sluice_runs WHERE status = 'ok'");
  return count ? std::stoll(*count) : 0;
}

// Every test: an embedded broker with kTopic in kPartitions partitions and
// the crash pipeline on it (with the seed `regions`) in the fixture's directory.
class CrashHarness : public testing::BrokerTest {
 protected:
  void Start(bool group) {
    ASSERT_NO_FATAL_FAILURE(StartEmbeddedBroker(kTopic, kPartitions));
    WriteCrashPipeline(dir.path(), brokers, group, regions);
  }

  std::map<std::string, std::string> regions = InitialRegions();
};

// ---------------------------------------------------------------------------
// a. Every named crash point, deterministically.

struct CrashCase {
  std::string point;
  bool commits_first_batch;  // the batch is committed to SQLite before the kill
};

std::vector<CrashCase> CrashCases() {
  std::vector<CrashCase> cases = {{"after_fetch", false}, {"after_seeds", false}, {"after_stage", false}};
  for (const auto& step : kStepFiles) cases.push_back({"after_step:steps/" + step, false});
  cases.push_back({"before_sqlite_commit", false});
  cases.push_back({"after_sqlite_commit", true});
  cases.push_back({"after_kafka_commit", true});
  return cases;
}

class CrashPointTest : public CrashHarness, public ::testing::WithParamInterface<CrashCase> {};

TEST_P(CrashPointTest, KilledAtPointThenRestartedLosesAndDoublesNothing) {
  const CrashCase& crash = GetParam();
  ASSERT_NO_FATAL_FAILURE(Start(/*group=*/false));
  Workload workload(brokers, 1234);
  ASSERT_NO_FATAL_FAILURE(workload.Produce(120));

  const std::vector<std::string> run = {"run", dir.path(), "--brokers", brokers, "--max-messages", "25"};
  const std::string crash_env = "SLUICE_CRASH_AT=" + crash.point;
  std::string output;

  // 1. Killed in the very first batch (the seed is loaded in it too).
  int code = RunToEnd(run, log, &output, {crash_env});
  ASSERT_EQ(code, 137) << "expected SIGKILL at " << crash.point << "\n" << output;
  int64_t committed = crash.commits_first_batch ? 1 : 0;
  EXPECT_EQ(CountOkRuns(db), committed) << output;
  std::string problems = CheckDatabase(db, workload, regions, /*complete=*/false);
  EXPECT_EQ(problems, "") << "after the kill in the first batch at " << crash.point;

  // 2. One clean batch, then a seed change and more data, then killed in the
  //    next batch (which reloads the seed).
  code = RunToEnd({"run", dir.path(), "--brokers", brokers, "--max-messages", "25", "--once"}, log, &output);
  ASSERT_EQ(code, 0) << output;
  regions["c10"] = "central";  // only events produced from now on use c10
  testing::WriteFile(dir / "seeds/customers.csv", SeedCsv(regions));
  ASSERT_NO_FATAL_FAILURE(workload.Produce(80, 10, std::string("c10")));
  int64_t before = CountOkRuns(db);
  code = RunToEnd(run, log, &output, {crash_env});
  ASSERT_EQ(code, 137) << "expected SIGKILL at " << crash.point << "\n" << output;
  EXPECT_EQ(CountOkRuns(db), before + committed) << output;
  problems = CheckDatabase(db, workload, regions, /*complete=*/false);
  EXPECT_EQ(problems, "") << "after the kill in a later batch at " << crash.point;

  // 3. Restarted without the crash point, until caught up.
  code = RunToEnd(run, log, &output);
  ASSERT_EQ(code, 0) << output;
  problems = CheckDatabase(db, workload, regions, /*complete=*/true);
  EXPECT_EQ(problems, "") << "after the restart\n" << output;
  EXPECT_EQ(TryQueryOne(db, "SELECT count(*) FROM curated WHERE customer = 'c10' AND region IS NOT 'central'"), "0");
  EXPECT_EQ(TryQueryOne(db, "SELECT count(*) FROM _sluice_runs WHERE status <> 'ok'"), "0");
}

INSTANTIATE_TEST_SUITE_P(NamedPoints, CrashPointTest, ::testing::ValuesIn(CrashCases()),
                         [](const ::testing::TestParamInfo<CrashCase>& info) {
                           std::string name;
                           for (char c : info.param.point) name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return name;
                         });

// ---------------------------------------------------------------------------
// b. Kills at random moments.

uint32_t CrashSeed() {
  const char* text = std::getenv("SLUICE_CRASH_SEED");
  if (text != nullptr && *text != '\0') return static_cast<uint32_t>(std::strtoul(text, nullptr, 10));
  return std::random_device{}();
}

class RandomCrash : public CrashHarness {};

TEST_F(RandomCrash, FiftyRandomKillsThenCleanRunLoseAndDoubleNothing) {
  const uint32_t seed = CrashSeed();
  std::cout << "[ crash seed ] SLUICE_CRASH_SEED=" << seed << " (set it to replay this run)" << std::endl;
  ::testing::Test::RecordProperty("crash_seed", std::to_string(seed));

  ASSERT_NO_FATAL_FAILURE(Start(/*group=*/false));
  Workload workload(brokers, seed);
  std::mt19937& rng = workload.rng();
  ASSERT_NO_FATAL_FAILURE(workload.Produce(400));

  constexpr int kKills = 50;
  const auto budget = std::chrono::seconds(75);
  const auto start = Clock::now();
  // Each kill waits a random 0-300 ms counted either from the start of the
  // process (kills while connecting, positioning, in the first fetch) or
  // from its first committed batch (kills between and inside batches). A
  // random broker round-trip time stretches fetches and the Kafka offset
  // commit, so that kills also land between the SQLite and Kafka commits.
  const int kRtts[] = {5, 20, 40};
  int kills = 0, finished = 0, iterations = 0, kills_after_commit = 0, kills_from_batch = 0;
  int64_t batches = 0;
  std::uniform_int_distribution<int> delay_ms(0, 300);
  std::uniform_int_distribution<int> more(50, 600);
  std::uniform_int_distribution<int> coin(0, 2);
  std::uniform_int_distribution<int> pick(0, 2);
  while (kills < kKills && Clock::now() - start < budget) {
    ++iterations;
    rd_kafka_mock_broker_set_rtt(broker->cluster(), 1, 0);
    if (coin(rng) != 0) {
      ASSERT_NO_FATAL_FAILURE(workload.Produce(more(rng)));
    }
    int rtt = kRtts[pick(rng)];
    bool from_batch = coin(rng) == 0;
    int delay = delay_ms(rng);
    rd_kafka_mock_broker_set_rtt(broker->cluster(), 1, rtt);
    int64_t runs_before = CountOkRuns(db);
    Child child({"run", dir.path(), "--brokers", brokers, "--until-caught-up", "--max-messages", "50"}, log);
    ASSERT_GT(child.pid(), 0);
    if (from_batch) {
      auto limit = Clock::now() + milliseconds(10000);
      while (child.running() && Clock::now() < limit &&
             !Contains(child.full_output(), ": pulled ")) {
        std::this_thread::sleep_for(milliseconds(1));
      }
    }
    auto deadline = Clock::now() + milliseconds(delay);
    while (child.running() && Clock::now() < deadline) std::this_thread::sleep_for(milliseconds(1));
    int code = child.KillNow();
    // 137: killed. 0: it finished on its own (possibly between the last
    // check and the signal). Anything else is a failure of its own.
    bool was_running = code == 137;
    if (was_running) {
      ++kills;
      if (from_batch) ++kills_from_batch;
    } else {
      ASSERT_EQ(code, 0) << "iteration " << iterations << " (seed " << seed << "): sluice failed on its own\n"
                         << child.output();
      ++finished;
    }
    int64_t runs_after = CountOkRuns(db);
    batches += runs_after - runs_before;
    if (was_running && runs_after > runs_before) ++kills_after_commit;
    std::string problems = CheckDatabase(db, workload, regions, /*complete=*/false);
    ASSERT_EQ(problems, "") << "after iteration " << iterations << " (killed " << delay << " ms after "
                            << (from_batch ? "its first batch" : "the start") << ", rtt " << rtt << " ms; seed "
                            << seed << ")\n"
                            << child.output();
  }
  rd_kafka_mock_broker_set_rtt(broker->cluster(), 1, 0);
  std::cout << "[ crash seed ] " << iterations << " runs: " << kills << " killed (" << kills_from_batch
            << " timed from their first batch, " << kills_after_commit
            << " after the killed process had committed a batch), " << finished
            << " finished before their kill; " << batches << " batches committed, " << workload.events().size()
            << " events, " << std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - start).count() << " s"
            << std::endl;
  EXPECT_GE(kills, kKills) << "the time budget ran out (seed " << seed << ")";
  EXPECT_GT(kills_after_commit, 0) << "no kill landed after a commit; the delays are too short for this machine";

  // A final clean run catches up.
  ASSERT_NO_FATAL_FAILURE(workload.Produce(100));
  std::string output;
  int code = RunToEnd({"run", dir.path(), "--brokers", brokers, "--until-caught-up", "--max-messages", "50"}, log,
                      &output);
  ASSERT_EQ(code, 0) << output;
  EXPECT_EQ(CheckDatabase(db, workload, regions, /*complete=*/true), "") << "seed " << seed;
}

// ---------------------------------------------------------------------------
// c. A member of the consumer group killed mid-run.

class GroupCrash : public CrashHarness {};

TEST_F(GroupCrash, MemberKilledMidRunSurvivorTakesOverLosingAndDoublingNothing) {
  ASSERT_NO_FATAL_FAILURE(Start(/*group=*/true));
  Workload workload(brokers, 77);
  ASSERT_NO_FATAL_FAILURE(workload.Produce(200));

  const std::vector<std::string> run = {"run", dir.path(), "--brokers", brokers, "--every", "300ms",
                                        "--max-messages", "50"};
  // Produces 20 events every 100 ms while waiting for `done`.
  auto pump = [&](const std::function<bool()>& done, milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      if (done()) return true;
      workload.Produce(20);
      if (::testing::Test::HasFatalFailure()) return false;
      std::this_thread::sleep_for(milliseconds(100));
    }
    return done();
  };
  const std::string assigned = std::string("group ") + kGroup + " assigned " + kTopic + "[";

  Child survivor(run, dir / "survivor.log");
  ASSERT_TRUE(pump([&] { return Contains(survivor.full_output(), assigned); }, milliseconds(20000)))
      << survivor.output();
  Child victim(run, dir / "victim.log");
  // The victim joins: a rebalance gives it some partitions and takes them
  // from the survivor.
  ASSERT_TRUE(pump(
      [&] {
        return Contains(victim.full_output(), assigned) && Contains(survivor.full_output(), "revoked") &&
               CountOccurrences(survivor.full_output(), assigned) >= 2;
      },
      milliseconds(30000)))
      << "survivor:\n" << survivor.output() << "\nvictim:\n" << victim.output();
  // Let the victim commit some batches of its own, then kill it mid-run.
  ASSERT_TRUE(pump([&] { return CountOccurrences(victim.full_output(), ": pulled ") >= 3; }, milliseconds(20000)))
      << victim.output();
  std::mt19937 rng(77);
  pump([] { return false; }, milliseconds(std::uniform_int_distribution<int>(100, 900)(rng)));
  ASSERT_TRUE(victim.running()) << victim.output();
  EXPECT_EQ(victim.KillNow(), 137);
  size_t assignments_before = CountOccurrences(survivor.full_output(), assigned);
  std::string victim_log = victim.full_output();

  // Keep producing; after session.timeout.ms the survivor gets the victim's
  // partitions and starts them at the stored offsets.
  auto killed_at = Clock::now();
  bool reassigned = pump([&] { return CountOccurrences(survivor.full_output(), assigned) > assignments_before; },
                         milliseconds(30000));
  double takeover_s = std::chrono::duration<double>(Clock::now() - killed_at).count();
  pump([] { return false; }, milliseconds(1000));
  auto total = [&] {
    return TryQueryOne(db, "SELECT (SELECT count(*) FROM history) + (SELECT count(*) FROM _sluice_quarantine)");
  };
  const std::string want = std::to_string(workload.events().size());
  bool caught_up =
      testing::WaitFor([&] { return total() == want || !survivor.running(); }, milliseconds(45000));
  EXPECT_TRUE(caught_up && survivor.running())
      << "history + quarantine: " << total().value_or("?") << " of " << want << "\n"
      << survivor.output();
  std::string survivor_log = survivor.full_output();
  EXPECT_TRUE(reassigned) << "the survivor was not re-assigned after the kill\n" << survivor.output();
  std::cout << "[ group ] the victim committed " << CountOccurrences(victim_log, ": pulled ")
            << " batches before its kill; the survivor took over after " << takeover_s << " s; "
            << workload.events().size() << " events" << std::endl;
  EXPECT_TRUE(Contains(survivor_log.substr(survivor_log.rfind(assigned)),
                       "events[0] events[1] events[2] events[3]"))
      << "the survivor's last assignment is not all four partitions\n" << survivor.output();
  std::optional<int> code = survivor.Stop(SIGTERM, milliseconds(15000));
  ASSERT_TRUE(code.has_value()) << "the survivor did not stop after SIGTERM\n" << survivor.output();
  EXPECT_EQ(*code, 0) << survivor.output();

  EXPECT_EQ(CheckDatabase(db, workload, regions, /*complete=*/true), "")
      << "survivor:\n" << survivor.output() << "\nvictim:\n" << testing::Tail(victim_log, 3000);
  // Conflicts (a late member's batch rolled back) are allowed; nothing else.
  EXPECT_EQ(TryQueryOne(db, "SELECT count(*) FROM _sluice_runs WHERE status <> 'ok' AND error NOT LIKE "
                            "'%another process advanced it%'"),
            "0");
}

}  // namespace
}  // namespace sluice
