// Staging: typed casts, quarantine reasons, metadata columns, schema drift.
#include <gtest/gtest.h>

#include "connectors/json_decoder.h"
#include "test_support.h"

namespace sluice {
namespace {

using testing::BasicConf;
using testing::PipelineFiles;
using testing::Query;
using testing::QueryOne;
using testing::TempDir;

std::vector<ColumnSpec> Columns(const std::vector<std::pair<std::string, std::string>>& specs) {
  std::vector<ColumnSpec> columns;
  for (const auto& [name, spec] : specs) {
    Result<ColumnSpec> column = ParseColumnSpec(name, spec);
    EXPECT_TRUE(column.ok()) << column.status().message();
    columns.push_back(*column);
  }
  return columns;
}

// The JSON decoder over one value at a time; the Status carries the reason a
// message would be quarantined with.
class Parser {
 public:
  explicit Parser(std::vector<ColumnSpec> columns) : decoder_(std::move(columns)) {}
  Status Parse(std::optional<std::string> value) {
    message_.value = std::move(value);
    decoder_.Decode(message_, &row_);
    return row_.error ? Status::InvalidInput(*row_.error) : Status::Ok();
  }
  const std::vector<Cell>& cells() const { return row_.cells; }

 private:
  JsonDecoder decoder_;
  Message message_;
  DecodedRow row_;
};

TEST(JsonDecoder, CastsLenientlyToDeclaredTypes) {
  Parser parser(Columns({{"a", "REAL"}, {"b", "INTEGER"}, {"c", "TEXT"}, {"d", "BOOLEAN"}, {"e", "JSON"}}));
  ASSERT_TRUE(parser.Parse(std::string(R"({"a":"42.00","b":"7","c":12.5,"d":"yes","e":{"x":[1,2]}})")).ok());
  const auto& cells = parser.cells();
  EXPECT_EQ(cells[0].kind, Cell::Kind::kReal);
  EXPECT_DOUBLE_EQ(cells[0].real_value, 42.0);
  EXPECT_EQ(cells[1].kind, Cell::Kind::kInt);
  EXPECT_EQ(cells[1].int_value, 7);
  EXPECT_EQ(cells[2].text, "12.5");
  EXPECT_EQ(cells[3].int_value, 1);
  EXPECT_EQ(cells[4].text, R"({"x":[1,2]})");

  ASSERT_TRUE(parser.Parse(std::string(R"({"a":42,"b":3.0})")).ok());
  EXPECT_DOUBLE_EQ(parser.cells()[0].real_value, 42.0);
  EXPECT_EQ(parser.cells()[1].int_value, 3);
  EXPECT_EQ(parser.cells()[2].kind, Cell::Kind::kNull);  // missing field is NULL
}

TEST(JsonDecoder, FollowsJsonPaths) {
  Parser parser(Columns({{"city", "TEXT $.address.city"}, {"first_tag", "TEXT $.tags[0]"}}));
  ASSERT_TRUE(parser.Parse(std::string(R"({"address":{"city":"Lyon"},"tags":["new","vip"]})")).ok());
  EXPECT_EQ(parser.cells()[0].text, "Lyon");
  EXPECT_EQ(parser.cells()[1].text, "new");
  ASSERT_TRUE(parser.Parse(std::string(R"({"address":"flat"})")).ok());
  EXPECT_EQ(parser.cells()[0].kind, Cell::Kind::kNull);
}

TEST(JsonDecoder, RejectsWithActionableReasons) {
  Parser parser(Columns({{"amount", "REAL"}, {"n", "INTEGER"}}));
  Status st = parser.Parse(std::string(R"({"amount":"abc"})"));
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(st.message(), R"(column amount: "abc" is not a number (declared REAL))");
  EXPECT_NE(parser.Parse(std::string(R"({"n":1.5})")).message().find("not a whole number"), std::string::npos);
  EXPECT_NE(parser.Parse(std::string("[1,2]")).message().find("is an array, not a JSON object"), std::string::npos);
  EXPECT_NE(parser.Parse(std::string("{\"a\": ")).message().find("invalid JSON at byte"), std::string::npos);
  EXPECT_NE(parser.Parse(std::string("")).message().find("empty value"), std::string::npos);
  EXPECT_TRUE(parser.Parse(std::nullopt).ok());  // tombstone: all NULL
}

TEST(ColumnSpec, RejectsUnknownTypes) {
  Result<ColumnSpec> column = ParseColumnSpec("x", "DECIMAL");
  ASSERT_FALSE(column.ok());
  EXPECT_NE(column.status().message().find("use TEXT, INTEGER, REAL, BOOLEAN or JSON"), std::string::npos);
  EXPECT_FALSE(ParseColumnSpec("x", "TEXT a.b").ok());
}

TEST(Staging, MalformedMessagesGoToQuarantineWithMetadata) {
  auto broker = testing::StartBroker("events", 1);
  TempDir dir;
  PipelineFiles files;
  files.conf = BasicConf(broker->bootstrap(), "events", "id = TEXT\namount = REAL");
  testing::WritePipeline(dir.path(), files);
  testing::ProduceValues(broker->bootstrap(), "events",
                         {R"({"id":"a","amount":"42.00"})", R"({"id":"b","amount":"abc"})", "not json",
                          R"({"id":"c","amount":1,"extra":"kept"})"});
  Status st = testing::RunPipeline(dir.path(), RunMode::kUntilCaughtUp);
  ASSERT_TRUE(st.ok()) << st.message();
  std::string db = dir / "pipeline.db";
  EXPECT_EQ(Query(db, "select id, amount, _kafka_topic, _kafka_partition, _kafka_offset, _kafka_key from batch order by _kafka_offset"),
            (std::vector<std::string>{"a|42.0|events|0|0|NULL", "c|1.0|events|0|3|NULL"}));
  EXPECT_EQ(QueryOne(db, "select json_extract(_kafka_value, '$.extra') from batch where id = 'c'"), "kept");
  EXPECT_EQ(QueryOne(db, "select typeof(_kafka_timestamp) from batch limit 1"), "integer");
  EXPECT_EQ(Query(db, "select \"offset\", error from _sluice_quarantine order by \"offset\""),
            (std::vector<std::string>{"1|column amount: \"abc\" is not a number (declared REAL)",
                                      "2|invalid JSON at byte 1: Invalid value."}));
  EXPECT_EQ(QueryOne(db, "select messages || ' ' || staged || ' ' || quarantined from _sluice_runs where status = 'ok'"),
            "4 2 2");
}

}  // namespace
}  // namespace sluice
