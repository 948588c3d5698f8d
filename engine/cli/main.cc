// The sluice executable: dispatches to the commands in engine/cli*.cc.
#include <boost/program_options.hpp>
#include <iostream>
#include <map>

#include "engine/cli/cli.h"

namespace {

const char* kUsage = R"(usage: sluice COMMAND [OPTIONS]

Turns Kafka topics into curated SQLite tables by running a pipeline's own .sql
files over bounded micro-batches.

commands:
  run DIR          run the pipeline in DIR (pipeline.conf, schema.sql, steps/, seeds/)
  validate DIR     check a pipeline without touching Kafka or its database
  test DIR         run the pipeline over its fixtures (DIR/tests/*) without a broker
  status DIR       offsets, lag, recent runs and quarantine counts
  reset DIR        move the pipeline's offsets so the next run reprocesses (or skips)
  quarantine DIR   list quarantined messages, or replay them through the pipeline
  compact DIR      prune expired staging history and reclaim space
  init DIR         create a new pipeline directory that passes validate and test
  broker           start an embedded Kafka-protocol broker for local development
  produce          publish JSON lines to a topic

`sluice COMMAND --help` describes a command. `sluice --version` prints versions.
)";

}  // namespace

int main(int argc, char** argv) {
  namespace cli = sluice::cli;
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::cout << kUsage;
    return args.empty() ? cli::kExitUsage : cli::kExitOk;
  }
  if (args[0] == "--version" || args[0] == "version") {
    std::cout << cli::Version() << "\n";
    return cli::kExitOk;
  }
  const std::map<std::string, int (*)(const std::vector<std::string>&)> commands = {
      {"run", cli::CommandRun},           {"validate", cli::CommandValidate}, {"test", cli::CommandTest},
      {"status", cli::CommandStatus},     {"reset", cli::CommandReset},       {"quarantine", cli::CommandQuarantine},
      {"compact", cli::CommandCompact},   {"init", cli::CommandInit},         {"broker", cli::CommandBroker},
      {"produce", cli::CommandProduce}};
  std::string command = args[0];
  args.erase(args.begin());
  auto found = commands.find(command);
  if (found == commands.end()) {
    std::cerr << "sluice: unknown command '" << command << "'\n\n" << kUsage;
    return cli::kExitUsage;
  }
  try {
    return found->second(args);
  } catch (const boost::program_options::error& e) {
    std::cerr << "sluice " << command << ": " << e.what() << " (see sluice " << command << " --help)\n";
    return cli::kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "sluice " << command << ": " << e.what() << "\n";
    return cli::kExitFailure;
  }
}
