// BatchSource: where a pipeline's messages come from. The engine pulls one
// bounded batch at a time, stores the batch's next offsets in SQLite, commits,
// and only then tells the source (CommitOffsets). Implementations: KafkaSource
// (librdkafka consumer) and MemorySource (tests). Not thread-safe: one engine
// thread owns a source.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/status.h"

namespace sluice {

// One record as the staging table sees it. `value` is nullopt for a tombstone.
struct Message {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  std::optional<int64_t> timestamp;  // ms since epoch; nullopt when the broker gave none
  std::optional<std::string> key;
  std::optional<std::string> value;
};

using TopicPartition = std::pair<std::string, int32_t>;
// Offsets per partition: the offset of the next message to read.
using OffsetMap = std::map<TopicPartition, int64_t>;

// Reads the offsets stored in the pipeline's database for the given partitions
// (the source of truth). Partitions with nothing stored are absent from the map.
using StoredOffsetLookup = std::function<Result<OffsetMap>(const std::vector<TopicPartition>&)>;

class BatchSource {
 public:
  virtual ~BatchSource() = default;

  // Connects and takes partitions (directly or through the group), positioning
  // each at its stored offset, else the group's committed offset, else `start`.
  // Fails with a clear message when the brokers cannot be reached in time.
  virtual Status Open(const StoredOffsetLookup& stored) = 0;

  // Appends up to `max_messages` messages to `out`, waiting at most `max_wait`
  // for them. Returns early once every assigned partition is at its end.
  virtual Status Fetch(size_t max_messages, std::chrono::milliseconds max_wait,
                       std::vector<Message>* out) = 0;

  // The next offset to fetch, per assigned partition, as far as the source
  // knows (from stored offsets, fetched messages or end-of-partition events).
  // Partitions whose position is not known yet are absent.
  virtual OffsetMap Positions() const = 0;

  // Where each assigned partition's next batch starts: the offsets last passed
  // to CommitOffsets, or where the partition was positioned on assignment.
  // The engine checks these against the stored offsets before it commits, so
  // a batch never commits over offsets another process moved.
  virtual OffsetMap StartOffsets() const = 0;

  // Queries the log end offset of every assigned partition now.
  virtual Result<OffsetMap> EndOffsets() = 0;

  // Records that the database committed `next` and commits them to the group.
  // A failure to reach the group is returned but is not fatal: the database
  // holds the truth, and StartOffsets() moves to `next` either way.
  virtual Status CommitOffsets(const OffsetMap& next) = 0;

  // Re-positions partitions after a batch was rolled back or another process
  // moved the stored offsets. Messages already fetched past them are dropped.
  virtual Status Rewind(const OffsetMap& to) = 0;

  // Waits up to `duration` between batches while keeping group membership
  // alive; returns early when `*stop` becomes true.
  virtual void Idle(std::chrono::milliseconds duration, const std::atomic<bool>& stop) = 0;

  // Leaves the group (if joined) and releases the connection.
  virtual void Close() = 0;

  // Notes worth recording with the next run (e.g. offsets skipped because
  // of on_data_loss = skip), taken once.
  virtual std::vector<std::string> TakeNotes() { return {}; }

  // A short description for logs: "kafka orders@localhost:9092".
  virtual std::string Describe() const = 0;
};

}  // namespace sluice
