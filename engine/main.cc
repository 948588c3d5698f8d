// The sluice command line: `run`, `broker` and `produce`. A thin layer over
// the engine: parses arguments (Boost.Program_options exceptions stop here),
// sets up logging and signals, maps Status to exit codes.
#include <librdkafka/rdkafka.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <atomic>
#include <boost/program_options.hpp>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>

#include "connectors/embedded_broker.h"
#include "connectors/kafka_source.h"
#include "connectors/producer.h"
#include "engine/config.h"
#include "engine/engine.h"

namespace po = boost::program_options;

namespace {

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop.store(true); }

void InstallSignalHandlers() {
  struct sigaction action {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

std::string Version() {
  return std::string("sluice ") + SLUICE_VERSION + " (librdkafka " + rd_kafka_version_str() + ", SQLite " +
         sqlite3_libversion() + ")";
}

void SetupLogging(int verbosity) {
  auto logger = spdlog::stderr_color_mt("sluice");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(verbosity > 0 ? spdlog::level::debug : verbosity < 0 ? spdlog::level::warn : spdlog::level::info);
}

const char* kUsage = R"(usage: sluice COMMAND [OPTIONS]

Turns Kafka topics into curated SQLite tables by running a pipeline's own .sql
files over bounded micro-batches.

commands:
  run DIR        run the pipeline in DIR (pipeline.conf, schema.sql, steps/, seeds/)
  broker         start an embedded Kafka-protocol broker for local development
  produce        publish JSON lines to a topic

`sluice COMMAND --help` describes a command. `sluice --version` prints versions.
)";

int CommandRun(const std::vector<std::string>& args) {
  po::options_description options("options");
  std::string every;
  int verbose = 0;
  options.add_options()
      ("help,h", "show this help")
      ("once", "run one batch (possibly empty) and exit")
      ("until-caught-up", "run batches until every partition reaches its end offset as seen at start, then exit (default)")
      ("every", po::value<std::string>(&every)->implicit_value(""),
       "run until caught up, sleep to the next tick, repeat; DURATION such as 30s or 5m (default: [batch] every)")
      ("brokers", po::value<std::string>(), "bootstrap brokers, overriding [source] brokers")
      ("db", po::value<std::string>(), "target database, overriding [target] database")
      ("max-messages", po::value<size_t>(), "cap per batch, overriding [batch] max_messages")
      ("verbose,v", "log more")
      ("quiet,q", "log only warnings and errors");
  po::options_description hidden;
  hidden.add_options()("dir", po::value<std::string>());
  po::options_description all;
  all.add(options).add(hidden);
  po::positional_options_description positional;
  positional.add("dir", 1);
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(all).positional(positional).run(), vm);
  po::notify(vm);
  if (vm.count("help")) {
    std::cout << "usage: sluice run DIR [--once | --until-caught-up | --every [DURATION]] [--brokers LIST] [--db PATH]\n"
                 "                      [--max-messages N] [-v | -q]\n\n"
                 "Runs the pipeline in DIR. Each batch is one SQLite transaction: stage the messages (bad ones go to\n"
                 "_sluice_quarantine), run steps/*.sql in order, store the next offsets, commit; only then are the\n"
                 "offsets committed to the Kafka group. A failing step rolls the batch back and exits non-zero.\n"
                 "SIGINT/SIGTERM finish the batch in flight and exit 0.\n\n"
              << options;
    return kExitOk;
  }
  if (!vm.count("dir")) {
    std::cerr << "sluice run: missing pipeline directory (sluice run DIR; see --help)\n";
    return kExitUsage;
  }
  int modes = static_cast<int>(vm.count("once") + vm.count("until-caught-up") + vm.count("every"));
  if (modes > 1) {
    std::cerr << "sluice run: choose one of --once, --until-caught-up, --every\n";
    return kExitUsage;
  }
  verbose = vm.count("verbose") ? 1 : vm.count("quiet") ? -1 : 0;
  SetupLogging(verbose);

  sluice::ConfigOverrides overrides;
  if (vm.count("brokers")) overrides.brokers = vm["brokers"].as<std::string>();
  if (vm.count("db")) overrides.database = vm["db"].as<std::string>();
  if (vm.count("max-messages")) {
    size_t max = vm["max-messages"].as<size_t>();
    if (max == 0) {
      std::cerr << "sluice run: --max-messages must be at least 1\n";
      return kExitUsage;
    }
    overrides.max_messages = max;
  }
  std::string dir = vm["dir"].as<std::string>();
  sluice::Result<sluice::Pipeline> pipeline = sluice::LoadPipeline(dir, overrides);
  if (!pipeline.ok()) {
    spdlog::error("{}", pipeline.status().message());
    return kExitFailure;
  }
  sluice::RunOptions run_options;
  run_options.mode = vm.count("once") ? sluice::RunMode::kOnce
                     : vm.count("every") ? sluice::RunMode::kEvery
                                         : sluice::RunMode::kUntilCaughtUp;
  run_options.every = pipeline->config.every;
  if (vm.count("every") && !every.empty()) {
    auto duration = sluice::ParseDuration(every);
    if (!duration.ok() || duration->count() == 0) {
      std::cerr << "sluice run: --every " << every << ": "
                << (duration.ok() ? std::string("must be longer than 0") : duration.status().message()) << "\n";
      return kExitUsage;
    }
    run_options.every = *duration;
  }

  InstallSignalHandlers();
  const auto& config = pipeline->config;
  bool exclusive = config.source.assignment == sluice::KafkaSourceOptions::Assignment::kAll;
  auto source = std::make_unique<sluice::KafkaSource>(config.source);
  std::string described = source->Describe();
  sluice::EngineOptions engine_options;
  engine_options.exclusive_lock = exclusive;
  auto engine = sluice::Engine::Open(*pipeline, std::move(source), engine_options);
  if (!engine.ok()) {
    spdlog::error("{}", engine.status().message());
    return kExitFailure;
  }
  spdlog::info("pipeline {}: {} into {} ({} steps, {} seeds)", dir, described, config.database,
               pipeline->steps.size(), pipeline->seeds.size());
  sluice::Status st = (*engine)->Run(run_options, g_stop);
  if (!st.ok()) {
    if (st.code() != sluice::Status::Code::kSqlError) spdlog::error("{}", st.message());
    return kExitFailure;
  }
  if (g_stop.load()) spdlog::info("stopped by signal after the batch in flight");
  return kExitOk;
}

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
  auto broker = sluice::EmbeddedBroker::Start(brokers);
  if (!broker.ok()) {
    spdlog::error("{}", broker.status().message());
    return kExitFailure;
  }
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
    sluice::Status st = (*broker)->CreateTopic(name, partitions);
    if (!st.ok()) {
      spdlog::error("{}", st.message());
      return kExitFailure;
    }
  }
  std::cout << (*broker)->bootstrap() << std::endl;  // flushed: scripts read this line
  spdlog::info("embedded broker listening on {} (in memory, about 5 MiB per partition); Ctrl-C stops it",
               (*broker)->bootstrap());
  while (!g_stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  return kExitOk;
}

int CommandProduce(const std::vector<std::string>& args) {
  po::options_description options("options");
  sluice::ProducerOptions producer;
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
  sluice::ProduceReport report;
  sluice::Status st = sluice::ProduceLines(producer, in, &report);
  std::cerr << "delivered " << report.delivered << " of " << report.lines << " messages to " << producer.topic << "\n";
  if (!st.ok()) {
    spdlog::error("{}", st.message());
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::cout << kUsage;
    return args.empty() ? kExitUsage : kExitOk;
  }
  if (args[0] == "--version" || args[0] == "version") {
    std::cout << Version() << "\n";
    return kExitOk;
  }
  std::string command = args[0];
  args.erase(args.begin());
  try {
    if (command == "run") return CommandRun(args);
    if (command == "broker") return CommandBroker(args);
    if (command == "produce") return CommandProduce(args);
  } catch (const po::error& e) {
    std::cerr << "sluice " << command << ": " << e.what() << " (see sluice " << command << " --help)\n";
    return kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "sluice " << command << ": " << e.what() << "\n";
    return kExitFailure;
  }
  std::cerr << "sluice: unknown command '" << command << "'\n\n" << kUsage;
  return kExitUsage;
}
