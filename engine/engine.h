// Engine: the batch loop, against three interfaces: a BatchSource (where
// messages come from), a Decoder (how their bytes become typed columns) and
// a Target (the database). One batch is one target transaction:
//   fetch -> begin -> seeds that changed -> decode and stage -> steps/*.sql in order
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
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "connectors/decoder.h"
#include "connectors/source.h"
#include "engine/config.h"
#include "sql/target.h"

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
  std::function<Status(Target*)> before_stage;
};

struct BatchOutcome {
  int64_t run_id = 0;
  RunRecord record;
  OffsetMap committed;  // next offsets stored by this batch
};

struct EngineOptions {
  // Take the pipeline lock exclusively (assignment = all) or shared (group).
  bool exclusive_lock = true;
  // What a refused lock tells the user to do (empty: the target's default,
  // which points at assignment = group).
  std::string lock_hint;
  // A throwaway target for one fixture case (TargetOptions::scratch).
  bool scratch = false;
};

class Engine {
 public:
  // Opens the target (taking the pipeline lock), installs the catalog, runs
  // schema.sql and checks the steps against an empty batch (rolled back),
  // all before the source is opened. Takes ownership of `source`.
  static Result<std::unique_ptr<Engine>> Open(const Pipeline& pipeline, std::unique_ptr<BatchSource> source,
                                              const EngineOptions& options = {});
  ~Engine();

  // Runs one batch (possibly empty). On failure the batch is rolled back, a
  // failed run is recorded, and the error names what failed.
  Result<BatchOutcome> RunBatch(const BatchOptions& options = {});

  // Runs batches in `options.mode` until done, a failure, or `stop`.
  // Returns Ok when stopped by `stop` after finishing the batch in flight.
  Status Run(const RunOptions& options, const std::atomic<bool>& stop);

  Target* target() { return target_.get(); }
  BatchSource* source() { return source_.get(); }

  // True when `error` was already logged, with its run, by the engine (a
  // failed batch); the CLI prints the others.
  bool Reported(const Status& error) const { return !error.ok() && error.message() == reported_; }

 private:
  Engine(const Pipeline& pipeline, std::unique_ptr<BatchSource> source)
      : pipeline_(pipeline), source_(std::move(source)) {}
  Status Prepare();
  // RunBatch(), run again when the database aborted the batch for a reason
  // the next attempt does not share (Status::RetryBatch: a serialization
  // failure, a deadlock, the connection lost): up to kBatchAttempts in all,
  // after a short, growing, jittered pause. The run modes use it; a single
  // RunBatch() (quarantine replay) does not, as its source cannot fetch a
  // batch again.
  Result<BatchOutcome> RunBatchRetrying();
  Status RunUntilCaughtUp(const std::atomic<bool>& stop, const std::function<void(const Progress&)>& progress);
  Status RunEvery(const RunOptions& options, const std::atomic<bool>& stop);
  // Records a failed run in its own transaction and logs the error once,
  // whether or not the record could be written (as a warning saying when it
  // is retried, for a batch that will be). Returns `error` (saying how often
  // the batch was tried, once the attempts ran out), or Aborted when a stop
  // request interrupted the batch.
  Status RecordFailure(RunRecord record, const Status& error);
  bool Stopping() const { return stop_ != nullptr && stop_->load(); }

  Pipeline pipeline_;
  std::unique_ptr<BatchSource> source_;
  std::unique_ptr<Target> target_;
  std::vector<Message> batch_;  // reused across batches
  std::unique_ptr<Decoder> decoder_;
  DecodedRow row_;  // reused across messages
  bool source_open_ = false;
  const std::atomic<bool>* stop_ = nullptr;  // set by Run(); interrupts SQL when true
  // While a batch stages and runs its steps, statements are interrupted on a
  // stop request or once the step's deadline passes.
  bool interruptible_ = false;
  std::optional<std::chrono::steady_clock::time_point> step_deadline_;
  std::string reported_;
  // The batch in flight as RunBatchRetrying() plans it: its attempt, of how
  // many, the pause before the next one, and whether the previous attempt
  // fetched messages (which this one must fetch again).
  struct Attempt {
    int number = 1;
    int of = 1;
    std::chrono::milliseconds pause{0};
    bool refetch = false;
    bool fetched = false;  // set by RunBatch()
  };
  Attempt attempt_;
  const OffsetMap* pass_ends_ = nullptr;  // the end offsets of the pass in progress, for the batch line
};

}  // namespace sluice
