// KafkaSource: a BatchSource over a librdkafka consumer. Uses
// rd_kafka_consumer_poll one message at a time (librdkafka 2.0's batch consume
// API can lose or repeat messages around seek, pause and rebalances). Offsets
// are never auto-committed or auto-stored; auto.offset.reset is "error", so a
// partition whose position fell off the log is reported, never skipped
// silently.
//
// Threading: a KafkaSource belongs to the one thread that calls its methods
// (the engine's, or a fetch thread later). librdkafka calls back into it only
// from inside rd_kafka_consumer_poll and the queue polls in Poll(), Idle()
// and Close(), so on that thread: rebalances (OnRebalance: positions, the
// StoredOffsetLookup, DropBuffered) mutate only the source's own state and
// buffers (pending_, fetched_); the caller's batch vector is written once,
// at the end of Fetch(). The only callback from librdkafka's own threads is
// the log callback, which touches nothing but spdlog and its own
// mutex-guarded table. The lookups passed in (stored offsets, last read) run
// on the polling thread: a fetch thread would give them their own database
// connection.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "connectors/source.h"

struct rd_kafka_s;
struct rd_kafka_topic_partition_list_s;
struct rd_kafka_conf_s;

namespace sluice {

struct KafkaSourceOptions {
  // Where a pipeline begins a partition it has nothing stored for: the
  // earliest or latest offset when it is first deployed, or the group's
  // committed offsets (taking over from another consumer; else earliest).
  enum class Start { kEarliest, kLatest, kGroup };
  enum class Assignment { kAll, kGroup };
  enum class OnDataLoss { kFail, kSkip };

  std::string brokers;
  std::vector<std::string> topics;
  std::string group;
  Start start = Start::kEarliest;
  Assignment assignment = Assignment::kAll;
  OnDataLoss on_data_loss = OnDataLoss::kFail;
  // librdkafka properties passed through unchanged ([kafka] section).
  std::vector<std::pair<std::string, std::string>> properties;
  // How long Open() keeps trying to reach the brokers before failing.
  std::chrono::milliseconds connect_timeout{30000};
  // When set and true, Open() stops waiting for a group assignment (a
  // signal asked the process to stop).
  const std::atomic<bool>* stop = nullptr;
};

// True for property names that hold secrets (their name contains password,
// secret, token or key, e.g. ssl.key.password): their values are shown as
// *** everywhere sluice prints them.
bool IsSecretProperty(const std::string& name);

// `text` with every occurrence of the values of secret `properties` replaced
// by ***, for messages that may quote a value back (librdkafka's errors do).
std::string RedactSecrets(std::string text, const std::vector<std::pair<std::string, std::string>>& properties);

// librdkafka properties that sluice owns: setting them in [kafka] would break
// the offset protocol, so the config loader rejects them.
const std::set<std::string>& ReservedKafkaProperties();

// "librdkafka 2.0.2": the Kafka client library sluice is built with.
std::string KafkaLibrary();

// One partition as `sluice status` and `sluice reset` see it.
struct PartitionState {
  TopicPartition partition;
  int64_t low = 0;                   // earliest offset still on the broker
  int64_t high = 0;                  // log end offset
  std::optional<int64_t> committed;  // the group's committed offset
};

class KafkaSource : public BatchSource {
 public:
  explicit KafkaSource(KafkaSourceOptions options);
  ~KafkaSource() override;
  KafkaSource(const KafkaSource&) = delete;
  KafkaSource& operator=(const KafkaSource&) = delete;

  Status Open(const StoredOffsetLookup& stored) override;
  Status Refresh() override;
  void SetLastReadLookup(LastReadLookup lookup) override { last_read_lookup_ = std::move(lookup); }
  OffsetMap NextOffsets() const override { return Positions(); }
  Status Fetch(size_t max_messages, std::chrono::milliseconds max_wait, std::vector<Message>* out) override;
  OffsetMap Positions() const override;
  OffsetMap StartOffsets() const override { return start_offsets_; }
  Result<OffsetMap> EndOffsets() override;
  Status CommitOffsets(const OffsetMap& next) override;
  Status Rewind(const OffsetMap& to) override;
  void Idle(std::chrono::milliseconds duration, const std::atomic<bool>& stop) override;
  void Close() override;
  std::string Describe() const override;
  const KafkaSourceOptions& options() const { return options_; }

  // Tools that inspect or move offsets without consuming. Each connects on
  // first use (without joining the group).
  Result<std::vector<PartitionState>> Inspect();
  // The first offset at or after `timestamp_ms` per partition (the end of the
  // log where there is none).
  Result<OffsetMap> OffsetsForTimestamp(int64_t timestamp_ms);
  Status CommitGroupOffsets(const OffsetMap& next);

  // Gaps skipped because of on_data_loss = skip since the last call, as
  // human-readable notes.
  std::vector<std::string> TakeNotes() override;

 private:
  struct Deleter {
    void operator()(rd_kafka_s* rk) const;
  };
  friend struct RebalanceHook;  // librdkafka's rebalance callback, in the .cc
  void OnRebalance(int err, rd_kafka_topic_partition_list_s* partitions);
  Status Connect();   // creates the consumer and waits for the brokers
  Status OpenRest();  // assigns or subscribes, after Connect
  Status WaitForBrokers();
  // The topics' partitions, asked of `rk` (default: the consumer).
  Result<std::vector<TopicPartition>> ListPartitions(rd_kafka_s* rk = nullptr);
  // librdkafka configuration: the pipeline's properties and sluice's own;
  // `member` adds the consumer group.
  Result<struct rd_kafka_conf_s*> BuildConf(bool member);
  // Reads the message at `offset` of `tp` again (through the lookup client)
  // and compares its fingerprint; false when it differs. Ok(true) when it
  // cannot tell (compacted away, nothing there).
  Result<bool> SameMessage(const TopicPartition& tp, int64_t offset, int64_t fingerprint);
  // A second client, created on first use, for metadata and offset lookups.
  Result<rd_kafka_s*> Meta();
  // Resolves where each partition starts: its stored offset, checked against
  // the log (data loss and a log that is not the one the pipeline read are
  // refused, or skipped with a note under on_data_loss = skip), else where
  // `start` says (a partition added later: its earliest offset). Returns the
  // offsets the batches start from (the stored ones, for the commit check)
  // and sets *fetch_from to where fetching begins.
  Result<OffsetMap> ResolveStartOffsets(const std::vector<TopicPartition>& partitions, OffsetMap* fetch_from);
  // Low and high watermarks of `partitions`, in two ListOffsets requests.
  Result<std::map<TopicPartition, std::pair<int64_t, int64_t>>> Watermarks(const std::vector<TopicPartition>& partitions);
  // Polls once and handles what comes: a message is appended to `into`, an
  // end-of-partition event updates positions, errors are returned.
  Status Poll(int timeout_ms, std::vector<Message>* into);
  // Assigns `tp` again, at `offset` (on_data_loss = skip).
  Status Reposition(const TopicPartition& tp, int64_t offset);
  Status HandleOutOfRange(const TopicPartition& tp, int64_t offset);
  bool AllAtEnd();
  void DropBuffered(const std::set<TopicPartition>& partitions);

  KafkaSourceOptions options_;
  std::unique_ptr<rd_kafka_s, Deleter> rk_;
  std::unique_ptr<rd_kafka_s, Deleter> meta_;  // metadata lookups, apart from the consumer's fetches
  StoredOffsetLookup stored_lookup_;
  LastReadLookup last_read_lookup_;
  std::set<TopicPartition> assigned_;
  std::set<TopicPartition> at_end_;  // an end-of-partition event came and no message since
  OffsetMap known_ends_;             // the latest log end offsets seen (EndOffsets, fetch responses)
  OffsetMap positions_;
  OffsetMap start_offsets_;
  std::vector<Message> pending_;  // fetched while idle (or before a failed Fetch); served first
  std::vector<Message> fetched_;  // the batch Fetch() is gathering; revocations drop from it
  bool rebalanced_ = false;
  Status rebalance_error_;
  Status deferred_error_;  // met while idle; returned by the next Fetch
  std::vector<std::string> data_loss_notes_;
  size_t known_partition_count_ = 0;  // partitions of the topics when last seen
  // When each partition started answering "out of range" inside the log.
  std::map<TopicPartition, std::chrono::steady_clock::time_point> out_of_range_since_;
};

}  // namespace sluice
