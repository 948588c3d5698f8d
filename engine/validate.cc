// Validation implementation.
#include "engine/validate.h"

#include <algorithm>
#include <sstream>

#include "sql/seed_file.h"
#include "sql/target.h"

namespace sluice {

std::string DescribeEngineChoice(const EngineChoice& choice) {
  auto runs = [](const std::string& engine, const std::string& file) {
    return file.empty() ? engine + " skips it" : engine + " runs " + file;
  };
  return choice.name + ": " + runs(kEngines[0], choice.sqlite) + ", " + runs(kEngines[1], choice.postgres);
}

std::vector<std::string> ValidatePipeline(const std::string& dir, const ConfigOverrides& overrides,
                                          std::vector<std::string>* notes, bool check_on_server) {
  std::vector<std::string> problems;
  auto add_line = [&](const std::string& line) {
    if (std::find(problems.begin(), problems.end(), line) == problems.end()) problems.push_back(line);
  };
  auto add = [&](const Status& status) {
    std::istringstream lines(status.message());
    std::string line;
    while (std::getline(lines, line)) add_line(line);
  };
  // Every problem of seeds/ at once: loading the pipeline stops at the first
  // bad seed file name, and would not see a .CSV file or two names that
  // differ only in case.
  std::vector<std::string> seed_problems;
  std::vector<SeedFile> found_seeds = FindSeeds(dir, &seed_problems);
  Result<Pipeline> pipeline = LoadPipeline(dir, overrides);
  TargetOptions scratch_options;
  scratch_options.database = ":memory:";
  if (!pipeline.ok()) {
    add(pipeline.status());
    for (const auto& line : seed_problems) add_line(line);
    // The CSV files of the seeds that have a good name, in a scratch target.
    Result<std::unique_ptr<Target>> scratch = Target::Open(scratch_options);
    if (scratch.ok()) {
      for (const auto& seed : found_seeds) {
        Status loaded = (*scratch)->CheckSeed(seed);
        if (!loaded.ok()) add(loaded);
      }
    }
    return problems;
  }
  if (notes != nullptr) {
    for (const auto& choice : pipeline->per_engine) notes->push_back(DescribeEngineChoice(choice));
  }
  for (const auto& line : seed_problems) add_line(line);
  const bool on_server = IsDatabaseUrl(pipeline->config.database);
  if (on_server && !check_on_server) {
    // The steps are written for that server's dialect: `sluice run` checks
    // them against it (in a transaction that is rolled back) when it opens
    // the target, not against a scratch SQLite database. The seed files are
    // checked here.
    Result<std::unique_ptr<Target>> scratch = Target::Open(scratch_options);
    if (scratch.ok()) {
      for (const auto& seed : pipeline->seeds) {
        Status loaded = (*scratch)->CheckSeed(seed);
        if (!loaded.ok()) add(loaded);
      }
    }
    return problems;
  }
  if (on_server) {
    // On the server itself, in a scratch schema dropped afterwards: the live
    // tables are neither read nor written.
    scratch_options.database = pipeline->config.database;
    scratch_options.scratch = true;
  }
  Result<std::unique_ptr<Target>> opened = Target::Open(scratch_options);
  if (!opened.ok()) {
    add(opened.status());
    return problems;
  }
  Target* scratch = opened->get();
  // The catalog, schema.sql and the staging table first, as `sluice run`
  // does, so that a seed named like one of schema.sql's tables is reported.
  Status prepared = scratch->Prepare(pipeline->schema, pipeline->config.columns, pipeline->config.retention);
  if (!prepared.ok()) add(prepared);
  // Seeds one by one, so that every broken CSV is reported.
  bool seeds_ok = seed_problems.empty();
  for (const auto& seed : pipeline->seeds) {
    Status loaded = scratch->CheckSeed(seed);
    if (!loaded.ok()) {
      add(loaded);
      seeds_ok = false;
    }
  }
  if (!prepared.ok()) return problems;  // steps would fail for the same reason
  if (!seeds_ok) return problems;       // steps that join seeds would fail for the same reason
  std::vector<SqlFile> checks;
  for (const auto& check : pipeline->checks) checks.push_back(check.file);
  Status st = scratch->CheckSteps(pipeline->steps, checks, pipeline->seeds);
  if (!st.ok()) add(st);
  return problems;
}

}  // namespace sluice
