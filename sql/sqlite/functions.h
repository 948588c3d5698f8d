// SQL helper functions in the style of DuckDB's date functions, for steps and
// for analysts: date_trunc(unit, ts), date_diff(unit, a, b), epoch_ms(ts) and
// to_timestamp(ms). SQLite has no timestamp type, so a timestamp argument is
// ISO-8601 text (any UTC offset) or an INTEGER of milliseconds since
// 1970-01-01T00:00:00Z, and results are ISO-8601 UTC text or INTEGER
// milliseconds. docs/sql-functions.md is the reference for analysts.
#pragma once

#include "common/status.h"

struct sqlite3;

namespace sluice {

// Registers date_trunc, date_diff, epoch_ms and to_timestamp on `db` as
// deterministic, innocuous UTF-8 scalar functions, so that they also work in
// views, indexes and generated columns with trusted_schema off. The caller
// keeps ownership of `db`. Calling it again replaces the same definitions.
// Returns SqlError naming the function SQLite refused.
Status RegisterFunctions(sqlite3* db);

}  // namespace sluice
