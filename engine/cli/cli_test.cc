// `sluice test`: the command over the fixture runner (engine/fixtures.h).
#include <boost/program_options.hpp>

#include <iostream>

#include "engine/cli/cli.h"
#include "engine/fixtures.h"
#include "sql/target.h"

namespace sluice {

namespace cli {

int CommandTest(const std::vector<std::string>& args) {
  namespace po = boost::program_options;
  po::options_description options("options");
  options.add_options()
      ("help,h", "show this help")
      ("case", po::value<std::string>(), "run only this case")
      ("db", po::value<std::string>(), "run the cases on this PostgreSQL server (postgresql://...), each in a fresh "
                                       "schema dropped afterwards, instead of an in-memory SQLite database")
      ("verbose,v", "log the batches");
  po::variables_map vm = cli::ParseWithDir(args, options);
  if (vm.count("help") || !vm.count("dir")) {
    std::cout << "usage: sluice test DIR [--case NAME] [--db postgresql://...] [-v]\n\n"
                 "Runs the pipeline over each fixture in DIR/tests/<case>/ against a fresh in-memory database (or a\n"
                 "fresh schema on the --db server), with no broker, and compares tables with\n"
                 "DIR/tests/<case>/expected/<table>.csv.\n"
                 "  input.jsonl   one message per line; optional _kafka_key, _kafka_partition and _kafka_timestamp\n"
                 "                fields override the defaults (partition 0, offset and timestamp = line number)\n"
                 "  batches       optional: lines per batch, one number per line\n"
                 "  expected/     <table>.csv: the header names the columns compared; rows in any order; an\n"
                 "                empty cell is NULL; integers compare exactly, text as text, REAL to the\n"
                 "                decimals written (or within column~TOLERANCE); any other file fails the case\n"
                 "Exits non-zero if any case fails.\n\n"
              << options;
    return vm.count("help") ? kExitOk : kExitUsage;
  }
  SetupLogging(vm.count("verbose") ? 0 : -1);
  std::string dir = vm["dir"].as<std::string>();
  std::string database;
  if (vm.count("db")) {
    database = vm["db"].as<std::string>();
    if (!IsDatabaseUrl(database)) {
      return Fail(Status::InvalidConfig("--db " + database +
                                        ": sluice test takes a postgresql:// server; on SQLite the cases run in memory"));
    }
  }
  Result<std::vector<FixtureResult>> results =
      RunFixtures(dir, vm.count("case") ? vm["case"].as<std::string>() : "", database);
  if (!results.ok()) {
    return Fail(results.status());
  }
  int failed = 0;
  for (const auto& result : *results) {
    std::cout << (result.passed ? "PASS " : "FAIL ") << result.name << "\n" << result.report;
    if (!result.passed) ++failed;
  }
  std::cout << (results->size() - failed) << " passed, " << failed << " failed\n";
  return failed ? kExitFailure : kExitOk;
}

}  // namespace cli

}  // namespace sluice
