// FileSource implementation.
#include "connectors/file_source.h"

#include "common/time.h"

#include <spdlog/spdlog.h>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>
#include <thread>

namespace sluice {
namespace {

constexpr uint64_t kFnvOffset = 14695981039346656037ULL;
constexpr uint64_t kFnvPrime = 1099511628211ULL;

uint64_t Fnv(uint64_t hash, const std::string& text) {
  for (unsigned char c : text) hash = (hash ^ c) * kFnvPrime;
  return (hash ^ static_cast<unsigned char>('\n')) * kFnvPrime;
}

// The integer value of a JSON number that is exactly an integer in
// [min, max] (1.0 is 1; 1.5 and 1e300 are not).
std::optional<int64_t> ExactInteger(const rapidjson::Value& value, int64_t min, int64_t max) {
  if (value.IsInt64()) {
    int64_t v = value.GetInt64();
    if (v < min || v > max) return std::nullopt;
    return v;
  }
  if (value.IsDouble()) {
    double d = value.GetDouble();
    // 2^53: beyond it a double does not hold every integer, so the digits
    // written may not be the value read.
    if (!std::isfinite(d) || std::floor(d) != d || std::fabs(d) > 9007199254740992.0) return std::nullopt;
    auto v = static_cast<int64_t>(d);
    if (v < min || v > max) return std::nullopt;
    return v;
  }
  return std::nullopt;
}

std::string JsonText(const rapidjson::Value& value) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  value.Accept(writer);
  std::string text(buffer.GetString(), buffer.GetSize());
  return text.size() > 40 ? text.substr(0, 40) + "..." : text;
}

}  // namespace

FileSource::FileSource(FileSourceOptions options) : options_(std::move(options)) {
  std::string topic = options_.path == "-" ? "stdin" : std::filesystem::path(options_.path).filename().string();
  partition_ = {topic, 0};
  hash_ = kFnvOffset;
}

std::string FileSource::Checksum() const {
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(hash_));
  return text;
}

std::string FileSource::Refusal(const std::string& what) const {
  const std::string& input = partition_.first;
  std::string file = options_.path == "-" ? "standard input" : options_.path;
  return "--from-file " + options_.path + ": " + what + ". Nothing was read. To read " + file +
         " from its first line, run again with --restart (or `sluice reset DIR --input " + input +
         "`, adding --truncate TABLE... for the tables the earlier reads filled)";
}

int64_t FileSource::ResumeLine() const {
  int64_t resume = 1;
  for (const auto& [tp, offset] : starts_) {
    if (tp.first == partition_.first) resume = std::max(resume, offset);
  }
  return resume;
}

Status FileSource::Open(const StoredOffsetLookup& stored) {
  const std::string& input = partition_.first;
  std::error_code ec;
  if (options_.path != "-" && std::filesystem::is_directory(options_.path, ec)) {
    return Status::IoError("cannot read " + options_.path + ": it is a directory; give one file (or - for stdin)");
  }
  for (const auto& topic : options_.kafka_topics) {
    if (topic == input) {
      return Status::InvalidInput(
          "--from-file " + options_.path + ": the input's name '" + input +
          "' is a topic of this pipeline, and a file's positions are stored under its name: they would be that "
          "topic's offsets. Give the file another name (e.g. " + input + ".jsonl)");
    }
  }
  if (options_.path == "-") {
    in_ = &std::cin;
  } else {
    file_.open(options_.path, std::ios::binary);
    if (!file_) return Status::IoError("cannot read " + options_.path);
    in_ = &file_;
  }
  if (options_.restart && options_.store) {
    SLUICE_RETURN_IF_ERROR(options_.store.forget(input).WithContext("cannot forget the position of " + input));
  }
  // Every partition stored under the input's name is the input's: envelopes
  // may name any partition, and each batch commits them together, so
  // reading resumes after the highest.
  if (stored && !(options_.restart && !options_.store)) {
    Result<OffsetMap> all = stored();
    if (!all.ok()) return all.status();
    for (const auto& [tp, offset] : *all) {
      if (tp.first == input) starts_[tp] = offset;
    }
  }
  int64_t resume = ResumeLine();
  if (!starts_.count(partition_)) starts_[partition_] = resume;
  SLUICE_RETURN_IF_ERROR(SkipTo(resume));
  if (next_line_ < resume) {
    return Status::InvalidInput(Refusal("the position stored for input '" + input + "' is line " +
                                        std::to_string(resume) + ", but the input has only " +
                                        std::to_string(next_line_ - 1) + (next_line_ == 2 ? " line" : " lines") +
                                        ": it is not the one read before (truncated or replaced)"));
  }
  if (resume > 1 && options_.store) {
    Result<std::optional<InputCheckpoint>> checkpoint = options_.store.find(input, resume);
    if (!checkpoint.ok()) return checkpoint.status();
    if (!*checkpoint) {
      return Status::InvalidInput(Refusal("the position stored for input '" + input + "' (line " +
                                          std::to_string(resume) +
                                          ") has no record of the content it was read from (stored by an earlier "
                                          "version of sluice, or moved by hand), so it cannot be checked"));
    }
    if ((*checkpoint)->bytes != bytes_ || (*checkpoint)->checksum != Checksum()) {
      return Status::InvalidInput(Refusal(
          "its first " + std::to_string(resume - 1) + " lines, up to the position stored for input '" + input +
          "', differ from those read before (" + std::to_string(bytes_) + " bytes now, " +
          std::to_string((*checkpoint)->bytes) +
          " bytes then): a different file with the same name, or lines inserted, removed or changed"));
    }
  }
  return Status::Ok();
}

bool FileSource::NextLine(std::string* line) {
  bool from_stdin = options_.path == "-";
  int64_t index = next_line_ - buffer_first_;
  if (from_stdin && index >= 0 && index < static_cast<int64_t>(buffer_.size())) {
    *line = buffer_[static_cast<size_t>(index)].text;
  } else {
    if (!std::getline(*in_, *line)) return false;
    if (in_->eof() && options_.wait_for_newline && !from_stdin) {
      if (!partial_reported_) {
        spdlog::warn("{}: line {} has no newline yet (is the file still being written?): it is left for the next run; "
                     "end the file with a newline if it is complete",
                     options_.path, next_line_);
        partial_reported_ = true;
      }
      return false;
    }
    if (from_stdin) {
      if (buffer_.empty()) buffer_first_ = next_line_;
      buffer_.push_back({*line, bytes_, hash_});
    }
  }
  bytes_ += static_cast<int64_t>(line->size()) + 1;
  hash_ = Fnv(hash_, *line);
  ++next_line_;
  return true;
}

Status FileSource::SkipTo(int64_t line_number) {
  std::string line;
  while (next_line_ < line_number && NextLine(&line)) {
  }
  if (next_line_ < line_number) eof_ = true;
  return Status::Ok();
}

void FileSource::ParseLine(const std::string& line, int64_t line_number, const std::string& topic,
                           std::optional<int64_t> default_timestamp, Message* message) {
  message->topic = topic;
  message->partition = 0;
  message->offset = line_number;
  message->timestamp = default_timestamp ? *default_timestamp : line_number;
  message->key.reset();
  message->value = line;
  message->envelope_error.reset();
  if (line.find("\"_kafka_") == std::string::npos) return;
  rapidjson::Document doc;
  doc.Parse(line.data(), line.size());
  if (doc.HasParseError() || !doc.IsObject()) return;
  std::string errors;
  auto bad = [&](const char* name, const rapidjson::Value& value, const char* want) {
    errors += std::string(errors.empty() ? "" : "; ") + "envelope field " + name + " is " + JsonText(value) + ": " +
              want;
  };
  bool changed = false;
  auto take = [&](const char* name) -> const rapidjson::Value* {
    auto member = doc.FindMember(name);
    return member == doc.MemberEnd() ? nullptr : &member->value;
  };
  if (const rapidjson::Value* key = take("_kafka_key")) {
    if (key->IsString()) {
      message->key = std::string(key->GetString(), key->GetStringLength());
    } else if (key->IsNull()) {
      message->key.reset();
    } else if (key->IsInt64() || key->IsUint64()) {
      message->key = JsonText(*key);  // 42 is the key "42"
    } else {
      bad("_kafka_key", *key, "a key must be a string, an integer or null");
    }
    doc.EraseMember("_kafka_key");
    changed = true;
  }
  if (const rapidjson::Value* partition = take("_kafka_partition")) {
    std::optional<int64_t> number = ExactInteger(*partition, 0, std::numeric_limits<int32_t>::max());
    if (number) message->partition = static_cast<int32_t>(*number);
    else bad("_kafka_partition", *partition, "a partition must be an integer from 0 to 2147483647");
    doc.EraseMember("_kafka_partition");
    changed = true;
  }
  if (const rapidjson::Value* timestamp = take("_kafka_timestamp")) {
    std::optional<int64_t> ms;
    if (timestamp->IsString()) {
      ms = ParseIsoMillis(std::string_view(timestamp->GetString(), timestamp->GetStringLength()), ZoneRule::kRequired);
      if (ms && *ms < 0) ms.reset();
    } else if (timestamp->IsNull()) {
      message->timestamp.reset();
      ms = std::nullopt;
    } else {
      ms = ExactInteger(*timestamp, 0, std::numeric_limits<int64_t>::max());
    }
    if (ms) message->timestamp = *ms;
    else if (!timestamp->IsNull()) {
      bad("_kafka_timestamp", *timestamp,
          "a timestamp must be milliseconds since 1970 (an integer) or ISO-8601 with a zone "
          "(2026-11-21T08:00:00.000Z)");
    }
    doc.EraseMember("_kafka_timestamp");
    changed = true;
  }
  if (!errors.empty()) {
    // Quarantined as the line was written, so the reason can be checked
    // against it.
    message->envelope_error = errors;
    return;
  }
  if (changed) {
    rapidjson::StringBuffer buffer;
    rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
    doc.Accept(writer);
    message->value = std::string(buffer.GetString(), buffer.GetSize());
  }
}

Status FileSource::Fetch(size_t max_messages, std::chrono::milliseconds, std::vector<Message>* out) {
  if (in_ == nullptr) return Status::IoError("source is not open");
  size_t limit = max_messages;
  if (batch_index_ < options_.batch_sizes.size()) {
    limit = std::min<size_t>(limit, static_cast<size_t>(options_.batch_sizes[batch_index_] - batch_used_));
  }
  size_t taken = 0;
  std::string line;
  InputCheckpoint checkpoint;
  while (taken < limit && !eof_) {
    if (!NextLine(&line)) {
      eof_ = true;
      break;
    }
    int64_t number = next_line_ - 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    Message message;
    ParseLine(line, number, partition_.first, options_.default_timestamp, &message);
    out->push_back(std::move(message));
    ++taken;
    checkpoint.next_offset = next_line_;
    checkpoint.bytes = bytes_;
    checkpoint.checksum = Checksum();
  }
  if (batch_index_ < options_.batch_sizes.size()) {
    batch_used_ += static_cast<int64_t>(taken);
    if (batch_used_ >= options_.batch_sizes[batch_index_]) {
      ++batch_index_;
      batch_used_ = 0;
    }
  }
  // The position this batch stores is the line after its last message:
  // record what precedes it before the batch can commit.
  if (taken > 0 && options_.store) {
    SLUICE_RETURN_IF_ERROR(options_.store.save(partition_.first, checkpoint)
                               .WithContext("cannot record the identity of input '" + partition_.first + "'"));
  }
  return Status::Ok();
}

OffsetMap FileSource::Positions() const {
  // At the end of the file the position is "past any end", so that a stream
  // of unknown length (stdin) counts as caught up once it is drained.
  return {{partition_, eof_ ? std::numeric_limits<int64_t>::max() : next_line_}};
}

Result<OffsetMap> FileSource::EndOffsets() {
  if (options_.path == "-") return OffsetMap{{partition_, std::numeric_limits<int64_t>::max()}};
  std::ifstream count(options_.path, std::ios::binary);
  if (!count) return Status::IoError("cannot read " + options_.path);
  int64_t lines = 0;
  std::string line;
  while (std::getline(count, line)) ++lines;
  return OffsetMap{{partition_, lines + 1}};
}

Status FileSource::CommitOffsets(const OffsetMap& next) {
  for (const auto& [tp, offset] : next) starts_[tp] = offset;
  // Lines before the committed position are never read again.
  int64_t resume = ResumeLine();
  while (!buffer_.empty() && buffer_first_ < resume) {
    buffer_.pop_front();
    ++buffer_first_;
  }
  return Status::Ok();
}

Status FileSource::Reposition(int64_t line_number) {
  if (line_number < next_line_) {
    if (options_.path == "-") {
      if (line_number < buffer_first_ || buffer_.empty()) {
        return Status::IoError("cannot re-read stdin before line " + std::to_string(buffer_first_) +
                               "; run again with the file");
      }
      const Buffered& first = buffer_.front();
      next_line_ = buffer_first_;
      bytes_ = first.bytes_before;
      hash_ = first.hash_before;
    } else {
      file_.clear();
      file_.seekg(0);
      next_line_ = 1;
      bytes_ = 0;
      hash_ = kFnvOffset;
    }
    eof_ = false;
  }
  return SkipTo(line_number);
}

Status FileSource::Rewind(const OffsetMap& to) {
  bool ours = false;
  for (const auto& [tp, offset] : to) {
    if (tp.first != partition_.first) continue;
    starts_[tp] = offset;
    ours = true;
  }
  if (!ours) return Status::Ok();
  return Reposition(ResumeLine());
}

void FileSource::Idle(std::chrono::milliseconds duration, const std::atomic<bool>& stop) {
  auto deadline = std::chrono::steady_clock::now() + duration;
  while (!stop.load() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace sluice
