// Helpers shared by the kafka tier's tests.
#pragma once

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <rapidjson/document.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "real_kafka.h"
#include "test_support.h"

namespace sluice::testing {

// Fails the test (fatally) when the tier's broker is not running.
#define REQUIRE_KAFKA()                                                                  \
  ::sluice::testing::RealKafka* kafka = ::sluice::testing::RealKafka::Get();                              \
  ASSERT_NE(kafka, nullptr) << "the real Kafka broker is not running (see the set-up)"

// A topic name no other test of this run uses.
inline std::string UniqueName(const std::string& prefix) {
  static std::atomic<int> counter{0};
  return prefix + "-" + std::to_string(getpid()) + "-" + std::to_string(++counter);
}

// `sluice status DIR --json`, parsed; *output keeps the raw text.
inline bool StatusJson(const std::string& dir, const std::string& brokers, rapidjson::Document* doc,
                       std::string* output) {
  int code = RunSluice({"status", dir, "--brokers", brokers, "--json"}, output);
  if (code != 0) return false;
  size_t begin = output->find('{'), end = output->rfind('}');
  if (begin == std::string::npos || end == std::string::npos) return false;
  doc->Parse(output->substr(begin, end - begin + 1).c_str());
  return !doc->HasParseError() && doc->IsObject();
}

// A pipeline reading `topic` (JSON {"id":..,"amount":..}) that appends every
// batch row to events(id, amount, part, off); `source_extra` lines go into
// [source] (e.g. "assignment = group\n").
inline PipelineFiles AppendOn(const std::string& brokers, const std::string& topic, const std::string& source_extra = "") {
  PipelineFiles files;
  files.conf = "[source]\nbrokers = " + brokers + "\ntopic = " + topic + "\ngroup = " + topic +
               "-group\nstart = earliest\nconnect_timeout = 10s\n" + source_extra +
               "[batch]\nmax_wait = 500ms\n[columns]\nid = TEXT\namount = REAL\n[target]\ndatabase = pipeline.db\n";
  files.schema = "CREATE TABLE IF NOT EXISTS events(id TEXT, amount REAL, part INTEGER, off INTEGER);\n";
  files.steps["10_append.sql"] =
      "INSERT INTO events(id, amount, part, off) SELECT id, amount, _kafka_partition, _kafka_offset FROM batch;\n";
  return files;
}

// Values {"id":"<prefix><i>","amount":<i>} as messages to `partition`, with timestamp `ts(i)` (0: now).
inline std::vector<OutgoingMessage> IdAmountMessages(const std::string& prefix, int first, int count, int32_t partition,
                                                     const std::function<int64_t(int)>& ts = nullptr) {
  std::vector<OutgoingMessage> messages;
  for (const std::string& value : IdAmountValues(prefix, first, count)) {
    OutgoingMessage message;
    message.value = value;
    message.partition = partition;
    message.timestamp = ts ? ts(first + static_cast<int>(messages.size())) : 0;
    messages.push_back(message);
  }
  return messages;
}

// A record as a plain consumer reads it (read_committed).
struct Record {
  int32_t partition = 0;
  int64_t offset = 0;
  int64_t timestamp = 0;
  std::optional<std::string> key, value;
};

// Every record of topic[0..partitions-1], read to the end of each partition.
inline std::vector<Record> ReadAll(const std::string& brokers, const std::string& topic, int partitions) {
  std::vector<Record> records;
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), errstr, sizeof(errstr));
  rd_kafka_conf_set(conf, "group.id", "kafka-tier-reader", errstr, sizeof(errstr));
  rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr));
  rd_kafka_conf_set(conf, "enable.partition.eof", "true", errstr, sizeof(errstr));
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
  if (rk == nullptr) {
    ADD_FAILURE() << errstr;
    return records;
  }
  rd_kafka_poll_set_consumer(rk);
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p) {
    rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  }
  rd_kafka_assign(rk, list);
  rd_kafka_topic_partition_list_destroy(list);
  std::set<int32_t> at_end;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (static_cast<int>(at_end.size()) < partitions && std::chrono::steady_clock::now() < deadline) {
    rd_kafka_message_t* message = rd_kafka_consumer_poll(rk, 200);
    if (message == nullptr) continue;
    if (message->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      at_end.insert(message->partition);
    } else if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      Record record;
      record.partition = message->partition;
      record.offset = message->offset;
      record.timestamp = rd_kafka_message_timestamp(message, nullptr);
      if (message->key) record.key = std::string(static_cast<const char*>(message->key), message->key_len);
      if (message->payload) record.value = std::string(static_cast<const char*>(message->payload), message->len);
      records.push_back(record);
      at_end.erase(message->partition);
    }
    rd_kafka_message_destroy(message);
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return records;
}

// The stored next offset of topic[partition] in the database at `db`.
inline std::string StoredOffset(const std::string& db, const std::string& topic, int partition) {
  return QueryOne(db, "select next_offset from _sluice_offsets where topic = '" + topic + "' and \"partition\" = " +
                          std::to_string(partition));
}

// Polls the database until `sql` returns `value` (or `timeout` passes, or
// `process`, when given, has exited).
inline bool WaitForValue(const std::string& db, const std::string& sql, const std::string& value,
                         std::chrono::milliseconds timeout, Child* process = nullptr) {
  bool reached = false;
  WaitFor([&] { return (reached = TryQueryOne(db, sql) == value) || (process && !process->running()); }, timeout);
  return reached;
}

}  // namespace sluice::testing
