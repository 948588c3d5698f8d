// Seeds into SQLite: each seed file becomes a table of the same name,
// (re)loaded inside the batch transaction only when its content changed
// (checksum in _sluice_seeds); sluice never drops a table it did not load
// from a seed. The files themselves: sql/seed_file.h.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "sql/seed_file.h"
#include "sql/sqlite/database.h"

namespace sluice {

// Loads every seed whose checksum differs from the stored one. `loaded`
// receives the tables (re)loaded. Call inside a transaction. Refuses a seed
// whose table exists but was not loaded from a seed (created by schema.sql or
// a step): it is never dropped.
Status LoadChangedSeeds(Database* db, const std::vector<SeedFile>& seeds, std::vector<std::string>* loaded);

// For commands that empty tables (reset --truncate): when `table` was loaded
// from a seed, forgets its checksum so that the next LoadChangedSeeds loads
// it again (the table stays sluice's), and returns true; false when `table`
// is not a seed's. Call inside the transaction that empties the table.
Result<bool> ForgetSeedChecksum(Database* db, const std::string& table);

}  // namespace sluice
