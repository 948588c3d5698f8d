// Catalog: sluice's own tables in the target database.
//   _sluice_offsets    next offset per partition: the source of truth for where
//                      each partition resumes; written in the batch transaction
//   _sluice_runs       one row per batch: counts, offset ranges, timings, error
//   _sluice_quarantine messages that could not be staged, with the reason
//   _sluice_seeds      checksum of each loaded seed, to reload only on change
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "connectors/source.h"
#include "engine/status.h"
#include "sql/database.h"

namespace sluice {

// One partition's range within a batch.
struct PartitionRange {
  TopicPartition partition;
  int64_t first_offset = 0;
  int64_t last_offset = 0;
  int64_t count = 0;
};

struct RunRecord {
  int64_t run_id = 0;
  std::string started_at;  // ISO-8601 UTC
  std::string status;      // running | ok | failed
  int64_t messages = 0;
  int64_t staged = 0;
  int64_t quarantined = 0;
  std::vector<PartitionRange> ranges;
  std::string error;
  std::string notes;
  // Where the batch's time went. stage_ms includes parse_ms (JSON to typed
  // values); commit_ms covers the SQLite and the Kafka commits.
  double fetch_ms = 0, stage_ms = 0, parse_ms = 0, steps_ms = 0, commit_ms = 0;
};

class Catalog {
 public:
  explicit Catalog(Database* db) : db_(db) {}

  // Creates the catalog tables if missing. Idempotent.
  Status Install();

  // Stored next offsets for `partitions` (absent when nothing is stored).
  Result<OffsetMap> StoredOffsets(const std::vector<TopicPartition>& partitions);
  // All stored offsets.
  Result<OffsetMap> AllStoredOffsets();
  // Upserts next offsets; call inside the batch transaction.
  Status StoreOffsets(const OffsetMap& next, int64_t run_id);

  // Inserts a run row with status 'running' and returns its id; call inside
  // the batch transaction, so that a rolled-back batch leaves no row.
  Result<int64_t> BeginRun(const std::string& started_at);
  // Completes a run row created by BeginRun, or inserts one (run_id == 0),
  // e.g. a failed run recorded after the batch rolled back. Returns the id.
  Result<int64_t> FinishRun(const RunRecord& run);

  // Records the commit time of a committed run (known only after the commit,
  // so it is written in a statement of its own).
  Status RecordCommitTime(int64_t run_id, double commit_ms);

  static std::string Now();  // ISO-8601 UTC with milliseconds
  static std::string RangesJson(const std::vector<PartitionRange>& ranges);

 private:
  Database* db_;
};

}  // namespace sluice
