// libFuzzer target for pipeline.conf: any bytes as the file's text go through
// ParseConfig, once without and once with command-line overrides. ${NAME}
// reads the real environment (the harness sets SLUICE_FUZZ_* for the seeds to
// use). The properties, beyond no crash, no hang (run with -timeout) and no
// sanitizer report:
//  - a refusal is InvalidConfig with a message that names the file;
//  - an accepted config keeps the directory; has 1 <= max_messages <=
//    10000000 (or the override); a non-empty, duplicate-free list of
//    non-empty topics; non-empty brokers, group and database (the overrides
//    win); columns with distinct (ignoring case), plain, non-reserved names;
//    durations >= 0, every > 0, busy_timeout within an hour; a file mode that
//    lets the owner read and write; no reserved or repeated [kafka] property.
// A broken property traps.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>

#include "connectors/kafka_source.h"
#include "engine/config.h"

namespace {

constexpr const char* kDisplay = "fuzz/pipeline.conf";
constexpr const char* kDir = "fuzz";

#define CHECK(condition)                 \
  do {                                   \
    if (!(condition)) __builtin_trap();  \
  } while (0)

std::string Lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

bool IsPlainName(const std::string& name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

void Check(const std::string& text, const sluice::ConfigOverrides& overrides) {
  sluice::Result<sluice::PipelineConfig> parsed = sluice::ParseConfig(text, kDisplay, kDir, overrides);
  if (!parsed.ok()) {
    CHECK(parsed.status().code() == sluice::Status::Code::kInvalidConfig);
    CHECK(!parsed.status().message().empty());
    CHECK(parsed.status().message().rfind(kDisplay, 0) == 0);
    return;
  }
  const sluice::PipelineConfig& config = *parsed;
  CHECK(config.dir == kDir);

  CHECK(config.max_messages >= 1);
  if (overrides.max_messages) CHECK(config.max_messages == *overrides.max_messages);
  else CHECK(config.max_messages <= 10000000);

  CHECK(!config.source.topics.empty());
  std::set<std::string> topics;
  for (const auto& topic : config.source.topics) {
    CHECK(!topic.empty());
    CHECK(topics.insert(topic).second);
  }
  CHECK(!config.source.brokers.empty());
  if (overrides.brokers) CHECK(config.source.brokers == *overrides.brokers);
  CHECK(!config.source.group.empty());
  CHECK(!config.database.empty());
  if (overrides.database) CHECK(config.database == *overrides.database);

  std::set<std::string> columns;
  for (const auto& column : config.columns) {
    CHECK(IsPlainName(column.name));
    CHECK(columns.insert(Lower(column.name)).second);
    CHECK(Lower(column.name).rfind("_kafka_", 0) != 0 && Lower(column.name).rfind("_sluice_", 0) != 0);
  }

  CHECK(config.max_wait.count() >= 0);
  CHECK(config.every.count() > 0);
  CHECK(config.retry_for.count() >= 0);
  CHECK(config.step_timeout.count() >= 0);
  CHECK(config.retention.count() >= 0);
  CHECK(config.source.connect_timeout.count() >= 0);
  CHECK(config.busy_timeout_ms >= 0 && config.busy_timeout_ms <= 3600000);
  CHECK(config.file_mode <= 0777 && (config.file_mode & 0600) == 0600);

  std::set<std::string> properties;
  for (const auto& [key, value] : config.source.properties) {
    CHECK(!sluice::ReservedKafkaProperties().count(key));
    CHECK(properties.insert(key).second);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  setenv("SLUICE_FUZZ_TOPIC", "orders, refunds", 1);
  setenv("SLUICE_FUZZ_EMPTY", "", 1);
  setenv("SLUICE_FUZZ_BRACES", "${SLUICE_FUZZ_TOPIC}", 1);  // expanded once, never again
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  Check(text, {});
  // As `sluice run --brokers ... --db ... --max-messages N` would pass them
  // (the command line bounds N like [batch] max_messages); an empty --db is
  // an error ParseConfig reports.
  sluice::ConfigOverrides overrides;
  overrides.brokers = "override:9092";
  overrides.database = size % 2 ? "" : "/tmp/override.db";
  overrides.max_messages = 1 + size % 10000000;
  Check(text, overrides);
  return 0;
}
