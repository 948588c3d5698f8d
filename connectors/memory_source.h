// MemorySource: a BatchSource over messages held in memory. Used to re-run
// messages that are already behind the stored offsets (quarantine replay)
// and by tests. It stores no offsets of its own: run it with
// BatchOptions::store_offsets = false unless the messages are new.
#pragma once

#include <algorithm>
#include <thread>
#include <utility>
#include <vector>

#include "connectors/source.h"

namespace sluice {

class MemorySource : public BatchSource {
 public:
  explicit MemorySource(std::vector<Message> messages, std::string name = "memory")
      : messages_(std::move(messages)), name_(std::move(name)) {}

  Status Open(const StoredOffsetLookup&) override { return Status::Ok(); }
  Status Fetch(size_t max_messages, std::chrono::milliseconds, std::vector<Message>* out) override {
    size_t end = std::min(messages_.size(), next_ + max_messages);
    for (; next_ < end; ++next_) out->push_back(messages_[next_]);
    return Status::Ok();
  }
  OffsetMap Positions() const override { return {}; }
  OffsetMap StartOffsets() const override { return {}; }
  Result<OffsetMap> EndOffsets() override { return OffsetMap{}; }
  Status CommitOffsets(const OffsetMap&) override { return Status::Ok(); }
  Status Rewind(const OffsetMap&) override { return Status::Ok(); }
  void Idle(std::chrono::milliseconds duration, const std::atomic<bool>& stop) override {
    auto deadline = std::chrono::steady_clock::now() + duration;
    while (!stop.load() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  void Close() override {}
  std::string Describe() const override { return name_; }

 private:
  std::vector<Message> messages_;
  std::string name_;
  size_t next_ = 0;
};

}  // namespace sluice
