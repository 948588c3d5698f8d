// Producer implementation: one librdkafka producer, delivery reports counted
// in a callback, QUEUE_FULL handled by serving the reports and retrying.
#include "connectors/producer.h"

#include <librdkafka/rdkafka.h>
#include <rapidjson/document.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <memory>

namespace sluice {
namespace {

class Publisher {
 public:
  static Result<std::unique_ptr<Publisher>> Create(const std::string& brokers,
                                                   const std::vector<std::pair<std::string, std::string>>& properties,
                                                   ProduceReport* report) {
    char errstr[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    std::vector<std::pair<std::string, std::string>> settings = {
        {"bootstrap.servers", brokers}, {"linger.ms", "20"}, {"enable.idempotence", "false"},
        {"message.timeout.ms", "30000"}, {"log.connection.close", "false"}};
    settings.insert(settings.end(), properties.begin(), properties.end());
    for (const auto& [key, value] : settings) {
      if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return Status::InvalidConfig(key + ": " + errstr);
      }
    }
    rd_kafka_conf_set_dr_msg_cb(conf, &Publisher::OnDelivery);
    rd_kafka_conf_set_opaque(conf, report);
    // rd_kafka_new() takes ownership of conf only on success.
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == nullptr) {
      rd_kafka_conf_destroy(conf);
      return Status::KafkaError(std::string("cannot create producer: ") + errstr);
    }
    return std::unique_ptr<Publisher>(new Publisher(rk, report));
  }
  ~Publisher() { rd_kafka_destroy(rk_); }

  Status Send(const std::string& topic, const OutgoingMessage& message) {
    const void* key = message.key ? message.key->data() : nullptr;
    size_t key_len = message.key ? message.key->size() : 0;
    void* value = message.value ? const_cast<char*>(message.value->data()) : nullptr;
    size_t value_len = message.value ? message.value->size() : 0;
    while (true) {
      rd_kafka_resp_err_t err = rd_kafka_producev(
          rk_, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_PARTITION(message.partition),
          RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE(value, value_len),
          RD_KAFKA_V_TIMESTAMP(message.timestamp), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return Status::Ok();
      if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        return Status::KafkaError("cannot produce to '" + topic + "': " + rd_kafka_err2str(err));
      }
      rd_kafka_poll(rk_, 50);
    }
  }

  // Waits for every outstanding delivery report.
  Status Finish(int timeout_ms) {
    rd_kafka_resp_err_t err = rd_kafka_flush(rk_, timeout_ms);
    rd_kafka_poll(rk_, 0);
    if (err) {
      return Status::KafkaError(std::string("not every message was acknowledged: ") + rd_kafka_err2str(err) +
                                " (is the broker reachable at --brokers? `sluice broker` prints its address on the "
                                "first line of its output, and the address changes at every start)");
    }
    if (report_->failed > 0) {
      return Status::KafkaError(std::to_string(report_->failed) + " messages were not delivered: " + report_->first_error);
    }
    return Status::Ok();
  }

 private:
  Publisher(rd_kafka_t* rk, ProduceReport* report) : rk_(rk), report_(report) {}
  static void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque) {
    auto* report = static_cast<ProduceReport*>(opaque);
    if (msg->err) {
      if (report->failed++ == 0) report->first_error = rd_kafka_err2str(msg->err);
    } else {
      ++report->delivered;
    }
  }
  rd_kafka_t* rk_;
  ProduceReport* report_;
};

std::optional<std::string> FieldText(const rapidjson::Document& doc, const std::string& field) {
  auto member = doc.FindMember(field.c_str());
  if (member == doc.MemberEnd() || member->value.IsNull()) return std::nullopt;
  if (member->value.IsString()) return std::string(member->value.GetString(), member->value.GetStringLength());
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  member->value.Accept(writer);
  return std::string(buffer.GetString(), buffer.GetSize());
}

// Fills the key and timestamp of `message` from its JSON line. A timestamp
// field that is there but is not a time is an error: the message would get
// the produce time instead, silently.
Status ApplyFields(const ProducerOptions& options, const std::string& line, OutgoingMessage* message,
                   ProduceReport* report) {
  if (!options.key_field && !options.timestamp_field) return Status::Ok();
  rapidjson::Document doc;
  doc.Parse(line.data(), line.size());
  if (doc.HasParseError() || !doc.IsObject()) {
    if (options.key_field) ++report->missing_key;
    return Status::Ok();
  }
  if (options.key_field) {
    message->key = FieldText(doc, *options.key_field);
    if (!message->key) ++report->missing_key;
  }
  if (options.timestamp_field) {
    auto member = doc.FindMember(options.timestamp_field->c_str());
    if (member == doc.MemberEnd() || member->value.IsNull()) {
      ++report->missing_timestamp;
      return Status::Ok();
    }
    if (member->value.IsInt64() && member->value.GetInt64() > 0) {
      message->timestamp = member->value.GetInt64();
      return Status::Ok();
    }
    std::optional<int64_t> ms;
    if (member->value.IsString()) ms = ParseIsoMillis(member->value.GetString());
    if (!ms || *ms <= 0) {
      rapidjson::StringBuffer buffer;
      rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
      member->value.Accept(writer);
      return Status::InvalidInput("line " + std::to_string(report->lines + 1) + ": " + *options.timestamp_field + " = " +
                                  std::string(buffer.GetString(), buffer.GetSize()) +
                                  " is not a time (ISO-8601 such as 2026-11-21T08:34:19.706Z, or epoch milliseconds); "
                                  "the lines before it were sent, nothing after");
    }
    message->timestamp = *ms;
  }
  return Status::Ok();
}

}  // namespace

Status ProduceLines(const ProducerOptions& options, std::istream& in, ProduceReport* report) {
  *report = ProduceReport();
  Result<std::unique_ptr<Publisher>> publisher = Publisher::Create(options.brokers, options.properties, report);
  if (!publisher.ok()) return publisher.status();
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    OutgoingMessage message;
    message.value = line;
    Status fields = ApplyFields(options, line, &message, report);
    if (!fields.ok()) {
      Status flushed = (*publisher)->Finish(60000);
      (void)flushed;
      return fields;
    }
    if (options.partition) message.partition = *options.partition;
    SLUICE_RETURN_IF_ERROR((*publisher)->Send(options.topic, message));
    ++report->lines;
  }
  return (*publisher)->Finish(60000);
}

Status ProduceMessages(const std::string& brokers, const std::string& topic, const std::vector<OutgoingMessage>& messages) {
  ProduceReport report;
  Result<std::unique_ptr<Publisher>> publisher = Publisher::Create(brokers, {}, &report);
  if (!publisher.ok()) return publisher.status();
  for (const auto& message : messages) SLUICE_RETURN_IF_ERROR((*publisher)->Send(topic, message));
  return (*publisher)->Finish(60000);
}

Result<std::map<int32_t, int64_t>> LowWatermarks(const std::string& brokers,
                                                 const std::vector<std::pair<std::string, std::string>>& properties,
                                                 const std::string& topic) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), errstr, sizeof(errstr));
  rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof(errstr));
  for (const auto& [key, value] : properties) rd_kafka_conf_set(conf, key.c_str(), value.c_str(), errstr, sizeof(errstr));
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    return Status::KafkaError(errstr);
  }
  std::unique_ptr<rd_kafka_t, void (*)(rd_kafka_t*)> client(rk, rd_kafka_destroy);
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  const rd_kafka_metadata_t* metadata = nullptr;
  rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &metadata, 5000);
  rd_kafka_topic_destroy(rkt);
  if (err) return Status::Unavailable(rd_kafka_err2str(err));
  std::map<int32_t, int64_t> lows;
  if (metadata->topic_cnt == 1 && !metadata->topics[0].err) {
    for (int i = 0; i < metadata->topics[0].partition_cnt; ++i) {
      int32_t partition = metadata->topics[0].partitions[i].id;
      int64_t low = 0, high = 0;
      if (rd_kafka_query_watermark_offsets(rk, topic.c_str(), partition, &low, &high, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        lows[partition] = low;
      }
    }
  }
  rd_kafka_metadata_destroy(metadata);
  return lows;
}

}  // namespace sluice
