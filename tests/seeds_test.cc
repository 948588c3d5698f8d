// Seeds: CSV parsing and its errors, column types (inferred or declared), NULL for empty cells, checksummed
// reloads from a stable snapshot, ownership of seed tables, _sluice_seeds, and validate's report of every problem.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sql/sqlite/catalog.h"
#include "sql/sqlite/database.h"
#include "sql/sqlite/seeds.h"
#include "test_support.h"

namespace sluice {
namespace {

using testing::Contains;
using testing::PipelineFiles;
using testing::Query;
using testing::QueryOne;
using testing::TempDir;
using testing::RunSluice;
using testing::WriteFile;
using testing::WritePipeline;
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
  // A whole number beyond 64 bits is an identifier, not an approximate REAL.
  EXPECT_EQ(Rows("SELECT name || ' ' || type FROM pragma_table_info('odd') ORDER BY cid"),
            (std::vector<std::string>{"a TEXT", "b TEXT", "c TEXT", "d TEXT"}));
  EXPECT_EQ(One("SELECT a || '|' || b || '|' || c FROM odd ORDER BY rowid LIMIT 1"), " 1|nan|inf");
  EXPECT_EQ(Rows("SELECT typeof(d) || ' ' || d FROM odd ORDER BY rowid"),
            (std::vector<std::string>{"text 99999999999999999999", "text 3"}));
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
            std::vector<std::string>{"customers|" + Checksum(csv) + "/2|3"});
  EXPECT_EQ(SeedChecksum(csv), Checksum(csv) + "/2");
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
            std::vector<std::string>{"customers|" + SeedChecksum(changed) + "|3"});
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
  EXPECT_EQ(st.message(), "cannot read seeds/gone.csv: No such file or directory");
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

// ---------------------------------------------------------------------------
// Issue 13 and issue 11: seeds that load whole, keep identifiers, and never
// drop a table sluice does not own.

std::string ManyRows(int first, int count) {
  std::string csv;
  for (int i = first; i < first + count; ++i) csv += std::to_string(i) + ",name" + std::to_string(i) + "\n";
  return csv;
}

// Removes the read hook however the test ends.
struct ReadHookGuard {
  ~ReadHookGuard() { SetSeedReadHookForTesting(nullptr); }
};

// A seed rewritten in place while it is read: the first read sees half the
// file; the writer then finishes. The half must never load.
TEST_F(SeedsTest, FileThatChangesWhileReadIsReadAgainWhole) {
  const std::string half = "id,name\n" + ManyRows(1, 500);
  const std::string whole = half + ManyRows(501, 500);
  SeedFile seed = Seed("customers", half);
  ReadHookGuard guard;
  int reads = 0;
  SetSeedReadHookForTesting([&](const std::string& path, int attempt) {
    ++reads;
    if (attempt == 0) WriteFile(path, whole);  // the writer finishes after the first read
  });
  EXPECT_EQ(Load({seed}), std::vector<std::string>{"customers"});
  EXPECT_EQ(reads, 2);
  EXPECT_EQ(One("SELECT count(*) FROM customers"), "1000");
  EXPECT_EQ(Rows("SELECT checksum, \"rows\" FROM _sluice_seeds"),
            std::vector<std::string>{SeedChecksum(whole) + "|1000"});
}

TEST_F(SeedsTest, FileReplacedByARenameWhileReadIsReadAgain) {
  SeedFile seed = Seed("customers", "id,name\n1,old\n");
  const std::string next = "id,name\n1,new\n2,new\n";
  ReadHookGuard guard;
  SetSeedReadHookForTesting([&](const std::string& path, int attempt) {
    if (attempt != 0) return;
    WriteFile(path + ".tmp", next);
    std::filesystem::rename(path + ".tmp", path);
  });
  Load({seed});
  EXPECT_EQ(Rows("SELECT name FROM customers ORDER BY id"), (std::vector<std::string>{"new", "new"}));
}

TEST_F(SeedsTest, FileThatNeverSettlesIsRefusedAndNothingLoads) {
  SeedFile seed = Seed("customers", "id\n1\n");
  ReadHookGuard guard;
  SetSeedReadHookForTesting([&](const std::string& path, int attempt) {
    WriteFile(path, "id\n" + ManyRows(1, attempt + 1));
  });
  Status st = LoadChangedSeeds(db_.get(), {seed}, nullptr);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Status::Code::kIoError);
  EXPECT_TRUE(Contains(st.message(), "seeds/customers.csv")) << st.message();
  EXPECT_TRUE(Contains(st.message(), "kept changing while it was read")) << st.message();
  EXPECT_FALSE(db_->TableExists("customers"));
}

TEST_F(SeedsTest, LeadingZerosAndIdsBeyond64BitsAreText) {
  SeedFile seed = Seed("accounts",
                       "zip,code,big_id,ratio,n\n"
                       "01234,007,12345678901234567890,0.5,0\n"
                       "75001,42,12345678901234567891,0,-3\n");
  Load({seed});
  EXPECT_EQ(Rows("SELECT name || ' ' || type FROM pragma_table_info('accounts') ORDER BY cid"),
            (std::vector<std::string>{"zip TEXT", "code TEXT", "big_id TEXT", "ratio REAL", "n INTEGER"}));
  EXPECT_EQ(Rows("SELECT zip, code, big_id FROM accounts ORDER BY rowid"),
            (std::vector<std::string>{"01234|007|12345678901234567890", "75001|42|12345678901234567891"}));
  // Two distinct ids stay distinct.
  EXPECT_EQ(One("SELECT count(DISTINCT big_id) FROM accounts"), "2");
}

TEST_F(SeedsTest, NegativeAndDecimalNumbersWithALeadingZeroDigitAreText) {
  SeedFile seed = Seed("codes", "a,b,c\n-01,00.5,-0.25\n2,1.5,3\n");
  Load({seed});
  EXPECT_EQ(Rows("SELECT name || ' ' || type FROM pragma_table_info('codes') ORDER BY cid"),
            (std::vector<std::string>{"a TEXT", "b TEXT", "c REAL"}));
  EXPECT_EQ(One("SELECT a || '|' || b FROM codes ORDER BY rowid LIMIT 1"), "-01|00.5");
}

TEST_F(SeedsTest, QuotedCellsStayText) {
  SeedFile seed = Seed("customers", "customer_id,name,score\n\"42\",Ada,1\n\"7\",Bob,\"2\"\n8,Cy,3\n");
  Load({seed});
  EXPECT_EQ(Rows("SELECT name || ' ' || type FROM pragma_table_info('customers') ORDER BY cid"),
            (std::vector<std::string>{"customer_id TEXT", "name TEXT", "score TEXT"}));
  EXPECT_EQ(Rows("SELECT quote(customer_id) || ' ' || quote(score) FROM customers ORDER BY rowid"),
            (std::vector<std::string>{"'42' '1'", "'7' '2'", "'8' '3'"}));
}

TEST_F(SeedsTest, HeaderDeclaresColumnTypes) {
  SeedFile seed = Seed("customers",
                       "customer_id:TEXT,name,score:real,visits:Integer\n"
                       "01234,Ada,1,007\n"
                       "42,Bob,2.5,\n");
  Load({seed});
  EXPECT_EQ(Rows("SELECT name || ' ' || type FROM pragma_table_info('customers') ORDER BY cid"),
            (std::vector<std::string>{"customer_id TEXT", "name TEXT", "score REAL", "visits INTEGER"}));
  EXPECT_EQ(Rows("SELECT quote(customer_id), quote(score), quote(visits) FROM customers ORDER BY rowid"),
            (std::vector<std::string>{"'01234'|1.0|7", "'42'|2.5|NULL"}));
}

TEST_F(SeedsTest, CellsThatDoNotFitTheirDeclaredTypeAreAllReported) {
  SeedFile seed = Seed("stock", "sku,qty:INTEGER,price:REAL\nA,1,2\nB,x,3\nC,99999999999999999999,1e3\nD,4,cheap\n");
  Status st = LoadChangedSeeds(db_.get(), {seed}, nullptr);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message(),
            "seeds/stock.csv:3: column qty is declared INTEGER but 'x' is not a whole number that fits 64 bits\n"
            "seeds/stock.csv:4: column qty is declared INTEGER but '99999999999999999999' is not a whole number "
            "that fits 64 bits\n"
            "seeds/stock.csv:5: column price is declared REAL but 'cheap' is not a number");
  EXPECT_FALSE(db_->TableExists("stock"));
}

TEST_F(SeedsTest, UnknownDeclaredTypeOrDuplicateNameIsAnError) {
  Status st = LoadChangedSeeds(db_.get(), {Seed("a_seed", "id:TXT,x\n1,2\n")}, nullptr);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(Contains(st.message(), "seeds/a_seed.csv:1: column 'id:TXT': unknown type 'TXT'")) << st.message();
  st = LoadChangedSeeds(db_.get(), {Seed("b_seed", "id:TEXT,id\n1,2\n")}, nullptr);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message(), "seeds/b_seed.csv:1: column 'id' appears twice in the header");
}

// Seeds loaded under the old rules (checksum without the rules version) are
// loaded again once, so that an upgrade repairs a zip code stored as 1234.
TEST_F(SeedsTest, SeedLoadedUnderOlderRulesIsLoadedAgain) {
  const std::string csv = "zip\n01234\n";
  SeedFile seed = Seed("zips", csv);
  ASSERT_TRUE(db_->Exec("CREATE TABLE zips(zip INTEGER); INSERT INTO zips VALUES (1234);"
                        "INSERT INTO _sluice_seeds VALUES ('zips', '" + Checksum(csv) + "', 1, '2026-01-01T00:00:00.000Z')")
                  .ok());
  EXPECT_EQ(Load({seed}), std::vector<std::string>{"zips"});
  EXPECT_EQ(One("SELECT quote(zip) FROM zips"), "'01234'");
  EXPECT_EQ(Load({seed}), std::vector<std::string>{});
}

TEST_F(SeedsTest, TwoSeedsWhoseNamesDifferOnlyInCaseAreRefused) {
  SeedFile lower = Seed("regions", "code\nn\n");
  SeedFile upper = Seed("Regions", "code\ns\n");
  Status st = LoadChangedSeeds(db_.get(), {upper, lower}, nullptr);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message(),
            "seeds/regions.csv: loads into the same table as seeds/Regions.csv (SQLite table names ignore case), so "
            "one would overwrite the other; rename or remove one");
  EXPECT_FALSE(db_->TableExists("regions"));
}

// A renamed file (customers.csv -> Customers.csv) is the same table.
TEST_F(SeedsTest, SeedRenamedOnlyInCaseKeepsItsTable) {
  Load({Seed("customers", "id\n1\n")});
  SeedFile renamed = Seed("Customers", "id\n1\n2\n");
  EXPECT_EQ(Load({renamed}), std::vector<std::string>{"Customers"});
  EXPECT_EQ(One("SELECT count(*) FROM customers"), "2");
  EXPECT_EQ(Rows("SELECT name FROM _sluice_seeds"), std::vector<std::string>{"Customers"});
}

TEST_F(SeedsTest, TableNotLoadedFromASeedIsNeverDropped) {
  ASSERT_TRUE(db_->Exec("CREATE TABLE orders_curated(order_id TEXT PRIMARY KEY, amount REAL);"
                        "INSERT INTO orders_curated VALUES ('o1', 10), ('o2', 20);")
                  .ok());
  SeedFile seed = Seed("orders_curated", "order_id,amount\nx,1\n");
  Status st = LoadChangedSeeds(db_.get(), {seed}, nullptr);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.message(),
            "seeds/orders_curated.csv: the database already has a table named orders_curated that sluice did not "
            "load from a seed (schema.sql, a step or a person created it); sluice will not drop it. Rename the seed "
            "file or that table");
  EXPECT_EQ(One("SELECT count(*) FROM orders_curated"), "2");
  EXPECT_EQ(One("SELECT count(*) FROM _sluice_seeds"), "0");
  // Nor a view, nor a table whose name differs only in case.
  ASSERT_TRUE(db_->Exec("CREATE VIEW big_orders AS SELECT * FROM orders_curated WHERE amount > 15").ok());
  st = LoadChangedSeeds(db_.get(), {Seed("Big_Orders", "x\n1\n")}, nullptr);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(Contains(st.message(), "already has a view named big_orders")) << st.message();
}

// reset --truncate empties a seed's table; forgetting the checksum makes the
// next batch load it again instead of leaving it empty for good.
TEST_F(SeedsTest, ForgottenChecksumReloadsATruncatedSeed) {
  SeedFile seed = Seed("customers", "id\n1\n2\n");
  Load({seed});
  ASSERT_TRUE(db_->Exec("DELETE FROM customers").ok());
  EXPECT_EQ(Load({seed}), std::vector<std::string>{});  // unchanged file: not reloaded by itself
  Result<bool> forgotten = ForgetSeedChecksum(db_.get(), "CUSTOMERS");
  ASSERT_TRUE(forgotten.ok()) << forgotten.status().message();
  EXPECT_TRUE(*forgotten);
  EXPECT_EQ(Load({seed}), std::vector<std::string>{"customers"});
  EXPECT_EQ(One("SELECT count(*) FROM customers"), "2");

  ASSERT_TRUE(db_->Exec("CREATE TABLE facts(x INTEGER)").ok());
  forgotten = ForgetSeedChecksum(db_.get(), "facts");
  ASSERT_TRUE(forgotten.ok()) << forgotten.status().message();
  EXPECT_FALSE(*forgotten);
}

TEST(ParseCsvAllErrors, EveryRaggedRowIsReported) {
  Result<CsvTable> table = ParseCsv("a,b\n1\n2,3\n4,5,6\n", "seeds/t.csv");
  ASSERT_FALSE(table.ok());
  EXPECT_EQ(table.status().message(),
            "seeds/t.csv:2: row has 1 fields but the header has 2\n"
            "seeds/t.csv:4: row has 3 fields but the header has 2");
}

TEST(ParseCsvAllErrors, ManyRaggedRowsAreSummarised) {
  std::string csv = "a,b\n";
  for (int i = 0; i < 25; ++i) csv += "1\n";
  Result<CsvTable> table = ParseCsv(csv, "seeds/t.csv");
  ASSERT_FALSE(table.ok());
  std::string message = table.status().message();
  EXPECT_EQ(std::count(message.begin(), message.end(), '\n'), 20) << message;
  EXPECT_TRUE(Contains(message, "seeds/t.csv:21: row has 1 fields")) << message;
  EXPECT_TRUE(Contains(message, "seeds/t.csv: 5 more rows with the wrong number of fields")) << message;
}

TEST(ParseCsvAllErrors, RecordsQuotedCellsAndLines) {
  Result<CsvTable> table = ParseCsv("\na,b\n\"1\",2\n\n3,\"x\ny\"\n", "seeds/t.csv");
  ASSERT_TRUE(table.ok()) << table.status().message();
  EXPECT_EQ(table->header_line, 2);
  EXPECT_EQ(table->lines, (std::vector<int>{3, 5}));
  EXPECT_EQ(table->quoted, (std::vector<std::vector<bool>>{{true, false}, {false, true}}));
}

// ---------------------------------------------------------------------------
// Through the binary: validate and run

PipelineFiles SeededPipeline() {
  PipelineFiles files;
  files.conf = testing::BasicConf("127.0.0.1:1", "events", "id = TEXT\nzip = TEXT");
  files.schema = "CREATE TABLE IF NOT EXISTS curated(id TEXT PRIMARY KEY, zip TEXT, city TEXT);\n";
  files.steps["10_enrich.sql"] =
      "INSERT INTO curated(id, zip, city)\n"
      "SELECT b.id, b.zip, z.city FROM batch AS b LEFT JOIN zips AS z ON z.zip = b.zip;\n";
  files.seeds["zips.csv"] = "zip,city\n01234,Ayr\n75001,Paris\n";
  return files;
}

// Issue 11 item 7: one validate run shows every seed problem.
TEST(SeedsValidate, ReportsEverySeedProblemAtOnce) {
  TempDir dir;
  PipelineFiles files = SeededPipeline();
  files.seeds["bad-name.csv"] = "x\n1\n";
  files.seeds["ragged.csv"] = "a,b\n1\n2,3\n4,5,6\n";
  files.seeds["Zips.csv"] = "zip,city\n1,x\n";
  files.seeds["upper.CSV"] = "x\n1\n";
  WritePipeline(dir.path(), files);
  std::string output;
  int code = RunSluice({"validate", dir.path()}, &output);
  EXPECT_EQ(code, 1) << output;
  EXPECT_TRUE(Contains(output, "seeds/bad-name.csv: a seed's file name becomes its table name")) << output;
  EXPECT_TRUE(Contains(output, "seeds/ragged.csv:2: row has 1 fields")) << output;
  EXPECT_TRUE(Contains(output, "seeds/ragged.csv:4: row has 3 fields")) << output;
  EXPECT_TRUE(Contains(output, "seeds/zips.csv: loads into the same table as seeds/Zips.csv")) << output;
  EXPECT_TRUE(Contains(output, "seeds/upper.CSV: not loaded")) << output;
  EXPECT_TRUE(Contains(output, "5 problems")) << output;
}

TEST(SeedsValidate, SeedNamedLikeASchemaTableIsReported) {
  TempDir dir;
  PipelineFiles files = SeededPipeline();
  files.seeds["curated.csv"] = "id,zip,city\nx,1,y\n";
  WritePipeline(dir.path(), files);
  std::string output;
  int code = RunSluice({"validate", dir.path()}, &output);
  EXPECT_EQ(code, 1) << output;
  EXPECT_TRUE(Contains(output, "seeds/curated.csv: the database already has a table named curated")) << output;
}

// The end-to-end case of issue 13: seeds/orders_curated.csv next to
// schema.sql's orders_curated made the next run drop the table.
TEST(SeedsRun, SeedAddedLaterNeverDropsTheCuratedTable) {
  TempDir dir;
  PipelineFiles files = SeededPipeline();
  WritePipeline(dir.path(), files);
  WriteFile(dir / "in.jsonl", "{\"id\":\"a\",\"zip\":\"01234\"}\n{\"id\":\"b\",\"zip\":\"75001\"}\n");
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "--from-file", dir / "in.jsonl", "-q"}, &output), 0) << output;
  // Leading zeros survive the seed: the join finds 01234.
  EXPECT_EQ(Query(dir / "pipeline.db", "SELECT id, city FROM curated ORDER BY id"),
            (std::vector<std::string>{"a|Ayr", "b|Paris"}));

  WriteFile(dir / "seeds/curated.csv", "id,zip,city\nx,1,y\n");
  WriteFile(dir / "in2.jsonl", "{\"id\":\"c\",\"zip\":\"75001\"}\n");
  int code = RunSluice({"run", dir.path(), "--from-file", dir / "in2.jsonl", "-q"}, &output);
  EXPECT_NE(code, 0) << output;
  EXPECT_TRUE(Contains(output, "sluice will not drop it")) << output;
  EXPECT_EQ(Query(dir / "pipeline.db", "SELECT id, city FROM curated ORDER BY id"),
            (std::vector<std::string>{"a|Ayr", "b|Paris"}));
}

}  // namespace
}  // namespace sluice
