// KafkaSource implementation. See kafka_source.h for the contract.
#include "connectors/kafka_source.h"

#include <librdkafka/rdkafka.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <mutex>
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

// librdkafka's own log lines, through spdlog at matching levels, secrets
// redacted, and a line repeated within a minute (a broker that stays
// unreachable) summarised instead of printed again. Called from librdkafka's
// threads.
class KafkaLog {
 public:
  static void Callback(const rd_kafka_t* rk, int level, const char* facility, const char* text) {
    auto* source = static_cast<const KafkaSource*>(rd_kafka_opaque(rk));
    std::string message = text != nullptr ? text : "";
    if (source != nullptr) message = RedactSecrets(message, source->options().properties);
    spdlog::level::level_enum spd = level <= 3 ? spdlog::level::err
                                    : level == 4 ? spdlog::level::warn
                                    : level <= 6 ? spdlog::level::info
                                                 : spdlog::level::debug;
    if (!spdlog::should_log(spd)) return;
    std::string shape;  // the message without its numbers: times, ports and counts vary between repeats
    for (char c : message) {
      if (!std::isdigit(static_cast<unsigned char>(c))) shape += c;
    }
    shape = std::string(facility != nullptr ? facility : "") + "|" + shape;
    int64_t repeated = 0;
    {
      static std::mutex mutex;
      static std::map<std::string, std::pair<Clock::time_point, int64_t>> seen;
      std::lock_guard<std::mutex> lock(mutex);
      auto now = Clock::now();
      auto [it, fresh] = seen.try_emplace(shape, now, 0);
      if (!fresh && now - it->second.first < std::chrono::seconds(60)) {
        ++it->second.second;
        return;
      }
      repeated = it->second.second;
      it->second = {now, 0};
      if (seen.size() > 1000) seen.clear();
    }
    if (repeated > 0) {
      spdlog::log(spd, "kafka: {}: {} (and {} more like it in the last minute)", facility, message, repeated);
    } else {
      spdlog::log(spd, "kafka: {}: {}", facility, message);
    }
  }
};

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

std::string KafkaLibrary() { return std::string("librdkafka ") + rd_kafka_version_str(); }

KafkaSource::KafkaSource(KafkaSourceOptions options) : options_(std::move(options)) {}

KafkaSource::~KafkaSource() { Close(); }

std::string KafkaSource::Describe() const {
  std::string topics;
  for (const auto& topic : options_.topics) topics += (topics.empty() ? "" : ",") + topic;
  return "kafka " + topics + "@" + options_.brokers;
}

Status KafkaSource::Open(const StoredOffsetLookup& stored) {
  stored_lookup_ = stored;
  for (const auto& [key, value] : options_.properties) {
    std::string upper = value;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if ((key == "sasl.mechanism" || key == "sasl.mechanisms") && upper.find("SCRAM") != std::string::npos &&
        rd_kafka_version() < 0x020601ff) {
      spdlog::warn("librdkafka {} cannot authenticate with SCRAM to Apache Kafka 4.0 or later (its client nonce is "
                   "refused; fixed in librdkafka 2.6.1): against such brokers use SASL/PLAIN over TLS, or a newer "
                   "librdkafka",
                   rd_kafka_version_str());
    }
  }

  SLUICE_RETURN_IF_ERROR(Connect());
  return OpenRest();
}

Result<rd_kafka_conf_t*> KafkaSource::BuildConf(bool member) {
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
      {"client.id", "sluice"},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"enable.partition.eof", "true"},
      {"auto.offset.reset", "error"},
      // Bound what librdkafka prefetches: memory follows the batch, not the backlog.
      {"queued.max.messages.kbytes", "32768"},
      {"log.connection.close", "false"},
      // Partitions added to a topic are noticed within this time (group
      // members rebalance onto them; assignment = all refreshes per pass).
      {"topic.metadata.refresh.interval.ms", "10000"},
  };
  if (member) settings.emplace_back("group.id", options_.group);
  rd_kafka_conf_set_log_cb(conf, &KafkaLog::Callback);
  rd_kafka_conf_set_opaque(conf, this);
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
  return conf;
}

Status KafkaSource::Connect() {
  if (rk_) return Status::Ok();
  char errstr[512];
  Result<rd_kafka_conf_t*> built = BuildConf(true);
  if (!built.ok()) return built.status();
  rd_kafka_conf_t* conf = *built;
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
  known_partition_count_ = partitions->size();

  if (options_.assignment == KafkaSourceOptions::Assignment::kAll) {
    OffsetMap fetch_from;
    Result<OffsetMap> starts = ResolveStartOffsets(*partitions, &fetch_from);
    if (!starts.ok()) return starts.status();
    PartitionList list = ToList(*partitions);
    for (int i = 0; i < list->cnt; ++i) {
      TopicPartition tp{list->elems[i].topic, list->elems[i].partition};
      list->elems[i].offset = fetch_from.at(tp);
    }
    rd_kafka_resp_err_t err = rd_kafka_assign(rk, list.get());
    if (err) return Status::KafkaError(std::string("cannot assign partitions: ") + rd_kafka_err2str(err));
    for (const auto& tp : *partitions) assigned_.insert(tp);
    positions_ = fetch_from;
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
  auto say_at = Clock::now() + std::chrono::seconds(5);
  while (!rebalanced_ && Clock::now() < deadline) {
    if (options_.stop != nullptr && options_.stop->load()) {
      return Status::Aborted("stopped while waiting for group '" + options_.group + "' to assign partitions");
    }
    if (Clock::now() >= say_at) {
      spdlog::info("waiting for group {} to assign partitions (a member that stopped without leaving holds them "
                   "until its session times out)",
                   options_.group);
      say_at = deadline;
    }
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
  // Transient as far as the caller can tell: `run --every` retries it.
  return Status::Unavailable("cannot reach brokers " + options_.brokers + " within " +
                            std::to_string(options_.connect_timeout.count() / 1000) + "s (" + last_error +
                            "); check [source] brokers or --brokers, and that the broker is up");
}

Result<std::vector<TopicPartition>> KafkaSource::ListPartitions(rd_kafka_s* rk) {
  if (rk == nullptr) rk = rk_.get();
  std::vector<TopicPartition> partitions;
  for (const auto& topic : options_.topics) {
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
    const rd_kafka_metadata_t* metadata = nullptr;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &metadata, 10000);
    rd_kafka_topic_destroy(rkt);
    // A request that fails (brokers restarting, time-outs) is worth retrying.
    if (err) return Status::Unavailable("cannot read metadata of topic '" + topic + "': " + rd_kafka_err2str(err));
    std::unique_ptr<const rd_kafka_metadata_t, void (*)(const rd_kafka_metadata_t*)> guard(metadata,
                                                                                           rd_kafka_metadata_destroy);
    if (metadata->topic_cnt != 1 || metadata->topics[0].err) {
      rd_kafka_resp_err_t topic_err = metadata->topic_cnt == 1 ? metadata->topics[0].err : RD_KAFKA_RESP_ERR_UNKNOWN;
      if (topic_err == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE || topic_err == RD_KAFKA_RESP_ERR__TRANSPORT) {
        return Status::Unavailable("topic '" + topic + "' has no leader right now: " + rd_kafka_err2str(topic_err));
      }
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

namespace {

// ListOffsets for every partition in one request: `which` is
// RD_KAFKA_OFFSET_BEGINNING (-2, the log start) or RD_KAFKA_OFFSET_END (-1,
// the log end; the last stable offset under read_committed). Asking one
// partition at a time would wait behind each broker's fetch long-poll once
// the partitions are assigned: tens of seconds for 64 partitions.
Result<OffsetMap> ListOffsets(rd_kafka_t* rk, const std::vector<TopicPartition>& partitions, int64_t which) {
  OffsetMap offsets;
  if (partitions.empty()) return offsets;
  PartitionList list = ToList(partitions);
  for (int i = 0; i < list->cnt; ++i) list->elems[i].offset = which;
  const char* what = which == RD_KAFKA_OFFSET_END ? "end offset" : "start offset";
  rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(rk, list.get(), 10000);
  if (err) return Status::Unavailable(std::string("cannot read the partitions' ") + what + "s: " + rd_kafka_err2str(err));
  for (int i = 0; i < list->cnt; ++i) {
    TopicPartition tp{list->elems[i].topic, list->elems[i].partition};
    if (list->elems[i].err || list->elems[i].offset < 0) {
      return Status::Unavailable(std::string("cannot read the ") + what + " of " + Name(tp) + ": " +
                                 rd_kafka_err2str(list->elems[i].err ? list->elems[i].err : RD_KAFKA_RESP_ERR__FAIL));
    }
    offsets[tp] = list->elems[i].offset;
  }
  return offsets;
}

}  // namespace

Result<std::map<TopicPartition, std::pair<int64_t, int64_t>>> KafkaSource::Watermarks(
    const std::vector<TopicPartition>& partitions) {
  std::map<TopicPartition, std::pair<int64_t, int64_t>> marks;
  Result<rd_kafka_s*> meta = Meta();
  if (!meta.ok()) return meta.status();
  Result<OffsetMap> low = ListOffsets(*meta, partitions, RD_KAFKA_OFFSET_BEGINNING);
  if (!low.ok()) return low.status();
  Result<OffsetMap> high = ListOffsets(*meta, partitions, RD_KAFKA_OFFSET_END);
  if (!high.ok()) return high.status();
  for (const auto& [tp, offset] : *low) marks[tp].first = offset;
  for (const auto& [tp, offset] : *high) marks[tp].second = offset;
  return marks;
}

namespace {

// "orders[0,1,5]" for logs.
std::string NameAll(const std::vector<TopicPartition>& partitions) {
  std::map<std::string, std::string> by_topic;
  for (const auto& [topic, partition] : partitions) {
    std::string& list = by_topic[topic];
    list += (list.empty() ? "" : ",") + std::to_string(partition);
  }
  std::string out;
  for (const auto& [topic, list] : by_topic) out += (out.empty() ? "" : " ") + topic + "[" + list + "]";
  return out;
}

}  // namespace

Result<OffsetMap> KafkaSource::ResolveStartOffsets(const std::vector<TopicPartition>& partitions, OffsetMap* fetch_from) {
  OffsetMap all_stored;
  if (stored_lookup_) {
    Result<OffsetMap> stored = stored_lookup_();
    if (!stored.ok()) return stored.status();
    all_stored = *stored;
  }
  std::set<std::string> known_topics;
  for (const auto& [tp, offset] : all_stored) known_topics.insert(tp.first);
  auto marks = Watermarks(partitions);
  if (!marks.ok()) return marks.status();
  const bool skip = options_.on_data_loss == KafkaSourceOptions::OnDataLoss::kSkip;
  LastReadMap last_read;
  if (last_read_lookup_) {
    Result<LastReadMap> found = last_read_lookup_();
    if (!found.ok()) return found.status();
    last_read = *found;
  }

  // The group's committed offsets: the start under `start = group`, and a
  // warning when a pipeline with nothing stored meets a group that has them
  // (a new or replaced database; the data read so far exists elsewhere).
  std::map<TopicPartition, int64_t> committed;
  bool nothing_stored = true;
  for (const auto& tp : partitions) nothing_stored = nothing_stored && !all_stored.count(tp);
  if (nothing_stored && !options_.group.empty()) {
    PartitionList list = ToList(partitions);
    rd_kafka_resp_err_t err = rd_kafka_committed(rk_.get(), list.get(), 10000);
    if (err) {
      if (options_.start == KafkaSourceOptions::Start::kGroup) {
        return Status::Unavailable(std::string("cannot read the group's committed offsets: ") + rd_kafka_err2str(err));
      }
      spdlog::debug("kafka: cannot read the group's committed offsets: {}", rd_kafka_err2str(err));
    } else {
      for (int i = 0; i < list->cnt; ++i) {
        if (list->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR && list->elems[i].offset >= 0) {
          committed[{list->elems[i].topic, list->elems[i].partition}] = list->elems[i].offset;
        }
      }
    }
  }
  if (nothing_stored && known_topics.empty() && !committed.empty() && options_.start != KafkaSourceOptions::Start::kGroup) {
    const auto& [tp, offset] = *committed.begin();
    spdlog::warn("the database has no offsets for pipeline '{}', but consumer group '{}' has committed offsets ({} at {}, "
                 "{} partitions in all): the database is new or was replaced. Starting where [source] start says; if "
                 "the data read before should be kept, stop and restore the database, or set start = group to take "
                 "over from the group's offsets",
                 options_.group, options_.group, Name(tp), offset, committed.size());
  }

  OffsetMap starts;
  std::map<std::string, std::vector<TopicPartition>> reasons;
  for (const auto& tp : partitions) {
    auto [low, high] = marks->at(tp);
    auto stored = all_stored.find(tp);
    if (stored != all_stored.end()) {
      int64_t offset = stored->second;
      starts[tp] = offset;
      (*fetch_from)[tp] = offset;
      if (offset < 0) {
        return Status::DataLoss(Name(tp) + ": the stored offset " + std::to_string(offset) +
                                " is impossible (offsets are never negative; was _sluice_offsets edited by hand?); "
                                "use `sluice reset` to choose where to continue");
      }
      if (offset < low) {
        std::string what = Name(tp) + ": " + std::to_string(low - offset) + " messages (offsets " +
                           std::to_string(offset) + ".." + std::to_string(low - 1) +
                           ") were deleted by the broker before sluice read them";
        if (!skip) {
          return Status::DataLoss(what + "; set [source] on_data_loss = skip to continue from offset " +
                                  std::to_string(low) + ", or use `sluice reset`");
        }
        spdlog::warn("{}; skipping to {} (on_data_loss = skip)", what, low);
        data_loss_notes_.push_back(what);
        (*fetch_from)[tp] = low;
      } else if (offset > high) {
        std::string what = Name(tp) + ": the stored offset " + std::to_string(offset) +
                           " is past the end of the log (" + std::to_string(high) +
                           "): the log is not the one this pipeline read (topic deleted and recreated, or a database "
                           "from another cluster)";
        if (!skip) {
          return Status::DataLoss(what + "; nothing was consumed. Use `sluice reset` to choose where to continue "
                                  "(--to earliest reads the new log from its start)");
        }
        spdlog::warn("{}; continuing from the new log's start {} (on_data_loss = skip)", what, low);
        data_loss_notes_.push_back(what + "; continued from " + std::to_string(low));
        (*fetch_from)[tp] = low;
      } else {
        // Inside the log: is it still the log this pipeline read? A topic
        // deleted and recreated that has grown past the stored offset looks
        // fine by its offsets alone; the last message read tells.
        auto last = last_read.find(tp);
        if (last != last_read.end() && last->second.first >= low && last->second.first < offset) {
          Result<bool> same = SameMessage(tp, last->second.first, last->second.second);
          if (!same.ok()) return same.status();
          if (!*same) {
            std::string what = Name(tp) + ": the message at offset " + std::to_string(last->second.first) +
                               " is not the one this pipeline read there: the log is not the one this pipeline read "
                               "(topic deleted and recreated, or a database from another cluster)";
            if (!skip) {
              return Status::DataLoss(what + "; nothing was consumed. Use `sluice reset` to choose where to continue "
                                      "(--to earliest reads the new log from its start)");
            }
            spdlog::warn("{}; continuing from the new log's start {} (on_data_loss = skip)", what, low);
            data_loss_notes_.push_back(what + "; continued from " + std::to_string(low));
            (*fetch_from)[tp] = low;
          }
        }
      }
      continue;
    }
    int64_t start = low;
    std::string reason;
    if (known_topics.count(tp.first)) {
      reason = "a partition added after the pipeline started: from its earliest offset";
    } else if (options_.start == KafkaSourceOptions::Start::kLatest) {
      start = high;
      reason = "nothing stored: from the log end (start = latest)";
    } else if (options_.start == KafkaSourceOptions::Start::kGroup) {
      auto found = committed.find(tp);
      if (found != committed.end() && found->second >= low && found->second <= high) {
        start = found->second;
        reason = "nothing stored: from the group's committed offset (start = group)";
      } else if (found != committed.end()) {
        reason = "nothing stored: the group's committed offset " + std::to_string(found->second) +
                 " is outside the log, so from its earliest offset (start = group)";
      } else {
        reason = "nothing stored and nothing committed: from the earliest offset (start = group)";
      }
    } else {
      reason = "nothing stored: from the earliest offset (start = earliest)";
    }
    starts[tp] = start;
    (*fetch_from)[tp] = start;
    reasons[reason].push_back(tp);
  }
  for (const auto& [reason, tps] : reasons) {
    std::string offsets;
    for (const auto& tp : tps) offsets += (offsets.empty() ? "" : " ") + Name(tp) + "=" + std::to_string(starts[tp]);
    spdlog::info("starting {} ({}); stored with the next batch", tps.size() <= 8 ? offsets : NameAll(tps), reason);
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
    OffsetMap fetch_from;
    Result<OffsetMap> starts = ResolveStartOffsets(tps, &fetch_from);
    if (!starts.ok()) {
      // Fatal for this process: the next poll returns it. The partitions are
      // still assigned (at no position) so that the group's protocol goes on
      // until the consumer closes.
      rebalance_error_ = starts.status();
    } else {
      for (int i = 0; i < partitions->cnt; ++i) {
        TopicPartition tp{partitions->elems[i].topic, partitions->elems[i].partition};
        partitions->elems[i].offset = fetch_from.at(tp);
        positions_[tp] = fetch_from.at(tp);
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
      if (error) {
        if (rebalance_error_.ok()) {
          rebalance_error_ = Status::KafkaError(std::string("cannot take the assigned partitions: ") + rd_kafka_error_string(error));
        }
        rd_kafka_error_destroy(error);
      }
    } else {
      rd_kafka_resp_err_t assign_err = rd_kafka_assign(rk, partitions);
      if (assign_err && rebalance_error_.ok()) {
        rebalance_error_ = Status::KafkaError(std::string("cannot take the assigned partitions: ") + rd_kafka_err2str(assign_err));
      }
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
  fetched_.erase(std::remove_if(fetched_.begin(), fetched_.end(), revoked), fetched_.end());
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
  auto marks = Watermarks({tp});
  if (!marks.ok()) return marks.status().WithContext("offset " + std::to_string(offset) + " of " + Name(tp) + " is out of range");
  auto [low, high] = marks->at(tp);
  if (offset >= low && offset <= high) {
    // Inside the log (the log start moved under the fetch, or a leader
    // change): librdkafka has stopped fetching this partition, so assign it
    // again at the same offset. Give up, naming it, if that keeps failing.
    auto since = out_of_range_since_.try_emplace(tp, Clock::now()).first->second;
    if (Clock::now() - since > options_.connect_timeout) {
      return Status::KafkaError(Name(tp) + ": the broker kept answering 'offset out of range' for offset " +
                                std::to_string(offset) + " inside the log (" + std::to_string(low) + ".." +
                                std::to_string(high) + ") for " + std::to_string(options_.connect_timeout.count() / 1000) +
                                "s; the partition cannot be read");
    }
    spdlog::warn("kafka: {}: offset {} reported out of range inside the log ({}..{}); fetching it again", Name(tp), offset,
                 low, high);
    return Reposition(tp, offset);
  }
  const bool skip = options_.on_data_loss == KafkaSourceOptions::OnDataLoss::kSkip;
  if (offset > high) {
    std::string what = Name(tp) + ": the position " + std::to_string(offset) + " is past the end of the log (" +
                       std::to_string(high) + "): the log is not the one this pipeline read (topic deleted and recreated?)";
    if (!skip) return Status::DataLoss(what + "; use `sluice reset` to choose where to continue");
    spdlog::warn("{}; continuing from the new log's start {} (on_data_loss = skip)", what, low);
    data_loss_notes_.push_back(what + "; continued from " + std::to_string(low));
    return Reposition(tp, low);
  }
  int64_t lost = low - offset;
  std::string what = Name(tp) + ": " + std::to_string(lost) + " messages (offsets " + std::to_string(offset) + ".." +
                     std::to_string(low - 1) + ") were deleted by the broker before sluice read them";
  if (!skip) {
    return Status::DataLoss(what + "; set [source] on_data_loss = skip to continue from offset " + std::to_string(low));
  }
  spdlog::warn("{}; skipping to {} (on_data_loss = skip)", what, low);
  data_loss_notes_.push_back(what);
  return Reposition(tp, low);
}

Result<bool> KafkaSource::SameMessage(const TopicPartition& tp, int64_t offset, int64_t fingerprint) {
  Result<rd_kafka_s*> meta = Meta();
  if (!meta.ok()) return meta.status();
  // The simple consumer API reads one partition without a group.
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(*meta, tp.first.c_str(), nullptr);
  if (rkt == nullptr) return true;
  std::unique_ptr<rd_kafka_topic_t, void (*)(rd_kafka_topic_t*)> topic(rkt, rd_kafka_topic_destroy);
  if (rd_kafka_consume_start(rkt, tp.second, offset) != 0) return true;
  bool same = true;
  auto deadline = Clock::now() + std::min<std::chrono::milliseconds>(options_.connect_timeout, std::chrono::seconds(10));
  while (Clock::now() < deadline) {
    KafkaMessage msg(rd_kafka_consume(rkt, tp.second, 200));
    if (!msg) continue;
    if (msg->err) break;  // end of the partition or an error: cannot tell
    if (msg->offset == offset) same = Fingerprint(ToMessage(tp.first, msg.get())) == fingerprint;
    break;  // a later offset: the message was compacted away; cannot tell
  }
  rd_kafka_consume_stop(rkt, tp.second);
  if (!same) spdlog::debug("kafka: {} offset {}: fingerprint differs", Name(tp), offset);
  return same;
}

Result<rd_kafka_s*> KafkaSource::Meta() {
  // Lookups (metadata, watermarks) through a connection of their own: on the
  // consumer's, a request can wait behind fetch long-polls for seconds.
  if (!meta_) {
    Result<rd_kafka_conf_t*> conf = BuildConf(false);
    if (!conf.ok()) return conf.status();
    char errstr[512];
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, *conf, errstr, sizeof(errstr));
    if (rk == nullptr) {
      rd_kafka_conf_destroy(*conf);
      return Status::KafkaError("cannot create a Kafka client: " + RedactSecrets(errstr, options_.properties));
    }
    meta_.reset(rk);
  }
  return meta_.get();
}

Status KafkaSource::Refresh() {
  if (!rk_) return Status::Ok();
  Result<rd_kafka_s*> meta = Meta();
  if (!meta.ok()) return meta.status();
  Result<std::vector<TopicPartition>> partitions = ListPartitions(*meta);
  if (!partitions.ok()) return partitions.status();
  if (options_.assignment == KafkaSourceOptions::Assignment::kGroup) {
    // librdkafka 2.0 notices a topic's new partitions only when its periodic
    // metadata refresh happens to cover the topic: subscribe again, which
    // makes the group rebalance onto every partition at once.
    if (partitions->size() > known_partition_count_) {
      if (known_partition_count_ > 0) {
        spdlog::info("kafka: the topics have {} partitions now ({} before); rejoining group {} to take the new ones",
                     partitions->size(), known_partition_count_, options_.group);
        PartitionList topics(rd_kafka_topic_partition_list_new(static_cast<int>(options_.topics.size())));
        for (const auto& topic : options_.topics) {
          rd_kafka_topic_partition_list_add(topics.get(), topic.c_str(), RD_KAFKA_PARTITION_UA);
        }
        rd_kafka_resp_err_t err = rd_kafka_subscribe(rk_.get(), topics.get());
        if (err) return Status::KafkaError(std::string("cannot subscribe again: ") + rd_kafka_err2str(err));
      }
      known_partition_count_ = partitions->size();
    }
    return Status::Ok();
  }
  std::vector<TopicPartition> added;
  for (const auto& tp : *partitions) {
    if (!assigned_.count(tp)) added.push_back(tp);
  }
  if (added.empty()) return Status::Ok();
  // The lookup client's topic objects still have the old partition count:
  // start it afresh so it can look the new partitions up.
  meta_.reset();
  OffsetMap fetch_from;
  Result<OffsetMap> starts = ResolveStartOffsets(added, &fetch_from);
  if (!starts.ok()) return starts.status();
  // Assign the whole set again: the partitions already read continue from
  // their positions (messages buffered past them were already delivered).
  for (const auto& tp : added) {
    assigned_.insert(tp);
    positions_[tp] = fetch_from.at(tp);
    start_offsets_[tp] = starts->at(tp);
  }
  PartitionList list = ToList(std::vector<TopicPartition>(assigned_.begin(), assigned_.end()));
  for (int i = 0; i < list->cnt; ++i) list->elems[i].offset = positions_.at({list->elems[i].topic, list->elems[i].partition});
  rd_kafka_resp_err_t err = rd_kafka_assign(rk_.get(), list.get());
  if (err) return Status::KafkaError(std::string("cannot assign the new partitions: ") + rd_kafka_err2str(err));
  spdlog::info("kafka: {} new partition{} {}; reading them from their earliest offsets", added.size(),
               added.size() == 1 ? "" : "s", NameAll(added));
  return Status::Ok();
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
  // The batch is gathered in the source's own buffer: a revocation during a
  // poll drops its partitions' messages from there (DropBuffered), and the
  // caller's vector is only touched once, at the end.
  fetched_.clear();
  // Gather into the caller's own storage when it is empty (the engine
  // reuses one batch vector), so only one batch-sized buffer exists.
  if (out->empty()) fetched_.swap(*out);
  size_t taken = std::min(max_messages, pending_.size());
  fetched_.insert(fetched_.end(), std::make_move_iterator(pending_.begin()),
                  std::make_move_iterator(pending_.begin() + taken));
  pending_.erase(pending_.begin(), pending_.begin() + taken);
  Status status = [&]() -> Status {
    while (fetched_.size() < max_messages) {
      if (!deferred_error_.ok()) {
        Status error = deferred_error_;
        deferred_error_ = Status::Ok();
        return error;
      }
      if (AllAtEnd()) break;
      auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (remaining <= 0) break;
      SLUICE_RETURN_IF_ERROR(Poll(static_cast<int>(std::min<int64_t>(remaining, 100)), &fetched_));
    }
    return Status::Ok();
  }();
  if (!status.ok()) {
    // Nothing fetched is lost with the error: served first by the next Fetch.
    pending_.insert(pending_.begin(), std::make_move_iterator(fetched_.begin()), std::make_move_iterator(fetched_.end()));
    fetched_.clear();
    return status;
  }
  if (out->empty()) {
    out->swap(fetched_);
  } else {
    out->insert(out->end(), std::make_move_iterator(fetched_.begin()), std::make_move_iterator(fetched_.end()));
  }
  fetched_.clear();
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
  out_of_range_since_.erase(tp);
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
  // In a lookup by time, -1 and -2 are not times but the "latest" and
  // "earliest" markers; no message has a timestamp before 1970.
  if (timestamp_ms < 0) {
    return Status::InvalidInput("cannot look up offsets by a time before 1970-01-01T00:00:00Z (" +
                                std::to_string(timestamp_ms) + " ms); use earliest to start at the log's beginning");
  }
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
  Result<rd_kafka_s*> meta = Meta();
  if (!meta.ok()) return meta.status();
  Result<OffsetMap> listed =
      ListOffsets(*meta, std::vector<TopicPartition>(assigned_.begin(), assigned_.end()), RD_KAFKA_OFFSET_END);
  if (!listed.ok()) return listed.status();
  OffsetMap ends = std::move(*listed);
  for (const auto& [tp, end] : ends) known_ends_[tp] = std::max(known_ends_[tp], end);
  // A position past the log end means the log is not the one read so far
  // (the topic was deleted and recreated): the fetcher may never say so
  // once the pass thinks it is caught up, so check here.
  OffsetMap positions = Positions();
  for (const auto& [tp, end] : ends) {
    auto position = positions.find(tp);
    if (position != positions.end() && position->second > end) {
      SLUICE_RETURN_IF_ERROR(HandleOutOfRange(tp, position->second));
      ends[tp] = end;
    }
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
  meta_.reset();
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
