// Step runner: runs an analyst's .sql file (schema.sql or a step) statement by
// statement, so that an error names the file and the line of the statement
// (or of the exact token, for syntax errors). Transaction control is refused:
// files run inside sluice's transaction, which owns atomicity. ATTACH is
// is allowed only for files under `attach_root` (the pipeline directory)
// unless `attach_anywhere`, so that a step cannot reach other files.
// MERGE INTO statements are translated to SQLite's upsert (sql/sqlite/merge.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>
#include <vector>

#include "common/status.h"
#include "sql/sql_file.h"
#include "sql/target.h"
#include "sql/sqlite/database.h"

namespace sluice {

// Runs every statement of `file`. On failure returns SqlError with
// "<display>:<line>: <sqlite message>" and leaves the transaction to the caller.
Status RunSqlFile(Database* db, const SqlFile& file);

// Runs a data check: `file` holds one read-only query that returns the rows
// breaking an expectation (none: it holds). A file that writes, holds more
// than one statement or returns no columns is an error naming file and line.
Result<CheckOutcome> RunCheckFile(Database* db, const SqlFile& file, size_t sample_rows = 3);

}  // namespace sluice
