// The records every layer passes around: a message as a source delivers it,
// the partition it came from, and offsets per partition. Part of the
// vocabulary (with Status and the time functions): it includes nothing of
// sluice's and every layer may include it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>

namespace sluice {

// One record as the staging table sees it. `value` is nullopt for a tombstone.
struct Message {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  std::optional<int64_t> timestamp;  // ms since epoch; nullopt when the broker gave none
  std::optional<std::string> key;
  std::optional<std::string> value;
  // Set by a source that could not take the message's metadata as given (a
  // --from-file envelope field of the wrong type): staging quarantines the
  // message with this reason.
  std::optional<std::string> envelope_error;
};

using TopicPartition = std::pair<std::string, int32_t>;
// Offsets per partition: the offset of the next message to read.
using OffsetMap = std::map<TopicPartition, int64_t>;

// A 64-bit FNV-1a hash of a message's timestamp, key and value.
inline int64_t Fingerprint(const Message& message) {
  uint64_t hash = 14695981039346656037ULL;
  auto mix = [&hash](const void* data, size_t size) {
    const auto* bytes = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < size; ++i) hash = (hash ^ bytes[i]) * 1099511628211ULL;
  };
  int64_t timestamp = message.timestamp.value_or(-1);
  mix(&timestamp, sizeof(timestamp));
  unsigned char present = message.key ? 1 : 0;
  mix(&present, 1);
  if (message.key) mix(message.key->data(), message.key->size());
  present = message.value ? 1 : 0;
  mix(&present, 1);
  if (message.value) mix(message.value->data(), message.value->size());
  return static_cast<int64_t>(hash);
}

}  // namespace sluice
