// Fixtures: `sluice test DIR` runs the pipeline over DIR/tests/<case>/ without
// a broker, against a fresh in-memory database, and compares tables:
//   input.jsonl          one message per line (envelope fields _kafka_key,
//                        _kafka_partition, _kafka_timestamp override defaults;
//                        the default timestamp is the line number)
//   batches              optional: lines per batch, one number per line
//   expected/<table>.csv the rows <table> must hold afterwards, compared on
//                        the header's columns only, in any order; an empty
//                        cell is NULL. A cell is compared by the type of the
//                        table's value: INTEGER exactly, TEXT as text, REAL
//                        rounded to the decimals written in the cell (or
//                        within the header's `column~TOLERANCE`). Any other
//                        file in expected/ fails the case.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "common/status.h"

namespace sluice {

struct FixtureResult {
  std::string name;
  bool passed = false;
  std::string report;  // what differed, readable
};

// Runs every case under `dir`/tests (or only `only` when not empty), each
// against a scratch target (TargetOptions::scratch): an in-memory SQLite
// database when `database` is empty or a file, a fresh schema on the
// PostgreSQL server when it is a postgresql:// URL.
Result<std::vector<FixtureResult>> RunFixtures(const std::string& dir, const std::string& only = "",
                                               const std::string& database = "");

}  // namespace sluice
