// End to end: the example pipeline (pipelines/orders) over the repository's own
// event generator. 6000 generated events are produced to an embedded broker
// (keyed by order_id, timestamped with event_time), the pipeline runs
// in-process in batches of 1000, and orders_curated, revenue_hourly, the
// quarantine and the run log are compared with a reference computed here in
// C++ from the generated lines, without the pipeline's SQL.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>

#include "orders_reference.h"
#include "test_support.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;
using testing::Query;
using testing::QueryOne;
using testing::TempDir;

using namespace orders_reference;  // the independent reference (tests/orders_reference.h)
constexpr int kCount = 6000;
constexpr size_t kBatch = 1000;

struct Expected {
  const Event* kept = nullptr;  // the newest staged version: greatest (timestamp, offset)
  std::vector<const Event*> versions;  // every staged version, in (timestamp, offset) order
};

// What one batch boundary recorded in _sluice_runs.offsets says was consumed.
struct Range {
  int32_t partition;
  int64_t first, last, count;
};

// The suite's shared state: generated, produced and run once.
struct World {
  std::unique_ptr<EmbeddedBroker> broker;
  std::unique_ptr<TempDir> dir;
  std::string pipeline_dir;
  std::string db;
  std::vector<Event> events;
  std::map<int32_t, std::vector<const Event*>> by_partition;  // index = offset
  std::map<std::string, Expected> orders;
  Seeds seeds;
  size_t staged = 0, quarantined = 0;
  Status first_run;
  bool ready = false;  // set-up went through
};

World* world = nullptr;

class OrdersPipelineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    world = new World();
    World& w = *world;

    // 1. The repository's generator; partitions and offsets decided here.
    const std::string command = GeneratorCommand(kCount, 7);
    std::string output;
    ASSERT_EQ(testing::RunShell(command, &output), 0) << command;
    w.events = EventsFromGenerator(output);
    ASSERT_EQ(w.events.size(), static_cast<size_t>(kCount));

    for (const Event& e : w.events) {
      w.by_partition[e.partition].push_back(&e);
      if (!e.staged) {
        ++w.quarantined;
        continue;
      }
      ++w.staged;
      ASSERT_GT(e.timestamp, 0) << "a staged event without a readable event_time: " << e.value;
      ASSERT_TRUE(e.order_id.has_value()) << e.value;
      w.orders[*e.order_id].versions.push_back(&e);
    }
    for (auto& [id, order] : w.orders) {
      std::stable_sort(order.versions.begin(), order.versions.end(),
                       [](const Event* a, const Event* b) { return a->Version() < b->Version(); });
      order.kept = order.versions.back();
    }
    w.seeds = LoadSeeds(std::string(SLUICE_SOURCE_DIR) + "/pipelines/orders");
    ASSERT_EQ(w.seeds.customers.size(), 50u);
    ASSERT_EQ(w.seeds.products.size(), 20u);

    // 2. Produce: key = order_id, timestamp = event_time, partition = FNV(key) % 4.
    w.broker = testing::StartBroker("orders", kPartitions);
    ASSERT_NE(w.broker, nullptr);
    Status produced = ProduceMessages(w.broker->bootstrap(), "orders", MessagesFor(w.events));
    ASSERT_TRUE(produced.ok()) << produced.message();

    // 3. A copy of pipelines/orders, run until caught up in batches of 1000.
    w.dir = std::make_unique<TempDir>();
    w.pipeline_dir = *w.dir / "orders";
    fs::copy(std::string(SLUICE_SOURCE_DIR) + "/pipelines/orders", w.pipeline_dir, fs::copy_options::recursive);
    for (const char* stale : {"orders.db", "orders.db-wal", "orders.db-shm", "orders.db-sluice.lock"}) {
      fs::remove(w.pipeline_dir + "/" + stale);
    }
    w.db = w.pipeline_dir + "/orders.db";
    ConfigOverrides overrides;
    overrides.brokers = w.broker->bootstrap();
    overrides.max_messages = kBatch;
    w.first_run = testing::RunPipeline(w.pipeline_dir, RunMode::kUntilCaughtUp, overrides);
    w.ready = true;
  }

  static void TearDownTestSuite() {
    delete world;
    world = nullptr;
  }

  void SetUp() override {
    ASSERT_TRUE(world != nullptr && world->ready) << "the suite's set-up failed";
    ASSERT_TRUE(world->first_run.ok()) << world->first_run.message();
  }

  static Status RunAgain(RunMode mode) {
    ConfigOverrides overrides;
    overrides.brokers = world->broker->bootstrap();
    overrides.max_messages = kBatch;
    return testing::RunPipeline(world->pipeline_dir, mode, overrides);
  }

  // The batches of every ok run, in run order, from _sluice_runs.offsets.
  static std::vector<std::vector<Range>> OkBatches() {
    std::vector<std::vector<Range>> batches;
    for (const std::string& json : Query(world->db, "select offsets from _sluice_runs where status = 'ok' order by run_id")) {
      rapidjson::Document doc;
      doc.Parse(json.c_str());
      EXPECT_TRUE(!doc.HasParseError() && doc.IsArray()) << json;
      std::vector<Range> batch;
      if (doc.HasParseError() || !doc.IsArray()) return batches;
      for (const auto& range : doc.GetArray()) {
        EXPECT_STREQ(range["topic"].GetString(), "orders");
        batch.push_back({range["partition"].GetInt(), range["first"].GetInt64(), range["last"].GetInt64(),
                         range["count"].GetInt64()});
      }
      batches.push_back(batch);
    }
    return batches;
  }
};

// orders_curated as the pipeline defines it, independent of batches: per
// order, the newest staged version (by timestamp, partition, offset), with the
// status of the newest staged event that had one ('unknown' if none did).
// Returns order_id -> (kept event, status). The batches are accepted for the
// caller's convenience and deliberately not used: where batch boundaries
// fall must not change the result.
std::map<std::string, std::pair<const Event*, std::string>> ReplayBatches(const std::vector<std::vector<Range>>& batches) {
  (void)batches;
  return NewestVersions(world->events);
}

TEST_F(OrdersPipelineTest, CuratedTablesMatchAnIndependentReference) {
  const World& w = *world;
  // Sanity of the generated data: it exercises what the pipeline is for.
  size_t late = 0, without_status = 0, updated = 0, unknown_customer_or_product = 0;
  for (const auto& [id, order] : w.orders) {
    if (order.versions.size() > 1) ++updated;
    if (order.kept->status == "unknown") ++without_status;
    std::vector<std::string> columns = ExpectedColumns(*order.kept, w.seeds);
    if (columns[3] == "unknown" || columns[6] == "unknown") ++unknown_customer_or_product;
    for (const Event* e : order.versions) {
      if (e->offset < order.kept->offset) continue;
      if (e != order.kept) ++late;  // produced after the kept version, yet older
    }
  }
  EXPECT_GT(w.quarantined, 10u);
  EXPECT_GT(updated, 500u);
  EXPECT_GT(late, 20u);
  EXPECT_GT(without_status, 10u);
  EXPECT_GT(unknown_customer_or_product, 10u);

  // The run log: several ok batches, nothing failed, every message exactly once.
  EXPECT_EQ(QueryOne(w.db, "select count(*) from _sluice_runs where status <> 'ok'"), "0");
  std::vector<std::vector<Range>> batches = OkBatches();
  size_t non_empty = 0;
  std::map<int32_t, int64_t> next;  // per partition, the next offset a batch must start at
  for (const auto& batch : batches) {
    if (!batch.empty()) ++non_empty;
    for (const Range& range : batch) {
      EXPECT_EQ(range.first, next[range.partition]) << "partition " << range.partition << ": a gap or a repeat";
      EXPECT_EQ(range.count, range.last - range.first + 1) << "partition " << range.partition;
      next[range.partition] = range.last + 1;
    }
  }
  EXPECT_GE(non_empty, static_cast<size_t>(kCount) / kBatch);
  for (const auto& [partition, events] : w.by_partition) {
    EXPECT_EQ(next[partition], static_cast<int64_t>(events.size())) << "partition " << partition;
    EXPECT_EQ(QueryOne(w.db, "select next_offset from _sluice_offsets where topic = 'orders' and \"partition\" = " +
                                 std::to_string(partition)),
              std::to_string(events.size()));
  }
  EXPECT_EQ(QueryOne(w.db, "select sum(messages) || ' ' || sum(staged) || ' ' || sum(quarantined) "
                           "from _sluice_runs where status = 'ok'"),
            std::to_string(kCount) + " " + std::to_string(w.staged) + " " + std::to_string(w.quarantined));
  EXPECT_EQ(QueryOne(w.db, "select sum(staged + quarantined) from _sluice_runs where status = 'ok'"), std::to_string(kCount));
  EXPECT_EQ(QueryOne(w.db, "select max(messages) from _sluice_runs where status = 'ok'"), std::to_string(kBatch));

  // The quarantine: exactly the messages the reference rejects.
  EXPECT_EQ(QueryOne(w.db, "select count(*) from _sluice_quarantine"), std::to_string(w.quarantined));
  std::set<std::pair<int32_t, int64_t>> expected_quarantine, actual_quarantine;
  for (const Event& e : w.events) {
    if (!e.staged) expected_quarantine.insert({e.partition, e.offset});
  }
  for (const std::string& row : Query(w.db, "select \"partition\", \"offset\" from _sluice_quarantine")) {
    std::vector<std::string> cells = Split(row);
    actual_quarantine.insert({std::stoi(cells[0]), std::stoll(cells[1])});
  }
  EXPECT_EQ(actual_quarantine, expected_quarantine);

  // orders_curated: one row per order, every column but status exact.
  EXPECT_EQ(QueryOne(w.db, "select count(*) from orders_curated"), std::to_string(w.orders.size()));
  std::map<std::string, std::pair<const Event*, std::string>> replayed = ReplayBatches(batches);
  EXPECT_EQ(replayed.size(), w.orders.size());
  std::map<std::string, std::vector<std::string>> actual;
  ASSERT_NO_FATAL_FAILURE(
      ParseCurated(Query(w.db, std::string("select ") + kCuratedColumns + " from orders_curated"), &actual));
  int mismatches = 0;
  for (const auto& [id, order] : w.orders) {
    auto found = actual.find(id);
    if (found == actual.end()) {
      ADD_FAILURE() << "order " << id << " is missing from orders_curated";
      if (++mismatches > 20) break;
      continue;
    }
    const std::vector<std::string>& row = found->second;
    std::vector<std::string> expected = ExpectedColumns(*order.kept, w.seeds);
    std::vector<std::string> got(row.begin(), row.begin() + 13);
    std::string expected_amount = order.kept->amount ? Fixed2(*order.kept->amount) : "NULL";
    std::string got_amount = row[13] == "NULL" ? "NULL" : Fixed2(std::strtod(row[13].c_str(), nullptr));
    const std::string& status = row[14];

    // Status, robustly: the kept version's own status when it has one; else a
    // status the order had in an older version, or 'unknown'.
    bool status_ok = status == order.kept->status;
    if (!status_ok && order.kept->status == "unknown") {
      for (const Event* e : order.versions) {
        if (e->Version() < order.kept->Version() && e->status == status) status_ok = true;
      }
    }
    // And exactly, given the batch boundaries the run log recorded.
    auto replay = replayed.find(id);
    std::string replayed_status = replay == replayed.end() ? "<absent>" : replay->second.second;
    bool same_kept = replay != replayed.end() && replay->second.first == order.kept;

    if (got != expected || got_amount != expected_amount || !status_ok || status != replayed_status || !same_kept) {
      std::string history;
      for (const Event* e : order.versions) {
        history += "\n    p" + std::to_string(e->partition) + "@" + std::to_string(e->offset) + " ts " +
                   std::to_string(e->timestamp) + " status " + e->status + ": " + e->value;
      }
      ADD_FAILURE() << "order " << id << "\n  expected: " << ::testing::PrintToString(expected) << " amount "
                    << expected_amount << " status " << order.kept->status << " (replayed: " << replayed_status
                    << ", same kept version: " << same_kept << ")\n  actual:   " << ::testing::PrintToString(got)
                    << " amount " << got_amount << " status " << status << "\n  versions:" << history;
      if (++mismatches > 20) break;
    }
  }
  EXPECT_EQ(mismatches, 0);

  // revenue_hourly: non-cancelled orders by hour of their latest event,
  // region, category and currency, from the reference rows.
  const Revenue expected_revenue = ExpectedRevenue(replayed, w.seeds);
  Revenue actual_revenue;
  ASSERT_NO_FATAL_FAILURE(ParseRevenue(
      Query(w.db, "select hour, region, category, currency, orders, revenue from revenue_hourly"), &actual_revenue));
  EXPECT_GT(expected_revenue.size(), 100u);
  ExpectRevenueMatches(expected_revenue, actual_revenue);
}

TEST_F(OrdersPipelineTest, RunningAgainWithNothingNewChangesNothing) {
  const World& w = *world;
  auto snapshot = [&]() {
    std::vector<std::string> all;
    for (const char* sql : {"select * from orders_curated order by order_id",
                            "select * from revenue_hourly order by hour, region, category, currency",
                            "select * from _sluice_quarantine order by \"partition\", \"offset\"",
                            "select topic, \"partition\", next_offset from _sluice_offsets order by 1, 2",
                            "select count(*), sum(messages), sum(staged), sum(quarantined) from _sluice_runs "
                            "where status = 'ok'"}) {
      std::vector<std::string> rows = Query(w.db, sql);
      all.push_back(std::string("-- ") + sql);
      all.insert(all.end(), rows.begin(), rows.end());
    }
    return all;
  };
  std::vector<std::string> before = snapshot();
  std::string runs_before = QueryOne(w.db, "select count(*) from _sluice_runs");

  // Until caught up: already there, so no batch at all.
  Status st = RunAgain(RunMode::kUntilCaughtUp);
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(QueryOne(w.db, "select count(*) from _sluice_runs"), runs_before);
  EXPECT_EQ(snapshot(), before);

  // One forced batch: empty, and the steps over an empty batch change nothing.
  st = RunAgain(RunMode::kOnce);
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(QueryOne(w.db, "select count(*) || ' ' || max(messages) from _sluice_runs where run_id > " + runs_before),
            "1 0");
  std::vector<std::string> after = snapshot();
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i + 1 < before.size(); ++i) EXPECT_EQ(after[i], before[i]);
  // The run count grew by the empty run; the sums of messages did not.
  std::vector<std::string> totals = Split(before.back());
  EXPECT_EQ(after.back(), std::to_string(std::stoll(totals[0]) + 1) + "|" + totals[1] + "|" + totals[2] + "|" + totals[3]);
  EXPECT_EQ(QueryOne(w.db, "select sum(messages) from _sluice_runs where status = 'ok'"), std::to_string(kCount));
}

}  // namespace
}  // namespace sluice
