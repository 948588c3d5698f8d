// Engine implementation: one batch per transaction, run modes, the batch log line.
#include "engine/engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <thread>

#include "engine/crash_point.h"
#include "engine/validate.h"
#include "sql/seeds.h"
#include "sql/sql_file.h"

namespace sluice {
namespace {

using Clock = std::chrono::steady_clock;

double MillisSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// "orders[0..7]" style summary of the partitions a batch touched.
std::string DescribePartitions(const std::vector<PartitionRange>& ranges) {
  std::map<std::string, std::vector<int32_t>> by_topic;
  for (const auto& range : ranges) by_topic[range.partition.first].push_back(range.partition.second);
  std::string out;
  for (auto& [topic, partitions] : by_topic) {
    std::sort(partitions.begin(), partitions.end());
    bool contiguous = partitions.back() - partitions.front() + 1 == static_cast<int32_t>(partitions.size());
    std::string list;
    if (contiguous && partitions.size() > 1) {
      list = std::to_string(partitions.front()) + ".." + std::to_string(partitions.back());
    } else {
      for (int32_t partition : partitions) list += (list.empty() ? "" : ",") + std::to_string(partition);
    }
    out += (out.empty() ? "" : ", ") + topic + "[" + list + "]";
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
  Result<std::unique_ptr<PipelineLock>> lock = PipelineLock::Acquire(pipeline.config.database, options.exclusive_lock);
  if (!lock.ok()) return lock.status();
  engine->lock_ = std::move(*lock);
  DatabaseOptions db_options;
  db_options.busy_timeout_ms = pipeline.config.busy_timeout_ms;
  db_options.file_mode = pipeline.config.file_mode;
  Result<std::unique_ptr<Database>> db = Database::Open(pipeline.config.database, db_options);
  if (!db.ok()) return db.status();
  engine->db_ = std::move(*db);
  engine->catalog_ = std::make_unique<Catalog>(engine->db_.get());
  SLUICE_RETURN_IF_ERROR(engine->Prepare());

  Catalog* catalog = engine->catalog_.get();
  Status opened = engine->source_->Open(
      [catalog](const std::vector<TopicPartition>& partitions) { return catalog->StoredOffsets(partitions); });
  if (!opened.ok()) return opened;
  engine->source_open_ = true;
  return engine;
}

Engine::~Engine() {
  if (source_ && source_open_) source_->Close();
}

Status Engine::Prepare() {
  Result<std::unique_ptr<Transaction>> tx = Transaction::Begin(db_.get());
  if (!tx.ok()) return tx.status();
  SLUICE_RETURN_IF_ERROR(catalog_->Install().WithContext("cannot create sluice's tables in " + db_->path()));
  if (pipeline_.schema) SLUICE_RETURN_IF_ERROR(RunSqlFile(db_.get(), *pipeline_.schema));
  Result<std::unique_ptr<StagingWriter>> staging =
      StagingWriter::Create(db_.get(), pipeline_.config.columns, pipeline_.config.retention);
  if (!staging.ok()) return staging.status();
  staging_ = std::move(*staging);
  SLUICE_RETURN_IF_ERROR((*tx)->Commit());
  // Check the steps against an empty batch before anything is consumed: a
  // syntax error or a missing table fails here, naming the file and line.
  return DryRunSteps(db_.get(), pipeline_).WithContext("pipeline check failed (nothing was consumed)");
}

Status Engine::RecordFailure(RunRecord record, const Status& error) {
  record.run_id = 0;
  record.status = "failed";
  record.error = error.message();
  Result<std::unique_ptr<Transaction>> tx = Transaction::Begin(db_.get());
  if (!tx.ok()) return tx.status();
  Result<int64_t> id = catalog_->FinishRun(record);
  if (!id.ok()) return id.status();
  SLUICE_RETURN_IF_ERROR((*tx)->Commit());
  spdlog::error("run {} failed: {}", *id, error.message());
  return Status::Ok();
}

Result<BatchOutcome> Engine::RunBatch(const BatchOptions& options) {
  BatchOutcome outcome;
  RunRecord& record = outcome.record;
  record.started_at = Catalog::Now();
  record.status = "running";
  batch_.clear();

  auto fetch_start = Clock::now();
  Status fetched = source_->Fetch(pipeline_.config.max_messages, pipeline_.config.max_wait, &batch_);
  record.fetch_ms = MillisSince(fetch_start);
  if (!fetched.ok()) {
    RecordFailure(record, fetched);
    return fetched;
  }
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
  std::unique_ptr<Transaction> txn;
  auto fail = [&](const Status& error) -> Status {
    if (txn) txn->Rollback();
    RecordFailure(record, error);
    // The batch is gone; fetch it again if this process carries on.
    OffsetMap rewind;
    for (const auto& [tp, next] : outcome.committed) {
      auto start = start_offsets.find(tp);
      if (start != start_offsets.end()) rewind[tp] = start->second;
    }
    Status rewound = source_->Rewind(rewind);
    if (!rewound.ok()) spdlog::warn("cannot re-position after the failed batch: {}", rewound.message());
    return error;
  };
  Result<std::unique_ptr<Transaction>> tx = Transaction::Begin(db_.get());
  if (!tx.ok()) return fail(tx.status());
  txn = std::move(*tx);
  Result<int64_t> run_id = catalog_->BeginRun(record.started_at);
  if (!run_id.ok()) return fail(run_id.status());
  record.run_id = *run_id;
  outcome.run_id = *run_id;

  auto stage_start = Clock::now();
  if (options.before_stage) {
    Status before = options.before_stage(db_.get());
    if (!before.ok()) return fail(before);
  }
  std::vector<std::string> loaded_seeds;
  Status st = LoadChangedSeeds(db_.get(), pipeline_.seeds, &loaded_seeds);
  if (!st.ok()) return fail(st);
  if (!loaded_seeds.empty()) {
    std::string names;
    for (const auto& name : loaded_seeds) names += (names.empty() ? "" : ", ") + name;
    record.notes += (record.notes.empty() ? "" : "; ") + std::string("reloaded seeds: ") + names;
    spdlog::info("run {}: reloaded seeds {}", record.run_id, names);
  }
  CrashPoint("after_seeds");
  st = staging_->Clear();
  if (!st.ok()) return fail(st);
  StageCounts counts;
  for (const auto& message : batch_) {
    st = staging_->Write(message, record.run_id, &counts);
    if (!st.ok()) return fail(st);
  }
  record.staged = counts.staged;
  record.quarantined = counts.quarantined;
  record.stage_ms = MillisSince(stage_start);
  record.parse_ms = counts.parse_ms;
  CrashPoint("after_stage");

  auto steps_start = Clock::now();
  for (const auto& step : pipeline_.steps) {
    auto step_start = Clock::now();
    st = RunSqlFile(db_.get(), step);
    if (!st.ok()) return fail(st);
    spdlog::debug("run {}: {} took {:.1f} ms", record.run_id, step.display, MillisSince(step_start));
    CrashPoint(("after_step:" + step.display).c_str());
  }
  record.steps_ms = MillisSince(steps_start);

  auto commit_start = Clock::now();
  if (!options.store_offsets) outcome.committed.clear();
  // The stored offsets must still be where this batch started: otherwise
  // another process (a group member after a rebalance) moved them, and
  // committing would double or skip data.
  std::vector<TopicPartition> touched;
  for (const auto& [tp, next] : outcome.committed) touched.push_back(tp);
  Result<OffsetMap> stored = catalog_->StoredOffsets(touched);
  if (!stored.ok()) return fail(stored.status());
  for (const auto& [tp, offset] : *stored) {
    auto start = start_offsets.find(tp);
    if (start == start_offsets.end() || start->second != offset) {
      Status conflict = Status::Conflict(tp.first + "[" + std::to_string(tp.second) + "]: stored offset is " +
                                         std::to_string(offset) + " but this batch started at " +
                                         (start == start_offsets.end() ? std::string("an unknown offset")
                                                                       : std::to_string(start->second)) +
                                         "; another process advanced it, so this batch was rolled back");
      txn->Rollback();
      RecordFailure(record, conflict);
      Status rewound = source_->Rewind(*stored);
      if (!rewound.ok()) return rewound;
      return conflict;
    }
  }
  st = catalog_->StoreOffsets(outcome.committed, record.run_id);
  if (!st.ok()) return fail(st);
  record.status = "ok";
  record.commit_ms = MillisSince(commit_start);
  Result<int64_t> finished = catalog_->FinishRun(record);
  if (!finished.ok()) return fail(finished.status());
  CrashPoint("before_sqlite_commit");
  st = txn->Commit();
  if (!st.ok()) return fail(st);
  CrashPoint("after_sqlite_commit");

  Status kafka_commit = source_->CommitOffsets(outcome.committed);
  if (!kafka_commit.ok()) {
    spdlog::warn("run {}: {} (the database holds the offsets; the next run starts from them)", record.run_id,
                 kafka_commit.message());
  }
  CrashPoint("after_kafka_commit");
  record.commit_ms = MillisSince(commit_start);
  Status timed = catalog_->RecordCommitTime(record.run_id, record.commit_ms);
  if (!timed.ok()) spdlog::debug("run {}: cannot record the commit time: {}", record.run_id, timed.message());

  spdlog::info("run {}: pulled {} messages from {}, staged {}, quarantined {}, steps {} in {:.0f} ms, committed offsets {}",
               record.run_id, record.messages, DescribePartitions(record.ranges), record.staged, record.quarantined,
               pipeline_.steps.size(), record.steps_ms,
               outcome.committed.empty() ? std::string("(none)") : DescribeOffsets(outcome.committed));
  return outcome;
}

Status Engine::RunUntilCaughtUp(const std::atomic<bool>& stop,
                                const std::function<void(const Progress&)>& progress) {
  Result<OffsetMap> ends = source_->EndOffsets();
  if (!ends.ok()) return ends.status();
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
    Result<BatchOutcome> outcome = RunBatch();
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
      return Status::KafkaError("no messages arrived for " +
                                std::to_string(pipeline_.config.source.connect_timeout.count() / 1000) +
                                "s although the partitions are not at their end offsets seen at start; is the broker "
                                "reachable?");
    }
  }
  report.finished = true;
  report.elapsed_s = std::chrono::duration<double>(Clock::now() - pass_start).count();
  if (progress) progress(report);
  return Status::Ok();
}

Status Engine::Run(const RunOptions& options, const std::atomic<bool>& stop) {
  switch (options.mode) {
    case RunMode::kOnce: {
      Result<BatchOutcome> outcome = RunBatch();
      return outcome.ok() ? Status::Ok() : outcome.status();
    }
    case RunMode::kUntilCaughtUp:
      return RunUntilCaughtUp(stop, options.progress);
    case RunMode::kEvery: {
      auto next_tick = Clock::now();
      while (!stop.load()) {
        SLUICE_RETURN_IF_ERROR(RunUntilCaughtUp(stop, options.progress));
        next_tick += options.every;
        auto now = Clock::now();
        if (next_tick < now) next_tick = now;  // a pass took longer than the cadence: go again at once
        auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_tick - now);
        if (!stop.load() && wait.count() > 0) source_->Idle(wait, stop);
      }
      return Status::Ok();
    }
  }
  return Status::Ok();
}

}  // namespace sluice
