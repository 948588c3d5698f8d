// Engine implementation: one batch per transaction, run modes, the batch log line.
#include "engine/engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <limits>
#include <map>
#include <random>
#include <thread>

#include "engine/crash_point.h"
#include "common/time.h"

namespace sluice {
namespace {

using Clock = std::chrono::steady_clock;

// A batch the database aborted (Status::RetryBatch) is tried this often in
// all. Serialization failures and deadlocks between workers upserting into
// the same aggregate rows rarely repeat more than once or twice; a lost
// connection needs one more attempt, which waits for the server itself
// (the target reconnects for up to [target] busy_timeout).
constexpr int kBatchAttempts = 4;
// The pause before the second attempt, doubled before each further one.
constexpr std::chrono::milliseconds kFirstRetryPause(200);

// `pause` give or take a quarter, at random: two workers whose batches
// deadlocked each other do not retry in step and collide again.
std::chrono::milliseconds Jittered(std::chrono::milliseconds pause) {
  static thread_local std::mt19937 random(std::random_device{}());
  std::uniform_real_distribution<double> factor(0.75, 1.25);
  return std::chrono::milliseconds(std::llround(static_cast<double>(pause.count()) * factor(random)));
}

double MillisSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// A summary a person reads at a glance: "events[0,3]" for up to four
// partitions, "12 partitions of orders" beyond.
std::string DescribePartitions(const std::vector<PartitionRange>& ranges) {
  std::map<std::string, std::vector<int32_t>> by_topic;
  for (const auto& range : ranges) by_topic[range.partition.first].push_back(range.partition.second);
  std::string out;
  for (auto& [topic, partitions] : by_topic) {
    std::sort(partitions.begin(), partitions.end());
    std::string part;
    if (partitions.size() <= 4) {
      std::string list;
      for (int32_t partition : partitions) list += (list.empty() ? "" : ",") + std::to_string(partition);
      part = topic + "[" + list + "]";
    } else {
      part = std::to_string(partitions.size()) + " partitions of " + topic;
    }
    out += (out.empty() ? "" : ", ") + part;
  }
  return out.empty() ? "no partition" : out;
}

std::string DescribeOffsets(const OffsetMap& offsets) {
  std::string out;
  for (const auto& [tp, offset] : offsets) {
    out += (out.empty() ? "" : " ") + tp.first + "[" + std::to_string(tp.second) + "]=" + std::to_string(offset);
  }
  return out;
}

}  // namespace

Result<std::unique_ptr<Engine>> Engine::Open(const Pipeline& pipeline, std::unique_ptr<BatchSource> source,
                                             const EngineOptions& options) {
  std::unique_ptr<Engine> engine(new Engine(pipeline, std::move(source)));
  TargetOptions target_options;
  target_options.database = pipeline.config.database;
  target_options.pipeline = pipeline.config.source.group;  // offsets belong to the pipeline's consumer group
  target_options.busy_timeout_ms = pipeline.config.busy_timeout_ms;
  target_options.file_mode = pipeline.config.file_mode;
  target_options.lock = options.exclusive_lock ? TargetOptions::Lock::kExclusive : TargetOptions::Lock::kShared;
  target_options.lock_hint = options.lock_hint;
  target_options.scratch = options.scratch;
  Result<std::unique_ptr<Target>> target = Target::Open(target_options);
  if (!target.ok()) return target.status();
  engine->target_ = std::move(*target);
  Engine* self = engine.get();
  engine->target_->SetInterruptCheck([self] {
    if (!self->interruptible_) return false;
    return self->Stopping() || (self->step_deadline_ && Clock::now() > *self->step_deadline_);
  });
  SLUICE_RETURN_IF_ERROR(engine->Prepare());

  Target* target_ptr = engine->target_.get();
  // A renamed [source] group is a new pipeline to the offsets: say so when
  // other pipelines have read these topics into this database.
  Result<OffsetMap> own = target_ptr->AllStoredOffsets();
  if (own.ok() && own->empty()) {
    Result<std::vector<std::string>> others = target_ptr->OtherPipelines(pipeline.config.source.topics);
    if (others.ok() && !others->empty()) {
      std::string names;
      for (const auto& name : *others) names += (names.empty() ? "'" : ", '") + name + "'";
      spdlog::warn("pipeline '{}' has no offsets in {}, but {} read the same topics into it: this pipeline starts "
                   "where [source] start says. If [source] group was renamed, rename it back (offsets belong to the "
                   "group), or the data is read a second time",
                   pipeline.config.source.group, DescribeDatabase(pipeline.config.database), names);
    }
  }
  std::string opened_at = NowIso();
  engine->source_->SetLastReadLookup([target_ptr]() { return target_ptr->LastRead(); });
  Status opened = engine->source_->Open([target_ptr]() { return target_ptr->AllStoredOffsets(); });
  if (!opened.ok() && opened.code() != Status::Code::kDataLoss) return opened;
  if (!opened.ok()) {
    // Data loss or a log that is not the one read is recorded as a failed
    // run too, so `sluice status` shows why nothing moves; the caller logs it.
    RunRecord record;
    record.started_at = opened_at;
    record.status = "failed";
    record.error = opened.message();
    (void)target_ptr->FinishRun(record);
    return opened;
  }
  engine->source_open_ = true;
  return engine;
}

Engine::~Engine() {
  if (source_ && source_open_) source_->Close();
}

Status Engine::Prepare() {
  SLUICE_RETURN_IF_ERROR(
      target_->Prepare(pipeline_.schema, pipeline_.config.columns, pipeline_.config.retention));
  if (target_->migrated()) {
    spdlog::info("_sluice_offsets is now keyed by pipeline; its rows were assigned to pipeline '{}' (consumer group)",
                 pipeline_.config.source.group);
  }
  Result<std::unique_ptr<Decoder>> decoder = MakeDecoder("json", pipeline_.config.columns);
  if (!decoder.ok()) return decoder.status();
  decoder_ = std::move(*decoder);
  // Check the steps against an empty batch before anything is consumed: a
  // syntax error or a missing table fails here, naming the file and line.
  std::vector<SqlFile> checks;
  for (const auto& check : pipeline_.checks) checks.push_back(check.file);
  return target_->CheckSteps(pipeline_.steps, checks, pipeline_.seeds)
      .WithContext("pipeline check failed (nothing was consumed)");
}

Status Engine::RecordFailure(RunRecord record, const Status& error) {
  interruptible_ = false;
  step_deadline_.reset();
  if (Stopping()) {
    // Interrupted on request: not a failure of the pipeline, so no failed run.
    Status stopped = Status::Aborted("stopped by a signal: the batch in flight was rolled back, offsets unchanged");
    spdlog::warn("{}", stopped.message());
    reported_ = stopped.message();
    return stopped;
  }
  // A batch the database aborted is run again: a warning saying so, not an
  // error, unless this was its last attempt.
  const bool retried = error.code() == Status::Code::kRetryBatch && attempt_.number < attempt_.of;
  Status failed = error;
  if (error.code() == Status::Code::kRetryBatch && !retried && attempt_.of > 1) {
    failed = Status::RetryBatch(error.message() + " (the batch was tried " + std::to_string(attempt_.of) +
                                " times, each attempt rolled back; offsets unchanged)");
  }
  const std::string next = retried ? fmt::format("; retrying the batch (attempt {} of {}) in {:.1f}s",
                                                 attempt_.number + 1, attempt_.of, attempt_.pause.count() / 1000.0)
                                   : std::string();
  auto log = [retried](const std::string& line) {
    if (retried) {
      spdlog::warn("{}", line);
    } else {
      spdlog::error("{}", line);
    }
  };
  reported_ = failed.message();
  record.run_id = 0;
  record.status = "failed";
  record.error = failed.message();
  if (!target_->usable()) {
    // The database was deleted or replaced, or (PostgreSQL) the connection
    // is lost: the failed run cannot be written now.
    log("batch failed: " + failed.message() + next);
    return failed;
  }
  Result<int64_t> id = target_->FinishRun(record);
  if (id.ok()) {
    log("run " + std::to_string(*id) + " failed: " + failed.message() + next);
  } else {
    // The error must reach the operator even when the database cannot take
    // the failed run (locked by another connection, deleted, full).
    log("batch failed: " + failed.message() + next + " (the failed run could not be recorded: " +
        id.status().message() + ")");
  }
  return failed;
}

Result<BatchOutcome> Engine::RunBatch(const BatchOptions& options) {
  BatchOutcome outcome;
  RunRecord& record = outcome.record;
  record.started_at = NowIso();
  record.status = "running";
  batch_.clear();

  auto fetch_start = Clock::now();
  // A retried batch's messages are known to be in the log, but the source
  // was re-positioned after the rollback and fetches them again: wait for
  // them as long as for a broker to answer, or the attempt would run an
  // empty batch in their place (an attempt not made, the batch's retries
  // starting over).
  std::chrono::milliseconds max_wait = pipeline_.config.max_wait;
  if (attempt_.refetch) {
    max_wait = std::max(max_wait, std::chrono::duration_cast<std::chrono::milliseconds>(
                                      pipeline_.config.source.connect_timeout));
  }
  Status fetched = source_->Fetch(pipeline_.config.max_messages, max_wait, &batch_);
  record.fetch_ms = MillisSince(fetch_start);
  if (!fetched.ok()) return RecordFailure(record, fetched);
  attempt_.fetched = !batch_.empty();
  for (const auto& note : source_->TakeNotes()) record.notes += (record.notes.empty() ? "" : "; ") + note;
  // Taken after the fetch: a rebalance during it may have assigned partitions
  // (positioned at their stored offsets) or revoked some (their messages
  // were dropped from the batch).
  OffsetMap start_offsets = source_->StartOffsets();
  CrashPoint("after_fetch");

  // Offset ranges per partition, in fetch order.
  std::map<TopicPartition, PartitionRange> ranges;
  for (const auto& message : batch_) {
    TopicPartition tp{message.topic, message.partition};
    auto [it, inserted] = ranges.try_emplace(tp);
    PartitionRange& range = it->second;
    if (inserted) {
      range.partition = tp;
      range.first_offset = message.offset;
    }
    range.last_offset = message.offset;
    ++range.count;
  }
  for (const auto& [tp, range] : ranges) {
    record.ranges.push_back(range);
    outcome.committed[tp] = range.last_offset + 1;
  }
  record.messages = static_cast<int64_t>(batch_.size());

  // Everything below commits together or not at all.
  bool in_batch = false;
  auto fail = [&](const Status& error) -> Status {
    interruptible_ = false;
    step_deadline_.reset();
    if (in_batch) target_->RollbackBatch();
    Status reported = RecordFailure(record, error);
    // The batch is gone; fetch it again if this process carries on.
    OffsetMap rewind;
    for (const auto& [tp, next] : outcome.committed) {
      auto start = start_offsets.find(tp);
      if (start != start_offsets.end()) rewind[tp] = start->second;
    }
    Status rewound = source_->Rewind(rewind);
    if (!rewound.ok()) spdlog::warn("cannot re-position after the failed batch: {}", rewound.message());
    return reported;
  };
  // From here a stop request interrupts the batch, including a target
  // waiting for a lost database connection to come back.
  interruptible_ = true;
  Status begun = target_->BeginBatch();
  if (!begun.ok()) return fail(begun);
  in_batch = true;
  Result<int64_t> run_id = target_->BeginRun(record.started_at);
  if (!run_id.ok()) return fail(run_id.status());
  record.run_id = *run_id;
  outcome.run_id = *run_id;

  auto stage_start = Clock::now();
  interruptible_ = true;
  if (options.before_stage) {
    Status before = options.before_stage(target_.get());
    if (!before.ok()) return fail(before);
  }
  std::vector<std::string> loaded_seeds;
  Status st = target_->LoadChangedSeeds(pipeline_.seeds, &loaded_seeds);
  if (!st.ok()) return fail(st);
  if (!loaded_seeds.empty()) {
    std::string names;
    for (const auto& name : loaded_seeds) names += (names.empty() ? "" : ", ") + name;
    record.notes += (record.notes.empty() ? "" : "; ") + std::string("reloaded seeds: ") + names;
    spdlog::info("run {}: reloaded seeds {}", record.run_id, names);
  }
  CrashPoint("after_seeds");
  st = target_->ClearStaging();
  if (!st.ok()) return fail(st);
  StageCounts counts;
  for (const auto& message : batch_) {
    auto decode_start = Clock::now();
    decoder_->Decode(message, &row_);
    counts.parse_ms += MillisSince(decode_start);
    st = target_->Stage(message, row_, record.run_id, &counts);
    if (!st.ok()) return fail(st);
  }
  record.staged = counts.staged;
  record.quarantined = counts.quarantined;
  st = target_->ClearPassedQuarantine(record.ranges, record.run_id);
  if (!st.ok()) return fail(st);
  record.stage_ms = MillisSince(stage_start);
  record.parse_ms = counts.parse_ms;
  CrashPoint("after_stage");

  auto steps_start = Clock::now();
  for (const auto& step : pipeline_.steps) {
    auto step_start = Clock::now();
    if (pipeline_.config.step_timeout.count() > 0) step_deadline_ = step_start + pipeline_.config.step_timeout;
    st = target_->RunStep(step);
    if (!st.ok() && step_deadline_ && Clock::now() > *step_deadline_ && !Stopping()) {
      st = Status::SqlError(step.display + ": ran longer than [batch] step_timeout (" +
                            std::to_string(pipeline_.config.step_timeout.count() / 1000) +
                            "s) and was interrupted; the batch was rolled back");
    }
    step_deadline_.reset();
    if (!st.ok()) return fail(st);
    spdlog::debug("run {}: {} took {:.1f} ms", record.run_id, step.display, MillisSince(step_start));
    CrashPoint(("after_step:" + step.display).c_str());
  }
  // Data checks, inside the batch: a failing check rolls everything back,
  // so bad data never commits; a warning check only records its count.
  for (const auto& check : pipeline_.checks) {
    Result<CheckOutcome> found = target_->RunCheck(check.file);
    if (!found.ok()) return fail(found.status());
    std::string sample;
    for (const auto& row : found->sample) sample += (sample.empty() ? "" : "; ") + row;
    if (found->rows > 0 && !check.warn_only) {
      return fail(Status::InvalidInput(check.file.display + ": the check failed: " + std::to_string(found->rows) +
                                       (found->rows == 1 ? " row breaks it (" : " rows break it (") + sample +
                                       (found->rows > static_cast<int64_t>(found->sample.size()) ? "; ..." : "") +
                                       "); the batch was rolled back, offsets unchanged"));
    }
    if (found->rows > 0) {
      spdlog::warn("run {}: {}: {} row{} the check (severity warn): {}", record.run_id, check.file.display,
                   found->rows, found->rows == 1 ? " breaks" : "s break", sample);
      record.notes += (record.notes.empty() ? "" : "; ") + check.file.display + ": " + std::to_string(found->rows) +
                      " rows (warn)";
    }
    st = target_->RecordCheck(check.file.display, check.warn_only ? "warn" : "error", found->rows, sample,
                               record.run_id);
    if (!st.ok()) return fail(st);
  }
  record.steps_ms = MillisSince(steps_start);
  interruptible_ = false;

  auto commit_start = Clock::now();
  // Where the source stands after this batch: past transaction markers and
  // compaction gaps, and the resolved start of partitions that have nothing
  // stored yet (stored now, so `start = latest` means "from deployment").
  OffsetMap next_offsets = options.store_offsets ? source_->NextOffsets() : OffsetMap{};
  if (!options.store_offsets) outcome.committed.clear();
  // The stored offsets must still be where this batch started: otherwise
  // another process (a group member after a rebalance) moved them, and
  // committing would double or skip data.
  std::vector<TopicPartition> touched;
  for (const auto& [tp, next] : outcome.committed) touched.push_back(tp);
  for (const auto& [tp, next] : next_offsets) {
    if (!outcome.committed.count(tp)) touched.push_back(tp);
  }
  Result<OffsetMap> stored = target_->StoredOffsets(touched);
  if (!stored.ok()) return fail(stored.status());
  for (const auto& [tp, position] : next_offsets) {
    auto start = start_offsets.find(tp);
    auto in_batch = outcome.committed.find(tp);
    int64_t base = in_batch != outcome.committed.end() ? in_batch->second
                   : start != start_offsets.end()     ? start->second
                                                      : position;
    if (position > base || !stored->count(tp)) outcome.committed[tp] = std::max(base, position);
  }
  for (const auto& [tp, offset] : *stored) {
    auto start = start_offsets.find(tp);
    if (start == start_offsets.end() || start->second != offset) {
      Status conflict = Status::Conflict(tp.first + "[" + std::to_string(tp.second) + "]: stored offset is " +
                                         std::to_string(offset) + " but this batch started at " +
                                         (start == start_offsets.end() ? std::string("an unknown offset")
                                                                       : std::to_string(start->second)) +
                                         "; another process advanced it, so this batch was rolled back" +
                                         (attempt_.number > 1 ? " (or the previous attempt of this batch committed "
                                                                "before its connection was lost)"
                                                              : ""));
      target_->RollbackBatch();
      in_batch = false;
      (void)RecordFailure(record, conflict);  // logs it; the conflict is returned below
      Status rewound = source_->Rewind(*stored);
      if (!rewound.ok()) return rewound;
      return conflict;
    }
  }
  // The last message read per partition, to recognise the log next time.
  // Only the last message of each partition is hashed.
  LastReadMap last_read;
  for (auto message = batch_.rbegin(); message != batch_.rend(); ++message) {
    TopicPartition tp{message->topic, message->partition};
    if (outcome.committed.count(tp) && !last_read.count(tp)) last_read[tp] = {message->offset, Fingerprint(*message)};
  }
  st = target_->StoreOffsets(outcome.committed, record.run_id, &last_read);
  if (!st.ok()) return fail(st);
  record.status = "ok";
  record.commit_ms = MillisSince(commit_start);
  Result<int64_t> finished = target_->FinishRun(record);
  if (!finished.ok()) return fail(finished.status());
  CrashPoint("before_sqlite_commit");
  // The target refuses to commit into a database that was deleted or
  // replaced while open: the batch (and, after it, the group's offsets)
  // would go with it.
  st = target_->CommitBatch();
  in_batch = false;
  if (!st.ok()) return fail(st);
  CrashPoint("after_sqlite_commit");
  target_->AfterCommit();

  Status kafka_commit = source_->CommitOffsets(outcome.committed);
  if (!kafka_commit.ok()) {
    spdlog::warn("run {}: {} (the database holds the offsets; the next run starts from them)", record.run_id,
                 kafka_commit.message());
  }
  CrashPoint("after_kafka_commit");
  record.commit_ms = MillisSince(commit_start);
  Status timed = target_->RecordCommitTime(record.run_id, record.commit_ms);
  if (!timed.ok()) spdlog::debug("run {}: cannot record the commit time: {}", record.run_id, timed.message());

  // One line a person reads at a glance; the offsets per partition are in
  // _sluice_runs and, with -v, on the next line.
  std::string left;
  if (pass_ends_) {
    int64_t lag = 0;
    OffsetMap positions = source_->Positions();
    for (const auto& [tp, end] : *pass_ends_) {
      auto position = positions.find(tp);
      if (end == std::numeric_limits<int64_t>::max()) continue;  // a stream of unknown length
      if (position != positions.end() && end > position->second && position->second >= 0) lag += end - position->second;
    }
    left = lag == 0 ? ", caught up" : ", " + std::to_string(lag) + " left";
  }
  spdlog::info("run {}: pulled {} message{} from {}, staged {}, quarantined {}, steps {:.0f} ms{}", record.run_id,
               record.messages, record.messages == 1 ? "" : "s", DescribePartitions(record.ranges), record.staged,
               record.quarantined, record.steps_ms, left);
  spdlog::debug("run {}: committed offsets {}", record.run_id,
                outcome.committed.empty() ? std::string("(none)") : DescribeOffsets(outcome.committed));
  return outcome;
}

Result<BatchOutcome> Engine::RunBatchRetrying() {
  struct Forget {
    Attempt* attempt;
    ~Forget() { *attempt = Attempt(); }
  } forget{&attempt_};
  std::chrono::milliseconds pause = kFirstRetryPause;
  bool aborted_before = false;
  for (int number = 1;; ++number) {
    attempt_ = Attempt{number, kBatchAttempts, Jittered(pause), attempt_.fetched};
    Result<BatchOutcome> outcome = RunBatch();
    if (outcome.ok() || number >= kBatchAttempts || Stopping()) return outcome;
    const Status::Code code = outcome.status().code();
    // After an aborted attempt a conflict may only mean that attempt's
    // COMMIT reached the database although its connection was lost: the
    // source now stands at the stored offsets, so carry on from there.
    const bool again = code == Status::Code::kRetryBatch || (code == Status::Code::kConflict && aborted_before);
    if (!again) return outcome;
    if (code == Status::Code::kRetryBatch) {
      aborted_before = true;
      source_->Idle(attempt_.pause, *stop_);
      if (Stopping()) {
        Status stopped = Status::Aborted("stopped by a signal while waiting to retry the batch; offsets unchanged");
        spdlog::warn("{}", stopped.message());
        reported_ = stopped.message();
        return stopped;
      }
      pause *= 2;
    }
  }
}

Status Engine::RunUntilCaughtUp(const std::atomic<bool>& stop,
                                const std::function<void(const Progress&)>& progress) {
  SLUICE_RETURN_IF_ERROR(source_->Refresh());
  Result<OffsetMap> ends = source_->EndOffsets();
  if (!ends.ok()) return ends.status();
  pass_ends_ = &*ends;
  struct Forget {
    const OffsetMap** ends;
    ~Forget() { *ends = nullptr; }
  } forget{&pass_ends_};
  Progress report;
  auto pass_start = Clock::now();
  {
    OffsetMap positions = source_->Positions();
    for (const auto& [tp, end] : *ends) {
      auto position = positions.find(tp);
      if (position != positions.end() && end > position->second) report.backlog += end - position->second;
    }
  }
  auto caught_up = [&]() {
    OffsetMap positions = source_->Positions();
    for (const auto& [tp, end] : *ends) {
      auto position = positions.find(tp);
      if (position == positions.end()) continue;  // no longer ours (rebalanced away)
      if (position->second < end) return false;
    }
    return true;
  };
  auto last_progress = Clock::now();
  int conflicts = 0;
  while (!stop.load() && !caught_up()) {
    Result<BatchOutcome> outcome = RunBatchRetrying();
    if (!outcome.ok()) {
      // A conflict means another group member moved our offsets: we were
      // re-positioned, so carry on unless it keeps happening.
      if (outcome.status().code() == Status::Code::kConflict && ++conflicts < 5) continue;
      return outcome.status();
    }
    conflicts = 0;
    report.done += outcome->record.messages;
    report.elapsed_s = std::chrono::duration<double>(Clock::now() - pass_start).count();
    if (progress) progress(report);
    if (outcome->record.messages > 0) {
      last_progress = Clock::now();
    } else if (Clock::now() - last_progress > std::chrono::milliseconds(pipeline_.config.source.connect_timeout)) {
      return Status::Unavailable("no messages arrived for " +
                                std::to_string(pipeline_.config.source.connect_timeout.count() / 1000) +
                                "s although the partitions are not at their end offsets seen at start; is the broker "
                                "reachable?");
    }
  }
  // Stopped by a signal is not finished: the bar must not claim 100%.
  report.finished = !stop.load();
  report.elapsed_s = std::chrono::duration<double>(Clock::now() - pass_start).count();
  if (progress) progress(report);
  return Status::Ok();
}

Status Engine::Run(const RunOptions& options, const std::atomic<bool>& stop) {
  stop_ = &stop;
  switch (options.mode) {
    case RunMode::kOnce: {
      Result<BatchOutcome> outcome = RunBatchRetrying();
      return outcome.ok() ? Status::Ok() : outcome.status();
    }
    case RunMode::kUntilCaughtUp:
      return RunUntilCaughtUp(stop, options.progress);
    case RunMode::kEvery:
      return RunEvery(options, stop);
  }
  return Status::Ok();
}

Status Engine::RunEvery(const RunOptions& options, const std::atomic<bool>& stop) {
  // A service: transient failures (database locked, brokers unreachable,
  // request time-outs) are retried with capped exponential backoff for up to
  // [batch] retry_for; anything else stops at once.
  auto next_tick = Clock::now();
  std::optional<Clock::time_point> failing_since;
  std::chrono::milliseconds backoff(1000);
  const std::chrono::milliseconds max_backoff(60000);
  while (!stop.load()) {
    Status pass = RunUntilCaughtUp(stop, options.progress);
    if (!pass.ok()) {
      if (stop.load() || !pass.transient()) return pass;
      auto now = Clock::now();
      if (!failing_since) failing_since = now;
      if (now - *failing_since >= pipeline_.config.retry_for) {
        Status given_up = pass.WithContext("giving up after retrying for " +
                                           std::to_string(pipeline_.config.retry_for.count() / 1000) +
                                           "s ([batch] retry_for)");
        return given_up;
      }
      if (!Reported(pass)) spdlog::warn("{}", pass.message());
      spdlog::warn("transient failure; retrying in {}s (for up to {}s in all, [batch] retry_for)", backoff.count() / 1000,
                   pipeline_.config.retry_for.count() / 1000);
      source_->Idle(backoff, stop);
      backoff = std::min(backoff * 2, max_backoff);
      continue;
    }
    if (failing_since) spdlog::info("recovered after {:.0f}s of transient failures",
                                    std::chrono::duration<double>(Clock::now() - *failing_since).count());
    failing_since.reset();
    backoff = std::chrono::milliseconds(1000);
    next_tick += options.every;
    auto now = Clock::now();
    if (next_tick < now) next_tick = now;  // a pass took longer than the cadence: go again at once
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_tick - now);
    if (stop.load()) break;
    std::time_t at = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now() + wait);
    std::tm local{};
    localtime_r(&at, &local);
    char when[16];
    std::strftime(when, sizeof(when), "%H:%M:%S", &local);
    spdlog::info("caught up; next pass at {}", when);
    if (wait.count() > 0) {
      target_->BeforeIdle();
      source_->Idle(wait, stop);
    }
  }
  return Status::Ok();
}

}  // namespace sluice
