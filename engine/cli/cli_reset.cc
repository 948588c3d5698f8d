// `sluice reset`: moves the pipeline's offsets (in SQLite and in the group
// together) so that the next run reprocesses, or skips, messages.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "connectors/kafka_source.h"
#include "connectors/producer.h"
#include "engine/cli/cli.h"
#include "engine/config.h"
#include "sql/target.h"

namespace sluice::cli {

namespace {
// The target as `run` would open it (a database that reset creates gets
// [target] file_mode, like one that run creates), taken exclusively.
TargetOptions ResetTargetOptions(const PipelineConfig& config, bool create) {
  TargetOptions options;
  options.database = config.database;
  options.pipeline = config.source.group;
  options.busy_timeout_ms = config.busy_timeout_ms;
  options.file_mode = config.file_mode;
  options.access = create ? TargetOptions::Access::kCreate : TargetOptions::Access::kExisting;
  options.lock = TargetOptions::Lock::kExclusive;
  options.lock_hint = "reset moves the offsets that run is using: stop it first, reset, then start it again";
  return options;
}
}  // namespace
namespace po = boost::program_options;

int CommandReset(const std::vector<std::string>& args) {
  po::options_description options("options");
  options.add_options()
      ("help,h", "show this help")
      ("to", po::value<std::string>(), "earliest | latest | TIMESTAMP (epoch ms or ISO-8601): the new position of every partition")
      ("topic", po::value<std::string>(), "with --partition: the topic (needed when the pipeline reads several)")
      ("partition", po::value<int32_t>(), "move only this partition (with --offset)")
      ("offset", po::value<int64_t>(), "the new next offset of --partition")
      ("input", po::value<std::vector<std::string>>()->multitoken(),
       "forget the position of these --from-file inputs (by name): the next `run --from-file` reads them from "
       "their first line")
      ("truncate", po::value<std::vector<std::string>>()->multitoken(), "empty these tables first, for a full rebuild")
      ("dry-run", "print what would change and change nothing")
      ("yes,y", "do not ask for confirmation")
      ("brokers", po::value<std::string>(), "bootstrap brokers, overriding [source] brokers")
      ("db", po::value<std::string>(), "database, overriding [target] database");
  po::variables_map vm = ParseWithDir(args, options);
  bool by_partition = vm.count("partition") || vm.count("offset");
  bool by_input = vm.count("input") > 0;
  if (vm.count("help") || !vm.count("dir") || (!vm.count("to") && !by_partition && !by_input)) {
    std::cout << "usage: sluice reset DIR --to earliest|latest|TIMESTAMP [--truncate TABLE...] [--dry-run] [--yes]\n"
                 "       sluice reset DIR --partition P --offset O [--topic T] [--dry-run] [--yes]\n"
                 "       sluice reset DIR --input NAME... [--truncate TABLE...] [--dry-run] [--yes]\n\n"
                 "Moves the offsets stored in the pipeline's database and the group's committed offsets together, so\n"
                 "the next run starts there. Curated tables stay as they are (upserts make reprocessing safe);\n"
                 "--truncate empties the named tables first for a full rebuild. Prints the plan and asks for\n"
                 "confirmation on a terminal; elsewhere pass --yes. Refused while `sluice run` holds the pipeline.\n"
                 "--to earliest also forgets the positions of --from-file inputs, so that the next `run --from-file`\n"
                 "reads them from their first line; --input forgets only the named ones (no broker needed).\n\n"
              << options;
    return vm.count("help") ? kExitOk : kExitUsage;
  }
  if (by_partition && (!vm.count("partition") || !vm.count("offset") || vm.count("to"))) {
    std::cerr << "sluice reset: use --partition with --offset, or --to, not both\n";
    return kExitUsage;
  }
  if (by_input && (by_partition || vm.count("to"))) {
    std::cerr << "sluice reset: use --input alone (with --truncate), not with --to or --partition\n";
    return kExitUsage;
  }
  // A time before 1970 cannot be looked up: -1 and -2 are the broker's
  // "latest" and "earliest" markers in a lookup by time.
  std::optional<int64_t> to_ms;
  if (vm.count("to")) {
    std::string to = vm["to"].as<std::string>();
    if (to != "earliest" && to != "latest") {
      char* end = nullptr;
      errno = 0;
      long long number = std::strtoll(to.c_str(), &end, 10);
      if (!to.empty() && *end == '\0') to_ms = errno == ERANGE ? std::nullopt : std::optional<int64_t>(number);
      else to_ms = ParseIsoMillis(to);
      if (!to_ms) {
        std::cerr << "sluice reset: --to " << to << ": use earliest, latest, epoch milliseconds or ISO-8601 "
                  << "(2026-11-21T08:00:00Z)\n";
        return kExitUsage;
      }
      if (*to_ms < 0) {
        std::cerr << "sluice reset: --to " << to << ": a time before 1970-01-01T00:00:00Z; Kafka timestamps start "
                  << "there (use --to earliest to read everything still on the broker)\n";
        return kExitUsage;
      }
    }
  }
  SetupLogging(-1);
  ConfigOverrides overrides;
  if (vm.count("brokers")) overrides.brokers = vm["brokers"].as<std::string>();
  if (vm.count("db")) overrides.database = vm["db"].as<std::string>();
  Result<Pipeline> pipeline = LoadPipeline(vm["dir"].as<std::string>(), overrides);
  if (!pipeline.ok()) {
    return Fail(pipeline.status());
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

  // Nothing is created before the reset is applied: a dry run, or one that
  // is not confirmed, leaves no database behind. The lock is held from here
  // to the end.
  bool exists = config.database == ":memory:" || IsDatabaseUrl(config.database) || std::filesystem::exists(config.database);
  std::unique_ptr<Target> target;
  OffsetMap stored_offsets;
  std::vector<std::string> file_inputs;  // inputs of `run --from-file` with a stored position
  if (exists) {
    Result<std::unique_ptr<Target>> opened = Target::Open(ResetTargetOptions(config, false));
    if (!opened.ok()) {
      return Fail(opened.status());
    }
    target = std::move(*opened);
    Result<bool> has_offsets = target->HasTable("_sluice_offsets");
    if (has_offsets.ok() && *has_offsets) {
      Result<OffsetMap> stored = target->AllStoredOffsets();
      if (!stored.ok()) {
        return Fail(stored.status());
      }
      stored_offsets = *stored;
      Result<std::vector<std::string>> inputs = target->FileInputs(config.source.topics);
      if (!inputs.ok()) {
        return Fail(inputs.status());
      }
      file_inputs = *inputs;
    }
  }
  auto is_input = [&](const std::string& name) {
    return std::find(file_inputs.begin(), file_inputs.end(), name) != file_inputs.end();
  };
  // The file inputs whose positions this reset forgets.
  std::vector<std::string> forget;
  if (by_input) {
    for (const auto& name : vm["input"].as<std::vector<std::string>>()) {
      if (!is_input(name)) {
        std::cerr << "sluice reset: --input " << name << ": no position is stored for such a --from-file input"
                  << (file_inputs.empty() ? std::string(" (there is none)") : " (there are: " + [&] {
                        std::string all;
                        for (const auto& input : file_inputs) all += (all.empty() ? "" : ", ") + input;
                        return all;
                      }() + ")")
                  << "\n";
        return kExitUsage;
      }
      if (std::find(forget.begin(), forget.end(), name) == forget.end()) forget.push_back(name);
    }
  } else if (vm.count("to") && vm["to"].as<std::string>() == "earliest") {
    forget = file_inputs;
  }
  for (const auto& table : truncate) {
    Result<bool> has_table = target ? target->HasTable(table) : Result<bool>(false);
    if (!has_table.ok() || !*has_table) {
      std::cerr << "sluice reset: --truncate " << table << ": no such table in " << DescribeDatabase(config.database) << "\n";
      return kExitUsage;
    }
  }
  if (by_partition && vm.count("topic") && is_input(vm["topic"].as<std::string>())) {
    std::string topic = vm["topic"].as<std::string>();
    std::cerr << "sluice reset: " << topic << " is a --from-file input, not a topic: its position is a line of the "
              << "file it was read from. `sluice reset DIR --input " << topic
              << "` forgets it (the next run reads the file from its first line)\n";
    return kExitUsage;
  }
  KafkaSource kafka(config.source);
  Result<std::vector<PartitionState>> states = std::vector<PartitionState>();
  if (!by_input) states = kafka.Inspect();
  if (!states.ok()) {
    return Fail(states.status());
  }

  OffsetMap next;
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
      next[tp] = offset;
    }
    if (!found) {
      std::cerr << "sluice reset: " << topic << "[" << tp.second << "] is not a partition of the pipeline's topics\n";
      return kExitUsage;
    }
  } else if (!by_input) {
    std::string to = vm["to"].as<std::string>();
    if (to == "earliest" || to == "latest") {
      for (const auto& state : *states) next[state.partition] = to == "earliest" ? state.low : state.high;
    } else {
      Result<OffsetMap> offsets = kafka.OffsetsForTimestamp(*to_ms);
      if (!offsets.ok()) {
        return Fail(offsets.status());
      }
      next = *offsets;
    }
  }

  std::printf("%-30s %12s %12s %12s\n", "partition", "stored", "committed", "new");
  for (const auto& state : *states) {
    auto moved = next.find(state.partition);
    if (moved == next.end()) continue;
    auto old = stored_offsets.find(state.partition);
    std::string name = state.partition.first + "[" + std::to_string(state.partition.second) + "]";
    std::printf("%-30s %12s %12s %12lld\n", name.c_str(),
                old == stored_offsets.end() ? "-" : std::to_string(old->second).c_str(),
                state.committed ? std::to_string(*state.committed).c_str() : "-", static_cast<long long>(moved->second));
  }
  for (const auto& input : forget) {
    for (const auto& [tp, offset] : stored_offsets) {
      if (tp.first != input) continue;
      std::string name = tp.first + "[" + std::to_string(tp.second) + "]";
      std::printf("%-30s %12lld %12s %12s\n", name.c_str(), static_cast<long long>(offset), "(file)", "line 1");
    }
  }
  for (const auto& input : file_inputs) {
    if (std::find(forget.begin(), forget.end(), input) != forget.end()) continue;
    std::printf("--from-file input %s keeps its position (--input %s forgets it)\n", input.c_str(), input.c_str());
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

  if (!target) {
    // A typo in --db would otherwise position a database nobody runs.
    std::cerr << "warning: there was no database at " << DescribeDatabase(config.database)
              << "; it is created now and holds these positions for the first `sluice run` (check --db or [target] "
                 "database if that is not what you meant)\n";
    Result<std::unique_ptr<Target>> created = Target::Open(ResetTargetOptions(config, true));
    if (!created.ok()) {
      return Fail(created.status());
    }
    target = std::move(*created);
  }
  ResetPlan plan;
  plan.offsets = next;
  plan.truncate = truncate;
  plan.forget_inputs = forget;
  plan.record.started_at = NowIso();
  plan.record.status = "reset";
  plan.record.notes = by_input       ? std::string("reset of --from-file inputs")
                      : by_partition ? std::string("reset to an explicit offset")
                                     : "reset to " + vm["to"].as<std::string>();
  Result<ResetOutcome> reset = target->Reset(plan);
  if (!reset.ok()) {
    return Fail(reset.status(), "nothing changed");
  }
  Status committed = next.empty() ? Status::Ok() : kafka.CommitGroupOffsets(next);
  if (!committed.ok()) {
    std::cerr << "warning: the database now holds the new offsets (they win at the next run), but the group's "
                 "could not be moved: "
              << committed.message() << "\n";
  }
  if (!by_input) std::printf("reset %zu partition%s", next.size(), next.size() == 1 ? "" : "s");
  if (!forget.empty()) {
    std::printf("%sforgot the position of %zu --from-file input%s", by_input ? "" : " and ", forget.size(),
                forget.size() == 1 ? "" : "s");
  }
  std::printf(by_input ? "; the next `run --from-file` reads %s from its first line\n" : "; the next run starts there\n",
              forget.size() == 1 ? "it" : "them");
  return kExitOk;
}

}  // namespace sluice::cli
