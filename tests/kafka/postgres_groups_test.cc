// Exactly-once into PostgreSQL with a consumer group: three `assignment =
// group` members (`run --every 1s`) of one group write into ONE PostgreSQL
// database (a real server this file starts, see tests/postgres/pg_server.h),
// from a real Kafka topic of 6 partitions. The pipeline keeps a curated table
// keyed by business key (count, sum and latest amount per id) and an
// append-only `seen` table (a message processed twice is there twice).
//
//  - A member is SIGKILLed in the middle of a batch (its transaction open on
//    the server); the others take over its partitions.
//  - Zombie fencing: a member is SIGSTOPped in the middle of a batch for
//    longer than its session timeout; the group gives its partitions to the
//    others, which commit further; then it is SIGCONTed and finishes its
//    stale batch: the stored offsets no longer equal the batch's start, so
//    the engine rolls it back as a conflict instead of committing over the
//    new owner's offsets.
//
// To stop or kill a member while its batch is open, the member runs with
// PGAPPNAME=sluice-paused and a step sleeps for that session only, and only
// when the batch has rows; the test waits until pg_stat_activity shows that
// session in pg_sleep (wait_event PgSleep) and then sends the signal.
//
// Everything checked is read back with libpq (PgClient), not through sluice.
#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <signal.h>

#include <algorithm>
#include <cctype>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "kafka_tier.h"
#include "pg_server.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;
using testing::PgClient;
using testing::PgServer;

constexpr int kPartitions = 6;
constexpr int kPerRound = 50;       // messages per partition and round
constexpr int kKeysPerPartition = 15;
const char* const kPausedApp = "sluice-paused";
// What the engine logs when it rolls a batch back because the stored offsets moved.
const char* const kConflict = "another process advanced it";

// A message as produced, read back from the topic.
struct Produced {
  int32_t partition = 0;
  int64_t offset = 0;
  std::string id;
  int64_t amount = 0;
};

class PostgresGroups : public ::testing::Test {
 protected:
  void SetUp() override {
    kafka_ = testing::RealKafka::Get();
    ASSERT_NE(kafka_, nullptr) << "the real Kafka broker is not running (see the set-up)";
    std::string error;
    server_ = testing::SharedServer(&error);  // started on first use: a filtered run that skips these starts none
    ASSERT_NE(server_, nullptr) << "PostgreSQL did not start: " << error;
    static std::atomic<int> counter{0};
    database_ = "kg" + std::to_string(::getpid()) + "_" + std::to_string(++counter);
    ASSERT_TRUE(server_->CreateDatabase(database_, &error)) << error;
    url_ = server_->Url(database_);
    topic_ = testing::UniqueName("pg-group");
    ASSERT_TRUE(kafka_->CreateTopic(topic_, kPartitions).ok());
    ASSERT_TRUE(kafka_->WaitForPartitions(topic_, kPartitions));
    pipeline_ = dir_ / "p";
    testing::WritePipeline(pipeline_, Files());
    pg_ = std::make_unique<PgClient>(url_);
    ASSERT_TRUE(pg_->ok()) << pg_->error();
  }

  void TearDown() override {
    StopMonitor();
    // Children still running (an ASSERT returned early) are killed by ~Child.
  }

  testing::PipelineFiles Files() const {
    testing::PipelineFiles files;
    files.conf = "[source]\nbrokers = " + kafka_->bootstrap() + "\ntopic = " + topic_ + "\ngroup = " + topic_ +
                 "-group\nstart = earliest\nconnect_timeout = 10s\nassignment = group\n"
                 "[batch]\nmax_messages = 40\nmax_wait = 300ms\n"
                 "[columns]\nid = TEXT\namount = REAL\n"
                 "[target]\ndatabase = " + url_ + "\n"
                 // A member that stops heartbeating loses its partitions after
                 // the session timeout (the broker's minimum is 6 s).
                 "[kafka]\nsession.timeout.ms = 6000\nheartbeat.interval.ms = 1000\n";
    files.schema =
        "create table if not exists seen (part integer not null, off bigint not null, id text not null, "
        "amount double precision, worker text);\n"
        "create table if not exists totals (id text primary key, n bigint not null, total double precision not null, "
        "last_amount double precision, last_off bigint not null);\n";
    // Only the member started with PGAPPNAME=sluice-paused, and only for a
    // batch with rows: a window in which its transaction is open.
    files.steps["05_pause.sql"] =
        "select pg_sleep(2) from (select 1 from batch limit 1) b\n"
        "where current_setting('application_name') = '" + std::string(kPausedApp) + "';\n";
    files.steps["10_seen.sql"] =
        "insert into seen (part, off, id, amount, worker)\n"
        "select _kafka_partition, _kafka_offset, id, amount, current_setting('application_name') from batch;\n";
    files.steps["20_totals.sql"] =
        "insert into totals (id, n, total, last_amount, last_off)\n"
        "select id, count(*), sum(amount), (array_agg(amount order by _kafka_offset desc))[1], max(_kafka_offset)\n"
        "from batch group by id\n"
        "on conflict (id) do update set n = totals.n + excluded.n, total = totals.total + excluded.total,\n"
        "  last_amount = case when excluded.last_off > totals.last_off then excluded.last_amount\n"
        "                     else totals.last_amount end,\n"
        "  last_off = greatest(totals.last_off, excluded.last_off);\n";
    return files;
  }

  // One round: kPerRound messages to every partition. Keys belong to one
  // partition each, so "the latest amount of a key" is defined by offsets.
  void ProduceRound() {
    const int round = rounds_++;
    for (int p = 0; p < kPartitions; ++p) {
      std::vector<OutgoingMessage> messages;
      for (int j = 0; j < kPerRound; ++j) {
        const int i = round * kPerRound + j;
        OutgoingMessage message;
        message.partition = p;
        message.value = "{\"id\":\"k" + std::to_string(p) + "-" + std::to_string(i % kKeysPerPartition) +
                        "\",\"amount\":" + std::to_string((i * 7919 + p * 104729 + round * 31) % 1000) + "}";
        messages.push_back(message);
      }
      Status st = ProduceMessages(kafka_->bootstrap(), topic_, messages);
      ASSERT_TRUE(st.ok()) << st.message();
    }
  }

  void StartWorkers(int count) {
    for (int i = 0; i < count; ++i) {
      const std::string app = i == 0 ? kPausedApp : "sluice-worker-" + std::to_string(i);
      workers_.push_back(std::make_unique<testing::Child>(std::vector<std::string>{"run", pipeline_, "--every", "1s"},
                                                           dir_ / ("worker" + std::to_string(i) + ".log"),
                                                           std::vector<std::string>{"PGAPPNAME=" + app}));
      ASSERT_GT(workers_.back()->pid(), 0);
      pids_.push_back(workers_.back()->pid());
    }
  }

  // Stored next offset per partition (a query error: empty, and *error says why).
  std::map<int32_t, int64_t> Stored(PgClient& client, std::string* error = nullptr) {
    std::map<int32_t, int64_t> stored;
    auto rows = client.Rows("select \"partition\", next_offset from _sluice_offsets where topic = '" + topic_ + "'");
    if (!rows) {
      if (error) *error = client.error();
      return stored;
    }
    for (const std::string& row : *rows) {
      size_t bar = row.find('|');
      stored[std::stoi(row.substr(0, bar))] = std::stoll(row.substr(bar + 1));
    }
    return stored;
  }

  static std::string Describe(const std::map<int32_t, int64_t>& offsets) {
    std::string text;
    for (const auto& [p, offset] : offsets) text += (text.empty() ? "" : " ") + std::to_string(p) + ":" + std::to_string(offset);
    return text.empty() ? "(none)" : text;
  }

  // The log end offset of every partition (what was produced: no transactions).
  std::map<int32_t, int64_t> Ends() {
    std::map<int32_t, int64_t> ends;
    for (const auto& [p, marks] : kafka_->Watermarks(topic_, kPartitions)) ends[p] = marks.second;
    return ends;
  }

  // Waits until the stored offsets reach `ends` on every partition.
  bool WaitCaughtUp(const std::map<int32_t, int64_t>& ends, std::chrono::milliseconds timeout) {
    return testing::WaitFor([&] { return Stored(*pg_) == ends; }, timeout);
  }

  // True once the paused member's session sleeps in the pause step (its batch is open).
  bool WaitPaused(std::chrono::milliseconds timeout, bool produce_while_waiting) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (testing::WaitFor(
              [&] {
                return pg_->One("select count(*) from pg_stat_activity where application_name = '" +
                                std::string(kPausedApp) + "' and wait_event = 'PgSleep'") == "1";
              },
              4s)) {
        return true;
      }
      if (!workers_[0]->running()) return false;
      // It owns no partition with unread messages yet: give it some.
      if (produce_while_waiting) ProduceRound();
    }
    return false;
  }

  // Records the stored offsets every 100 ms; a partition going back is a regression.
  void StartMonitor() {
    monitor_stop_ = false;
    monitor_ = std::thread([this] {
      PgClient client(url_);
      std::map<int32_t, int64_t> highest;
      while (!monitor_stop_.load()) {
        std::string error;
        std::map<int32_t, int64_t> now = Stored(client, &error);
        {
          std::lock_guard<std::mutex> lock(monitor_mutex_);
          ++snapshots_;
          for (const auto& [p, offset] : now) {
            auto seen = highest.find(p);
            if (seen != highest.end() && offset < seen->second) {
              regressions_.push_back("partition " + std::to_string(p) + " went from " + std::to_string(seen->second) +
                                     " back to " + std::to_string(offset));
            }
            highest[p] = std::max(highest[p], offset);
          }
        }
        std::this_thread::sleep_for(100ms);
      }
    });
  }

  void StopMonitor() {
    monitor_stop_ = true;
    if (monitor_.joinable()) monitor_.join();
  }

  // What a failure message needs: offsets, ends, per-partition counts, the
  // failed runs, the sessions, and every member's log tail.
  std::string Diagnostics() {
    PgClient client(url_);
    std::string text = "stored offsets: " + Describe(Stored(client)) + "\nlog ends:       " + Describe(Ends()) + "\n";
    auto dump = [&](const std::string& title, const std::string& sql) {
      text += title + ":\n";
      auto rows = client.Rows(sql);
      if (!rows) {
        text += "  ERROR " + client.error() + "\n";
        return;
      }
      for (const std::string& row : *rows) text += "  " + row + "\n";
    };
    dump("seen per partition (rows|distinct offsets|min|max)",
         "select part, count(*), count(distinct off), min(off), max(off) from seen group by part order by part");
    dump("failed runs (latest 15)",
         "select run_id, status, left(coalesce(error, ''), 300) from _sluice_runs where status <> 'ok' "
         "order by run_id desc limit 15");
    dump("sessions", "select pid, application_name, state, wait_event, left(query, 80) from pg_stat_activity "
                     "where datname = current_database()");
    for (size_t i = 0; i < workers_.size(); ++i) {
      text += "--- worker " + std::to_string(i) + " (pid " + std::to_string(pids_[i]) + ", exit " +
              (workers_[i]->exit_code() ? std::to_string(*workers_[i]->exit_code()) : std::string("-")) + ")\n" +
              workers_[i]->output(2500) + "\n";
    }
    return text;
  }

  // Every message the topic holds, read back with a plain consumer.
  std::vector<Produced> ReadBack() {
    std::vector<Produced> produced;
    for (const testing::Record& record : testing::ReadAll(kafka_->bootstrap(), topic_, kPartitions)) {
      rapidjson::Document doc;
      doc.Parse(record.value.value_or("").c_str());
      EXPECT_TRUE(doc.IsObject() && doc.HasMember("id") && doc.HasMember("amount")) << *record.value;
      if (!doc.IsObject()) continue;
      produced.push_back({record.partition, record.offset, doc["id"].GetString(), doc["amount"].GetInt64()});
    }
    return produced;
  }

  // The checks both tests end with, once every member has stopped.
  void CheckExactlyOnce() {
    const std::string diagnostics = Diagnostics();
    std::vector<Produced> produced = ReadBack();
    const size_t expected_total = static_cast<size_t>(rounds_) * kPartitions * kPerRound;
    ASSERT_EQ(produced.size(), expected_total) << "the topic does not hold what was produced\n" << diagnostics;

    // No (partition, offset) twice.
    auto doubled = pg_->Rows("select part, off, count(*), string_agg(worker, ',') from seen group by part, off "
                             "having count(*) > 1 order by part, off limit 20");
    ASSERT_TRUE(doubled) << pg_->error();
    EXPECT_TRUE(doubled->empty()) << "messages processed twice (part|off|times|by):\n"
                                  << ::testing::PrintToString(*doubled) << "\n"
                                  << diagnostics;

    // Every produced message once, nothing else.
    std::vector<std::string> expected_seen;
    for (const Produced& m : produced) {
      expected_seen.push_back(std::to_string(m.partition) + "|" + std::to_string(m.offset) + "|" + m.id + "|" +
                              std::to_string(m.amount));
    }
    auto seen = pg_->Rows("select part, off, id, amount::bigint from seen");
    ASSERT_TRUE(seen) << pg_->error();
    EXPECT_EQ(testing::DiffRows("seen (part|off|id|amount)", expected_seen, *seen), "") << diagnostics;

    // The curated table against a reference computed here.
    struct Total {
      int64_t n = 0, total = 0, last_amount = 0, last_off = -1;
    };
    std::map<std::string, Total> reference;
    for (const Produced& m : produced) {
      Total& t = reference[m.id];
      ++t.n;
      t.total += m.amount;
      if (m.offset > t.last_off) t.last_off = m.offset, t.last_amount = m.amount;
    }
    std::vector<std::string> expected_totals;
    for (const auto& [id, t] : reference) {
      expected_totals.push_back(id + "|" + std::to_string(t.n) + "|" + std::to_string(t.total) + "|" +
                                std::to_string(t.last_amount) + "|" + std::to_string(t.last_off));
    }
    auto totals = pg_->Rows("select id, n, total::bigint, last_amount::bigint, last_off from totals");
    ASSERT_TRUE(totals) << pg_->error();
    EXPECT_EQ(testing::DiffRows("totals (id|n|total|last_amount|last_off)", expected_totals, *totals), "")
        << diagnostics;

    // The stored offsets are the log ends.
    std::map<int32_t, int64_t> ends;
    for (const Produced& m : produced) ends[m.partition] = std::max(ends[m.partition], m.offset + 1);
    EXPECT_EQ(Describe(Stored(*pg_)), Describe(ends)) << diagnostics;

    StopMonitor();
    std::lock_guard<std::mutex> lock(monitor_mutex_);
    EXPECT_GT(snapshots_, 10);
    EXPECT_TRUE(regressions_.empty()) << "stored offsets went back:\n"
                                      << ::testing::PrintToString(regressions_) << "\n"
                                      << diagnostics;
  }

  // Stops the members still running (SIGTERM) and expects a clean exit.
  void StopWorkers() {
    for (size_t i = 0; i < workers_.size(); ++i) {
      if (!workers_[i]->running() && workers_[i]->exit_code() == std::optional<int>(137)) continue;  // killed
      std::optional<int> code = workers_[i]->Stop(SIGTERM, 60s);
      EXPECT_EQ(code, std::optional<int>(0)) << "worker " << i << ":\n" << workers_[i]->output();
    }
  }

  testing::RealKafka* kafka_ = nullptr;
  PgServer* server_ = nullptr;
  std::string database_, url_, topic_, pipeline_;
  testing::TempDir dir_;
  std::unique_ptr<PgClient> pg_;
  std::vector<std::unique_ptr<testing::Child>> workers_;
  std::vector<pid_t> pids_;  // as started (a reaped Child forgets its pid)
  int rounds_ = 0;

  std::thread monitor_;
  std::atomic<bool> monitor_stop_{true};
  std::mutex monitor_mutex_;
  std::vector<std::string> regressions_;
  int snapshots_ = 0;
};

// Test A: three members, one SIGKILLed with its batch open, more messages
// after; every message once in `seen`, the curated table equal to the reference.
TEST_F(PostgresGroups, ThreeMembersOneKilledMidBatchExactlyOnce) {
  for (int r = 0; r < 2; ++r) ASSERT_NO_FATAL_FAILURE(ProduceRound());
  ASSERT_NO_FATAL_FAILURE(StartWorkers(3));
  StartMonitor();
  // Two more rounds while they run.
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        std::string count = pg_->One("select count(*) from seen");
        return !count.empty() && std::isdigit(static_cast<unsigned char>(count[0])) && count != "0";
      },
      120s))
      << Diagnostics();
  for (int r = 0; r < 2; ++r) ASSERT_NO_FATAL_FAILURE(ProduceRound());

  ASSERT_TRUE(WaitPaused(120s, true)) << "the member to kill never had a batch open\n" << Diagnostics();
  EXPECT_EQ(workers_[0]->KillNow(), 137);
  // Its uncommitted batch must be gone with its session.
  EXPECT_TRUE(testing::WaitFor(
      [&] { return pg_->One("select count(*) from pg_stat_activity where application_name = '" +
                            std::string(kPausedApp) + "'") == "0"; },
      60s))
      << Diagnostics();

  for (int r = 0; r < 4; ++r) ASSERT_NO_FATAL_FAILURE(ProduceRound());
  std::map<int32_t, int64_t> ends = Ends();
  ASSERT_EQ(ends.size(), static_cast<size_t>(kPartitions));
  bool caught_up = WaitCaughtUp(ends, 240s);
  ASSERT_TRUE(caught_up) << "the stored offsets never reached the log ends\n" << Diagnostics();
  StopWorkers();
  CheckExactlyOnce();
}

// Test B: a member SIGSTOPped with its batch open, past its session timeout;
// the others take its partitions and commit further; SIGCONT: its stale
// batch is rolled back as a conflict, nothing twice, offsets never go back.
TEST_F(PostgresGroups, ZombieMemberIsFencedByStoredOffsets) {
  for (int r = 0; r < 2; ++r) ASSERT_NO_FATAL_FAILURE(ProduceRound());
  ASSERT_NO_FATAL_FAILURE(StartWorkers(3));
  StartMonitor();
  ASSERT_TRUE(WaitPaused(120s, true)) << "the member to stop never had a batch open\n" << Diagnostics();
  ASSERT_EQ(::kill(workers_[0]->pid(), SIGSTOP), 0);
  const std::map<int32_t, int64_t> at_stop = Stored(*pg_);
  const size_t conflicts_before = testing::CountOccurrences(workers_[0]->full_output(), kConflict);

  // The others must take its partitions (after the session timeout) and
  // commit past where its open batch started.
  for (int r = 0; r < 3; ++r) ASSERT_NO_FATAL_FAILURE(ProduceRound());
  std::map<int32_t, int64_t> ends = Ends();
  ASSERT_EQ(ends.size(), static_cast<size_t>(kPartitions));
  bool taken_over = WaitCaughtUp(ends, 240s);
  if (!taken_over) ::kill(workers_[0]->pid(), SIGCONT);
  ASSERT_TRUE(taken_over) << "the others never committed the stopped member's partitions (offsets at the stop: "
                          << Describe(at_stop) << ")\n"
                          << Diagnostics();
  EXPECT_TRUE(workers_[0]->running());
  // While stopped, its transaction is still open on the server.
  EXPECT_EQ(pg_->One("select count(*) from pg_stat_activity where application_name = '" + std::string(kPausedApp) +
                     "' and state = 'idle in transaction'"),
            "1")
      << Diagnostics();

  // Wake the zombie: its batch must roll back as a conflict.
  ASSERT_EQ(::kill(workers_[0]->pid(), SIGCONT), 0);
  bool fenced = testing::WaitFor(
      [&] { return testing::CountOccurrences(workers_[0]->full_output(), kConflict) > conflicts_before; }, 120s);
  EXPECT_TRUE(fenced) << "the zombie's stale batch did not end in a conflict\n" << Diagnostics();
  // And its transaction is over (rolled back, not committed: checked below).
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        return pg_->One("select count(*) from pg_stat_activity where application_name = '" + std::string(kPausedApp) +
                        "' and state = 'idle in transaction'") == "0";
      },
      60s))
      << Diagnostics();
  // Nothing of its stale batch was committed: it wrote no row at or past
  // the offsets stored when it was stopped.
  for (const auto& [p, offset] : at_stop) {
    EXPECT_EQ(pg_->One("select count(*) from seen where worker = '" + std::string(kPausedApp) + "' and part = " +
                       std::to_string(p) + " and off >= " + std::to_string(offset)),
              "0")
        << "the zombie's stale batch was committed (partition " << p << ")\n"
        << Diagnostics();
  }

  // The group settles again (the zombie rejoins); more messages, all once.
  for (int r = 0; r < 2; ++r) ASSERT_NO_FATAL_FAILURE(ProduceRound());
  ends = Ends();
  ASSERT_TRUE(WaitCaughtUp(ends, 240s)) << "the stored offsets never reached the log ends\n" << Diagnostics();
  StopWorkers();
  CheckExactlyOnce();
}

}  // namespace
}  // namespace sluice
