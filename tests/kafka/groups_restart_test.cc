// Scenario 8: consumer groups. Two and three `assignment = group` members
// (`run --every 1s`) share one database, with the eager strategies range and
// roundrobin; one member is killed (SIGKILL) mid-run; the others take over its
// partitions; every message is processed exactly once.
// Scenario 10: the broker process is stopped and restarted while
// `run --every` runs; sluice resumes exactly (nothing lost, nothing twice).
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <memory>
#include <thread>

#include "kafka_tier.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;
using testing::Query;
using testing::QueryOne;
using testing::TempDir;

void GroupMembers(testing::RealKafka* kafka, int members, const std::string& strategy) {
  constexpr int kPartitions = 6, kPerPartition = 400;
  const std::string topic = testing::UniqueName("group-" + strategy);
  ASSERT_TRUE(kafka->CreateTopic(topic, kPartitions).ok());
  TempDir dir;
  const std::string pipeline = dir / "p";
  testing::PipelineFiles files = testing::AppendOn(kafka->bootstrap(), topic, "assignment = group\n");
  // A dead member's partitions move after the session timeout (the broker's minimum is 6 s).
  files.conf += "[kafka]\npartition.assignment.strategy = " + strategy +
                "\nsession.timeout.ms = 6000\nheartbeat.interval.ms = 500\n";
  testing::WritePipeline(pipeline, files);
  const std::string db = pipeline + "/pipeline.db";

  // The first half before the members start, the rest while they run.
  for (int p = 0; p < kPartitions; ++p) {
    ASSERT_TRUE(ProduceMessages(kafka->bootstrap(), topic, testing::IdAmountMessages("m", 0, kPerPartition / 2, p)).ok());
  }
  std::vector<std::unique_ptr<testing::Child>> running;
  for (int i = 0; i < members; ++i) {
    running.push_back(std::make_unique<testing::Child>(
        std::vector<std::string>{"run", pipeline, "--every", "1s", "--max-messages", "50"},
        dir / ("member" + std::to_string(i) + ".log")));
  }
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        auto count = testing::TryQueryOne(db, "select count(*) from events");
        return count && std::stoi(*count) >= 200;
      },
      60s))
      << running[0]->output();
  // Kill one member mid-run, then publish the second half.
  running[0]->Stop(SIGKILL, 10s);
  for (int p = 0; p < kPartitions; ++p) {
    ASSERT_TRUE(ProduceMessages(kafka->bootstrap(), topic,
                                testing::IdAmountMessages("m", kPerPartition / 2, kPerPartition / 2, p))
                    .ok());
  }
  const std::string total = std::to_string(kPartitions * kPerPartition);
  bool done = testing::WaitForValue(db, "select count(distinct part || ':' || off) from events", total, 90s);
  // A moment more, so that a message processed twice would show.
  std::this_thread::sleep_for(1500ms);
  std::string logs;
  for (int i = 1; i < members; ++i) {
    std::optional<int> code = running[i]->Stop(SIGTERM, 30s);
    EXPECT_EQ(code, std::optional<int>(0)) << running[i]->output();
    logs += "--- member " + std::to_string(i) + "\n" + running[i]->output() + "\n";
  }
  EXPECT_TRUE(done) << "not every message was processed: "
                    << ::testing::PrintToString(Query(db, "select part, count(*) from events group by part")) << "\n"
                    << logs;
  EXPECT_EQ(QueryOne(db, "select count(*) from events"), total) << "a message was processed twice\n" << logs;
  for (int p = 0; p < kPartitions; ++p) {
    EXPECT_EQ(testing::StoredOffset(db, topic, p), std::to_string(kPerPartition));
  }
}

TEST(KafkaGroups, TwoMembersRangeOneKilledExactlyOnce) {
  REQUIRE_KAFKA();
  GroupMembers(kafka, 2, "range");
}

TEST(KafkaGroups, ThreeMembersRoundRobinOneKilledExactlyOnce) {
  REQUIRE_KAFKA();
  GroupMembers(kafka, 3, "roundrobin");
}

TEST(KafkaBrokerRestart, RunEveryResumesExactly) {
  REQUIRE_KAFKA();
  const std::string topic = testing::UniqueName("restart");
  ASSERT_TRUE(kafka->CreateTopic(topic, 2).ok());
  for (int p = 0; p < 2; ++p) {
    ASSERT_TRUE(ProduceMessages(kafka->bootstrap(), topic, testing::IdAmountMessages("a", 0, 100, p)).ok());
  }
  TempDir dir;
  const std::string pipeline = dir / "p";
  testing::WritePipeline(pipeline, testing::AppendOn(kafka->bootstrap(), topic));
  const std::string db = pipeline + "/pipeline.db";
  testing::Child sluice({"run", pipeline, "--every", "1s", "--max-messages", "20"}, dir / "run.log");
  ASSERT_TRUE(testing::WaitForValue(db, "select count(*) from events", "200", 60s, &sluice)) << sluice.output();

  // Stop the broker (cleanly), keep it down for a few seconds, start it again.
  std::string error;
  ASSERT_TRUE(kafka->StopBroker(false, &error)) << error;
  std::this_thread::sleep_for(4s);
  EXPECT_TRUE(sluice.running()) << "sluice --every gave up while the broker was down:\n" << sluice.output();
  ASSERT_TRUE(kafka->StartBroker(&error)) << error;
  ASSERT_TRUE(kafka->WaitForPartitions(topic, 2));
  for (int p = 0; p < 2; ++p) {
    ASSERT_TRUE(ProduceMessages(kafka->bootstrap(), topic, testing::IdAmountMessages("b", 0, 100, p)).ok());
  }
  bool all = testing::WaitForValue(db, "select count(distinct part || ':' || off) from events", "400", 90s, &sluice);
  EXPECT_TRUE(all) << sluice.output();

  // And once more with SIGKILL (an unclean broker stop) during the run.
  std::thread producer([&] {
    for (int p = 0; p < 2; ++p) (void)ProduceMessages(kafka->bootstrap(), topic, testing::IdAmountMessages("c", 0, 100, p));
  });
  producer.join();
  std::this_thread::sleep_for(300ms);
  ASSERT_TRUE(kafka->StopBroker(true, &error)) << error;
  std::this_thread::sleep_for(2s);
  ASSERT_TRUE(kafka->StartBroker(&error)) << error;
  ASSERT_TRUE(kafka->WaitForPartitions(topic, 2));
  all = testing::WaitForValue(db, "select count(distinct part || ':' || off) from events", "600", 90s, &sluice);
  EXPECT_TRUE(all) << sluice.output();
  std::this_thread::sleep_for(1500ms);
  std::optional<int> code = sluice.Stop(SIGTERM, 30s);
  EXPECT_EQ(code, std::optional<int>(0)) << sluice.output();
  EXPECT_EQ(QueryOne(db, "select count(*) from events"), "600") << "a message was processed twice";
  for (int p = 0; p < 2; ++p) {
    EXPECT_EQ(testing::StoredOffset(db, topic, p), "300");
  }
}

}  // namespace
}  // namespace sluice
