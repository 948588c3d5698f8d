// Validation implementation.
#include "engine/validate.h"

#include <algorithm>
#include <sstream>

#include "sql/catalog.h"
#include "sql/seeds.h"
#include "sql/sql_file.h"
#include "sql/staging.h"

namespace sluice {

Status DryRunSteps(Database* db, const Pipeline& pipeline) {
  Result<std::unique_ptr<Transaction>> check = Transaction::Begin(db);
  if (!check.ok()) return check.status();
  SLUICE_RETURN_IF_ERROR(LoadChangedSeeds(db, pipeline.seeds, nullptr));
  SLUICE_RETURN_IF_ERROR(db->Exec(std::string("DELETE FROM ") + QuoteIdentifier(StagingWriter::kTable)));
  for (const auto& step : pipeline.steps) SLUICE_RETURN_IF_ERROR(RunSqlFile(db, step));
  // Checks run too (over the empty batch's results), so a broken one is
  // found before anything is consumed; what they find here is not judged.
  for (const auto& data_check : pipeline.checks) {
    Result<CheckOutcome> outcome = RunCheckFile(db, data_check.file);
    if (!outcome.ok()) return outcome.status();
  }
  (*check)->Rollback();
  return Status::Ok();
}

std::vector<std::string> ValidatePipeline(const std::string& dir, const ConfigOverrides& overrides) {
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
  if (!pipeline.ok()) {
    add(pipeline.status());
    for (const auto& line : seed_problems) add_line(line);
    // The CSV files of the seeds that have a good name, in a scratch database.
    Result<std::unique_ptr<Database>> db = Database::Open(":memory:");
    if (db.ok() && Catalog(db->get()).Install().ok()) {
      for (const auto& seed : found_seeds) {
        Status loaded = LoadChangedSeeds(db->get(), {seed}, nullptr);
        if (!loaded.ok()) add(loaded);
      }
    }
    return problems;
  }
  for (const auto& line : seed_problems) add_line(line);
  Result<std::unique_ptr<Database>> db = Database::Open(":memory:");
  if (!db.ok()) {
    add(db.status());
    return problems;
  }
  Database* scratch = db->get();
  Catalog catalog(scratch);
  Status st = catalog.Install();
  if (!st.ok()) {
    add(st);
    return problems;
  }
  // schema.sql before the seeds, as `sluice run` does, so that a seed named
  // like one of its tables is reported.
  bool schema_ok = true;
  if (pipeline->schema) {
    st = RunSqlFile(scratch, *pipeline->schema);
    if (!st.ok()) {
      add(st);
      schema_ok = false;
    }
  }
  // Seeds one by one, so that every broken CSV is reported.
  bool seeds_ok = seed_problems.empty();
  for (const auto& seed : pipeline->seeds) {
    Status loaded = LoadChangedSeeds(scratch, {seed}, nullptr);
    if (!loaded.ok()) {
      add(loaded);
      seeds_ok = false;
    }
  }
  if (!schema_ok) return problems;  // steps would fail for the same reason
  Result<std::unique_ptr<StagingWriter>> staging =
      StagingWriter::Create(scratch, pipeline->config.columns, pipeline->config.retention);
  if (!staging.ok()) {
    add(staging.status());
    return problems;
  }
  if (!seeds_ok) return problems;  // steps that join seeds would fail for the same reason
  st = DryRunSteps(scratch, *pipeline);
  if (!st.ok()) add(st);
  return problems;
}

}  // namespace sluice
