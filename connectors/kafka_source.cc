// KafkaSource implementation. See kafka_source.h for the contract.
#include "connectors/kafka_source.h"

#include <librdkafka/rdkafka.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <thread>

namespace sluice {
namespace {

using Clock = std::chrono::steady_clock;

struct PartitionListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* list) const { rd_kafka_topic_partition_list_destroy(list); }
};
using PartitionList = std::unique_ptr<rd_kafka_topic_partition_list_t, PartitionListDeleter>;

struct MessageDeleter {
  void operator()(rd_kafka_message_t* msg) const { rd_kafka_message_destroy(msg); }
};
using KafkaMessage = std::unique_ptr<rd_kafka_message_t, MessageDeleter>;

PartitionList ToList(const std::vector<TopicPartition>& partitions) {
  PartitionList list(rd_kafka_topic_partition_list_new(static_cast<int>(partitions.size())));
  for (const auto& [topic, partition] : partitions) rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), partition);
  return list;
}

Message ToMessage(const std::string& topic, const rd_kafka_message_t* msg) {
  Message m;
  m.topic = topic;
  m.partition = msg->partition;
  m.offset = msg->offset;
  rd_kafka_timestamp_type_t ts_type;
  int64_t ts = rd_kafka_message_timestamp(msg, &ts_type);
  if (ts_type != RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && ts >= 0) m.timestamp = ts;
  if (msg->key != nullptr) m.key.emplace(static_cast<const char*>(msg->key), msg->key_len);
  if (msg->payload != nullptr) m.value.emplace(static_cast<const char*>(msg->payload), msg->len);
  return m;
}

std::string Name(const TopicPartition& tp) { return tp.first + "[" + std::to_string(tp.second) + "]"; }

}  // namespace

struct RebalanceHook {
  static void Callback(rd_kafka_t*, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions, void* opaque) {
    static_cast<KafkaSource*>(opaque)->OnRebalance(err, partitions);
  }
};

bool IsSecretProperty(const std::string& name) {
  std::string lower = name;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const char* word : {"password", "secret", "token", "key"}) {
    if (lower.find(word) != std::string::npos) return true;
  }
  return false;
}

std::string RedactSecrets(std::string text, const std::vector<std::pair<std::string, std::string>>& properties) {
  for (const auto& [name, value] : properties) {
    if (!IsSecretProperty(name) || value.empty()) continue;
    for (size_t pos = text.find(value); pos != std::string::npos; pos = text.find(value, pos + 3)) {
      text.replace(pos, value.size(), "***");
    }
  }
  return text;
}

const std::set<std::string>& ReservedKafkaProperties() {
  static const std::set<std::string> reserved = {
      "bootstrap.servers", "metadata.broker.list", "group.id", "enable.auto.commit", "enable.auto.offset.store",
      "auto.offset.reset", "enable.partition.eof"};
  return reserved;
}

void KafkaSource::Deleter::operator()(rd_kafka_s* rk) const { rd_kafka_destroy(rk); }

KafkaSource::KafkaSource(KafkaSourceOptions options) : options_(std::move(options)) {}

KafkaSource::~KafkaSource() { Close(); }

std::string KafkaSource::Describe() const {
  std::string topics;
  for (const auto& topic : options_.topics) topics += (topics.empty() ? "" : ",") + topic;
  return "kafka " + topics + "@" + options_.brokers;
}

Status KafkaSource::Open(const StoredOffsetLookup& stored) {
  stored_lookup_ = stored;
  SLUICE_RETURN_IF_ERROR(Connect());
  return OpenRest();
}

Status KafkaSource::Connect() {
  if (rk_) return Status::Ok();
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  auto set = [&](const std::string& key, const std::string& value) -> Status {
    if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
      return Status::InvalidConfig("[kafka] " + key + ": " + RedactSecrets(errstr, {{key, value}}));
    }
    return Status::Ok();
  };
  std::vector<std::pair<std::string, std::string>> settings = {
      {"bootstrap.servers", options_.brokers},
      {"group.id", options_.group},
      {"client.id", "sluice"},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"enable.partition.eof", "true"},
      {"auto.offset.reset", "error"},
      // Bound what librdkafka prefetches: memory follows the batch, not the backlog.
      {"queued.max.messages.kbytes", "32768"},
      {"log.connection.close", "false"},
  };
  for (const auto& [key, value] : settings) {
    Status st = set(key, value);
    if (!st.ok()) {
      rd_kafka_conf_destroy(conf);
      return st;
    }
  }
  for (const auto& [key, value] : options_.properties) {
    Status st = set(key, value);
    if (!st.ok()) {
      rd_kafka_conf_destroy(conf);
      return st;
    }
  }
  rd_kafka_conf_set_opaque(conf, this);
  if (options_.assignment == KafkaSourceOptions::Assignment::kGroup) {
    rd_kafka_conf_set_rebalance_cb(conf, &RebalanceHook::Callback);
  }
  // rd_kafka_new() takes ownership of conf only on success.
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    return Status::KafkaError("cannot create Kafka consumer: " + RedactSecrets(errstr, options_.properties));
  }
  rk_.reset(rk);
  rd_kafka_poll_set_consumer(rk);
  SLUICE_RETURN_IF_ERROR(WaitForBrokers());
  spdlog::debug("kafka: brokers reachable at {}", options_.brokers);
  return Status::Ok();
}

Status KafkaSource::OpenRest() {
  rd_kafka_t* rk = rk_.get();
  Result<std::vector<TopicPartition>> partitions = ListPartitions();
  if (!partitions.ok()) return partitions.status();
  spdlog::debug("kafka: {} partitions", partitions->size());

  if (options_.assignment == KafkaSourceOptions::Assignment::kAll) {
    Result<OffsetMap> starts = ResolveStartOffsets(*partitions);
    if (!starts.ok()) return starts.status();
    PartitionList list = ToList(*partitions);
    for (int i = 0; i < list->cnt; ++i) {
      TopicPartition tp{list->elems[i].topic, list->elems[i].partition};
      list->elems[i].offset = starts->at(tp);
    }
    rd_kafka_resp_err_t err = rd_kafka_assign(rk, list.get());
    if (err) return Status::KafkaError(std::string("cannot assign partitions: ") + rd_kafka_err2str(err));
    for (const auto& tp : *partitions) assigned_.insert(tp);
    positions_ = *starts;
    start_offsets_ = *starts;
    return Status::Ok();
  }

  for (const auto& [key, value] : options_.properties) {
    if (key == "partition.assignment.strategy" && value.find("cooperative") != std::string::npos &&
        rd_kafka_version() < 0x020300ff) {
      spdlog::warn("librdkafka {} can abort in the cooperative-sticky assignor when a member closes before its first "
                   "assignment (librdkafka issue 4312, fixed in 2.3.0); prefer range or roundrobin with this version",
                   rd_kafka_version_str());
    }
  }
  PartitionList topics(rd_kafka_topic_partition_list_new(static_cast<int>(options_.topics.size())));
  for (const auto& topic : options_.topics) {
    rd_kafka_topic_partition_list_add(topics.get(), topic.c_str(), RD_KAFKA_PARTITION_UA);
  }
  rd_kafka_resp_err_t err = rd_kafka_subscribe(rk, topics.get());
  if (err) return Status::KafkaError(std::string("cannot subscribe: ") + rd_kafka_err2str(err));
  // Wait for the first assignment (possibly empty) so that "caught up" and the
  // first batch refer to partitions this process actually owns.
  auto deadline = Clock::now() + options_.connect_timeout + std::chrono::seconds(15);
  while (!rebalanced_ && Clock::now() < deadline) {
    // Messages polled here (right after the assignment) are kept for Fetch.
    SLUICE_RETURN_IF_ERROR(Poll(100, &pending_));
  }
  if (!rebalanced_) {
    return Status::KafkaError("joined no consumer group within the timeout: group '" + options_.group +
                              "' did not assign partitions (is another member stuck? session.timeout.ms applies)");
  }
  return Status::Ok();
}

Status KafkaSource::WaitForBrokers() {
  auto deadline = Clock::now() + options_.connect_timeout;
  std::string last_error = "no answer";
  while (true) {
    const rd_kafka_metadata_t* metadata = nullptr;
    auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    int timeout = static_cast<int>(std::clamp<int64_t>(remaining, 100, 2000));
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk_.get(), 0, nullptr, &metadata, timeout);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      bool has_brokers = metadata->broker_cnt > 0;
      rd_kafka_metadata_destroy(metadata);
      if (has_brokers) return Status::Ok();
      last_error = "metadata lists no brokers";
    } else {
      last_error = rd_kafka_err2str(err);
    }
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return Status::KafkaError("cannot reach brokers " + options_.brokers + " within " +
                            std::to_string(options_.connect_timeout.count() / 1000) + "s (" + last_error +
                            "); check [source] brokers or --brokers, and that the broker is up");
}

Result<std::vector<TopicPartition>> KafkaSource::ListPartitions() {
  std::vector<TopicPartition> partitions;
  for (const auto& topic : options_.topics) {
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk_.get(), topic.c_str(), nullptr);
    const rd_kafka_metadata_t* metadata = nullptr;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk_.get(), 0, rkt, &metadata, 10000);
    rd_kafka_topic_destroy(rkt);
    if (err) return Status::KafkaError("cannot read metadata of topic '" + topic + "': " + rd_kafka_err2str(err));
    std::unique_ptr<const rd_kafka_metadata_t, void (*)(const rd_kafka_metadata_t*)> guard(metadata,
                                                                                           rd_kafka_metadata_destroy);
    if (metadata->topic_cnt != 1 || metadata->topics[0].err) {
      rd_kafka_resp_err_t topic_err = metadata->topic_cnt == 1 ? metadata->topics[0].err : RD_KAFKA_RESP_ERR_UNKNOWN;
      return Status::KafkaError("topic '" + topic + "' is not available on " + options_.brokers + ": " +
                                rd_kafka_err2str(topic_err) + " (check [source] topic; sluice does not create topics)");
    }
    for (int i = 0; i < metadata->topics[0].partition_cnt; ++i) {
      partitions.emplace_back(topic, metadata->topics[0].partitions[i].id);
    }
  }
  std::sort(partitions.begin(), partitions.end());
  return partitions;
}

Result<OffsetMap> KafkaSource::ResolveStartOffsets(const std::vector<TopicPartition>& partitions) {
  OffsetMap starts;
  if (stored_lookup_) {
    Result<OffsetMap> stored = stored_lookup_(partitions);
    if (!stored.ok()) return stored.status();
    starts = *stored;
  }
  std::vector<TopicPartition> missing;
  for (const auto& tp : partitions) {
    if (!starts.count(tp)) missing.push_back(tp);
  }
  if (!missing.empty()) {
    spdlog::debug("kafka: reading the group's committed offsets for {} partitions", missing.size());
    PartitionList list = ToList(missing);
    rd_kafka_resp_err_t err = rd_kafka_committed(rk_.get(), list.get(), 10000);
    if (err) return Status::KafkaError(std::string("cannot read the group's committed offsets: ") + rd_kafka_err2str(err));
    for (int i = 0; i < list->cnt; ++i) {
      if (list->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR && list->elems[i].offset >= 0) {
        starts[{list->elems[i].topic, list->elems[i].partition}] = list->elems[i].offset;
      }
    }
  }
  spdlog::debug("kafka: start offsets resolved");
  for (const auto& tp : partitions) {
    if (starts.count(tp)) continue;
    int64_t low = 0, high = 0;
    rd_kafka_resp_err_t err =
        rd_kafka_query_watermark_offsets(rk_.get(), tp.first.c_str(), tp.second, &low, &high, 10000);
    if (err) return Status::KafkaError("cannot read offsets of " + Name(tp) + ": " + rd_kafka_err2str(err));
    starts[tp] = options_.start == KafkaSourceOptions::Start::kEarliest ? low : high;
  }
  return starts;
}

void KafkaSource::OnRebalance(int err, rd_kafka_topic_partition_list_t* partitions) {
  rd_kafka_t* rk = rk_.get();
  bool cooperative = std::strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
  std::vector<TopicPartition> tps;
  for (int i = 0; i < partitions->cnt; ++i) tps.emplace_back(partitions->elems[i].topic, partitions->elems[i].partition);
  rebalanced_ = true;
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    Result<OffsetMap> starts = ResolveStartOffsets(tps);
    if (!starts.ok()) {
      rebalance_error_ = starts.status();
      spdlog::error("rebalance: {}", starts.status().message());
    } else {
      for (int i = 0; i < partitions->cnt; ++i) {
        TopicPartition tp{partitions->elems[i].topic, partitions->elems[i].partition};
        partitions->elems[i].offset = starts->at(tp);
        positions_[tp] = starts->at(tp);
        start_offsets_[tp] = starts->at(tp);
        assigned_.insert(tp);
        at_end_.erase(tp);
      }
    }
    std::string names;
    for (const auto& tp : tps) names += " " + Name(tp);
    spdlog::info("group {} assigned{}", options_.group, names.empty() ? " nothing" : names);
    if (cooperative) {
      rd_kafka_error_t* error = rd_kafka_incremental_assign(rk, partitions);
      if (error) rd_kafka_error_destroy(error);
    } else {
      rd_kafka_assign(rk, partitions);
    }
    return;
  }
  // Revoked or lost: abandon anything fetched for these partitions; their new
  // owner starts from the offsets stored in the database.
  std::set<TopicPartition> revoked(tps.begin(), tps.end());
  DropBuffered(revoked);
  for (const auto& tp : revoked) {
    assigned_.erase(tp);
    at_end_.erase(tp);
    positions_.erase(tp);
    start_offsets_.erase(tp);
  }
  std::string names;
  for (const auto& tp : tps) names += " " + Name(tp);
  spdlog::info("group {} revoked{}", options_.group, names);
  if (cooperative) {
    rd_kafka_error_t* error = rd_kafka_incremental_unassign(rk, partitions);
    if (error) rd_kafka_error_destroy(error);
  } else {
    rd_kafka_assign(rk, nullptr);
  }
}

void KafkaSource::DropBuffered(const std::set<TopicPartition>& partitions) {
  auto revoked = [&](const Message& m) { return partitions.count({m.topic, m.partition}) > 0; };
  pending_.erase(std::remove_if(pending_.begin(), pending_.end(), revoked), pending_.end());
  if (fetching_ != nullptr) fetching_->erase(std::remove_if(fetching_->begin() + fetch_base_, fetching_->end(), revoked), fetching_->end());
}

bool KafkaSource::AllAtEnd() {
  if (assigned_.empty()) return options_.assignment == KafkaSourceOptions::Assignment::kAll;
  for (const auto& tp : assigned_) {
    if (!at_end_.count(tp)) return false;
    // An end-of-partition event is only news as of when it came: if the log
    // has grown since (as seen by EndOffsets or by fetch responses), more is
    // on its way.
    int64_t low = 0, high = 0;
    if (rd_kafka_get_watermark_offsets(rk_.get(), tp.first.c_str(), tp.second, &low, &high) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        high > known_ends_[tp]) {
      known_ends_[tp] = high;
    }
    auto position = positions_.find(tp);
    if (position != positions_.end() && position->second < known_ends_[tp]) return false;
  }
  return true;
}

Status KafkaSource::HandleOutOfRange(const TopicPartition& tp, int64_t offset) {
  int64_t low = 0, high = 0;
  rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(rk_.get(), tp.first.c_str(), tp.second, &low, &high, 10000);
  if (err) return Status::KafkaError("offset " + std::to_string(offset) + " of " + Name(tp) + " is out of range");
  if (offset >= low && offset <= high) return Status::Ok();  // transient; the fetcher retries
  if (offset > high) {
    return Status::KafkaError(Name(tp) + ": stored offset " + std::to_string(offset) + " is past the end of the log (" +
                              std::to_string(high) + "); was the topic recreated? Use `sluice reset` to re-position");
  }
  int64_t lost = low - offset;
  std::string what = Name(tp) + ": " + std::to_string(lost) + " messages (offsets " + std::to_string(offset) + ".." +
                     std::to_string(low - 1) + ") were deleted by the broker before sluice read them";
  if (options_.on_data_loss == KafkaSourceOptions::OnDataLoss::kFail) {
    return Status::KafkaError(what + "; set [source] on_data_loss = skip to continue from offset " + std::to_string(low));
  }
  spdlog::warn("{}; skipping to {} (on_data_loss = skip)", what, low);
  data_loss_notes_.push_back(what);
  return Reposition(tp, low);
}

Status KafkaSource::Reposition(const TopicPartition& tp, int64_t offset) {
  // After an out-of-range error librdkafka has stopped fetching the
  // partition and refuses a seek: assign it again at `offset`. The batch's
  // start offset stays where the stored offset is, so the commit check holds.
  bool cooperative = options_.assignment == KafkaSourceOptions::Assignment::kGroup &&
                     std::strcmp(rd_kafka_rebalance_protocol(rk_.get()), "COOPERATIVE") == 0;
  rd_kafka_error_t* error = nullptr;
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  if (cooperative) {
    PartitionList one = ToList({tp});
    one->elems[0].offset = offset;
    error = rd_kafka_incremental_unassign(rk_.get(), one.get());
    if (!error) error = rd_kafka_incremental_assign(rk_.get(), one.get());
  } else {
    PartitionList list = ToList(std::vector<TopicPartition>(assigned_.begin(), assigned_.end()));
    for (int i = 0; i < list->cnt; ++i) {
      TopicPartition each{list->elems[i].topic, list->elems[i].partition};
      auto position = positions_.find(each);
      list->elems[i].offset = each == tp ? offset : position != positions_.end() ? position->second : RD_KAFKA_OFFSET_INVALID;
    }
    err = rd_kafka_assign(rk_.get(), list.get());
  }
  if (error) {
    std::string what = rd_kafka_error_string(error);
    rd_kafka_error_destroy(error);
    return Status::KafkaError("cannot re-position " + Name(tp) + ": " + what);
  }
  if (err) return Status::KafkaError("cannot re-position " + Name(tp) + ": " + rd_kafka_err2str(err));
  positions_[tp] = offset;
  at_end_.erase(tp);
  return Status::Ok();
}

std::vector<std::string> KafkaSource::TakeNotes() {
  std::vector<std::string> notes;
  notes.swap(data_loss_notes_);
  return notes;
}

Status KafkaSource::Fetch(size_t max_messages, std::chrono::milliseconds max_wait, std::vector<Message>* out) {
  if (!rk_) return Status::KafkaError("source is not open");
  auto deadline = Clock::now() + max_wait;
  size_t taken = std::min(max_messages, pending_.size());
  out->insert(out->end(), std::make_move_iterator(pending_.begin()), std::make_move_iterator(pending_.begin() + taken));
  pending_.erase(pending_.begin(), pending_.begin() + taken);

  fetching_ = out;
  fetch_base_ = out->size() - taken;
  struct Reset {
    KafkaSource* self;
    ~Reset() { self->fetching_ = nullptr; }
  } reset{this};

  size_t limit = fetch_base_ + max_messages;
  while (out->size() < limit) {
    if (!deferred_error_.ok()) {
      Status error = deferred_error_;
      deferred_error_ = Status::Ok();
      return error;
    }
    if (AllAtEnd()) break;
    auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (remaining <= 0) break;
    SLUICE_RETURN_IF_ERROR(Poll(static_cast<int>(std::min<int64_t>(remaining, 100)), out));
  }
  return Status::Ok();
}

Status KafkaSource::Poll(int timeout_ms, std::vector<Message>* into) {
  KafkaMessage msg(rd_kafka_consumer_poll(rk_.get(), timeout_ms));
  if (!rebalance_error_.ok()) return rebalance_error_;
  if (!msg) return Status::Ok();
  if (msg->err) {
    if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      TopicPartition tp{rd_kafka_topic_name(msg->rkt), msg->partition};
      if (assigned_.count(tp)) {
        at_end_.insert(tp);
        positions_[tp] = std::max(positions_.count(tp) ? positions_[tp] : 0, msg->offset);
      }
      return Status::Ok();
    }
    if (msg->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET || msg->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) {
      if (msg->rkt == nullptr) return Status::KafkaError(rd_kafka_message_errstr(msg.get()));
      TopicPartition tp{rd_kafka_topic_name(msg->rkt), msg->partition};
      int64_t position = positions_.count(tp) ? positions_[tp] : msg->offset;
      return HandleOutOfRange(tp, position);
    }
    if (rd_kafka_fatal_error(rk_.get(), nullptr, 0)) {
      char reason[512];
      rd_kafka_fatal_error(rk_.get(), reason, sizeof(reason));
      return Status::KafkaError(std::string("fatal consumer error: ") + reason);
    }
    if (msg->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || msg->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) {
      return Status::KafkaError(std::string("consumer error: ") + rd_kafka_message_errstr(msg.get()));
    }
    // Transient (broker down, transport): librdkafka retries; the batch
    // carries on with what it has.
    spdlog::warn("kafka: {}", rd_kafka_message_errstr(msg.get()));
    return Status::Ok();
  }
  TopicPartition tp{rd_kafka_topic_name(msg->rkt), msg->partition};
  if (!assigned_.count(tp)) return Status::Ok();  // a straggler from before a revocation
  auto position = positions_.find(tp);
  if (position != positions_.end() && msg->offset < position->second) return Status::Ok();  // already delivered
  positions_[tp] = msg->offset + 1;
  at_end_.erase(tp);
  into->push_back(ToMessage(tp.first, msg.get()));
  return Status::Ok();
}

OffsetMap KafkaSource::Positions() const {
  // Messages fetched while idle are not consumed yet: the position of their
  // partition is the first of them, so the engine does not count them as done.
  OffsetMap positions = positions_;
  for (const auto& message : pending_) {
    auto it = positions.find({message.topic, message.partition});
    if (it != positions.end() && message.offset < it->second) it->second = message.offset;
  }
  return positions;
}

Result<std::vector<PartitionState>> KafkaSource::Inspect() {
  SLUICE_RETURN_IF_ERROR(Connect());
  Result<std::vector<TopicPartition>> partitions = ListPartitions();
  if (!partitions.ok()) return partitions.status();
  PartitionList list = ToList(*partitions);
  rd_kafka_resp_err_t err = rd_kafka_committed(rk_.get(), list.get(), 10000);
  if (err) return Status::KafkaError(std::string("cannot read the group's committed offsets: ") + rd_kafka_err2str(err));
  std::vector<PartitionState> states;
  for (int i = 0; i < list->cnt; ++i) {
    PartitionState state;
    state.partition = {list->elems[i].topic, list->elems[i].partition};
    if (list->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR && list->elems[i].offset >= 0) {
      state.committed = list->elems[i].offset;
    }
    err = rd_kafka_query_watermark_offsets(rk_.get(), list->elems[i].topic, list->elems[i].partition, &state.low,
                                           &state.high, 10000);
    if (err) return Status::KafkaError("cannot read offsets of " + Name(state.partition) + ": " + rd_kafka_err2str(err));
    states.push_back(state);
  }
  return states;
}

Result<OffsetMap> KafkaSource::OffsetsForTimestamp(int64_t timestamp_ms) {
  SLUICE_RETURN_IF_ERROR(Connect());
  Result<std::vector<TopicPartition>> partitions = ListPartitions();
  if (!partitions.ok()) return partitions.status();
  PartitionList list = ToList(*partitions);
  for (int i = 0; i < list->cnt; ++i) list->elems[i].offset = timestamp_ms;
  rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(rk_.get(), list.get(), 10000);
  if (err) return Status::KafkaError(std::string("cannot look up offsets by time: ") + rd_kafka_err2str(err));
  OffsetMap offsets;
  bool any_found = false, any_data = false;
  for (int i = 0; i < list->cnt; ++i) {
    TopicPartition tp{list->elems[i].topic, list->elems[i].partition};
    if (list->elems[i].err) {
      return Status::KafkaError("cannot look up " + Name(tp) + " by time: " + rd_kafka_err2str(list->elems[i].err));
    }
    int64_t low = 0, high = 0;
    err = rd_kafka_query_watermark_offsets(rk_.get(), tp.first.c_str(), tp.second, &low, &high, 10000);
    if (err) return Status::KafkaError("cannot read offsets of " + Name(tp) + ": " + rd_kafka_err2str(err));
    any_data = any_data || high > low;
    int64_t offset = list->elems[i].offset;
    if (offset >= 0) {
      any_found = true;
    } else {
      offset = high;  // no message at or after the time: the end of the log
    }
    offsets[tp] = offset;
  }
  // "Nothing at or after the time" everywhere is what a broker that cannot
  // look up by time answers too (librdkafka's mock cluster does); moving to
  // the end would skip everything silently, so say it instead.
  if (any_data && !any_found) {
    return Status::KafkaError("the broker found no message at or after that time in any partition; if that is "
                              "wrong, the broker cannot look up offsets by time (the embedded broker cannot). Use "
                              "--to latest to move to the end, or --partition/--offset");
  }
  return offsets;
}

Status KafkaSource::CommitGroupOffsets(const OffsetMap& next) {
  SLUICE_RETURN_IF_ERROR(Connect());
  return CommitOffsets(next);
}

Result<OffsetMap> KafkaSource::EndOffsets() {
  OffsetMap ends;
  if (assigned_.empty()) return ends;
  // One ListOffsets request for every partition ("latest" is timestamp -1).
  // Querying the watermarks one partition at a time waits behind each
  // broker's fetch long-poll once the partitions are assigned: tens of
  // seconds for 64 partitions.
  PartitionList list = ToList(std::vector<TopicPartition>(assigned_.begin(), assigned_.end()));
  for (int i = 0; i < list->cnt; ++i) list->elems[i].offset = RD_KAFKA_OFFSET_END;
  rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(rk_.get(), list.get(), 10000);
  if (err) return Status::KafkaError(std::string("cannot read the end offsets: ") + rd_kafka_err2str(err));
  for (int i = 0; i < list->cnt; ++i) {
    TopicPartition tp{list->elems[i].topic, list->elems[i].partition};
    if (list->elems[i].err || list->elems[i].offset < 0) {
      return Status::KafkaError("cannot read the end offset of " + Name(tp) + ": " +
                                rd_kafka_err2str(list->elems[i].err ? list->elems[i].err : RD_KAFKA_RESP_ERR__FAIL));
    }
    ends[tp] = list->elems[i].offset;
    known_ends_[tp] = std::max(known_ends_[tp], list->elems[i].offset);
  }
  return ends;
}

Status KafkaSource::CommitOffsets(const OffsetMap& next) {
  if (next.empty()) return Status::Ok();
  std::vector<TopicPartition> tps;
  for (const auto& [tp, offset] : next) {
    tps.push_back(tp);
    if (assigned_.count(tp)) start_offsets_[tp] = offset;
  }
  PartitionList list = ToList(tps);
  for (int i = 0; i < list->cnt; ++i) list->elems[i].offset = next.at({list->elems[i].topic, list->elems[i].partition});
  // Asynchronous commit, waited for a bounded time: a synchronous one blocks
  // for as long as the coordinator is unreachable, and with it a SIGTERM.
  std::unique_ptr<rd_kafka_queue_t, void (*)(rd_kafka_queue_t*)> queue(rd_kafka_queue_new(rk_.get()),
                                                                       rd_kafka_queue_destroy);
  rd_kafka_resp_err_t err = rd_kafka_commit_queue(rk_.get(), list.get(), queue.get(), nullptr, nullptr);
  if (err) return Status::KafkaError(std::string("offset commit to group failed: ") + rd_kafka_err2str(err));
  rd_kafka_event_t* event = rd_kafka_queue_poll(queue.get(), 5000);
  if (event == nullptr) return Status::KafkaError("offset commit to group did not finish within 5s");
  err = rd_kafka_event_error(event);
  rd_kafka_event_destroy(event);
  if (err) return Status::KafkaError(std::string("offset commit to group failed: ") + rd_kafka_err2str(err));
  return Status::Ok();
}

Status KafkaSource::Rewind(const OffsetMap& to) {
  std::vector<TopicPartition> tps;
  std::set<TopicPartition> moved;
  for (const auto& [tp, offset] : to) {
    if (!assigned_.count(tp)) continue;
    tps.push_back(tp);
    moved.insert(tp);
  }
  if (tps.empty()) return Status::Ok();
  DropBuffered(moved);
  PartitionList list = ToList(tps);
  for (int i = 0; i < list->cnt; ++i) list->elems[i].offset = to.at({list->elems[i].topic, list->elems[i].partition});
  rd_kafka_error_t* error = rd_kafka_seek_partitions(rk_.get(), list.get(), 10000);
  if (error) {
    std::string what = rd_kafka_error_string(error);
    rd_kafka_error_destroy(error);
    return Status::KafkaError("cannot seek: " + what);
  }
  for (int i = 0; i < list->cnt; ++i) {
    if (list->elems[i].err) {
      return Status::KafkaError("cannot seek " + Name({list->elems[i].topic, list->elems[i].partition}) + ": " +
                                rd_kafka_err2str(list->elems[i].err));
    }
  }
  for (const auto& tp : tps) {
    positions_[tp] = to.at(tp);
    start_offsets_[tp] = to.at(tp);
    at_end_.erase(tp);
  }
  return Status::Ok();
}

void KafkaSource::Idle(std::chrono::milliseconds duration, const std::atomic<bool>& stop) {
  auto deadline = Clock::now() + duration;
  // Pause fetching so the backlog waits on the broker, not in memory, while
  // polling keeps the group membership (and rebalances) alive.
  PartitionList paused = ToList(std::vector<TopicPartition>(assigned_.begin(), assigned_.end()));
  if (rk_ && paused->cnt > 0) rd_kafka_pause_partitions(rk_.get(), paused.get());
  while (!stop.load() && Clock::now() < deadline) {
    auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    int timeout = static_cast<int>(std::clamp<int64_t>(remaining, 1, 100));
    if (!rk_) {
      std::this_thread::sleep_for(std::chrono::milliseconds(timeout));
      continue;
    }
    Status st = Poll(timeout, &pending_);
    if (!st.ok()) {
      deferred_error_ = st;  // reported by the next Fetch
      break;
    }
  }
  if (rk_) {
    PartitionList resume = ToList(std::vector<TopicPartition>(assigned_.begin(), assigned_.end()));
    if (resume->cnt > 0) rd_kafka_resume_partitions(rk_.get(), resume.get());
  }
}

void KafkaSource::Close() {
  if (!rk_) return;
  // rd_kafka_consumer_close() waits without a limit while the coordinator is
  // unreachable, and with it a SIGTERM; close through a queue for a bounded
  // time instead, then let go without a clean close.
  rd_kafka_t* rk = rk_.get();  // still owned: OnRebalance uses rk_
  rd_kafka_queue_t* queue = rd_kafka_queue_new(rk);
  bool closed = false;
  if (rd_kafka_error_t* error = rd_kafka_consumer_close_queue(rk, queue)) {
    rd_kafka_error_destroy(error);
  } else {
    auto deadline = Clock::now() + std::chrono::seconds(5);
    while (!(closed = rd_kafka_consumer_closed(rk)) && Clock::now() < deadline) {
      rd_kafka_event_t* event = rd_kafka_queue_poll(queue, 100);
      if (event == nullptr) continue;
      if (rd_kafka_event_type(event) == RD_KAFKA_EVENT_REBALANCE) {
        OnRebalance(rd_kafka_event_error(event), rd_kafka_event_topic_partition_list(event));
      }
      rd_kafka_event_destroy(event);
    }
  }
  rd_kafka_queue_destroy(queue);
  if (!closed) spdlog::warn("kafka: the consumer did not close within 5s (brokers unreachable?); leaving anyway");
  rk_.release();
  rd_kafka_destroy_flags(rk, closed ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
}

}  // namespace sluice
