// Scenario 1: the example pipeline (pipelines/orders) end to end against a real
// Kafka broker, under the crash harness. Events from the repository's
// generator are published with `sluice produce` (key order_id, timestamp
// event_time), read back with a plain librdkafka consumer to learn where the
// broker put each one, and processed by `sluice run --until-caught-up` in
// batches of 250 (3 between random kills) while the process is killed (SIGKILL) over and over: at each
// named crash point (SLUICE_CRASH_AT, including between the SQLite commit and
// the Kafka commit) and at random moments. After every kill the database is
// consistent; at the end the curated tables equal a reference computed here
// without the pipeline's SQL, every offset was read exactly once, and the lag
// is 0 against the broker's watermarks.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <random>
#include <set>
#include <thread>

#include "kafka_tier.h"
#include "orders_reference.h"  // tests/orders_reference.h

namespace sluice {
namespace {

namespace fs = std::filesystem;
using namespace orders_reference;
using testing::Query;
using testing::QueryOne;
using testing::RealKafka;
using testing::TempDir;

constexpr int kCount = 3000;
constexpr int kBatch = 250;

// Checks what must hold after any kill: the database opens, passes
// integrity_check, and the ok runs account for exactly the stored offsets.
void CheckConsistent(const std::string& db, const std::string& topic, const std::string& when) {
  if (!fs::exists(db)) return;
  EXPECT_EQ(QueryOne(db, "pragma integrity_check"), "ok") << when;
  std::string stored = QueryOne(db, "select coalesce(sum(next_offset), 0) from _sluice_offsets where topic = '" + topic + "'");
  std::string consumed = QueryOne(db, "select coalesce(sum(messages), 0) from _sluice_runs where status = 'ok'");
  EXPECT_EQ(stored, consumed) << when << ": the stored offsets and the ok runs disagree";
  EXPECT_EQ(QueryOne(db, "select count(*) from _sluice_quarantine"),
            QueryOne(db, "select coalesce(sum(quarantined), 0) from _sluice_runs where status = 'ok'"))
      << when;
}

TEST(KafkaOrders, EndToEndUnderTwentyFourKillsMatchesTheReference) {
  REQUIRE_KAFKA();
  const std::string topic = testing::UniqueName("orders");
  ASSERT_TRUE(kafka->CreateTopic(topic, kPartitions).ok());
  TempDir dir;

  // 1. Generate and publish with the real CLI.
  std::string lines;
  ASSERT_EQ(testing::RunShell(GeneratorCommand(kCount, 11) + " > " + dir / "orders.jsonl", nullptr), 0);
  std::string output;
  ASSERT_EQ(testing::RunSluice({"produce", "--brokers", kafka->bootstrap(), "--topic", topic, "--key-field", "order_id",
                                "--timestamp-field", "event_time", dir / "orders.jsonl"},
                               &output),
            0)
      << output;

  // 2. Where the broker put each message: the reference's input.
  std::vector<Event> events = EventsFromRecords(testing::ReadAll(kafka->bootstrap(), topic, kPartitions));
  ASSERT_EQ(events.size(), static_cast<size_t>(kCount));
  {
    std::multiset<std::string> produced, generated;
    for (const Event& e : events) produced.insert(e.value);
    std::istringstream in(testing::ReadFile(dir / "orders.jsonl"));
    for (std::string line; std::getline(in, line);) if (!line.empty()) generated.insert(line);
    ASSERT_TRUE(produced == generated) << "the broker does not hold exactly the generated lines";
  }
  std::map<int32_t, int64_t> per_partition;
  for (const Event& e : events) ++per_partition[e.partition];
  const Seeds seeds = LoadSeeds(std::string(SLUICE_SOURCE_DIR) + "/pipelines/orders");

  // 3. A copy of the pipeline, on this topic.
  const std::string pipeline = dir / "orders";
  fs::copy(std::string(SLUICE_SOURCE_DIR) + "/pipelines/orders", pipeline, fs::copy_options::recursive);
  for (const char* stale : {"orders.db", "orders.db-wal", "orders.db-shm", "orders.db-sluice.lock"}) {
    fs::remove(pipeline + "/" + stale);
  }
  std::string conf = testing::ReadFile(pipeline + "/pipeline.conf");
  ASSERT_TRUE(testing::ReplaceFirst(&conf, "topic = orders", "topic = " + topic));
  ASSERT_TRUE(testing::ReplaceFirst(&conf, "max_wait = 2s", "max_wait = 500ms"));
  testing::WriteFile(pipeline + "/pipeline.conf", conf);
  const std::string db = pipeline + "/orders.db";
  const std::vector<std::string> run = {"run", pipeline, "--brokers", kafka->bootstrap(), "--until-caught-up",
                                        "--max-messages", std::to_string(kBatch), "-q"};

  // 4. Kills: every crash point three times (18), then at random moments (until 24).
  const std::vector<std::string> points = {"after_fetch", "after_seeds", "after_stage", "before_sqlite_commit",
                                           "after_sqlite_commit", "after_kafka_commit"};
  int kills = 0;
  for (int round = 0; round < 3; ++round) {
    for (const std::string& point : points) {
      int code = testing::RunSluice(run, &output, {"SLUICE_CRASH_AT=" + point});
      EXPECT_EQ(code, 128 + SIGKILL) << point << ": " << output;
      if (code == 128 + SIGKILL) ++kills;
      CheckConsistent(db, topic, "after a kill at " + point);
    }
  }
  unsigned seed = static_cast<unsigned>(std::chrono::system_clock::now().time_since_epoch().count());
  std::cout << "[ kafka orders ] random kill seed " << seed << std::endl;
  std::mt19937 random(seed);
  // Tiny batches here, so that a run lasts long enough to be killed mid-way.
  std::vector<std::string> small_batches = run;
  small_batches[6] = "3";
  for (int i = 0; i < 40 && kills < 24; ++i) {
    testing::Child sluice(small_batches, dir / "run.log");
    std::this_thread::sleep_for(std::chrono::milliseconds(50 + random() % 600));
    std::optional<int> code = sluice.Stop(SIGKILL, std::chrono::seconds(10));
    ASSERT_TRUE(code.has_value());
    if (*code == 128 + SIGKILL) ++kills;
    else EXPECT_EQ(*code, 0) << sluice.output();
    CheckConsistent(db, topic, "after a random kill");
  }
  std::cout << "[ kafka orders ] " << kills << " kills" << std::endl;
  EXPECT_GE(kills, 20);

  // 5. The last run catches up.
  ASSERT_EQ(testing::RunSluice(run, &output), 0) << output;
  CheckConsistent(db, topic, "at the end");

  // Every offset exactly once, in order, per partition (from the run log).
  std::map<int32_t, int64_t> next;
  for (const std::string& json : Query(db, "select offsets from _sluice_runs where status = 'ok' order by run_id")) {
    rapidjson::Document doc;
    doc.Parse(json.c_str());
    ASSERT_TRUE(!doc.HasParseError() && doc.IsArray()) << json;
    for (const auto& range : doc.GetArray()) {
      int32_t p = range["partition"].GetInt();
      EXPECT_EQ(range["first"].GetInt64(), next[p]) << "partition " << p << ": a gap or a repeat";
      EXPECT_EQ(range["count"].GetInt64(), range["last"].GetInt64() - range["first"].GetInt64() + 1);
      next[p] = range["last"].GetInt64() + 1;
    }
  }
  auto marks = kafka->Watermarks(topic, kPartitions);
  for (const auto& [p, count] : per_partition) {
    EXPECT_EQ(next[p], count) << "partition " << p;
    EXPECT_EQ(marks[p].second, count) << "partition " << p;
    EXPECT_EQ(testing::StoredOffset(db, topic, p), std::to_string(count));
  }

  // The quarantine: exactly what the reference rejects.
  std::set<std::pair<int32_t, int64_t>> expected_quarantine, actual_quarantine;
  for (const Event& e : events) if (!e.staged) expected_quarantine.insert({e.partition, e.offset});
  for (const std::string& row : Query(db, "select \"partition\", \"offset\" from _sluice_quarantine")) {
    std::vector<std::string> cells = Split(row);
    actual_quarantine.insert({std::stoi(cells[0]), std::stoll(cells[1])});
  }
  EXPECT_EQ(actual_quarantine, expected_quarantine);
  EXPECT_GT(expected_quarantine.size(), 5u);

  // orders_curated: per order the newest staged version by (timestamp,
  // partition, offset), with the status of the newest staged event that had one.
  const std::map<std::string, std::pair<const Event*, std::string>> newest = NewestVersions(events);
  std::map<std::string, std::vector<std::string>> actual;
  ASSERT_NO_FATAL_FAILURE(
      ParseCurated(Query(db, std::string("select ") + kCuratedColumns + " from orders_curated"), &actual));
  EXPECT_EQ(actual.size(), newest.size());
  int mismatches = 0;
  for (const auto& [id, version] : newest) {
    const Event* kept = version.first;
    const std::string& status = version.second;
    std::vector<std::string> expected = ExpectedColumns(*kept, seeds);
    std::string expected_amount = kept->amount ? Fixed2(*kept->amount) : "NULL";
    auto found = actual.find(id);
    if (found == actual.end()) {
      ADD_FAILURE() << "order " << id << " is missing from orders_curated";
      if (++mismatches > 20) break;
      continue;
    }
    const std::vector<std::string>& row = found->second;
    std::vector<std::string> got(row.begin(), row.begin() + 13);
    std::string got_amount = row[13] == "NULL" ? "NULL" : Fixed2(std::strtod(row[13].c_str(), nullptr));
    if (got != expected || got_amount != expected_amount || row[14] != status) {
      ADD_FAILURE() << "order " << id << "\n  expected: " << ::testing::PrintToString(expected) << " amount "
                    << expected_amount << " status " << status << "\n  actual:   " << ::testing::PrintToString(got)
                    << " amount " << got_amount << " status " << row[14];
      if (++mismatches > 20) break;
    }
  }
  EXPECT_EQ(mismatches, 0);

  // revenue_hourly from the reference rows.
  Revenue actual_revenue;
  ASSERT_NO_FATAL_FAILURE(ParseRevenue(
      Query(db, "select hour, region, category, currency, orders, revenue from revenue_hourly"), &actual_revenue));
  ExpectRevenueMatches(ExpectedRevenue(newest, seeds), actual_revenue);

  // status: lag 0 against the broker, the group's offsets committed too.
  rapidjson::Document status;
  ASSERT_TRUE(testing::StatusJson(pipeline, kafka->bootstrap(), &status, &output)) << output;
  EXPECT_TRUE(status["kafka_error"].IsNull()) << output;
  EXPECT_EQ(status["total_lag"].GetInt64(), 0) << output;
  for (const auto& partition : status["partitions"].GetArray()) {
    EXPECT_EQ(partition["end_offset"].GetInt64(), per_partition[partition["partition"].GetInt()]) << output;
  }
}

}  // namespace
}  // namespace sluice
