// FileSource implementation.
#include "connectors/file_source.h"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <limits>
#include <thread>

namespace sluice {

FileSource::FileSource(FileSourceOptions options) : options_(std::move(options)) {
  std::string topic = options_.path == "-" ? "stdin" : std::filesystem::path(options_.path).filename().string();
  partition_ = {topic, 0};
}

Status FileSource::Open(const StoredOffsetLookup& stored) {
  if (options_.path == "-") {
    in_ = &std::cin;
  } else {
    file_.open(options_.path, std::ios::binary);
    if (!file_) return Status::IoError("cannot read " + options_.path);
    in_ = &file_;
  }
  // Line numbers are shared by every partition a file's envelopes name, and
  // each batch commits as one transaction: resume after the highest stored.
  std::vector<TopicPartition> partitions = {partition_};
  if (options_.path != "-") {
    std::ifstream scan(options_.path, std::ios::binary);
    std::string line;
    int64_t number = 0;
    while (std::getline(scan, line)) {
      if (line.find("\"_kafka_partition\"") == std::string::npos) continue;
      Message message;
      ParseLine(line, ++number, partition_.first, 0, &message);
      TopicPartition tp{partition_.first, message.partition};
      if (std::find(partitions.begin(), partitions.end(), tp) == partitions.end()) partitions.push_back(tp);
    }
  }
  int64_t resume = 1;
  if (stored) {
    Result<OffsetMap> offsets = stored(partitions);
    if (!offsets.ok()) return offsets.status();
    for (const auto& [tp, offset] : *offsets) {
      resume = std::max(resume, offset);
      starts_[tp] = offset;
    }
  }
  if (!starts_.count(partition_)) starts_[partition_] = resume;
  return SkipTo(resume);
}

Status FileSource::SkipTo(int64_t line_number) {
  std::string line;
  while (next_line_ < line_number && std::getline(*in_, line)) ++next_line_;
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
  if (line.find("\"_kafka_") == std::string::npos) return;
  rapidjson::Document doc;
  doc.Parse(line.data(), line.size());
  if (doc.HasParseError() || !doc.IsObject()) return;
  bool changed = false;
  auto take = [&](const char* name) -> const rapidjson::Value* {
    auto member = doc.FindMember(name);
    return member == doc.MemberEnd() ? nullptr : &member->value;
  };
  if (const rapidjson::Value* key = take("_kafka_key")) {
    if (key->IsString()) message->key = std::string(key->GetString(), key->GetStringLength());
    doc.EraseMember("_kafka_key");
    changed = true;
  }
  if (const rapidjson::Value* partition = take("_kafka_partition")) {
    if (partition->IsInt()) message->partition = partition->GetInt();
    doc.EraseMember("_kafka_partition");
    changed = true;
  }
  if (const rapidjson::Value* timestamp = take("_kafka_timestamp")) {
    if (timestamp->IsInt64()) message->timestamp = timestamp->GetInt64();
    doc.EraseMember("_kafka_timestamp");
    changed = true;
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
  while (taken < limit && !eof_) {
    if (!std::getline(*in_, line)) {
      eof_ = true;
      break;
    }
    int64_t number = next_line_++;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    Message message;
    ParseLine(line, number, partition_.first, options_.default_timestamp, &message);
    out->push_back(std::move(message));
    ++taken;
  }
  if (batch_index_ < options_.batch_sizes.size()) {
    batch_used_ += static_cast<int64_t>(taken);
    if (batch_used_ >= options_.batch_sizes[batch_index_]) {
      ++batch_index_;
      batch_used_ = 0;
    }
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
  return Status::Ok();
}

Status FileSource::Rewind(const OffsetMap& to) {
  auto found = to.find(partition_);
  if (found == to.end()) return Status::Ok();
  if (options_.path == "-" && found->second < next_line_) {
    return Status::IoError("cannot re-read stdin; run again with the file");
  }
  if (found->second < next_line_) {
    file_.clear();
    file_.seekg(0);
    next_line_ = 1;
    eof_ = false;
  }
  for (const auto& [tp, offset] : to) starts_[tp] = offset;
  return SkipTo(found->second);
}

void FileSource::Idle(std::chrono::milliseconds duration, const std::atomic<bool>& stop) {
  auto deadline = std::chrono::steady_clock::now() + duration;
  while (!stop.load() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace sluice
