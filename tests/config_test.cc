// Pipeline loading: pipeline.conf validation and its messages, overrides, durations, environment expansion, steps and seeds discovery.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/config.h"
#include "engine/validate.h"
#include "sql/sqlite/catalog.h"
#include "sql/sqlite/database.h"
#include "sql/sqlite/seeds.h"
#include "test_support.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using testing::PipelineFiles;
using testing::TempDir;
using testing::WriteFile;
using testing::WritePipeline;

// Parses `text` as pipeline.conf of directory /pipelines/orders, named "pipeline.conf" in messages.
Result<PipelineConfig> Parse(const std::string& text, const ConfigOverrides& overrides = {}) {
  return ParseConfig(text, "pipeline.conf", "/pipelines/orders", overrides);
}

// The error message of a config that must be rejected.
std::string ErrorOf(const std::string& text) {
  Result<PipelineConfig> config = Parse(text);
  EXPECT_FALSE(config.ok()) << "accepted:\n" << text;
  if (config.ok()) return "";
  EXPECT_EQ(config.status().code(), Status::Code::kInvalidConfig);
  return config.status().message();
}

// ParseDuration's value, or -1ms when it fails.
milliseconds Duration(const std::string& text) {
  Result<milliseconds> duration = ParseDuration(text);
  EXPECT_TRUE(duration.ok()) << text << ": " << duration.status().message();
  return duration.ok() ? duration.value() : milliseconds(-1);
}

// ExpandEnvironment's value, or "<error: ...>".
std::string Expand(const std::string& text) {
  Result<std::string> value = ExpandEnvironment(text);
  return value.ok() ? value.value() : "<error: " + value.status().message() + ">";
}

// Sets an environment variable for the lifetime of the object.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) { ::setenv(name, value, 1); }
  ~ScopedEnv() { ::unsetenv(name_.c_str()); }

 private:
  std::string name_;
};

// ---------------------------------------------------------------------------
// ParseDuration

TEST(ParseDuration, AcceptsEveryDocumentedUnit) {
  EXPECT_EQ(Duration("500ms"), milliseconds(500));
  EXPECT_EQ(Duration("2s"), milliseconds(2000));
  EXPECT_EQ(Duration("5m"), milliseconds(300000));
  EXPECT_EQ(Duration("1h"), milliseconds(3600000));
  EXPECT_EQ(Duration("1d"), milliseconds(86400000));
}

TEST(ParseDuration, BareNumberIsSeconds) {
  EXPECT_EQ(Duration("3"), milliseconds(3000));
  EXPECT_EQ(Duration("0"), milliseconds(0));
}

TEST(ParseDuration, AcceptsFractionsSpacesAndUpperCaseUnits) {
  EXPECT_EQ(Duration("1.5s"), milliseconds(1500));
  EXPECT_EQ(Duration(" 2 s "), milliseconds(2000));
  EXPECT_EQ(Duration("10MS"), milliseconds(10));
  EXPECT_EQ(Duration("2min"), milliseconds(120000));
}

TEST(ParseDuration, RejectsGarbageWithAMessageSayingWhatIsAccepted) {
  for (const char* bad : {"", "abc", "5 minutes", "s", "-1s", "1.2.3s", "2w", "ms500", "1e3s", "999999999999d"}) {
    Result<milliseconds> duration = ParseDuration(bad);
    ASSERT_FALSE(duration.ok()) << "accepted '" << bad << "'";
    EXPECT_EQ(duration.status().code(), Status::Code::kInvalidConfig);
    EXPECT_EQ(duration.status().message(), "'" + std::string(bad) +
                                               "' is not a duration; use a number with ms, s, m, h or d (500ms, 2s, 5m)");
  }
}

// ---------------------------------------------------------------------------
// ExpandEnvironment and IsSecretProperty

TEST(ExpandEnvironment, ReplacesEveryVariableAndKeepsTheRest) {
  ScopedEnv user("SLUICE_TEST_USER", "alice");
  ScopedEnv pass("SLUICE_TEST_PASS", "p#ss=${NOT_EXPANDED}");
  EXPECT_EQ(Expand("plain value"), "plain value");
  EXPECT_EQ(Expand("${SLUICE_TEST_USER}"), "alice");
  EXPECT_EQ(Expand("u=${SLUICE_TEST_USER};p=${SLUICE_TEST_PASS}!"), "u=alice;p=p#ss=${NOT_EXPANDED}!");
  EXPECT_EQ(Expand("$HOME and $ alone"), "$HOME and $ alone");
}

TEST(ExpandEnvironment, MissingVariableIsAnErrorThatNamesIt) {
  ::unsetenv("SLUICE_TEST_MISSING");
  Result<std::string> value = ExpandEnvironment("a${SLUICE_TEST_MISSING}b");
  ASSERT_FALSE(value.ok());
  EXPECT_EQ(value.status().code(), Status::Code::kInvalidConfig);
  EXPECT_EQ(value.status().message(), "environment variable SLUICE_TEST_MISSING is not set");
}

TEST(ExpandEnvironment, UnclosedBraceIsAnError) {
  Result<std::string> value = ExpandEnvironment("a${B");
  ASSERT_FALSE(value.ok());
  EXPECT_EQ(value.status().message(), "unclosed ${ (write ${NAME} for an environment variable)");
}

TEST(IsSecretProperty, MatchesPasswordSecretTokenAndKeyCaseInsensitively) {
  EXPECT_TRUE(IsSecretProperty("sasl.password"));
  EXPECT_TRUE(IsSecretProperty("ssl.key.password"));
  EXPECT_TRUE(IsSecretProperty("sasl.oauthbearer.client.secret"));
  EXPECT_TRUE(IsSecretProperty("sasl.oauthbearer.token.endpoint.url"));
  EXPECT_TRUE(IsSecretProperty("ssl.key.pem"));
  EXPECT_TRUE(IsSecretProperty("SASL.PASSWORD"));
  EXPECT_FALSE(IsSecretProperty("security.protocol"));
  EXPECT_FALSE(IsSecretProperty("sasl.username"));
  EXPECT_FALSE(IsSecretProperty("client.id"));
}

// ---------------------------------------------------------------------------
// ParseConfig: values and defaults

TEST(Config, DefaultsForAMinimalConf) {
  Result<PipelineConfig> config = Parse("[source]\ntopic = orders\n");
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->dir, "/pipelines/orders");
  EXPECT_EQ(config->source.brokers, "localhost:9092");
  EXPECT_EQ(config->source.topics, std::vector<std::string>{"orders"});
  EXPECT_EQ(config->source.group, "sluice-orders");
  EXPECT_EQ(config->source.start, KafkaSourceOptions::Start::kEarliest);
  EXPECT_EQ(config->source.assignment, KafkaSourceOptions::Assignment::kAll);
  EXPECT_EQ(config->source.on_data_loss, KafkaSourceOptions::OnDataLoss::kFail);
  EXPECT_EQ(config->source.connect_timeout, milliseconds(30000));
  EXPECT_TRUE(config->source.properties.empty());
  EXPECT_EQ(config->max_messages, 50000u);
  EXPECT_EQ(config->max_wait, milliseconds(2000));
  EXPECT_EQ(config->every, milliseconds(300000));
  EXPECT_TRUE(config->columns.empty());
  EXPECT_EQ(config->database, "/pipelines/orders/pipeline.db");
  EXPECT_EQ(config->busy_timeout_ms, 10000);
}

TEST(Config, ReadsEverySetting) {
  Result<PipelineConfig> config = Parse(
      "# a full configuration\n"
      "[source]\n"
      "brokers = k1:9092,k2:9092   # comment after a value\n"
      "topic = orders, refunds ,\n"
      "group = analytics\n"
      "start = latest\n"
      "assignment = group\n"
      "on_data_loss = skip\n"
      "connect_timeout = 45s\n"
      "[batch]\n"
      "max_messages = 1000\n"
      "max_wait = 250ms\n"
      "every = 1h\n"
      "[columns]\n"
      "order_id = TEXT\n"
      "amount = real\n"
      "city = TEXT $.address.city\n"
      "[target]\n"
      "database = out/curated.db\n"
      "busy_timeout = 3s\n");
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->source.brokers, "k1:9092,k2:9092");
  EXPECT_EQ(config->source.topics, (std::vector<std::string>{"orders", "refunds"}));
  EXPECT_EQ(config->source.group, "analytics");
  EXPECT_EQ(config->source.start, KafkaSourceOptions::Start::kLatest);
  EXPECT_EQ(config->source.assignment, KafkaSourceOptions::Assignment::kGroup);
  EXPECT_EQ(config->source.on_data_loss, KafkaSourceOptions::OnDataLoss::kSkip);
  EXPECT_EQ(config->source.connect_timeout, milliseconds(45000));
  EXPECT_EQ(config->max_messages, 1000u);
  EXPECT_EQ(config->max_wait, milliseconds(250));
  EXPECT_EQ(config->every, milliseconds(3600000));
  ASSERT_EQ(config->columns.size(), 3u);
  EXPECT_EQ(config->columns[0].name, "order_id");
  EXPECT_EQ(config->columns[0].type, ColumnType::kText);
  EXPECT_EQ(config->columns[1].name, "amount");
  EXPECT_EQ(config->columns[1].type, ColumnType::kReal);
  EXPECT_EQ(config->columns[2].name, "city");
  EXPECT_EQ(config->columns[2].path_text, "$.address.city");
  ASSERT_EQ(config->columns[2].path.size(), 2u);
  EXPECT_EQ(config->columns[2].path[0].member, "address");
  EXPECT_EQ(config->columns[2].path[1].member, "city");
  EXPECT_EQ(config->database, "/pipelines/orders/out/curated.db");
  EXPECT_EQ(config->busy_timeout_ms, 3000);
}

TEST(Config, RelativeDatabaseIsResolvedAgainstThePipelineDirectory) {
  Result<PipelineConfig> relative = ParseConfig("[source]\ntopic = t\n[target]\ndatabase = orders.db\n", "pipeline.conf",
                                                "pipelines/orders");
  ASSERT_TRUE(relative.ok()) << relative.status().message();
  EXPECT_EQ(relative->database, "pipelines/orders/orders.db");

  Result<PipelineConfig> absolute = Parse("[source]\ntopic = t\n[target]\ndatabase = /var/lib/sluice/orders.db\n");
  ASSERT_TRUE(absolute.ok()) << absolute.status().message();
  EXPECT_EQ(absolute->database, "/var/lib/sluice/orders.db");

  Result<PipelineConfig> memory = Parse("[source]\ntopic = t\n[target]\ndatabase = :memory:\n");
  ASSERT_TRUE(memory.ok()) << memory.status().message();
  EXPECT_EQ(memory->database, ":memory:");
}

TEST(Config, DefaultGroupIsSluiceDashDirectoryName) {
  const std::string conf = "[source]\ntopic = t\n";
  EXPECT_EQ(ParseConfig(conf, "c", "/srv/pipelines/orders")->source.group, "sluice-orders");
  EXPECT_EQ(ParseConfig(conf, "c", "pipelines/click_stream")->source.group, "sluice-click_stream");
  EXPECT_EQ(ParseConfig(conf, "c", "pipelines/./orders")->source.group, "sluice-orders");
  // An explicit group wins.
  EXPECT_EQ(ParseConfig(conf + "group = mine\n", "c", "/srv/pipelines/orders")->source.group, "mine");
}

TEST(Config, DefaultGroupIgnoresATrailingSlash) {
  // `sluice run pipelines/orders/` (shell completion adds the slash) must use
  // the same consumer group as `sluice run pipelines/orders`.
  const std::string conf = "[source]\ntopic = t\n";
  Result<PipelineConfig> config = ParseConfig(conf, "c", "/srv/pipelines/orders/");
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->source.group, "sluice-orders");
}

TEST(Config, OverridesWinOverTheFile) {
  const std::string conf =
      "[source]\nbrokers = file:9092\ntopic = t\n[batch]\nmax_messages = 10\n[target]\ndatabase = file.db\n";
  ConfigOverrides overrides;
  overrides.brokers = "cli:9092";
  overrides.database = "cli/relative.db";  // used as given (relative to the working directory)
  overrides.max_messages = 77;
  Result<PipelineConfig> config = Parse(conf, overrides);
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->source.brokers, "cli:9092");
  EXPECT_EQ(config->database, "cli/relative.db");
  EXPECT_EQ(config->max_messages, 77u);

  Result<PipelineConfig> without = Parse(conf);
  ASSERT_TRUE(without.ok()) << without.status().message();
  EXPECT_EQ(without->source.brokers, "file:9092");
  EXPECT_EQ(without->database, "/pipelines/orders/file.db");
  EXPECT_EQ(without->max_messages, 10u);
}

TEST(Config, BrokersOverrideFillsAnEmptyBrokersValue) {
  ConfigOverrides overrides;
  overrides.brokers = "cli:9092";
  Result<PipelineConfig> config = Parse("[source]\nbrokers =\ntopic = t\n", overrides);
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->source.brokers, "cli:9092");
  EXPECT_EQ(ErrorOf("[source]\nbrokers =\ntopic = t\n"),
            "pipeline.conf:2: [source] brokers: is empty; set it or pass --brokers");
}

TEST(Config, KafkaPropertiesArePassedThroughInOrder) {
  Result<PipelineConfig> config = Parse(
      "[source]\ntopic = t\n[kafka]\nsecurity.protocol = SASL_SSL\nsasl.mechanisms = PLAIN\n"
      "fetch.max.bytes = 1048576\n");
  ASSERT_TRUE(config.ok()) << config.status().message();
  using Property = std::pair<std::string, std::string>;
  EXPECT_EQ(config->source.properties,
            (std::vector<Property>{{"security.protocol", "SASL_SSL"}, {"sasl.mechanisms", "PLAIN"},
                                   {"fetch.max.bytes", "1048576"}}));
}

TEST(Config, ExpandsEnvironmentVariablesInValues) {
  ScopedEnv user("SLUICE_TEST_SASL_USER", "svc-sluice");
  ScopedEnv password("SLUICE_TEST_SASL_PASSWORD", "s3cr#t");
  ScopedEnv topic("SLUICE_TEST_TOPIC", "orders");
  Result<PipelineConfig> config = Parse(
      "[source]\ntopic = ${SLUICE_TEST_TOPIC}_v2\n[kafka]\nsasl.username = ${SLUICE_TEST_SASL_USER}\n"
      "sasl.password = ${SLUICE_TEST_SASL_PASSWORD}\n");
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->source.topics, std::vector<std::string>{"orders_v2"});
  using Property = std::pair<std::string, std::string>;
  EXPECT_EQ(config->source.properties,
            (std::vector<Property>{{"sasl.username", "svc-sluice"}, {"sasl.password", "s3cr#t"}}));
}

// ---------------------------------------------------------------------------
// ParseConfig: errors name the file, the line and the key

TEST(Config, UnknownKeyNamesFileLineAndKey) {
  EXPECT_EQ(ErrorOf("[source]\ntopic = t\n\nbrokerz = x\n"), "pipeline.conf:4: [source] brokerz: unknown key");
  EXPECT_EQ(ErrorOf("[source]\ntopic = t\n[batch]\nmax_wiat = 2s\n"), "pipeline.conf:4: [batch] max_wiat: unknown key");
}

TEST(Config, UnknownSectionNamesFileLineAndKey) {
  EXPECT_EQ(ErrorOf("[source]\ntopic = t\n[sink]\npath = /tmp/x\n"),
            "pipeline.conf:4: [sink] path: unknown section [sink] (sections: source, batch, columns, staging, target, kafka)");
}

TEST(Config, KeyBeforeAnySectionNamesItsLine) {
  std::string message = ErrorOf("# header\ntopic = t\n[source]\ntopic = t\n");
  EXPECT_NE(message.find("topic"), std::string::npos) << message;
  EXPECT_EQ(message.rfind("pipeline.conf:2: ", 0), 0u) << message;
}

TEST(Config, SeveralErrorsAreReportedTogether) {
  EXPECT_EQ(ErrorOf("[source]\nstart = oldest\n[batch]\nmax_messages = 0\n"),
            "pipeline.conf:2: [source] start: 'oldest' is not one of: earliest, latest, group\n"
            "pipeline.conf:4: [batch] max_messages: '0' is not a whole number between 1 and 10000000\n"
            "pipeline.conf: [source] topic: is required: the topic (or comma-separated topics) to read");
}

TEST(Config, BadDurationNamesFileLineAndKey) {
  EXPECT_EQ(ErrorOf("[source]\ntopic = t\n[batch]\nmax_messages = 10\nmax_wait = soon\n"),
            "pipeline.conf:5: [batch] max_wait: 'soon' is not a duration; use a number with ms, s, m, h or d "
            "(500ms, 2s, 5m)");
  EXPECT_EQ(ErrorOf("[source]\ntopic = t\n[batch]\nevery = 0s\n"), "pipeline.conf:4: [batch] every: must be longer than 0");
  EXPECT_EQ(ErrorOf("[source]\ntopic = t\nconnect_timeout = 3 weeks\n"),
            "pipeline.conf:3: [source] connect_timeout: '3 weeks' is not a duration; use a number with ms, s, m, h or d "
            "(500ms, 2s, 5m)");
}

TEST(Config, BadEnumsAndNumbersNameTheirKey) {
  EXPECT_EQ(ErrorOf("[source]\ntopic = t\nassignment = some\n"),
            "pipeline.conf:3: [source] assignment: 'some' is not one of: all, group");
  EXPECT_EQ(ErrorOf("[source]\ntopic = t\non_data_loss = ignore\n"),
            "pipeline.conf:3: [source] on_data_loss: 'ignore' is not one of: fail, skip");
  for (const char* bad : {"abc", "10k", "-5", "10000001", "1.5"}) {
    EXPECT_EQ(ErrorOf("[source]\ntopic = t\n[batch]\nmax_messages = " + std::string(bad) + "\n"),
              "pipeline.conf:4: [batch] max_messages: '" + std::string(bad) +
                  "' is not a whole number between 1 and 10000000");
  }
  Result<PipelineConfig> max = Parse("[source]\ntopic = t\n[batch]\nmax_messages = 10000000\n");
  ASSERT_TRUE(max.ok()) << max.status().message();
  EXPECT_EQ(max->max_messages, 10000000u);
}

TEST(Config, MissingTopicIsRequired) {
  EXPECT_EQ(ErrorOf("[source]\nbrokers = k:9092\n"),
            "pipeline.conf: [source] topic: is required: the topic (or comma-separated topics) to read");
  EXPECT_EQ(ErrorOf("[source]\ntopic = , ,\n"),
            "pipeline.conf:2: [source] topic: is required: the topic (or comma-separated topics) to read");
}

TEST(Config, BadColumnTypeNamesFileLineAndKey) {
  EXPECT_EQ(ErrorOf("[source]\ntopic = t\n[columns]\nid = TEXT\namount = DECIMAL\n"),
            "pipeline.conf:5: [columns] amount: unknown type 'DECIMAL' (use TEXT, INTEGER, REAL, BOOLEAN or JSON, "
            "optionally followed by a path like $.a.b)");
}

TEST(Config, BadColumnPathNamesFileLineAndKey) {
  std::string message = ErrorOf("[source]\ntopic = t\n[columns]\ncity = TEXT address.city\n");
  EXPECT_EQ(message.rfind("pipeline.conf:4: [columns] city: ", 0), 0u) << message;
}

TEST(Config, ColumnNameWithAQuoteIsRejected) {
  EXPECT_EQ(ErrorOf("[source]\ntopic = t\n[columns]\nid = TEXT\na\"b = TEXT\n"),
            "pipeline.conf:5: [columns] a\"b: column names must be letters, digits and _ and not start with a digit");
  EXPECT_EQ(ErrorOf("[source]\ntopic = t\n[columns]\n1st = TEXT\n"),
            "pipeline.conf:4: [columns] 1st: column names must be letters, digits and _ and not start with a digit");
}

TEST(Config, ColumnNamesStartingWithKafkaOrSluiceAreReserved) {
  EXPECT_EQ(ErrorOf("[source]\ntopic = t\n[columns]\n_kafka_offset = INTEGER\n"),
            "pipeline.conf:4: [columns] _kafka_offset: names starting with _kafka_ or _sluice_ are reserved for sluice's "
            "own columns");
  EXPECT_EQ(ErrorOf("[source]\ntopic = t\n[columns]\n_sluice_x = TEXT\n"),
            "pipeline.conf:4: [columns] _sluice_x: names starting with _kafka_ or _sluice_ are reserved for sluice's "
            "own columns");
  // Only the prefix is reserved.
  Result<PipelineConfig> config = Parse("[source]\ntopic = t\n[columns]\nkafka_offset = INTEGER\n");
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->columns[0].name, "kafka_offset");
}

TEST(Config, ReservedPrefixIsCaseInsensitiveLikeSqlite) {
  // SQLite column names are case-insensitive: _KAFKA_OFFSET collides with the
  // staging table's _kafka_offset.
  std::string message = ErrorOf("[source]\ntopic = t\n[columns]\n_KAFKA_OFFSET = INTEGER\n");
  EXPECT_EQ(message.rfind("pipeline.conf:4: [columns] _KAFKA_OFFSET: names starting with _kafka_", 0), 0u) << message;
}

TEST(Config, ColumnDeclaredTwiceIgnoringCaseIsRejected) {
  EXPECT_EQ(ErrorOf("[source]\ntopic = t\n[columns]\nid = TEXT\nID = INTEGER\n"),
            "pipeline.conf:5: [columns] ID: is declared twice");
}

TEST(Config, DuplicateKeyIsRejected) {
  // FindLine names the first line of the key.
  EXPECT_EQ(ErrorOf("[source]\ntopic = a\ngroup = g\ntopic = b\n"), "pipeline.conf:2: [source] topic: is set twice");
  EXPECT_EQ(ErrorOf("[source]\ntopic = t\n[batch]\nmax_wait = 1s\n[batch]\nmax_wait = 2s\n"),
            "pipeline.conf:4: [batch] max_wait: is set twice");
}

TEST(Config, ReservedKafkaPropertyIsRejected) {
  EXPECT_EQ(ErrorOf("[source]\ntopic = t\n[kafka]\nclient.id = me\nenable.auto.commit = true\n"),
            "pipeline.conf:5: [kafka] enable.auto.commit: is set by sluice itself (offsets are committed only after the "
            "database commits); remove it");
  EXPECT_EQ(ErrorOf("[source]\ntopic = t\n[kafka]\nbootstrap.servers = k:9092\n"),
            "pipeline.conf:4: [kafka] bootstrap.servers: is set by sluice itself (offsets are committed only after the "
            "database commits); remove it and use [source] brokers");
  for (const char* reserved : {"metadata.broker.list", "group.id", "enable.auto.offset.store", "auto.offset.reset",
                               "enable.partition.eof"}) {
    std::string message = ErrorOf("[source]\ntopic = t\n[kafka]\n" + std::string(reserved) + " = x\n");
    EXPECT_EQ(message.rfind("pipeline.conf:4: [kafka] " + std::string(reserved) + ": is set by sluice itself", 0), 0u)
        << message;
  }
}

TEST(Config, MissingEnvironmentVariableNamesFileLineKeyAndVariable) {
  ::unsetenv("SLUICE_TEST_NOT_SET");
  EXPECT_EQ(ErrorOf("[source]\ntopic = t\n[kafka]\nsecurity.protocol = SASL_SSL\nsasl.password = ${SLUICE_TEST_NOT_SET}\n"),
            "pipeline.conf:5: [kafka] sasl.password: environment variable SLUICE_TEST_NOT_SET is not set");
}

TEST(Config, ErrorsNeverShowASecretValue) {
  // README: values of secret properties are shown as *** everywhere sluice prints them.
  std::string message = ErrorOf("[source]\ntopic = t\n[kafka]\nsasl.password = hunter2${\n");
  EXPECT_EQ(message.rfind("pipeline.conf:4: [kafka] sasl.password: ", 0), 0u) << message;
  EXPECT_EQ(message.find("hunter2"), std::string::npos) << message;
}

TEST(Config, SyntaxErrorNamesTheFile) {
  Result<PipelineConfig> config = Parse("[source]\ntopic = t\nthis line has no equals sign\n");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().message().rfind("pipeline.conf: ", 0), 0u) << config.status().message();
  EXPECT_NE(config.status().message().find("this line has no equals sign"), std::string::npos)
      << config.status().message();
}

// ---------------------------------------------------------------------------
// LoadPipeline: the directory

TEST(LoadPipeline, MissingDirectoryOrConfIsAnError) {
  TempDir dir;
  Result<Pipeline> missing_dir = LoadPipeline(dir / "nope");
  ASSERT_FALSE(missing_dir.ok());
  EXPECT_EQ(missing_dir.status().message(), dir / "nope" + ": not a pipeline directory (it does not exist)");

  Result<Pipeline> missing_conf = LoadPipeline(dir.path());
  ASSERT_FALSE(missing_conf.ok());
  EXPECT_EQ(missing_conf.status().code(), Status::Code::kInvalidConfig);
  EXPECT_EQ(missing_conf.status().message(),
            dir / "pipeline.conf" + ": missing; a pipeline directory needs pipeline.conf (see `sluice run --help`)");
}

TEST(LoadPipeline, ConfErrorsNameTheConfPath) {
  TempDir dir;
  WriteFile(dir / "pipeline.conf", "[source]\ntopic = t\nfoo = bar\n");
  Result<Pipeline> pipeline = LoadPipeline(dir.path());
  ASSERT_FALSE(pipeline.ok());
  EXPECT_EQ(pipeline.status().message(), dir / "pipeline.conf" + ":3: [source] foo: unknown key");
}

TEST(LoadPipeline, LoadsSchemaStepsInLexicalOrderAndIgnoresOtherFiles) {
  TempDir dir;
  PipelineFiles files;
  files.conf = "[source]\ntopic = t\n";
  files.schema = "CREATE TABLE IF NOT EXISTS x(a);\n";
  files.steps = {{"2_b.sql", "SELECT 2;"},
                 {"10_a.sql", "SELECT 10;"},
                 {"30_c.sql", "SELECT 30;"},
                 {"README.md", "not sql"},
                 {"20_old.sql.bak", "SELECT 'bak';"},
                 {"notes.txt", "x"}};
  WritePipeline(dir.path(), files);
  fs::create_directories(dir / "steps/99_dir.sql");  // a directory, not a file

  Result<Pipeline> pipeline = LoadPipeline(dir.path());
  ASSERT_TRUE(pipeline.ok()) << pipeline.status().message();
  ASSERT_TRUE(pipeline->schema.has_value());
  EXPECT_EQ(pipeline->schema->display, "schema.sql");
  EXPECT_EQ(pipeline->schema->text, "CREATE TABLE IF NOT EXISTS x(a);\n");
  std::vector<std::string> displays, texts;
  for (const auto& step : pipeline->steps) {
    displays.push_back(step.display);
    texts.push_back(step.text);
  }
  // Lexical, not numeric: "10" < "2" < "30".
  EXPECT_EQ(displays, (std::vector<std::string>{"steps/10_a.sql", "steps/2_b.sql", "steps/30_c.sql"}));
  EXPECT_EQ(texts, (std::vector<std::string>{"SELECT 10;", "SELECT 2;", "SELECT 30;"}));
  EXPECT_EQ(pipeline->steps[0].path, dir / "steps/10_a.sql");
  EXPECT_TRUE(pipeline->seeds.empty());
  EXPECT_EQ(pipeline->config.database, dir / "pipeline.db");
  EXPECT_EQ(pipeline->config.source.group, "sluice-" + fs::path(dir.path()).filename().string());
}

TEST(LoadPipeline, NoSchemaNoStepsNoSeedsIsValid) {
  TempDir dir;
  WriteFile(dir / "pipeline.conf", "[source]\ntopic = t\n");
  Result<Pipeline> pipeline = LoadPipeline(dir.path());
  ASSERT_TRUE(pipeline.ok()) << pipeline.status().message();
  EXPECT_FALSE(pipeline->schema.has_value());
  EXPECT_TRUE(pipeline->steps.empty());
  EXPECT_TRUE(pipeline->seeds.empty());
}

TEST(LoadPipeline, OverridesApply) {
  TempDir dir;
  WriteFile(dir / "pipeline.conf", "[source]\ntopic = t\n[target]\ndatabase = file.db\n");
  ConfigOverrides overrides;
  overrides.brokers = "cli:1";
  overrides.database = dir / "elsewhere.db";
  overrides.max_messages = 5;
  Result<Pipeline> pipeline = LoadPipeline(dir.path(), overrides);
  ASSERT_TRUE(pipeline.ok()) << pipeline.status().message();
  EXPECT_EQ(pipeline->config.source.brokers, "cli:1");
  EXPECT_EQ(pipeline->config.database, dir / "elsewhere.db");
  EXPECT_EQ(pipeline->config.max_messages, 5u);
}

TEST(LoadPipeline, SeedsBecomeTablesNamedAfterTheFile) {
  TempDir dir;
  PipelineFiles files;
  files.conf = "[source]\ntopic = t\n";
  files.seeds = {{"products.csv", "sku\nA\n"}, {"customers.csv", "id\n1\n"}, {"notes.txt", "x"}};
  WritePipeline(dir.path(), files);
  Result<Pipeline> pipeline = LoadPipeline(dir.path());
  ASSERT_TRUE(pipeline.ok()) << pipeline.status().message();
  ASSERT_EQ(pipeline->seeds.size(), 2u);
  EXPECT_EQ(pipeline->seeds[0].table, "customers");
  EXPECT_EQ(pipeline->seeds[0].display, "seeds/customers.csv");
  EXPECT_EQ(pipeline->seeds[0].path, dir / "seeds/customers.csv");
  EXPECT_EQ(pipeline->seeds[1].table, "products");
}

TEST(LoadPipeline, SeedFileNameThatIsNotAnIdentifierIsRejected) {
  TempDir dir;
  PipelineFiles files;
  files.conf = "[source]\ntopic = t\n";
  files.seeds = {{"x; DROP TABLE orders_curated.csv", "id\n1\n"}};
  WritePipeline(dir.path(), files);
  Result<Pipeline> pipeline = LoadPipeline(dir.path());
  ASSERT_FALSE(pipeline.ok());
  EXPECT_EQ(pipeline.status().code(), Status::Code::kInvalidConfig);
  EXPECT_EQ(pipeline.status().message(),
            "seeds/x; DROP TABLE orders_curated.csv: a seed's file name becomes its table name, so it must be letters, "
            "digits and _ (not starting with a digit, not _sluice_*, sqlite_* or batch); rename the file");
}

TEST(LoadPipeline, SeedFileNamesThatCollideWithSluiceTablesAreRejected) {
  for (const std::string name : {"batch.csv", "Batch.csv", "_sluice_offsets.csv", "1st.csv", "my-seed.csv"}) {
    TempDir dir;
    PipelineFiles files;
    files.conf = "[source]\ntopic = t\n";
    files.seeds = {{name, "id\n1\n"}};
    WritePipeline(dir.path(), files);
    Result<Pipeline> pipeline = LoadPipeline(dir.path());
    ASSERT_FALSE(pipeline.ok()) << name;
    EXPECT_EQ(pipeline.status().message().rfind("seeds/" + name + ": a seed's file name becomes its table name", 0), 0u)
        << pipeline.status().message();
  }
}

TEST(LoadPipeline, SeedNamedLikeACatalogTableInAnotherCaseIsRejected) {
  // SQLite table names are case-insensitive: seeds/_SLUICE_OFFSETS.csv would
  // DROP TABLE "_SLUICE_OFFSETS", i.e. sluice's stored offsets.
  TempDir dir;
  PipelineFiles files;
  files.conf = "[source]\ntopic = t\n";
  files.seeds = {{"_SLUICE_OFFSETS.csv", "id\n1\n"}};
  WritePipeline(dir.path(), files);
  Result<Pipeline> pipeline = LoadPipeline(dir.path());
  ASSERT_FALSE(pipeline.ok()) << "seeds/_SLUICE_OFFSETS.csv was accepted as table " << pipeline->seeds[0].table;
  EXPECT_EQ(pipeline.status().message().rfind("seeds/_SLUICE_OFFSETS.csv: a seed's file name becomes its table name", 0),
            0u)
      << pipeline.status().message();
}

TEST(LoadPipeline, SeedHeaderWithAQuoteBecomesThatColumnNameAndRunsNothing) {
  TempDir dir;
  PipelineFiles files;
  files.conf = "[source]\ntopic = t\n";
  files.seeds = {{"customers.csv", "id,a\"b,\"x\"\" TEXT); DROP TABLE orders_curated; --\"\n1,2,3\n"}};
  WritePipeline(dir.path(), files);
  Result<Pipeline> pipeline = LoadPipeline(dir.path());
  ASSERT_TRUE(pipeline.ok()) << pipeline.status().message();

  std::string path = dir / "curated.db";
  auto db = Database::Open(path);
  ASSERT_TRUE(db.ok()) << db.status().message();
  ASSERT_TRUE(Catalog(db->get()).Install().ok());
  ASSERT_TRUE((*db)->Exec("CREATE TABLE orders_curated(id TEXT)").ok());
  std::vector<std::string> loaded;
  Status st = LoadChangedSeeds(db->get(), pipeline->seeds, &loaded);
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(loaded, std::vector<std::string>{"customers"});
  db->reset();

  EXPECT_EQ(testing::Query(path, "SELECT name FROM pragma_table_info('customers') ORDER BY cid"),
            (std::vector<std::string>{"id", "a\"b", "x\" TEXT); DROP TABLE orders_curated; --"}));
  EXPECT_EQ(testing::QueryOne(path, "SELECT count(*) FROM sqlite_schema WHERE name = 'orders_curated'"), "1");
  EXPECT_EQ(testing::QueryOne(path, "SELECT \"a\"\"b\" FROM customers"), "2");
}

// ---------------------------------------------------------------------------
// LoadPipeline: files written per engine

// The displays of the steps LoadPipeline chose for `database`.
std::vector<std::string> StepsFor(const std::string& dir, const std::string& database) {
  ConfigOverrides overrides;
  overrides.database = database;
  Result<Pipeline> pipeline = LoadPipeline(dir, overrides);
  EXPECT_TRUE(pipeline.ok()) << pipeline.status().message();
  std::vector<std::string> displays;
  if (pipeline.ok()) {
    for (const auto& step : pipeline->steps) displays.push_back(step.display);
  }
  return displays;
}

constexpr char kPostgresUrl[] = "postgresql://sluice@/orders?host=/tmp";

TEST(LoadPipeline, PerEngineStepFilesReplaceTheSharedOneOnTheirEngine) {
  TempDir dir;
  PipelineFiles files;
  files.conf = "[source]\ntopic = t\n";
  files.steps = {{"10_stage.sql", "SELECT 10;"},
                 {"30_upsert.sql", "SELECT 'shared';"},
                 {"30_upsert.sqlite.sql", "SELECT 'sqlite';"},
                 {"30_upsert.postgres.sql", "SELECT 'postgres';"},
                 {"40_vacuum.postgres.sql", "SELECT 'postgres only';"},
                 {"50_pragma.sqlite.sql", "SELECT 'sqlite only';"},
                 {"60_merge.sqlite.sql", "SELECT 'sqlite';"},
                 {"60_merge.postgres.sql", "SELECT 'postgres';"}};
  WritePipeline(dir.path(), files);

  EXPECT_EQ(StepsFor(dir.path(), dir / "x.db"),
            (std::vector<std::string>{"steps/10_stage.sql", "steps/30_upsert.sqlite.sql", "steps/50_pragma.sqlite.sql",
                                      "steps/60_merge.sqlite.sql"}));
  EXPECT_EQ(StepsFor(dir.path(), kPostgresUrl),
            (std::vector<std::string>{"steps/10_stage.sql", "steps/30_upsert.postgres.sql",
                                      "steps/40_vacuum.postgres.sql", "steps/60_merge.postgres.sql"}));

  Result<Pipeline> pipeline = LoadPipeline(dir.path());
  ASSERT_TRUE(pipeline.ok()) << pipeline.status().message();
  EXPECT_EQ(pipeline->engine, "sqlite");
  EXPECT_EQ(pipeline->steps[1].text, "SELECT 'sqlite';");
  EXPECT_EQ(pipeline->steps[1].path, dir / "steps/30_upsert.sqlite.sql");
  std::vector<std::string> described;
  for (const auto& choice : pipeline->per_engine) described.push_back(DescribeEngineChoice(choice));
  EXPECT_EQ(described, (std::vector<std::string>{
                           "steps/30_upsert: sqlite runs steps/30_upsert.sqlite.sql, postgres runs "
                           "steps/30_upsert.postgres.sql",
                           "steps/40_vacuum: sqlite skips it, postgres runs steps/40_vacuum.postgres.sql",
                           "steps/50_pragma: sqlite runs steps/50_pragma.sqlite.sql, postgres skips it",
                           "steps/60_merge: sqlite runs steps/60_merge.sqlite.sql, postgres runs "
                           "steps/60_merge.postgres.sql"}));
}

TEST(LoadPipeline, PerEngineStepsKeepTheLexicalOrderOfTheirName) {
  TempDir dir;
  PipelineFiles files;
  files.conf = "[source]\ntopic = t\n";
  // By NAME.sql: "10_a.sql" < "10_a_b.sql" < "2_c.sql" < "3.sql", whatever the engine suffix.
  files.steps = {{"2_c.postgres.sql", "SELECT 2;"},
                 {"2_c.sqlite.sql", "SELECT 2;"},
                 {"10_a_b.sql", "SELECT 'ab';"},
                 {"10_a.sqlite.sql", "SELECT 'a';"},
                 {"10_a.postgres.sql", "SELECT 'a';"},
                 {"3.sql", "SELECT 3;"},
                 {"10_v1.2.sql", "SELECT 'a dotted name, not an engine';"}};
  WritePipeline(dir.path(), files);
  EXPECT_EQ(StepsFor(dir.path(), dir / "x.db"),
            (std::vector<std::string>{"steps/10_a.sqlite.sql", "steps/10_a_b.sql", "steps/10_v1.2.sql",
                                      "steps/2_c.sqlite.sql", "steps/3.sql"}));
  EXPECT_EQ(StepsFor(dir.path(), kPostgresUrl),
            (std::vector<std::string>{"steps/10_a.postgres.sql", "steps/10_a_b.sql", "steps/10_v1.2.sql",
                                      "steps/2_c.postgres.sql", "steps/3.sql"}));
}

TEST(LoadPipeline, AnUnknownEngineSuffixIsAnErrorNamingTheFileAndTheEngines) {
  TempDir dir;
  PipelineFiles files;
  files.conf = "[source]\ntopic = t\n";
  files.steps = {{"10_a.sql", "SELECT 1;"}, {"20_upsert.mysql.sql", "SELECT 1;"}, {"30_b.PostgreSQL.sql", "SELECT 1;"}};
  WritePipeline(dir.path(), files);
  Result<Pipeline> pipeline = LoadPipeline(dir.path());
  ASSERT_FALSE(pipeline.ok());
  EXPECT_EQ(pipeline.status().code(), Status::Code::kInvalidConfig);
  EXPECT_EQ(pipeline.status().message(),
            "steps/20_upsert.mysql.sql: 'mysql' is not an engine sluice knows (sqlite, postgres): a file for one "
            "engine is named 20_upsert.sqlite.sql or 20_upsert.postgres.sql, and 20_upsert.sql runs on both\n"
            "steps/30_b.PostgreSQL.sql: 'PostgreSQL' is not an engine sluice knows (sqlite, postgres): a file for "
            "one engine is named 30_b.sqlite.sql or 30_b.postgres.sql, and 30_b.sql runs on both");

  // The same in checks/ and for schema.sql.
  TempDir other;
  files.steps = {{"10_a.sql", "SELECT 1;"}};
  WritePipeline(other.path(), files);
  WriteFile(other / "schema.duckdb.sql", "SELECT 1;");
  Result<Pipeline> bad_schema = LoadPipeline(other.path());
  ASSERT_FALSE(bad_schema.ok());
  EXPECT_EQ(bad_schema.status().message().rfind("schema.duckdb.sql: 'duckdb' is not an engine sluice knows", 0), 0u)
      << bad_schema.status().message();
  fs::remove(other / "schema.duckdb.sql");
  fs::create_directories(other / "checks");
  WriteFile(other / "checks/positive.oracle.sql", "SELECT 1 WHERE false;");
  Result<Pipeline> bad_check = LoadPipeline(other.path());
  ASSERT_FALSE(bad_check.ok());
  EXPECT_EQ(bad_check.status().message().rfind("checks/positive.oracle.sql: 'oracle' is not an engine", 0), 0u)
      << bad_check.status().message();
}

TEST(LoadPipeline, SchemaAndChecksArePerEngineToo) {
  TempDir dir;
  PipelineFiles files;
  files.conf = "[source]\ntopic = t\n";
  files.schema = "CREATE TABLE IF NOT EXISTS shared(a);\n";
  WritePipeline(dir.path(), files);
  WriteFile(dir / "schema.postgres.sql", "create table if not exists pg(a bigint);\n");
  WriteFile(dir / "schema.sql.bak", "ignored");
  fs::create_directories(dir / "checks");
  WriteFile(dir / "checks/10_positive.sql", "-- severity: warn\nSELECT 1 WHERE false;");
  WriteFile(dir / "checks/10_positive.postgres.sql", "SELECT 1 WHERE false;");
  WriteFile(dir / "checks/20_fresh.sqlite.sql", "SELECT 1 WHERE false;");

  Result<Pipeline> on_sqlite = LoadPipeline(dir.path());
  ASSERT_TRUE(on_sqlite.ok()) << on_sqlite.status().message();
  ASSERT_TRUE(on_sqlite->schema.has_value());
  EXPECT_EQ(on_sqlite->schema->display, "schema.sql");
  ASSERT_EQ(on_sqlite->checks.size(), 2u);
  EXPECT_EQ(on_sqlite->checks[0].file.display, "checks/10_positive.sql");
  EXPECT_TRUE(on_sqlite->checks[0].warn_only);
  EXPECT_EQ(on_sqlite->checks[1].file.display, "checks/20_fresh.sqlite.sql");

  ConfigOverrides overrides;
  overrides.database = kPostgresUrl;
  Result<Pipeline> on_postgres = LoadPipeline(dir.path(), overrides);
  ASSERT_TRUE(on_postgres.ok()) << on_postgres.status().message();
  EXPECT_EQ(on_postgres->engine, "postgres");
  ASSERT_TRUE(on_postgres->schema.has_value());
  EXPECT_EQ(on_postgres->schema->display, "schema.postgres.sql");
  EXPECT_EQ(on_postgres->schema->text, "create table if not exists pg(a bigint);\n");
  ASSERT_EQ(on_postgres->checks.size(), 1u);
  EXPECT_EQ(on_postgres->checks[0].file.display, "checks/10_positive.postgres.sql");
  EXPECT_FALSE(on_postgres->checks[0].warn_only);

  std::vector<std::string> described;
  for (const auto& choice : on_postgres->per_engine) described.push_back(DescribeEngineChoice(choice));
  EXPECT_EQ(described, (std::vector<std::string>{
                           "schema: sqlite runs schema.sql, postgres runs schema.postgres.sql",
                           "checks/10_positive: sqlite runs checks/10_positive.sql, postgres runs "
                           "checks/10_positive.postgres.sql",
                           "checks/20_fresh: sqlite runs checks/20_fresh.sqlite.sql, postgres skips it"}));
}

TEST(Validate, SaysWhichFileEachEngineRunsAndChecksTheSqliteOnes) {
  TempDir dir;
  PipelineFiles files;
  files.conf = "[source]\ntopic = t\n[columns]\nid = TEXT\n";
  files.steps = {{"10_copy.sql", "CREATE TABLE IF NOT EXISTS ids(id TEXT);\nINSERT INTO ids SELECT id FROM batch;"},
                 {"20_upsert.sqlite.sql", "INSERT OR REPLACE INTO ids SELECT id FROM batch;"},
                 // Not valid SQLite: never run on SQLite, so not checked here.
                 {"20_upsert.postgres.sql", "insert into ids select id from batch on conflict do nothing returning *;;; ("}};
  WritePipeline(dir.path(), files);
  std::vector<std::string> notes;
  std::vector<std::string> problems = ValidatePipeline(dir.path(), {}, &notes);
  EXPECT_TRUE(problems.empty()) << problems.front();
  EXPECT_EQ(notes, (std::vector<std::string>{"steps/20_upsert: sqlite runs steps/20_upsert.sqlite.sql, postgres runs "
                                             "steps/20_upsert.postgres.sql"}));

  // A broken SQLite file is reported by its own name.
  WriteFile(dir / "steps/20_upsert.sqlite.sql", "INSERT INTO nowhere SELECT id FROM batch;");
  problems = ValidatePipeline(dir.path());
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].rfind("steps/20_upsert.sqlite.sql:1", 0), 0u) << problems[0];
}

TEST(Config, ATopicNamedTwiceAndAnEmptyDatabaseAreRefused) {
  Result<PipelineConfig> twice = ParseConfig("[source]\ntopic = events, events\n", "pipeline.conf", "/tmp/p");
  ASSERT_FALSE(twice.ok());
  EXPECT_NE(twice.status().message().find("[source] topic: names 'events' twice"), std::string::npos)
      << twice.status().message();
  ConfigOverrides overrides;
  overrides.database = "";
  Result<PipelineConfig> empty = ParseConfig("[source]\ntopic = events\n", "pipeline.conf", "/tmp/p", overrides);
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("--db is empty"), std::string::npos) << empty.status().message();
}

}  // namespace
}  // namespace sluice
