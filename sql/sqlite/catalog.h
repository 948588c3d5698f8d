// Catalog: sluice's own tables in the target database.
//   _sluice_offsets    next offset per (pipeline, topic, partition): the source
//                      of truth for where each partition resumes; written in the
//                      batch transaction. A pipeline is identified by its
//                      consumer group, so several pipelines share a database.
//   _sluice_runs       one row per batch: counts, offset ranges, timings, error
//   _sluice_quarantine messages that could not be staged, with the reason
//   _sluice_seeds      checksum of each loaded seed, to reload only on change
//   _sluice_checks     the latest result of each data check, per pipeline
//   _sluice_inputs     identity of `run --from-file` inputs: per (pipeline,
//                      input, next_offset), the bytes before that line and
//                      their checksum, checked when a run resumes there
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "connectors/source.h"
#include "sql/target.h"
#include "common/status.h"
#include "common/time.h"
#include "sql/sqlite/database.h"

namespace sluice {

class Catalog {
 public:
  // `pipeline` keys the offsets: the pipeline's consumer group.
  explicit Catalog(Database* db, std::string pipeline = {}) : db_(db), pipeline_(std::move(pipeline)) {}

  // Creates the catalog tables if missing, migrating an offsets table from
  // before offsets were keyed by pipeline (its rows become this pipeline's).
  // Idempotent; call inside a transaction.
  Status Install();
  // True when the last Install() migrated such a table.
  bool migrated() const { return migrated_; }

  // Stored next offsets for `partitions` (absent when nothing is stored).
  Result<OffsetMap> StoredOffsets(const std::vector<TopicPartition>& partitions);
  // All stored offsets.
  Result<OffsetMap> AllStoredOffsets();
  // Other pipelines that stored offsets for any of `topics` in this database.
  Result<std::vector<std::string>> OtherPipelines(const std::vector<std::string>& topics);
  // Upserts next offsets; call inside the batch transaction. `last_read`
  // (when given) holds the offset and fingerprint of the last message read
  // per partition, kept to recognise the log at the next assignment; without
  // it (positions moved by hand) they are cleared.
  Status StoreOffsets(const OffsetMap& next, int64_t run_id, const LastReadMap* last_read = nullptr);
  // The last message read per partition of this pipeline, where known.
  Result<LastReadMap> LastRead();

  // Inserts a run row with status 'running' and returns its id; call inside
  // the batch transaction, so that a rolled-back batch leaves no row.
  Result<int64_t> BeginRun(const std::string& started_at);
  // Completes a run row created by BeginRun, or inserts one (run_id == 0),
  // e.g. a failed run recorded after the batch rolled back. Returns the id.
  Result<int64_t> FinishRun(const RunRecord& run);

  // Removes the quarantine rows of messages this run read again and staged
  // (their offsets lie in `ranges` but this run did not quarantine them), so
  // that a message fixed by a change to [columns] is not replayed twice.
  Status ClearPassedQuarantine(const std::vector<PartitionRange>& ranges, int64_t run_id);

  // Records the latest result of a data check (checks/NAME.sql) for this
  // pipeline; call inside the batch transaction.
  Status RecordCheck(const std::string& check, const std::string& severity, int64_t rows, const std::string& sample,
                     int64_t run_id);

  // Records the commit time of a committed run (known only after the commit,
  // so it is written in a statement of its own).
  Status RecordCommitTime(int64_t run_id, double commit_ms);


 private:
  Result<bool> LegacyOffsetsTable();
  Database* db_;
  std::string pipeline_;
  bool migrated_ = false;

 public:
  // File inputs (`sluice run --from-file`). Their positions are stored in
  // _sluice_offsets under the input's name; _sluice_inputs identifies the
  // content read up to each position.
  Status InstallInputs();
  // The record for `input` at `next_offset`, or nullopt.
  Result<std::optional<InputRecord>> FindInput(const std::string& input, int64_t next_offset);
  // Records (replaces) the identity at record.next_offset and drops the
  // records before the input's stored position. Runs in its own statement(s).
  Status SaveInput(const std::string& input, const InputRecord& record);
  // Deletes the input's stored positions and identity records.
  Status ForgetInput(const std::string& input);
  // The inputs of this pipeline that are not any of `topics`: names stored in
  // _sluice_offsets or _sluice_inputs (file inputs, also those stored before
  // _sluice_inputs existed), sorted.
  Result<std::vector<std::string>> FileInputs(const std::vector<std::string>& topics);
};

}  // namespace sluice
