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
#include <chrono>
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

#include "crash_workload.h"
#include "test_support.h"

namespace sluice {
namespace {

using testing::Child;
using testing::ComputeReference;
using testing::Contains;
using testing::CountOccurrences;
using testing::CrashCase;
using testing::CrashCaseName;
using testing::CrashCases;
using testing::CrashSeed;
using testing::InitialRegions;
using testing::kCrashPartitions;
using testing::kCrashTopic;
using testing::Reference;
using testing::RunToEnd;
using testing::SeedCsv;
using testing::TryQueryOne;
using testing::Workload;
using Rows = std::vector<std::string>;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// The pipeline, its events and the reference they are checked against are
// crash_workload.h's, shared with the PostgreSQL harness; what is here reads
// SQLite back and kills the process.
constexpr const char* kGroup = "crash-group";

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
                                           "WHERE topic = '") + kCrashTopic + "'")) {
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

// Every test: an embedded broker with kCrashTopic in kCrashPartitions
// partitions and the crash pipeline on it (with the seed `regions`) in the
// fixture's directory.
class CrashHarness : public testing::BrokerTest {
 protected:
  void Start(bool group) {
    ASSERT_NO_FATAL_FAILURE(StartEmbeddedBroker(kCrashTopic, kCrashPartitions));
    testing::WriteCrashPipeline(dir.path(), testing::CrashPipelineConf(brokers, kGroup, "pipeline.db", group),
                                testing::kSqliteCrashDialect, regions);
  }

  std::map<std::string, std::string> regions = InitialRegions();
};

// ---------------------------------------------------------------------------
// a. Every named crash point, deterministically.

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
  ASSERT_NO_FATAL_FAILURE(workload.Produce(80, "c10"));
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

INSTANTIATE_TEST_SUITE_P(NamedPoints, CrashPointTest, ::testing::ValuesIn(CrashCases()), CrashCaseName);

// ---------------------------------------------------------------------------
// b. Kills at random moments.

class RandomCrash : public CrashHarness {};

TEST_F(RandomCrash, FiftyRandomKillsThenCleanRunLoseAndDoubleNothing) {
  const uint32_t seed = CrashSeed();

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
  const std::string assigned = std::string("group ") + kGroup + " assigned " + kCrashTopic + "[";

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
