// Seeds: CSV parsing and its errors, column type inference, NULL for empty cells, checksummed reloads and _sluice_seeds.
#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sql/catalog.h"
#include "sql/database.h"
#include "sql/seeds.h"
#include "test_support.h"

namespace sluice {
namespace {

using testing::Query;
using testing::QueryOne;
using testing::TempDir;
using testing::WriteFile;
using Cells = std::vector<std::optional<std::string>>;

CsvTable MustParse(const std::string& text) {
  Result<CsvTable> table = ParseCsv(text, "seeds/t.csv");
  EXPECT_TRUE(table.ok()) << table.status().message();
  return table.ok() ? table.value() : CsvTable{};
}

std::string ParseError(const std::string& text) {
  Result<CsvTable> table = ParseCsv(text, "seeds/t.csv");
  EXPECT_FALSE(table.ok()) << "accepted:\n" << text;
  if (table.ok()) return "";
  EXPECT_EQ(table.status().code(), Status::Code::kInvalidInput);
  return table.status().message();
}

// ---------------------------------------------------------------------------
// ParseCsv

TEST(ParseCsv, HeaderAndRows) {
  CsvTable table = MustParse("id,name,city\n1,Ada,Paris\n2,Bob,Lyon\n");
  EXPECT_EQ(table.header, (std::vector<std::string>{"id", "name", "city"}));
  ASSERT_EQ(table.rows.size(), 2u);
  EXPECT_EQ(table.rows[0], (Cells{"1", "Ada", "Paris"}));
  EXPECT_EQ(table.rows[1], (Cells{"2", "Bob", "Lyon"}));
}

TEST(ParseCsv, EmptyCellIsNullButQuotedEmptyIsAnEmptyString) {
  CsvTable table = MustParse("a,b,c\n,\"\",x\n1,,\n");
  ASSERT_EQ(table.rows.size(), 2u);
  EXPECT_EQ(table.rows[0], (Cells{std::nullopt, std::string(), "x"}));
  EXPECT_EQ(table.rows[1], (Cells{"1", std::nullopt, std::nullopt}));
}

TEST(ParseCsv, QuotedFieldsWithCommasDoubledQuotesAndNewlines) {
  CsvTable table = MustParse("id,note\n1,\"a, b\"\n2,\"say \"\"hi\"\"\"\n3,\"line1\nline2\"\n");
  ASSERT_EQ(table.rows.size(), 3u);
  EXPECT_EQ(table.rows[0], (Cells{"1", "a, b"}));
  EXPECT_EQ(table.rows[1], (Cells{"2", "say \"hi\""}));
  EXPECT_EQ(table.rows[2], (Cells{"3", "line1\nline2"}));
}

TEST(ParseCsv, CrLfLineEndingsNoTrailingNewlineAndBlankLines) {
  CsvTable table = MustParse("id,v\r\n1,a\r\n\r\n2,b");
  EXPECT_EQ(table.header, (std::vector<std::string>{"id", "v"}));
  ASSERT_EQ(table.rows.size(), 2u);
  EXPECT_EQ(table.rows[0], (Cells{"1", "a"}));
  EXPECT_EQ(table.rows[1], (Cells{"2", "b"}));
}

TEST(ParseCsv, HeaderOnlyHasNoRows) {
  CsvTable table = MustParse("id,name\n");
  EXPECT_EQ(table.header, (std::vector<std::string>{"id", "name"}));
  EXPECT_TRUE(table.rows.empty());
}

TEST(ParseCsv, RaggedRowNamesFileAndLine) {
  EXPECT_EQ(ParseError("a,b\n1,2\n3\n"), "seeds/t.csv:3: row has 1 fields but the header has 2");
  EXPECT_EQ(ParseError("a,b\n1,2,3\n"), "seeds/t.csv:2: row has 3 fields but the header has 2");
}

TEST(ParseCsv, LineNumbersCountNewlinesInsideQuotesAndBlankLines) {
  EXPECT_EQ(ParseError("a,b\n1,\"x\ny\"\n\n3\n"), "seeds/t.csv:5: row has 1 fields but the header has 2");
}

TEST(ParseCsv, UnterminatedQuoteNamesTheLineWhereTheFieldStarts) {
  EXPECT_EQ(ParseError("a,b\n1,2\n3,\"open\nmore\n"), "seeds/t.csv:3: a quoted field is never closed");
}

TEST(ParseCsv, EmptyOrDuplicateHeaderCellIsAnError) {
  EXPECT_EQ(ParseError("a,,c\n1,2,3\n"), "seeds/t.csv:1: header cell 2 is empty; every column needs a name");
  EXPECT_EQ(ParseError("\n\na,b,a\n"), "seeds/t.csv:3: column 'a' appears twice in the header");
}

TEST(ParseCsv, EmptyFileIsAnError) {
  EXPECT_EQ(ParseError(""), "seeds/t.csv: the file is empty; the first line must name the columns");
  EXPECT_EQ(ParseError("\n\r\n"), "seeds/t.csv: the file is empty; the first line must name the columns");
}

TEST(Checksum, IsSixteenHexDigitsAndChangesWithTheContent) {
  std::string a = Checksum("id\n1\n");
  EXPECT_EQ(a.size(), 16u);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos) << a;
  EXPECT_EQ(Checksum("id\n1\n"), a);
  EXPECT_NE(Checksum("id\n2\n"), a);
  EXPECT_NE(Checksum("id\n1\n\n"), a);
}

TEST(Checksum, IsFnv1a64) {
  // Published FNV-1a 64 test vectors (offset basis 14695981039346656037 = 0xcbf29ce484222325).
  EXPECT_EQ(Checksum(""), "cbf29ce484222325");
  EXPECT_EQ(Checksum("a"), "af63dc4c8601ec8c");
  EXPECT_EQ(Checksum("foobar"), "85944171f73967e8");
}

// ---------------------------------------------------------------------------
// LoadChangedSeeds

class SeedsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_path_ = dir_ / "seeds.db";
    auto db = Database::Open(db_path_);
    ASSERT_TRUE(db.ok()) << db.status().message();
    db_ = std::move(*db);
    Status st = Catalog(db_.get()).Install();
    ASSERT_TRUE(st.ok()) << st.message();
  }

  SeedFile Seed(const std::string& table, const std::string& csv) {
    std::string path = dir_ / ("seeds/" + table + ".csv");
    WriteFile(path, csv);
    return SeedFile{path, "seeds/" + table + ".csv", table};
  }

  std::vector<std::string> Load(const std::vector<SeedFile>& seeds) {
    std::vector<std::string> loaded;
    Status st = LoadChangedSeeds(db_.get(), seeds, &loaded);
    EXPECT_TRUE(st.ok()) << st.message();
    return loaded;
  }

  std::vector<std::string> Rows(const std::string& sql) { return Query(db_path_, sql); }
  std::string One(const std::string& sql) { return QueryOne(db_path_, sql); }

  TempDir dir_;
  std::string db_path_;
  std::unique_ptr<Database> db_;
};

TEST_F(SeedsTest, InfersIntegerRealAndTextColumns) {
  SeedFile seed = Seed("products",
                       "sku,qty,price,mixed,code,sci,signed\n"
                       "A1,3,9.99,1,007,1e3,+5\n"
                       "B2,,10,2.5,x,2,-7\n"
                       "C3,12,3,,0x1F,,0\n");
  EXPECT_EQ(Load({seed}), std::vector<std::string>{"products"});
  EXPECT_EQ(Rows("SELECT name || ' ' || type FROM pragma_table_info('products') ORDER BY cid"),
            (std::vector<std::string>{"sku TEXT", "qty INTEGER", "price REAL", "mixed REAL", "code TEXT", "sci REAL",
                                      "signed INTEGER"}));
  EXPECT_EQ(Rows("SELECT typeof(sku), typeof(qty), typeof(price), typeof(mixed), typeof(code), typeof(sci), "
                 "typeof(signed) FROM products ORDER BY rowid"),
            (std::vector<std::string>{"text|integer|real|real|text|real|integer",
                                      "text|null|real|real|text|real|integer",
                                      "text|integer|real|null|text|null|integer"}));
  EXPECT_EQ(Rows("SELECT sku, qty, price, mixed, code, sci, signed FROM products ORDER BY rowid"),
            (std::vector<std::string>{"A1|3|9.99|1.0|007|1000.0|5", "B2|NULL|10.0|2.5|x|2.0|-7",
                                      "C3|12|3.0|NULL|0x1F|NULL|0"}));
}

TEST_F(SeedsTest, NumbersWithSpacesNanInfOrOverflowStayText) {
  SeedFile seed = Seed("odd", "a,b,c,d\n 1,nan,inf,99999999999999999999\n2,1,2,3\n");
  Load({seed});
  EXPECT_EQ(Rows("SELECT name || ' ' || type FROM pragma_table_info('odd') ORDER BY cid"),
            (std::vector<std::string>{"a TEXT", "b TEXT", "c TEXT", "d REAL"}));
  EXPECT_EQ(One("SELECT a || '|' || b || '|' || c FROM odd ORDER BY rowid LIMIT 1"), " 1|nan|inf");
  EXPECT_EQ(One("SELECT typeof(d) FROM odd ORDER BY rowid LIMIT 1"), "real");
}

TEST_F(SeedsTest, EmptyCellsAreNullAndQuotedEmptyIsEmptyText) {
  SeedFile seed = Seed("people", "id,name,age\n1,,30\n2,\"\",\n,Carol,41\n");
  Load({seed});
  EXPECT_EQ(Rows("SELECT quote(id), quote(name), quote(age) FROM people ORDER BY rowid"),
            (std::vector<std::string>{"1|NULL|30", "2|''|NULL", "NULL|'Carol'|41"}));
  EXPECT_EQ(Rows("SELECT name || ' ' || type FROM pragma_table_info('people') ORDER BY cid"),
            (std::vector<std::string>{"id INTEGER", "name TEXT", "age INTEGER"}));
}

TEST_F(SeedsTest, TextKeepsQuotesCommasAndNewlines) {
  SeedFile seed = Seed("notes", "id,text\n1,\"it's \"\"quoted\"\", with, commas\nand a newline\"\n");
  Load({seed});
  EXPECT_EQ(One("SELECT text FROM notes WHERE id = 1"), "it's \"quoted\", with, commas\nand a newline");
}

TEST_F(SeedsTest, RecordsChecksumRowCountAndLoadTime) {
  const std::string csv = "id,name\n1,Ada\n2,Bob\n3,Cy\n";
  SeedFile seed = Seed("customers", csv);
  Load({seed});
  EXPECT_EQ(Rows("SELECT name, checksum, \"rows\" FROM _sluice_seeds"),
            std::vector<std::string>{"customers|" + Checksum(csv) + "|3"});
  std::string loaded_at = One("SELECT loaded_at FROM _sluice_seeds WHERE name = 'customers'");
  EXPECT_EQ(loaded_at.size(), 24u) << loaded_at;  // 2024-01-02T03:04:05.678Z
  EXPECT_EQ(loaded_at.substr(10, 1), "T");
  EXPECT_EQ(loaded_at.back(), 'Z');
}

TEST_F(SeedsTest, UnchangedSeedIsNotReloaded) {
  SeedFile seed = Seed("customers", "id,name\n1,Ada\n2,Bob\n");
  EXPECT_EQ(Load({seed}), std::vector<std::string>{"customers"});
  EXPECT_EQ(One("SELECT count(*) FROM customers"), "2");
  std::string loaded_at = One("SELECT loaded_at FROM _sluice_seeds");

  // Unchanged file: not reloaded, so a local edit to the table survives and
  // the _sluice_seeds row is untouched.
  ASSERT_TRUE(db_->Exec("DELETE FROM customers WHERE id = 2").ok());
  EXPECT_EQ(Load({seed}), std::vector<std::string>{});
  EXPECT_EQ(One("SELECT count(*) FROM customers"), "1");
  EXPECT_EQ(One("SELECT loaded_at FROM _sluice_seeds"), loaded_at);
}

TEST_F(SeedsTest, ChangedSeedIsReloadedWithNewTypesAndChecksum) {
  SeedFile seed = Seed("customers", "id,name\n1,Ada\n2,Bob\n");
  EXPECT_EQ(Load({seed}), std::vector<std::string>{"customers"});

  // As the engine does it: inside the batch transaction.
  const std::string changed = "id,name,score\n1,Ada,1.5\n2,Bob,2\n3,Cy,\n";
  seed = Seed("customers", changed);
  auto tx = Transaction::Begin(db_.get());
  ASSERT_TRUE(tx.ok()) << tx.status().message();
  EXPECT_EQ(Load({seed}), std::vector<std::string>{"customers"});
  ASSERT_TRUE((*tx)->Commit().ok());
  EXPECT_EQ(Rows("SELECT id, name, score FROM customers ORDER BY id"),
            (std::vector<std::string>{"1|Ada|1.5", "2|Bob|2.0", "3|Cy|NULL"}));
  EXPECT_EQ(Rows("SELECT name, checksum, \"rows\" FROM _sluice_seeds"),
            std::vector<std::string>{"customers|" + Checksum(changed) + "|3"});
}

TEST_F(SeedsTest, ReloadsWhenTheTableWasDropped) {
  SeedFile seed = Seed("customers", "id\n1\n");
  Load({seed});
  ASSERT_TRUE(db_->Exec("DROP TABLE customers").ok());
  EXPECT_EQ(Load({seed}), std::vector<std::string>{"customers"});
  EXPECT_EQ(One("SELECT id FROM customers"), "1");
}

TEST_F(SeedsTest, LoadsOnlyTheSeedsThatChanged) {
  SeedFile a = Seed("a_seed", "x\n1\n");
  SeedFile b = Seed("b_seed", "y\n2\n");
  EXPECT_EQ(Load({a, b}), (std::vector<std::string>{"a_seed", "b_seed"}));
  b = Seed("b_seed", "y\n3\n");
  EXPECT_EQ(Load({a, b}), std::vector<std::string>{"b_seed"});
  EXPECT_EQ(One("SELECT y FROM b_seed"), "3");
  EXPECT_EQ(Rows("SELECT name FROM _sluice_seeds ORDER BY name"), (std::vector<std::string>{"a_seed", "b_seed"}));
}

TEST_F(SeedsTest, RolledBackLoadIsRetried) {
  SeedFile seed = Seed("customers", "id\n1\n");
  {
    auto tx = Transaction::Begin(db_.get());
    ASSERT_TRUE(tx.ok()) << tx.status().message();
    EXPECT_EQ(Load({seed}), std::vector<std::string>{"customers"});
    // Destroyed without Commit(): the load and its _sluice_seeds row roll back.
  }
  EXPECT_EQ(One("SELECT count(*) FROM _sluice_seeds"), "0");
  EXPECT_FALSE(db_->TableExists("customers"));
  EXPECT_EQ(Load({seed}), std::vector<std::string>{"customers"});
}

TEST_F(SeedsTest, HeaderCellsAreQuotedNotExecuted) {
  ASSERT_TRUE(db_->Exec("CREATE TABLE orders_curated(id TEXT); INSERT INTO orders_curated VALUES ('o1')").ok());
  SeedFile seed = Seed("customers", "id,a\"b,\"x\"\" TEXT); DROP TABLE orders_curated; --\"\n1,2,3\n");
  EXPECT_EQ(Load({seed}), std::vector<std::string>{"customers"});
  EXPECT_EQ(Rows("SELECT name FROM pragma_table_info('customers') ORDER BY cid"),
            (std::vector<std::string>{"id", "a\"b", "x\" TEXT); DROP TABLE orders_curated; --"}));
  EXPECT_EQ(One("SELECT \"a\"\"b\" FROM customers"), "2");
  EXPECT_EQ(One("SELECT id FROM orders_curated"), "o1");
}

TEST_F(SeedsTest, CsvErrorsNameTheSeedFileAndLine) {
  SeedFile seed = Seed("bad", "id,name\n1,Ada\n2\n");
  Status st = LoadChangedSeeds(db_.get(), {seed}, nullptr);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message(), "seeds/bad.csv:3: row has 1 fields but the header has 2");
  EXPECT_FALSE(db_->TableExists("bad"));
  EXPECT_EQ(One("SELECT count(*) FROM _sluice_seeds"), "0");
}

TEST_F(SeedsTest, ColumnsThatDifferOnlyInCaseAreRejectedNamingTheFile) {
  SeedFile seed = Seed("dup", "id,ID\n1,2\n");
  Status st = LoadChangedSeeds(db_.get(), {seed}, nullptr);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("seeds/dup.csv"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("ID"), std::string::npos) << st.message();
}

TEST_F(SeedsTest, MissingFileIsAnIoErrorNamingIt) {
  SeedFile seed{dir_ / "seeds/gone.csv", "seeds/gone.csv", "gone"};
  Status st = LoadChangedSeeds(db_.get(), {seed}, nullptr);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Status::Code::kIoError);
  EXPECT_EQ(st.message(), "cannot read seeds/gone.csv");
}

TEST(Seeds, WorkInAnInMemoryDatabase) {
  TempDir dir;
  WriteFile(dir / "products.csv", "sku,price\nA,1.25\n");
  auto db = Database::Open(":memory:");
  ASSERT_TRUE(db.ok()) << db.status().message();
  ASSERT_TRUE(Catalog(db->get()).Install().ok());
  std::vector<std::string> loaded;
  Status st = LoadChangedSeeds(db->get(), {SeedFile{dir / "products.csv", "seeds/products.csv", "products"}}, &loaded);
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(loaded, std::vector<std::string>{"products"});
  Result<Statement> price = (*db)->Prepare("SELECT price, typeof(price) FROM products WHERE sku = 'A'");
  ASSERT_TRUE(price.ok());
  Result<bool> row = price->Step();
  ASSERT_TRUE(row.ok() && row.value()) << row.status().message();
  EXPECT_DOUBLE_EQ(price->ColumnDouble(0), 1.25);
  EXPECT_EQ(price->ColumnText(1), "real");
}

}  // namespace
}  // namespace sluice
