// Test helpers implementation.
#include "test_support.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "connectors/kafka_source.h"

extern char** environ;

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

PipelineFiles AppendPipeline(const std::string& brokers) {
  PipelineFiles files;
  files.conf = BasicConf(brokers, "events", "id = TEXT\namount = REAL");
  files.schema = "CREATE TABLE IF NOT EXISTS events(id TEXT, amount REAL, part INTEGER, off INTEGER);\n";
  files.steps["10_append.sql"] =
      "INSERT INTO events(id, amount, part, off) SELECT id, amount, _kafka_partition, _kafka_offset FROM batch;\n";
  return files;
}

std::vector<std::string> IdAmountValues(const std::string& prefix, int first, int count) {
  std::vector<std::string> values;
  for (int i = first; i < first + count; ++i) {
    values.push_back(R"({"id":")" + prefix + std::to_string(i) + R"(","amount":)" + std::to_string(i) + "}");
  }
  return values;
}

bool ReplaceFirst(std::string* text, const std::string& from, const std::string& to) {
  size_t at = text->find(from);
  if (at == std::string::npos) return false;
  text->replace(at, from.size(), to);
  return true;
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

std::unique_ptr<EmbeddedBroker> StartAppendPipeline(const std::string& dir, int messages) {
  auto broker = StartBroker("events", 1);
  if (broker == nullptr) return nullptr;
  WritePipeline(dir, AppendPipeline(broker->bootstrap()));
  ProduceValues(broker->bootstrap(), "events", IdAmountValues("e", 0, messages));
  return broker;
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

std::optional<std::string> TryQueryOne(const std::string& path, const std::string& sql) {
  if (access(path.c_str(), F_OK) != 0) return std::nullopt;
  sqlite3* db = nullptr;
  std::optional<std::string> value;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 2000);
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK && sqlite3_step(stmt) == SQLITE_ROW) {
      const unsigned char* text = sqlite3_column_text(stmt, 0);
      value = text ? reinterpret_cast<const char*>(text) : "NULL";
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  return value;
}

bool Contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return done();
}

std::string ShellQuote(const std::string& arg) {
  std::string quoted = "'";
  for (char c : arg) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

int RunShell(const std::string& command, std::string* output) {
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

int RunSluice(const std::vector<std::string>& args, std::string* output, const std::vector<std::string>& env) {
  std::string command;
  for (const auto& entry : env) command += entry + " ";
  command += SLUICE_BINARY;
  for (const auto& arg : args) command += " " + ShellQuote(arg);
  command += " 2>&1";
  return RunShell(command, output);
}

pid_t SpawnSluice(const std::vector<std::string>& args, const posix_spawn_file_actions_t* actions) {
  std::vector<std::string> argv_strings = {SLUICE_BINARY};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& arg : argv_strings) argv.push_back(arg.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, argv[0], actions, nullptr, argv.data(), environ) != 0) return -1;
  return pid;
}

BackgroundSluice::BackgroundSluice(const std::vector<std::string>& args, const std::string& log) : log_(log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  pid_ = SpawnSluice(args, &actions);
  posix_spawn_file_actions_destroy(&actions);
}

BackgroundSluice::~BackgroundSluice() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
}

bool BackgroundSluice::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
    return false;
  }
  return true;
}

std::optional<int> BackgroundSluice::Stop(int signal, std::chrono::milliseconds timeout) {
  if (pid_ > 0) kill(pid_, signal);
  if (!WaitFor([&] { return !running(); }, timeout)) return std::nullopt;
  return exit_code_;
}

std::string BackgroundSluice::output() const {
  std::string all = ReadFile(log_);
  return all.size() > 3000 ? "...\n" + all.substr(all.size() - 3000) : all;
}

}  // namespace sluice::testing
