// The crash harness on PostgreSQL: runs the real `sluice` binary from an
// embedded broker into a real PostgreSQL server and kills it (SIGKILL) at
// every named crash point, at random moments chosen by a seeded generator,
// and while the server is still executing one of its batch's statements.
// On PostgreSQL a batch is one server transaction on one libpq connection:
// a kill must leave the server to roll it back when the connection drops,
// release the session's advisory pipeline lock and drop its temporary
// staging table, so that the next run is neither refused nor sees a partial
// batch. After every kill the database (read with libpq, not through sluice)
// must hold exactly a consistent prefix of the topic: per partition,
// everything below the stored offset and nothing else. At the end the
// curated tables must equal a reference computed here from the produced
// events, every (partition, offset) must be in the history exactly once and
// _sluice_offsets must equal the end offsets.
//
// The random part prints its seed; SLUICE_CRASH_SEED=<n> replays a run.
#include <gtest/gtest.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "crash_workload.h"
#include "pg_server.h"
#include "test_support.h"

namespace sluice::testing {
namespace {

using RowList = std::vector<std::string>;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// The pipeline, its events and the reference they are checked against are
// crash_workload.h's, shared with the SQLite harness; what is here reads
// PostgreSQL back (with libpq) and checks what a killed session leaves.
constexpr const char* kGroup = "pg-crash";  // the pipeline's key in _sluice_offsets and its advisory lock

// The tables a run may leave in the database (anything else, a staging table
// made permanent or half a seed reload, is left behind by a kill).
const std::set<std::string> kTables = {"curated",         "history",       "totals",
                                       "customers",       "_sluice_offsets", "_sluice_runs",
                                       "_sluice_checks",  "_sluice_quarantine", "_sluice_seeds",
                                       "_sluice_inputs"};

std::string Describe(const std::map<int32_t, int64_t>& offsets) {
  std::string out;
  for (const auto& [partition, offset] : offsets) out += " [" + std::to_string(partition) + "]=" + std::to_string(offset);
  return out.empty() ? " (none)" : out;
}

// ---------------------------------------------------------------------------
// Every test: a fresh database on the shared server, an embedded broker with
// kCrashTopic in kCrashPartitions partitions and the crash pipeline on both.

class PgCrash : public BrokerTest {
 protected:
  void SetUp() override {
    std::string error;
    url = FreshDatabase(&error);
    ASSERT_FALSE(url.empty()) << "PostgreSQL: " << error;
    ASSERT_NO_FATAL_FAILURE(StartEmbeddedBroker(kCrashTopic, kCrashPartitions));
    pg = std::make_unique<PgClient>(url);
    ASSERT_TRUE(pg->ok()) << pg->error();
    WriteCrashPipeline(dir.path(), CrashPipelineConf(brokers, kGroup, url, /*group_assignment=*/false),
                       kPostgresCrashDialect, regions);
  }

  // The rows of `sql`; a failing query is a problem appended to *problems.
  RowList Rows(const std::string& sql, std::string* problems) {
    std::optional<RowList> rows = pg->Rows(sql);
    if (!rows) *problems += sql.substr(0, 60) + "...: " + pg->error() + "\n";
    return rows.value_or(RowList{});
  }
  bool Exists(const std::string& table) { return pg->One("select to_regclass('" + table + "') is not null") == "t"; }

  int64_t CountOkRuns() {
    if (!Exists("_sluice_runs")) return 0;
    std::string count = pg->One("select count(*) from _sluice_runs where status = 'ok'");
    return std::isdigit(static_cast<unsigned char>(count[0])) ? std::stoll(count) : -1;
  }

  // Checks the database against the events. With `complete`, the stored
  // offsets must be the end offsets; otherwise any stored offsets are
  // accepted and the database must equal the reference for exactly the
  // prefix they describe (a killed run leaves either a whole batch or
  // nothing). Returns "" when all is well, else every problem found.
  std::string CheckDatabase(const Workload& workload, bool complete) {
    std::string problems;
    // Killed before its catalog was installed: nothing may be stored yet.
    bool installed = Exists("_sluice_offsets");
    if (!installed && complete) return "no _sluice_offsets after a complete run\n";
    std::map<int32_t, int64_t> stored;
    if (installed) {
      for (const auto& row : Rows(std::string("select \"partition\" || '|' || next_offset from _sluice_offsets "
                                              "where next_offset > 0 and pipeline = '") +
                                      kGroup + "' and topic = '" + kCrashTopic + "'",
                                  &problems)) {
        size_t bar = row.find('|');
        stored[std::stoi(row.substr(0, bar))] = std::stoll(row.substr(bar + 1));
      }
    }
    std::map<int32_t, int64_t> ends = workload.ends();
    for (const auto& [partition, offset] : stored) {
      if (offset > (ends.count(partition) ? ends[partition] : 0)) {
        problems += "_sluice_offsets: partition " + std::to_string(partition) + " is past its end offset\n";
      }
    }
    if (complete && stored != ends) {
      problems += "_sluice_offsets:" + Describe(stored) + " but the end offsets are" + Describe(ends) + "\n";
    }

    Reference ref = ComputeReference(workload.events(), stored, regions);
    auto rows_of = [&](const std::string& table, const std::string& sql) {
      return Exists(table) ? Rows(sql, &problems) : RowList{};
    };
    problems += DiffRows("curated", ref.curated, rows_of("curated", "select id, customer, region, cents, version "
                                                                    "from curated"));
    problems += DiffRows("totals", ref.totals, rows_of("totals", "select customer, n, cents from totals"));
    RowList ledger = rows_of("history", "select part, off, eid from history");
    for (const auto& row : rows_of("_sluice_quarantine", "select \"partition\", \"offset\", value::jsonb ->> 'eid' "
                                                         "from _sluice_quarantine")) {
      ledger.push_back(row);
    }
    problems += DiffRows("history + quarantine (partition|offset|eid)", ref.ledger, ledger);
    if (!installed || !Exists("history")) return problems;

    // Run accounting: staged + quarantined == fetched for every committed
    // batch, each batch's history rows are its own, and no run is left
    // 'running' (that row is written in the batch's transaction).
    RowList sums = Rows("select coalesce(sum(messages), 0) || '|' || coalesce(sum(staged), 0) || '|' || "
                        "coalesce(sum(quarantined), 0) from _sluice_runs where status = 'ok'",
                        &problems);
    std::string want = std::to_string(ref.valid + ref.invalid) + "|" + std::to_string(ref.valid) + "|" +
                       std::to_string(ref.invalid);
    if (sums != RowList{want}) {
      problems += "_sluice_runs (ok): messages|staged|quarantined = " + (sums.empty() ? "?" : sums[0]) +
                  ", expected " + want + "\n";
    }
    for (const auto& row : Rows("select r.run_id from _sluice_runs r where r.status = 'ok' and "
                                "r.staged <> (select count(*) from history h where h.run_id = r.run_id)",
                                &problems)) {
      problems += "run " + row + ": its staged count is not its number of history rows\n";
    }
    for (const auto& row : Rows("select count(*) from history where run_id is null or run_id not in "
                                "(select run_id from _sluice_runs where status = 'ok') having count(*) > 0",
                                &problems)) {
      problems += row + " history rows belong to no committed run\n";
    }
    for (const auto& row : Rows("select count(*) from _sluice_runs where status = 'running' having count(*) > 0",
                                &problems)) {
      problems += row + " runs are left in status 'running'\n";
    }
    // The offset ranges of committed runs tile each partition from 0 to the
    // stored offset, without gap or overlap.
    std::map<int32_t, int64_t> next;
    for (const auto& row : Rows("select j ->> 'partition', j ->> 'first', j ->> 'last', r.run_id "
                                "from _sluice_runs r, jsonb_array_elements(r.offsets::jsonb) j "
                                "where r.status = 'ok' order by (j ->> 'partition')::int, (j ->> 'first')::bigint",
                                &problems)) {
      int partition = 0;
      long long first = 0, last = 0, run = 0;
      if (std::sscanf(row.c_str(), "%d|%lld|%lld|%lld", &partition, &first, &last, &run) != 4) continue;
      if (first != next[partition]) {
        problems += "run " + std::to_string(run) + " covers partition " + std::to_string(partition) + " from " +
                    std::to_string(first) + " but the previous committed run ended before " +
                    std::to_string(next[partition]) + "\n";
      }
      next[partition] = last + 1;
    }
    if (next != stored) problems += "the committed runs end at" + Describe(next) + ", the stored offsets are" +
                                    Describe(stored) + "\n";
    return problems;
  }

  // After a kill: the server ends the killed session once it notices the
  // connection is gone. Its advisory pipeline lock and its temporary staging
  // table (and view `batch`) must go with it, and no table may be left behind
  // outside the known ones. Returns "" when all is well.
  std::string CheckKilledSessionGone(milliseconds timeout = milliseconds(10000)) {
    const std::string locks =
        "select count(*) from pg_locks where locktype = 'advisory' and "
        "database = (select oid from pg_database where datname = current_database())";
    const std::string temporary =
        "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        "where n.nspname ~ '^pg_(toast_)?temp_'";
    std::string problems;
    if (!WaitFor([&] { return pg->One(locks) == "0"; }, timeout)) {
      problems += "the killed session's advisory lock is still held: " +
                  pg->One("select string_agg(l.pid || ' ' || coalesce(a.application_name, '?') || ' ' || "
                          "coalesce(a.state, '?'), ', ') from pg_locks l left join pg_stat_activity a "
                          "on a.pid = l.pid where l.locktype = 'advisory'") +
                  "\n";
    }
    if (!WaitFor([&] { return pg->One(temporary) == "0"; }, timeout)) {
      problems += "temporary relations of a killed session are left: " +
                  pg->One("select string_agg(n.nspname || '.' || c.relname, ', ') from pg_class c join "
                          "pg_namespace n on n.oid = c.relnamespace where n.nspname ~ '^pg_(toast_)?temp_'") +
                  "\n";
    }
    for (const auto& table : Rows("select tablename from pg_tables where schemaname not in ('pg_catalog', "
                                  "'information_schema') and schemaname !~ '^pg_(toast_)?temp_'",
                                  &problems)) {
      if (!kTables.count(table)) problems += "a table is left behind: " + table + "\n";
    }
    return problems;
  }

  std::vector<std::string> RunArgs(const std::string& max_messages) const {
    return {"run", dir.path(), "--brokers", brokers, "--until-caught-up", "--max-messages", max_messages};
  }

  std::string url;
  std::unique_ptr<PgClient> pg;
  std::map<std::string, std::string> regions = InitialRegions();
};

// ---------------------------------------------------------------------------
// a. Every named crash point, deterministically.

class PgCrashPoint : public PgCrash, public ::testing::WithParamInterface<CrashCase> {};

TEST_P(PgCrashPoint, KilledAtPointThenRestartedLosesAndDoublesNothing) {
  const CrashCase& crash = GetParam();
  Workload workload(brokers, 1234);
  ASSERT_NO_FATAL_FAILURE(workload.Produce(120));
  const std::vector<std::string> run = RunArgs("25");
  const std::string crash_env = "SLUICE_CRASH_AT=" + crash.point;
  const int64_t committed = crash.commits_first_batch ? 1 : 0;
  std::string output;

  // 1. Killed in the very first batch (which loads the seed too).
  ASSERT_EQ(RunToEnd(run, log, &output, {crash_env}), 137) << "expected SIGKILL at " << crash.point << "\n" << output;
  EXPECT_EQ(CheckKilledSessionGone(), "") << "after the kill in the first batch at " << crash.point;
  EXPECT_EQ(CountOkRuns(), committed) << output;
  EXPECT_EQ(CheckDatabase(workload, /*complete=*/false), "") << "after the kill in the first batch at " << crash.point;

  // 2. One clean batch (the next run is not refused), then a seed change and
  //    more data, then killed in the next batch (which reloads the seed).
  ASSERT_EQ(RunToEnd({"run", dir.path(), "--brokers", brokers, "--max-messages", "25", "--once"}, log, &output), 0)
      << output;
  regions["c10"] = "central";  // only events produced from now on name c10
  WriteFile(dir / "seeds/customers.csv", SeedCsv(regions));
  ASSERT_NO_FATAL_FAILURE(workload.Produce(80, "c10"));
  int64_t before = CountOkRuns();
  ASSERT_EQ(RunToEnd(run, log, &output, {crash_env}), 137) << "expected SIGKILL at " << crash.point << "\n" << output;
  EXPECT_EQ(CheckKilledSessionGone(), "") << "after the kill in a later batch at " << crash.point;
  EXPECT_EQ(CountOkRuns(), before + committed) << output;
  EXPECT_EQ(CheckDatabase(workload, /*complete=*/false), "") << "after the kill in a later batch at " << crash.point;

  // 3. Restarted without the crash point, until caught up.
  ASSERT_EQ(RunToEnd(run, log, &output), 0) << output;
  EXPECT_EQ(CheckDatabase(workload, /*complete=*/true), "") << "after the restart\n" << output;
  EXPECT_EQ(pg->One("select count(*) from curated where customer = 'c10' and region is distinct from 'central'"), "0");
  EXPECT_EQ(pg->One("select count(*) from _sluice_runs where status <> 'ok'"), "0");
}

INSTANTIATE_TEST_SUITE_P(NamedPoints, PgCrashPoint, ::testing::ValuesIn(CrashCases()), CrashCaseName);

// ---------------------------------------------------------------------------
// b. Kills at random moments: while connecting and installing the catalog,
//    positioning, loading the seed, and between and inside batches.

TEST_F(PgCrash, RandomKillsThenCleanRunLoseAndDoubleNothing) {
  const uint32_t seed = CrashSeed();
  Workload workload(brokers, seed);
  std::mt19937& rng = workload.rng();
  ASSERT_NO_FATAL_FAILURE(workload.Produce(300));

  constexpr int kKills = 12;
  const auto budget = std::chrono::seconds(25);
  const auto start = Clock::now();
  // Each kill waits a random 0-250 ms from the start of the process, or
  // 0-80 ms from its first committed batch (a run commits a batch every few
  // milliseconds and soon catches up, so longer delays mostly miss it).
  std::uniform_int_distribution<int> from_start_ms(0, 250), from_batch_ms(0, 80), more(50, 300), coin(0, 1);
  int kills = 0, finished = 0, iterations = 0, kills_after_commit = 0;
  while (kills < kKills && Clock::now() - start < budget) {
    ++iterations;
    if (coin(rng) != 0) {
      ASSERT_NO_FATAL_FAILURE(workload.Produce(more(rng)));
    }
    const bool from_batch = coin(rng) == 0;
    const int delay = from_batch ? from_batch_ms(rng) : from_start_ms(rng);
    const int64_t runs_before = CountOkRuns();
    Child child(RunArgs("20"), log);
    ASSERT_GT(child.pid(), 0);
    if (from_batch) {
      WaitFor([&] { return !child.running() || Contains(child.full_output(), ": pulled "); }, milliseconds(10000));
    }
    auto deadline = Clock::now() + milliseconds(delay);
    while (child.running() && Clock::now() < deadline) std::this_thread::sleep_for(milliseconds(1));
    // 137: killed. 0: it finished on its own before the signal.
    int code = child.KillNow();
    if (code == 137) {
      ++kills;
      if (CountOkRuns() > runs_before) ++kills_after_commit;
    } else {
      ASSERT_EQ(code, 0) << "iteration " << iterations << " (seed " << seed << "): sluice failed on its own\n"
                         << child.output();
      ++finished;
    }
    const std::string when = "after iteration " + std::to_string(iterations) + " (killed " + std::to_string(delay) +
                             " ms after " + (from_batch ? "its first batch" : "the start") + "; seed " +
                             std::to_string(seed) + ")\n" + child.output();
    ASSERT_EQ(CheckKilledSessionGone(), "") << when;
    ASSERT_EQ(CheckDatabase(workload, /*complete=*/false), "") << when;
  }
  std::cout << "[ crash seed ] " << iterations << " runs: " << kills << " killed (" << kills_after_commit
            << " after committing a batch), " << finished << " finished before their kill; " << CountOkRuns()
            << " batches committed, " << workload.events().size() << " events" << std::endl;
  EXPECT_GE(kills, kKills) << "the time budget ran out (seed " << seed << ")";
  EXPECT_GT(kills_after_commit, 0) << "no kill landed after a commit; the delays are too short for this machine";

  // A final clean run catches up.
  ASSERT_NO_FATAL_FAILURE(workload.Produce(100));
  std::string output;
  ASSERT_EQ(RunToEnd(RunArgs("50"), log, &output), 0) << output;
  EXPECT_EQ(CheckDatabase(workload, /*complete=*/true), "") << "seed " << seed;
}

// ---------------------------------------------------------------------------
// c. Killed while the server still executes a statement of the batch.

// The server learns that its client is gone only when it next talks to it:
// a statement in progress runs to its end, inside the killed batch's open
// transaction (which has already written the upsert and the audit rows).
// Then the session ends, the transaction rolls back and the lock is
// released; until then the next run must be refused, not run beside it.
TEST_F(PgCrash, KilledWhileTheServerRunsAStepTheServerRollsTheBatchBack) {
  Workload workload(brokers, 99);
  ASSERT_NO_FATAL_FAILURE(workload.Produce(60));
  std::string output;
  ASSERT_EQ(RunToEnd({"run", dir.path(), "--brokers", brokers, "--max-messages", "20", "--once"}, log, &output), 0)
      << output;
  const int64_t committed = CountOkRuns();
  const std::string history_before = pg->One("select count(*) from history");

  // Sleeps only when the batch has rows: the steps are checked against an
  // empty batch at start-up.
  const std::string pause = dir / "steps/25_pause.sql";
  WriteFile(pause, "select pg_sleep(4) from (select 1 from batch limit 1) as one;\n");
  Child child(RunArgs("20"), log);
  ASSERT_GT(child.pid(), 0);
  const std::string backend_sql = "select pid from pg_stat_activity where state = 'active' and query like "
                                  "'%pg_sleep(4)%' and application_name like 'sluice pid " +
                                  std::to_string(child.pid()) + " on %'";
  std::string backend;
  ASSERT_TRUE(WaitFor(
      [&] {
        backend = pg->One(backend_sql);
        return backend != "NO ROW" || !child.running();
      },
      milliseconds(15000)))
      << child.output();
  ASSERT_NE(backend, "NO ROW") << "the pause step never ran\n" << child.output();
  ASSERT_EQ(child.KillNow(), 137);

  // The server still runs the killed batch: its transaction has written, and
  // none of it is visible.
  EXPECT_EQ(pg->One("select backend_xid is not null and state = 'active' from pg_stat_activity where pid = " +
                    backend),
            "t")
      << "the killed session's statement is no longer running: the pause is too short for this machine";
  EXPECT_EQ(pg->One("select count(*) from history"), history_before);
  EXPECT_EQ(CheckDatabase(workload, /*complete=*/false), "") << "while the killed batch is still on the server";
  // Its advisory lock is still held: a next run is refused, naming it.
  EXPECT_NE(RunToEnd({"run", dir.path(), "--brokers", brokers, "--once"}, log, &output), 0) << output;
  EXPECT_TRUE(Contains(output, "is in use by")) << output;

  // Once the statement ends the server finds the connection gone, ends the
  // session and rolls the batch back.
  EXPECT_TRUE(WaitFor([&] { return pg->One("select count(*) from pg_stat_activity where pid = " + backend) == "0"; },
                      milliseconds(15000)))
      << "the killed session's server process " << backend << " did not end";
  EXPECT_EQ(CheckKilledSessionGone(), "");
  EXPECT_EQ(CountOkRuns(), committed);
  EXPECT_EQ(pg->One("select count(*) from history"), history_before);
  EXPECT_EQ(CheckDatabase(workload, /*complete=*/false), "") << "after the server ended the killed session";

  // The next run proceeds from the stored offsets.
  std::remove(pause.c_str());
  ASSERT_EQ(RunToEnd(RunArgs("20"), log, &output), 0) << output;
  EXPECT_EQ(CheckDatabase(workload, /*complete=*/true), "") << output;
  EXPECT_EQ(pg->One("select count(*) from _sluice_runs where status <> 'ok'"), "0");
}

}  // namespace
}  // namespace sluice::testing
