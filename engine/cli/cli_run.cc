// `sluice run`: validate, open the engine over Kafka (or a file), run the
// chosen mode, show progress on a terminal.
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <thread>
#include <cstdio>
#include <iostream>

#include "connectors/file_source.h"
#include "connectors/kafka_source.h"
#include "engine/cli/cli.h"
#include "engine/config.h"
#include "engine/engine.h"
#include "engine/validate.h"
#include "sql/target.h"

namespace sluice::cli {
namespace po = boost::program_options;

namespace {

// True while a progress bar is on the terminal's last line.
std::atomic<bool> g_bar_visible{false};

// Log lines on stderr that first clear a progress bar, so that no line starts
// on the bar's row; the next batch draws the bar again below them.
class BarAwareSink : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t formatted;
    formatter_->format(msg, formatted);
    if (g_bar_visible.exchange(false)) std::fputs("\r\033[K", stderr);
    std::fwrite(formatted.data(), 1, formatted.size(), stderr);
  }
  void flush_() override { std::fflush(stderr); }
};

// Draws "[#####     ]  52%  520000/1000000 msgs  312k msg/s  ETA 2s" on stderr.
void DrawProgress(const Progress& progress) {
  double fraction = progress.backlog > 0 ? std::min(1.0, static_cast<double>(progress.done) / progress.backlog) : 1.0;
  if (progress.finished) fraction = 1.0;
  int filled = static_cast<int>(fraction * 30);
  double rate = progress.elapsed_s > 0 ? progress.done / progress.elapsed_s : 0;
  double eta = rate > 0 && progress.backlog > progress.done ? (progress.backlog - progress.done) / rate : 0;
  std::fprintf(stderr, "\r[%s%s] %3d%%  %lld/%lld msgs  %.0f msg/s  ETA %.0fs ", std::string(filled, '#').c_str(),
               std::string(30 - filled, ' ').c_str(), static_cast<int>(fraction * 100),
               static_cast<long long>(progress.done), static_cast<long long>(progress.backlog), rate, eta);
  if (progress.finished) std::fprintf(stderr, "\n");
  g_bar_visible.store(!progress.finished);
  std::fflush(stderr);
}

// The identities of --from-file inputs, kept in the pipeline's database
// through a connection of their own (opened when first needed: the engine
// creates the database).
FileInputStore InputStore(const PipelineConfig& config) {
  auto shared = std::make_shared<std::unique_ptr<Target>>();
  TargetOptions options;
  options.database = config.database;
  options.pipeline = config.source.group;
  options.busy_timeout_ms = config.busy_timeout_ms;
  options.file_mode = config.file_mode;
  auto catalog = [shared, options]() -> Result<Target*> {
    if (!*shared) {
      Result<std::unique_ptr<Target>> opened = Target::Open(options);
      if (!opened.ok()) return opened.status();
      *shared = std::move(*opened);
    }
    return shared->get();
  };
  FileInputStore store;
  store.find = [catalog](const std::string& input, int64_t next) -> Result<std::optional<InputCheckpoint>> {
    Result<Target*> c = catalog();
    if (!c.ok()) return c.status();
    Result<std::optional<InputRecord>> found = (*c)->FindInput(input, next);
    if (!found.ok()) return found.status();
    if (!*found) return std::optional<InputCheckpoint>();
    return std::optional<InputCheckpoint>(InputCheckpoint{next, (*found)->bytes, (*found)->checksum});
  };
  store.save = [catalog](const std::string& input, const InputCheckpoint& checkpoint) -> Status {
    Result<Target*> c = catalog();
    if (!c.ok()) return c.status();
    return (*c)->SaveInput(input, InputRecord{checkpoint.next_offset, checkpoint.bytes, checkpoint.checksum});
  };
  store.forget = [catalog](const std::string& input) -> Status {
    Result<Target*> c = catalog();
    if (!c.ok()) return c.status();
    return (*c)->ForgetInput(input);
  };
  return store;
}

}  // namespace

int CommandRun(const std::vector<std::string>& args) {
  po::options_description options("options");
  std::string every;
  options.add_options()
      ("help,h", "show this help")
      ("once", "run one batch (possibly empty) and exit")
      ("until-caught-up", "run batches until every partition reaches its end offset as seen at start, then exit (default)")
      ("every", po::value<std::string>(&every)->implicit_value(""),
       "run until caught up, sleep to the next tick, repeat; DURATION such as 30s or 5m (default: [batch] every)")
      ("from-file", po::value<std::string>(),
       "read JSON lines from FILE (- for stdin) instead of Kafka: the file's name is the topic, the line number the offset")
      ("restart", "with --from-file: forget the position stored for this input and read it from its first line")
      ("brokers", po::value<std::string>(), "bootstrap brokers, overriding [source] brokers")
      ("db", po::value<std::string>(), "target database, overriding [target] database")
      ("max-messages", po::value<size_t>(), "cap per batch, overriding [batch] max_messages")
      ("verbose,v", "log more")
      ("quiet,q", "log only warnings and errors; no progress bar");
  po::variables_map vm = ParseWithDir(args, options);
  if (vm.count("help")) {
    std::cout << "usage: sluice run DIR [--once | --until-caught-up | --every [DURATION]] [--from-file FILE [--restart]]\n"
                 "                      [--brokers LIST] [--db PATH] [--max-messages N] [-v | -q]\n\n"
                 "Runs the pipeline in DIR. Each batch is one SQLite transaction: stage the messages (bad ones go to\n"
                 "_sluice_quarantine), run steps/*.sql in order, store the next offsets, commit; only then are the\n"
                 "offsets committed to the Kafka group. A failing step rolls the batch back and exits non-zero.\n"
                 "SIGINT, SIGTERM and SIGHUP interrupt the batch in flight (rolled back, offsets unchanged) and exit 0.\n"
                 "`--every` retries transient failures for [batch] retry_for. The pipeline is validated first.\n\n"
              << options;
    return kExitOk;
  }
  if (!vm.count("dir")) {
    std::cerr << "sluice run: missing pipeline directory (sluice run DIR; see --help)\n";
    return kExitUsage;
  }
  int modes = static_cast<int>(vm.count("once") + vm.count("until-caught-up") + vm.count("every"));
  if (modes > 1) {
    std::cerr << "sluice run: choose one of --once, --until-caught-up, --every\n";
    return kExitUsage;
  }
  if (vm.count("restart") && !vm.count("from-file")) {
    std::cerr << "sluice run: --restart goes with --from-file (for Kafka, see sluice reset)\n";
    return kExitUsage;
  }
  if (vm.count("verbose") && vm.count("quiet")) {
    std::cerr << "sluice run: choose one of -v and -q\n";
    return kExitUsage;
  }
  int verbosity = vm.count("verbose") ? 1 : vm.count("quiet") ? -1 : 0;
  SetupLogging(verbosity);

  ConfigOverrides overrides;
  if (vm.count("brokers")) overrides.brokers = vm["brokers"].as<std::string>();
  if (vm.count("db")) overrides.database = vm["db"].as<std::string>();
  if (vm.count("max-messages")) {
    size_t max = vm["max-messages"].as<size_t>();
    // size_t reads "-1" as its largest value: bound it like [batch] max_messages.
    if (max == 0 || max > 10000000) {
      std::cerr << "sluice run: --max-messages must be a whole number between 1 and 10000000\n";
      return kExitUsage;
    }
    overrides.max_messages = max;
  }
  std::string dir = vm["dir"].as<std::string>();
  std::vector<std::string> problems = ValidatePipeline(dir, overrides);
  if (!problems.empty()) {
    for (const auto& problem : problems) spdlog::error("{}", problem);
    spdlog::error("{} problem{} found; nothing was consumed (`sluice validate {}` checks again)", problems.size(),
                  problems.size() == 1 ? "" : "s", dir);
    return kExitFailure;
  }
  Result<Pipeline> pipeline = LoadPipeline(dir, overrides);
  if (!pipeline.ok()) {
    spdlog::error("{}", pipeline.status().message());
    return kExitFailure;
  }
  RunOptions run_options;
  run_options.mode = vm.count("once") ? RunMode::kOnce : vm.count("every") ? RunMode::kEvery : RunMode::kUntilCaughtUp;
  run_options.every = pipeline->config.every;
  if (vm.count("every") && !every.empty()) {
    auto duration = ParseDuration(every);
    if (!duration.ok() || duration->count() == 0) {
      std::cerr << "sluice run: --every " << every << ": "
                << (duration.ok() ? std::string("must be longer than 0") : duration.status().message()) << "\n";
      return kExitUsage;
    }
    run_options.every = *duration;
  }
  if (run_options.mode == RunMode::kUntilCaughtUp && verbosity >= 0 && isatty(STDERR_FILENO)) {
    run_options.progress = DrawProgress;
    auto sink = std::make_shared<BarAwareSink>();
    sink->set_pattern("%Y-%m-%dT%H:%M:%S.%e %l %v");
    spdlog::default_logger()->sinks().assign({sink});
  }

  InstallSignalHandlers();
  const auto& config = pipeline->config;
  std::unique_ptr<BatchSource> source;
  EngineOptions engine_options;
  FileSourceOptions file;
  if (vm.count("from-file")) {
    file.path = vm["from-file"].as<std::string>();
    file.default_timestamp =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    file.restart = vm.count("restart") > 0;
    file.wait_for_newline = file.path != "-";
    file.kafka_topics = config.source.topics;
    if (config.database != ":memory:") file.store = InputStore(config);
    source = std::make_unique<FileSource>(file);
    engine_options.exclusive_lock = true;
  } else {
    KafkaSourceOptions options = config.source;
    options.stop = &g_stop;
    source = std::make_unique<KafkaSource>(options);
    engine_options.exclusive_lock = config.source.assignment == KafkaSourceOptions::Assignment::kAll;
  }
  std::string described = source->Describe();
  // `--every` is a service: a database locked or brokers unreachable at
  // start are retried like the same failures later on ([batch] retry_for).
  auto make_source = [&]() -> std::unique_ptr<BatchSource> {
    if (vm.count("from-file")) return std::make_unique<FileSource>(file);
    KafkaSourceOptions options = config.source;
    options.stop = &g_stop;
    return std::make_unique<KafkaSource>(options);
  };
  auto engine = Engine::Open(*pipeline, std::move(source), engine_options);
  auto failing_since = std::chrono::steady_clock::now();
  std::chrono::milliseconds backoff(1000);
  while (!engine.ok() && engine.status().transient() && run_options.mode == RunMode::kEvery && !g_stop.load() &&
         std::chrono::steady_clock::now() - failing_since < config.retry_for) {
    spdlog::warn("{}", engine.status().message());
    spdlog::warn("transient failure at start; retrying in {}s (for up to {}s in all, [batch] retry_for)",
                 backoff.count() / 1000, config.retry_for.count() / 1000);
    auto until = std::chrono::steady_clock::now() + backoff;
    while (!g_stop.load() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    backoff = std::min(backoff * 2, std::chrono::milliseconds(60000));
    engine = Engine::Open(*pipeline, make_source(), engine_options);
  }
  if (!engine.ok()) {
    if (g_stop.load() && (engine.status().transient() || engine.status().code() == Status::Code::kAborted)) {
      spdlog::info("stopped by {} while waiting to start", SignalName(g_signal.load()));
      return kExitOk;
    }
    spdlog::error("{}", engine.status().message());
    return kExitFailure;
  }
  spdlog::info("pipeline {}: {} into {} ({} steps, {} seeds)", dir, described, DescribeDatabase(config.database),
               pipeline->steps.size(), pipeline->seeds.size());
  Status st = (*engine)->Run(run_options, g_stop);
  if (!st.ok() && st.code() != Status::Code::kAborted) {
    // Every failure ends with its cause on stderr: a failed batch was logged
    // with its run id by the engine; anything else is logged here.
    if (!(*engine)->Reported(st)) spdlog::error("{}", st.message());
    return kExitFailure;
  }
  if (g_stop.load()) {
    spdlog::info("stopped by {}{}", SignalName(g_signal.load()),
                 st.ok() ? " between batches" : " (the batch in flight was rolled back; offsets unchanged)");
  }
  return kExitOk;
}

}  // namespace sluice::cli
