// Scenario 4: a compacted topic (offset gaps): results correct, lag 0.
// Scenario 5: partitions added (CreatePartitions) while `run --every` runs,
// with assignment = all and with assignment = group: every message in the new
// partitions is read, once.
// Scenario 6: a topic deleted and recreated under the same name: sluice
// refuses (non-zero exit, the partition and `sluice reset` named) rather than
// silently skipping or mixing logs, whether the new log is shorter or longer
// than the stored offset.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <set>
#include <thread>

#include "kafka_tier.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;
using testing::Contains;
using testing::Query;
using testing::QueryOne;
using testing::TempDir;

TEST(KafkaCompacted, OffsetGapsResultsCorrectLagZero) {
  REQUIRE_KAFKA();
  const std::string topic = testing::UniqueName("compact");
  ASSERT_TRUE(kafka->CreateTopic(topic, 1,
                                 {{"cleanup.policy", "compact"},
                                  {"segment.ms", "100"},
                                  {"min.cleanable.dirty.ratio", "0.01"},
                                  {"min.compaction.lag.ms", "0"},
                                  {"delete.retention.ms", "100"}})
                  .ok());
  // 10 keys, 5 versions each, in bursts that land in separate segments; key k9
  // ends with a tombstone; a last message rolls the final segment.
  std::map<std::string, int> last_amount;
  int produced = 0;
  for (int version = 0; version < 5; ++version) {
    std::vector<OutgoingMessage> burst;
    for (int k = 0; k < 10; ++k) {
      OutgoingMessage message;
      message.key = "k" + std::to_string(k);
      message.partition = 0;
      int amount = version * 100 + k;
      if (!(k == 9 && version == 4)) {
        message.value = R"({"id":"k)" + std::to_string(k) + R"(","amount":)" + std::to_string(amount) + "}";
        last_amount[*message.key] = amount;
      } else {
        last_amount.erase(*message.key);
      }
      burst.push_back(message);
    }
    ASSERT_TRUE(ProduceMessages(kafka->bootstrap(), topic, burst).ok());
    produced += static_cast<int>(burst.size());
    std::this_thread::sleep_for(150ms);
  }
  OutgoingMessage roll;
  roll.key = "z";
  roll.value = R"({"id":"z","amount":1})";
  roll.partition = 0;
  ASSERT_TRUE(ProduceMessages(kafka->bootstrap(), topic, {roll}).ok());
  ++produced;
  last_amount["z"] = 1;

  // Wait for the cleaner: fewer records than offsets.
  std::vector<testing::Record> records;
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        records = testing::ReadAll(kafka->bootstrap(), topic, 1);
        return records.size() <= 20;
      },
      45s))
      << "the log cleaner did not compact the topic: " << records.size() << " records";
  const int64_t end = kafka->Watermarks(topic, 1)[0].second;
  ASSERT_EQ(end, produced);

  TempDir dir;
  const std::string pipeline = dir / "p";
  testing::PipelineFiles files = testing::AppendOn(kafka->bootstrap(), topic);
  files.schema += "CREATE TABLE IF NOT EXISTS latest(k TEXT PRIMARY KEY, amount REAL, off INTEGER);\n";
  files.steps["20_latest.sql"] =
      "INSERT INTO latest(k, amount, off) SELECT _kafka_key, amount, _kafka_offset FROM batch WHERE _kafka_value IS NOT NULL "
      "AND true ON CONFLICT(k) DO UPDATE SET amount = excluded.amount, off = excluded.off WHERE excluded.off > latest.off;\n"
      "DELETE FROM latest WHERE k IN (SELECT _kafka_key FROM batch WHERE _kafka_value IS NULL);\n";
  testing::WritePipeline(pipeline, files);
  const std::string db = pipeline + "/pipeline.db";
  std::string output;
  ASSERT_EQ(testing::RunToEnd({"run", pipeline, "--max-messages", "3"}, dir / "run.log", &output, {}, 60s), 0) << output;

  // Exactly the records the broker still holds, at their offsets.
  std::vector<std::string> expected_offsets, actual_offsets;
  for (const auto& record : records) expected_offsets.push_back(std::to_string(record.offset));
  actual_offsets = Query(db, "select off from events order by off");
  EXPECT_EQ(actual_offsets, expected_offsets);
  std::vector<std::string> expected_latest, actual_latest = Query(db, "select k, cast(amount as integer) from latest order by k");
  for (const auto& [key, amount] : last_amount) expected_latest.push_back(key + "|" + std::to_string(amount));
  EXPECT_EQ(actual_latest, expected_latest);
  EXPECT_EQ(testing::StoredOffset(db, topic, 0), std::to_string(end));
  rapidjson::Document status;
  ASSERT_TRUE(testing::StatusJson(pipeline, kafka->bootstrap(), &status, &output)) << output;
  EXPECT_EQ(status["total_lag"].GetInt64(), 0) << output;
}

// Partitions added while `run --every 1s` runs: every message read once.
void PartitionsAdded(testing::RealKafka* kafka, const std::string& assignment) {
  const std::string topic = testing::UniqueName("grow-" + assignment);
  ASSERT_TRUE(kafka->CreateTopic(topic, 1).ok());
  ASSERT_TRUE(ProduceMessages(kafka->bootstrap(), topic, testing::IdAmountMessages("p0-", 0, 10, 0)).ok());
  TempDir dir;
  const std::string pipeline = dir / "p";
  testing::WritePipeline(pipeline, testing::AppendOn(kafka->bootstrap(), topic, "assignment = " + assignment + "\n"));
  const std::string db = pipeline + "/pipeline.db";
  testing::Child sluice({"run", pipeline, "--every", "1s"}, dir / "run.log");
  ASSERT_TRUE(testing::WaitForValue(db, "select count(*) from events", "10", 60s, &sluice)) << sluice.output();

  ASSERT_TRUE(kafka->CreatePartitions(topic, 3).ok());
  for (int32_t p = 1; p < 3; ++p) {
    ASSERT_TRUE(ProduceMessages(kafka->bootstrap(), topic,
                                testing::IdAmountMessages("p" + std::to_string(p) + "-", 0, 10, p))
                    .ok());
  }
  ASSERT_TRUE(ProduceMessages(kafka->bootstrap(), topic, testing::IdAmountMessages("p0-", 10, 5, 0)).ok());
  bool all = testing::WaitForValue(db, "select count(*) from events", "35", 45s, &sluice);
  EXPECT_TRUE(all) << "the new partitions were not read within 45 s (assignment = " << assignment << "): "
                   << ::testing::PrintToString(Query(db, "select part, count(*) from events group by part"))
                   << "\n" << sluice.output();
  std::optional<int> code = sluice.Stop(SIGTERM, 30s);
  EXPECT_EQ(code, std::optional<int>(0)) << sluice.output();
  EXPECT_EQ(QueryOne(db, "select count(distinct part || ':' || off) from events"), QueryOne(db, "select count(*) from events"))
      << "a message was read twice";
  if (all) {
    EXPECT_EQ(Query(db, "select part, count(*), min(off), max(off) from events group by part order by part"),
              (std::vector<std::string>{"0|15|0|14", "1|10|0|9", "2|10|0|9"}));
  }
}

TEST(KafkaPartitionsAdded, AssignmentAllReadsTheNewPartitions) {
  REQUIRE_KAFKA();
  PartitionsAdded(kafka, "all");
}

TEST(KafkaPartitionsAdded, AssignmentGroupReadsTheNewPartitions) {
  REQUIRE_KAFKA();
  PartitionsAdded(kafka, "group");
}

// Deletes and recreates `topic` with one partition holding `messages` messages.
void Recreate(testing::RealKafka* kafka, const std::string& topic, int messages) {
  ASSERT_TRUE(kafka->DeleteTopic(topic).ok());
  // The broker finishes the deletion asynchronously: retry the creation.
  Status created = Status::Ok();
  bool done = testing::WaitFor([&] { return (created = kafka->CreateTopic(topic, 1)).ok(); }, 30s);
  ASSERT_TRUE(done) << created.message();
  ASSERT_TRUE(ProduceMessages(kafka->bootstrap(), topic, testing::IdAmountMessages("new", 0, messages, 0)).ok());
}

void RecreatedIsRefused(testing::RealKafka* kafka, int new_messages) {
  const std::string topic = testing::UniqueName("recreated");
  ASSERT_TRUE(kafka->CreateTopic(topic, 1).ok());
  ASSERT_TRUE(ProduceMessages(kafka->bootstrap(), topic, testing::IdAmountMessages("old", 0, 10, 0)).ok());
  TempDir dir;
  const std::string pipeline = dir / "p";
  testing::WritePipeline(pipeline, testing::AppendOn(kafka->bootstrap(), topic));
  const std::string db = pipeline + "/pipeline.db";
  std::string output;
  ASSERT_EQ(testing::RunToEnd({"run", pipeline}, dir / "run.log", &output, {}, 60s), 0) << output;
  ASSERT_EQ(testing::StoredOffset(db, topic, 0), "10");

  Recreate(kafka, topic, new_messages);
  int code = testing::RunToEnd({"run", pipeline}, dir / "refused.log", &output, {}, 60s);
  EXPECT_NE(code, 0) << "a recreated topic (new log of " << new_messages << " messages) was not refused:\n" << output;
  EXPECT_TRUE(Contains(output, topic + "[0]")) << output;
  EXPECT_TRUE(Contains(output, "sluice reset")) << output;
  EXPECT_EQ(QueryOne(db, "select count(*) from events"), "10") << "something of the new log was consumed";
  EXPECT_EQ(testing::StoredOffset(db, topic, 0), "10");

  // The way out the message names: reset to earliest, then the new log is read from its start.
  ASSERT_EQ(testing::RunSluice({"reset", pipeline, "--to", "earliest", "--yes"}, &output), 0) << output;
  ASSERT_EQ(testing::RunToEnd({"run", pipeline}, dir / "after.log", &output, {}, 60s), 0) << output;
  EXPECT_EQ(QueryOne(db, "select count(*) from events where id like 'new%'"), std::to_string(new_messages)) << output;
  EXPECT_EQ(testing::StoredOffset(db, topic, 0), std::to_string(new_messages));
}

TEST(KafkaTopicRecreated, ShorterNewLogIsRefused) {
  REQUIRE_KAFKA();
  RecreatedIsRefused(kafka, 3);
}

TEST(KafkaTopicRecreated, LongerNewLogIsRefused) {
  REQUIRE_KAFKA();
  RecreatedIsRefused(kafka, 15);
}

}  // namespace
}  // namespace sluice
