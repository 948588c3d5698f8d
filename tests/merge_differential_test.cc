// MERGE against a reference that defines its semantics with SQLite's own
// unique index, one source row at a time: random targets (key columns of
// every declared type and none, BINARY/NOCASE/RTRIM collations on the column
// or in the index, composite keys, INTEGER PRIMARY KEY, WITHOUT ROWID), random
// sources (typed and untyped tables, subqueries, JSON), NULL keys, each MERGE
// form, with and without WHEN conditions. Each case must end with the same
// rows, or both must fail (a duplicate key both times) and write nothing.
//
// The reference, per source row (NULL keys last, in source order):
// - duplicate: the key conflicts, in a scratch table with the target's key
//   declarations and unique index, with an earlier source row's key;
// - matched: INSERT ... ON CONFLICT DO UPDATE on the target's own index
//   conflicts (the RETURNING row is the matched row), inside a savepoint;
// - then the WHEN MATCHED update of that row, or the WHEN NOT MATCHED insert.
#include <gtest/gtest.h>

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sql/sqlite/database.h"
#include "sql/sqlite/merge.h"

namespace sluice {
namespace {

constexpr int kCases = 2000;

// A fixed-seed generator whose sequence does not depend on the library.
class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed) {}
  uint32_t Next(uint32_t range) {
    state_ = state_ * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<uint32_t>(state_ >> 33) % range;
  }
  bool Chance(uint32_t percent) { return Next(100) < percent; }
  template <typename T>
  const T& Pick(const std::vector<T>& options) {
    return options[Next(static_cast<uint32_t>(options.size()))];
  }

 private:
  uint64_t state_;
};

// Key values as SQL literals: numbers, texts that look like numbers or differ
// by case or trailing spaces, blobs, NULL. A small pool, so keys collide.
const std::vector<std::string> kKeyValues = {
    "7",      "7.0",    "'7'",     "'07'",   "'7.0'", "' 7'",  "'7 '",  "-3",        "'-3'",
    "0",      "0.0",    "'0'",     "1.5",    "'1.5'", "'a'",   "'A'",   "'a '",      "'abc'",
    "'ABC'",  "''",     "'1e1'",   "10",     "1e20",  "x'37'", "x'61'", "NULL",      "NULL",
    "42",     "'42'",   "42.0",    "9007199254740992",  "'9007199254740992'", "'x y'", "'X Y  '"};
// The same without blobs, for sources built from JSON.
const std::vector<std::string> kJsonKeyValues = {"7",   "7.0", "'7'",  "'07'", "-3",   "'-3'", "0",    "1.5",
                                                 "'a'", "'A'", "'a '", "''",   "1e20", "NULL", "'42'", "42"};
const std::vector<std::string> kTypes = {"INTEGER", "TEXT", "REAL", "NUMERIC", "", "INT", "VARCHAR(8)", "DOUBLE"};
const std::vector<std::string> kCollations = {"BINARY", "NOCASE", "RTRIM"};

struct Column {
  std::string name;
  std::string type;
  std::string collation;  // the index's (or the column's, when `on_column`)
  bool on_column = false;
};

struct Case {
  std::vector<std::string> ddl;  // target, source, data
  std::string merge;
  // For the reference:
  std::vector<Column> keys;
  bool rowid = false;      // INTEGER PRIMARY KEY
  std::string source;      // "src AS s" or "(subquery) AS s"
  bool has_matched = false;
  bool matched_condition = false;
  bool update_all = false;
  bool has_not_matched = false;
  bool insert_condition = false;
  std::string described;
};

Case Generate(Random& random) {
  Case c;
  int key_count = random.Chance(30) ? 2 : 1;
  c.rowid = key_count == 1 && random.Chance(12);
  bool without_rowid = !c.rowid && random.Chance(10);
  bool primary_key = without_rowid || (!c.rowid && random.Chance(25));
  for (int key_idx = 0; key_idx < key_count; ++key_idx) {
    Column key{"k" + std::to_string(key_idx + 1), c.rowid ? "INTEGER" : random.Pick(kTypes),
               c.rowid ? "BINARY" : random.Pick(kCollations), false};
    key.on_column = !c.rowid && random.Chance(40);
    c.keys.push_back(key);
  }
  std::string table = "CREATE TABLE t (";
  std::vector<std::string> key_names;
  std::vector<std::string> index_terms;
  for (const Column& key : c.keys) {
    table += key.name + (key.type.empty() ? "" : " " + key.type);
    if (c.rowid) table += " PRIMARY KEY";
    if (key.on_column) table += " COLLATE " + key.collation;
    if (without_rowid) table += " NOT NULL";
    table += ", ";
    key_names.push_back(key.name);
    index_terms.push_back(key.on_column ? key.name : key.name + " COLLATE " + key.collation);
  }
  table += "v INTEGER, ts INTEGER, note TEXT DEFAULT 'none'";
  if (primary_key) {
    std::string terms;
    for (const std::string& term : index_terms) terms += (terms.empty() ? "" : ", ") + term;
    table += ", PRIMARY KEY (" + terms + ")";
  }
  table += std::string(")") + (without_rowid ? " WITHOUT ROWID" : "");
  c.ddl.push_back(table);
  if (!c.rowid && !primary_key) {
    std::string terms;
    for (const std::string& term : index_terms) terms += (terms.empty() ? "" : ", ") + term;
    c.ddl.push_back("CREATE UNIQUE INDEX t_key ON t (" + terms + ")");
  }
  // Decoys that are not the key: a plain index and a partial unique index.
  if (random.Chance(30)) c.ddl.push_back("CREATE INDEX t_by_v ON t (v)");
  if (random.Chance(20)) c.ddl.push_back("CREATE UNIQUE INDEX t_partial ON t (ts) WHERE ts > 1000000");

  // Target rows (a failing row, e.g. 'a' into an INTEGER PRIMARY KEY, is
  // skipped by the harness).
  int target_rows = static_cast<int>(random.Next(8));
  for (int row = 0; row < target_rows; ++row) {
    std::string values;
    for (size_t key_idx = 0; key_idx < c.keys.size(); ++key_idx) values += random.Pick(kKeyValues) + ", ";
    c.ddl.push_back("INSERT OR IGNORE INTO t VALUES (" + values + std::to_string(random.Next(50)) + ", " +
                    std::to_string(random.Next(100)) + ", 'stored')");
  }

  // The source: a typed or untyped table, used directly or through a
  // subquery, or JSON documents read with json_extract.
  int source_kind = static_cast<int>(random.Next(4));
  bool json = source_kind == 3;
  std::string source_table = "CREATE TABLE src (";
  for (const Column& key : c.keys) {
    std::string type = random.Pick(std::vector<std::string>{"", "INTEGER", "TEXT", "REAL", "NUMERIC", "ANY"});
    source_table += key.name + (type.empty() ? "" : " " + type) + ", ";
  }
  source_table += "v INTEGER, ts INTEGER, flag INTEGER)";
  c.ddl.push_back(json ? "CREATE TABLE srcj (doc TEXT)" : source_table);
  int source_rows = static_cast<int>(random.Next(9));
  for (int row = 0; row < source_rows; ++row) {
    std::vector<std::string> keys;
    for (size_t key_idx = 0; key_idx < c.keys.size(); ++key_idx) {
      keys.push_back(random.Pick(json ? kJsonKeyValues : kKeyValues));
    }
    std::string v = std::to_string(random.Next(50));
    std::string ts = std::to_string(random.Next(100));
    std::string flag = std::to_string(random.Next(2));
    if (json) {
      std::string object = "json_object(";
      for (size_t key_idx = 0; key_idx < keys.size(); ++key_idx) {
        object += "'" + c.keys[key_idx].name + "', " + keys[key_idx] + ", ";
      }
      c.ddl.push_back("INSERT INTO srcj VALUES (" + object + "'v', " + v + ", 'ts', " + ts + ", 'flag', " + flag +
                      "))");
    } else {
      std::string values;
      for (const std::string& key : keys) values += key + ", ";
      c.ddl.push_back("INSERT INTO src VALUES (" + values + v + ", " + ts + ", " + flag + ")");
    }
  }
  if (source_kind == 0 || source_kind == 1) {
    c.source = "src AS s";
  } else if (source_kind == 2) {
    c.source = "(SELECT * FROM src WHERE v >= 0) AS s";
  } else {
    std::string columns;
    for (const Column& key : c.keys) columns += "json_extract(doc, '$." + key.name + "') AS " + key.name + ", ";
    c.source = "(SELECT " + columns +
               "json_extract(doc, '$.v') AS v, json_extract(doc, '$.ts') AS ts, json_extract(doc, '$.flag') AS flag "
               "FROM srcj) AS s";
  }

  int form = static_cast<int>(random.Next(4));  // 0, 1: both clauses; 2: MATCHED only; 3: NOT MATCHED only
  c.has_matched = form != 3;
  c.has_not_matched = form != 2;
  c.matched_condition = c.has_matched && random.Chance(50);
  c.insert_condition = c.has_not_matched && random.Chance(40);
  c.update_all = c.has_matched && random.Chance(30);
  bool insert_all = random.Chance(30);

  std::string on;
  std::string insert_columns;
  std::string insert_values;
  for (const Column& key : c.keys) {
    on += std::string(on.empty() ? "" : " AND ") + (random.Chance(50) ? "t." + key.name + " = s." + key.name
                                                                       : "s." + key.name + " = t." + key.name);
    insert_columns += key.name + ", ";
    insert_values += "s." + key.name + ", ";
  }
  c.merge = "MERGE INTO t USING " + c.source + " ON " + on;
  if (c.has_matched) {
    c.merge += std::string(" WHEN MATCHED") + (c.matched_condition ? " AND s.ts > t.ts" : "") + " THEN UPDATE SET " +
               (c.update_all ? "*" : "v = t.v + s.v, ts = s.ts, note = 'updated'");
  }
  if (c.has_not_matched) {
    c.merge += std::string(" WHEN NOT MATCHED") + (c.insert_condition ? " AND s.flag = 1" : "") + " THEN INSERT " +
               (insert_all ? "*" : "(" + insert_columns + "v, ts) VALUES (" + insert_values + "s.v, s.ts)");
  }
  for (const std::string& statement : c.ddl) c.described += statement + ";\n";
  c.described += c.merge + ";\n";
  return c;
}

// The outcome of a MERGE or of the reference: the target's rows, or an error.
struct Outcome {
  bool failed = false;
  bool duplicate = false;  // failed because two source rows share a key
  std::string rows;
};

std::string Rows(Database* db, const std::vector<Column>& keys) {
  std::string select = "SELECT ";
  for (const Column& key : keys) select += "quote(" + key.name + ") || '|' || ";
  select += "quote(v) || '|' || quote(ts) || '|' || quote(note) AS r FROM t ORDER BY r";
  std::string rows;
  Result<Statement> stmt = db->Prepare(select);
  if (!stmt.ok()) return "cannot read: " + stmt.status().message();
  while (true) {
    Result<bool> row = stmt->Step();
    if (!row.ok()) return "cannot read: " + row.status().message();
    if (!*row) break;
    rows += stmt->ColumnText(0) + "\n";
  }
  return rows;
}

// One source row, as the reference reads it.
struct SourceRow {
  std::vector<sqlite3_value*> keys;
  sqlite3_value* v = nullptr;
  sqlite3_value* ts = nullptr;
  sqlite3_value* flag = nullptr;
  bool null_key = false;
};

struct SourceRows {
  std::vector<SourceRow> rows;
  ~SourceRows() {
    for (SourceRow& row : rows) {
      for (sqlite3_value* key : row.keys) sqlite3_value_free(key);
      sqlite3_value_free(row.v);
      sqlite3_value_free(row.ts);
      sqlite3_value_free(row.flag);
    }
  }
};

// Runs `sql` with `values` bound in order; returns the first row's first
// column (dup'd) through `first` when asked. False on an SQLite error.
bool Run(Database* db, const std::string& sql, const std::vector<sqlite3_value*>& values, std::string* error,
         std::vector<sqlite3_value*>* returned = nullptr) {
  Result<Statement> stmt = db->Prepare(sql);
  if (!stmt.ok()) {
    *error = stmt.status().message();
    return false;
  }
  for (size_t value_idx = 0; value_idx < values.size(); ++value_idx) {
    sqlite3_bind_value(stmt->get(), static_cast<int>(value_idx + 1), values[value_idx]);
  }
  while (true) {
    Result<bool> row = stmt->Step();
    if (!row.ok()) {
      *error = row.status().message();
      return false;
    }
    if (!*row) return true;
    if (returned != nullptr && returned->empty()) {
      for (int column = 0; column < sqlite3_column_count(stmt->get()); ++column) {
        returned->push_back(sqlite3_value_dup(sqlite3_column_value(stmt->get(), column)));
      }
    }
  }
}

Outcome Reference(Database* db, const Case& c) {
  Outcome outcome;
  SourceRows source;
  {
    std::string select = "SELECT ";
    for (const Column& key : c.keys) select += "s." + key.name + ", ";
    select += "s.v, s.ts, s.flag FROM " + c.source;
    Result<Statement> stmt = db->Prepare(select);
    if (!stmt.ok()) return {true, false, stmt.status().message()};
    while (true) {
      Result<bool> row = stmt->Step();
      if (!row.ok()) return {true, false, row.status().message()};
      if (!*row) break;
      SourceRow source_row;
      int column = 0;
      for (; column < static_cast<int>(c.keys.size()); ++column) {
        source_row.keys.push_back(sqlite3_value_dup(sqlite3_column_value(stmt->get(), column)));
        source_row.null_key = source_row.null_key || sqlite3_column_type(stmt->get(), column) == SQLITE_NULL;
      }
      source_row.v = sqlite3_value_dup(sqlite3_column_value(stmt->get(), column++));
      source_row.ts = sqlite3_value_dup(sqlite3_column_value(stmt->get(), column++));
      source_row.flag = sqlite3_value_dup(sqlite3_column_value(stmt->get(), column++));
      source.rows.push_back(source_row);
    }
  }
  std::string error;
  std::string key_columns;
  std::string key_parameters;
  std::string same_row;
  for (size_t key_idx = 0; key_idx < c.keys.size(); ++key_idx) {
    key_columns += std::string(key_idx ? ", " : "") + c.keys[key_idx].name;
    key_parameters += std::string(key_idx ? ", " : "") + "?";
    same_row += std::string(key_idx ? " AND " : "") + c.keys[key_idx].name + " IS ? COLLATE BINARY";
  }

  // Duplicates, by a scratch table keyed as the target is.
  std::string scratch = "CREATE TEMP TABLE dup (";
  std::string terms;
  for (size_t key_idx = 0; key_idx < c.keys.size(); ++key_idx) {
    const Column& key = c.keys[key_idx];
    scratch += key.name + (key.type.empty() ? "" : " " + key.type) + (c.rowid ? " PRIMARY KEY" : "") + ", ";
    terms += std::string(key_idx ? ", " : "") + key.name + " COLLATE " + key.collation;
  }
  scratch += "seen INTEGER" + std::string(c.rowid ? ")" : ", UNIQUE (" + terms + "))");
  if (!Run(db, "DROP TABLE IF EXISTS temp.dup", {}, &error) || !Run(db, scratch, {}, &error)) {
    return {true, false, "reference: " + error};
  }
  if (!Run(db, "SAVEPOINT reference", {}, &error)) return {true, false, "reference: " + error};

  // Whether the target's own unique index has the key of `row` (an INSERT
  // ... ON CONFLICT DO NOTHING inserts nothing), and then the stored key of
  // that row (from a DO UPDATE that changes nothing). Undone either way. A
  // key the target cannot take (e.g. 'a' for an INTEGER PRIMARY KEY) matches
  // nothing.
  auto matched_row = [&](const SourceRow& row, bool* matched, std::vector<sqlite3_value*>* stored) {
    *matched = false;
    if (row.null_key) return true;
    std::string probe_error;
    if (!Run(db, "SAVEPOINT probe", {}, &probe_error)) return false;
    std::vector<sqlite3_value*> inserted;
    bool ran = Run(db, "INSERT INTO t (" + key_columns + ") VALUES (" + key_parameters +
                           ") ON CONFLICT DO NOTHING RETURNING 1",
                   row.keys, &probe_error, &inserted);
    bool conflict = ran && inserted.empty();
    for (sqlite3_value* value : inserted) sqlite3_value_free(value);
    if (conflict) {
      Run(db, "INSERT INTO t (" + key_columns + ") VALUES (" + key_parameters +
                  ") ON CONFLICT DO UPDATE SET v = v RETURNING " + key_columns,
          row.keys, &probe_error, stored);
      *matched = !stored->empty();
    }
    Run(db, "ROLLBACK TO probe", {}, &probe_error);
    Run(db, "RELEASE probe", {}, &probe_error);
    return true;
  };

  // The duplicate check: before anything is written, against the target as
  // it is.
  for (const SourceRow& row : source.rows) {
    if (row.null_key) continue;
    bool matched = false;
    std::vector<sqlite3_value*> stored;
    if (!matched_row(row, &matched, &stored)) return {true, false, "reference: probe failed"};
    for (sqlite3_value* value : stored) sqlite3_value_free(value);
    std::vector<sqlite3_value*> inserted;
    std::string dup_error;
    bool ran = Run(db, "INSERT INTO dup (" + key_columns + ") VALUES (" + key_parameters +
                           ") ON CONFLICT DO NOTHING RETURNING 1",
                   row.keys, &dup_error, &inserted);
    bool repeated = ran && inserted.empty();
    for (sqlite3_value* value : inserted) sqlite3_value_free(value);
    if (!repeated) continue;
    bool counts = (c.has_matched && c.has_not_matched) || (c.has_matched && matched) ||
                  (c.has_not_matched && !matched);
    if (counts) {
      Run(db, "ROLLBACK TO reference", {}, &error);
      Run(db, "RELEASE reference", {}, &error);
      return {true, true, "duplicate"};
    }
  }

  auto process = [&](const SourceRow& row) {
    bool matched = false;
    std::vector<sqlite3_value*> stored;
    if (!matched_row(row, &matched, &stored)) return false;
    bool ok = true;
    if (matched && c.has_matched) {
      std::string set = c.update_all ? "v = ?, ts = ?" : "v = v + ?, ts = ?, note = 'updated'";
      std::vector<sqlite3_value*> values = {row.v, row.ts};
      values.insert(values.end(), stored.begin(), stored.end());
      std::string where = same_row;
      if (c.matched_condition) {
        where += " AND ? > ts";
        values.push_back(row.ts);
      }
      ok = Run(db, "UPDATE t SET " + set + " WHERE " + where, values, &error);
    } else if (!matched && c.has_not_matched && (!c.insert_condition || sqlite3_value_int64(row.flag) == 1)) {
      std::vector<sqlite3_value*> values = row.keys;
      values.push_back(row.v);
      values.push_back(row.ts);
      ok = Run(db, "INSERT INTO t (" + key_columns + ", v, ts) VALUES (" + key_parameters + ", ?, ?)", values, &error);
    }
    for (sqlite3_value* value : stored) sqlite3_value_free(value);
    return ok;
  };
  bool ok = true;
  for (const SourceRow& row : source.rows) {
    if (ok && !row.null_key) ok = process(row);
  }
  for (const SourceRow& row : source.rows) {
    if (ok && row.null_key) ok = process(row);
  }
  std::string end_error;
  if (!ok) {
    Run(db, "ROLLBACK TO reference", {}, &end_error);
    Run(db, "RELEASE reference", {}, &end_error);
    return {true, false, error};
  }
  Run(db, "RELEASE reference", {}, &end_error);
  outcome.rows = Rows(db, c.keys);
  return outcome;
}

Outcome Merged(Database* db, const Case& c) {
  Status st = RunMerge(db, c.merge);
  if (!st.ok()) {
    bool duplicate = st.message().find(" source rows ") != std::string::npos;
    return {true, duplicate, st.message()};
  }
  return {false, false, Rows(db, c.keys)};
}

std::unique_ptr<Database> Build(const Case& c) {
  auto db = Database::Open(":memory:");
  if (!db.ok()) return nullptr;
  for (const std::string& statement : c.ddl) {
    Status st = (*db)->Exec(statement);
    // Stored rows the target refuses (e.g. 'a' into an INTEGER PRIMARY KEY)
    // are simply left out; the schema must build.
    if (!st.ok() && statement.rfind("INSERT", 0) != 0) {
      ADD_FAILURE() << st.message() << "\n" << statement;
      return nullptr;
    }
  }
  return std::move(*db);
}

TEST(MergeDifferentialTest, AgreesWithTheRowByRowUpsertOnRandomCases) {
  Random random(20261013);
  int divergences = 0;
  int duplicates = 0;
  int failures = 0;
  int changed = 0;
  for (int case_idx = 0; case_idx < kCases; ++case_idx) {
    Case c = Generate(random);
    std::unique_ptr<Database> merged_db = Build(c);
    std::unique_ptr<Database> reference_db = Build(c);
    ASSERT_TRUE(merged_db && reference_db);
    std::string before = Rows(merged_db.get(), c.keys);
    Outcome merged = Merged(merged_db.get(), c);
    Outcome expected = Reference(reference_db.get(), c);
    // Both must write the same rows, or both fail and write nothing. A
    // duplicate the reference finds must be refused as one; MERGE may call
    // a failure a duplicate when the reference fails otherwise (two rows
    // with the key 1e20, which an INTEGER PRIMARY KEY cannot take).
    bool same = merged.failed == expected.failed &&
                (merged.failed ? Rows(merged_db.get(), c.keys) == before && expected.duplicate <= merged.duplicate
                               : merged.rows == expected.rows);
    if (!same) {
      ++divergences;
      if (divergences <= 5) {
        ADD_FAILURE() << "case " << case_idx << " diverges:\n"
                      << c.described << "-- MERGE: " << (merged.failed ? "failed: " : "rows:\n") << merged.rows
                      << "\n-- reference: " << (expected.failed ? "failed: " : "rows:\n") << expected.rows;
      }
    }
    duplicates += expected.duplicate;
    failures += expected.failed && !expected.duplicate;
    changed += !expected.failed && expected.rows != before;
  }
  EXPECT_EQ(divergences, 0);
  // The generator must reach each outcome often enough to mean something.
  EXPECT_GT(duplicates, kCases / 20);
  EXPECT_GT(changed, kCases / 3);
  std::printf("%d cases: %d changed the target, %d refused a duplicate key, %d failed otherwise, %d diverged\n",
              kCases, changed, duplicates, failures, divergences);
}

}  // namespace
}  // namespace sluice
