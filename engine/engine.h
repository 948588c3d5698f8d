// Engine: the batch loop. One batch is one SQLite transaction:
//   fetch -> begin -> seeds that changed -> staging -> steps/*.sql in order
//   -> check and store next offsets -> record the run -> commit
//   -> commit offsets to the Kafka group.
// A failure anywhere before the commit rolls everything back and records a
// failed run in its own small transaction; offsets stay where they were, so
// the next run retries the same data. The run modes (once, until caught up,
// every DURATION) are loops over RunBatch().
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "connectors/source.h"
#include "engine/config.h"
#include "engine/lock.h"
#include "engine/status.h"
#include "sql/catalog.h"
#include "sql/database.h"
#include "sql/staging.h"

namespace sluice {

enum class RunMode { kOnce, kUntilCaughtUp, kEvery };

// Progress of an until-caught-up pass, reported after each batch.
struct Progress {
  int64_t done = 0;     // messages processed in this pass
  int64_t backlog = 0;  // messages between the positions and the end offsets at the pass's start
  double elapsed_s = 0;
  bool finished = false;
};

struct RunOptions {
  RunMode mode = RunMode::kUntilCaughtUp;
  std::chrono::milliseconds every{std::chrono::minutes(5)};
  std::function<void(const Progress&)> progress;  // optional
};

struct BatchOptions {
  // Store and commit the batch's next offsets. Off for re-running messages
  // that are already behind the stored offsets (quarantine replay).
  bool store_offsets = true;
  // Runs inside the batch transaction before staging (e.g. removing the
  // quarantine rows being replayed).
  std::function<Status(Database*)> before_stage;
};

struct BatchOutcome {
  int64_t run_id = 0;
  RunRecord record;
  OffsetMap committed;  // next offsets stored by this batch
};

struct EngineOptions {
  // Take the pipeline lock exclusively (assignment = all) or shared (group).
  bool exclusive_lock = true;
};

class Engine {
 public:
  // Opens the target database, takes the pipeline lock, installs the catalog,
  // runs schema.sql and checks the steps against an empty batch (rolled
  // back), all before the source is opened. Takes ownership of `source`.
  static Result<std::unique_ptr<Engine>> Open(const Pipeline& pipeline, std::unique_ptr<BatchSource> source,
                                              const EngineOptions& options = {});
  ~Engine();

  // Runs one batch (possibly empty). On failure the batch is rolled back, a
  // failed run is recorded, and the error names what failed.
  Result<BatchOutcome> RunBatch(const BatchOptions& options = {});

  // Runs batches in `options.mode` until done, a failure, or `stop`.
  // Returns Ok when stopped by `stop` after finishing the batch in flight.
  Status Run(const RunOptions& options, const std::atomic<bool>& stop);

  Database* database() { return db_.get(); }
  BatchSource* source() { return source_.get(); }

 private:
  Engine(const Pipeline& pipeline, std::unique_ptr<BatchSource> source)
      : pipeline_(pipeline), source_(std::move(source)) {}
  Status Prepare();
  Status RunUntilCaughtUp(const std::atomic<bool>& stop, const std::function<void(const Progress&)>& progress);
  Status RecordFailure(RunRecord record, const Status& error);

  Pipeline pipeline_;
  std::unique_ptr<BatchSource> source_;
  std::unique_ptr<PipelineLock> lock_;
  std::unique_ptr<Database> db_;
  std::unique_ptr<Catalog> catalog_;
  std::unique_ptr<StagingWriter> staging_;
  std::vector<Message> batch_;  // reused across batches
  bool source_open_ = false;
};

}  // namespace sluice
