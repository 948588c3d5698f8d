// FileSource: a BatchSource over a JSON-lines file (or stdin), for backfills
// and reproductions (`sluice run DIR --from-file FILE`) and for fixtures
// (`sluice test`). Each non-empty line is one message: the topic is the
// file's name ("stdin" for -), the partition 0, the offset the line number
// (1-based). Optional envelope fields in a line override the defaults and are
// removed from the value: "_kafka_key", "_kafka_partition",
// "_kafka_timestamp" (ms since epoch, or ISO-8601 with a zone). A field of
// the wrong type marks the message (Message::envelope_error) and staging
// quarantines it. Without one, the timestamp is `default_timestamp` (the
// start of the run for --from-file; the line number for fixtures, so that
// expected results do not depend on the clock).
//
// Resuming: every stored offset whose topic is the input's name belongs to
// the input (envelopes may name several partitions); reading resumes after
// the highest. With a `store`, the input is identified by more than its name:
// before a batch commits, the number of bytes before its next line and their
// checksum are recorded for that position, and on resume the file's prefix
// must match them, else Open refuses (a different file with the same name, a
// truncated or rewritten file, lines inserted).
#pragma once

#include <deque>
#include <fstream>
#include <functional>
#include <istream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "connectors/source.h"

namespace sluice {

// The identity of an input at a position: the bytes before line `next_offset`
// (each line counted with one newline) and their checksum (hex).
struct InputCheckpoint {
  int64_t next_offset = 1;
  int64_t bytes = 0;
  std::string checksum;
};

// Where the identities of inputs are kept (the pipeline's database).
struct FileInputStore {
  // The checkpoint recorded for `input` at `next_offset`, or nullopt.
  std::function<Result<std::optional<InputCheckpoint>>(const std::string& input, int64_t next_offset)> find;
  // Records a checkpoint (called before the batch that stores the position commits).
  std::function<Status(const std::string& input, const InputCheckpoint& checkpoint)> save;
  // Forgets the stored positions and checkpoints of `input` (--restart).
  std::function<Status(const std::string& input)> forget;
  explicit operator bool() const { return find && save && forget; }
};

struct FileSourceOptions {
  std::string path;  // "-" reads stdin
  // Timestamp for lines without "_kafka_timestamp"; nullopt: the line number.
  std::optional<int64_t> default_timestamp;
  // Lines per batch, in order (fixtures' `batches` file); empty: as the
  // engine asks (max_messages). A batch never spans two entries.
  std::vector<int64_t> batch_sizes;
  // The pipeline's Kafka topics: an input named like one is refused, since
  // its positions would be the topic's offsets.
  std::vector<std::string> kafka_topics;
  // Forget the stored position of this input and read it from its first line.
  bool restart = false;
  // A last line without its newline is a line still being written: leave it
  // for the next run instead of reading half of it (`run --from-file` of a
  // file; stdin and fixtures read it, their input has ended).
  bool wait_for_newline = false;
  // Identity checks (`sluice run --from-file`); unset: positions are taken
  // as stored (fixtures, tests).
  FileInputStore store;
};

class FileSource : public BatchSource {
 public:
  explicit FileSource(FileSourceOptions options);

  Status Open(const StoredOffsetLookup& stored) override;
  Status Fetch(size_t max_messages, std::chrono::milliseconds max_wait, std::vector<Message>* out) override;
  OffsetMap Positions() const override;
  OffsetMap StartOffsets() const override { return starts_; }
  Result<OffsetMap> EndOffsets() override;
  Status CommitOffsets(const OffsetMap& next) override;
  Status Rewind(const OffsetMap& to) override;
  void Idle(std::chrono::milliseconds duration, const std::atomic<bool>& stop) override;
  void Close() override {}
  std::string Describe() const override { return "file " + options_.path; }

  // Parses one line into `message` (envelope fields applied). Exposed for tests.
  static void ParseLine(const std::string& line, int64_t line_number, const std::string& topic,
                        std::optional<int64_t> default_timestamp, Message* message);

 private:
  Status SkipTo(int64_t line_number);
  // The next raw line (without its newline), from the buffer when replaying
  // stdin after a rewind; updates the position, byte count and checksum.
  bool NextLine(std::string* line);
  // Where reading resumes: after the highest offset in starts_.
  int64_t ResumeLine() const;
  Status Reposition(int64_t line_number);
  std::string Checksum() const;
  std::string Refusal(const std::string& what) const;

  // A line read from stdin since the last commit, kept to re-read it after a
  // failed batch.
  struct Buffered {
    std::string text;
    int64_t bytes_before = 0;
    uint64_t hash_before = 0;
  };

  FileSourceOptions options_;
  TopicPartition partition_;
  std::ifstream file_;
  std::istream* in_ = nullptr;
  int64_t next_line_ = 1;  // the line number the next read returns
  OffsetMap starts_;       // where the next batch starts, per partition seen (committed)
  bool eof_ = false;
  bool partial_reported_ = false;
  size_t batch_index_ = 0;
  int64_t batch_used_ = 0;
  int64_t bytes_ = 0;     // bytes before next_line_
  uint64_t hash_ = 0;     // their checksum (FNV-1a, 64 bits)
  std::deque<Buffered> buffer_;  // stdin: lines since the last commit
  int64_t buffer_first_ = 1;     // the line number of buffer_[0]
};

}  // namespace sluice
