// Shared helpers for sluice's tests: temporary pipeline directories, an
// embedded broker, running a pipeline in-process or through the real binary
// (in the foreground or the background), and reading tables back as strings.
#pragma once

#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "connectors/embedded_broker.h"
#include "connectors/producer.h"
#include "engine/engine.h"

namespace sluice::testing {

// A directory under /tmp removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Starts an embedded broker with `topic` of `partitions` partitions.
std::unique_ptr<EmbeddedBroker> StartBroker(const std::string& topic = "events", int partitions = 1);

// A fixture with an embedded broker and a fresh pipeline directory.
class BrokerTest : public ::testing::Test {
 protected:
  // Starts `broker` with `topic` of `partitions` partitions; a fatal failure
  // when it cannot (call it in ASSERT_NO_FATAL_FAILURE).
  void StartEmbeddedBroker(const std::string& topic, int partitions);

  std::unique_ptr<EmbeddedBroker> broker;
  std::string brokers;  // its bootstrap address
  TempDir dir;
  const std::string db = dir / "pipeline.db";
  const std::string log = dir / "run.log";  // for the processes a test starts
};

// The files of a pipeline directory. `conf` is the whole pipeline.conf.
struct PipelineFiles {
  std::string conf;
  std::string schema;                          // schema.sql; empty: none
  std::map<std::string, std::string> steps;    // file name -> SQL
  std::map<std::string, std::string> seeds;    // file name -> CSV
};

// A minimal pipeline.conf reading `topic` from `brokers` into pipeline.db,
// with `columns` lines (e.g. "id = TEXT\namount = REAL").
std::string BasicConf(const std::string& brokers, const std::string& topic, const std::string& columns,
                      const std::string& extra = "");

// A pipeline on topic "events" that appends every batch row to
// events(id, amount, part, off); no key, so a message processed twice is there twice.
PipelineFiles AppendPipeline(const std::string& brokers);

// JSON values {"id":"<prefix><i>","amount":<i>} for i in [first, first + count).
std::vector<std::string> IdAmountValues(const std::string& prefix, int first, int count);

// Replaces the first `from` in *text with `to`; false (text unchanged) when there is none.
bool ReplaceFirst(std::string* text, const std::string& from, const std::string& to);

// Writes `files` into `dir` (created if needed).
void WritePipeline(const std::string& dir, const PipelineFiles& files);
void WriteFile(const std::string& path, const std::string& content);
std::string ReadFile(const std::string& path);

// Loads the pipeline in `dir` and runs it in-process in `mode`.
Status RunPipeline(const std::string& dir, RunMode mode = RunMode::kUntilCaughtUp, const ConfigOverrides& overrides = {});

// Publishes JSON values (one message each, no key) to `topic`.
void ProduceValues(const std::string& brokers, const std::string& topic, const std::vector<std::string>& values,
                   int32_t partition = 0);

// Starts a broker (topic "events", one partition), writes AppendPipeline into
// `dir` and produces IdAmountValues("e", 0, messages); nullptr when the broker cannot start.
std::unique_ptr<EmbeddedBroker> StartAppendPipeline(const std::string& dir, int messages);

// Rows of `sql` on the database at `path` (read-only; waits up to 5 s for a
// lock), each as "a|b|c" (NULL as "NULL"). A failure (no database, bad SQL, an
// error while stepping) is a test failure, or with `error` is stored there
// instead (the rows read until then are returned).
std::vector<std::string> Query(const std::string& path, const std::string& sql, std::string* error = nullptr);
// The single value of `sql`, as text.
std::string QueryOne(const std::string& path, const std::string& sql);
// The single value of `sql` (NULL as "NULL"), or nullopt while the database or
// table is not there or not readable yet; unlike QueryOne, reports no failure.
std::optional<std::string> TryQueryOne(const std::string& path, const std::string& sql);
// Runs `sql` (one or more statements) on the database at `path`, creating it
// when it does not exist; returns "" or what failed.
std::string Exec(const std::string& path, const std::string& sql);

// "" when `expected` and `actual` hold the same rows (in any order), else what
// differs, headed by `what` (a few examples of each kind).
std::string DiffRows(const std::string& what, std::vector<std::string> expected, std::vector<std::string> actual);

// True if `part` occurs in `text`.
bool Contains(const std::string& text, const std::string& part);
// How often `part` occurs in `text` (without overlaps).
size_t CountOccurrences(const std::string& text, const std::string& part);
// The last `max` bytes of `text` (after "...\n" when cut), for failure messages.
std::string Tail(const std::string& text, size_t max = 4000);

// Polls `done` every 50 ms until it is true or `timeout` passes; returns its last value.
bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds timeout);

// `arg` single-quoted for /bin/sh.
std::string ShellQuote(const std::string& arg);

// Runs `command` with /bin/sh (popen); returns its exit code (128 + signal when
// killed by one, -1 when it cannot run) and stores its stdout in *output.
int RunShell(const std::string& command, std::string* output);

// Runs build/sluice with `args` (and extra environment "K=V" entries);
// returns its exit code and stores stdout+stderr in *output.
int RunSluice(const std::vector<std::string>& args, std::string* output, const std::vector<std::string>& env = {});
// The same with stdin from /dev/null (never a terminal, even when the tests run from one).
int RunSluiceNoStdin(const std::vector<std::string>& args, std::string* output);
// The same as `cat FILE | sluice ARGS...` (stdin a pipe, not a seekable file).
int RunSluicePipedFrom(const std::string& file, const std::vector<std::string>& args, std::string* output);

// Starts build/sluice with `args` and `actions` (may be null), in this
// process's environment without SLUICE_CRASH_AT, plus `env` ("K=V" entries);
// returns its pid, or -1 when it cannot be started.
pid_t SpawnSluice(const std::vector<std::string>& args, const posix_spawn_file_actions_t* actions,
                  const std::vector<std::string>& env = {});

// `sluice ARGS...` in the background (posix_spawn), with SpawnSluice's
// environment plus `env`, stdin from /dev/null and stdout and stderr appended
// to `log` (which earlier processes may share: what this one printed is what
// was added after its start). The destructor kills (SIGKILL) and reaps it if
// it still runs, so no test path (an ASSERT that returns early) leaves a
// process behind.
class Child {
 public:
  Child(const std::vector<std::string>& args, const std::string& log, const std::vector<std::string>& env = {});
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // The pid, or -1 when it could not be started or has been reaped.
  pid_t pid() const { return pid_; }
  // True while the process runs; reaps it (and records its exit code) once it has exited.
  bool running();
  // The exit code (128 + signal when killed by one), once reaped.
  std::optional<int> exit_code() const { return exit_code_; }
  // Waits up to `timeout` for the exit; the exit code, or nullopt on timeout.
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  // Sends `signal` and waits up to `timeout` for the exit; the exit code, or nullopt on timeout.
  std::optional<int> Stop(int signal, std::chrono::milliseconds timeout);
  // SIGKILL and reap; the exit code (137 unless it had exited already).
  int KillNow();
  // The last `max` bytes of what it printed (a runaway process can print a lot).
  std::string output(size_t max = 3000) const;
  // Everything it printed.
  std::string full_output() const;

 private:
  void Reap(int flags);

  std::string log_;
  size_t start_size_ = 0;
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
};

// The name Child had before the helpers were merged (offsets_test and soak_test use it).
using BackgroundSluice = Child;

// Runs `sluice ARGS...` as a Child logging to `log` and waits up to `timeout`
// for its end; returns the exit code and stores what it printed in *output
// (when not null). When it does not end in time it is killed, the test fails
// and -1 is returned.
int RunToEnd(const std::vector<std::string>& args, const std::string& log, std::string* output,
             const std::vector<std::string>& env = {},
             std::chrono::milliseconds timeout = std::chrono::milliseconds(60000));

}  // namespace sluice::testing
