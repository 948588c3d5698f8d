// Engine: the batch loop in-process, against the embedded broker: step order,
// failing and broken steps, offsets as the source of truth, upserts by event
// time, several partitions, an unreachable broker.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "connectors/kafka_source.h"
#include "test_support.h"

namespace sluice {
namespace {

using testing::AppendPipeline;
using testing::BasicConf;
using testing::IdAmountValues;
using testing::PipelineFiles;
using testing::ProduceValues;
using testing::Query;
using testing::QueryOne;
using testing::RunPipeline;
using testing::TempDir;
using testing::TryQueryOne;
using testing::WaitFor;
using testing::WriteFile;
using testing::WritePipeline;

using Rows = std::vector<std::string>;

TEST(Engine, StepsRunInLexicalFileOrder) {
  auto broker = testing::StartBroker("events", 1);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  PipelineFiles files;
  files.conf = BasicConf(broker->bootstrap(), "events", "id = TEXT");
  files.schema = "CREATE TABLE IF NOT EXISTS log(seq INTEGER PRIMARY KEY AUTOINCREMENT, step TEXT, n INTEGER);\n";
  // Lexical, not numeric: "9_c" sorts after "20_b".
  files.steps["9_c.sql"] = "INSERT INTO log(step, n) SELECT 'c', count(*) FROM batch HAVING count(*) > 0;\n";
  files.steps["20_b.sql"] =
      "INSERT INTO log(step, n) SELECT 'b' || (SELECT count(*) FROM log WHERE step = 'a'), count(*) FROM batch "
      "HAVING count(*) > 0;\n";
  files.steps["10_a.sql"] = "INSERT INTO log(step, n) SELECT 'a', count(*) FROM batch HAVING count(*) > 0;\n";
  WritePipeline(dir.path(), files);
  ProduceValues(broker->bootstrap(), "events", IdAmountValues("e", 0, 3));

  Status st = RunPipeline(dir.path());
  ASSERT_TRUE(st.ok()) << st.message();
  // 'b1': step b saw the row step a had written earlier in the same batch.
  EXPECT_EQ(Query(dir / "pipeline.db", "SELECT step, n FROM log ORDER BY seq"), (Rows{"a|3", "b1|3", "c|3"}));
}

TEST(Engine, FailingStepRollsBackRecordsFailureAndRetriesSameMessages) {
  auto broker = testing::StartBroker("events", 1);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  std::string db = dir / "pipeline.db";
  PipelineFiles files = AppendPipeline(broker->bootstrap());
  files.schema += "CREATE TABLE IF NOT EXISTS strict(x TEXT NOT NULL);\n";
  WritePipeline(dir.path(), files);

  // A first, successful batch.
  ProduceValues(broker->bootstrap(), "events", IdAmountValues("a", 0, 2));
  Status st = RunPipeline(dir.path());
  ASSERT_TRUE(st.ok()) << st.message();
  ASSERT_EQ(QueryOne(db, "SELECT count(*) FROM events"), "2");
  ASSERT_EQ(Query(db, "SELECT topic, \"partition\", next_offset FROM _sluice_offsets"), (Rows{"events|0|2"}));

  // A step that passes the empty-batch check but fails on line 3 with rows.
  WriteFile(dir / "steps/20_bad.sql",
            "-- copies one id into strict\n"
            "-- (broken: inserts NULL into a NOT NULL column)\n"
            "INSERT INTO strict(x) SELECT NULL FROM batch LIMIT 1;\n");
  ProduceValues(broker->bootstrap(), "events", IdAmountValues("b", 0, 3));
  st = RunPipeline(dir.path());
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("steps/20_bad.sql:3"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("NOT NULL constraint failed: strict.x"), std::string::npos) << st.message();

  // Rolled back: 10_append.sql's inserts are gone, offsets did not move.
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM events"), "2");
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM strict"), "0");
  EXPECT_EQ(Query(db, "SELECT topic, \"partition\", next_offset FROM _sluice_offsets"), (Rows{"events|0|2"}));
  Rows failed = Query(db, "SELECT messages, error FROM _sluice_runs WHERE status = 'failed'");
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].substr(0, 2), "3|");
  EXPECT_NE(failed[0].find("steps/20_bad.sql:3: "), std::string::npos) << failed[0];
  EXPECT_NE(failed[0].find("NOT NULL"), std::string::npos) << failed[0];
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM _sluice_runs WHERE status = 'ok'"), "1");

  // Fixed: the next run processes the same three messages.
  WriteFile(dir / "steps/20_bad.sql",
            "-- copies one id into strict\n"
            "-- (fixed)\n"
            "INSERT INTO strict(x) SELECT id FROM batch ORDER BY _kafka_offset LIMIT 1;\n");
  st = RunPipeline(dir.path());
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(Query(db, "SELECT id, off FROM events ORDER BY off"), (Rows{"a0|0", "a1|1", "b0|2", "b1|3", "b2|4"}));
  EXPECT_EQ(Query(db, "SELECT x FROM strict"), (Rows{"b0"}));
  EXPECT_EQ(Query(db, "SELECT topic, \"partition\", next_offset FROM _sluice_offsets"), (Rows{"events|0|5"}));
  EXPECT_EQ(Query(db, "SELECT status, messages FROM _sluice_runs ORDER BY run_id"), (Rows{"ok|2", "failed|3", "ok|3"}));
}

// Produces messages, then checks that a step broken at validation time stops
// the run before anything is consumed, and that fixing it loses nothing.
void ExpectBrokenStepFailsBeforeConsuming(const std::string& file, const std::string& sql,
                                          const std::string& expected_where, const std::string& expected_error) {
  auto broker = testing::StartBroker("events", 1);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  std::string db = dir / "pipeline.db";
  PipelineFiles files = AppendPipeline(broker->bootstrap());
  files.steps[file] = sql;
  WritePipeline(dir.path(), files);
  ProduceValues(broker->bootstrap(), "events", IdAmountValues("e", 0, 3));

  Status st = RunPipeline(dir.path());
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find(expected_where), std::string::npos) << st.message();
  EXPECT_NE(st.message().find(expected_error), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("nothing was consumed"), std::string::npos) << st.message();
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM _sluice_runs WHERE status = 'ok'"), "0");
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM _sluice_offsets"), "0");
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM events"), "0");

  // Nothing was consumed: with the step removed, all three messages arrive.
  std::remove((dir / ("steps/" + file)).c_str());
  st = RunPipeline(dir.path());
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(Query(db, "SELECT id FROM events ORDER BY off"), (Rows{"e0", "e1", "e2"}));
}

TEST(Engine, StepWithSyntaxErrorFailsBeforeConsuming) {
  ExpectBrokenStepFailsBeforeConsuming("20_syntax.sql", "-- a typo\n\nSELEC id FROM batch;\n", "steps/20_syntax.sql:3",
                                       "syntax error");
}

TEST(Engine, StepWithMissingTableFailsBeforeConsuming) {
  ExpectBrokenStepFailsBeforeConsuming("20_missing.sql",
                                       "-- no such table\nINSERT INTO nowhere SELECT id FROM batch;\n",
                                       "steps/20_missing.sql:2", "no such table: nowhere");
}

TEST(Engine, SecondRunReadsNothingTwice) {
  auto broker = testing::StartBroker("events", 1);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  std::string db = dir / "pipeline.db";
  WritePipeline(dir.path(), AppendPipeline(broker->bootstrap()));
  ProduceValues(broker->bootstrap(), "events", IdAmountValues("a", 0, 4));

  Status st = RunPipeline(dir.path());
  ASSERT_TRUE(st.ok()) << st.message();
  ASSERT_EQ(QueryOne(db, "SELECT count(*) FROM events"), "4");

  // Nothing new: one empty batch.
  st = RunPipeline(dir.path(), RunMode::kOnce);
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM events"), "4");
  EXPECT_EQ(QueryOne(db, "SELECT messages FROM _sluice_runs ORDER BY run_id DESC LIMIT 1"), "0");
  // Caught up already: no batch at all.
  st = RunPipeline(dir.path());
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM events"), "4");
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM _sluice_runs"), "2");

  // Three more: only those are read.
  ProduceValues(broker->bootstrap(), "events", IdAmountValues("b", 0, 3));
  st = RunPipeline(dir.path());
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(QueryOne(db, "SELECT count(*) || ' ' || count(DISTINCT off) FROM events"), "7 7");
  EXPECT_EQ(Query(db, "SELECT status, messages FROM _sluice_runs ORDER BY run_id"), (Rows{"ok|4", "ok|0", "ok|3"}));
  EXPECT_EQ(QueryOne(db,
                     "SELECT sum(messages) || ' ' || sum(staged) || ' ' || sum(quarantined) FROM _sluice_runs "
                     "WHERE status = 'ok'"),
            "7 7 0");
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM _sluice_runs WHERE status <> 'ok'"), "0");
  EXPECT_EQ(Query(db, "SELECT next_offset FROM _sluice_offsets"), (Rows{"7"}));
}

TEST(Engine, OffsetsBelongToTheGroupSoANewGroupIsANewPipeline) {
  auto broker = testing::StartBroker("events", 1);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  std::string db = dir / "pipeline.db";
  PipelineFiles files = AppendPipeline(broker->bootstrap());
  WritePipeline(dir.path(), files);
  ProduceValues(broker->bootstrap(), "events", IdAmountValues("a", 0, 3));
  Status st = RunPipeline(dir.path());
  ASSERT_TRUE(st.ok()) << st.message();
  ASSERT_EQ(QueryOne(db, "SELECT count(*) FROM events"), "3");

  // Offsets belong to the pipeline, identified by its group: a new group is
  // a new pipeline, which starts where `start` says (earliest) and keeps its
  // own offsets beside the first one's (sluice warns at start).
  std::string conf = files.conf;
  ASSERT_TRUE(testing::ReplaceFirst(&conf, "group = test-group", "group = a-brand-new-group"));
  WriteFile(dir / "pipeline.conf", conf);
  ProduceValues(broker->bootstrap(), "events", IdAmountValues("b", 0, 2));
  st = RunPipeline(dir.path());
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(Query(db, "SELECT id FROM events ORDER BY off, rowid"), (Rows{"a0", "a0", "a1", "a1", "a2", "a2", "b0", "b1"}));
  EXPECT_EQ(Query(db, "SELECT status, messages FROM _sluice_runs ORDER BY run_id"), (Rows{"ok|3", "ok|5"}));
  EXPECT_EQ(Query(db, "SELECT pipeline, next_offset FROM _sluice_offsets ORDER BY 1"),
            (Rows{"a-brand-new-group|5", "test-group|3"}));
}

TEST(Engine, UpsertKeepsNewestEventWhenOlderArrivesLater) {
  auto broker = testing::StartBroker("events", 1);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  std::string db = dir / "pipeline.db";
  PipelineFiles files;
  files.conf = BasicConf(broker->bootstrap(), "events", "status = TEXT");
  files.schema =
      "CREATE TABLE IF NOT EXISTS orders(\n"
      "  id TEXT PRIMARY KEY, status TEXT NOT NULL, _kafka_timestamp INTEGER NOT NULL);\n";
  files.steps["10_upsert.sql"] =
      "-- newest event per key in the batch, then only if newer than what is stored\n"
      "INSERT INTO orders AS t (id, status, _kafka_timestamp)\n"
      "SELECT _kafka_key, status, _kafka_timestamp FROM (\n"
      "  SELECT *, row_number() OVER (\n"
      "    PARTITION BY _kafka_key ORDER BY _kafka_timestamp DESC, _kafka_offset DESC) AS rn\n"
      "  FROM batch)\n"
      "WHERE rn = 1\n"
      "ON CONFLICT(id) DO UPDATE SET status = excluded.status, _kafka_timestamp = excluded._kafka_timestamp\n"
      "WHERE excluded._kafka_timestamp > t._kafka_timestamp;\n";
  WritePipeline(dir.path(), files);

  const int64_t base = 1700000000000;
  auto message = [](const std::string& key, const std::string& status, int64_t timestamp) {
    OutgoingMessage m;
    m.key = key;
    m.value = R"({"status":")" + status + R"("})";
    m.partition = 0;
    m.timestamp = timestamp;
    return m;
  };
  Status st = ProduceMessages(broker->bootstrap(), "events",
                              {message("a", "shipped", base + 2000), message("b", "new", base + 1000)});
  ASSERT_TRUE(st.ok()) << st.message();
  st = RunPipeline(dir.path());
  ASSERT_TRUE(st.ok()) << st.message();
  ASSERT_EQ(Query(db, "SELECT id, status, _kafka_timestamp - 1700000000000 FROM orders ORDER BY id"),
            (Rows{"a|shipped|2000", "b|new|1000"}));

  // A later batch: an older event for a, a newer one for b, and for c the
  // newer event first and an older one after it in the same batch.
  st = ProduceMessages(broker->bootstrap(), "events",
                       {message("a", "new", base + 1000), message("b", "paid", base + 3000),
                        message("c", "cancelled", base + 5000), message("c", "new", base + 4000)});
  ASSERT_TRUE(st.ok()) << st.message();
  st = RunPipeline(dir.path());
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(Query(db, "SELECT id, status, _kafka_timestamp - 1700000000000 FROM orders ORDER BY id"),
            (Rows{"a|shipped|2000", "b|paid|3000", "c|cancelled|5000"}));
  EXPECT_EQ(Query(db, "SELECT status, messages FROM _sluice_runs ORDER BY run_id"), (Rows{"ok|2", "ok|4"}));
}

TEST(Engine, MessagesOnFourPartitionsAllArriveWithOneOffsetRowEach) {
  auto broker = testing::StartBroker("events", 4);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  std::string db = dir / "pipeline.db";
  WritePipeline(dir.path(), AppendPipeline(broker->bootstrap()));
  // Partition p gets p + 1 messages: 10 in all.
  for (int32_t partition = 0; partition < 4; ++partition) {
    ProduceValues(broker->bootstrap(), "events",
                  IdAmountValues("p" + std::to_string(partition) + "-", 0, partition + 1), partition);
  }
  Status st = RunPipeline(dir.path());
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM events"), "10");
  EXPECT_EQ(Query(db, "SELECT part, count(*), min(off), max(off) FROM events GROUP BY part ORDER BY part"),
            (Rows{"0|1|0|0", "1|2|0|1", "2|3|0|2", "3|4|0|3"}));
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM events WHERE id NOT LIKE 'p' || part || '-%'"), "0");
  EXPECT_EQ(Query(db, "SELECT topic, \"partition\", next_offset FROM _sluice_offsets ORDER BY \"partition\""),
            (Rows{"events|0|1", "events|1|2", "events|2|3", "events|3|4"}));
  EXPECT_EQ(QueryOne(db, "SELECT sum(messages) FROM _sluice_runs WHERE status = 'ok'"), "10");
}

TEST(Engine, EveryModePicksUpMessagesProducedAfterCatchingUp) {
  auto broker = testing::StartBroker("events", 1);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  std::string db = dir / "pipeline.db";
  PipelineFiles files = AppendPipeline(broker->bootstrap());
  // The default max_wait (2s): each pass ends when the partition reports its
  // end, so the source has seen end-of-partition before the next messages.
  ASSERT_TRUE(testing::ReplaceFirst(&files.conf, "max_wait = 500ms", "max_wait = 2s"));
  WritePipeline(dir.path(), files);
  ProduceValues(broker->bootstrap(), "events", IdAmountValues("a", 0, 2));

  Result<Pipeline> pipeline = LoadPipeline(dir.path());
  ASSERT_TRUE(pipeline.ok()) << pipeline.status().message();
  auto engine = Engine::Open(*pipeline, std::make_unique<KafkaSource>(pipeline->config.source));
  ASSERT_TRUE(engine.ok()) << engine.status().message();
  RunOptions options;
  options.mode = RunMode::kEvery;
  options.every = std::chrono::milliseconds(200);
  std::atomic<bool> stop{false};
  Status result;
  std::thread runner([&] { result = (*engine)->Run(options, stop); });
  struct StopAndJoin {
    std::atomic<bool>& stop;
    std::thread& runner;
    ~StopAndJoin() {
      stop.store(true);
      if (runner.joinable()) runner.join();
    }
  } stop_and_join{stop, runner};

  ASSERT_TRUE(WaitFor([&] { return TryQueryOne(db, "SELECT count(*) FROM events") == "2"; }, std::chrono::seconds(8)));
  ProduceValues(broker->bootstrap(), "events", IdAmountValues("b", 0, 3));
  bool all = WaitFor([&] { return TryQueryOne(db, "SELECT count(*) FROM events") == "5"; }, std::chrono::seconds(8));
  stop.store(true);
  runner.join();
  EXPECT_TRUE(all) << "events: " << QueryOne(db, "SELECT count(*) FROM events");
  EXPECT_TRUE(result.ok()) << result.message();
  EXPECT_EQ(Query(db, "SELECT id FROM events ORDER BY off"), (Rows{"a0", "a1", "b0", "b1", "b2"}));
  EXPECT_EQ(Query(db, "SELECT next_offset FROM _sluice_offsets"), (Rows{"5"}));
  // No busy loop of empty batches while waiting for the next messages.
  EXPECT_LT(std::stoll(QueryOne(db, "SELECT count(*) FROM _sluice_runs")), 10);
}

TEST(Engine, UnreachableBrokerFailsWithinConnectTimeout) {
  TempDir dir;
  std::string db = dir / "pipeline.db";
  PipelineFiles files;
  files.conf =
      "[source]\nbrokers = 127.0.0.1:1\ntopic = events\ngroup = test-group\nconnect_timeout = 2s\n"
      "[batch]\nmax_wait = 500ms\n[columns]\nid = TEXT\n[target]\ndatabase = pipeline.db\n";
  files.schema = "CREATE TABLE IF NOT EXISTS events(id TEXT);\n";
  files.steps["10_append.sql"] = "INSERT INTO events SELECT id FROM batch;\n";
  WritePipeline(dir.path(), files);

  auto start = std::chrono::steady_clock::now();
  Status st = RunPipeline(dir.path());
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_FALSE(st.ok());
  EXPECT_LT(seconds, 20.0);
  EXPECT_GE(seconds, 1.5);  // it did try for about connect_timeout
  EXPECT_EQ(st.code(), Status::Code::kUnavailable);  // transient: `run --every` retries it
  EXPECT_NE(st.message().find("127.0.0.1:1"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("within 2s"), std::string::npos) << st.message();
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM _sluice_runs WHERE status = 'ok'"), "0");
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM _sluice_offsets"), "0");
}

}  // namespace
}  // namespace sluice
