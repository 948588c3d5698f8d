// Scenario 2: transactions. A transactional producer commits some
// transactions and aborts others, so that the partitions hold aborted records
// and commit/abort markers, and each partition ends with a marker (one with an
// abort marker, the other with a commit marker). sluice reads with
// isolation.level = read_committed: only committed messages are staged,
// --until-caught-up ends, `status` shows lag 0, and no empty batch is
// committed (neither in the pass nor in later passes with nothing new).
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include <set>

#include "kafka_tier.h"

namespace sluice {
namespace {

using testing::Query;
using testing::QueryOne;
using testing::TempDir;

// One transaction of `messages` (value, partition) that commits or aborts.
struct Transaction {
  std::vector<std::pair<std::string, int32_t>> messages;
  bool commit;
};

void RunTransactions(const std::string& brokers, const std::string& topic, const std::vector<Transaction>& transactions) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), errstr, sizeof(errstr));
  rd_kafka_conf_set(conf, "transactional.id", (topic + "-producer").c_str(), errstr, sizeof(errstr));
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  ASSERT_NE(rk, nullptr) << errstr;
  auto check = [&](rd_kafka_error_t* error, const char* what) {
    if (error) {
      ADD_FAILURE() << what << ": " << rd_kafka_error_string(error);
      rd_kafka_error_destroy(error);
      return false;
    }
    return true;
  };
  if (check(rd_kafka_init_transactions(rk, 30000), "init_transactions")) {
    for (const Transaction& transaction : transactions) {
      if (!check(rd_kafka_begin_transaction(rk), "begin_transaction")) break;
      for (const auto& [value, partition] : transaction.messages) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_END);
        EXPECT_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(err);
      }
      // The aborted records must reach the log (not only be purged) for the
      // consumer to have something to skip.
      rd_kafka_flush(rk, 30000);
      if (transaction.commit) {
        check(rd_kafka_commit_transaction(rk, 30000), "commit_transaction");
      } else {
        check(rd_kafka_abort_transaction(rk, 30000), "abort_transaction");
      }
    }
  }
  rd_kafka_destroy(rk);
}

TEST(KafkaTransactions, OnlyCommittedStagedCaughtUpWithLagZeroAndNoEmptyBatches) {
  REQUIRE_KAFKA();
  const std::string topic = testing::UniqueName("txn");
  ASSERT_TRUE(kafka->CreateTopic(topic, 2).ok());

  std::set<std::string> committed;
  std::vector<Transaction> transactions;
  int next = 0;
  auto transaction = [&](std::vector<int32_t> partitions, int per_partition, bool commit) {
    Transaction t{{}, commit};
    for (int32_t p : partitions) {
      for (int i = 0; i < per_partition; ++i) {
        std::string id = (commit ? "c" : "a") + std::to_string(next++);
        t.messages.push_back({R"({"id":")" + id + R"(","amount":1})", p});
        if (commit) committed.insert(id);
      }
    }
    transactions.push_back(t);
  };
  transaction({0, 1}, 10, true);
  transaction({0, 1}, 5, false);
  transaction({0, 1}, 10, true);
  transaction({0}, 5, false);  // partition 0 ends with aborted records and an abort marker
  transaction({1}, 3, true);   // partition 1 ends with a commit marker
  RunTransactions(kafka->bootstrap(), topic, transactions);
  if (HasFailure()) return;
  auto marks = kafka->Watermarks(topic, 2);
  // Partition 0: 20 committed + 10 aborted + 4 markers; partition 1: 23 + 5 + 4 markers.
  EXPECT_EQ(marks[0].second, 34);
  EXPECT_EQ(marks[1].second, 32);

  TempDir dir;
  const std::string pipeline = dir / "p";
  testing::WritePipeline(pipeline, testing::AppendOn(kafka->bootstrap(), topic));
  const std::string db = pipeline + "/pipeline.db";
  std::string output;
  int code = testing::RunToEnd({"run", pipeline, "--until-caught-up", "--max-messages", "7"}, dir / "run.log",
                               &output, {}, std::chrono::seconds(60));
  ASSERT_EQ(code, 0) << "--until-caught-up must end over transaction markers:\n" << output;

  // Only committed messages, each once.
  std::set<std::string> staged;
  for (const std::string& id : Query(db, "select id from events")) staged.insert(id);
  EXPECT_EQ(staged, committed);
  EXPECT_EQ(QueryOne(db, "select count(*) from events"), std::to_string(committed.size()));
  EXPECT_EQ(QueryOne(db, "select count(*) from _sluice_quarantine"), "0");

  // The stored offsets are past the final markers: lag 0 against the broker.
  for (int p = 0; p < 2; ++p) {
    EXPECT_EQ(testing::StoredOffset(db, topic, p), std::to_string(marks[p].second))
        << "partition " << p << ": the stored offset is not past the partition's last transaction marker";
  }
  rapidjson::Document status;
  ASSERT_TRUE(testing::StatusJson(pipeline, kafka->bootstrap(), &status, &output)) << output;
  EXPECT_EQ(status["total_lag"].GetInt64(), 0) << output;

  // No empty batch was committed, and later passes with nothing new commit none.
  EXPECT_EQ(QueryOne(db, "select count(*) from _sluice_runs where status = 'ok' and messages = 0"), "0")
      << ::testing::PrintToString(Query(db, "select run_id, messages, offsets, notes from _sluice_runs"));
  std::string runs_before = QueryOne(db, "select count(*) from _sluice_runs");
  for (int pass = 0; pass < 2; ++pass) {
    code = testing::RunToEnd({"run", pipeline, "--until-caught-up"}, dir / "again.log", &output, {},
                             std::chrono::seconds(30));
    EXPECT_EQ(code, 0) << output;
  }
  EXPECT_EQ(QueryOne(db, "select count(*) from _sluice_runs"), runs_before)
      << "passes with nothing new committed batches: "
      << ::testing::PrintToString(Query(db, "select run_id, status, messages, offsets from _sluice_runs"));
}

}  // namespace
}  // namespace sluice
