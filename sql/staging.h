// Staging: turns each message into a typed row of the staging table (read by
// step SQL as `batch`), or into a row of _sluice_quarantine with a reason a
// person can act on. The declared [columns] are taken from the JSON value by
// name or by JSON path and cast leniently: "42.00" and 42 are both REAL 42.0;
// a missing field or JSON null is NULL; "abc" for a REAL column quarantines
// the message. Tombstones (no value) are staged with NULL columns and a NULL
// _kafka_value so that steps can treat them as deletes.
#pragma once

#include <rapidjson/document.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "connectors/source.h"
#include "engine/status.h"
#include "sql/database.h"

namespace sluice {

enum class ColumnType { kText, kInteger, kReal, kBoolean, kJson };

struct ColumnSpec {
  std::string name;
  ColumnType type = ColumnType::kText;
  // Path into the JSON value: object member names and array indices. Empty
  // means the top-level member called `name`.
  struct PathElement {
    std::string member;  // used when index < 0
    int64_t index = -1;
  };
  std::vector<PathElement> path;
  std::string path_text;  // as written, for messages ("$.customer.id")
};

// Parses a [columns] value such as "REAL" or "TEXT $.customer.id". The error
// says what is accepted.
Result<ColumnSpec> ParseColumnSpec(const std::string& name, const std::string& spec);
const char* ColumnTypeName(ColumnType type);

// One converted value, ready to bind.
struct Cell {
  enum class Kind { kNull, kInt, kReal, kText };
  Kind kind = Kind::kNull;
  int64_t int_value = 0;
  double real_value = 0;
  std::string_view text;  // points into the parsed document or `owned`
  std::string owned;
};

// Converts message values into cells. Reuses its buffers across messages; the
// cells stay valid until the next Parse(). Not thread-safe.
class RowParser {
 public:
  explicit RowParser(std::vector<ColumnSpec> columns);
  // Fills cells() from `value`, or returns InvalidInput with the reason.
  // nullopt (a tombstone) gives all-NULL cells.
  Status Parse(const std::optional<std::string>& value);
  const std::vector<Cell>& cells() const { return cells_; }
  const std::vector<ColumnSpec>& columns() const { return columns_; }

 private:
  Status Convert(const ColumnSpec& column, const rapidjson::Value* value, Cell* cell);

  std::vector<ColumnSpec> columns_;
  std::vector<Cell> cells_;
  std::unique_ptr<char[]> value_buffer_;
  rapidjson::MemoryPoolAllocator<> value_allocator_;
  rapidjson::MemoryPoolAllocator<> stack_allocator_;
};

struct StageCounts {
  int64_t staged = 0;
  int64_t quarantined = 0;
  double parse_ms = 0;  // time spent turning values into typed cells
};

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
  // Stages or quarantines one message.
  Status Write(const Message& message, int64_t run_id, StageCounts* counts);

 private:
  StagingWriter(Database* db, std::vector<ColumnSpec> columns) : db_(db), parser_(std::move(columns)) {}
  Database* db_;
  RowParser parser_;
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
