// The kafka tier's broker: a real Apache Kafka (KRaft) started once per test
// binary by tests/kafka/kafka_broker.py, plus admin and inspection helpers
// written with librdkafka's admin API (no JVM start per call).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace sluice::testing {

class RealKafka {
 public:
  // The broker of this test binary, started by the global environment; null
  // when it could not start (the environment's failure says why).
  static RealKafka* Get();

  // Starts kafka_broker.py serve (fetching the jars with Maven when they are
  // not cached yet); false with *error on failure.
  bool Start(bool tls, std::string* error);
  // Closes the tool's stdin: it stops the broker and exits.
  void Shutdown();

  // Stops the broker process (SIGTERM, or SIGKILL when `kill`), keeping its
  // data, and starts it again with the same ports and data.
  bool StopBroker(bool kill, std::string* error);
  bool StartBroker(std::string* error);

  const std::string& bootstrap() const { return bootstrap_; }
  const std::string& ssl_bootstrap() const { return ssl_bootstrap_; }
  const std::string& sasl_ssl_bootstrap() const { return sasl_ssl_bootstrap_; }
  const std::string& ca_file() const { return ca_file_; }

  // Admin (librdkafka admin API).
  Status CreateTopic(const std::string& topic, int partitions,
                     const std::map<std::string, std::string>& configs = {});
  Status DeleteTopic(const std::string& topic);
  Status CreatePartitions(const std::string& topic, int total);
  // Sets the topic's dynamic configs to exactly `configs` (AlterConfigs replaces the whole set).
  Status AlterTopicConfigs(const std::string& topic, const std::map<std::string, std::string>& configs);
  // Waits until the broker's metadata shows `topic` with `partitions` partitions (0: absent).
  bool WaitForPartitions(const std::string& topic, int partitions, int timeout_ms = 20000);

  // Per partition: (low watermark, high watermark), read_uncommitted high
  // watermark (the log end, markers included).
  std::map<int32_t, std::pair<int64_t, int64_t>> Watermarks(const std::string& topic, int partitions);
  // The broker's answer to "first offset with timestamp >= ms" (-1: none, the log end).
  std::map<int32_t, int64_t> OffsetsForTime(const std::string& topic, int partitions, int64_t ms);

 private:
  bool ReadLine(std::string* line, int timeout_ms);
  bool Command(const std::string& command, std::string* reply, int timeout_ms);
  bool ParseReady(const std::string& line, std::string* error);

  pid_t pid_ = -1;
  int to_tool_ = -1;
  int from_tool_ = -1;
  std::string buffered_;
  std::string bootstrap_, ssl_bootstrap_, sasl_ssl_bootstrap_, ca_file_;
};

// Where the broker tool keeps its data and logs for this run (under the build directory).
std::string KafkaWorkDir();

}  // namespace sluice::testing
