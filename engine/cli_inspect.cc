// Commands that look at a pipeline and its database: `validate`, `status`,
// `quarantine list|replay` and `compact`.
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>

#include "connectors/kafka_source.h"
#include "connectors/memory_source.h"
#include "engine/cli.h"
#include "engine/config.h"
#include "engine/engine.h"
#include "engine/lock.h"
#include "engine/validate.h"
#include "sql/catalog.h"

namespace sluice::cli {
namespace po = boost::program_options;

namespace {


// Steps `stmt`: true while it yields rows (an error ends the listing).
bool NextRow(Statement* stmt) {
  Result<bool> row = stmt->Step();
  return row.ok() && *row;
}

int64_t FileSize(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
}

// Opens the pipeline's existing database, or explains that there is none yet.
Result<std::unique_ptr<Database>> OpenExisting(const PipelineConfig& config, bool read_only) {
  if (config.database != ":memory:" && !std::filesystem::exists(config.database)) {
    return Status::IoError("no database at " + config.database + " yet: `sluice run` creates it");
  }
  DatabaseOptions options;
  options.read_only = read_only;
  options.busy_timeout_ms = config.busy_timeout_ms;
  return Database::Open(config.database, options);
}

}  // namespace

int CommandValidate(const std::vector<std::string>& args) {
  po::options_description options("options");
  options.add_options()("help,h", "show this help");
  po::variables_map vm = ParseWithDir(args, options);
  if (vm.count("help") || !vm.count("dir")) {
    std::cout << "usage: sluice validate DIR\n\n"
                 "Checks pipeline.conf (every key), the seeds' CSV files, schema.sql and every step, by running them\n"
                 "over an empty batch in a scratch in-memory database with the batch's shape and the seeds' tables.\n"
                 "Touches neither Kafka nor the target database. Prints every problem with its file and line and\n"
                 "exits non-zero if there is any. `sluice run` runs the same checks first.\n\n"
              << options;
    return vm.count("help") ? kExitOk : kExitUsage;
  }
  SetupLogging(-1);
  std::string dir = vm["dir"].as<std::string>();
  std::vector<std::string> problems = ValidatePipeline(dir);
  for (const auto& problem : problems) std::cout << problem << "\n";
  if (!problems.empty()) {
    std::cout << problems.size() << " problem" << (problems.size() == 1 ? "" : "s") << " in " << dir << "\n";
    return kExitFailure;
  }
  std::cout << dir << ": ok\n";
  return kExitOk;
}

int CommandStatus(const std::vector<std::string>& args) {
  po::options_description options("options");
  options.add_options()
      ("help,h", "show this help")
      ("json", "print JSON instead of tables")
      ("brokers", po::value<std::string>(), "bootstrap brokers, overriding [source] brokers")
      ("db", po::value<std::string>(), "database, overriding [target] database")
      ("runs", po::value<int>()->default_value(5), "how many recent runs to show");
  po::variables_map vm = ParseWithDir(args, options);
  if (vm.count("help") || !vm.count("dir")) {
    std::cout << "usage: sluice status DIR [--json] [--brokers LIST] [--db PATH] [--runs N]\n\n"
                 "Per partition: the offset stored in SQLite, the group's committed offset, the log end offset and\n"
                 "the lag in messages; the time since the last successful batch; the last runs; quarantine counts\n"
                 "by reason. Reads the database without locking it, so it works while `sluice run` runs.\n\n"
              << options;
    return vm.count("help") ? kExitOk : kExitUsage;
  }
  SetupLogging(-1);
  ConfigOverrides overrides;
  if (vm.count("brokers")) overrides.brokers = vm["brokers"].as<std::string>();
  if (vm.count("db")) overrides.database = vm["db"].as<std::string>();
  Result<Pipeline> pipeline = LoadPipeline(vm["dir"].as<std::string>(), overrides);
  if (!pipeline.ok()) {
    std::cerr << pipeline.status().message() << "\n";
    return kExitFailure;
  }
  Result<std::unique_ptr<Database>> db = OpenExisting(pipeline->config, true);
  if (!db.ok()) {
    std::cerr << db.status().message() << "\n";
    return kExitFailure;
  }
  Catalog catalog(db->get(), pipeline->config.source.group);
  Result<OffsetMap> stored = catalog.AllStoredOffsets();
  if (!stored.ok()) {
    std::cerr << "error: cannot read " << pipeline->config.database << ": " << stored.status().message()
              << (stored.status().message().find("readonly") != std::string::npos
                      ? " (a database in WAL mode is read through its -shm file, which needs a writable directory, "
                        "or a -shm file left by a writer)"
                      : "")
              << "\n";
    return kExitFailure;
  }
  KafkaSourceOptions source_options = pipeline->config.source;
  source_options.connect_timeout = std::min(source_options.connect_timeout, std::chrono::milliseconds(10000));
  // A database fed only by `run --from-file` has nothing to compare with a
  // broker: do not wait for one.
  bool kafka_fed = stored->empty();
  for (const auto& [tp, offset] : *stored) {
    const auto& topics = source_options.topics;
    if (std::find(topics.begin(), topics.end(), tp.first) != topics.end()) kafka_fed = true;
  }
  Result<std::vector<PartitionState>> states =
      kafka_fed ? KafkaSource(source_options).Inspect()
                : Result<std::vector<PartitionState>>(Status::Unavailable("only file inputs stored; brokers not asked"));
  std::string kafka_error = states.ok() ? "" : states.status().message();

  struct Row {
    TopicPartition tp;
    std::optional<int64_t> stored, committed, end;
    std::optional<int64_t> lag;
  };
  std::map<TopicPartition, Row> rows;
  for (const auto& [tp, offset] : *stored) rows[tp].stored = offset;
  if (states.ok()) {
    for (const auto& state : *states) {
      Row& row = rows[state.partition];
      row.committed = state.committed;
      row.end = state.high;
    }
  }
  int64_t total_lag = 0;
  for (auto& [tp, row] : rows) {
    row.tp = tp;
    if (row.end) {
      int64_t from = row.stored ? *row.stored : row.committed ? *row.committed : 0;
      row.lag = std::max<int64_t>(0, *row.end - from);
      total_lag += *row.lag;
    }
  }
  Result<int64_t> since_ok = (*db)->QueryInt(
      "SELECT CAST((julianday('now') - julianday(max(finished_at))) * 86400 AS INTEGER) FROM _sluice_runs WHERE "
      "status = 'ok'",
      -1);
  Result<Statement> runs = (*db)->Prepare(
      "SELECT run_id, status, started_at, messages, staged, quarantined, "
      "coalesce(fetch_ms,0) + coalesce(stage_ms,0) + coalesce(steps_ms,0) + coalesce(commit_ms,0), coalesce(error, '') "
      "FROM _sluice_runs ORDER BY run_id DESC LIMIT ?");
  Result<Statement> reasons = (*db)->Prepare(
      "SELECT error, count(*) FROM _sluice_quarantine GROUP BY error ORDER BY count(*) DESC, error");
  if (!runs.ok() || !reasons.ok()) {
    std::cerr << (runs.ok() ? reasons.status() : runs.status()).message() << "\n";
    return kExitFailure;
  }
  runs->BindInt(1, vm["runs"].as<int>());

  if (vm.count("json")) {
    rapidjson::StringBuffer buffer;
    rapidjson::Writer<rapidjson::StringBuffer> json(buffer);
    auto optional_int = [&](const std::optional<int64_t>& value) {
      if (value) json.Int64(*value);
      else json.Null();
    };
    json.StartObject();
    json.Key("database");
    json.String(pipeline->config.database.c_str());
    json.Key("kafka_error");
    if (kafka_error.empty()) json.Null();
    else json.String(kafka_error.c_str());
    json.Key("partitions");
    json.StartArray();
    for (const auto& [tp, row] : rows) {
      json.StartObject();
      json.Key("topic");
      json.String(tp.first.c_str());
      json.Key("partition");
      json.Int(tp.second);
      json.Key("stored_offset");
      optional_int(row.stored);
      json.Key("committed_offset");
      optional_int(row.committed);
      json.Key("end_offset");
      optional_int(row.end);
      json.Key("lag");
      optional_int(row.lag);
      json.EndObject();
    }
    json.EndArray();
    json.Key("total_lag");
    json.Int64(total_lag);
    json.Key("seconds_since_last_ok_batch");
    if (since_ok.ok() && *since_ok >= 0) json.Int64(*since_ok);
    else json.Null();
    json.Key("runs");
    json.StartArray();
    while (NextRow(&*runs)) {
      json.StartObject();
      json.Key("run_id");
      json.Int64(runs->ColumnInt(0));
      json.Key("status");
      json.String(runs->ColumnText(1).c_str());
      json.Key("started_at");
      json.String(runs->ColumnText(2).c_str());
      json.Key("messages");
      json.Int64(runs->ColumnInt(3));
      json.Key("staged");
      json.Int64(runs->ColumnInt(4));
      json.Key("quarantined");
      json.Int64(runs->ColumnInt(5));
      json.Key("duration_ms");
      json.Int64(static_cast<int64_t>(runs->ColumnDouble(6) + 0.5));  // whole milliseconds
      json.Key("error");
      std::string error = runs->ColumnText(7);
      if (error.empty()) json.Null();
      else json.String(error.c_str());
      json.EndObject();
    }
    json.EndArray();
    json.Key("quarantine");
    json.StartArray();
    while (NextRow(&*reasons)) {
      json.StartObject();
      json.Key("reason");
      json.String(reasons->ColumnText(0).c_str());
      json.Key("messages");
      json.Int64(reasons->ColumnInt(1));
      json.EndObject();
    }
    json.EndArray();
    json.EndObject();
    std::cout << buffer.GetString() << "\n";
    return kExitOk;
  }

  auto show = [](const std::optional<int64_t>& value) { return value ? std::to_string(*value) : std::string("-"); };
  std::printf("database %s\n", pipeline->config.database.c_str());
  if (!kafka_error.empty()) std::printf("kafka: %s (showing what the database knows)\n", kafka_error.c_str());
  std::printf("\n%-30s %12s %12s %12s %10s\n", "partition", "stored", "committed", "end", "lag");
  for (const auto& [tp, row] : rows) {
    std::string name = tp.first + "[" + std::to_string(tp.second) + "]";
    std::printf("%-30s %12s %12s %12s %10s\n", name.c_str(), show(row.stored).c_str(), show(row.committed).c_str(),
                show(row.end).c_str(), show(row.lag).c_str());
  }
  if (states.ok()) std::printf("%-30s %12s %12s %12s %10lld\n", "total", "", "", "", static_cast<long long>(total_lag));
  if (since_ok.ok() && *since_ok >= 0) {
    std::printf("\nlast successful batch: %llds ago\n", static_cast<long long>(*since_ok));
  } else {
    std::printf("\nno successful batch yet\n");
  }
  std::printf("\n%-8s %-7s %-24s %9s %9s %11s %10s  %s\n", "run", "status", "started", "messages", "staged",
              "quarantined", "ms", "error");
  while (NextRow(&*runs)) {
    std::string error = runs->ColumnText(7);
    if (error.size() > 60) error = error.substr(0, 57) + "...";
    std::printf("%-8lld %-7s %-24s %9lld %9lld %11lld %10.0f  %s\n", static_cast<long long>(runs->ColumnInt(0)),
                runs->ColumnText(1).c_str(), runs->ColumnText(2).c_str(), static_cast<long long>(runs->ColumnInt(3)),
                static_cast<long long>(runs->ColumnInt(4)), static_cast<long long>(runs->ColumnInt(5)),
                runs->ColumnDouble(6), error.c_str());
  }
  // The latest result of each data check (a failing check rolls its batch
  // back, so its failure shows in the runs above).
  if ((*db)->TableExists("_sluice_checks")) {
    Result<Statement> checks = (*db)->Prepare(
        "SELECT \"check\", severity, \"rows\", run_id, ifnull(sample, '') FROM _sluice_checks WHERE pipeline = ? "
        "ORDER BY \"check\"");
    if (checks.ok()) {
      checks->BindText(1, pipeline->config.source.group);
      bool header = false;
      while (NextRow(&*checks)) {
        if (!header) std::printf("\n%-34s %-8s %8s %8s  %s\n", "check", "severity", "rows", "run", "e.g.");
        header = true;
        std::string sample = checks->ColumnText(4);
        if (sample.size() > 60) sample = sample.substr(0, 57) + "...";
        std::printf("%-34s %-8s %8lld %8lld  %s\n", checks->ColumnText(0).c_str(), checks->ColumnText(1).c_str(),
                    static_cast<long long>(checks->ColumnInt(2)), static_cast<long long>(checks->ColumnInt(3)),
                    sample.c_str());
      }
    }
  }
  std::printf("\nquarantine\n");
  bool any = false;
  while (NextRow(&*reasons)) {
    any = true;
    std::printf("%9lld  %s\n", static_cast<long long>(reasons->ColumnInt(1)), reasons->ColumnText(0).c_str());
  }
  if (!any) std::printf("%9s  (empty)\n", "0");
  return kExitOk;
}

int CommandQuarantine(const std::vector<std::string>& args) {
  po::options_description options("options");
  options.add_options()
      ("help,h", "show this help")
      ("db", po::value<std::string>(), "database, overriding [target] database")
      ("verbose,v", "log the replay batch");
  po::variables_map vm = ParseWithDir(args, options, true);
  std::string action = vm.count("action") ? vm["action"].as<std::string>() : "";
  if (!vm.count("help") && vm.count("dir") && !action.empty() && action != "list" && action != "replay") {
    std::cerr << "sluice quarantine: unknown action '" << action << "': use list or replay\n";
    return kExitUsage;
  }
  if (vm.count("help") || !vm.count("dir") || (action != "list" && action != "replay")) {
    std::cout << "usage: sluice quarantine DIR list|replay [--db PATH]\n\n"
                 "list    quarantined messages grouped by reason, with their partitions and offsets\n"
                 "replay  runs every quarantined message through the current pipeline (after a fix to [columns] or\n"
                 "        the steps) in one batch; those that now pass are staged, go through the steps and leave\n"
                 "        the quarantine; the others stay, with today's reason. Offsets do not move.\n\n"
              << options;
    return vm.count("help") ? kExitOk : kExitUsage;
  }
  SetupLogging(vm.count("verbose") ? 0 : -1);
  ConfigOverrides overrides;
  if (vm.count("db")) overrides.database = vm["db"].as<std::string>();
  std::string dir = vm["dir"].as<std::string>();
  Result<Pipeline> pipeline = LoadPipeline(dir, overrides);
  if (!pipeline.ok()) {
    std::cerr << pipeline.status().message() << "\n";
    return kExitFailure;
  }
  if (action == "list") {
    Result<std::unique_ptr<Database>> db = OpenExisting(pipeline->config, true);
    if (!db.ok()) {
      std::cerr << db.status().message() << "\n";
      return kExitFailure;
    }
    // Per reason: the partitions in order, each with its own offset range.
    Result<Statement> groups = (*db)->Prepare(
        "WITH per_partition AS (SELECT error, topic, \"partition\", count(*) AS n, min(\"offset\") AS first, "
        "max(\"offset\") AS last FROM _sluice_quarantine GROUP BY error, topic, \"partition\"), "
        "reasons AS (SELECT error, count(*) AS n, substr(min(CAST(value AS TEXT)), 1, 80) AS example "
        "FROM _sluice_quarantine GROUP BY error) "
        "SELECT r.error, r.n, (SELECT group_concat(topic || '[' || \"partition\" || '] ' || "
        "CASE WHEN first = last THEN first ELSE first || '..' || last END, ', ') FROM (SELECT * FROM per_partition p "
        "WHERE p.error = r.error ORDER BY topic, \"partition\")), 0, 0, r.example FROM reasons r "
        "ORDER BY r.n DESC, r.error");
    if (!groups.ok()) {
      std::cerr << groups.status().message() << "\n";
      return kExitFailure;
    }
    int64_t total = 0;
    while (NextRow(&*groups)) {
      total += groups->ColumnInt(1);
      std::printf("%lld  %s\n     at %s; e.g. %s\n", static_cast<long long>(groups->ColumnInt(1)),
                  groups->ColumnText(0).c_str(), groups->ColumnText(2).c_str(), groups->ColumnText(5).c_str());
    }
    std::printf("%lld quarantined message%s\n", static_cast<long long>(total), total == 1 ? "" : "s");
    return kExitOk;
  }

  // replay
  std::vector<Message> messages;
  int64_t last_rowid = 0;
  int64_t ahead = 0;  // quarantined messages the next run reads again
  {
    Result<std::unique_ptr<Database>> db = OpenExisting(pipeline->config, true);
    if (!db.ok()) {
      std::cerr << db.status().message() << "\n";
      return kExitFailure;
    }
    Result<Statement> rows = (*db)->Prepare(
        "SELECT rowid, topic, \"partition\", \"offset\", \"timestamp\", key, value FROM _sluice_quarantine "
        "ORDER BY rowid");
    if (!rows.ok()) {
      std::cerr << rows.status().message() << "\n";
      return kExitFailure;
    }
    // Messages at or past the stored position (after a reset) are read again
    // by the next run: replaying them too would stage them twice.
    Result<OffsetMap> stored = Catalog(db->get(), pipeline->config.source.group).AllStoredOffsets();
    if (!stored.ok()) {
      std::cerr << stored.status().message() << "\n";
      return kExitFailure;
    }
    while (NextRow(&*rows)) {
      last_rowid = rows->ColumnInt(0);
      auto position = stored->find({rows->ColumnText(1), static_cast<int32_t>(rows->ColumnInt(2))});
      if (position != stored->end() && rows->ColumnInt(3) >= position->second) {
        ++ahead;
        continue;
      }
      Message message;
      message.topic = rows->ColumnText(1);
      message.partition = static_cast<int32_t>(rows->ColumnInt(2));
      message.offset = rows->ColumnInt(3);
      if (!rows->IsNull(4)) message.timestamp = rows->ColumnInt(4);
      if (!rows->IsNull(5)) message.key = rows->ColumnText(5);
      if (!rows->IsNull(6)) message.value = rows->ColumnText(6);
      messages.push_back(std::move(message));
    }
  }
  if (ahead > 0) {
    std::printf("%lld quarantined message%s lie at or past the stored offsets (after a reset): the next `sluice run` "
                "reads them again, so they are not replayed\n",
                static_cast<long long>(ahead), ahead == 1 ? "" : "s");
  }
  if (messages.empty()) {
    std::printf(ahead > 0 ? "nothing to replay\n" : "the quarantine is empty\n");
    return kExitOk;
  }
  size_t count = messages.size();
  pipeline->config.max_messages = count;  // one batch: all or nothing
  EngineOptions engine_options;
  engine_options.exclusive_lock = true;
  engine_options.lock_hint =
      "quarantine replay stages into the same database: stop that `sluice run` first, replay, then start it again";
  auto engine = Engine::Open(*pipeline, std::make_unique<MemorySource>(std::move(messages), "quarantine"), engine_options);
  if (!engine.ok()) {
    std::cerr << engine.status().message() << "\n";
    return kExitFailure;
  }
  BatchOptions batch;
  batch.store_offsets = false;
  std::string group = pipeline->config.source.group;
  batch.before_stage = [last_rowid, group](Database* db) {
    // The rows replayed: up to the last one read, except those the next run reads again.
    Result<Statement> remove = db->Prepare(
        "DELETE FROM _sluice_quarantine AS q WHERE rowid <= ?1 AND NOT EXISTS (SELECT 1 FROM _sluice_offsets AS o "
        "WHERE o.pipeline = ?2 AND o.topic = q.topic AND o.\"partition\" = q.\"partition\" AND q.\"offset\" >= "
        "o.next_offset)");
    if (!remove.ok()) return remove.status();
    remove->BindInt(1, last_rowid);
    remove->BindText(2, group);
    return remove->Run();
  };
  Result<BatchOutcome> outcome = (*engine)->RunBatch(batch);
  if (!outcome.ok()) {
    std::cerr << "replay failed, nothing changed: " << outcome.status().message() << "\n";
    return kExitFailure;
  }
  std::printf("replayed %zu message%s in run %lld: %lld now pass and left the quarantine, %lld still fail\n", count,
              count == 1 ? "" : "s", static_cast<long long>(outcome->run_id),
              static_cast<long long>(outcome->record.staged), static_cast<long long>(outcome->record.quarantined));
  return kExitOk;
}

int CommandCompact(const std::vector<std::string>& args) {
  po::options_description options("options");
  options.add_options()
      ("help,h", "show this help")
      ("db", po::value<std::string>(), "database, overriding [target] database");
  po::variables_map vm = ParseWithDir(args, options);
  if (vm.count("help") || !vm.count("dir")) {
    std::cout << "usage: sluice compact DIR [--db PATH]\n\n"
                 "Prunes staging history older than [staging] retention, checkpoints the WAL, runs PRAGMA optimize and\n"
                 "reclaims free pages (incremental vacuum, or VACUUM for databases created without auto_vacuum), and\n"
                 "reports the space reclaimed. Takes the pipeline's lock: it refuses to run while `sluice run` does.\n\n"
              << options;
    return vm.count("help") ? kExitOk : kExitUsage;
  }
  SetupLogging(-1);
  ConfigOverrides overrides;
  if (vm.count("db")) overrides.database = vm["db"].as<std::string>();
  Result<Pipeline> pipeline = LoadPipeline(vm["dir"].as<std::string>(), overrides);
  if (!pipeline.ok()) {
    std::cerr << pipeline.status().message() << "\n";
    return kExitFailure;
  }
  const std::string& path = pipeline->config.database;
  // Nothing to compact: say so before taking the lock (which would leave a
  // lock file beside a database that does not exist).
  if (path != ":memory:" && !std::filesystem::exists(path)) {
    std::cerr << "no database at " << path << " (nothing has run yet); nothing to compact\n";
    return kExitFailure;
  }
  auto lock = PipelineLock::Acquire(path, true,
                                    "compact needs the database to itself: stop that `sluice run` first (it resumes "
                                    "where it stopped)");
  if (!lock.ok()) {
    std::cerr << lock.status().message() << "\n";
    return kExitFailure;
  }
  Result<std::unique_ptr<Database>> db = OpenExisting(pipeline->config, false);
  if (!db.ok()) {
    std::cerr << db.status().message() << "\n";
    return kExitFailure;
  }
  int64_t before = FileSize(path) + FileSize(path + "-wal");
  int64_t pruned = 0;
  if (pipeline->config.retention.count() > 0 && (*db)->TableExists(StagingWriter::kTable)) {
    std::string cutoff = "-" + std::to_string(pipeline->config.retention.count() / 1000.0) + " seconds";
    Status st = (*db)->Exec(std::string("DELETE FROM ") + StagingWriter::kTable +
                            " WHERE _sluice_run_id IN (SELECT run_id FROM _sluice_runs WHERE started_at < "
                            "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', " + QuoteLiteral(cutoff) + "))");
    if (!st.ok()) {
      std::cerr << st.message() << "\n";
      return kExitFailure;
    }
    pruned = (*db)->Changes();
  }
  Result<int64_t> auto_vacuum = (*db)->QueryInt("PRAGMA auto_vacuum");
  std::string maintenance = "PRAGMA wal_checkpoint(TRUNCATE); PRAGMA optimize; ";
  maintenance += auto_vacuum.ok() && *auto_vacuum == 2 ? "PRAGMA incremental_vacuum; " : "VACUUM; ";
  maintenance += "PRAGMA wal_checkpoint(TRUNCATE);";
  Status st = (*db)->Exec(maintenance);
  if (!st.ok()) {
    std::cerr << "compact: " << st.message() << "\n";
    return kExitFailure;
  }
  int64_t after = FileSize(path) + FileSize(path + "-wal");
  std::printf("pruned %lld staging row%s; %s: %lld -> %lld bytes (%lld reclaimed)\n", static_cast<long long>(pruned),
              pruned == 1 ? "" : "s", path.c_str(), static_cast<long long>(before), static_cast<long long>(after),
              static_cast<long long>(std::max<int64_t>(0, before - after)));
  return kExitOk;
}

}  // namespace sluice::cli
