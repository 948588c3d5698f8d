// The workload of the crash harnesses: the crash pipeline (its conf, schema,
// steps and seed), the events produced to it, the reference computed from
// those events, the named crash points and the seed of the random kills.
// tests/crash_test.cc runs it against SQLite and
// tests/postgres/crash_points_test.cc against PostgreSQL; both kill the same
// pipeline at the same points and compare the database with the same
// reference, so that the two engines are held to one definition of "lost
// nothing, doubled nothing". How each reads its database back and what else
// it checks after a kill stays in its own file.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace sluice::testing {

inline constexpr int kCrashPartitions = 4;
inline constexpr const char* kCrashTopic = "events";

// ---------------------------------------------------------------------------
// The pipeline: a seed, a dedup+upsert step, an append-only audit step and an
// additive totals step (which doubles if a batch is applied twice).

// What the pipeline's SQL has to say differently on each engine.
struct CrashDialect {
  // The declared type of the 64-bit columns (offsets, amounts, versions,
  // counts): SQLite's INTEGER is 64-bit already, PostgreSQL's is not.
  const char* wide_integer;
  // Whether the totals upsert names the existing row's columns as totals.n:
  // PostgreSQL rejects a bare n there as ambiguous, SQLite takes it as the
  // existing row's.
  bool qualify_existing_row;
};
inline constexpr CrashDialect kSqliteCrashDialect{"integer", false};
inline constexpr CrashDialect kPostgresCrashDialect{"bigint", true};

// The seed's customer -> region rows.
using Regions = std::map<std::string, std::string>;

// c0..c7 in four regions; c8 and c9 have no seed row, so their region is NULL.
Regions InitialRegions();

// customers.csv for `regions`.
std::string SeedCsv(const Regions& regions);

// pipeline.conf: kCrashTopic under the pipeline name `group` (its key in
// _sluice_offsets), into `database`. With `group_assignment` the partitions
// come from consumer-group rebalances, with a session timeout short enough
// for a killed member's partitions to move within a test.
std::string CrashPipelineConf(const std::string& brokers, const std::string& group, const std::string& database,
                              bool group_assignment);

// Writes the crash pipeline into `dir`: `conf`, the schema and steps in
// `dialect`, and the seed of `regions`.
void WriteCrashPipeline(const std::string& dir, const std::string& conf, const CrashDialect& dialect,
                        const Regions& regions);

// ---------------------------------------------------------------------------
// The produced events and the reference computed from them.

struct Event {
  int32_t partition = 0;
  int64_t offset = 0;
  std::string eid;
  std::string key;
  std::string customer;
  int64_t cents = 0;
  int64_t version = 0;
  bool valid = true;  // invalid ones carry "cents":"lots" and are quarantined
};

// The only producer to kCrashTopic, so it knows every event's offset. Events
// come from a generator seeded by the test: a seed replays the same events.
class Workload {
 public:
  Workload(std::string brokers, uint32_t seed) : brokers_(std::move(brokers)), rng_(seed) {}

  // Produces `count` events to random partitions (one call delivers each
  // partition in order); 30% of them name `extra_customer` when it is given.
  // A fatal failure when the broker does not take them.
  void Produce(int count, const std::string& extra_customer = "");

  const std::vector<Event>& events() const { return events_; }
  // The end offset of every partition produced to.
  std::map<int32_t, int64_t> ends() const { return next_offset_; }
  // The test's own random choices draw from the same generator, so that one
  // seed replays them too.
  std::mt19937& rng() { return rng_; }

 private:
  std::string brokers_;
  std::mt19937 rng_;
  std::map<int32_t, int64_t> next_offset_;
  int64_t next_version_ = 0;
  std::vector<Event> events_;
};

struct Reference {
  std::vector<std::string> curated;  // id|customer|region|cents|version
  std::vector<std::string> totals;   // customer|n|cents
  std::vector<std::string> ledger;   // part|off|eid, staged and quarantined alike
  int64_t valid = 0;
  int64_t invalid = 0;
};

// What the database must hold once it has processed, in each partition, the
// events below `upto[partition]`.
Reference ComputeReference(const std::vector<Event>& events, const std::map<int32_t, int64_t>& upto,
                           const Regions& regions);

// ---------------------------------------------------------------------------
// The kills.

// The seed of a test's random kills: SLUICE_CRASH_SEED when set (to replay a
// failed run), else a fresh one. Prints it and records it as the test's
// crash_seed property, so that every run can be replayed.
uint32_t CrashSeed();

struct CrashCase {
  std::string point;         // SLUICE_CRASH_AT
  bool commits_first_batch;  // the batch is committed to the target before the kill
};

// The point's name in failure messages, not the bytes of the struct.
void PrintTo(const CrashCase& crash, std::ostream* out);

// Every named crash point of a batch, in the order a batch passes them.
std::vector<CrashCase> CrashCases();

// The point as a test name (gtest allows only letters, digits and '_').
std::string CrashCaseName(const ::testing::TestParamInfo<CrashCase>& info);

}  // namespace sluice::testing
