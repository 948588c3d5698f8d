// Group assignment: several engines in one consumer group share partitions,
// with eager and cooperative rebalances, and every message is processed once.
#include <gtest/gtest.h>

#include <librdkafka/rdkafka.h>

#include <thread>

#include "connectors/kafka_source.h"
#include "test_support.h"

namespace sluice {
namespace {

using testing::PipelineFiles;
using testing::QueryOne;
using testing::TempDir;

// Runs an engine on `dir` in --every mode until `stop`; reports its Status and
// the partitions it held at the end.
struct Member {
  std::thread thread;
  Status status;
  OffsetMap held;

  void Start(const std::string& dir, std::atomic<bool>* stop) {
    thread = std::thread([this, dir, stop] {
      Result<Pipeline> pipeline = LoadPipeline(dir);
      if (!pipeline.ok()) {
        status = pipeline.status();
        return;
      }
      EngineOptions options;
      options.exclusive_lock = false;
      auto engine = Engine::Open(*pipeline, std::make_unique<KafkaSource>(pipeline->config.source), options);
      if (!engine.ok()) {
        status = engine.status();
        return;
      }
      RunOptions run;
      run.mode = RunMode::kEvery;
      run.every = std::chrono::milliseconds(200);
      status = (*engine)->Run(run, *stop);
      held = (*engine)->source()->Positions();
    });
  }
};

class GroupAssignment : public ::testing::TestWithParam<const char*> {};

TEST_P(GroupAssignment, MembersSplitPartitionsAndProcessEachMessageOnce) {
  if (std::string(GetParam()) == "cooperative-sticky" && rd_kafka_version() < 0x020300ff) {
    GTEST_SKIP() << "librdkafka " << rd_kafka_version_str()
                 << " can abort in the cooperative-sticky assignor when a member closes (librdkafka #4312, fixed in "
                    "2.3.0); sluice warns about it at start";
  }
  auto broker = testing::StartBroker("events", 4);
  TempDir dir;
  PipelineFiles files;
  files.conf = "[source]\nbrokers = " + broker->bootstrap() +
               "\ntopic = events\ngroup = shared\nassignment = group\n[batch]\nmax_messages = 50\nmax_wait = 200ms\n"
               "[columns]\nid = TEXT\n[target]\ndatabase = pipeline.db\n[kafka]\npartition.assignment.strategy = " +
               std::string(GetParam()) + "\n";
  files.schema = "create table if not exists seen (id text, part integer, off integer);";
  files.steps["10_seen.sql"] = "insert into seen select id, _kafka_partition, _kafka_offset from batch;";
  testing::WritePipeline(dir.path(), files);

  std::atomic<bool> stop{false};
  Member first, second;
  first.Start(dir.path(), &stop);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  second.Start(dir.path(), &stop);

  constexpr int kRounds = 8, kPerRound = 100;
  int produced = 0;
  for (int round = 0; round < kRounds; ++round) {
    for (int32_t partition = 0; partition < 4; ++partition) {
      std::vector<std::string> values;
      for (int i = 0; i < kPerRound / 4; ++i) values.push_back(R"({"id":"m)" + std::to_string(produced++) + R"("})");
      testing::ProduceValues(broker->bootstrap(), "events", values, partition);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(700));
  }
  std::string db = dir / "pipeline.db";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline &&
         QueryOne(db, "select count(*) from seen") != std::to_string(produced)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // let any duplicate show up
  stop = true;
  first.thread.join();
  second.thread.join();
  // Nothing is ever read twice, whatever happened to the group.
  EXPECT_EQ(QueryOne(db, "select count(*) from (select part, off from seen group by 1, 2 having count(*) > 1)"), "0");
  // The embedded broker's group coordinator (librdkafka's mock) sometimes
  // never completes a rebalance that a late joiner starts: both members wait
  // for an assignment that does not come, and nothing moves. That is the
  // mock's limit, not sluice's: the same scenario runs against a real
  // coordinator in the kafka tier (KafkaGroups.*), where it must pass.
  if (QueryOne(db, "select count(*) from seen") != std::to_string(produced) && first.held.empty() &&
      second.held.empty()) {
    GTEST_SKIP() << "the embedded broker's coordinator stalled the rebalance (no member holds a partition); covered "
                    "against a real broker by KafkaGroups.*";
  }
  EXPECT_TRUE(first.status.ok()) << first.status.message();
  EXPECT_TRUE(second.status.ok()) << second.status.message();

  EXPECT_EQ(QueryOne(db, "select count(*) from seen"), std::to_string(produced));
  EXPECT_EQ(QueryOne(db, "select count(distinct id) from seen"), std::to_string(produced));
  EXPECT_EQ(QueryOne(db, "select count(*) from (select part, off from seen group by 1, 2 having count(*) > 1)"), "0");
  EXPECT_EQ(QueryOne(db, "select sum(next_offset) from _sluice_offsets"), std::to_string(produced));
  // Both members held partitions at the end, and between them all four.
  EXPECT_FALSE(first.held.empty());
  EXPECT_FALSE(second.held.empty());
  EXPECT_EQ(first.held.size() + second.held.size(), 4u);
}

INSTANTIATE_TEST_SUITE_P(Strategies, GroupAssignment, ::testing::Values("range", "roundrobin", "cooperative-sticky"));

}  // namespace
}  // namespace sluice
