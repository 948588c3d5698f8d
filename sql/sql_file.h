// SqlFile: runs an analyst's .sql file (schema.sql or a step) statement by
// statement, so that an error names the file and the line of the statement
// (or of the exact token, for syntax errors). Transaction control is refused:
// files run inside sluice's transaction, which owns atomicity. ATTACH is
// is allowed only for files under `attach_root` (the pipeline directory)
// unless `attach_anywhere`, so that a step cannot reach other files.
// MERGE INTO statements are translated to SQLite's upsert (sql/merge.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>
#include <vector>

#include "engine/status.h"
#include "sql/database.h"

namespace sluice {

struct SqlFile {
  std::string path;     // on disk
  std::string display;  // in messages: "steps/20_upsert.sql"
  std::string text;
  std::string attach_root;      // ATTACH may name files under this directory; empty: no ATTACH at all
  bool attach_anywhere = false;  // [target] allow_attach_outside
};

// Reads `path`; `display` names it in messages.
Result<SqlFile> ReadSqlFile(const std::string& path, const std::string& display);

// Runs every statement of `file`. On failure returns SqlError with
// "<display>:<line>: <sqlite message>" and leaves the transaction to the caller.
Status RunSqlFile(Database* db, const SqlFile& file);

// What a data check found: the rows that break its expectation.
struct CheckOutcome {
  int64_t rows = 0;
  std::vector<std::string> sample;  // the first few rows, "column=value, ..."
};

// Runs a data check: `file` holds one read-only query that returns the rows
// breaking an expectation (none: it holds). A file that writes, holds more
// than one statement or returns no columns is an error naming file and line.
Result<CheckOutcome> RunCheckFile(Database* db, const SqlFile& file, size_t sample_rows = 3);

// The 1-based line of byte `offset` in `text`.
int LineAt(const std::string& text, size_t offset);

}  // namespace sluice
