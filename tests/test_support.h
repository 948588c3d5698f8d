// Shared helpers for sluice's tests: temporary pipeline directories, an
// embedded broker, running a pipeline in-process or through the real binary,
// and reading tables back as strings.
#pragma once

#include <map>
#include <memory>
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

// Writes `files` into `dir` (created if needed).
void WritePipeline(const std::string& dir, const PipelineFiles& files);
void WriteFile(const std::string& path, const std::string& content);
std::string ReadFile(const std::string& path);

// Loads the pipeline in `dir` and runs it in-process in `mode`.
Status RunPipeline(const std::string& dir, RunMode mode = RunMode::kUntilCaughtUp, const ConfigOverrides& overrides = {});

// Publishes JSON values (one message each, no key) to `topic`.
void ProduceValues(const std::string& brokers, const std::string& topic, const std::vector<std::string>& values,
                   int32_t partition = 0);

// Rows of `sql` on the database at `path`, each as "a|b|c" (NULL as "NULL").
std::vector<std::string> Query(const std::string& path, const std::string& sql);
// The single value of `sql`, as text.
std::string QueryOne(const std::string& path, const std::string& sql);

// Runs build/sluice with `args` (and extra environment "K=V" entries);
// returns its exit code and stores stdout+stderr in *output.
int RunSluice(const std::vector<std::string>& args, std::string* output, const std::vector<std::string>& env = {});

}  // namespace sluice::testing
