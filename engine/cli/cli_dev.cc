// Development commands: `sluice broker` (embedded broker), `sluice produce`
// (JSON lines to a topic) and `sluice init` (a new pipeline directory).
#include <spdlog/spdlog.h>

#include <boost/program_options.hpp>
#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <thread>

#include "connectors/embedded_broker.h"
#include "connectors/producer.h"
#include "engine/cli/cli.h"
#include "engine/validate.h"

namespace sluice::cli {
namespace po = boost::program_options;

int CommandBroker(const std::vector<std::string>& args) {
  po::options_description options("options");
  std::vector<std::string> topics;
  int brokers = 1;
  options.add_options()
      ("help,h", "show this help")
      ("topic", po::value<std::vector<std::string>>(&topics), "create topic NAME[:PARTITIONS] (default 4 partitions); repeatable")
      ("brokers", po::value<int>(&brokers)->default_value(1), "number of brokers in the cluster");
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(options).run(), vm);
  po::notify(vm);
  if (vm.count("help")) {
    std::cout << "usage: sluice broker [--topic NAME[:PARTITIONS]]... [--brokers N]\n\n"
                 "Starts an embedded Kafka-protocol broker (librdkafka's mock cluster) on 127.0.0.1 for local\n"
                 "development and demos. Prints its bootstrap address alone on the first line of stdout, then runs\n"
                 "until SIGINT/SIGTERM.\n\n"
                 "It keeps data IN MEMORY ONLY, and at most about 5 MiB per partition: older messages are dropped\n"
                 "beyond that. It is not a production broker; point sluice at a real Kafka for real work.\n\n"
              << options;
    return kExitOk;
  }
  SetupLogging(0);
  if (brokers < 1 || brokers > 16) {
    std::cerr << "sluice broker: --brokers must be between 1 and 16\n";
    return kExitUsage;
  }
  InstallSignalHandlers();
  auto broker = EmbeddedBroker::Start(brokers);
  if (!broker.ok()) {
    spdlog::error("{}", broker.status().message());
    return kExitFailure;
  }
  std::vector<std::pair<std::string, int>> created;
  for (const auto& spec : topics) {
    size_t colon = spec.rfind(':');
    std::string name = spec.substr(0, colon);
    int partitions = 4;
    if (colon != std::string::npos) {
      try {
        partitions = std::stoi(spec.substr(colon + 1));
      } catch (const std::exception&) {
        partitions = 0;
      }
    }
    if (name.empty() || partitions < 1 || partitions > 10000) {
      std::cerr << "sluice broker: --topic " << spec << ": expected NAME or NAME:PARTITIONS (1-10000)\n";
      return kExitUsage;
    }
    created.emplace_back(name, partitions);
    Status st = (*broker)->CreateTopic(name, partitions);
    if (!st.ok()) {
      spdlog::error("{}", st.message());
      return kExitFailure;
    }
  }
  std::cout << (*broker)->bootstrap() << std::endl;  // flushed: scripts read this line
  spdlog::info("embedded broker listening on {} (in memory, about 5 MiB per partition); Ctrl-C stops it",
               (*broker)->bootstrap());
  // Watch the partitions: the mock keeps about 5 MiB each and drops the
  // oldest messages beyond that, which must never go unnoticed.
  std::map<std::pair<std::string, int>, int64_t> lows;
  for (const auto& [name, partitions] : created) {
    for (int partition = 0; partition < partitions; ++partition) lows[{name, partition}] = 0;
  }
  auto next_check = std::chrono::steady_clock::now();
  while (!g_stop.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (std::chrono::steady_clock::now() < next_check) continue;
    next_check = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    for (auto& [tp, low] : lows) {
      Result<int64_t> now = (*broker)->LowWatermark(tp.first, tp.second);
      if (!now.ok() || *now <= low) continue;
      spdlog::warn("{}[{}]: the embedded broker DROPPED {} messages (offsets {}..{}): it keeps about 5 MiB per "
                   "partition. A pipeline that had not read them stops with a data-loss error; use more partitions, "
                   "fewer messages, or a real Kafka",
                   tp.first, tp.second, *now - low, low, *now - 1);
      low = *now;
    }
  }
  return kExitOk;
}

int CommandProduce(const std::vector<std::string>& args) {
  po::options_description options("options");
  ProducerOptions producer;
  options.add_options()
      ("help,h", "show this help")
      ("brokers", po::value<std::string>(&producer.brokers)->required(), "bootstrap brokers")
      ("topic", po::value<std::string>(&producer.topic)->required(), "topic to publish to")
      ("key-field", po::value<std::string>(), "take each message's key from this top-level JSON field")
      ("timestamp-field", po::value<std::string>(),
       "take each message's timestamp from this top-level field (epoch ms or ISO-8601); default: now")
      ("partition", po::value<int32_t>(), "publish every message to this partition")
      ("property,X", po::value<std::vector<std::string>>(), "librdkafka property KEY=VALUE; repeatable");
  po::options_description hidden;
  hidden.add_options()("file", po::value<std::string>()->default_value("-"));
  po::options_description all;
  all.add(options).add(hidden);
  po::positional_options_description positional;
  positional.add("file", 1);
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(all).positional(positional).run(), vm);
  if (vm.count("help")) {
    std::cout << "usage: sluice produce --brokers LIST --topic NAME [--key-field FIELD] [--timestamp-field FIELD]\n"
                 "                      [--partition N] [-X KEY=VALUE]... FILE|-\n\n"
                 "Publishes each non-empty line of FILE (or stdin) as one message, waits for every delivery report,\n"
                 "reports how many were delivered, and exits non-zero if any was not.\n\n"
              << options;
    return kExitOk;
  }
  po::notify(vm);
  SetupLogging(0);
  if (vm.count("key-field")) producer.key_field = vm["key-field"].as<std::string>();
  if (vm.count("timestamp-field")) producer.timestamp_field = vm["timestamp-field"].as<std::string>();
  if (vm.count("partition")) producer.partition = vm["partition"].as<int32_t>();
  if (vm.count("property")) {
    for (const auto& property : vm["property"].as<std::vector<std::string>>()) {
      size_t eq = property.find('=');
      if (eq == std::string::npos) {
        std::cerr << "sluice produce: -X " << property << ": expected KEY=VALUE\n";
        return kExitUsage;
      }
      producer.properties.emplace_back(property.substr(0, eq), property.substr(eq + 1));
    }
  }
  std::string file = vm["file"].as<std::string>();
  std::ifstream in_file;
  if (file != "-") {
    in_file.open(file);
    if (!in_file) {
      std::cerr << "sluice produce: cannot read " << file << "\n";
      return kExitFailure;
    }
  }
  std::istream& in = file == "-" ? std::cin : in_file;
  Result<std::map<int32_t, int64_t>> lows_before = LowWatermarks(producer.brokers, producer.properties, producer.topic);
  ProduceReport report;
  Status st = ProduceLines(producer, in, &report);
  if (lows_before.ok()) {
    Result<std::map<int32_t, int64_t>> lows_after = LowWatermarks(producer.brokers, producer.properties, producer.topic);
    if (lows_after.ok()) {
      for (const auto& [partition, low] : *lows_after) {
        auto before = lows_before->find(partition);
        int64_t was = before == lows_before->end() ? 0 : before->second;
        if (low <= was) continue;
        spdlog::warn("{}[{}]: the broker deleted {} messages (offsets {}..{}) while this ran: delivered, but no "
                     "longer there to read (the embedded broker keeps about 5 MiB per partition; a real broker's "
                     "retention does the same)",
                     producer.topic, partition, low - was, was, low - 1);
      }
    }
  }
  std::cerr << "delivered " << report.delivered << " of " << report.lines << " messages to " << producer.topic << "\n";
  if (producer.key_field && report.missing_key > 0) {
    spdlog::warn("{} of {} lines have no field '{}': they were sent without a key", report.missing_key, report.lines,
                 *producer.key_field);
  }
  if (producer.timestamp_field && report.missing_timestamp > 0) {
    spdlog::warn("{} of {} lines have no field '{}': they were sent with the time of producing", report.missing_timestamp,
                 report.lines, *producer.timestamp_field);
  }
  if (st.ok() && producer.key_field && report.lines > 0 && report.missing_key == report.lines) {
    spdlog::error("no line has the field '{}' given by --key-field (a typo?)", *producer.key_field);
    return kExitFailure;
  }
  if (!st.ok()) {
    spdlog::error("{}", st.message());
    return kExitFailure;
  }
  return kExitOk;
}

namespace {

// `word` as the shell reads it back: quoted when it holds anything but
// letters, digits and -_./
std::string ShellWord(const std::string& word) {
  bool plain = !word.empty() && std::all_of(word.begin(), word.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '/';
  });
  if (plain) return word;
  std::string quoted = "'";
  for (char c : word) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

struct ScaffoldFile {
  const char* path;
  const char* content;
};

// The files `sluice init` writes. They pass `sluice validate` and
// `sluice test` as written (a test pins that).
const ScaffoldFile kScaffold[] = {
    {"pipeline.conf", R"(# pipeline.conf: where the messages come from and what they look like.
# Every key is documented in docs/reference.md; unknown keys are errors.

[source]
brokers = localhost:9092        # or pass --brokers
topic = events                  # one topic, or a comma-separated list
group = sluice-@NAME@           # the pipeline's identity: its offsets and the Kafka consumer group
start = earliest                # where to begin when nothing is stored yet
assignment = all                # all: read every partition; group: share them with other processes

[batch]
max_messages = 50000            # at most this many messages per batch (one SQLite transaction)
max_wait = 2s                   # how long to wait for a batch to fill
every = 5m                      # cadence for `sluice run --every`

[columns]                       # typed columns taken from each JSON message; others stay in _kafka_value
id = TEXT
amount = REAL                   # "12.50" and 12.5 both become 12.5; "abc" sends the message to quarantine
event_time = TEXT

[target]
database = events.db            # relative to this directory
)"},
    {"schema.sql", R"(-- schema.sql runs at every start: create what the steps write to, idempotently.

create table if not exists events_curated (
  id                text primary key,
  amount            real,
  event_time        text,
  _kafka_timestamp  integer not null,
  _kafka_offset     integer not null
);
)"},
    {"steps/10_dedup.sql", R"(-- Steps run in file-name order, inside the batch's transaction.
-- `batch` holds this batch's messages: your [columns] plus _kafka_topic,
-- _kafka_partition, _kafka_offset, _kafka_timestamp, _kafka_key, _kafka_value.

-- Keep the latest event per id within the batch.
drop table if exists temp.stg_events;

create temp table stg_events as
select id, amount, event_time, _kafka_timestamp, _kafka_offset
from (
  select
    b.*,
    row_number() over (partition by id order by _kafka_timestamp desc, _kafka_offset desc) as version_rank
  from batch as b
  where id is not null
)
where version_rank = 1;
)"},
    {"steps/20_upsert.sql", R"(-- Upsert into the curated table; an older event never overwrites a newer one.

insert into events_curated (id, amount, event_time, _kafka_timestamp, _kafka_offset)
select id, amount, event_time, _kafka_timestamp, _kafka_offset
from stg_events
where true
on conflict (id) do update set
  amount           = excluded.amount,
  event_time       = excluded.event_time,
  _kafka_timestamp = excluded._kafka_timestamp,
  _kafka_offset    = excluded._kafka_offset
where (excluded._kafka_timestamp, excluded._kafka_offset)
    > (events_curated._kafka_timestamp, events_curated._kafka_offset);
)"},
    {"tests/latest_wins/input.jsonl", R"({"id": "a", "amount": 10, "event_time": "2026-01-01T10:00:00Z", "_kafka_timestamp": 1000}
{"id": "b", "amount": "7.50", "event_time": "2026-01-01T10:01:00Z", "_kafka_timestamp": 2000}
{"id": "a", "amount": 12, "event_time": "2026-01-01T10:02:00Z", "_kafka_timestamp": 3000}
{"id": "a", "amount": 9, "event_time": "2026-01-01T09:59:00Z", "_kafka_timestamp": 500}
{"id": "c", "amount": "not a number"}
)"},
    {"tests/latest_wins/batches", R"(# lines per batch: the late event for "a" arrives in a batch of its own
3
2
)"},
    {"tests/latest_wins/expected/events_curated.csv", R"(id,amount,event_time,_kafka_timestamp,_kafka_offset
a,12.0,2026-01-01T10:02:00Z,3000,3
b,7.5,2026-01-01T10:01:00Z,2000,2
)"},
    {"tests/latest_wins/expected/_sluice_quarantine.csv", R"csv(offset,error
5,"column amount: ""not a number"" is not a number (declared REAL)"
)csv"},
};

}  // namespace

int CommandInit(const std::vector<std::string>& args) {
  po::options_description options("options");
  options.add_options()("help,h", "show this help");
  po::variables_map vm = ParseWithDir(args, options);
  if (vm.count("help") || !vm.count("dir")) {
    std::cout << "usage: sluice init DIR\n\n"
                 "Creates a pipeline directory with commented pipeline.conf, schema.sql, two steps and a fixture\n"
                 "test. It passes `sluice validate DIR` and `sluice test DIR` as created. DIR must not exist or be\n"
                 "empty.\n\n"
              << options;
    return vm.count("help") ? kExitOk : kExitUsage;
  }
  namespace fs = std::filesystem;
  fs::path dir = vm["dir"].as<std::string>();
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_empty(dir, ec)) {
    std::cerr << "sluice init: " << dir.string() << " exists and is not empty; choose a new directory\n";
    return kExitFailure;
  }
  for (const auto& file : kScaffold) {
    fs::path path = dir / file.path;
    fs::create_directories(path.parent_path(), ec);
    std::ofstream out(path, std::ios::binary);
    // The group names the pipeline (its offsets are keyed by it): derived
    // from the directory, as the default is, so two new pipelines never
    // share one by accident.
    std::string content = file.content;
    fs::path absolute = fs::absolute(dir, ec).lexically_normal();
    if (absolute.filename().empty()) absolute = absolute.parent_path();
    for (size_t at = content.find("@NAME@"); at != std::string::npos; at = content.find("@NAME@", at)) {
      content.replace(at, 6, absolute.filename().string());
    }
    out << content;
    if (!out) {
      std::cerr << "sluice init: cannot write " << path.string() << "\n";
      return kExitFailure;
    }
  }
  std::cout << "created " << dir.string() << "\n"
            << "next: sluice validate " << ShellWord(dir.string()) << " && sluice test " << ShellWord(dir.string())
            << "\n";
  return kExitOk;
}


}  // namespace sluice::cli
