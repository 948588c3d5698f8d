// EmbeddedBroker implementation over rdkafka_mock.h.
#include "connectors/embedded_broker.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

namespace sluice {

Result<std::unique_ptr<EmbeddedBroker>> EmbeddedBroker::Start(int brokers) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  // The handle only hosts the cluster; keep it quiet.
  rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr));
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    return Status::KafkaError(std::string("cannot start the embedded broker: ") + errstr);
  }
  std::unique_ptr<EmbeddedBroker> broker(new EmbeddedBroker());
  broker->handle_ = rk;
  broker->cluster_ = rd_kafka_mock_cluster_new(rk, brokers);
  if (broker->cluster_ == nullptr) return Status::KafkaError("cannot start the embedded broker's listeners");
  return broker;
}

EmbeddedBroker::~EmbeddedBroker() {
  if (client_ != nullptr) rd_kafka_destroy(client_);
  if (cluster_ != nullptr) rd_kafka_mock_cluster_destroy(cluster_);
  if (handle_ != nullptr) rd_kafka_destroy(handle_);
}

Status EmbeddedBroker::CreateTopic(const std::string& topic, int partitions) {
  rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(cluster_, topic.c_str(), partitions, 1);
  if (err) return Status::KafkaError("cannot create topic '" + topic + "': " + rd_kafka_err2str(err));
  return Status::Ok();
}

Result<int64_t> EmbeddedBroker::LowWatermark(const std::string& topic, int32_t partition) {
  if (client_ == nullptr) {
    char errstr[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap().c_str(), errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr));
    client_ = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (client_ == nullptr) {
      rd_kafka_conf_destroy(conf);
      return Status::KafkaError(std::string("cannot watch the embedded broker: ") + errstr);
    }
  }
  int64_t low = 0, high = 0;
  rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(client_, topic.c_str(), partition, &low, &high, 5000);
  if (err) return Status::Unavailable(std::string("cannot read offsets: ") + rd_kafka_err2str(err));
  return low;
}

std::string EmbeddedBroker::bootstrap() const { return rd_kafka_mock_cluster_bootstraps(cluster_); }

}  // namespace sluice
