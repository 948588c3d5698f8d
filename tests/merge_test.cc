// MERGE INTO: same rows as the hand-written upsert, each translation (UPDATE
// ... FROM, INSERT ... WHERE NOT EXISTS, INSERT ... ON CONFLICT), unique-key
// and duplicate-source checks, the messages of unsupported forms, and the
// tokenizer's handling of quotes, comments and string literals.
#include <gtest/gtest.h>

#include <sqlite3.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <set>
#include <string>

#include "sql/sqlite/database.h"
#include "sql/sqlite/merge.h"
#include "sql/sqlite/sql_file.h"

namespace sluice {
namespace {

const char* const kGrammar =
    "(supported: MERGE INTO target [AS t] USING source | (select ...) [AS s] "
    "ON t.key = s.expr [AND t.key2 = s.expr2 ...] "
    "[WHEN MATCHED [AND cond] THEN UPDATE SET * | UPDATE SET col = expr, ...] "
    "[WHEN NOT MATCHED [AND cond] THEN INSERT * | INSERT (col, ...) VALUES (expr, ...)])";

// orders: four stored orders. updates: a newer version of O1, an older one of
// O2, the same timestamp for O3, and a new order O5.
const char* const kOrders =
    "CREATE TABLE orders (order_id TEXT PRIMARY KEY, amount REAL, status TEXT, ts INTEGER);"
    "INSERT INTO orders VALUES ('O1', 10, 'new', 100), ('O2', 20, 'paid', 200), ('O3', 30, 'new', 300),"
    "                          ('O4', 40, 'new', 400);"
    "CREATE TABLE updates (order_id TEXT, amount REAL, status TEXT, ts INTEGER, op TEXT);"
    "INSERT INTO updates VALUES ('O1', 11, 'paid', 150, 'U'), ('O2', 19, 'new', 190, 'U'),"
    "                           ('O3', 33, 'shipped', 300, 'U'), ('O5', 50, 'new', 500, 'I');";

class MergeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = Database::Open(":memory:");
    ASSERT_TRUE(db.ok()) << db.status().message();
    db_ = std::move(*db);
  }

  void Exec(const std::string& sql) {
    Status st = db_->Exec(sql);
    ASSERT_TRUE(st.ok()) << st.message() << "\n" << sql;
  }

  // Runs a MERGE that must succeed.
  void Merge(const std::string& statement) {
    Status st = RunMerge(db_.get(), statement);
    ASSERT_TRUE(st.ok()) << st.message() << "\n" << statement;
  }

  // Runs a MERGE that must fail and returns the message.
  std::string Error(const std::string& statement) {
    Status st = RunMerge(db_.get(), statement);
    EXPECT_FALSE(st.ok()) << "ran:\n" << statement;
    if (st.ok()) return "";
    EXPECT_EQ(st.code(), Status::Code::kSqlError);
    return st.message();
  }

  // The translated statement of a MERGE that must plan.
  std::string Plan(const std::string& statement) {
    Result<MergePlan> plan = PlanMerge(db_.get(), statement);
    EXPECT_TRUE(plan.ok()) << plan.status().message();
    return plan.ok() ? plan->sql : "";
  }

  // Every row of `sql`, one line each, columns joined with '|'.
  std::string Rows(const std::string& sql) {
    std::string rows;
    Result<Statement> stmt = db_->Prepare(sql);
    EXPECT_TRUE(stmt.ok()) << stmt.status().message();
    if (!stmt.ok()) return rows;
    while (true) {
      Result<bool> row = stmt->Step();
      EXPECT_TRUE(row.ok()) << row.status().message();
      if (!row.ok() || !*row) break;
      for (int column = 0; column < sqlite3_column_count(stmt->get()); ++column) {
        rows += (column ? "|" : "") + (stmt->IsNull(column) ? std::string("NULL") : stmt->ColumnText(column));
      }
      rows += "\n";
    }
    return rows;
  }

  std::unique_ptr<Database> db_;
};

TEST_F(MergeTest, MatchesTheHandWrittenUpsertAndKeepsNewerRows) {
  Exec(kOrders);
  Exec("CREATE TABLE by_upsert AS SELECT * FROM orders WHERE 0;"
       "CREATE UNIQUE INDEX by_upsert_key ON by_upsert(order_id);"
       "INSERT INTO by_upsert SELECT * FROM orders;");
  Merge(R"(
    MERGE INTO orders AS t
    USING updates AS s
    ON t.order_id = s.order_id
    WHEN MATCHED AND s.ts > t.ts THEN
      UPDATE SET amount = s.amount, status = s.status, ts = s.ts
    WHEN NOT MATCHED THEN
      INSERT (order_id, amount, status, ts) VALUES (s.order_id, s.amount, s.status, s.ts))");
  Exec(R"(
    INSERT INTO by_upsert (order_id, amount, status, ts)
    SELECT order_id, amount, status, ts FROM updates WHERE true
    ON CONFLICT (order_id) DO UPDATE SET amount = excluded.amount, status = excluded.status, ts = excluded.ts
    WHERE excluded.ts > by_upsert.ts)");
  std::string expected =
      "O1|11.0|paid|150\n"
      "O2|20.0|paid|200\n"
      "O3|30.0|new|300\n"
      "O4|40.0|new|400\n"
      "O5|50.0|new|500\n";
  EXPECT_EQ(Rows("SELECT * FROM orders ORDER BY order_id"), expected);
  EXPECT_EQ(Rows("SELECT * FROM by_upsert ORDER BY order_id"), expected);
}

// Random batches against three copies of one table: each MERGE form must
// leave the same rows as the statement an analyst would write by hand.
TEST_F(MergeTest, AgreesWithHandWrittenStatementsOnRandomBatches) {
  uint32_t seed = 12345;
  auto next = [&seed](uint32_t range) {
    seed = seed * 1103515245u + 12345u;
    return (seed >> 16) % range;
  };
  const char* const kForms[] = {"upsert", "update", "insert"};
  for (const char* form : kForms) {
    for (const char* side : {"merged", "by_hand"}) {
      Exec(std::string("CREATE TABLE ") + form + "_" + side +
           " (k TEXT PRIMARY KEY, v INTEGER NOT NULL, ts INTEGER, note TEXT DEFAULT 'none');");
    }
  }
  Exec("CREATE TABLE batch (k TEXT, v INTEGER, ts INTEGER, flag INTEGER);");
  for (int round = 0; round < 20; ++round) {
    std::string rows;
    std::set<uint32_t> keys;
    for (int row = 0; row < 30; ++row) {
      uint32_t key = next(60);
      if (!keys.insert(key).second) continue;  // MERGE refuses repeated keys
      rows += std::string(rows.empty() ? "" : ", ") + "('K" + std::to_string(key) + "', " + std::to_string(next(1000)) +
              ", " + std::to_string(next(100)) + ", " + std::to_string(next(2)) + ")";
    }
    Exec("DELETE FROM batch; INSERT INTO batch VALUES " + rows + ";");

    Merge("MERGE INTO upsert_merged AS t USING batch AS s ON t.k = s.k "
          "WHEN MATCHED AND s.ts > t.ts THEN UPDATE SET v = t.v + s.v, ts = s.ts, note = 'updated' "
          "WHEN NOT MATCHED AND s.flag = 1 THEN INSERT (k, v, ts) VALUES (s.k, s.v, s.ts)");
    Exec("INSERT INTO upsert_by_hand (k, v, ts) SELECT k, v, ts FROM batch AS s "
         "WHERE s.flag = 1 OR EXISTS (SELECT 1 FROM upsert_by_hand AS t WHERE t.k = s.k) "
         "ON CONFLICT (k) DO UPDATE SET v = v + excluded.v, ts = excluded.ts, note = 'updated' "
         "WHERE excluded.ts > upsert_by_hand.ts;");

    Merge("MERGE INTO update_merged AS t USING batch AS s ON t.k = s.k "
          "WHEN MATCHED AND s.flag = 0 THEN UPDATE SET v = s.v, ts = s.ts");
    Exec("UPDATE update_by_hand SET v = s.v, ts = s.ts FROM batch AS s "
         "WHERE update_by_hand.k = s.k AND s.flag = 0;"
         // Seed the update-only tables so there is something to update.
         "INSERT OR IGNORE INTO update_merged (k, v, ts) SELECT k, 0, 50 FROM batch WHERE flag = 1;"
         "INSERT OR IGNORE INTO update_by_hand (k, v, ts) SELECT k, 0, 50 FROM batch WHERE flag = 1;");

    Merge("MERGE INTO insert_merged AS t USING batch AS s ON t.k = s.k "
          "WHEN NOT MATCHED AND s.ts < 70 THEN INSERT *");
    Exec("INSERT OR IGNORE INTO insert_by_hand (k, v, ts) SELECT k, v, ts FROM batch WHERE ts < 70;");
  }
  for (const char* form : kForms) {
    std::string merged = Rows(std::string("SELECT * FROM ") + form + "_merged ORDER BY k");
    EXPECT_EQ(merged, Rows(std::string("SELECT * FROM ") + form + "_by_hand ORDER BY k")) << form;
    EXPECT_GT(std::count(merged.begin(), merged.end(), '\n'), 20) << form;
  }
  EXPECT_NE(Rows("SELECT count(*) FROM upsert_merged WHERE note = 'updated'"), "0\n");
}

TEST_F(MergeTest, OnMayBeParenthesised) {
  Exec(kOrders);
  Merge("MERGE INTO orders AS t USING updates AS s ON ((t.order_id = s.order_id)) "
        "WHEN MATCHED THEN UPDATE SET amount = s.amount");
  Exec("CREATE TABLE pairs (a INTEGER, b INTEGER, n INTEGER, PRIMARY KEY (a, b));"
       "INSERT INTO pairs VALUES (1, 2, 0);");
  Merge("MERGE INTO pairs AS t USING (select 1 as a, 2 as b) AS s ON (t.a = s.a) AND ((s.b) = t.b) "
        "WHEN MATCHED THEN UPDATE SET n = t.n + 1 WHEN NOT MATCHED THEN INSERT *");
  EXPECT_EQ(Rows("SELECT * FROM pairs"), "1|2|1\n");
  EXPECT_EQ(Rows("SELECT amount FROM orders WHERE order_id = 'O1'"), "11.0\n");
}

TEST_F(MergeTest, SchemaQualifiedNamesAndExpressionsInOn) {
  Exec(kOrders);
  Exec("CREATE TEMP TABLE stg (code TEXT, amount REAL);"
       "INSERT INTO stg VALUES ('o1', 1.5), ('o9', 9);");
  Merge("MERGE INTO main.orders USING temp.stg AS s ON orders.order_id = upper(s.code) "
        "WHEN MATCHED THEN UPDATE SET amount = s.amount "
        "WHEN NOT MATCHED THEN INSERT (order_id, amount) VALUES (upper(s.code), s.amount)");
  EXPECT_EQ(Rows("SELECT order_id, amount FROM orders WHERE order_id IN ('O1', 'O9') ORDER BY 1"),
            "O1|1.5\nO9|9.0\n");
}

TEST_F(MergeTest, UpdateSetStarAndInsertStarGiveTheSameRows) {
  Exec(kOrders);
  Merge("MERGE INTO orders AS t USING updates AS s ON t.order_id = s.order_id "
        "WHEN MATCHED AND s.ts > t.ts THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *");
  EXPECT_EQ(Rows("SELECT * FROM orders ORDER BY order_id"),
            "O1|11.0|paid|150\n"
            "O2|20.0|paid|200\n"
            "O3|30.0|new|300\n"
            "O4|40.0|new|400\n"
            "O5|50.0|new|500\n");
}

TEST_F(MergeTest, UpsertPlanIsOneInsertOnConflict) {
  Exec(kOrders);
  EXPECT_EQ(Plan("MERGE INTO orders AS t USING updates AS s ON t.order_id = s.order_id "
                 "WHEN MATCHED AND s.ts > t.ts THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"),
            "INSERT INTO orders (\"order_id\", \"amount\", \"status\", \"ts\") "
            "SELECT s.\"order_id\", s.\"amount\", s.\"status\", s.\"ts\" "
            "FROM updates AS s LEFT JOIN orders AS t ON t.\"order_id\" = sluice_merge_key(s.order_id, 'TEXT') COLLATE BINARY "
            "WHERE CASE WHEN t.\"order_id\" IS NOT NULL THEN (s.ts > t.ts) ELSE 1 END "
            "ON CONFLICT (\"order_id\") DO UPDATE SET \"amount\" = excluded.\"amount\", "
            "\"status\" = excluded.\"status\", \"ts\" = excluded.\"ts\"");
}

TEST_F(MergeTest, StarTakesTheTargetColumnsTheSourceHasByNameInAnyCase) {
  Exec("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, tier TEXT DEFAULT 'basic', spend REAL);"
       "INSERT INTO customers VALUES (1, 'Ada', 'gold', 5);"
       "CREATE TABLE changes (ID INTEGER, Spend REAL, ignored TEXT);"
       "INSERT INTO changes VALUES (1, 7, 'x'), (2, 3, 'y');");
  Merge("MERGE INTO customers c USING changes n ON c.id = n.id "
        "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *");
  EXPECT_EQ(Rows("SELECT * FROM customers ORDER BY id"),
            "1|Ada|gold|7.0\n"
            "2|NULL|basic|3.0\n");
}

TEST_F(MergeTest, ExplicitColumnListsMayComputeValues) {
  Exec(kOrders);
  Merge("MERGE INTO orders AS t USING updates AS s ON t.order_id = s.order_id "
        "WHEN MATCHED THEN UPDATE SET t.amount = s.amount + t.amount, status = upper(s.status) "
        "WHEN NOT MATCHED THEN INSERT (order_id, status, amount) VALUES (s.order_id, 'created', s.amount * 2)");
  EXPECT_EQ(Rows("SELECT * FROM orders ORDER BY order_id"),
            "O1|21.0|PAID|100\n"
            "O2|39.0|NEW|200\n"
            "O3|63.0|SHIPPED|300\n"
            "O4|40.0|new|400\n"
            "O5|100.0|created|NULL\n");
}

TEST_F(MergeTest, MatchedOnlyBecomesUpdateFromAndNeverInserts) {
  Exec(kOrders);
  std::string merge =
      "MERGE INTO orders AS t USING updates AS s ON t.order_id = s.order_id "
      "WHEN MATCHED AND s.ts >= t.ts THEN UPDATE SET status = s.status, ts = s.ts";
  EXPECT_EQ(Plan(merge),
            "UPDATE orders AS t SET \"status\" = s.status, \"ts\" = s.ts FROM updates AS s "
            "WHERE t.\"order_id\" = sluice_merge_key(s.order_id, 'TEXT') COLLATE BINARY AND (s.ts >= t.ts)");
  Merge(merge);
  EXPECT_EQ(Rows("SELECT * FROM orders ORDER BY order_id"),
            "O1|10.0|paid|150\n"
            "O2|20.0|paid|200\n"
            "O3|30.0|shipped|300\n"
            "O4|40.0|new|400\n");
}

TEST_F(MergeTest, NotMatchedOnlyInsertsMissingRowsAndNeverUpdates) {
  Exec(kOrders);
  Exec("INSERT INTO updates VALUES ('O6', 60, 'new', 600, 'U');");
  std::string merge =
      "MERGE INTO orders AS t USING updates AS s ON t.order_id = s.order_id "
      "WHEN NOT MATCHED AND s.op = 'I' THEN INSERT *";
  EXPECT_EQ(Plan(merge),
            "INSERT INTO orders (\"order_id\", \"amount\", \"status\", \"ts\") "
            "SELECT s.\"order_id\", s.\"amount\", s.\"status\", s.\"ts\" FROM updates AS s "
            "WHERE NOT EXISTS (SELECT 1 FROM orders AS t WHERE t.\"order_id\" = sluice_merge_key(s.order_id, 'TEXT') "
            "COLLATE BINARY) AND (s.op = 'I')");
  Merge(merge);
  EXPECT_EQ(Rows("SELECT * FROM orders ORDER BY order_id"),
            "O1|10.0|new|100\n"
            "O2|20.0|paid|200\n"
            "O3|30.0|new|300\n"
            "O4|40.0|new|400\n"
            "O5|50.0|new|500\n");
}

TEST_F(MergeTest, NotMatchedConditionFiltersInsertsButNotUpdates) {
  Exec(kOrders);
  Exec("INSERT INTO updates VALUES ('O6', 60, 'new', 600, 'U');");
  // Every update has op 'U': the insert condition must not stop them.
  Merge("MERGE INTO orders AS t USING updates AS s ON t.order_id = s.order_id "
        "WHEN MATCHED THEN UPDATE SET amount = s.amount "
        "WHEN NOT MATCHED AND s.op = 'I' THEN INSERT *");
  EXPECT_EQ(Rows("SELECT * FROM orders ORDER BY order_id"),
            "O1|11.0|new|100\n"
            "O2|19.0|paid|200\n"
            "O3|33.0|new|300\n"
            "O4|40.0|new|400\n"
            "O5|50.0|new|500\n");
}

TEST_F(MergeTest, MatchedConditionMayUseASourceColumnTheTargetLacks) {
  Exec(kOrders);
  Exec("UPDATE updates SET op = 'X' WHERE order_id = 'O2';");
  Merge("MERGE INTO orders AS t USING updates AS s ON t.order_id = s.order_id "
        "WHEN MATCHED AND s.op = 'U' THEN UPDATE SET amount = s.amount "
        "WHEN NOT MATCHED THEN INSERT *");
  EXPECT_EQ(Rows("SELECT * FROM orders ORDER BY order_id"),
            "O1|11.0|new|100\n"
            "O2|20.0|paid|200\n"
            "O3|33.0|new|300\n"
            "O4|40.0|new|400\n"
            "O5|50.0|new|500\n");
}

TEST_F(MergeTest, SubquerySource) {
  Exec(kOrders);
  Exec("CREATE TABLE events (order_id TEXT, amount REAL);"
       "INSERT INTO events VALUES ('O1', 1), ('O1', 2), ('O9', 5), ('O9', 0.5), (NULL, 3);");
  Merge(R"(
    merge into orders as t
    using (
      select order_id, sum(amount) as amount, count(*) as events  -- one row per order
      from events
      where order_id is not null
      group by order_id
    ) as s
    on t.order_id = s.order_id
    when matched then update set amount = t.amount + s.amount
    when not matched then
      insert (order_id, amount, status) values (s.order_id, s.amount, 'from ' || s.events || ' events');
  )");
  EXPECT_EQ(Rows("SELECT order_id, amount, status FROM orders WHERE order_id IN ('O1', 'O9') ORDER BY order_id"),
            "O1|13.0|new\n"
            "O9|5.5|from 2 events\n");
}

TEST_F(MergeTest, WorksWithoutAliases) {
  Exec(kOrders);
  Merge("MERGE INTO orders USING updates ON orders.order_id = updates.order_id "
        "WHEN MATCHED AND updates.ts > orders.ts THEN UPDATE SET status = updates.status "
        "WHEN NOT MATCHED THEN INSERT (order_id, status) VALUES (updates.order_id, updates.status)");
  EXPECT_EQ(Rows("SELECT order_id, status FROM orders ORDER BY order_id"),
            "O1|paid\n"
            "O2|paid\n"
            "O3|new\n"
            "O4|new\n"
            "O5|new\n");
}

TEST_F(MergeTest, CompositeKeyMatchesAUniqueIndexInAnyOrder) {
  Exec("CREATE TABLE lines (order_id TEXT NOT NULL, line_no INTEGER NOT NULL, qty INTEGER);"
       "CREATE UNIQUE INDEX lines_key ON lines(order_id, line_no);"
       "INSERT INTO lines VALUES ('O1', 1, 1), ('O1', 2, 2), ('O2', 1, 3);"
       "CREATE TABLE line_updates (order_id TEXT, line INTEGER, qty INTEGER);"
       "INSERT INTO line_updates VALUES ('O1', 2, 20), ('O2', 2, 30), ('O3', 1, 40);");
  std::string merge =
      "MERGE INTO lines AS t USING line_updates AS s ON s.line = t.line_no AND t.order_id = s.order_id "
      "WHEN MATCHED THEN UPDATE SET qty = s.qty "
      "WHEN NOT MATCHED THEN INSERT (order_id, line_no, qty) VALUES (s.order_id, s.line, s.qty)";
  Merge(merge);
  EXPECT_EQ(Rows("SELECT * FROM lines ORDER BY order_id, line_no"),
            "O1|1|1\n"
            "O1|2|20\n"
            "O2|1|3\n"
            "O2|2|30\n"
            "O3|1|40\n");
  Exec("INSERT INTO line_updates VALUES ('O1', 2, 21);");
  EXPECT_EQ(Error(merge),
            "MERGE INTO lines: 2 source rows match the target row with line_no = 2 and order_id = 'O1'; deduplicate "
            "the source first (e.g. keep row_number() over (partition by s.line, s.order_id order by ...) = 1)");
}

TEST_F(MergeTest, IntegerPrimaryKeyTarget) {
  Exec("CREATE TABLE counters (id INTEGER PRIMARY KEY, hits INTEGER NOT NULL);"
       "INSERT INTO counters VALUES (1, 10), (2, 20);"
       "CREATE TABLE hits (id INTEGER, n INTEGER);"
       "INSERT INTO hits VALUES (2, 5), (3, 7);");
  Merge("MERGE INTO counters AS c USING hits AS h ON c.id = h.id "
        "WHEN MATCHED THEN UPDATE SET hits = c.hits + h.n WHEN NOT MATCHED THEN INSERT (id, hits) VALUES (h.id, h.n)");
  EXPECT_EQ(Rows("SELECT * FROM counters ORDER BY id"), "1|10\n2|25\n3|7\n");
}

TEST_F(MergeTest, OnMustMatchAUniqueIndexOrPrimaryKey) {
  Exec("CREATE TABLE orders_curated (order_id TEXT, amount REAL, region TEXT);"
       "CREATE INDEX orders_curated_by_region ON orders_curated(region);"
       "CREATE UNIQUE INDEX orders_curated_big ON orders_curated(order_id) WHERE amount > 100;"
       "CREATE TABLE batch (order_id TEXT, amount REAL, region TEXT);"
       "INSERT INTO batch VALUES ('O1', 5, 'eu');");
  std::string merge =
      "MERGE INTO orders_curated AS t USING batch AS s ON t.order_id = s.order_id "
      "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *";
  // Neither a plain index nor a partial unique index will do.
  EXPECT_EQ(Error(merge),
            "MERGE INTO orders_curated: ON (order_id) needs a unique index or primary key on "
            "orders_curated(order_id); add: create unique index orders_curated_by_order_id on "
            "orders_curated(order_id);");
  Exec("create unique index orders_curated_by_order_id on orders_curated(order_id);");
  Merge(merge);
  EXPECT_EQ(Rows("SELECT * FROM orders_curated"), "O1|5.0|eu\n");

  // ON must name the key's columns exactly, not more.
  EXPECT_EQ(Error("MERGE INTO orders_curated AS t USING batch AS s ON t.order_id = s.order_id "
                  "AND t.region = s.region WHEN MATCHED THEN UPDATE SET amount = s.amount"),
            "MERGE INTO orders_curated: ON (order_id, region) needs a unique index or primary key on "
            "orders_curated(order_id, region), and its unique keys are (order_id); add: create unique index "
            "orders_curated_by_order_id_region on orders_curated(order_id, region);");
}

TEST_F(MergeTest, TwoSourceRowsForOneTargetRowFailAndWriteNothing) {
  Exec(kOrders);
  Exec("INSERT INTO updates VALUES ('O1', 12, 'shipped', 160, 'U');");
  std::string merge =
      "MERGE INTO orders AS t USING updates AS s ON t.order_id = s.order_id "
      "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *";
  std::string before = Rows("SELECT * FROM orders ORDER BY order_id");
  EXPECT_EQ(Error(merge),
            "MERGE INTO orders: 2 source rows match the target row with order_id = 'O1'; deduplicate the source "
            "first (e.g. keep row_number() over (partition by s.order_id order by ...) = 1)");
  EXPECT_EQ(Rows("SELECT * FROM orders ORDER BY order_id"), before);

  // The same for a key no target row has yet: it would be inserted twice.
  Exec("DELETE FROM updates WHERE order_id = 'O1' AND ts = 160;"
       "INSERT INTO updates VALUES ('O5', 51, 'paid', 510, 'I'), ('O5', 52, 'paid', 520, 'I');");
  EXPECT_EQ(Error(merge),
            "MERGE INTO orders: 3 source rows would insert the same new row with order_id = 'O5'; deduplicate the "
            "source first (e.g. keep row_number() over (partition by s.order_id order by ...) = 1)");
}

TEST_F(MergeTest, DuplicateCheckIgnoresRowsTheMergeCannotWriteTwice) {
  Exec(kOrders);
  Exec("INSERT INTO updates VALUES ('O5', 51, 'paid', 510, 'I'), (NULL, 1, 'x', 1, 'I'), (NULL, 2, 'y', 2, 'I');");
  // MATCHED only: the repeated new key O5 is never written.
  Merge("MERGE INTO orders AS t USING updates AS s ON t.order_id = s.order_id "
        "WHEN MATCHED THEN UPDATE SET amount = s.amount");
  Exec("INSERT INTO updates VALUES ('O1', 12, 'shipped', 160, 'U');");
  Exec("DELETE FROM updates WHERE order_id = 'O5' AND ts = 510;");
  // NOT MATCHED only: the repeated stored key O1 is never written, and NULL
  // keys match nothing, so both NULL rows are inserted.
  Exec("CREATE TABLE loose (order_id TEXT UNIQUE, amount REAL);"
       "INSERT INTO loose SELECT order_id, amount FROM orders;");
  Merge("MERGE INTO loose AS t USING updates AS s ON t.order_id = s.order_id "
        "WHEN NOT MATCHED THEN INSERT (order_id, amount) VALUES (s.order_id, s.amount)");
  EXPECT_EQ(Rows("SELECT * FROM loose ORDER BY order_id, amount"),
            "NULL|1.0\n"
            "NULL|2.0\n"
            "O1|11.0\n"
            "O2|19.0\n"
            "O3|33.0\n"
            "O4|40.0\n"
            "O5|50.0\n");
}

TEST_F(MergeTest, UnsupportedFormsShowTheGrammar) {
  Exec(kOrders);
  const std::string head = "MERGE INTO orders AS t USING updates AS s ON t.order_id = s.order_id ";
  struct Case {
    std::string statement;
    std::string message;
  } cases[] = {
      {head + "WHEN NOT MATCHED BY SOURCE THEN DELETE",
       "WHEN NOT MATCHED BY SOURCE is not supported; delete or update target rows missing from the source in a "
       "separate statement"},
      {head + "WHEN MATCHED AND s.op = 'D' THEN DELETE",
       "WHEN MATCHED THEN DELETE is not supported; delete matching rows in a separate statement (delete from "
       "target where key in (select key from source where ...))"},
      {head + "WHEN MATCHED AND s.ts > t.ts THEN UPDATE SET * WHEN MATCHED THEN UPDATE SET status = 'seen'",
       "only one WHEN MATCHED clause is supported; fold the cases into one clause with CASE expressions in SET"},
      {head + "WHEN NOT MATCHED AND s.op = 'I' THEN INSERT * WHEN NOT MATCHED THEN INSERT (order_id) VALUES "
              "(s.order_id)",
       "only one WHEN NOT MATCHED clause is supported; fold the cases into one clause with CASE expressions in "
       "VALUES"},
      {"MERGE INTO orders AS t USING updates AS s ON t.ts > s.ts WHEN MATCHED THEN UPDATE SET *",
       "ON must be target.column = source expression, joined by AND; 't.ts > s.ts' is not"},
      {"MERGE INTO orders AS t USING updates AS s ON t.order_id = s.order_id OR t.status = s.status "
       "WHEN MATCHED THEN UPDATE SET *",
       "ON must be target.column = source expression, joined by AND; 't.order_id = s.order_id OR t.status = "
       "s.status' is not"},
      {"MERGE INTO orders AS t USING updates AS s ON t.order_id = s.order_id AND s.op = 'U' "
       "WHEN MATCHED THEN UPDATE SET *",
       "ON must equate a target column, written t.column, with a source expression; 's.op = 'U'' does not"},
      {"MERGE INTO orders AS t USING updates AS s ON t.order_id = t.status WHEN MATCHED THEN UPDATE SET *",
       "in ON, each target column must be equated with an expression of the source only; 't.order_id = "
       "t.status' is not"},
      {head, "expected WHEN MATCHED or WHEN NOT MATCHED"},
      {head + "WHEN NOT MATCHED THEN UPDATE SET *", "WHEN NOT MATCHED can only INSERT"},
      {head + "WHEN NOT MATCHED THEN INSERT VALUES (s.order_id)",
       "expected '(' after INSERT (name the columns: INSERT (col, ...) VALUES (expr, ...)), found 'VALUES'"},
      {head + "WHEN MATCHED THEN UPDATE SET * garbage", "unexpected 'garbage' after the WHEN clauses"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(Error(c.statement), "MERGE INTO orders: " + c.message + " " + kGrammar) << c.statement;
  }
  EXPECT_EQ(Error("MERGE orders USING updates ON orders.order_id = updates.order_id WHEN MATCHED THEN UPDATE SET *"),
            std::string("MERGE: expected INTO after MERGE, found 'orders' ") + kGrammar);
}

TEST_F(MergeTest, OtherMistakesAreExplained) {
  Exec(kOrders);
  Exec("CREATE VIEW open_orders AS SELECT * FROM orders WHERE status = 'new';");
  const std::string head = "MERGE INTO orders AS t USING updates AS s ON t.order_id = s.order_id ";
  EXPECT_EQ(Error("MERGE INTO orders AS t USING (select * from updates) ON t.order_id = order_id "
                  "WHEN MATCHED THEN UPDATE SET *"),
            "MERGE INTO orders: a subquery source needs an alias: USING (select ...) AS s");
  EXPECT_EQ(Error("MERGE INTO orders AS x USING updates AS x ON x.order_id = x.order_id WHEN MATCHED THEN "
                  "UPDATE SET *"),
            "MERGE INTO orders: target and source are both called x; give them different aliases: MERGE INTO "
            "target AS t USING source AS s ...");
  EXPECT_EQ(Error(head + "WHEN NOT MATCHED THEN INSERT (order_id, amount) VALUES (s.order_id)"),
            "MERGE INTO orders: INSERT names 2 columns but VALUES has 1 expressions");
  EXPECT_EQ(Error(head + "WHEN MATCHED THEN UPDATE SET colour = s.status"),
            "MERGE INTO orders: orders has no column colour (in SET)");
  EXPECT_EQ(Error(head + "WHEN MATCHED THEN UPDATE SET amount = s.amount, AMOUNT = 1"),
            "MERGE INTO orders: SET names AMOUNT twice");
  EXPECT_EQ(Error(head + "WHEN MATCHED THEN UPDATE SET amount = s.price"),
            "MERGE INTO orders: no such column: s.price");
  EXPECT_EQ(Error("MERGE INTO missing AS t USING updates AS s ON t.id = s.order_id WHEN MATCHED THEN UPDATE SET *"),
            "MERGE INTO missing: no such table: missing");
  EXPECT_EQ(Error("MERGE INTO open_orders AS t USING updates AS s ON t.order_id = s.order_id "
                  "WHEN MATCHED THEN UPDATE SET *"),
            "MERGE INTO open_orders: open_orders is a view; MERGE writes to a table");
  EXPECT_EQ(Error("MERGE INTO orders AS t USING nowhere AS s ON t.order_id = s.order_id "
                  "WHEN MATCHED THEN UPDATE SET *"),
            "MERGE INTO orders: no such table: nowhere");
  EXPECT_EQ(Error("MERGE INTO orders AS t USING updates AS s ON t.order_id = s.order_id "
                  "WHEN MATCHED THEN UPDATE SET status = 'it''s"),
            "MERGE: unterminated string literal 'it''s...");
}

TEST_F(MergeTest, UpsertInsertMustSetTheKeyToTheOnExpression) {
  Exec(kOrders);
  const std::string head = "MERGE INTO orders AS t USING updates AS s ON t.order_id = s.order_id ";
  EXPECT_EQ(Error(head + "WHEN MATCHED THEN UPDATE SET amount = s.amount "
                         "WHEN NOT MATCHED THEN INSERT (amount) VALUES (s.amount)"),
            "MERGE INTO orders: the INSERT must set the key column order_id to s.order_id (its ON expression): "
            "SQLite's upsert finds the matching row by the inserted key");
  EXPECT_EQ(Error(head + "WHEN MATCHED THEN UPDATE SET amount = s.amount "
                         "WHEN NOT MATCHED THEN INSERT (order_id, amount) VALUES (upper(s.order_id), s.amount)"),
            "MERGE INTO orders: the INSERT sets the key column order_id to upper(s.order_id), but ON equates it "
            "with s.order_id; SQLite's upsert finds the matching row by the inserted key, so they must be the same "
            "expression");
  EXPECT_EQ(Error(head + "WHEN MATCHED THEN UPDATE SET order_id = s.order_id || 'x' "
                         "WHEN NOT MATCHED THEN INSERT *"),
            "MERGE INTO orders: UPDATE SET cannot change the key column order_id in a MERGE with both WHEN clauses "
            "(the upsert finds the row by it)");
  // The same source value, spelled differently, is fine.
  Merge("MERGE INTO orders AS t USING updates AS s ON t.order_id = S.Order_Id "
        "WHEN MATCHED THEN UPDATE SET amount = s.amount "
        "WHEN NOT MATCHED THEN INSERT (ORDER_ID, amount) VALUES (s.\"order_id\", s.amount)");
  EXPECT_EQ(Rows("SELECT order_id, amount FROM orders ORDER BY order_id"),
            "O1|11.0\nO2|19.0\nO3|33.0\nO4|40.0\nO5|50.0\n");
}

TEST_F(MergeTest, UpdateAndInsertMayUseDifferentColumnsAndValues) {
  Exec("CREATE TABLE accounts (id TEXT PRIMARY KEY, balance REAL NOT NULL, tier TEXT NOT NULL DEFAULT 'basic',"
       "                       touched TEXT DEFAULT 'never', created TEXT);"
       "INSERT INTO accounts VALUES ('A', 10, 'gold', 'old', 'day 1');"
       "CREATE TABLE moves (id TEXT, delta REAL, note TEXT);"
       "INSERT INTO moves VALUES ('A', 5, 'top-up'), ('B', 7, 'opening');");
  // The update reads a source column the INSERT leaves out (note) and sets a
  // column the INSERT does not name (touched): new rows get its default.
  std::string merge =
      "MERGE INTO accounts AS t USING moves AS s ON t.id = s.id "
      "WHEN MATCHED THEN UPDATE SET balance = t.balance + s.delta, touched = s.note "
      "WHEN NOT MATCHED THEN INSERT (id, balance, created) VALUES (s.id, s.delta * 2, 'today')";
  EXPECT_EQ(Plan(merge),
            "INSERT INTO accounts (\"id\", \"balance\", \"created\", \"touched\") "
            "SELECT s.id, CASE WHEN t.\"id\" IS NOT NULL THEN t.balance + s.delta ELSE s.delta * 2 END, "
            "CASE WHEN t.\"id\" IS NOT NULL THEN t.\"created\" ELSE 'today' END, "
            "CASE WHEN t.\"id\" IS NOT NULL THEN s.note ELSE ('never') END "
            "FROM moves AS s LEFT JOIN accounts AS t ON t.\"id\" = sluice_merge_key(s.id, 'TEXT') COLLATE BINARY "
            "WHERE true "
            "ON CONFLICT (\"id\") DO UPDATE SET \"balance\" = excluded.\"balance\", "
            "\"touched\" = excluded.\"touched\"");
  Merge(merge);
  EXPECT_EQ(Rows("SELECT * FROM accounts ORDER BY id"),
            "A|15.0|gold|top-up|day 1\n"
            "B|14.0|basic|never|today\n");
}

TEST_F(MergeTest, MatchedRowsAreNotHeldToTheInsertsConstraints) {
  // A hand-written upsert proposes the whole source row first, and SQLite
  // checks NOT NULL before it finds the conflict; MERGE only updates.
  Exec("CREATE TABLE stock (sku TEXT PRIMARY KEY, name TEXT NOT NULL, qty INTEGER);"
       "INSERT INTO stock VALUES ('K1', 'kettle', 1);"
       "CREATE TABLE counts (sku TEXT, name TEXT, qty INTEGER);"
       "INSERT INTO counts VALUES ('K1', NULL, 5);");
  EXPECT_FALSE(db_->Exec("INSERT INTO stock SELECT * FROM counts WHERE true "
                         "ON CONFLICT (sku) DO UPDATE SET qty = excluded.qty").ok());
  Merge("MERGE INTO stock AS t USING counts AS s ON t.sku = s.sku "
        "WHEN MATCHED THEN UPDATE SET qty = s.qty WHEN NOT MATCHED THEN INSERT *");
  EXPECT_EQ(Rows("SELECT * FROM stock"), "K1|kettle|5\n");
}

TEST_F(MergeTest, QuotedIdentifiers) {
  Exec(R"(CREATE TABLE "order lines" ("order id" TEXT PRIMARY KEY, "Amount" REAL, "select" TEXT);
          INSERT INTO "order lines" VALUES ('O1', 1, 'a');
          CREATE TABLE "new ""lines""" ("order id" TEXT, "Amount" REAL, "select" TEXT);
          INSERT INTO "new ""lines""" VALUES ('O1', 2, 'b'), ('O2', 3, 'c');)");
  Merge(R"(MERGE INTO "order lines" AS "T" USING "new ""lines""" AS [s 1]
           ON "T"."order id" = [s 1]."order id"
           WHEN MATCHED THEN UPDATE SET "T"."Amount" = [s 1].`Amount`, "select" = [s 1]."select" || '!'
           WHEN NOT MATCHED THEN INSERT ("order id", "Amount", "select")
                                 VALUES ([s 1]."order id", [s 1]."Amount", [s 1]."select"))");
  EXPECT_EQ(Rows(R"(SELECT * FROM "order lines" ORDER BY 1)"), "O1|2.0|b!\nO2|3.0|c\n");
  Exec(R"(INSERT INTO "new ""lines""" VALUES ('O2', 4, 'd');)");
  EXPECT_EQ(Error(R"(MERGE INTO "order lines" USING "new ""lines""" AS s ON "order lines"."order id" = s."order id"
                     WHEN MATCHED THEN UPDATE SET *)"),
            R"(MERGE INTO "order lines": 2 source rows match the target row with "order id" = 'O2'; deduplicate )"
            R"(the source first (e.g. keep row_number() over (partition by s."order id" order by ...) = 1))");
}

TEST_F(MergeTest, KeywordsInAnyCaseAndWhenNotMatchedByTarget) {
  Exec(kOrders);
  Merge("mErGe InTo orders t uSiNg updates s On t.order_id = s.order_id "
        "wHeN mAtChEd AnD s.ts > t.ts tHeN uPdAtE sEt * "
        "WhEn NoT mAtChEd By TaRgEt ThEn InSeRt *;");
  EXPECT_EQ(Rows("SELECT order_id, ts FROM orders ORDER BY order_id"),
            "O1|150\nO2|200\nO3|300\nO4|400\nO5|500\n");
}

TEST_F(MergeTest, CommentsAndStringLiteralsDoNotConfuseTheParser) {
  Exec(kOrders);
  Merge(R"(-- MERGE the batch; WHEN MATCHED THEN DELETE is not what we want
    MERGE /* into; the curated table */ INTO orders AS t
    USING (select order_id, 'when not matched; ) merge' as note, ts from updates) AS s -- (
    ON t.order_id = s.order_id  /* AND t.x > 1 */
    WHEN MATCHED AND s.note <> 'it''s; WHEN MATCHED THEN DELETE' THEN
      UPDATE SET status = CASE WHEN s.ts > t.ts THEN 'merge; ''x''' ELSE t.status END  -- THEN ,
    WHEN NOT MATCHED THEN
      INSERT (order_id, status) VALUES (s.order_id, 'a ); b');  -- trailing comment
  )");
  EXPECT_EQ(Rows("SELECT order_id, status FROM orders ORDER BY order_id"),
            "O1|merge; 'x'\nO2|paid\nO3|new\nO4|new\nO5|a ); b\n");
}

TEST_F(MergeTest, EveryPrefixOfAStatementPlansOrFailsCleanly) {
  Exec(kOrders);
  const std::string statement =
      "MERGE INTO orders AS t USING (select * from updates where op <> 'x') AS s ON (t.order_id = s.order_id) "
      "WHEN MATCHED AND s.ts > t.ts THEN UPDATE SET amount = CASE WHEN s.amount > 0 THEN s.amount END, ts = s.ts "
      "WHEN NOT MATCHED AND s.op = 'I' THEN INSERT (order_id, amount) VALUES (s.order_id, s.amount);";
  int planned = 0;
  for (size_t length = 0; length <= statement.size(); ++length) {
    Result<MergePlan> plan = PlanMerge(db_.get(), statement.substr(0, length));
    if (plan.ok()) {
      ++planned;
    } else {
      EXPECT_EQ(plan.status().message().rfind("MERGE", 0), 0u) << plan.status().message();
    }
  }
  EXPECT_GT(planned, 2);  // the whole statement, without ';', and cut after the first clause
  EXPECT_EQ(Rows("SELECT count(*) FROM orders"), "4\n");  // planning writes nothing
}

TEST_F(MergeTest, IsMergeStatementLooksAtTheFirstToken) {
  EXPECT_TRUE(IsMergeStatement("MERGE INTO t USING s ON t.k = s.k WHEN MATCHED THEN UPDATE SET *"));
  EXPECT_TRUE(IsMergeStatement("  -- upsert\n /* the batch */\n merge\ninto t"));
  EXPECT_TRUE(IsMergeStatement("Merge"));
  EXPECT_FALSE(IsMergeStatement("-- merge into t\nselect 1"));
  EXPECT_FALSE(IsMergeStatement("/* merge */ insert into t values ('merge')"));
  EXPECT_FALSE(IsMergeStatement("merged_orders"));
  EXPECT_FALSE(IsMergeStatement("select 'merge'"));
  EXPECT_FALSE(IsMergeStatement(""));
}

TEST_F(MergeTest, StatementEndSkipsSemicolonsInQuotesCommentsAndParentheses) {
  std::string text =
      "merge into t using (select ';' as a, \"x;\" from s; ) as s -- ; here\n"
      "on t.k = s.k /* ; */ when matched then update set v = 'it''s;'; select 2; select 3";
  size_t end = StatementEnd(text, 0);
  EXPECT_EQ(text.substr(0, end).back(), ';');
  EXPECT_EQ(text.substr(end), " select 2; select 3");
  size_t second = StatementEnd(text, end);
  EXPECT_EQ(text.substr(end, second - end), " select 2;");
  EXPECT_EQ(StatementEnd(text, second), text.size());
  EXPECT_EQ(StatementEnd("select 'unterminated; x", 0), std::string("select 'unterminated; x").size());
  EXPECT_EQ(StatementEnd("a; b", 2), 4u);
}

TEST_F(MergeTest, ConstraintFailureWritesNothing) {
  Exec("CREATE TABLE strict_orders (order_id TEXT PRIMARY KEY, amount REAL NOT NULL);"
       "INSERT INTO strict_orders VALUES ('O1', 1);"
       "CREATE TABLE incoming (order_id TEXT, amount REAL);"
       "INSERT INTO incoming VALUES ('O1', 2), ('O2', NULL);");
  Status st = RunMerge(db_.get(),
                       "MERGE INTO strict_orders AS t USING incoming AS s ON t.order_id = s.order_id "
                       "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *");
  EXPECT_EQ(st.message(), "MERGE INTO strict_orders: NOT NULL constraint failed: strict_orders.amount");
  EXPECT_EQ(Rows("SELECT * FROM strict_orders"), "O1|1.0\n");
}

TEST_F(MergeTest, CheckQueryReportsDuplicateKeys) {
  Exec(kOrders);
  Exec("INSERT INTO updates VALUES ('O1', 12, 'shipped', 160, 'U');");
  Result<MergePlan> plan = PlanMerge(db_.get(),
                                     "MERGE INTO orders AS t USING updates AS s ON t.order_id = s.order_id "
                                     "WHEN MATCHED THEN UPDATE SET *");
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  EXPECT_EQ(Rows(plan->check_sql), "O1|2|1|NULL\n");
}

// Matching follows the unique index. A NOCASE index makes Alice@Example.com
// the stored alice@example.com: the older event must not overwrite the newer
// row, and the matched row is updated by SET, not replaced by the INSERT.
TEST_F(MergeTest, NocaseIndexMatchesAsTheUpsertDoes) {
  Exec("CREATE TABLE users (email TEXT, visits INTEGER NOT NULL, updated_at INTEGER);"
       "CREATE UNIQUE INDEX users_by_email ON users(email COLLATE NOCASE);"
       "INSERT INTO users VALUES ('alice@example.com', 5, 200), ('bob@example.com', 2, 200);"
       "CREATE TABLE events (email TEXT, visits INTEGER, updated_at INTEGER);"
       "INSERT INTO events VALUES ('Alice@Example.com', 1, 100), ('BOB@example.com', 3, 300),"
       "                          ('carol@example.com', 1, 50);");
  const std::string merge =
      "MERGE INTO users AS t USING events AS s ON t.email = s.email "
      "WHEN MATCHED AND s.updated_at > t.updated_at THEN "
      "  UPDATE SET visits = t.visits + s.visits, updated_at = s.updated_at "
      "WHEN NOT MATCHED THEN INSERT *";
  Merge(merge);
  EXPECT_EQ(Rows("SELECT * FROM users ORDER BY email"),
            "alice@example.com|5|200\n"
            "bob@example.com|5|300\n"
            "carol@example.com|1|50\n");
  // The same with WHEN MATCHED only and WHEN NOT MATCHED only.
  Exec("DELETE FROM events WHERE email <> 'BOB@example.com'; UPDATE events SET updated_at = 400;");
  Merge("MERGE INTO users AS t USING events AS s ON t.email = s.email "
        "WHEN MATCHED THEN UPDATE SET visits = t.visits + 1");
  Merge("MERGE INTO users AS t USING events AS s ON t.email = s.email WHEN NOT MATCHED THEN INSERT *");
  EXPECT_EQ(Rows("SELECT * FROM users ORDER BY email"),
            "alice@example.com|5|200\n"
            "bob@example.com|6|300\n"
            "carol@example.com|1|50\n");
}

// A source table made by CREATE TABLE AS from json_extract has untyped
// columns: the JSON number 7 is the key '7' of a TEXT column once inserted,
// so it matches the stored row and the older event loses.
TEST_F(MergeTest, JsonNumberMatchesATextKeyAsTheUpsertDoes) {
  Exec("CREATE TABLE devices (id TEXT PRIMARY KEY, state TEXT, ts INTEGER);"
       "INSERT INTO devices VALUES ('7', 'newer', 200), ('8', 'old', 100);"
       "CREATE TABLE raw (payload TEXT);"
       "INSERT INTO raw VALUES ('{\"id\": 7, \"state\": \"older\", \"ts\": 100}'),"
       "                       ('{\"id\": 8, \"state\": \"newer\", \"ts\": 200}');"
       "CREATE TABLE parsed AS SELECT json_extract(payload, '$.id') AS id, json_extract(payload, '$.state') AS state,"
       "                              json_extract(payload, '$.ts') AS ts FROM raw;");
  Merge("MERGE INTO devices AS t USING parsed AS s ON t.id = s.id "
        "WHEN MATCHED AND s.ts > t.ts THEN UPDATE SET state = s.state, ts = s.ts "
        "WHEN NOT MATCHED THEN INSERT *");
  EXPECT_EQ(Rows("SELECT id, typeof(id), state, ts FROM devices ORDER BY id"),
            "7|text|newer|200\n"
            "8|text|newer|200\n");
}

// A REAL 7.0 becomes the TEXT key '7.0' when inserted, which is not '7': the
// upsert inserts a new row, with the INSERT's values, and leaves '7' alone.
TEST_F(MergeTest, RealKeyAgainstATextKeyIsTheKeyTheInsertWouldWrite) {
  Exec("CREATE TABLE counts (k TEXT PRIMARY KEY, n INTEGER, note TEXT);"
       "INSERT INTO counts VALUES ('7', 10, 'stored');"
       "CREATE TABLE incoming (k REAL, n INTEGER);"
       "INSERT INTO incoming VALUES (7, 1);");
  Merge("MERGE INTO counts AS t USING incoming AS s ON t.k = s.k "
        "WHEN MATCHED THEN UPDATE SET n = t.n + s.n, note = 'updated' "
        "WHEN NOT MATCHED THEN INSERT (k, n, note) VALUES (s.k, s.n, 'inserted')");
  EXPECT_EQ(Rows("SELECT k, n, note FROM counts ORDER BY k"),
            "7|10|stored\n"
            "7.0|1|inserted\n");
  // MATCHED only: 7.0 is the key '7.0', never '7'.
  Merge("MERGE INTO counts AS t USING (SELECT 7.0 AS k, 5 AS n) AS s ON t.k = s.k "
        "WHEN MATCHED THEN UPDATE SET n = 0");
  Merge("MERGE INTO counts AS t USING (SELECT CAST(7 AS REAL) AS k) AS s ON t.k = s.k "
        "WHEN MATCHED THEN UPDATE SET n = n + 100");
  EXPECT_EQ(Rows("SELECT k, n FROM counts ORDER BY k"), "7|10\n7.0|100\n");
}

// '7' and 7 are one key of an INTEGER column, 'a' and 'A' one key of a NOCASE
// index: two source rows for one key must be refused, not merged silently.
TEST_F(MergeTest, DuplicateCheckUsesTheIndexsComparison) {
  Exec("CREATE TABLE totals (id INTEGER NOT NULL UNIQUE, amount INTEGER);"
       "CREATE TABLE moves (id, amount INTEGER);"
       "INSERT INTO moves VALUES ('7', 1), (7, 2);");
  const std::string merge =
      "MERGE INTO totals AS t USING moves AS s ON t.id = s.id "
      "WHEN MATCHED THEN UPDATE SET amount = t.amount + s.amount WHEN NOT MATCHED THEN INSERT *";
  std::string error = Error(merge);
  EXPECT_NE(error.find("2 source rows would insert the same new row with id = 7"), std::string::npos) << error;
  EXPECT_EQ(Rows("SELECT count(*) FROM totals"), "0\n");

  Exec("CREATE TABLE tags (name TEXT PRIMARY KEY COLLATE NOCASE, hits INTEGER);"
       "INSERT INTO tags VALUES ('a', 1);"
       "CREATE TABLE seen (name TEXT, hits INTEGER);"
       "INSERT INTO seen VALUES ('a', 1), ('A', 2);");
  error = Error("MERGE INTO tags AS t USING seen AS s ON t.name = s.name "
                "WHEN MATCHED THEN UPDATE SET hits = t.hits + s.hits");
  EXPECT_NE(error.find("2 source rows match the target row with name = "), std::string::npos) << error;
  EXPECT_EQ(Rows("SELECT * FROM tags"), "a|1\n");
}

// NULL keys never match. Into an INTEGER PRIMARY KEY a NULL asks for a new
// rowid: such rows are inserted after every other row of the MERGE, so the new
// rowid is never one a source row of the same MERGE has (which would then
// overwrite it).
TEST_F(MergeTest, NullKeyIntoIntegerPrimaryKeyIsANewRowNeverOverwritten) {
  Exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);"
       "CREATE TABLE incoming (id INTEGER, body TEXT);"
       "INSERT INTO incoming VALUES (NULL, 'first, no id'), (1, 'one'), (NULL, 'second, no id'), (2, 'two');");
  Merge("MERGE INTO notes AS t USING incoming AS s ON t.id = s.id "
        "WHEN MATCHED THEN UPDATE SET body = s.body WHEN NOT MATCHED THEN INSERT *");
  EXPECT_EQ(Rows("SELECT * FROM notes ORDER BY id"),
            "1|one\n"
            "2|two\n"
            "3|first, no id\n"
            "4|second, no id\n");
  // The same with WHEN NOT MATCHED only (where the collision was a UNIQUE
  // constraint failure).
  Exec("CREATE TABLE notes2 (id INTEGER PRIMARY KEY, body TEXT);");
  Merge("MERGE INTO notes2 AS t USING incoming AS s ON t.id = s.id WHEN NOT MATCHED THEN INSERT *");
  EXPECT_EQ(Rows("SELECT * FROM notes2 ORDER BY id"), Rows("SELECT * FROM notes ORDER BY id"));
}

// WITH ... MERGE: the common table expressions are in scope of the source,
// the conditions and the values; a step file runs it as a MERGE.
TEST_F(MergeTest, WithClauseBeforeMerge) {
  Exec(kOrders);
  const std::string merge =
      "WITH latest AS (SELECT * FROM updates WHERE op = 'U'), bonus (amount) AS (SELECT 1000) "
      "MERGE INTO orders AS t USING latest AS s ON t.order_id = s.order_id "
      "WHEN MATCHED AND s.ts > t.ts THEN UPDATE SET amount = s.amount + (SELECT amount FROM bonus) "
      "WHEN NOT MATCHED THEN INSERT *";
  EXPECT_TRUE(IsMergeStatement(merge));
  EXPECT_TRUE(IsMergeStatement("with recursive n(i) as (select 1 union all select i + 1 from n where i < 3) "
                               "merge into t using n on t.k = n.i when matched then update set v = 1"));
  EXPECT_FALSE(IsMergeStatement("WITH merge AS (SELECT 1) SELECT * FROM merge"));
  EXPECT_FALSE(IsMergeStatement("WITH x AS (SELECT 'merge') INSERT INTO t SELECT * FROM x; MERGE INTO t"));
  SqlFile file{"steps/30_merge.sql", "steps/30_merge.sql", "select 1;\n" + merge + ";\nselect 2;\n", "", false};
  Status st = RunSqlFile(db_.get(), file);
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(Rows("SELECT order_id, amount FROM orders ORDER BY order_id"),
            "O1|1011.0\nO2|20.0\nO3|30.0\nO4|40.0\n");
  EXPECT_EQ(Error("WITH latest AS (SELECT * FROM updates UNION ALL SELECT * FROM updates WHERE order_id = 'O1') "
                  "MERGE INTO orders AS t USING latest AS s ON t.order_id = s.order_id WHEN MATCHED THEN UPDATE SET *"),
            "MERGE INTO orders: 2 source rows match the target row with order_id = 'O1'; deduplicate the "
            "source first (e.g. keep row_number() over (partition by s.order_id order by ...) = 1)")
      << "(the duplicate check sees the CTE too)";
}

// A MERGE is planned once per connection and schema: the second run reads no
// schema, and a schema change (a new column for UPDATE SET *) is seen.
TEST_F(MergeTest, PlansOncePerSchema) {
  Exec(kOrders);
  int schema_reads = 0;
  sqlite3_trace_v2(
      db_->handle(), SQLITE_TRACE_STMT,
      [](unsigned, void* context, void* stmt, void*) {
        std::string sql = sqlite3_sql(static_cast<sqlite3_stmt*>(stmt));
        if (sql.find("pragma_table_info") != std::string::npos) ++*static_cast<int*>(context);
        return 0;
      },
      &schema_reads);
  const std::string merge =
      "MERGE INTO orders AS t USING updates AS s ON t.order_id = s.order_id "
      "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *";
  Merge(merge);
  int first = schema_reads;
  EXPECT_GT(first, 0);
  Merge(merge);
  EXPECT_EQ(schema_reads, first);
  Exec("ALTER TABLE orders ADD COLUMN op TEXT;");
  Merge(merge);
  EXPECT_GT(schema_reads, first);
  sqlite3_trace_v2(db_->handle(), 0, nullptr, nullptr);
  EXPECT_EQ(Rows("SELECT order_id, op FROM orders ORDER BY order_id"), "O1|U\nO2|U\nO3|U\nO4|NULL\nO5|I\n");
}

// The messages say which spellings the unique key took for one value.
TEST_F(MergeTest, DuplicateMessageShowsTheSpellingsOfOneKey) {
  Exec("CREATE TABLE totals (id INTEGER NOT NULL UNIQUE, amount INTEGER);"
       "CREATE TABLE moves (id, amount INTEGER);"
       "INSERT INTO moves VALUES ('7', 1), (7, 2), (8, 1);");
  EXPECT_EQ(Error("MERGE INTO totals AS t USING moves AS s ON t.id = s.id WHEN NOT MATCHED THEN INSERT *"),
            "MERGE INTO totals: 2 source rows would insert the same new row with id = 7 (the source writes it "
            "'7', 7, one key for the target's unique key); deduplicate the source first (e.g. keep row_number() "
            "over (partition by s.id order by ...) = 1)");
}

// ON may name the index's own collation, never another one: MERGE matches as
// the unique key does, whatever ON says.
TEST_F(MergeTest, OnCollationMustBeTheUniqueKeys) {
  Exec("CREATE TABLE users (email TEXT, visits INTEGER);"
       "CREATE UNIQUE INDEX users_by_email ON users(email COLLATE NOCASE);"
       "INSERT INTO users VALUES ('a@x', 1);"
       "CREATE TABLE events (email TEXT);"
       "INSERT INTO events VALUES ('A@X');");
  EXPECT_EQ(Error("MERGE INTO users AS t USING events AS s ON t.email = s.email COLLATE BINARY "
                  "WHEN MATCHED THEN UPDATE SET visits = t.visits + 1"),
            "MERGE INTO users: ON compares email with COLLATE BINARY, but index users_by_email compares it with "
            "NOCASE; MERGE matches rows as the unique key does: remove the COLLATE from ON");
  Merge("MERGE INTO users AS t USING events AS s ON t.email = s.email collate nocase "
        "WHEN MATCHED THEN UPDATE SET visits = t.visits + 1 WHEN NOT MATCHED THEN INSERT (email) VALUES (s.email)");
  EXPECT_EQ(Rows("SELECT * FROM users"), "a@x|2\n");
}

// Two unique keys on the same columns that compare differently: which one
// the upsert's conflict target is cannot be told, so MERGE refuses.
TEST_F(MergeTest, TwoUniqueKeysComparingDifferentlyAreRefused) {
  Exec("CREATE TABLE users (email TEXT UNIQUE, visits INTEGER);"
       "CREATE UNIQUE INDEX users_by_email_nocase ON users(email COLLATE NOCASE);"
       "CREATE TABLE events (email TEXT);");
  EXPECT_EQ(Error("MERGE INTO users AS t USING events AS s ON t.email = s.email "
                  "WHEN MATCHED THEN UPDATE SET visits = 1"),
            "MERGE INTO users: two unique keys of users are on (email) but compare email differently (NOCASE in "
            "index users_by_email_nocase, BINARY in index sqlite_autoindex_users_1); MERGE matches as the upsert's "
            "unique key does and cannot tell which one that is: drop one of them");
  // The same collation twice is one key.
  Exec("DROP INDEX users_by_email_nocase; CREATE UNIQUE INDEX users_by_email_again ON users(email);");
  Merge("MERGE INTO users AS t USING events AS s ON t.email = s.email WHEN MATCHED THEN UPDATE SET visits = 1");
}

// A REAL key keeps an integer beyond 2^53 as an integer in the index but reads
// it back rounded: MERGE refuses such a key instead of matching it wrongly.
TEST_F(MergeTest, RealKeyRefusesIntegersWithoutAnExactRealValue) {
  Exec("CREATE TABLE readings (at REAL PRIMARY KEY, value INTEGER);"
       "INSERT INTO readings VALUES (9007199254740992, 1), (1.5, 1);"
       "CREATE TABLE incoming (at, value INTEGER);"
       "INSERT INTO incoming VALUES ('9007199254740992', 2), (1.5, 2), ('1.5e0', 3);");
  EXPECT_NE(Error("MERGE INTO readings AS t USING incoming AS s ON t.at = s.at "
                  "WHEN MATCHED THEN UPDATE SET value = s.value"),
            "");  // '1.5e0' and 1.5 are one key
  Exec("DELETE FROM incoming WHERE value = 3;");
  Merge("MERGE INTO readings AS t USING incoming AS s ON t.at = s.at WHEN MATCHED THEN UPDATE SET value = s.value");
  EXPECT_EQ(Rows("SELECT * FROM readings ORDER BY at"), "1.5|2\n9.00719925474099e+15|2\n");
  Exec("INSERT INTO incoming VALUES (9007199254740993, 4);");
  EXPECT_EQ(Error("MERGE INTO readings AS t USING incoming AS s ON t.at = s.at "
                  "WHEN MATCHED THEN UPDATE SET value = s.value"),
            "MERGE INTO readings: the key value 9007199254740993 has no exact REAL value, so a REAL key column "
            "cannot match it reliably; declare the key column INTEGER or NUMERIC");
}

// The cached plan is dropped when what it was made from changes without a
// change to main's schema: a temp table that now hides the target, or a
// temp source recreated with other columns (for SET * and INSERT *).
TEST_F(MergeTest, CachedPlanFollowsTempTables) {
  Exec(kOrders);
  Exec("CREATE TEMP TABLE batch AS SELECT order_id, amount FROM updates;");
  const std::string merge =
      "MERGE INTO orders AS t USING batch AS s ON t.order_id = s.order_id "
      "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *";
  Merge(merge);
  EXPECT_EQ(Rows("SELECT order_id, amount, status FROM orders WHERE order_id IN ('O1', 'O5') ORDER BY 1"),
            "O1|11.0|new\nO5|50.0|NULL\n");
  Exec("DROP TABLE temp.batch; CREATE TEMP TABLE batch AS SELECT order_id, status FROM updates;");
  Merge(merge);
  EXPECT_EQ(Rows("SELECT order_id, amount, status FROM orders WHERE order_id IN ('O1', 'O5') ORDER BY 1"),
            "O1|11.0|paid\nO5|50.0|new\n");
  Exec("CREATE TEMP TABLE orders (order_id TEXT PRIMARY KEY, amount REAL, status TEXT, ts INTEGER);");
  Merge(merge);
  EXPECT_EQ(Rows("SELECT order_id, status FROM temp.orders ORDER BY 1"),
            "O1|paid\nO2|new\nO3|shipped\nO5|new\n");
}

}  // namespace
}  // namespace sluice
