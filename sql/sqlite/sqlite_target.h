// SqliteTarget: the Target (sql/target.h) for an SQLite file. A batch is one
// BEGIN IMMEDIATE transaction on one connection; the pipeline lock is a
// flock beside the file (sql/sqlite/lock.h); before each commit the file is
// checked to still be the one opened. Built from the pieces in this folder:
// Database (connection), Catalog (sluice's tables), StagingWriter, the step
// runner (sql_file.h, with MERGE translation) and the seed loader.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "sql/sqlite/catalog.h"
#include "sql/sqlite/database.h"
#include "sql/sqlite/lock.h"
#include "sql/sqlite/staging.h"
#include "sql/target.h"

namespace sluice {

class SqliteTarget : public Target {
 public:
  static Result<std::unique_ptr<SqliteTarget>> Open(const TargetOptions& options);

  std::string Describe() const override { return db_->path(); }

  Status Prepare(const std::optional<SqlFile>& schema, const std::vector<ColumnSpec>& columns,
                 std::chrono::milliseconds retention) override;
  bool migrated() const override { return catalog_->migrated(); }
  Status CheckSteps(const std::vector<SqlFile>& steps, const std::vector<SqlFile>& checks,
                    const std::vector<SeedFile>& seeds) override;
  Status CheckSeed(const SeedFile& seed) override;

  Status BeginBatch() override;
  Status CommitBatch() override;
  void RollbackBatch() override;
  Result<int64_t> BeginRun(const std::string& started_at) override { return catalog_->BeginRun(started_at); }
  Status LoadChangedSeeds(const std::vector<SeedFile>& seeds, std::vector<std::string>* loaded) override;
  Status ClearStaging() override;
  Status Stage(const Message& message, const DecodedRow& row, int64_t run_id, StageCounts* counts) override;
  Status ClearPassedQuarantine(const std::vector<PartitionRange>& ranges, int64_t run_id) override {
    return catalog_->ClearPassedQuarantine(ranges, run_id);
  }
  Status RunStep(const SqlFile& step) override;
  Result<CheckOutcome> RunCheck(const SqlFile& check) override;
  Status RecordCheck(const std::string& check, const std::string& severity, int64_t rows, const std::string& sample,
                     int64_t run_id) override {
    return catalog_->RecordCheck(check, severity, rows, sample, run_id);
  }
  Result<OffsetMap> StoredOffsets(const std::vector<TopicPartition>& partitions) override {
    return catalog_->StoredOffsets(partitions);
  }
  Status StoreOffsets(const OffsetMap& next, int64_t run_id, const LastReadMap* last_read) override {
    return catalog_->StoreOffsets(next, run_id, last_read);
  }
  Result<int64_t> FinishRun(const RunRecord& run) override;
  Status RecordCommitTime(int64_t run_id, double commit_ms) override {
    return catalog_->RecordCommitTime(run_id, commit_ms);
  }

  Result<OffsetMap> AllStoredOffsets() override { return catalog_->AllStoredOffsets(); }
  Result<LastReadMap> LastRead() override { return catalog_->LastRead(); }
  Result<std::vector<std::string>> OtherPipelines(const std::vector<std::string>& topics) override {
    return catalog_->OtherPipelines(topics);
  }

  void SetInterruptCheck(std::function<bool()> check) override { db_->SetInterruptCheck(std::move(check)); }
  bool usable() const override { return !db_->lost(); }
  void AfterCommit() override;
  void BeforeIdle() override { db_->CheckpointTruncate(); }

  Result<TargetReport> Report(int recent_runs) override;
  Result<QuarantineSnapshot> TakeQuarantine() override;
  Status ForgetReplayed(int64_t through) override;
  Result<bool> HasTable(const std::string& name) override { return db_->TableExists(name); }
  Result<ResetOutcome> Reset(const ResetPlan& plan) override;
  Result<CompactOutcome> Compact(std::chrono::milliseconds retention) override;
  Result<std::optional<InputRecord>> FindInput(const std::string& input, int64_t next_offset) override {
    return catalog_->FindInput(input, next_offset);
  }
  Status SaveInput(const std::string& input, const InputRecord& record) override {
    return catalog_->SaveInput(input, record);
  }
  Status ForgetInput(const std::string& input) override { return catalog_->ForgetInput(input); }
  Result<std::vector<std::string>> FileInputs(const std::vector<std::string>& topics) override {
    return catalog_->FileInputs(topics);
  }
  Result<QueryResult> Query(const std::string& sql) override;

  // For tests and benchmarks that reach below the interface.
  Database* database() { return db_.get(); }

 private:
  SqliteTarget(std::unique_ptr<PipelineLock> lock, std::unique_ptr<Database> db, std::string pipeline)
      : lock_(std::move(lock)), db_(std::move(db)), catalog_(std::make_unique<Catalog>(db_.get(), pipeline)),
        pipeline_(std::move(pipeline)) {}

  std::unique_ptr<PipelineLock> lock_;  // taken before the database is opened, released after it is closed
  std::unique_ptr<Database> db_;
  std::unique_ptr<Catalog> catalog_;
  std::string pipeline_;
  std::unique_ptr<StagingWriter> staging_;
  std::unique_ptr<Transaction> batch_;  // the open batch, if any
  std::chrono::steady_clock::time_point wal_warned_{};
};

}  // namespace sluice
