// Shared pieces of the command line: signals, logging, version.
#include <librdkafka/rdkafka.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <csignal>

#include "engine/cli.h"

namespace sluice::cli {

std::atomic<bool> g_stop{false};

namespace {
void OnSignal(int) { g_stop.store(true); }
}  // namespace

void InstallSignalHandlers() {
  struct sigaction action {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

void SetupLogging(int verbosity) {
  auto logger = spdlog::get("sluice");
  if (!logger) logger = spdlog::stderr_color_mt("sluice");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(verbosity > 0 ? spdlog::level::debug : verbosity < 0 ? spdlog::level::warn : spdlog::level::info);
}

std::string Version() {
  return std::string("sluice ") + SLUICE_VERSION + " (librdkafka " + rd_kafka_version_str() + ", SQLite " +
         sqlite3_libversion() + ")";
}

}  // namespace sluice::cli
