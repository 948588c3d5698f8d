// Producer: publishes lines of text (JSON documents, one per line) as Kafka
// messages, for `sluice produce`, the demo and tests. Waits for every delivery
// report and says how many were delivered.
#pragma once

#include <cstdint>
#include <istream>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/time.h"

namespace sluice {

struct ProducerOptions {
  std::string brokers;
  std::string topic;
  // When set, the message key is this top-level field of the JSON line
  // (strings as is, other values as their JSON text); absent field: no key.
  std::optional<std::string> key_field;
  // When set, the message timestamp comes from this top-level field: epoch
  // milliseconds, or ISO-8601 text ("2026-11-21T08:00:00.275Z"). A line
  // without it (or with an unreadable one) gets the current time.
  std::optional<std::string> timestamp_field;
  // When set, every message goes to this partition; otherwise librdkafka's
  // partitioner spreads them (by key when there is one).
  std::optional<int32_t> partition;
  std::vector<std::pair<std::string, std::string>> properties;
};

struct ProduceReport {
  int64_t lines = 0;      // non-empty lines read
  int64_t delivered = 0;  // acknowledged by the broker
  int64_t failed = 0;     // reported as failed
  std::string first_error;
  int64_t missing_key = 0;        // lines without --key-field (sent without a key)
  int64_t missing_timestamp = 0;  // lines without --timestamp-field (sent with the produce time)
};

// Publishes every non-empty line of `in`. Returns an error when the producer
// cannot be created or when any message was not delivered.
Status ProduceLines(const ProducerOptions& options, std::istream& in, ProduceReport* report);

// The earliest offset still held per partition of `topic` (through a
// short-lived client): produce compares them before and after publishing, to
// say when the broker dropped messages (the embedded broker keeps about 5 MiB
// per partition).
Result<std::map<int32_t, int64_t>> LowWatermarks(const std::string& brokers,
                                                 const std::vector<std::pair<std::string, std::string>>& properties,
                                                 const std::string& topic);

// One message with explicit fields, for tests that need keys, tombstones or
// exact partitions. Synchronous: returns after the delivery report.
struct OutgoingMessage {
  std::optional<std::string> key;
  std::optional<std::string> value;  // nullopt: tombstone
  int32_t partition = -1;             // -1: let the partitioner choose
  int64_t timestamp = 0;              // 0: now
};
Status ProduceMessages(const std::string& brokers, const std::string& topic, const std::vector<OutgoingMessage>& messages);

}  // namespace sluice
