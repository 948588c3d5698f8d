// RunSqlFile: statements in order, errors as file:line (syntax and runtime), refused transaction control and ATTACH.
#include <gtest/gtest.h>

#include <sqlite3.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "sql/sqlite/database.h"
#include "sql/sqlite/sql_file.h"
#include "test_support.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

const char* const kTransactionRefusal =
    "BEGIN, COMMIT, ROLLBACK and SAVEPOINT are not allowed: sluice runs every file inside the batch transaction; "
    "remove them";
const char* const kAttachRefusal = "ATTACH is not allowed here; use seeds/*.csv for reference data";

class SqlFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = Database::Open(":memory:");
    ASSERT_TRUE(db.ok()) << db.status().message();
    db_ = std::move(*db);
  }

  Status Run(const std::string& text, const std::string& display = "steps/x.sql") {
    return RunSqlFile(db_.get(), SqlFile{"/nowhere/" + display, display, text, {}, false});
  }

  // Runs `text`, which must fail, and returns the message.
  std::string Error(const std::string& text) {
    Status st = Run(text);
    EXPECT_FALSE(st.ok()) << "ran:\n" << text;
    if (st.ok()) return "";
    EXPECT_EQ(st.code(), Status::Code::kSqlError);
    return st.message();
  }

  std::vector<std::string> Rows(const std::string& sql) {
    std::vector<std::string> rows;
    Result<Statement> stmt = db_->Prepare(sql);
    EXPECT_TRUE(stmt.ok()) << stmt.status().message();
    if (!stmt.ok()) return rows;
    while (true) {
      Result<bool> row = stmt->Step();
      EXPECT_TRUE(row.ok()) << row.status().message();
      if (!row.ok() || !*row) break;
      std::string line;
      for (int column = 0; column < sqlite3_column_count(stmt->get()); ++column) {
        line += (column ? "|" : "") + (stmt->IsNull(column) ? std::string("NULL") : stmt->ColumnText(column));
      }
      rows.push_back(line);
    }
    return rows;
  }

  std::unique_ptr<Database> db_;
};

TEST_F(SqlFileTest, RunsEveryStatementInOrder) {
  Status st = Run(
      "-- build a table and change it\n"
      "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);\n"
      "INSERT INTO t(v) VALUES ('a'), ('b');\n"
      ";;\n"
      "UPDATE t SET v = v || '!' WHERE id = 2;  /* trailing comment */\n"
      "INSERT INTO t(v) SELECT group_concat(v, '+') FROM t;\n"
      "DELETE FROM t WHERE id = 1\n");
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(Rows("SELECT id, v FROM t ORDER BY id"), (std::vector<std::string>{"2|b!", "3|a+b!"}));
}

TEST_F(SqlFileTest, EmptyOrCommentOnlyFileDoesNothing) {
  EXPECT_TRUE(Run("").ok());
  EXPECT_TRUE(Run("  \n-- nothing here\n/* nor here */\n\n").ok());
  EXPECT_TRUE(Run("/* unterminated comment").ok());
}

TEST_F(SqlFileTest, SelectsRunToCompletionAndTheirRowsAreDiscarded) {
  ASSERT_TRUE(Run("CREATE TABLE t(x); INSERT INTO t VALUES (1),(2),(3);\nSELECT * FROM t;\nINSERT INTO t VALUES (4);").ok());
  EXPECT_EQ(Rows("SELECT count(*) FROM t"), std::vector<std::string>{"4"});
}

TEST_F(SqlFileTest, StopsAtTheFirstFailingStatement) {
  std::string message = Error(
      "CREATE TABLE t(x NOT NULL);\n"
      "INSERT INTO t VALUES (1);\n"
      "INSERT INTO t VALUES (NULL);\n"
      "INSERT INTO t VALUES (3);\n");
  EXPECT_EQ(message, "steps/x.sql:3: NOT NULL constraint failed: t.x");
  EXPECT_EQ(Rows("SELECT x FROM t"), std::vector<std::string>{"1"});
}

TEST_F(SqlFileTest, SyntaxErrorNamesFileAndLine) {
  EXPECT_EQ(Error("CREATE TABLE t(x);\n\nSELEC x FROM t;\n"), "steps/x.sql:3: near \"SELEC\": syntax error");
}

TEST_F(SqlFileTest, SyntaxErrorOnALaterLineOfAMultiLineStatement) {
  EXPECT_EQ(Error("CREATE TABLE t(a, b);\n"
                  "SELECT\n"
                  "  a,\n"
                  "  b,\n"
                  "FROM t;\n"),
            "steps/x.sql:5: near \"FROM\": syntax error");
}

TEST_F(SqlFileTest, SyntaxErrorLineCountsCommentsBeforeAndInsideTheStatement) {
  EXPECT_EQ(Error("-- header comment\n"
                  "/* a block\n"
                  "   comment */\n"
                  "CREATE TABLE t(a);\n"
                  "-- between statements\n"
                  "\n"
                  "INSERT INTO t -- a comment inside\n"
                  "/* another\n"
                  "   one */\n"
                  "VALUES (1,;\n"),
            "steps/x.sql:10: near \";\": syntax error");
}

TEST_F(SqlFileTest, SyntaxErrorLineWithCrLfLineEndings) {
  EXPECT_EQ(Error("CREATE TABLE t(a);\r\n\r\nSELECT a\r\nFROM t\r\nWHERE WHERE;\r\n"),
            "steps/x.sql:5: near \"WHERE\": syntax error");
}

TEST_F(SqlFileTest, UnknownTableNamesTheLine) {
  std::string message = Error("CREATE TABLE t(a);\n\nINSERT INTO t\nSELECT * FROM missing_table;\n");
  EXPECT_EQ(message.rfind("steps/x.sql:", 0), 0u) << message;
  EXPECT_NE(message.find("no such table: missing_table"), std::string::npos) << message;
  int line = std::stoi(message.substr(std::string("steps/x.sql:").size()));
  EXPECT_TRUE(line == 3 || line == 4) << message;  // the statement's first line or the table's line
}

TEST_F(SqlFileTest, RuntimeErrorNamesTheFirstLineOfTheStatement) {
  std::string text =
      "CREATE TABLE t(id INTEGER NOT NULL UNIQUE, v TEXT);\n"  // 1
      "INSERT INTO t VALUES (1, 'a');\n"                       // 2
      "-- the duplicate\n"                                     // 3
      "\n"                                                     // 4
      "INSERT INTO t\n"                                        // 5
      "  (id, v)\n"                                            // 6
      "VALUES\n"                                               // 7
      "  (1, 'again');\n";                                     // 8
  EXPECT_EQ(Error(text), "steps/x.sql:5: UNIQUE constraint failed: t.id");
}

TEST_F(SqlFileTest, NotNullViolationAfterABlockCommentNamesTheStatementLine) {
  ASSERT_TRUE(Run("CREATE TABLE t(id INTEGER NOT NULL);").ok());
  EXPECT_EQ(Error("/* first\n   insert */ INSERT INTO t\nVALUES (NULL);\n"),
            "steps/x.sql:2: NOT NULL constraint failed: t.id");
}

TEST_F(SqlFileTest, MessageUsesTheDisplayName) {
  Status st = Run("SELECT 1;\nSELECT nope;", "steps/30_upsert.sql");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message(), "steps/30_upsert.sql:2: no such column: nope");
}

TEST_F(SqlFileTest, TransactionControlIsRefused) {
  for (const char* statement :
       {"BEGIN", "BEGIN IMMEDIATE TRANSACTION", "COMMIT", "END", "ROLLBACK", "SAVEPOINT s", "RELEASE s",
        "ROLLBACK TO s", "begin deferred"}) {
    std::string text = "CREATE TABLE IF NOT EXISTS t(x);\n" + std::string(statement) + ";\nINSERT INTO t VALUES (1);\n";
    EXPECT_EQ(Error(text), "steps/x.sql:2: " + std::string(kTransactionRefusal)) << statement;
  }
  EXPECT_EQ(Rows("SELECT count(*) FROM t"), std::vector<std::string>{"0"});
  EXPECT_NE(sqlite3_get_autocommit(db_->handle()), 0);  // no transaction was opened
}

TEST_F(SqlFileTest, RefusalInsideAnOpenTransactionLeavesItOpen) {
  auto tx = Transaction::Begin(db_.get());
  ASSERT_TRUE(tx.ok()) << tx.status().message();
  ASSERT_TRUE(Run("CREATE TABLE t(x); INSERT INTO t VALUES (1);").ok());
  EXPECT_EQ(Error("INSERT INTO t VALUES (2);\nCOMMIT;"), "steps/x.sql:2: " + std::string(kTransactionRefusal));
  EXPECT_EQ(sqlite3_get_autocommit(db_->handle()), 0);  // still inside the caller's transaction
  (*tx)->Rollback();
  EXPECT_FALSE(db_->TableExists("t"));
}

TEST_F(SqlFileTest, TriggerBodiesAndCaseEndAreNotTransactionControl) {
  Status st = Run(
      "CREATE TABLE t(x);\n"
      "CREATE TABLE log(msg);\n"
      "CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN\n"
      "  INSERT INTO log VALUES (CASE WHEN new.x > 1 THEN 'big' ELSE 'small' END);\n"
      "END;\n"
      "INSERT INTO t VALUES (1), (5);\n");
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(Rows("SELECT msg FROM log ORDER BY rowid"), (std::vector<std::string>{"small", "big"}));
}

TEST_F(SqlFileTest, AttachAndDetachAreRefused) {
  TempDir dir;
  std::string other = dir / "other.db";
  EXPECT_EQ(Error("SELECT 1;\nATTACH DATABASE '" + other + "' AS other;\nCREATE TABLE other.t(x);\n"),
            "steps/x.sql:2: " + std::string(kAttachRefusal));
  EXPECT_FALSE(fs::exists(other));
  EXPECT_EQ(Error("DETACH DATABASE main;"), "steps/x.sql:1: not authorized");
  EXPECT_EQ(Error("\n\nattach ':memory:' as m;"), "steps/x.sql:3: " + std::string(kAttachRefusal));
}

TEST_F(SqlFileTest, AttachIsAllowedInsideTheRootOnlyUnlessAnywhere) {
  TempDir root, elsewhere;
  SqlFile file{"/nowhere/steps/x.sql", "steps/x.sql", "attach database '" + (root / "dim.db") + "' as dim;\n"
               "create table dim.t(x);\ndetach database dim;\n", root.path(), false};
  Status st = RunSqlFile(db_.get(), file);
  EXPECT_TRUE(st.ok()) << st.message();
  EXPECT_TRUE(fs::exists(root / "dim.db"));

  file.text = "attach database '" + (root / "../" + fs::path(elsewhere.path()).filename().string() + "/x.db") +
              "' as x;\n";
  st = RunSqlFile(db_.get(), file);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("is outside the pipeline directory; move the file into it, or set [target] "
                              "allow_attach_outside = true"),
            std::string::npos)
      << st.message();
  EXPECT_FALSE(fs::exists(elsewhere / "x.db"));

  file.attach_anywhere = true;
  st = RunSqlFile(db_.get(), file);
  EXPECT_TRUE(st.ok()) << st.message();
  EXPECT_TRUE(fs::exists(elsewhere / "x.db"));
}

TEST_F(SqlFileTest, AuthorizerIsRemovedAfterTheFileRuns) {
  EXPECT_FALSE(Run("BEGIN;").ok());
  // Outside RunSqlFile, sluice itself opens transactions on the same connection.
  auto tx = Transaction::Begin(db_.get());
  ASSERT_TRUE(tx.ok()) << tx.status().message();
  EXPECT_TRUE((*tx)->Commit().ok());
}

TEST_F(SqlFileTest, RefusalMessageDoesNotLeakIntoALaterError) {
  EXPECT_FALSE(Run("BEGIN;").ok());
  EXPECT_EQ(Error("SELECT missing_column;"), "steps/x.sql:1: no such column: missing_column");
}

TEST(SqlFile, LineAtCountsNewlinesBeforeTheOffset) {
  const std::string text = "a\nbc\n\nd";
  EXPECT_EQ(LineAt(text, 0), 1);
  EXPECT_EQ(LineAt(text, 1), 1);  // the newline itself is on line 1
  EXPECT_EQ(LineAt(text, 2), 2);
  EXPECT_EQ(LineAt(text, 5), 3);
  EXPECT_EQ(LineAt(text, 6), 4);
  EXPECT_EQ(LineAt(text, 1000), 4);
}

TEST(SqlFile, ReadSqlFileKeepsPathDisplayAndBytes) {
  TempDir dir;
  const std::string text = "SELECT 1;\r\n-- é\n";
  testing::WriteFile(dir / "steps/10_a.sql", text);
  Result<SqlFile> file = ReadSqlFile(dir / "steps/10_a.sql", "steps/10_a.sql");
  ASSERT_TRUE(file.ok()) << file.status().message();
  EXPECT_EQ(file->path, dir / "steps/10_a.sql");
  EXPECT_EQ(file->display, "steps/10_a.sql");
  EXPECT_EQ(file->text, text);

  Result<SqlFile> missing = ReadSqlFile(dir / "steps/nope.sql", "steps/nope.sql");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Status::Code::kIoError);
  EXPECT_EQ(missing.status().message(), "cannot read steps/nope.sql");
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

TEST_F(SqlFileTest, MergeStatementsRunBetweenOrdinaryOnes) {
  Status st = Run(
      "create table t (k text primary key, v integer);\n"
      "create table s (k text, v integer);\n"
      "insert into s values ('a', 1), ('b', 2);\n"
      "-- the MERGE Delta users write; 'merge;' in this comment is not a statement\n"
      "MERGE INTO t USING s ON t.k = s.k\n"
      "  WHEN MATCHED THEN UPDATE SET *\n"
      "  WHEN NOT MATCHED THEN INSERT *;\n"
      "update s set v = v * 10;\n"
      "merge into t using s on t.k = s.k when matched then update set v = s.v;\n"
      "insert into s values ('c', 3);\n");
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(Rows("select k, v from t order by k"), (std::vector<std::string>{"a|10", "b|20"}));
}

TEST_F(SqlFileTest, MergeErrorNamesFileAndTheStatementsLine) {
  std::string message = Error(
      "create table t (k text, v integer);\n"
      "create table s (k text, v integer);\n"
      "\n"
      "merge into t using s on t.k = s.k when not matched then insert *;\n");
  EXPECT_EQ(message.rfind("steps/x.sql:4: MERGE INTO t", 0), 0u) << message;
  EXPECT_NE(message.find("unique index"), std::string::npos) << message;
}

TEST_F(SqlFileTest, PragmasThatWeakenDurabilityAreRefused) {
  for (const char* pragma : {"PRAGMA synchronous=OFF;", "PRAGMA journal_mode=DELETE;", "pragma Locking_Mode = EXCLUSIVE;",
                             "PRAGMA main.synchronous = 0;", "PRAGMA wal_checkpoint;", "PRAGMA writable_schema=ON;"}) {
    std::string message = Error(pragma);
    EXPECT_NE(message.find("is not allowed in pipeline SQL"), std::string::npos) << pragma << ": " << message;
  }
  // Reading is fine, and so are pragmas that change nothing durable.
  EXPECT_TRUE(Run("PRAGMA journal_mode; PRAGMA synchronous; PRAGMA foreign_keys = ON;").ok());
}

TEST_F(SqlFileTest, AttachWithAComputedFileNameIsRefused) {
  TempDir dir;
  SqlFile file{dir / "steps/x.sql", "steps/x.sql", "ATTACH '/tmp/' || 'sluice-elsewhere.db' AS other;", {}, false};
  file.attach_root = dir.path();
  Status st = RunSqlFile(db_.get(), file);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("ATTACH needs a literal file name"), std::string::npos) << st.message();
  EXPECT_FALSE(fs::exists("/tmp/sluice-elsewhere.db"));
}

TEST_F(SqlFileTest, MissingTableIsReportedAtTheLineThatNamesIt) {
  ASSERT_TRUE(Run("CREATE TABLE orders(id TEXT, product TEXT);").ok());
  std::string text = "SELECT o.id,\n";
  for (int line = 2; line <= 21; ++line) text += "  o.product AS c" + std::to_string(line) + ",\n";
  text += "  1\nFROM orders AS o\nJOIN prodcts AS p ON p.id = o.product;\n";
  std::string message = Error(text);
  EXPECT_EQ(message, "steps/x.sql:24: no such table: prodcts");
}

}  // namespace
}  // namespace sluice
