// Commands that look at a pipeline and its database: `validate`, `status`,
// `quarantine list|replay` and `compact`.
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <spdlog/spdlog.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>

#include "connectors/kafka_source.h"
#include "connectors/memory_source.h"
#include "engine/cli/cli.h"
#include "engine/config.h"
#include "engine/engine.h"
#include "engine/validate.h"
#include "sql/target.h"

namespace sluice::cli {
namespace po = boost::program_options;

namespace {


// Opens the pipeline's existing database, or explains that there is none yet.
Result<std::unique_ptr<Target>> OpenExisting(const PipelineConfig& config, bool read_only,
                                             TargetOptions::Lock lock = TargetOptions::Lock::kNone,
                                             const std::string& lock_hint = "") {
  TargetOptions options;
  options.database = config.database;
  options.pipeline = config.source.group;
  options.busy_timeout_ms = config.busy_timeout_ms;
  options.access = read_only ? TargetOptions::Access::kReadOnly : TargetOptions::Access::kExisting;
  options.lock = lock;
  options.lock_hint = lock_hint;
  return Target::Open(options);
}

}  // namespace

int CommandValidate(const std::vector<std::string>& args) {
  po::options_description options("options");
  options.add_options()
      ("help,h", "show this help")
      ("db", po::value<std::string>(), "check against this database instead of [target] database (a PostgreSQL "
                                       "URL checks the files written for PostgreSQL, on that server)");
  po::variables_map vm = ParseWithDir(args, options);
  if (vm.count("help") || !vm.count("dir")) {
    std::cout << "usage: sluice validate DIR [--db DATABASE]\n\n"
                 "Checks pipeline.conf (every key), the seeds' CSV files, schema.sql and every step, by running them\n"
                 "over an empty batch in a scratch database with the batch's shape and the seeds' tables: in memory\n"
                 "for SQLite; for a postgresql:// database, a scratch schema on that server, dropped afterwards.\n"
                 "Touches neither Kafka nor the pipeline's tables. Prints every problem with its file and line and\n"
                 "exits non-zero if there is any. `sluice run` runs the same checks first. For each file written per\n"
                 "engine (NAME.sqlite.sql, NAME.postgres.sql) it says which file each engine runs.\n\n"
              << options;
    return vm.count("help") ? kExitOk : kExitUsage;
  }
  SetupLogging(-1);
  std::string dir = vm["dir"].as<std::string>();
  std::vector<std::string> notes;
  ConfigOverrides overrides;
  if (vm.count("db")) overrides.database = vm["db"].as<std::string>();
  std::vector<std::string> problems = ValidatePipeline(dir, overrides, &notes, /*check_on_server=*/true);
  for (const auto& note : notes) std::cout << note << "\n";
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
    return Fail(pipeline.status());
  }
  Result<std::unique_ptr<Target>> target = OpenExisting(pipeline->config, true);
  if (!target.ok()) {
    return Fail(target.status());
  }
  Result<TargetReport> report = (*target)->Report(vm["runs"].as<int>());
  if (!report.ok()) {
    return Fail(report.status(), "error");
  }
  const OffsetMap* stored = &report->stored;
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
  if (vm.count("json")) {
    rapidjson::StringBuffer buffer;
    rapidjson::Writer<rapidjson::StringBuffer> json(buffer);
    auto optional_int = [&](const std::optional<int64_t>& value) {
      if (value) json.Int64(*value);
      else json.Null();
    };
    json.StartObject();
    json.Key("database");
    json.String(DescribeDatabase(pipeline->config.database).c_str());
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
    if (report->seconds_since_ok) json.Int64(*report->seconds_since_ok);
    else json.Null();
    json.Key("runs");
    json.StartArray();
    for (const auto& run : report->runs) {
      json.StartObject();
      json.Key("run_id");
      json.Int64(run.run_id);
      json.Key("status");
      json.String(run.status.c_str());
      json.Key("started_at");
      json.String(run.started_at.c_str());
      json.Key("messages");
      json.Int64(run.messages);
      json.Key("staged");
      json.Int64(run.staged);
      json.Key("quarantined");
      json.Int64(run.quarantined);
      json.Key("duration_ms");
      json.Int64(static_cast<int64_t>(run.duration_ms + 0.5));  // whole milliseconds
      json.Key("error");
      if (run.error.empty()) json.Null();
      else json.String(run.error.c_str());
      json.EndObject();
    }
    json.EndArray();
    json.Key("quarantine");
    json.StartArray();
    for (const auto& reason : report->quarantine) {
      json.StartObject();
      json.Key("reason");
      json.String(reason.reason.c_str());
      json.Key("messages");
      json.Int64(reason.messages);
      json.EndObject();
    }
    json.EndArray();
    json.EndObject();
    std::cout << buffer.GetString() << "\n";
    return kExitOk;
  }

  auto show = [](const std::optional<int64_t>& value) { return value ? std::to_string(*value) : std::string("-"); };
  std::printf("database %s\n", DescribeDatabase(pipeline->config.database).c_str());
  if (!kafka_error.empty()) std::printf("kafka: %s (showing what the database knows)\n", kafka_error.c_str());
  std::printf("\n%-30s %12s %12s %12s %10s\n", "partition", "stored", "committed", "end", "lag");
  for (const auto& [tp, row] : rows) {
    std::string name = tp.first + "[" + std::to_string(tp.second) + "]";
    std::printf("%-30s %12s %12s %12s %10s\n", name.c_str(), show(row.stored).c_str(), show(row.committed).c_str(),
                show(row.end).c_str(), show(row.lag).c_str());
  }
  if (states.ok()) std::printf("%-30s %12s %12s %12s %10lld\n", "total", "", "", "", static_cast<long long>(total_lag));
  if (report->seconds_since_ok) {
    std::printf("\nlast successful batch: %llds ago\n", static_cast<long long>(*report->seconds_since_ok));
  } else {
    std::printf("\nno successful batch yet\n");
  }
  std::printf("\n%-8s %-7s %-24s %9s %9s %11s %10s  %s\n", "run", "status", "started", "messages", "staged",
              "quarantined", "ms", "error");
  for (const auto& run : report->runs) {
    std::string error = run.error;
    if (error.size() > 60) error = error.substr(0, 57) + "...";
    std::printf("%-8lld %-7s %-24s %9lld %9lld %11lld %10.0f  %s\n", static_cast<long long>(run.run_id),
                run.status.c_str(), run.started_at.c_str(), static_cast<long long>(run.messages),
                static_cast<long long>(run.staged), static_cast<long long>(run.quarantined), run.duration_ms,
                error.c_str());
  }
  // The latest result of each data check (a failing check rolls its batch
  // back, so its failure shows in the runs above).
  if (!report->checks.empty()) std::printf("\n%-34s %-8s %8s %8s  %s\n", "check", "severity", "rows", "run", "e.g.");
  for (const auto& check : report->checks) {
    std::string sample = check.sample;
    if (sample.size() > 60) sample = sample.substr(0, 57) + "...";
    std::printf("%-34s %-8s %8lld %8lld  %s\n", check.check.c_str(), check.severity.c_str(),
                static_cast<long long>(check.rows), static_cast<long long>(check.run_id), sample.c_str());
  }
  std::printf("\nquarantine\n");
  for (const auto& reason : report->quarantine) {
    std::printf("%9lld  %s\n", static_cast<long long>(reason.messages), reason.reason.c_str());
  }
  if (report->quarantine.empty()) std::printf("%9s  (empty)\n", "0");
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
    return Fail(pipeline.status());
  }
  if (action == "list") {
    Result<std::unique_ptr<Target>> target = OpenExisting(pipeline->config, true);
    if (!target.ok()) {
      return Fail(target.status());
    }
    Result<TargetReport> report = (*target)->Report(0);
    if (!report.ok()) {
      return Fail(report.status());
    }
    int64_t total = 0;
    for (const auto& reason : report->quarantine) {
      total += reason.messages;
      std::printf("%lld  %s\n     at %s; e.g. %s\n", static_cast<long long>(reason.messages), reason.reason.c_str(),
                  reason.where.c_str(), reason.example.c_str());
    }
    std::printf("%lld quarantined message%s\n", static_cast<long long>(total), total == 1 ? "" : "s");
    return kExitOk;
  }

  // replay
  std::vector<Message> messages;
  int64_t through = 0;
  int64_t ahead = 0;  // quarantined messages the next run reads again
  {
    Result<std::unique_ptr<Target>> target = OpenExisting(pipeline->config, true);
    if (!target.ok()) {
      return Fail(target.status());
    }
    Result<QuarantineSnapshot> snapshot = (*target)->TakeQuarantine();
    if (!snapshot.ok()) {
      return Fail(snapshot.status());
    }
    messages = std::move(snapshot->messages);
    through = snapshot->through;
    ahead = snapshot->ahead;
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
    return Fail(engine.status());
  }
  BatchOptions batch;
  batch.store_offsets = false;
  batch.before_stage = [through](Target* target) { return target->ForgetReplayed(through); };
  Result<BatchOutcome> outcome = (*engine)->RunBatch(batch);
  if (!outcome.ok()) {
    return Fail(outcome.status(), "replay failed, nothing changed");
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
    return Fail(pipeline.status());
  }
  const std::string& path = pipeline->config.database;
  // Nothing to compact: say so before taking the lock (which would leave a
  // lock file beside a database that does not exist).
  if (path != ":memory:" && !IsDatabaseUrl(path) && !std::filesystem::exists(path)) {
    std::cerr << "no database at " << path << " (nothing has run yet); nothing to compact\n";
    return kExitFailure;
  }
  Result<std::unique_ptr<Target>> target =
      OpenExisting(pipeline->config, false, TargetOptions::Lock::kExclusive,
                   "compact needs the database to itself: stop that `sluice run` first (it resumes where it stopped)");
  if (!target.ok()) {
    return Fail(target.status());
  }
  Result<CompactOutcome> compacted = (*target)->Compact(pipeline->config.retention);
  if (!compacted.ok()) {
    return Fail(compacted.status());
  }
  std::printf("pruned %lld staging row%s; %s: %lld -> %lld bytes (%lld reclaimed)\n",
              static_cast<long long>(compacted->pruned_rows), compacted->pruned_rows == 1 ? "" : "s",
              DescribeDatabase(path).c_str(),
              static_cast<long long>(compacted->bytes_before), static_cast<long long>(compacted->bytes_after),
              static_cast<long long>(std::max<int64_t>(0, compacted->bytes_before - compacted->bytes_after)));
  return kExitOk;
}

}  // namespace sluice::cli
