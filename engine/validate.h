// Validation: everything that can be checked about a pipeline before it
// consumes anything. `sluice validate` runs it against a scratch in-memory
// target with the batch's shape and the seeds' tables, touching neither
// Kafka nor the target database; `sluice run` runs the same checks first.
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
std::vector<std::string> ValidatePipeline(const std::string& dir, const ConfigOverrides& overrides = {},
                                          std::vector<std::string>* notes = nullptr);

// "steps/30_upsert: sqlite runs steps/30_upsert.sqlite.sql, postgres runs
// steps/30_upsert.postgres.sql" ("postgres skips it" when it has no file).
std::string DescribeEngineChoice(const EngineChoice& choice);

}  // namespace sluice
