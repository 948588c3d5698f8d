// Pipeline directory loading: pipeline.conf (INI, read with
// Boost.Program_options), schema.sql, steps/*.sql in lexical order and
// seeds/*.csv. schema.sql, a step or a check may be written per engine:
// NAME.sqlite.sql / NAME.postgres.sql replace NAME.sql on that engine (the
// engine is PostgreSQL for a postgresql:// database, SQLite otherwise). Every mistake is reported before anything runs, naming the
// file, the line and the key, and saying what is accepted.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "connectors/decoder.h"
#include "connectors/kafka_source.h"
#include "sql/seed_file.h"
#include "sql/sql_file.h"

namespace sluice {

struct PipelineConfig {
  std::string dir;  // the pipeline directory, as given
  KafkaSourceOptions source;
  size_t max_messages = 50000;
  std::chrono::milliseconds max_wait{2000};
  std::chrono::milliseconds every{std::chrono::minutes(5)};
  // [batch] retry_for: how long `run --every` retries transient failures
  // (database locked, brokers unreachable) with backoff before it gives up.
  std::chrono::milliseconds retry_for{std::chrono::minutes(15)};
  // [batch] step_timeout: a step running longer fails the batch (0: no limit).
  std::chrono::milliseconds step_timeout{0};
  std::vector<ColumnSpec> columns;
  std::chrono::milliseconds retention{0};  // [staging] retention: how long past batches stay
  std::string database;  // resolved: relative paths are relative to `dir`
  int busy_timeout_ms = 10000;
  unsigned file_mode = 0600;         // [target] file_mode: permissions of a new database file
  bool allow_attach_outside = false;  // [target] allow_attach_outside
};

// Command-line values that win over pipeline.conf.
struct ConfigOverrides {
  std::optional<std::string> brokers;
  std::optional<std::string> database;
  std::optional<size_t> max_messages;
};

// checks/NAME.sql: one query returning the rows that break an expectation,
// run after the steps inside the batch transaction.
struct CheckFile {
  SqlFile file;
  bool warn_only = false;  // "-- severity: warn": the batch commits; the count is recorded
};

// The engines a pipeline's files can be written for: "sqlite", "postgres".
extern const char* const kEngines[2];

// The engine of a database: "postgres" for a postgresql:// URL, else "sqlite".
std::string EngineOf(const std::string& database);

// A file written per engine (NAME.sqlite.sql, NAME.postgres.sql): the file
// each engine runs, as displayed ("steps/30_upsert.sqlite.sql", or the
// shared "steps/30_upsert.sql"); empty when that engine skips it.
struct EngineChoice {
  std::string name;  // "steps/30_upsert", "checks/10_positive", "schema"
  std::string sqlite;
  std::string postgres;
};

struct Pipeline {
  PipelineConfig config;
  std::string engine;             // EngineOf(config.database): whose files were chosen
  std::optional<SqlFile> schema;  // schema.sql (or schema.ENGINE.sql), when present
  std::vector<SqlFile> steps;     // steps/*.sql in lexical order of NAME.sql, chosen for `engine`
  std::vector<CheckFile> checks;  // checks/*.sql in lexical order of NAME.sql, chosen for `engine`
  std::vector<SeedFile> seeds;    // seeds/*.csv
  // Every schema, step and check that has a per-engine file, in order:
  // what each engine runs (`sluice validate` shows it).
  std::vector<EngineChoice> per_engine;
};

// Loads and checks the pipeline directory `dir`.
Result<Pipeline> LoadPipeline(const std::string& dir, const ConfigOverrides& overrides = {});

// Parses pipeline.conf's text; `display` names it in messages.
Result<PipelineConfig> ParseConfig(const std::string& text, const std::string& display, const std::string& dir,
                                   const ConfigOverrides& overrides = {});

// "500ms", "2s", "5m", "1h", "1d" (a bare number is seconds).
Result<std::chrono::milliseconds> ParseDuration(const std::string& text);

// Replaces ${NAME} with the environment variable NAME; a missing variable is
// an error that names it.
Result<std::string> ExpandEnvironment(const std::string& text);


}  // namespace sluice
