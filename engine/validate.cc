// Validation implementation.
#include "engine/validate.h"

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
  (*check)->Rollback();
  return Status::Ok();
}

std::vector<std::string> ValidatePipeline(const std::string& dir, const ConfigOverrides& overrides) {
  std::vector<std::string> problems;
  auto add = [&](const Status& status) {
    std::istringstream lines(status.message());
    std::string line;
    while (std::getline(lines, line)) problems.push_back(line);
  };
  Result<Pipeline> pipeline = LoadPipeline(dir, overrides);
  if (!pipeline.ok()) {
    add(pipeline.status());
    return problems;
  }
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
  // Seeds one by one, so that every broken CSV is reported.
  bool seeds_ok = true;
  for (const auto& seed : pipeline->seeds) {
    Status loaded = LoadChangedSeeds(scratch, {seed}, nullptr);
    if (!loaded.ok()) {
      add(loaded);
      seeds_ok = false;
    }
  }
  if (pipeline->schema) {
    st = RunSqlFile(scratch, *pipeline->schema);
    if (!st.ok()) {
      add(st);
      return problems;  // steps would fail for the same reason
    }
  }
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
