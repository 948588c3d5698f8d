// Security: secrets from the environment never reach logs, help, errors or
// tables; the database file is private; step SQL cannot attach other files
// or load extensions.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <cstdlib>
#include <memory>

#include "connectors/kafka_source.h"
#include "sql/sqlite/catalog.h"
#include "sql/sqlite/database.h"
#include "test_support.h"

namespace sluice {
namespace {

using testing::Contains;
using testing::RunSluice;
using testing::TempDir;

constexpr const char* kSecret = "hunter2-s3cret-7Qz";

// Every cell of every table in the database at `path`, as text.
std::string DumpAllTables(const std::string& path) {
  std::string dump;
  for (const auto& table : testing::Query(path, "select name from sqlite_schema where type = 'table'")) {
    for (const auto& row : testing::Query(path, "select * from \"" + table + "\"")) dump += row + "\n";
  }
  return dump;
}

TEST(Secrets, NeverReachLogsHelpErrorsOrTables) {
  ASSERT_EQ(setenv("SLUICE_TEST_SECRET", kSecret, 1), 0);
  TempDir dir;
  auto broker = testing::StartAppendPipeline(dir.path(), 3);
  ASSERT_NE(broker, nullptr);
  std::string conf = testing::ReadFile(dir / "pipeline.conf");
  conf += "\n[kafka]\nsasl.password = ${SLUICE_TEST_SECRET}\nssl.key.password = ${SLUICE_TEST_SECRET}\n";
  testing::WriteFile(dir / "pipeline.conf", conf);
  // A failing step, so that an error is logged and recorded too.
  testing::WriteFile(dir / "steps/90_fail.sql", "drop table if exists temp.t_nn;\n"
                                                 "create temp table t_nn (x not null);\n"
                                                 "insert into t_nn select null from batch;\n");

  std::string all_output, output;
  RunSluice({"run", dir.path(), "--brokers", broker->bootstrap(), "-v"}, &output);
  all_output += output;
  RunSluice({"run", "--help"}, &output);
  all_output += output;
  RunSluice({"validate", dir.path()}, &output);
  all_output += output;
  RunSluice({"status", dir.path(), "--brokers", broker->bootstrap(), "--json"}, &output);
  all_output += output;
  EXPECT_TRUE(Contains(all_output, "steps/90_fail.sql:3: NOT NULL constraint failed")) << all_output;
  EXPECT_FALSE(Contains(all_output, kSecret)) << all_output;
  std::string tables = DumpAllTables(dir / "pipeline.db");
  EXPECT_TRUE(Contains(tables, "NOT NULL constraint failed")) << tables;  // the failed run was recorded
  EXPECT_FALSE(Contains(tables, kSecret));

  // A missing variable is an error that names the variable, not a value.
  ASSERT_EQ(unsetenv("SLUICE_TEST_SECRET"), 0);
  int code = RunSluice({"validate", dir.path()}, &output);
  EXPECT_EQ(code, 1);
  EXPECT_TRUE(Contains(output, "environment variable SLUICE_TEST_SECRET is not set")) << output;
}

TEST(Secrets, PropertyErrorsQuoteNoSecretValue) {
  EXPECT_EQ(RedactSecrets("Invalid value \"hunter2\" for configuration property \"ssl.key.password\"",
                          {{"ssl.key.password", "hunter2"}, {"client.id", "Invalid"}}),
            "Invalid value \"***\" for configuration property \"ssl.key.password\"");
  EXPECT_TRUE(IsSecretProperty("sasl.oauthbearer.client.secret"));
  EXPECT_TRUE(IsSecretProperty("SSL.KEY.PASSWORD"));
  EXPECT_FALSE(IsSecretProperty("bootstrap.servers"));
}

TEST(Database, FileIsCreatedReadableByItsOwnerOnly) {
  TempDir dir;
  auto broker = testing::StartAppendPipeline(dir.path(), 2);
  ASSERT_NE(broker, nullptr);
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "--brokers", broker->bootstrap()}, &output), 0) << output;
  struct stat st {};
  ASSERT_EQ(stat((dir / "pipeline.db").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // The WAL (and shared memory) exist while sluice runs; a clean close
  // removes them, so look while a service holds the database.
  testing::ProduceValues(broker->bootstrap(), "events", testing::IdAmountValues("w", 0, 2));
  testing::Child service({"run", dir.path(), "--brokers", broker->bootstrap(), "--every", "1s"},
                         dir / "service.log");
  ASSERT_TRUE(testing::WaitFor([&] { return testing::TryQueryOne(dir / "pipeline.db", "SELECT count(*) FROM events") == "4"; },
                               std::chrono::seconds(15)))
      << service.output();
  for (const char* file : {"pipeline.db-wal", "pipeline.db-shm"}) {
    ASSERT_EQ(stat((dir / file).c_str(), &st), 0) << file << " does not exist while sluice runs";
    EXPECT_EQ(st.st_mode & 0777, 0600u) << file;
  }
}

// Starts a broker with one message and writes the append pipeline into `dir`
// with "file_mode = 0640" in [target]; *conf gets its pipeline.conf.
std::unique_ptr<EmbeddedBroker> StartWithFileMode0640(const TempDir& dir, std::string* conf) {
  auto broker = testing::StartAppendPipeline(dir.path(), 1);
  if (broker == nullptr) return nullptr;
  *conf = testing::ReadFile(dir / "pipeline.conf");
  if (!testing::ReplaceFirst(conf, "[target]\n", "[target]\nfile_mode = 0640\n")) {
    ADD_FAILURE() << "no [target] in\n" << *conf;
    return nullptr;
  }
  testing::WriteFile(dir / "pipeline.conf", *conf);
  return broker;
}

TEST(Database, FileModeCanBeConfigured) {
  TempDir dir;
  std::string conf;
  auto broker = StartWithFileMode0640(dir, &conf);
  ASSERT_NE(broker, nullptr);
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "--brokers", broker->bootstrap()}, &output), 0) << output;
  struct stat st {};
  ASSERT_EQ(stat((dir / "pipeline.db").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);

  ASSERT_TRUE(testing::ReplaceFirst(&conf, "file_mode = 0640", "file_mode = 0444"));
  testing::WriteFile(dir / "pipeline.conf", conf);
  EXPECT_EQ(RunSluice({"validate", dir.path()}, &output), 1);
  EXPECT_TRUE(Contains(output, "[target] file_mode: '0444' is not an octal file mode")) << output;
}

// A database that `sluice reset` creates gets [target] file_mode too (it was
// always 0600).
TEST(Database, ResetCreatesTheDatabaseWithTheConfiguredMode) {
  TempDir dir;
  std::string conf;
  auto broker = StartWithFileMode0640(dir, &conf);
  ASSERT_NE(broker, nullptr);
  std::string output;
  ASSERT_EQ(RunSluice({"reset", dir.path(), "--brokers", broker->bootstrap(), "--to", "latest", "--yes"}, &output), 0)
      << output;
  struct stat st {};
  ASSERT_EQ(stat((dir / "pipeline.db").c_str(), &st), 0) << output;
  EXPECT_EQ(st.st_mode & 0777, 0640u);
}

TEST(Database, PrepareRefusesTextAfterTheFirstStatement) {
  auto db = Database::Open(":memory:");
  ASSERT_TRUE(db.ok());
  EXPECT_TRUE((*db)->Prepare("SELECT 1;  ").ok());
  Result<Statement> two = (*db)->Prepare("SELECT 1; DELETE FROM nothing");
  ASSERT_FALSE(two.ok());
  EXPECT_TRUE(Contains(two.status().message(), "Prepare takes one statement")) << two.status().message();
}

TEST(Catalog, RunOffsetsAreValidJsonWhateverTheInputName) {
  PartitionRange range;
  range.partition = {"tab\there\n\"quoted\"\x01.jsonl", 0};
  range.first_offset = 1;
  range.last_offset = 2;
  range.count = 2;
  auto db = Database::Open(":memory:");
  ASSERT_TRUE(db.ok());
  Result<Statement> parsed = (*db)->Prepare("SELECT json_valid(?), json_extract(?, '$[0].topic')");
  ASSERT_TRUE(parsed.ok());
  std::string json = RangesJson({range});
  parsed->BindText(1, json);
  parsed->BindText(2, json);
  Result<bool> row = parsed->Step();
  ASSERT_TRUE(row.ok() && *row);
  EXPECT_EQ(parsed->ColumnInt(0), 1) << json;
  EXPECT_EQ(parsed->ColumnText(1), range.partition.first);
}

TEST(StepSql, CannotAttachFilesOrLoadExtensions) {
  TempDir dir;
  auto broker = testing::StartAppendPipeline(dir.path(), 1);
  ASSERT_NE(broker, nullptr);
  std::string output;
  testing::WriteFile(dir / "steps/50_attach.sql", "attach database '/tmp/elsewhere.db' as elsewhere;\n");
  EXPECT_EQ(RunSluice({"validate", dir.path()}, &output), 1);
  EXPECT_TRUE(Contains(output, "steps/50_attach.sql:1: ATTACH '/tmp/elsewhere.db' is outside the pipeline directory"))
      << output;

  testing::WriteFile(dir / "steps/50_attach.sql", "select load_extension('/tmp/evil.so');\n");
  EXPECT_EQ(RunSluice({"validate", dir.path()}, &output), 1);
  EXPECT_TRUE(Contains(output, "steps/50_attach.sql:1: not authorized")) << output;
}

}  // namespace
}  // namespace sluice
