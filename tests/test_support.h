// Shared helpers for sluice's tests: temporary pipeline directories, an
// embedded broker, running a pipeline in-process or through the real binary
// (in the foreground or the background), and reading tables back as strings.
#pragma once

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

// Rows of `sql` on the database at `path`, each as "a|b|c" (NULL as "NULL").
std::vector<std::string> Query(const std::string& path, const std::string& sql);
// The single value of `sql`, as text.
std::string QueryOne(const std::string& path, const std::string& sql);
// The single value of `sql` (NULL as "NULL"), or nullopt while the database or
// table is not there or not readable yet; unlike QueryOne, reports no failure.
std::optional<std::string> TryQueryOne(const std::string& path, const std::string& sql);

// True if `part` occurs in `text`.
bool Contains(const std::string& text, const std::string& part);

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

// Starts build/sluice with `args`, this process's environment and `actions`
// (may be null); returns its pid, or -1 when it cannot be started.
pid_t SpawnSluice(const std::vector<std::string>& args, const posix_spawn_file_actions_t* actions);

// `sluice ARGS...` in the background, stdout and stderr to `log`, stdin from
// /dev/null. The destructor kills (SIGKILL) and reaps it if it still runs, so
// no test path leaves a process behind.
class BackgroundSluice {
 public:
  BackgroundSluice(const std::vector<std::string>& args, const std::string& log);
  ~BackgroundSluice();
  BackgroundSluice(const BackgroundSluice&) = delete;
  BackgroundSluice& operator=(const BackgroundSluice&) = delete;

  // The pid, or -1 when it could not be started or has been reaped.
  pid_t pid() const { return pid_; }
  // True while the process runs; reaps it (and records its exit code) once it has exited.
  bool running();
  // Sends `signal` and waits up to `timeout` for the exit; returns the exit
  // code (128 + signal when killed by one), or nullopt on timeout.
  std::optional<int> Stop(int signal, std::chrono::milliseconds timeout);
  // The last 3000 bytes of what it printed (a runaway process can print a lot).
  std::string output() const;

 private:
  std::string log_;
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
};

}  // namespace sluice::testing
