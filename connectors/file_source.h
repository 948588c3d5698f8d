// FileSource: a BatchSource over a JSON-lines file (or stdin), for backfills
// and reproductions (`sluice run DIR --from-file FILE`) and for fixtures
// (`sluice test`). Each non-empty line is one message: the topic is the
// file's name ("stdin" for -), the partition 0, the offset the line number
// (1-based). Optional envelope fields in a line override the defaults and are
// removed from the value: "_kafka_key", "_kafka_partition",
// "_kafka_timestamp" (ms since epoch). Without one, the timestamp is
// `default_timestamp` (the start of the run for --from-file; the line number
// for fixtures, so that expected results do not depend on the clock).
#pragma once

#include <fstream>
#include <istream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "connectors/source.h"

namespace sluice {

struct FileSourceOptions {
  std::string path;  // "-" reads stdin
  // Timestamp for lines without "_kafka_timestamp"; nullopt: the line number.
  std::optional<int64_t> default_timestamp;
  // Lines per batch, in order (fixtures' `batches` file); empty: as the
  // engine asks (max_messages). A batch never spans two entries.
  std::vector<int64_t> batch_sizes;
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

  FileSourceOptions options_;
  TopicPartition partition_;
  std::ifstream file_;
  std::istream* in_ = nullptr;
  int64_t next_line_ = 1;  // the line number the next read returns
  OffsetMap starts_;       // where the next batch starts, per partition seen (committed)
  bool eof_ = false;
  size_t batch_index_ = 0;
  int64_t batch_used_ = 0;
};

}  // namespace sluice
