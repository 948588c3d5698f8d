// The sluice command line. Each command is a function from its arguments
// (after the command name) to an exit code; main() dispatches. Boost's
// program_options exceptions are caught in main(), at the edge.
#pragma once

#include <atomic>
#include <boost/program_options.hpp>
#include <string>
#include <vector>

#include "common/status.h"

namespace sluice::cli {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

// Set by SIGINT/SIGTERM once InstallSignalHandlers() ran.
extern std::atomic<bool> g_stop;
// The last signal that set g_stop (0: none).
extern std::atomic<int> g_signal;
// "SIGTERM" for messages.
std::string SignalName(int signal);
void InstallSignalHandlers();

// verbosity: 1 debug (-v), 0 info, -1 warnings and errors only (-q).
void SetupLogging(int verbosity);

// Parses a command's `args` with `options` plus a positional DIR (and a
// positional ACTION after it when `with_action`). Throws Boost's errors,
// which main() reports as usage errors.
boost::program_options::variables_map ParseWithDir(const std::vector<std::string>& args,
                                                   const boost::program_options::options_description& options,
                                                   bool with_action = false);

// Prints `status` (after `context: ` when given) to stderr; returns
// kExitFailure.
int Fail(const Status& status, const std::string& context = "");

// "sluice 0.1.0 (librdkafka 2.0.2, SQLite 3.40.1)"
std::string Version();

int CommandRun(const std::vector<std::string>& args);         // cli_run.cc
int CommandBroker(const std::vector<std::string>& args);      // cli_dev.cc
int CommandProduce(const std::vector<std::string>& args);     // cli_dev.cc
int CommandInit(const std::vector<std::string>& args);        // cli_dev.cc
int CommandValidate(const std::vector<std::string>& args);    // cli_inspect.cc
int CommandStatus(const std::vector<std::string>& args);      // cli_inspect.cc
int CommandQuarantine(const std::vector<std::string>& args);  // cli_inspect.cc
int CommandCompact(const std::vector<std::string>& args);     // cli_inspect.cc
int CommandReset(const std::vector<std::string>& args);       // cli_reset.cc
int CommandTest(const std::vector<std::string>& args);        // cli_test.cc

}  // namespace sluice::cli
