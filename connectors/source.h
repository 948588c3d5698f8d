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

#include "common/message.h"
#include "common/status.h"

namespace sluice {

// Reads every offset the pipeline has stored in its database (the source of
// truth), for all topics and partitions. Called on the thread that polls the
// source (at open and on each assignment).
using StoredOffsetLookup = std::function<Result<OffsetMap>()>;

// Per partition, the offset and Fingerprint() of the last message the
// pipeline read: at the next assignment the source reads that offset again
// and compares, to recognise a log that is not the one read (a topic deleted
// and recreated that has grown past the stored offset).
using LastReadMap = std::map<TopicPartition, std::pair<int64_t, int64_t>>;
using LastReadLookup = std::function<Result<LastReadMap>()>;

class BatchSource {
 public:
  virtual ~BatchSource() = default;

  // Connects and takes partitions (directly or through the group), positioning
  // each at its stored offset (checked against the log), else where `start`
  // says. Fails with a clear message when the brokers cannot be reached in
  // time or a stored offset does not fit the log.
  virtual Status Open(const StoredOffsetLookup& stored) = 0;

  // Gives the source the pipeline's last-read messages, before Open. Sources
  // that cannot re-read a message ignore it.
  virtual void SetLastReadLookup(LastReadLookup lookup) { (void)lookup; }

  // Picks up partitions added since Open (assignment of every partition);
  // called once per pass. Sources with a fixed set of partitions do nothing.
  virtual Status Refresh() { return Status::Ok(); }

  // Appends up to `max_messages` messages to `out`, waiting at most `max_wait`
  // for them. Returns early once every assigned partition is at its end.
  virtual Status Fetch(size_t max_messages, std::chrono::milliseconds max_wait,
                       std::vector<Message>* out) = 0;

  // The next offset to fetch, per assigned partition, as far as the source
  // knows (from stored offsets, fetched messages or end-of-partition events).
  // Partitions whose position is not known yet are absent.
  virtual OffsetMap Positions() const = 0;

  // The offset to store per assigned partition after the messages fetched so
  // far: past transaction markers and compaction gaps, and the resolved start
  // of partitions that gave no message yet. Empty for sources whose offsets
  // are simply the last message's plus one.
  virtual OffsetMap NextOffsets() const { return {}; }

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
