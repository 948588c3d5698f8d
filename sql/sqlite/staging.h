// Staging: writes each decoded message as a typed row of the staging table
// (read by step SQL as `batch`), or as a row of _sluice_quarantine with the
// decoder's reason. Tombstones (no value) are staged with NULL columns and a
// NULL _kafka_value so that steps can treat them as deletes.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "connectors/decoder.h"
#include "sql/target.h"
#include "common/status.h"
#include "sql/sqlite/database.h"

namespace sluice {


// Writes messages into _sluice_staging / _sluice_quarantine with statements
// prepared once. Requires the catalog tables to exist (Catalog::Install).
class StagingWriter {
 public:
  static constexpr const char* kTable = "_sluice_staging";
  static constexpr const char* kView = "batch";

  // Creates the staging table and the `batch` view for `columns`. With a
  // zero `retention` the table holds only the last batch and is recreated;
  // otherwise past batches stay for inspection for `retention` (columns
  // declared since are added) and `batch` shows only the run in progress.
  // A column whose declared type changed rebuilds the table (past batches
  // kept). `pipeline` (the consumer group) keys _sluice_quarantine rows: a
  // message is quarantined at most once per (pipeline, topic, partition,
  // offset), the latest reason winning.
  static Result<std::unique_ptr<StagingWriter>> Create(Database* db, std::vector<ColumnSpec> columns,
                                                      std::chrono::milliseconds retention = {},
                                                      std::string pipeline = {});

  // Removes what the next batch must not see: everything without history,
  // else the batches older than the retention. Call inside the batch
  // transaction.
  Status Clear();
  // Deletes the staging rows of runs older than `retention` (and of runs
  // that never committed): `sluice compact`. Returns the rows deleted.
  static Result<int64_t> PruneHistory(Database* db, std::chrono::milliseconds retention);
  // Stages `message` with the cells of `row`, or quarantines it with
  // row.error.
  Status Write(const Message& message, const DecodedRow& row, int64_t run_id, StageCounts* counts);

 private:
  static std::string HistoryPruneSql();
  explicit StagingWriter(std::vector<ColumnSpec> columns) : columns_(std::move(columns)) {}
  std::vector<ColumnSpec> columns_;
  Statement insert_;
  Statement quarantine_;
  Statement clear_;
  std::chrono::milliseconds retention_{0};
  std::string pipeline_;
};

// The CREATE TABLE statement of the staging table for `columns` (also used by
// validation to build a scratch database with the batch's shape).
std::string StagingTableDdl(const std::vector<ColumnSpec>& columns, const std::string& table);
std::string BatchViewDdl(const std::vector<ColumnSpec>& columns, const std::string& view, const std::string& table,
                         bool keep_history = false);

}  // namespace sluice
