// `sluice reset`: moves the pipeline's offsets (in SQLite and in the group
// together) so that the next run reprocesses, or skips, messages.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "connectors/kafka_source.h"
#include "connectors/producer.h"
#include "engine/cli.h"
#include "engine/config.h"
#include "engine/lock.h"
#include "sql/catalog.h"
#include "sql/database.h"

namespace sluice::cli {
namespace po = boost::program_options;

int CommandReset(const std::vector<std::string>& args) {
  po::options_description options("options");
  options.add_options()
      ("help,h", "show this help")
      ("to", po::value<std::string>(), "earliest | latest | TIMESTAMP (epoch ms or ISO-8601): the new position of every partition")
      ("topic", po::value<std::string>(), "with --partition: the topic (needed when the pipeline reads several)")
      ("partition", po::value<int32_t>(), "move only this partition (with --offset)")
      ("offset", po::value<int64_t>(), "the new next offset of --partition")
      ("truncate", po::value<std::vector<std::string>>()->multitoken(), "empty these tables first, for a full rebuild")
      ("dry-run", "print what would change and change nothing")
      ("yes,y", "do not ask for confirmation")
      ("brokers", po::value<std::string>(), "bootstrap brokers, overriding [source] brokers")
      ("db", po::value<std::string>(), "database, overriding [target] database");
  po::variables_map vm = ParseWithDir(args, options);
  bool by_partition = vm.count("partition") || vm.count("offset");
  if (vm.count("help") || !vm.count("dir") || (!vm.count("to") && !by_partition)) {
    std::cout << "usage: sluice reset DIR --to earliest|latest|TIMESTAMP [--truncate TABLE...] [--dry-run] [--yes]\n"
                 "       sluice reset DIR --partition P --offset O [--topic T] [--dry-run] [--yes]\n\n"
                 "Moves the offsets stored in the pipeline's database and the group's committed offsets together, so\n"
                 "the next run starts there. Curated tables stay as they are (upserts make reprocessing safe);\n"
                 "--truncate empties the named tables first for a full rebuild. Prints the plan and asks for\n"
                 "confirmation on a terminal; elsewhere pass --yes. Refused while `sluice run` holds the pipeline.\n\n"
              << options;
    return vm.count("help") ? kExitOk : kExitUsage;
  }
  if (by_partition && (!vm.count("partition") || !vm.count("offset") || vm.count("to"))) {
    std::cerr << "sluice reset: use --partition with --offset, or --to, not both\n";
    return kExitUsage;
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
  const PipelineConfig& config = pipeline->config;
  std::vector<std::string> truncate;
  if (vm.count("truncate")) truncate = vm["truncate"].as<std::vector<std::string>>();
  for (const auto& table : truncate) {
    if (table.rfind("_sluice_", 0) == 0) {
      std::cerr << "sluice reset: --truncate " << table << ": sluice's own tables cannot be truncated\n";
      return kExitUsage;
    }
  }

  auto lock = PipelineLock::Acquire(config.database, true);
  if (!lock.ok()) {
    std::cerr << lock.status().message() << "\n";
    return kExitFailure;
  }
  // Nothing is created before the reset is applied: a dry run, or one that
  // is not confirmed, leaves no database behind.
  bool exists = config.database == ":memory:" || std::filesystem::exists(config.database);
  std::unique_ptr<Database> db;
  OffsetMap stored_offsets;
  if (exists) {
    Result<std::unique_ptr<Database>> opened = Database::Open(config.database, DatabaseOptions{config.busy_timeout_ms});
    if (!opened.ok()) {
      std::cerr << opened.status().message() << "\n";
      return kExitFailure;
    }
    db = std::move(*opened);
    if (db->TableExists("_sluice_offsets")) {
      Result<OffsetMap> stored = Catalog(db.get()).AllStoredOffsets();
      if (!stored.ok()) {
        std::cerr << stored.status().message() << "\n";
        return kExitFailure;
      }
      stored_offsets = *stored;
    }
  }
  for (const auto& table : truncate) {
    if (!db || !db->TableExists(table)) {
      std::cerr << "sluice reset: --truncate " << table << ": no such table in " << config.database << "\n";
      return kExitUsage;
    }
  }
  KafkaSource kafka(config.source);
  Result<std::vector<PartitionState>> states = kafka.Inspect();
  if (!states.ok()) {
    std::cerr << states.status().message() << "\n";
    return kExitFailure;
  }

  OffsetMap target;
  if (by_partition) {
    std::string topic = vm.count("topic") ? vm["topic"].as<std::string>() : "";
    if (topic.empty()) {
      if (config.source.topics.size() != 1) {
        std::cerr << "sluice reset: the pipeline reads several topics; name one with --topic\n";
        return kExitUsage;
      }
      topic = config.source.topics[0];
    }
    TopicPartition tp{topic, vm["partition"].as<int32_t>()};
    bool found = false;
    for (const auto& state : *states) {
      if (state.partition != tp) continue;
      found = true;
      int64_t offset = vm["offset"].as<int64_t>();
      if (offset < state.low || offset > state.high) {
        std::cerr << "sluice reset: offset " << offset << " is outside " << topic << "[" << tp.second << "]'s range "
                  << state.low << ".." << state.high << "\n";
        return kExitUsage;
      }
      target[tp] = offset;
    }
    if (!found) {
      std::cerr << "sluice reset: " << topic << "[" << tp.second << "] is not a partition of the pipeline's topics\n";
      return kExitUsage;
    }
  } else {
    std::string to = vm["to"].as<std::string>();
    if (to == "earliest" || to == "latest") {
      for (const auto& state : *states) target[state.partition] = to == "earliest" ? state.low : state.high;
    } else {
      std::optional<int64_t> ms;
      char* end = nullptr;
      long long number = std::strtoll(to.c_str(), &end, 10);
      if (!to.empty() && *end == '\0') ms = number;
      else ms = ParseIsoMillis(to);
      if (!ms) {
        std::cerr << "sluice reset: --to " << to << ": use earliest, latest, epoch milliseconds or ISO-8601 "
                  << "(2026-11-21T08:00:00Z)\n";
        return kExitUsage;
      }
      Result<OffsetMap> offsets = kafka.OffsetsForTimestamp(*ms);
      if (!offsets.ok()) {
        std::cerr << offsets.status().message() << "\n";
        return kExitFailure;
      }
      target = *offsets;
    }
  }

  std::printf("%-30s %12s %12s %12s\n", "partition", "stored", "committed", "new");
  for (const auto& state : *states) {
    auto next = target.find(state.partition);
    if (next == target.end()) continue;
    auto old = stored_offsets.find(state.partition);
    std::string name = state.partition.first + "[" + std::to_string(state.partition.second) + "]";
    std::printf("%-30s %12s %12s %12lld\n", name.c_str(),
                old == stored_offsets.end() ? "-" : std::to_string(old->second).c_str(),
                state.committed ? std::to_string(*state.committed).c_str() : "-", static_cast<long long>(next->second));
  }
  for (const auto& table : truncate) std::printf("and empty table %s\n", table.c_str());
  if (vm.count("dry-run")) {
    std::printf("dry run: nothing changed\n");
    return kExitOk;
  }
  if (!vm.count("yes")) {
    if (!isatty(STDIN_FILENO)) {
      std::cerr << "sluice reset: add --yes to apply (not asking: standard input is not a terminal)\n";
      return kExitUsage;
    }
    std::printf("apply? [y/N] ");
    std::fflush(stdout);
    std::string answer;
    std::getline(std::cin, answer);
    if (answer != "y" && answer != "Y" && answer != "yes") {
      std::printf("nothing changed\n");
      return kExitFailure;
    }
  }

  if (!db) {
    Result<std::unique_ptr<Database>> created = Database::Open(config.database, DatabaseOptions{config.busy_timeout_ms});
    if (!created.ok()) {
      std::cerr << created.status().message() << "\n";
      return kExitFailure;
    }
    db = std::move(*created);
  }
  Catalog catalog(db.get());
  Status installed = catalog.Install();
  if (!installed.ok()) {
    std::cerr << installed.message() << "\n";
    return kExitFailure;
  }
  Result<std::unique_ptr<Transaction>> tx = Transaction::Begin(db.get());
  if (!tx.ok()) {
    std::cerr << tx.status().message() << "\n";
    return kExitFailure;
  }
  for (const auto& table : truncate) {
    Status st = db->Exec("DELETE FROM " + QuoteIdentifier(table));
    if (!st.ok()) {
      std::cerr << "cannot empty " << table << ": " << st.message() << "\n";
      return kExitFailure;
    }
  }
  RunRecord record;
  record.started_at = Catalog::Now();
  record.status = "reset";
  record.notes = "reset to " + (by_partition ? std::string("an explicit offset") : vm["to"].as<std::string>());
  for (const auto& table : truncate) record.notes += "; emptied " + table;
  Result<int64_t> run_id = catalog.FinishRun(record);
  Status st = run_id.ok() ? catalog.StoreOffsets(target, *run_id) : run_id.status();
  if (st.ok()) st = (*tx)->Commit();
  if (!st.ok()) {
    std::cerr << "nothing changed: " << st.message() << "\n";
    return kExitFailure;
  }
  Status committed = kafka.CommitGroupOffsets(target);
  if (!committed.ok()) {
    std::cerr << "warning: the database now holds the new offsets (they win at the next run), but the group's "
                 "could not be moved: "
              << committed.message() << "\n";
  }
  std::printf("reset %zu partition%s; the next run starts there\n", target.size(), target.size() == 1 ? "" : "s");
  return kExitOk;
}

}  // namespace sluice::cli
