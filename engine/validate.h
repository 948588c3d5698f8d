// Validation: everything that can be checked about a pipeline before it
// consumes anything. `sluice validate` runs it against a scratch target with
// the batch's shape and the seeds' tables (in memory for SQLite, a scratch
// schema on the server for PostgreSQL), touching neither Kafka nor the
// pipeline's tables; `sluice run` runs the same checks first.
#pragma once

#include <string>
#include <vector>

#include "engine/config.h"
#include "common/status.h"

namespace sluice {

// Checks the pipeline directory `dir`: pipeline.conf, seeds, schema.sql and
// every step. Returns every problem found, each naming its file (and line
// where there is one); empty when the pipeline is valid. With `notes`, adds
// what is worth knowing that is not a problem: for each schema, step or
// check written per engine, the file each engine runs.
// A pipeline whose database is a PostgreSQL URL is checked on that server
// when `check_on_server` is set (`sluice validate`): schema.sql, the seeds
// and every step in a scratch schema that is dropped afterwards (the live
// tables are neither read nor written; TargetOptions::scratch). Without it
// (`sluice run`, which checks the steps on the target itself right after),
// only its seed files are checked here.
std::vector<std::string> ValidatePipeline(const std::string& dir, const ConfigOverrides& overrides = {},
                                          std::vector<std::string>* notes = nullptr, bool check_on_server = false);

// "steps/30_upsert: sqlite runs steps/30_upsert.sqlite.sql, postgres runs
// steps/30_upsert.postgres.sql" ("postgres skips it" when it has no file).
std::string DescribeEngineChoice(const EngineChoice& choice);

}  // namespace sluice
