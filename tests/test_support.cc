// Test helpers implementation.
#include "test_support.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "connectors/kafka_source.h"

namespace sluice::testing {
namespace fs = std::filesystem;

TempDir::TempDir() {
  std::string pattern = (fs::temp_directory_path() / "sluice-test-XXXXXX").string();
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  char* made = mkdtemp(buffer.data());
  EXPECT_NE(made, nullptr);
  path_ = made ? made : "";
}

TempDir::~TempDir() {
  std::error_code ec;
  if (!path_.empty()) fs::remove_all(path_, ec);
}

std::unique_ptr<EmbeddedBroker> StartBroker(const std::string& topic, int partitions) {
  auto broker = EmbeddedBroker::Start();
  EXPECT_TRUE(broker.ok()) << broker.status().message();
  if (!broker.ok()) return nullptr;
  Status st = (*broker)->CreateTopic(topic, partitions);
  EXPECT_TRUE(st.ok()) << st.message();
  return std::move(*broker);
}

std::string BasicConf(const std::string& brokers, const std::string& topic, const std::string& columns,
                      const std::string& extra) {
  return "[source]\nbrokers = " + brokers + "\ntopic = " + topic +
         "\ngroup = test-group\nstart = earliest\n[batch]\nmax_wait = 500ms\n[columns]\n" + columns +
         "\n[target]\ndatabase = pipeline.db\n" + extra;
}

void WriteFile(const std::string& path, const std::string& content) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream out(path, std::ios::binary);
  out << content;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

void WritePipeline(const std::string& dir, const PipelineFiles& files) {
  fs::create_directories(dir);
  WriteFile(dir + "/pipeline.conf", files.conf);
  if (!files.schema.empty()) WriteFile(dir + "/schema.sql", files.schema);
  for (const auto& [name, sql] : files.steps) WriteFile(dir + "/steps/" + name, sql);
  for (const auto& [name, csv] : files.seeds) WriteFile(dir + "/seeds/" + name, csv);
}

Status RunPipeline(const std::string& dir, RunMode mode, const ConfigOverrides& overrides) {
  Result<Pipeline> pipeline = LoadPipeline(dir, overrides);
  if (!pipeline.ok()) return pipeline.status();
  EngineOptions options;
  options.exclusive_lock = pipeline->config.source.assignment == KafkaSourceOptions::Assignment::kAll;
  auto engine = Engine::Open(*pipeline, std::make_unique<KafkaSource>(pipeline->config.source), options);
  if (!engine.ok()) return engine.status();
  RunOptions run;
  run.mode = mode;
  run.every = std::chrono::milliseconds(200);
  std::atomic<bool> stop{false};
  return (*engine)->Run(run, stop);
}

void ProduceValues(const std::string& brokers, const std::string& topic, const std::vector<std::string>& values,
                   int32_t partition) {
  std::vector<OutgoingMessage> messages;
  for (const auto& value : values) {
    OutgoingMessage message;
    message.value = value;
    message.partition = partition;
    messages.push_back(message);
  }
  Status st = ProduceMessages(brokers, topic, messages);
  ASSERT_TRUE(st.ok()) << st.message();
}

std::vector<std::string> Query(const std::string& path, const std::string& sql) {
  std::vector<std::string> rows;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << "cannot open " << path;
    sqlite3_close(db);
    return rows;
  }
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db);
    sqlite3_close(db);
    return rows;
  }
  while (sqlite3_step(stmt) == SQLITE_ROW) {
    std::string row;
    for (int column = 0; column < sqlite3_column_count(stmt); ++column) {
      if (column) row += "|";
      const unsigned char* text = sqlite3_column_text(stmt, column);
      row += text ? std::string(reinterpret_cast<const char*>(text), sqlite3_column_bytes(stmt, column)) : "NULL";
    }
    rows.push_back(row);
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return rows;
}

std::string QueryOne(const std::string& path, const std::string& sql) {
  std::vector<std::string> rows = Query(path, sql);
  return rows.empty() ? "<no row>" : rows[0];
}

int RunSluice(const std::vector<std::string>& args, std::string* output, const std::vector<std::string>& env) {
  std::string command;
  for (const auto& entry : env) command += entry + " ";
  command += SLUICE_BINARY;
  for (const auto& arg : args) {
    std::string quoted = "'";
    for (char c : arg) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
    command += " " + quoted + "'";
  }
  command += " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return -1;
  std::string out;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) out.append(buffer, n);
  int status = pclose(pipe);
  if (output) *output = out;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace sluice::testing
