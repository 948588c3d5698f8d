// Hostile and bad input through the real `sluice` binary and the embedded
// broker: every kind of broken message lands in _sluice_quarantine with a
// specific reason or in `batch` where it is valid (never a crash, never a
// silent drop: staged + quarantined == fetched), and identifiers that reach
// SQL (seed file names, seed header cells, topic names, column names) are
// quoted or rejected.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "test_support.h"

namespace sluice {
namespace {

using testing::Contains;
using testing::PipelineFiles;
using testing::RunSluice;
using testing::Tail;
using testing::TempDir;
using Rows = std::vector<std::string>;

std::string Quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

constexpr const char* kKafkaLargeMessages =
    "[kafka]\nfetch.wait.max.ms = 100\n"
    // Room for a 10 MiB message on the consumer side.
    "max.partition.fetch.bytes = 33554432\nfetch.max.bytes = 67108864\nreceive.message.max.bytes = 134217728\n";

std::string Conf(const std::string& brokers, const std::string& topic, const std::string& columns,
                 const std::string& extra = kKafkaLargeMessages) {
  return "[source]\nbrokers = " + brokers + "\ntopic = " + topic +
         "\ngroup = hostile\nstart = earliest\nconnect_timeout = 10s\n[batch]\nmax_messages = 1000\nmax_wait = 1s\n"
         "[columns]\n" +
         columns + "\n[target]\ndatabase = pipeline.db\n" + extra;
}

const char* kColumns = "id = TEXT\nn_int = INTEGER\nn_real = REAL\nflag = BOOLEAN\nnested = JSON";

// Keeps what each staged row looked like; no key, so doubles would show.
PipelineFiles HostilePipeline(const std::string& brokers, const std::string& topic) {
  PipelineFiles files;
  files.conf = Conf(brokers, topic, kColumns);
  files.schema =
      "CREATE TABLE IF NOT EXISTS seen (off INTEGER, khex TEXT, id TEXT, idhex TEXT, id_type TEXT, n_int INTEGER,\n"
      "  n_real REAL, flag INTEGER, nested_len INTEGER, value_len INTEGER, value_is_null INTEGER, id_extracted TEXT);\n";
  files.steps["10_seen.sql"] =
      "INSERT INTO seen SELECT _kafka_offset, hex(_kafka_key), id, hex(id), typeof(id), n_int, n_real, flag,\n"
      "  length(nested), length(CAST(_kafka_value AS BLOB)), _kafka_value IS NULL, NULL FROM batch;\n";
  return files;
}

std::string Nest(const std::string& open, const std::string& inner, const std::string& close, int depth) {
  std::string text;
  text.reserve((open.size() + close.size()) * depth + inner.size());
  for (int i = 0; i < depth; ++i) text += open;
  text += inner;
  for (int i = 0; i < depth; ++i) text += close;
  return text;
}

// One hostile message and what must become of it.
struct Case {
  std::string name;
  std::optional<std::string> value;
  std::optional<std::string> key;
  // Quarantined with an error containing this, or staged when empty.
  std::string reason;
  // For staged messages: SQL over `seen` (WHERE off = <offset>) and its result.
  std::string check_sql = {};
  std::string check_result = {};
};

std::vector<Case> HostileCases() {
  using namespace std::string_literals;
  std::vector<Case> cases = {
      {"invalid JSON", R"({"id": nope})", "k", "invalid JSON at byte 8: Invalid value."},
      {"truncated JSON", R"({"id":"t","n_int":1)", "k",
       "invalid JSON at byte 19: Missing a comma or '}' after an object member."},
      {"JSON array", R"([{"id":"a"}])", "k", "the value is an array, not a JSON object"},
      {"JSON number", "42", "k", "the value is a number, not a JSON object"},
      {"JSON string", R"("just text")", "k", "the value is a string, not a JSON object"},
      {"JSON null", "null", "k", "the value is null, not a JSON object"},
      {"JSON true", "true", "k", "the value is a boolean, not a JSON object"},
      {"empty value", ""s, "k", "empty value: not a JSON document"},
      {"whitespace only", "  \n\t ", "k", "The document is empty."},
      {"invalid UTF-8 in a string", "{\"id\":\"bad\xC3\x28\"}", "k", "Invalid encoding in string."},
      {"lone 0xFF byte", "{\"id\":\"\xFF\"}", "k", "Invalid encoding in string."},
      {"overlong UTF-8", "{\"id\":\"\xC0\xAF\"}", "k", "Invalid encoding in string."},
      {"lone surrogate escape", R"({"id":"\ud800"})", "k", "The surrogate pair in string is invalid."},
      {"raw NUL inside a string", "{\"id\":\"a\0b\"}"s, "k", "the value contains a NUL byte at offset 8"},
      {"NUL after the document", "{\"id\":\"x\"}\0<anything>"s, "k", "the value contains a NUL byte at offset 10"},
      {"NUL as the whole value", "\0"s, "k", "the value contains a NUL byte at offset 0"},
      {"REAL 1e400", R"({"id":"r","n_real":1e400})", "k", "Number too big to be stored in double."},
      {"REAL \"1e400\" as text", R"({"id":"r","n_real":"1e400"})", "k",
       R"(column n_real: "1e400" is not a number (declared REAL))"},
      {"INTEGER 2^64", R"({"id":"i","n_int":18446744073709551616})", "k", "column n_int: "},
      {"INTEGER 2^64 says out of range", R"({"id":"i","n_int":18446744073709551616})", "k", "out of range"},
      {"INTEGER 2^63", R"({"id":"i","n_int":9223372036854775808})", "k",
       "column n_int: 9223372036854775808 is out of range for a 64-bit integer (declared INTEGER)"},
      {"INTEGER 2^64-1", R"({"id":"i","n_int":18446744073709551615})", "k", "out of range for a 64-bit integer"},
      {"INTEGER 1e20 as text says out of range", R"({"id":"i","n_int":"100000000000000000000"})", "k",
       "out of range"},
      {"INTEGER 1.5", R"({"id":"i","n_int":1.5})", "k", "column n_int: 1.5 is not a whole number (declared INTEGER)"},
      {"BOOLEAN maybe", R"({"id":"b","flag":"maybe"})", "k", "column flag: \"maybe\" is not a boolean"},
      {"deep array as the whole value", Nest("[", "", "]", 10000), "k", "nested more than 1000 levels deep"},
      {"unclosed deep nesting", "{\"nested\":" + std::string(10000, '['), "k", "nested more than 1000 levels deep"},
      // Valid ones: staged.
      {"INTEGER -2^63", R"({"id":"min","n_int":-9223372036854775808})", "k", "", "n_int",
       "-9223372036854775808"},
      {"duplicate keys", R"({"id":"first","n_int":1,"id":"second","n_int":2})", "k", "", "id || '|' || n_int",
       "first|1"},
      {"escaped NUL", R"({"id":"a\u0000b"})", "k", "", "idhex || '|' || id_type", "610062|text"},
      {"valid UTF-8 (4-byte)", "{\"id\":\"\xF0\x9F\x98\x80\"}", "k", "", "idhex", "F09F9880"},
      {"tombstone", std::nullopt, "gone", "",
       "ifnull(id, 'NULL') || ifnull(n_int, 'NULL') || value_is_null", "NULLNULL1"},
      {"binary key", R"({"id":"bk"})", "\xFF\x00\xFE"s, "", "khex || '|' || id", "FF00FE|bk"},
      {"no key", R"({"id":"nokey"})", std::nullopt, "", "ifnull(khex, 'NULL') || '|' || id", "|nokey"},
      // Deeper than SQLite's JSON functions accept: quarantined, or every step
      // reading _kafka_value would fail on it.
      {"depth 10000 array in a field", "{\"id\":\"deep array\",\"nested\":" + Nest("[", "", "]", 10000) + "}", "k",
       "nested more than 1000 levels deep"},
      {"depth 10000 object in a field",
       "{\"id\":\"deep object\",\"nested\":" + Nest("{\"a\":", "1", "}", 10000) + "}", "k",
       "nested more than 1000 levels deep"},
      {"depth 900 array in a field", "{\"id\":\"deep array\",\"nested\":" + Nest("[", "", "]", 900) + "}", "k",
       "", "id || '|' || nested_len", "deep array|1800"},
  };
  return cases;
}

TEST(HostileInput, EachBadMessageIsQuarantinedWithItsReasonOrStagedNeverDropped) {
  auto broker = testing::StartBroker("hostile", 1);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  const std::string db = dir / "pipeline.db";
  testing::WritePipeline(dir.path(), HostilePipeline(broker->bootstrap(), "hostile"));
  std::vector<Case> cases = HostileCases();
  std::vector<OutgoingMessage> messages;
  for (const auto& c : cases) {
    OutgoingMessage message;
    message.key = c.key;
    message.value = c.value;
    message.partition = 0;
    messages.push_back(message);
  }
  Status st = ProduceMessages(broker->bootstrap(), "hostile", messages);
  ASSERT_TRUE(st.ok()) << st.message();

  std::string output;
  int code = RunSluice({"run", dir.path(), "--brokers", broker->bootstrap()}, &output);
  ASSERT_EQ(code, 0) << Tail(output);

  const int64_t n = static_cast<int64_t>(cases.size());
  for (int64_t offset = 0; offset < n; ++offset) {
    const Case& c = cases[offset];
    std::string where = " WHERE off = " + std::to_string(offset);
    Rows quarantined = testing::Query(db, "SELECT error FROM _sluice_quarantine WHERE \"offset\" = " + std::to_string(offset));
    std::string staged = testing::QueryOne(db, "SELECT count(*) FROM seen" + where);
    if (c.reason.empty()) {
      EXPECT_EQ(staged, "1") << c.name << ": expected staged once; quarantined as: "
                             << ::testing::PrintToString(quarantined);
      EXPECT_TRUE(quarantined.empty()) << c.name;
      if (!c.check_sql.empty() && staged == "1") {
        EXPECT_EQ(testing::QueryOne(db, "SELECT " + c.check_sql + " FROM seen" + where), c.check_result) << c.name;
      }
    } else {
      EXPECT_EQ(staged, "0") << c.name << ": expected quarantine (" << c.reason << ") but it was staged";
      EXPECT_EQ(quarantined.size(), 1u) << c.name << ": expected one quarantine row";
      if (quarantined.size() != 1) continue;
      EXPECT_TRUE(Contains(quarantined[0], c.reason))
          << c.name << ": quarantine reason is\n  " << quarantined[0] << "\nexpected it to contain\n  " << c.reason;
    }
  }
  // The quarantine keeps the message as it came: key, value (as a BLOB when
  // it is not clean UTF-8) and where it came from.
  EXPECT_EQ(testing::QueryOne(db, "SELECT hex(value) FROM _sluice_quarantine WHERE \"offset\" = 10"), "7B226964223A22FF227D");
  EXPECT_EQ(testing::QueryOne(db, "SELECT hex(value) FROM _sluice_quarantine WHERE \"offset\" = 13"), "7B226964223A22610062227D");
  EXPECT_EQ(testing::QueryOne(db, "SELECT count(*) FROM _sluice_quarantine WHERE topic <> 'hostile' OR \"partition\" <> 0 OR "
                    "key IS NOT 'k' OR run_id IS NULL"),
            "0");
  // staged + quarantined == fetched, per run and in total, and every offset once.
  EXPECT_EQ(testing::QueryOne(db, "SELECT sum(messages) || '|' || sum(staged + quarantined) FROM _sluice_runs WHERE status = 'ok'"),
            std::to_string(n) + "|" + std::to_string(n));
  EXPECT_EQ(testing::QueryOne(db, "SELECT count(*) FROM _sluice_runs WHERE status <> 'ok' OR staged + quarantined <> messages"), "0");
  EXPECT_EQ(testing::QueryOne(db, "SELECT (SELECT count(*) FROM seen) || '|' || (SELECT count(*) FROM _sluice_quarantine)"),
            testing::QueryOne(db, "SELECT sum(staged) || '|' || sum(quarantined) FROM _sluice_runs WHERE status = 'ok'"));
  EXPECT_EQ(testing::QueryOne(db, "SELECT count(DISTINCT off) || '|' || min(off) || '|' || max(off) FROM "
                    "(SELECT off FROM seen UNION ALL SELECT \"offset\" FROM _sluice_quarantine)"),
            "" + std::to_string(n) + "|0|" + std::to_string(n - 1));
  EXPECT_EQ(testing::QueryOne(db, "SELECT next_offset FROM _sluice_offsets"), std::to_string(n));
  EXPECT_EQ(testing::QueryOne(db, "PRAGMA integrity_check"), "ok");
  for (const auto& row : testing::Query(db, "SELECT \"offset\", error FROM _sluice_quarantine ORDER BY 1")) {
    size_t bar = row.find('|');
    std::cout << "[ hostile ] " << cases[std::stoll(row.substr(0, bar))].name << " -> " << row.substr(bar + 1) << "\n";
  }
  std::cout << "[ hostile ] " << n << " messages: " << testing::QueryOne(db, "SELECT count(*) FROM seen") << " staged, "
            << testing::QueryOne(db, "SELECT count(*) FROM _sluice_quarantine") << " quarantined" << std::endl;
}

// README: undeclared fields are reachable with json_extract(_kafka_value, ...).
// A valid but deeply nested message must not take the pipeline down when a
// step does that.
TEST(HostileInput, DeeplyNestedMessageDoesNotFailStepsThatUseJsonExtract) {
  auto broker = testing::StartBroker("deep", 1);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  const std::string db = dir / "pipeline.db";
  PipelineFiles files = HostilePipeline(broker->bootstrap(), "deep");
  files.steps["10_seen.sql"] =
      "INSERT INTO seen(off, id, id_extracted) SELECT _kafka_offset, id, json_extract(_kafka_value, '$.id') FROM batch;\n";
  testing::WritePipeline(dir.path(), files);
  testing::ProduceValues(broker->bootstrap(), "deep",
                         {R"({"id":"before"})", "{\"id\":\"deep\",\"x\":" + Nest("[", "", "]", 10000) + "}",
                          "{\"id\":\"deep object\",\"x\":" + Nest("{\"a\":", "1", "}", 10000) + "}",
                          R"({"id":"after"})"});
  std::string output;
  int code = RunSluice({"run", dir.path(), "--brokers", broker->bootstrap()}, &output);
  EXPECT_EQ(code, 0) << "a valid message nested 10000 deep fails every batch it is in, so the pipeline stalls:\n"
                     << Tail(output);
  // Both normal messages got through; the deep ones were staged or
  // quarantined, and staged + quarantined == fetched.
  EXPECT_EQ(testing::Query(db, "SELECT id FROM seen WHERE id IN ('before', 'after') ORDER BY off"),
            (Rows{"before", "after"}));
  EXPECT_EQ(testing::QueryOne(db, "SELECT (SELECT count(*) FROM seen) + (SELECT count(*) FROM _sluice_quarantine)"), "4");
  EXPECT_EQ(testing::QueryOne(db, "SELECT count(*) FROM seen WHERE id_extracted IS NOT id"), "0");
}

// The embedded broker keeps at most 5 MiB per partition and evicts a larger
// message as soon as it is appended (its log ends up empty), so a large
// message goes through Kafka at 4 MiB, with the producer's and consumer's
// size limits raised, and at 10 MiB through --from-file (FileSource), which
// exercises the same staging path.
TEST(HostileInput, FourMebibyteMessageThroughKafkaIsStaged) {
  auto broker = testing::StartBroker("big", 1);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  const std::string db = dir / "pipeline.db";
  testing::WritePipeline(dir.path(), HostilePipeline(broker->bootstrap(), "big"));
  std::string big = "{\"id\":\"big\",\"n_int\":7,\"pad\":\"" + std::string(4 * 1024 * 1024, 'x') + "\"}";
  std::istringstream lines(R"({"id":"small1"})" "\n" + big + "\n" + R"({"id":"small2"})" "\n");
  ProducerOptions options;
  options.brokers = broker->bootstrap();
  options.topic = "big";
  options.partition = 0;
  options.properties = {{"message.max.bytes", "33554432"}};  // the producer's default is 1 MB
  ProduceReport report;
  Status st = ProduceLines(options, lines, &report);
  ASSERT_TRUE(st.ok()) << st.message();
  ASSERT_EQ(report.delivered, 3);

  std::string output;
  int code = RunSluice({"run", dir.path(), "--brokers", broker->bootstrap()}, &output);
  ASSERT_EQ(code, 0) << Tail(output);
  EXPECT_EQ(testing::Query(db, "SELECT off, id, n_int, value_len FROM seen ORDER BY off"),
            (Rows{"0|small1|NULL|15", "1|big|7|" + std::to_string(big.size()), "2|small2|NULL|15"}));
  EXPECT_EQ(testing::QueryOne(db, "SELECT count(*) FROM _sluice_quarantine"), "0");
  EXPECT_EQ(testing::QueryOne(db, "SELECT next_offset FROM _sluice_offsets"), "3");
}

TEST(HostileInput, TenMebibyteMessageIsStagedThroughFileSource) {
  TempDir dir;
  const std::string db = dir / "pipeline.db";
  testing::WritePipeline(dir.path(), HostilePipeline("127.0.0.1:1", "unused"));
  std::string big = "{\"id\":\"big\",\"n_int\":7,\"pad\":\"" + std::string(10 * 1024 * 1024, 'x') + "\"}";
  testing::WriteFile(dir / "big.jsonl", R"({"id":"small1"})" "\n" + big + "\n" + R"({"id":"small2"})" "\n");
  std::string output;
  int code = RunSluice({"run", dir.path(), "--from-file", dir / "big.jsonl"}, &output);
  ASSERT_EQ(code, 0) << Tail(output);
  // FileSource: offsets are line numbers.
  EXPECT_EQ(testing::Query(db, "SELECT off, id, n_int, value_len FROM seen ORDER BY off"),
            (Rows{"1|small1|NULL|15", "2|big|7|" + std::to_string(big.size()), "3|small2|NULL|15"}));
  EXPECT_EQ(testing::QueryOne(db, "SELECT count(*) FROM _sluice_quarantine"), "0");
  EXPECT_EQ(testing::QueryOne(db, "SELECT sum(messages) || '|' || sum(staged) FROM _sluice_runs WHERE status = 'ok'"), "3|3");
}

// ---------------------------------------------------------------------------
// Identifiers that reach SQL.

PipelineFiles OrdersPipeline(const std::string& brokers, const std::string& topic = "orders") {
  PipelineFiles files;
  files.conf = Conf(brokers, topic, "id = TEXT", "[kafka]\nfetch.wait.max.ms = 100\n");
  files.schema = "CREATE TABLE IF NOT EXISTS orders_curated (id TEXT, topic TEXT);\n";
  files.steps["10_orders.sql"] = "INSERT INTO orders_curated SELECT id, _kafka_topic FROM batch;\n";
  return files;
}

TEST(HostileInput, SeedFileNameWithSqlIsRejectedBeforeAnythingIsConsumed) {
  auto broker = testing::StartBroker("orders", 1);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  const std::string db = dir / "pipeline.db";
  testing::WritePipeline(dir.path(), OrdersPipeline(broker->bootstrap()));
  testing::ProduceValues(broker->bootstrap(), "orders", {R"({"id":"o1"})", R"({"id":"o2"})"});
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "--brokers", broker->bootstrap()}, &output), 0) << output;
  ASSERT_EQ(testing::QueryOne(db, "SELECT count(*) FROM orders_curated"), "2");

  const std::string seed = "x; DROP TABLE orders_curated.csv";
  testing::WriteFile(dir / ("seeds/" + seed), "a,b\n1,2\n");
  testing::ProduceValues(broker->bootstrap(), "orders", {R"({"id":"o3"})"});
  int code = RunSluice({"run", dir.path(), "--brokers", broker->bootstrap()}, &output);
  EXPECT_EQ(code, 1) << output;
  EXPECT_TRUE(Contains(output, "seeds/" + seed + ": a seed's file name becomes its table name")) << output;
  EXPECT_TRUE(Contains(output, "rename the file")) << output;
  EXPECT_TRUE(Contains(output, "nothing was consumed")) << output;
  // Nothing ran: the table is intact and the new message was not consumed.
  EXPECT_EQ(testing::QueryOne(db, "SELECT count(*) FROM orders_curated"), "2");
  EXPECT_EQ(testing::QueryOne(db, "SELECT next_offset FROM _sluice_offsets"), "2");
  EXPECT_EQ(testing::QueryOne(db, "SELECT count(*) FROM sqlite_master WHERE name LIKE 'x;%'"), "0");
  EXPECT_EQ(testing::QueryOne(db, "SELECT count(*) FROM _sluice_seeds"), "0");
  // `sluice validate` says the same without touching the database.
  code = RunSluice({"validate", dir.path()}, &output);
  EXPECT_NE(code, 0) << output;
  EXPECT_TRUE(Contains(output, "seeds/" + seed)) << output;
}

TEST(HostileInput, SeedHeaderCellsWithQuotesBecomeLiteralColumns) {
  auto broker = testing::StartBroker("orders", 1);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  const std::string db = dir / "pipeline.db";
  PipelineFiles files = OrdersPipeline(broker->bootstrap());
  const std::string evil = "x\"); DROP TABLE orders_curated; --";
  // Unquoted a"b, a CSV-quoted a""b (also a"b once parsed... so use a
  // different name), and a header cell that tries to close the DDL.
  files.seeds["dims.csv"] = "id,a\"b,\"c\"\"d\"," + evil + ",'e'\n1,one,two,three,four\n";
  files.steps["20_dims.sql"] =
      "INSERT INTO orders_curated SELECT d.\"a\"\"b\" || '/' || d.\"c\"\"d\" || '/' || d.\"x\"\"); DROP TABLE "
      "orders_curated; --\" || '/' || d.\"'e'\", 'seed' FROM dims d JOIN batch b ON b.id = 'o' || d.id;\n";
  testing::WritePipeline(dir.path(), files);
  testing::ProduceValues(broker->bootstrap(), "orders", {R"({"id":"o1"})"});
  std::string output;
  int code = RunSluice({"run", dir.path(), "--brokers", broker->bootstrap()}, &output);
  ASSERT_EQ(code, 0) << output;
  EXPECT_EQ(testing::Query(db, "SELECT name FROM pragma_table_info('dims') ORDER BY cid"),
            (Rows{"id", "a\"b", "c\"d", evil, "'e'"}));
  EXPECT_EQ(testing::QueryOne(db, "SELECT \"a\"\"b\" FROM dims"), "one");
  EXPECT_EQ(testing::Query(db, "SELECT id, topic FROM orders_curated ORDER BY topic"),
            (Rows{"o1|orders", "one/two/three/four|seed"}));
  EXPECT_EQ(testing::QueryOne(db, "SELECT count(*) FROM sqlite_master WHERE name = 'orders_curated'"), "1");
}

TEST(HostileInput, ColumnNameWithQuoteIsRejected) {
  TempDir dir;
  testing::WriteFile(dir / "pipeline.conf",
                     "[source]\nbrokers = 127.0.0.1:1\ntopic = t\n[columns]\na\"b = TEXT\n[target]\ndatabase = p.db\n");
  std::string output;
  int code = RunSluice({"run", dir.path(), "--once"}, &output);
  EXPECT_EQ(code, 1) << output;
  EXPECT_TRUE(Contains(output, "column names must be letters, digits and _")) << output;
  EXPECT_NE(access((dir / "p.db").c_str(), F_OK), 0) << "no database should be created";
}

TEST(HostileInput, TopicNameWithQuotesFlowsIntoKafkaTopicAndOffsets) {
  const std::string topic = "it's\"odd";
  auto broker = testing::StartBroker(topic, 2);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  const std::string db = dir / "pipeline.db";
  testing::WritePipeline(dir.path(), OrdersPipeline(broker->bootstrap(), topic));
  testing::ProduceValues(broker->bootstrap(), topic, {R"({"id":"q1"})", R"({"id":"q2"})"}, 0);
  testing::ProduceValues(broker->bootstrap(), topic, {R"({"id":"q3"})"}, 1);
  std::string output;
  int code = RunSluice({"run", dir.path(), "--brokers", broker->bootstrap()}, &output);
  ASSERT_EQ(code, 0) << output;
  EXPECT_EQ(testing::Query(db, "SELECT id, topic FROM orders_curated ORDER BY id"),
            (Rows{"q1|" + topic, "q2|" + topic, "q3|" + topic}));
  EXPECT_EQ(testing::Query(db, "SELECT topic, \"partition\", next_offset FROM _sluice_offsets ORDER BY 2"),
            (Rows{topic + "|0|2", topic + "|1|1"}));
  EXPECT_EQ(testing::QueryOne(db, "SELECT group_concat(DISTINCT json_extract(j.value, '$.topic')) FROM _sluice_runs r, "
                    "json_each(r.offsets) j"),
            topic);
  EXPECT_TRUE(Contains(output, "from " + topic + "[0,1]")) << output;
  // A rerun resumes from the stored offsets of the quoted topic name.
  testing::ProduceValues(broker->bootstrap(), topic, {R"({"id":"q4"})"}, 1);
  code = RunSluice({"run", dir.path(), "--brokers", broker->bootstrap()}, &output);
  ASSERT_EQ(code, 0) << output;
  EXPECT_EQ(testing::QueryOne(db, "SELECT count(*) || '|' || count(DISTINCT id) FROM orders_curated"), "4|4");
  EXPECT_EQ(testing::QueryOne(db, "SELECT count(*) FROM _sluice_offsets WHERE topic = " + Quote(topic)), "2");
}

}  // namespace
}  // namespace sluice
