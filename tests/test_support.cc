// Test helpers implementation.
#include "test_support.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
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

void BrokerTest::StartEmbeddedBroker(const std::string& topic, int partitions) {
  broker = StartBroker(topic, partitions);
  ASSERT_NE(broker, nullptr);
  brokers = broker->bootstrap();
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

std::vector<std::string> Query(const std::string& path, const std::string& sql, std::string* error) {
  std::vector<std::string> rows;
  auto fail = [&](const std::string& what) {
    if (error) *error = what;
    else ADD_FAILURE() << what;
  };
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    fail("cannot open " + path + ": " + (db ? sqlite3_errmsg(db) : "out of memory"));
    sqlite3_close(db);
    return rows;
  }
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    fail(sql + ": " + sqlite3_errmsg(db));
    sqlite3_close(db);
    return rows;
  }
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    std::string row;
    for (int column = 0; column < sqlite3_column_count(stmt); ++column) {
      if (column) row += "|";
      const unsigned char* text = sqlite3_column_text(stmt, column);
      row += text ? std::string(reinterpret_cast<const char*>(text), sqlite3_column_bytes(stmt, column)) : "NULL";
    }
    rows.push_back(row);
  }
  if (rc != SQLITE_DONE) fail(sql + ": " + sqlite3_errmsg(db));
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return rows;
}

std::string Exec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  std::string error;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK) {
    error = "cannot open " + path + ": " + (db ? sqlite3_errmsg(db) : "out of memory");
  } else {
    sqlite3_busy_timeout(db, 5000);
    char* message = nullptr;
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
      error = sql + ": " + (message ? message : sqlite3_errmsg(db));
    }
    sqlite3_free(message);
  }
  sqlite3_close(db);
  return error;
}

std::string QueryOne(const std::string& path, const std::string& sql) {
  std::vector<std::string> rows = Query(path, sql);
  return rows.empty() ? "<no row>" : rows[0];
}

std::optional<std::string> TryQueryOne(const std::string& path, const std::string& sql) {
  if (access(path.c_str(), F_OK) != 0) return std::nullopt;
  std::string error;
  std::vector<std::string> rows = Query(path, sql, &error);
  if (!error.empty() || rows.empty()) return std::nullopt;
  return rows[0];
}

std::string DiffRows(const std::string& what, std::vector<std::string> expected, std::vector<std::string> actual) {
  std::sort(expected.begin(), expected.end());
  std::sort(actual.begin(), actual.end());
  if (expected == actual) return "";
  std::vector<std::string> missing, extra;
  std::set_difference(expected.begin(), expected.end(), actual.begin(), actual.end(), std::back_inserter(missing));
  std::set_difference(actual.begin(), actual.end(), expected.begin(), expected.end(), std::back_inserter(extra));
  std::ostringstream out;
  out << what << ": expected " << expected.size() << " rows, found " << actual.size() << "; " << missing.size()
      << " missing, " << extra.size() << " unexpected (or doubled)";
  for (size_t i = 0; i < std::min<size_t>(missing.size(), 5); ++i) out << "\n    missing:    " << missing[i];
  for (size_t i = 0; i < std::min<size_t>(extra.size(), 5); ++i) out << "\n    unexpected: " << extra[i];
  return out.str() + "\n";
}

bool Contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

size_t CountOccurrences(const std::string& text, const std::string& part) {
  size_t count = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + part.size())) ++count;
  return count;
}

std::string Tail(const std::string& text, size_t max) {
  return text.size() > max ? "...\n" + text.substr(text.size() - max) : text;
}

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

namespace {

// `BEFORE ENV... sluice ARGS... AFTER 2>&1` run by /bin/sh, where the shell
// snippets may redirect standard input ("cat FILE |" before, "< /dev/null" after).
int RunSluiceCommand(const std::string& before, const std::vector<std::string>& env,
                     const std::vector<std::string>& args, const std::string& after, std::string* output) {
  std::string command = before;
  for (const auto& entry : env) command += " " + entry;
  command += " " + ShellQuote(SLUICE_BINARY);
  for (const auto& arg : args) command += " " + ShellQuote(arg);
  return RunShell(command + " " + after + " 2>&1", output);
}

size_t FileSize(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  return in ? static_cast<size_t>(in.tellg()) : 0;
}

// What `path` holds from byte `offset` on.
std::string ReadFrom(const std::string& path, size_t offset) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  in.seekg(static_cast<std::streamoff>(offset));
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

}  // namespace

int RunSluice(const std::vector<std::string>& args, std::string* output, const std::vector<std::string>& env) {
  return RunSluiceCommand("", env, args, "", output);
}

int RunSluiceNoStdin(const std::vector<std::string>& args, std::string* output) {
  return RunSluiceCommand("", {}, args, "< /dev/null", output);
}

int RunSluicePipedFrom(const std::string& file, const std::vector<std::string>& args, std::string* output) {
  return RunSluiceCommand("cat " + ShellQuote(file) + " |", {}, args, "", output);
}

pid_t SpawnSluice(const std::vector<std::string>& args, const posix_spawn_file_actions_t* actions,
                  const std::vector<std::string>& env) {
  std::vector<std::string> argv_strings = {SLUICE_BINARY};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& arg : argv_strings) argv.push_back(arg.data());
  argv.push_back(nullptr);
  // A crash point set for this process must not kill its children.
  std::vector<std::string> env_strings;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    if (std::string(*entry).rfind("SLUICE_CRASH_AT=", 0) != 0) env_strings.push_back(*entry);
  }
  env_strings.insert(env_strings.end(), env.begin(), env.end());
  std::vector<char*> envp;
  for (auto& entry : env_strings) envp.push_back(entry.data());
  envp.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, argv[0], actions, nullptr, argv.data(), envp.data()) != 0) return -1;
  return pid;
}

Child::Child(const std::vector<std::string>& args, const std::string& log, const std::vector<std::string>& env)
    : log_(log), start_size_(FileSize(log)) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  pid_ = SpawnSluice(args, &actions, env);
  posix_spawn_file_actions_destroy(&actions);
  if (pid_ < 0) ADD_FAILURE() << "cannot start " << SLUICE_BINARY;
}

Child::~Child() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    Reap(0);
  }
}

void Child::Reap(int flags) {
  int status = 0;
  pid_t done = ::waitpid(pid_, &status, flags);
  if (done == pid_) {
    pid_ = -1;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
  } else if (done < 0) {
    pid_ = -1;
  }
}

bool Child::running() {
  if (pid_ <= 0) return false;
  Reap(WNOHANG);
  return pid_ > 0;
}

std::optional<int> Child::Wait(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return exit_code_;
}

std::optional<int> Child::Stop(int signal, std::chrono::milliseconds timeout) {
  if (pid_ > 0) ::kill(pid_, signal);
  return Wait(timeout);
}

int Child::KillNow() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    Reap(0);
  }
  return exit_code_.value_or(-1);
}

std::string Child::output(size_t max) const { return Tail(full_output(), max); }

std::string Child::full_output() const { return ReadFrom(log_, start_size_); }

int RunToEnd(const std::vector<std::string>& args, const std::string& log, std::string* output,
             const std::vector<std::string>& env, std::chrono::milliseconds timeout) {
  Child child(args, log, env);
  std::optional<int> code = child.Wait(timeout);
  if (!code) {
    child.KillNow();
    ADD_FAILURE() << "sluice did not finish within " << timeout.count() << " ms\n" << child.output(4000);
  }
  if (output) *output = child.full_output();
  return code.value_or(-1);
}

}  // namespace sluice::testing
