// Shared pieces of the command line: signals, logging, version.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <filesystem>
#include <iostream>

#include "engine/cli/cli.h"

#include "connectors/kafka_source.h"
#include "sql/target.h"

namespace sluice::cli {

std::atomic<bool> g_stop{false};
std::atomic<int> g_signal{0};

namespace {
void OnSignal(int signal) {
  g_signal.store(signal);
  g_stop.store(true);
}
}  // namespace

void InstallSignalHandlers() {
  struct sigaction action {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  // SIGINT, SIGTERM, a closed terminal (SIGHUP) and every other signal whose
  // default would end the process without a word stop sluice the same way:
  // the batch in flight rolls back, never half-way, and the log says so.
  for (int signal : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF, SIGXCPU,
                     SIGPWR, SIGIO}) {
    sigaction(signal, &action, nullptr);
  }
  // Logs piped into `head` must not kill sluice mid-batch: writes to a
  // closed pipe fail instead.
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  sigaction(SIGPIPE, &ignore, nullptr);
  // Past a file size limit (ulimit -f) writes fail with EFBIG, which SQLite
  // reports like a full disk, instead of killing the process mid-write.
  sigaction(SIGXFSZ, &ignore, nullptr);
}

std::string SignalName(int signal) {
  switch (signal) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    case SIGQUIT: return "SIGQUIT";
    case SIGUSR1: return "SIGUSR1";
    case SIGUSR2: return "SIGUSR2";
    case SIGALRM: return "SIGALRM";
    default: return "signal " + std::to_string(signal);
  }
}

void SetupLogging(int verbosity) {
  auto logger = spdlog::get("sluice");
  if (!logger) logger = spdlog::stderr_color_mt("sluice");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(verbosity > 0 ? spdlog::level::debug : verbosity < 0 ? spdlog::level::warn : spdlog::level::info);
}

namespace po = boost::program_options;

po::variables_map ParseWithDir(const std::vector<std::string>& args, const po::options_description& options,
                               bool with_action) {
  po::options_description hidden;
  hidden.add_options()("dir", po::value<std::string>())("action", po::value<std::string>());
  po::options_description all;
  all.add(options).add(hidden);
  po::positional_options_description positional;
  positional.add("dir", 1);
  if (with_action) positional.add("action", 1);
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(all).positional(positional).run(), vm);
  po::notify(vm);
  // `sluice validate orders/pipeline.conf` means the directory that holds it.
  if (vm.count("dir")) {
    std::filesystem::path given = vm["dir"].as<std::string>();
    std::error_code ec;
    if (given.filename() == "pipeline.conf" && std::filesystem::is_regular_file(given, ec)) {
      std::string parent = given.parent_path().empty() ? "." : given.parent_path().string();
      vm.at("dir").value() = parent;
    }
  }
  return vm;
}

int Fail(const Status& status, const std::string& context) {
  std::cerr << (context.empty() ? "" : context + ": ") << status.message() << "\n";
  return kExitFailure;
}

std::string Version() {
  return std::string("sluice ") + SLUICE_VERSION + " (" + KafkaLibrary() + ", " + TargetLibraries() + ")";
}

}  // namespace sluice::cli
