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
// where there is one); empty when the pipeline is valid.
std::vector<std::string> ValidatePipeline(const std::string& dir, const ConfigOverrides& overrides = {});

}  // namespace sluice
