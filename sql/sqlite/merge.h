// MERGE INTO for step files: the statement Delta and Iceberg users write,
// translated into SQL that SQLite runs (INSERT ... ON CONFLICT ... DO UPDATE,
// UPDATE ... FROM, or INSERT ... SELECT ... WHERE NOT EXISTS, depending on the
// WHEN clauses). The ON clause must equate exactly the columns of a unique
// index or primary key of the target, because SQLite's upsert finds the
// matching row through that index; every match (and the duplicate check)
// compares as that index does: the source value with the target column's
// affinity applied, in the index's collation. Before the translated
// statement runs, a check query fails the MERGE when two source rows have the
// same key, as Delta does. docs/merge.md lists the grammar, the matching
// rules and each translation.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "common/status.h"
#include "sql/sqlite/database.h"

namespace sluice {

// True when the first token of `sql`, after whitespace and comments, is the
// keyword MERGE (any case), or when the statement that starts `sql` is WITH
// ... MERGE.
bool IsMergeStatement(std::string_view sql);

// The offset just past the ';' that ends the statement beginning at `start`,
// or text.size() when there is none. Semicolons inside string literals,
// quoted identifiers, comments and parentheses do not count.
size_t StatementEnd(std::string_view text, size_t start);

// A MERGE translated to SQLite. `check_sql` returns a row for a source key
// that MERGE must refuse (columns: the key values, the number of source rows,
// 1 when a target row has that key, and the source's distinct spellings of
// the key when there are several, else NULL); `sql` is the one statement that
// does the merge. Both call sluice_merge_key, which PlanMerge and RunMerge
// register on the connection.
struct MergePlan {
  std::string check_sql;
  std::string sql;
};

// Parses `statement` (one MERGE, optionally ending with ';') and translates
// it, reading the target's columns and unique keys (and the source's columns
// for `*`) from `db`. Nothing is written. Fails with SqlError naming the
// target and saying what to change for unsupported forms, an ON clause that
// does not match a unique key, or unknown columns.
Result<MergePlan> PlanMerge(Database* db, std::string_view statement);

// Plans `statement` (once per connection and schema: later runs reuse the
// plan until the schema it was read from changes), runs the duplicate-key
// check and then the translated statement. Does not open a transaction: a
// failing check writes nothing, and a failing statement is undone by
// SQLite's statement rollback.
Status RunMerge(Database* db, std::string_view statement);

}  // namespace sluice
