// Scenario 7: `sluice reset --to TIME` lands where the broker's offsets-for-
// times lookup says, and `status` computes lag against the real watermarks.
// Scenario 3: retention deletes messages sluice has not read: the data-loss
// error names the partition and the count; on_data_loss = skip continues and
// records the gap in _sluice_runs.notes.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "kafka_tier.h"

namespace sluice {
namespace {

using testing::Contains;
using testing::Query;
using testing::QueryOne;
using testing::TempDir;

TEST(KafkaReset, ToTimeLandsWhereTheBrokerSays) {
  REQUIRE_KAFKA();
  const std::string topic = testing::UniqueName("reset");
  ASSERT_TRUE(kafka->CreateTopic(topic, 3).ok());
  // Partition 0: 20 messages a second apart; partition 1: 10 messages, half a
  // second later than partition 0's; partition 2: empty.
  const int64_t t0 = 1790000000000;  // 2026-09-21T14:13:20Z
  ASSERT_TRUE(ProduceMessages(kafka->bootstrap(), topic,
                              testing::IdAmountMessages("a", 0, 20, 0, [&](int i) { return t0 + i * 1000; }))
                  .ok());
  ASSERT_TRUE(ProduceMessages(kafka->bootstrap(), topic,
                              testing::IdAmountMessages("b", 0, 10, 1, [&](int i) { return t0 + i * 1000 + 500; }))
                  .ok());

  TempDir dir;
  const std::string pipeline = dir / "p";
  testing::WritePipeline(pipeline, testing::AppendOn(kafka->bootstrap(), topic));
  const std::string db = pipeline + "/pipeline.db";
  std::string output;
  ASSERT_EQ(testing::RunToEnd({"run", pipeline}, dir / "run.log", &output, {}, std::chrono::seconds(60)), 0) << output;
  EXPECT_EQ(QueryOne(db, "select count(*) from events"), "30");

  // An epoch-ms time inside both partitions.
  const int64_t when = t0 + 7300;
  // The broker's own answer is the reference (8 and 7 when the producer kept
  // the order; a producer retry can reorder, so it is read, not assumed).
  std::map<int32_t, int64_t> broker = kafka->OffsetsForTime(topic, 3, when);
  ASSERT_GE(broker[0], 0);
  ASSERT_GE(broker[1], 0);
  ASSERT_EQ(testing::RunSluice({"reset", pipeline, "--to", std::to_string(when), "--yes"}, &output), 0) << output;
  auto marks = kafka->Watermarks(topic, 3);
  for (int p = 0; p < 3; ++p) {
    int64_t expected = broker[p] >= 0 ? broker[p] : marks[p].second;
    EXPECT_EQ(testing::StoredOffset(db, topic, p), std::to_string(expected)) << "partition " << p << "\n" << output;
  }
  EXPECT_EQ(QueryOne(db, "select count(*) from _sluice_runs where status = 'reset'"), "1");

  // status: lag against the broker's log end offsets.
  rapidjson::Document status;
  ASSERT_TRUE(testing::StatusJson(pipeline, kafka->bootstrap(), &status, &output)) << output;
  EXPECT_EQ(status["total_lag"].GetInt64(), (20 - broker[0]) + (10 - broker[1])) << output;
  for (const auto& partition : status["partitions"].GetArray()) {
    int p = partition["partition"].GetInt();
    EXPECT_EQ(partition["end_offset"].GetInt64(), marks[p].second) << output;
  }

  // An ISO-8601 time after partition 1's last message: partition 1 (and the
  // empty partition 2) go to the log end, partition 0 to the broker's answer.
  const std::string iso = "2026-09-21T14:13:32Z";  // t0 + 12000
  broker = kafka->OffsetsForTime(topic, 3, t0 + 12000);
  ASSERT_GE(broker[0], 0);
  ASSERT_EQ(broker[1], -1);
  const int64_t from = broker[0];  // 12 when the producer kept the order
  ASSERT_EQ(testing::RunSluice({"reset", pipeline, "--to", iso, "--yes"}, &output), 0) << output;
  EXPECT_EQ(testing::StoredOffset(db, topic, 0), std::to_string(from)) << output;
  EXPECT_EQ(testing::StoredOffset(db, topic, 1), "10") << output;
  EXPECT_EQ(testing::StoredOffset(db, topic, 2), "0") << output;

  // The next run reads exactly from there.
  ASSERT_EQ(testing::RunToEnd({"run", pipeline}, dir / "run2.log", &output, {}, std::chrono::seconds(60)), 0) << output;
  EXPECT_EQ(QueryOne(db, "select count(*) from events where part = 0 and off >= " + std::to_string(from)),
            std::to_string(2 * (20 - from)));  // read, then re-read
  EXPECT_EQ(QueryOne(db, "select count(*) from events"), std::to_string(30 + (20 - from)));
  ASSERT_TRUE(testing::StatusJson(pipeline, kafka->bootstrap(), &status, &output)) << output;
  EXPECT_EQ(status["total_lag"].GetInt64(), 0) << output;
}

// Waits until the broker's log start offset of topic[0] reaches `low`.
bool WaitForLogStart(testing::RealKafka* kafka, const std::string& topic, int64_t low) {
  return testing::WaitFor([&] { return kafka->Watermarks(topic, 1)[0].first >= low; }, std::chrono::seconds(30));
}

TEST(KafkaRetention, DeletedBeforeReadFailsWithPartitionAndCountOrSkipsWithTheGapNoted) {
  REQUIRE_KAFKA();
  // Kafka 4 refuses segment.bytes below 1 MiB: segments are rolled by time
  // (segment.ms) instead, and retention is lowered once sluice has read part.
  const std::string topic = testing::UniqueName("retention");
  const std::map<std::string, std::string> keep = {{"segment.ms", "100"}, {"retention.ms", "3600000"}};
  ASSERT_TRUE(kafka->CreateTopic(topic, 1, keep).ok());
  for (int burst = 0; burst < 3; ++burst) {
    ASSERT_TRUE(ProduceMessages(kafka->bootstrap(), topic, testing::IdAmountMessages("m", burst * 10, 10, 0)).ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
  }

  TempDir dir;
  const std::string fail_dir = dir / "fail", skip_dir = dir / "skip";
  testing::WritePipeline(fail_dir, testing::AppendOn(kafka->bootstrap(), topic));
  testing::WritePipeline(skip_dir, testing::AppendOn(kafka->bootstrap(), topic + "-skip", "on_data_loss = skip\n"));
  {
    // The skip pipeline: same topic, its own group.
    std::string conf = testing::ReadFile(skip_dir + "/pipeline.conf");
    ASSERT_TRUE(testing::ReplaceFirst(&conf, "topic = " + topic + "-skip", "topic = " + topic));
    testing::WriteFile(skip_dir + "/pipeline.conf", conf);
  }
  std::string output;
  for (const std::string& pipeline : {fail_dir, skip_dir}) {
    ASSERT_EQ(testing::RunToEnd({"run", pipeline, "--once", "--max-messages", "10"}, dir / "once.log", &output, {},
                                std::chrono::seconds(60)),
              0)
        << output;
    ASSERT_EQ(testing::StoredOffset(pipeline + "/pipeline.db", topic, 0), "10") << output;
  }

  // Retention deletes everything written so far (the active segment too).
  ASSERT_TRUE(kafka->AlterTopicConfigs(topic, {{"segment.ms", "100"}, {"retention.ms", "100"}}).ok());
  ASSERT_TRUE(WaitForLogStart(kafka, topic, 30)) << "retention did not delete the segments";
  ASSERT_TRUE(kafka->AlterTopicConfigs(topic, keep).ok());
  ASSERT_TRUE(ProduceMessages(kafka->bootstrap(), topic, testing::IdAmountMessages("n", 0, 5, 0)).ok());

  // on_data_loss = fail: non-zero exit, the partition and the count named, nothing consumed.
  int code = testing::RunToEnd({"run", fail_dir}, dir / "fail.log", &output, {}, std::chrono::seconds(60));
  EXPECT_NE(code, 0) << output;
  EXPECT_TRUE(Contains(output, topic + "[0]")) << output;
  EXPECT_TRUE(Contains(output, "20 messages")) << output;
  EXPECT_EQ(testing::StoredOffset(fail_dir + "/pipeline.db", topic, 0), "10");
  EXPECT_EQ(QueryOne(fail_dir + "/pipeline.db", "select count(*) from events"), "10");

  // on_data_loss = skip: continues from the log start, the gap in the run's notes.
  code = testing::RunToEnd({"run", skip_dir}, dir / "skip.log", &output, {}, std::chrono::seconds(60));
  EXPECT_EQ(code, 0) << output;
  const std::string db = skip_dir + "/pipeline.db";
  EXPECT_EQ(testing::StoredOffset(db, topic, 0), "35") << output;
  EXPECT_EQ(QueryOne(db, "select group_concat(id) from (select id from events order by off)"),
            "m0,m1,m2,m3,m4,m5,m6,m7,m8,m9,n0,n1,n2,n3,n4");
  std::string notes = QueryOne(db, "select group_concat(notes, ' | ') from _sluice_runs where notes like '%deleted%'");
  EXPECT_TRUE(Contains(notes, topic + "[0]") && Contains(notes, "20 messages") && Contains(notes, "10..29"))
      << "notes: " << notes << "\nruns: " << ::testing::PrintToString(Query(db, "select run_id, status, notes from _sluice_runs"));
}

}  // namespace
}  // namespace sluice
