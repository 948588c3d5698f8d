// The orders pipeline (pipelines/orders) on PostgreSQL with three workers of
// one consumer group, on the real Kafka broker: the product is done only when
// this pipeline, not just a toy one, keeps exactly once through a worker
// killed in the middle of a batch and a worker paused past its session
// timeout (a zombie) that wakes up with a stale batch.
//
// Events from the repository's generator are published with `sluice produce`
// (key order_id, timestamp event_time) in chunks, some before the workers
// start and the rest while one is killed and another is stopped. A copy of
// pipelines/orders writes into a fresh PostgreSQL database with `assignment =
// group`, small batches and a short session timeout. At the end the curated
// tables must equal the independent reference (tests/orders_reference.h)
// computed from the events as the broker placed them (read back with a plain
// consumer), the committed runs must cover every offset exactly once, the
// stored offsets must be the log ends, and the zombie's stale batch must have
// been rolled back as a conflict, not committed over its partitions' new owner.
//
// To signal a worker while its batch is open, the test's copy of the pipeline
// has a first step that sleeps when the test asked for it (a row in
// pause_requests naming the worker's PGAPPNAME) and the batch has rows; the
// test waits for that session in pg_sleep (pg_stat_activity) and signals. A
// last step records which worker committed which offsets (committed_batches),
// so that a stale batch committed by the zombie would be seen.
#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "kafka_tier.h"
#include "orders_reference.h"  // tests/orders_reference.h
#include "pg_server.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using orders_reference::Event;
using orders_reference::Seeds;
using testing::PgClient;

constexpr int kTopicPartitions = 6;
constexpr int kEvents = 3000;
constexpr int kChunk = 500;  // events per `sluice produce` call
constexpr int kBatch = 100;  // max_messages: many batches, so many chances to pause one
// What the engine logs when it rolls a batch back because the stored offsets moved.
const char* const kConflict = "another process advanced it";

class PostgresOrders : public ::testing::Test {
 protected:
  void SetUp() override {
    kafka_ = testing::RealKafka::Get();
    ASSERT_NE(kafka_, nullptr) << "the real Kafka broker is not running (see the set-up)";
    std::string error;
    url_ = testing::FreshDatabase(&error);
    ASSERT_FALSE(url_.empty()) << "no PostgreSQL database: " << error;
    pg_ = std::make_unique<PgClient>(url_);
    ASSERT_TRUE(pg_->ok()) << pg_->error();
    topic_ = testing::UniqueName("pg-orders");
    ASSERT_TRUE(kafka_->CreateTopic(topic_, kTopicPartitions).ok());
    ASSERT_TRUE(kafka_->WaitForPartitions(topic_, kTopicPartitions));
    ASSERT_NO_FATAL_FAILURE(GenerateChunks());
    ASSERT_NO_FATAL_FAILURE(CopyPipeline());
  }

  // The generator's events, split into files of kChunk lines, published in order
  // (an order's later events never reach the broker before its earlier ones).
  void GenerateChunks() {
    std::string lines;
    ASSERT_EQ(testing::RunShell(orders_reference::GeneratorCommand(kEvents, 23), &lines), 0);
    std::istringstream in(lines);
    std::string chunk, line;
    int count = 0;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      chunk += line + "\n";
      if (++count % kChunk == 0) {
        chunks_.push_back(dir_ / ("chunk" + std::to_string(chunks_.size()) + ".jsonl"));
        testing::WriteFile(chunks_.back(), chunk);
        chunk.clear();
      }
    }
    ASSERT_EQ(count, kEvents);
    ASSERT_TRUE(chunk.empty());
  }

  // A copy of pipelines/orders for a group of workers writing into PostgreSQL,
  // plus the pause step and the record of who committed what.
  void CopyPipeline() {
    pipeline_ = dir_ / "orders";
    fs::copy(std::string(SLUICE_SOURCE_DIR) + "/pipelines/orders", pipeline_, fs::copy_options::recursive);
    std::string conf = testing::ReadFile(pipeline_ + "/pipeline.conf");
    for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
             {"brokers = localhost:9092", "brokers = " + kafka_->bootstrap()},
             {"topic = orders", "topic = " + topic_},
             {"group = sluice-orders", "group = " + topic_ + "-group"},
             {"assignment = all", "assignment = group"},
             {"max_messages = 50000", "max_messages = " + std::to_string(kBatch)},
             {"max_wait = 2s", "max_wait = 300ms"},
             {"database = orders.db", "database = " + url_}}) {
      ASSERT_TRUE(testing::ReplaceFirst(&conf, from, to)) << from << " is not in pipelines/orders/pipeline.conf";
    }
    // A worker that stops heartbeating loses its partitions after the
    // session timeout (the broker's minimum is 6 s).
    conf += "\n[kafka]\nsession.timeout.ms = 6000\nheartbeat.interval.ms = 1000\n";
    testing::WriteFile(pipeline_ + "/pipeline.conf", conf);

    testing::WriteFile(pipeline_ + "/schema.sql",
                       testing::ReadFile(pipeline_ + "/schema.sql") +
                           "\n-- Test instrumentation (tests/kafka/postgres_orders_test.cc).\n"
                           "create table if not exists pause_requests (app text primary key);\n"
                           "create table if not exists committed_batches (app text not null, part bigint not null,\n"
                           "  first_off bigint not null, last_off bigint not null);\n");
    // Sleeps only in the batch of a worker the test named, and only when that
    // batch quarantined nothing: a quarantined message's row, uncommitted,
    // would make the partition's next owner wait for this batch (the same
    // message quarantined again is an upsert of that row), and the stopped
    // worker must hold nothing the others need.
    testing::WriteFile(pipeline_ + "/steps/05_pause.sql",
                       "select pg_sleep(2) from (select 1 from batch limit 1) b\n"
                       "where exists (select 1 from pause_requests where app = current_setting('application_name'))\n"
                       "  and not exists (select 1 from _sluice_quarantine q\n"
                       "                  where q.xmin::text::bigint = txid_current() % 4294967296);\n");
    testing::WriteFile(pipeline_ + "/steps/90_committed_by.sql",
                       "insert into committed_batches (app, part, first_off, last_off)\n"
                       "select current_setting('application_name'), _kafka_partition, min(_kafka_offset), "
                       "max(_kafka_offset)\nfrom batch group by _kafka_partition;\n");
  }

  void Publish() {
    ASSERT_LT(published_, chunks_.size());
    std::string output;
    ASSERT_EQ(testing::RunSluice({"produce", "--brokers", kafka_->bootstrap(), "--topic", topic_, "--key-field",
                                  "order_id", "--timestamp-field", "event_time", chunks_[published_]},
                                 &output),
              0)
        << output;
    ++published_;
  }

  void StartWorker(const std::string& app) {
    workers_.push_back(std::make_unique<testing::Child>(std::vector<std::string>{"run", pipeline_, "--every", "1s"},
                                                         dir_ / (app + ".log"),
                                                         std::vector<std::string>{"PGAPPNAME=" + app}));
    apps_.push_back(app);
    ASSERT_GT(workers_.back()->pid(), 0);
  }

  // Stored next offset per partition; empty while the tables do not exist yet.
  std::map<int32_t, int64_t> Stored() {
    std::map<int32_t, int64_t> stored;
    auto rows = pg_->Rows("select \"partition\", next_offset from _sluice_offsets where topic = '" + topic_ + "'");
    if (!rows) return stored;
    for (const std::string& row : *rows) {
      size_t bar = row.find('|');
      stored[std::stoi(row.substr(0, bar))] = std::stoll(row.substr(bar + 1));
    }
    return stored;
  }

  // The log end of every partition (`sluice produce` writes no transactions).
  std::map<int32_t, int64_t> Ends() {
    std::map<int32_t, int64_t> ends;
    for (const auto& [p, marks] : kafka_->Watermarks(topic_, kTopicPartitions)) ends[p] = marks.second;
    return ends;
  }

  static std::string Describe(const std::map<int32_t, int64_t>& offsets) {
    std::string text;
    for (const auto& [p, offset] : offsets) text += (text.empty() ? "" : " ") + std::to_string(p) + ":" + std::to_string(offset);
    return text.empty() ? "(none)" : text;
  }

  std::string SleepingSessions(const std::string& app) {
    return pg_->One("select count(*) from pg_stat_activity where application_name = '" + app +
                    "' and wait_event = 'PgSleep'");
  }

  // Asks worker `index` to pause its next clean batch and waits until it
  // sleeps in it, publishing another chunk whenever it has had nothing to read
  // for a while (its partitions may be drained). False if it never did.
  bool PauseInBatch(size_t index, std::chrono::seconds timeout) {
    if (!pg_->Exec("insert into pause_requests values ('" + apps_[index] + "') on conflict do nothing")) return false;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline && workers_[index]->running()) {
      if (testing::WaitFor([&] { return SleepingSessions(apps_[index]) == "1"; }, 5s)) return true;
      if (published_ < chunks_.size()) Publish();
    }
    return false;
  }

  void StopPausing() { EXPECT_TRUE(pg_->Exec("delete from pause_requests")) << pg_->error(); }

  std::string Diagnostics() {
    std::string text = "stored offsets: " + Describe(Stored()) + "\nlog ends:       " + Describe(Ends()) +
                       "\nchunks published: " + std::to_string(published_) + "/" + std::to_string(chunks_.size()) + "\n";
    auto dump = [&](const std::string& title, const std::string& sql) {
      text += title + ":\n";
      auto rows = pg_->Rows(sql);
      if (!rows) text += "  ERROR " + pg_->error() + "\n";
      else for (const std::string& row : *rows) text += "  " + row + "\n";
    };
    dump("failed runs (latest 10)", "select run_id, left(coalesce(error, ''), 300) from _sluice_runs "
                                    "where status <> 'ok' order by run_id desc limit 10");
    dump("sessions", "select application_name, state, wait_event, left(query, 60) from pg_stat_activity "
                     "where datname = current_database()");
    for (size_t i = 0; i < workers_.size(); ++i) {
      text += "--- " + apps_[i] + " (exit " +
              (workers_[i]->exit_code() ? std::to_string(*workers_[i]->exit_code()) : std::string("-")) + ")\n" +
              workers_[i]->output(2000) + "\n";
    }
    return text;
  }

  // Every message of the topic, as the broker placed it, read with a plain consumer.
  std::vector<Event> ReadBack() {
    return orders_reference::EventsFromRecords(testing::ReadAll(kafka_->bootstrap(), topic_, kTopicPartitions));
  }

  // orders_curated and revenue_hourly against the reference. Rows are
  // compared as text: every column exactly, amounts and revenue to the cent.
  void ExpectCuratedTablesMatchTheReference(const std::vector<Event>& events, const std::string& diagnostics) {
    using orders_reference::ExpectedColumns;
    using orders_reference::Fixed2;
    using orders_reference::Round2;
    using orders_reference::Split;
    const Seeds seeds = orders_reference::LoadSeeds(std::string(SLUICE_SOURCE_DIR) + "/pipelines/orders");
    auto join = [](const std::vector<std::string>& cells) {
      std::string row;
      for (const std::string& cell : cells) row += (row.empty() ? "" : "|") + cell;
      return row;
    };
    std::vector<std::string> expected_curated;
    std::map<std::string, std::pair<int64_t, double>> revenue;  // hour|region|category|currency
    for (const auto& [id, version] : orders_reference::NewestVersions(events)) {
      const Event* kept = version.first;
      const std::string& status = version.second;
      std::vector<std::string> columns = ExpectedColumns(*kept, seeds);
      if (status != "cancelled" && columns[9] != "NULL") {
        auto& cell = revenue[columns[9] + "|" + columns[3] + "|" + columns[6] + "|" +
                             (columns[7] == "NULL" ? "unknown" : columns[7])];
        cell.first += 1;
        cell.second += kept->amount.value_or(0);
      }
      columns.push_back(kept->amount ? Fixed2(*kept->amount) : "NULL");
      columns.push_back(status);
      expected_curated.push_back(join(columns));
    }
    std::vector<std::string> expected_revenue;
    for (const auto& [key, cell] : revenue) {
      expected_revenue.push_back(key + "|" + std::to_string(cell.first) + "|" + Fixed2(Round2(cell.second)));
    }
    EXPECT_GT(expected_curated.size(), 500u);
    EXPECT_GT(expected_revenue.size(), 20u);

    auto curated = pg_->Rows(std::string("select ") + orders_reference::kCuratedColumns + " from orders_curated");
    ASSERT_TRUE(curated) << pg_->error();
    std::vector<std::string> actual_curated;
    for (const std::string& row : *curated) {
      std::vector<std::string> cells = Split(row);
      ASSERT_EQ(cells.size(), 15u) << row;
      if (cells[13] != "NULL") cells[13] = Fixed2(std::strtod(cells[13].c_str(), nullptr));
      actual_curated.push_back(join(cells));
    }
    EXPECT_EQ(testing::DiffRows(std::string("orders_curated (") + orders_reference::kCuratedColumns + ")",
                                expected_curated, actual_curated),
              "")
        << diagnostics;

    auto hourly = pg_->Rows("select hour, region, category, currency, orders, revenue from revenue_hourly");
    ASSERT_TRUE(hourly) << pg_->error();
    std::vector<std::string> actual_revenue;
    for (const std::string& row : *hourly) {
      std::vector<std::string> cells = Split(row);
      ASSERT_EQ(cells.size(), 6u) << row;
      cells[5] = Fixed2(std::strtod(cells[5].c_str(), nullptr));
      actual_revenue.push_back(join(cells));
    }
    EXPECT_EQ(testing::DiffRows("revenue_hourly (hour|region|category|currency|orders|revenue)", expected_revenue,
                                actual_revenue),
              "")
        << diagnostics;
  }

  // The offset ranges of the committed (ok) runs, per partition, must tile
  // [0, end) with no overlap and no gap.
  void ExpectCommittedRunsCoverEveryOffsetOnce(const std::map<int32_t, int64_t>& ends, const std::string& diagnostics) {
    auto runs = pg_->Rows("select run_id, offsets from _sluice_runs where status = 'ok' and messages > 0");
    ASSERT_TRUE(runs) << pg_->error();
    std::map<int32_t, std::vector<std::tuple<int64_t, int64_t, std::string>>> ranges;  // first, last, run
    for (const std::string& row : *runs) {
      const size_t bar = row.find('|');
      rapidjson::Document doc;
      doc.Parse(row.c_str() + bar + 1);
      ASSERT_TRUE(!doc.HasParseError() && doc.IsArray()) << row;
      for (const auto& range : doc.GetArray()) {
        if (std::string(range["topic"].GetString()) != topic_) continue;
        const int64_t first = range["first"].GetInt64(), last = range["last"].GetInt64();
        EXPECT_EQ(range["count"].GetInt64(), last - first + 1) << row;
        ranges[range["partition"].GetInt()].emplace_back(first, last, row.substr(0, bar));
      }
    }
    std::vector<std::string> problems;
    for (const auto& [p, end] : ends) {
      auto& list = ranges[p];
      std::sort(list.begin(), list.end());
      int64_t next = 0;
      for (const auto& [first, last, run] : list) {
        if (first != next) {
          problems.push_back("partition " + std::to_string(p) + ": run " + run + " starts at " + std::to_string(first) +
                             " where " + std::to_string(next) + " was expected (" +
                             (first < next ? "read twice" : "a gap") + ")");
        }
        next = std::max(next, last + 1);
      }
      if (next != end) {
        problems.push_back("partition " + std::to_string(p) + ": the runs end at " + std::to_string(next) +
                           ", the log at " + std::to_string(end));
      }
    }
    EXPECT_TRUE(problems.empty()) << ::testing::PrintToString(problems) << "\n" << diagnostics;
  }

  testing::RealKafka* kafka_ = nullptr;
  std::string url_, topic_, pipeline_;
  testing::TempDir dir_;
  std::unique_ptr<PgClient> pg_;
  std::vector<std::string> chunks_;  // files of kChunk events, in generation order
  size_t published_ = 0;
  std::vector<std::unique_ptr<testing::Child>> workers_;  // ~Child kills what an early ASSERT left running
  std::vector<std::string> apps_;                         // each worker's PGAPPNAME
};

TEST_F(PostgresOrders, ThreeWorkersOneKilledAndOneFencedMatchTheReference) {
  const auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < 2; ++i) {
    ASSERT_NO_FATAL_FAILURE(Publish());
  }
  for (const char* app : {"orders-zombie", "orders-killed", "orders-worker"}) {
    ASSERT_NO_FATAL_FAILURE(StartWorker(app));
  }
  const size_t zombie = 0, killed = 1;
  ASSERT_TRUE(testing::WaitFor(
      [&] { return pg_->One("select count(*) >= 4 from _sluice_runs where status = 'ok' and messages > 0") == "t"; },
      60s))
      << "the group did not get going\n" << Diagnostics();

  // 1. A worker killed with its batch open; its session, and with it the
  // batch, dies; it is started again under another name (no more pauses).
  ASSERT_TRUE(PauseInBatch(killed, 40s)) << "the worker to kill never had a batch open\n" << Diagnostics();
  EXPECT_EQ(workers_[killed]->KillNow(), 128 + SIGKILL);
  StopPausing();
  EXPECT_TRUE(testing::WaitFor(
      [&] { return pg_->One("select count(*) from pg_stat_activity where application_name = 'orders-killed'") == "0"; },
      30s))
      << Diagnostics();
  ASSERT_NO_FATAL_FAILURE(StartWorker("orders-restarted"));
  if (published_ < 3) {
    ASSERT_NO_FATAL_FAILURE(Publish());
  }

  // 2. A worker stopped with its batch open, past its session timeout. The
  // others must take its partitions and commit past where its batch started
  // while it sleeps; the rest of the events arrive meanwhile.
  ASSERT_TRUE(PauseInBatch(zombie, 40s)) << "the worker to stop never had a clean batch open\n" << Diagnostics();
  ASSERT_EQ(::kill(workers_[zombie]->pid(), SIGSTOP), 0);
  StopPausing();
  const std::map<int32_t, int64_t> at_stop = Stored();
  const size_t published_at_stop = published_;
  const size_t conflicts_before = testing::CountOccurrences(workers_[zombie]->full_output(), kConflict);
  while (published_ < chunks_.size()) {
    ASSERT_NO_FATAL_FAILURE(Publish());
  }
  const std::map<int32_t, int64_t> ends = Ends();
  ASSERT_EQ(ends.size(), static_cast<size_t>(kTopicPartitions));
  const bool taken_over = testing::WaitFor([&] { return Stored() == ends; }, 90s);
  if (!taken_over) ::kill(workers_[zombie]->pid(), SIGCONT);
  ASSERT_TRUE(taken_over) << "the others never committed the stopped worker's partitions (offsets at the stop: "
                          << Describe(at_stop) << ")\n" << Diagnostics();
  EXPECT_EQ(pg_->One("select count(*) from pg_stat_activity where application_name = 'orders-zombie' "
                     "and state = 'idle in transaction'"),
            "1")
      << "the stopped worker's batch should still be open\n" << Diagnostics();

  // 3. Woken up, the zombie finishes its stale batch: the compare-and-set of
  // the stored offsets must roll it back.
  ASSERT_EQ(::kill(workers_[zombie]->pid(), SIGCONT), 0);
  EXPECT_TRUE(testing::WaitFor(
      [&] { return testing::CountOccurrences(workers_[zombie]->full_output(), kConflict) > conflicts_before; }, 60s))
      << "the zombie's stale batch did not end in a conflict\n" << Diagnostics();
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        return pg_->One("select count(*) from pg_stat_activity where application_name = 'orders-zombie' "
                        "and state = 'idle in transaction'") == "0";
      },
      30s))
      << Diagnostics();
  // The group settles again with the zombie back in it; nothing is left to read.
  EXPECT_TRUE(testing::WaitFor([&] { return Stored() == ends; }, 30s)) << Diagnostics();
  for (size_t i = 0; i < workers_.size(); ++i) {
    if (i == killed) continue;
    EXPECT_EQ(workers_[i]->Stop(SIGTERM, 60s), std::optional<int>(0)) << apps_[i] << ":\n" << workers_[i]->output();
  }
  std::cout << "[ postgres orders ] chunks published before the stop " << published_at_stop << "/" << chunks_.size()
            << "; offsets at the stop " << Describe(at_stop) << "; ends " << Describe(ends) << "; "
            << std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started).count()
            << " s" << std::endl;

  // 4. The checks, on what the broker holds and what the database committed.
  const std::string diagnostics = Diagnostics();
  std::vector<Event> events = ReadBack();
  ASSERT_EQ(events.size(), static_cast<size_t>(kEvents)) << "the topic does not hold what was published";
  EXPECT_EQ(Describe(Stored()), Describe(ends)) << diagnostics;
  ExpectCommittedRunsCoverEveryOffsetOnce(ends, diagnostics);
  ExpectCuratedTablesMatchTheReference(events, diagnostics);
  size_t quarantined = 0;
  for (const Event& e : events) quarantined += e.staged ? 0 : 1;
  EXPECT_GT(quarantined, 0u);
  EXPECT_EQ(pg_->One("select count(*) from _sluice_quarantine"), std::to_string(quarantined)) << diagnostics;
  // Nothing after the stop was committed by the zombie: its stale batch began
  // at the offsets stored then, and nothing arrived once the others caught up.
  for (const auto& [p, offset] : at_stop) {
    EXPECT_EQ(pg_->One("select count(*) from committed_batches where app = 'orders-zombie' and part = " +
                       std::to_string(p) + " and last_off >= " + std::to_string(offset)),
              "0")
        << "the zombie committed a stale batch on partition " << p << "\n" << diagnostics;
  }
}

}  // namespace
}  // namespace sluice
