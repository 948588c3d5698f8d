// EmbeddedBroker: a Kafka-protocol broker in this process, for local
// development, the README demo and tests. It is librdkafka's mock cluster: it
// speaks the real wire protocol over TCP on 127.0.0.1 (consumer groups and
// offset commits included), keeps everything in memory, and keeps at most
// about 5 MiB per partition, dropping the oldest messages beyond that.
// Nothing else in sluice knows it is not a real Kafka.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"

struct rd_kafka_s;
struct rd_kafka_mock_cluster_s;

namespace sluice {

class EmbeddedBroker {
 public:
  // Starts a cluster of `brokers` brokers listening on ephemeral ports.
  static Result<std::unique_ptr<EmbeddedBroker>> Start(int brokers = 1);
  ~EmbeddedBroker();
  EmbeddedBroker(const EmbeddedBroker&) = delete;
  EmbeddedBroker& operator=(const EmbeddedBroker&) = delete;

  // Creates `topic` with `partitions` partitions (replication factor 1).
  Status CreateTopic(const std::string& topic, int partitions);

  // The bootstrap address list, "127.0.0.1:PORT[,...]".
  std::string bootstrap() const;

  // The earliest offset still held of `topic`[`partition`]: above 0 once
  // the broker dropped messages (it keeps about 5 MiB per partition).
  Result<int64_t> LowWatermark(const std::string& topic, int32_t partition);

  // For fault injection in tests (rd_kafka_mock_broker_set_down and friends).
  rd_kafka_mock_cluster_s* cluster() const { return cluster_; }

 private:
  EmbeddedBroker() = default;
  rd_kafka_s* handle_ = nullptr;  // owns the cluster's threads
  rd_kafka_mock_cluster_s* cluster_ = nullptr;
  rd_kafka_s* client_ = nullptr;  // a consumer of this cluster, for LowWatermark
};

}  // namespace sluice
