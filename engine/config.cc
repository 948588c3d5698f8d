// Pipeline directory loading and pipeline.conf validation.
#include "engine/config.h"

#include <boost/program_options.hpp>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "sql/identifier.h"
#include "sql/target.h"

namespace sluice {
namespace fs = std::filesystem;
namespace po = boost::program_options;

namespace {

std::string Trim(const std::string& text) {
  size_t begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return "";
  size_t end = text.find_last_not_of(" \t\r\n");
  return text.substr(begin, end - begin + 1);
}

std::string Lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// Finds the line of `key` in `section` for messages (0 when not found).
int FindLine(const std::string& text, const std::string& section, const std::string& key) {
  std::istringstream in(text);
  std::string line, current;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    std::string trimmed = Trim(line);
    if (trimmed.size() > 2 && trimmed.front() == '[' && trimmed.back() == ']') {
      current = Trim(trimmed.substr(1, trimmed.size() - 2));
    } else if (current == section) {
      size_t eq = trimmed.find('=');
      if (eq != std::string::npos && Trim(trimmed.substr(0, eq)) == key) return number;
    }
  }
  return 0;
}

class ConfigErrors {
 public:
  ConfigErrors(const std::string& text, const std::string& display) : text_(text), display_(display) {}
  void Add(const std::string& section, const std::string& key, const std::string& message) {
    int line = key.empty() ? 0 : FindLine(text_, section, key);
    std::string where = display_ + (line ? ":" + std::to_string(line) : "");
    std::string what = key.empty() ? "[" + section + "]" : section.empty() ? key : "[" + section + "] " + key;
    errors_.push_back(where + ": " + what + ": " + message);
  }
  bool empty() const { return errors_.empty(); }
  Status ToStatus() const {
    std::string joined;
    for (const auto& error : errors_) joined += (joined.empty() ? "" : "\n") + error;
    return Status::InvalidConfig(joined);
  }

 private:
  const std::string& text_;
  std::string display_;
  std::vector<std::string> errors_;
};

std::vector<std::string> SplitList(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    item = Trim(item);
    if (!item.empty()) items.push_back(item);
  }
  return items;
}


// A file of a pipeline directory chosen for the engine.
struct ChosenFile {
  fs::path path;
  std::string display;
};

// Chooses, among the .sql files directly in `dir`, the one each NAME runs on
// `engine`: NAME.ENGINE.sql when there is one, else NAME.sql; a file for the
// other engine is skipped. With `only`, only files whose NAME is `only` count
// (schema.sql in the pipeline directory). `prefix` starts displays
// ("steps/"). Ordered by NAME.sql, so that shared files keep the order they
// always had. NAME.WORD.sql with WORD all letters is a per-engine file, and
// WORD must be an engine; "10_v1.2.sql" is the step "10_v1.2".
Status ChooseFiles(const fs::path& dir, const std::string& prefix, const std::string& only, const std::string& engine,
                   std::vector<ChosenFile>* chosen, std::vector<EngineChoice>* choices) {
  struct Variants {
    std::string name;
    std::optional<fs::path> shared, sqlite, postgres;
  };
  std::map<std::string, Variants> by_name;  // keyed by NAME.sql
  std::vector<std::string> errors;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (!entry.is_regular_file(ec) || entry.path().extension() != ".sql") continue;
    std::string file = entry.path().filename().string();
    std::string stem = file.substr(0, file.size() - 4);
    std::string name = stem, suffix;
    size_t dot = stem.rfind('.');
    if (dot != std::string::npos && dot + 1 < stem.size() &&
        std::all_of(stem.begin() + dot + 1, stem.end(), [](char c) { return std::isalpha(static_cast<unsigned char>(c)); })) {
      name = stem.substr(0, dot);
      suffix = stem.substr(dot + 1);
    }
    if (!only.empty() && name != only) continue;
    if (!suffix.empty() && suffix != kEngines[0] && suffix != kEngines[1]) {
      errors.push_back(prefix + file + ": '" + suffix + "' is not an engine sluice knows (sqlite, postgres): a file for one engine is named " +
                       name + ".sqlite.sql or " + name + ".postgres.sql, and " + name + ".sql runs on both");
      continue;
    }
    Variants& variants = by_name[name + ".sql"];
    variants.name = name;
    (suffix.empty() ? variants.shared : suffix == kEngines[0] ? variants.sqlite : variants.postgres) = entry.path();
  }
  if (!errors.empty()) {
    std::sort(errors.begin(), errors.end());
    std::string all;
    for (const auto& error : errors) all += (all.empty() ? "" : "\n") + error;
    return Status::InvalidConfig(all);
  }
  auto display = [&](const std::optional<fs::path>& path) {
    return path ? prefix + path->filename().string() : std::string();
  };
  for (const auto& [key, variants] : by_name) {
    const std::optional<fs::path>& specific = engine == kEngines[1] ? variants.postgres : variants.sqlite;
    const std::optional<fs::path>& file = specific ? specific : variants.shared;
    if (file) chosen->push_back({*file, display(file)});
    if (variants.sqlite || variants.postgres) {
      choices->push_back({prefix + variants.name, display(variants.sqlite ? variants.sqlite : variants.shared),
                          display(variants.postgres ? variants.postgres : variants.shared)});
    }
  }
  return Status::Ok();
}

}  // namespace

Result<std::chrono::milliseconds> ParseDuration(const std::string& text) {
  std::string trimmed = Trim(text);
  size_t digits = 0;
  while (digits < trimmed.size() && (std::isdigit(static_cast<unsigned char>(trimmed[digits])) || trimmed[digits] == '.')) {
    ++digits;
  }
  std::string number = trimmed.substr(0, digits);
  std::string unit = Lower(Trim(trimmed.substr(digits)));
  auto bad = Status::InvalidConfig("'" + text + "' is not a duration; use a number with ms, s, m, h or d (500ms, 2s, 5m)");
  if (number.empty() || std::count(number.begin(), number.end(), '.') > 1) return bad;
  double value = std::strtod(number.c_str(), nullptr);
  double scale = 0;
  if (unit == "ms") scale = 1;
  else if (unit == "s" || unit.empty()) scale = 1000;
  else if (unit == "m" || unit == "min") scale = 60e3;
  else if (unit == "h") scale = 3600e3;
  else if (unit == "d") scale = 86400e3;
  else return bad;
  double ms = value * scale;
  if (ms > 1e13) return bad;
  return std::chrono::milliseconds(static_cast<int64_t>(ms));
}

Result<std::string> ExpandEnvironment(const std::string& text) {
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t start = text.find("${", pos);
    if (start == std::string::npos) {
      out += text.substr(pos);
      break;
    }
    size_t end = text.find('}', start);
    // The text itself is not shown: it may be a secret.
    if (end == std::string::npos) return Status::InvalidConfig("unclosed ${ (write ${NAME} for an environment variable)");
    out += text.substr(pos, start - pos);
    std::string name = text.substr(start + 2, end - start - 2);
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return Status::InvalidConfig("environment variable " + name + " is not set");
    out += value;
    pos = end + 1;
  }
  return out;
}


Result<PipelineConfig> ParseConfig(const std::string& text, const std::string& display, const std::string& dir,
                                   const ConfigOverrides& overrides) {
  ConfigErrors errors(text, display);
  po::parsed_options parsed(nullptr);
  try {
    std::istringstream in(text);
    po::options_description none;
    parsed = po::parse_config_file(in, none, /*allow_unregistered=*/true);
  } catch (const po::error& e) {
    return Status::InvalidConfig(display + ": " + e.what() + " (expected INI: [section] lines and key = value lines)");
  }

  PipelineConfig config;
  config.dir = dir;
  // Default group: sluice-<directory name>, the same for "orders", "orders/"
  // and "." run inside it.
  std::error_code ec;
  fs::path absolute = fs::absolute(dir, ec).lexically_normal();
  if (absolute.filename().empty()) absolute = absolute.parent_path();
  std::string name = absolute.filename().string();
  config.source.group = name.empty() ? "sluice" : "sluice-" + name;
  config.source.brokers = "localhost:9092";
  std::string database = "pipeline.db";
  std::map<std::string, int> seen;
  const std::set<std::string> known = {
      "source.brokers", "source.topic", "source.group", "source.start", "source.assignment", "source.on_data_loss",
      "source.connect_timeout", "batch.max_messages", "batch.max_wait", "batch.every", "batch.retry_for",
      "batch.step_timeout", "target.database",
      "target.busy_timeout", "target.file_mode", "target.allow_attach_outside", "staging.retention"};
  std::set<std::string> column_names;

  for (const auto& option : parsed.options) {
    const std::string& full = option.string_key;
    size_t dot = full.find('.');
    std::string section = dot == std::string::npos ? "" : full.substr(0, dot);
    std::string key = dot == std::string::npos ? full : full.substr(dot + 1);
    std::string raw = option.value.empty() ? "" : Trim(option.value[0]);
    Result<std::string> expanded = ExpandEnvironment(raw);
    if (!expanded.ok()) {
      errors.Add(section, key, expanded.status().message());
      continue;
    }
    const std::string& value = *expanded;

    if (section == "kafka") {
      if (seen[full]++) {
        errors.Add(section, key, "is set twice");
      } else if (ReservedKafkaProperties().count(key)) {
        errors.Add(section, key, "is set by sluice itself (offsets are committed only after the database commits); "
                                 "remove it" + std::string(key == "bootstrap.servers" ? " and use [source] brokers" : ""));
      } else {
        config.source.properties.emplace_back(key, value);
      }
      continue;
    }
    if (section == "columns") {
      if (!IsPlainIdentifier(key)) {
        errors.Add(section, key, "column names must be letters, digits and _ and not start with a digit");
        continue;
      }
      if (Lower(key).rfind("_kafka_", 0) == 0 || Lower(key).rfind("_sluice_", 0) == 0) {
        errors.Add(section, key, "names starting with _kafka_ or _sluice_ are reserved for sluice's own columns");
        continue;
      }
      if (!column_names.insert(Lower(key)).second) {
        errors.Add(section, key, "is declared twice");
        continue;
      }
      Result<ColumnSpec> column = ParseColumnSpec(key, value);
      if (!column.ok()) errors.Add(section, key, column.status().message());
      else config.columns.push_back(*column);
      continue;
    }
    if (section.empty() || !known.count(full)) {
      if (section.empty()) {
        errors.Add(section, key, "is outside any section; put it under [source], [batch], [columns], [staging], [target] or [kafka]");
      } else if (section != "source" && section != "batch" && section != "target" && section != "staging") {
        errors.Add(section, key,
                   "unknown section [" + section + "] (sections: source, batch, columns, staging, target, kafka)");
      } else {
        errors.Add(section, key, "unknown key");
      }
      continue;
    }
    if (seen[full]++) {
      errors.Add(section, key, "is set twice");
      continue;
    }
    if (full == "source.brokers") {
      config.source.brokers = value;
    } else if (full == "source.topic") {
      config.source.topics = SplitList(value);
    } else if (full == "source.group") {
      config.source.group = value;
    } else if (full == "source.start") {
      if (value == "earliest") config.source.start = KafkaSourceOptions::Start::kEarliest;
      else if (value == "latest") config.source.start = KafkaSourceOptions::Start::kLatest;
      else if (value == "group") config.source.start = KafkaSourceOptions::Start::kGroup;
      else errors.Add(section, key, "'" + value + "' is not one of: earliest, latest, group");
    } else if (full == "source.assignment") {
      if (value == "all") config.source.assignment = KafkaSourceOptions::Assignment::kAll;
      else if (value == "group") config.source.assignment = KafkaSourceOptions::Assignment::kGroup;
      else errors.Add(section, key, "'" + value + "' is not one of: all, group");
    } else if (full == "source.on_data_loss") {
      if (value == "fail") config.source.on_data_loss = KafkaSourceOptions::OnDataLoss::kFail;
      else if (value == "skip") config.source.on_data_loss = KafkaSourceOptions::OnDataLoss::kSkip;
      else errors.Add(section, key, "'" + value + "' is not one of: fail, skip");
    } else if (full == "batch.max_messages") {
      char* end = nullptr;
      long long parsed_value = std::strtoll(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || parsed_value < 1 || parsed_value > 10000000) {
        errors.Add(section, key, "'" + value + "' is not a whole number between 1 and 10000000");
      } else {
        config.max_messages = static_cast<size_t>(parsed_value);
      }
    } else if (full == "target.database") {
      database = value;
    } else if (full == "target.file_mode") {
      char* end = nullptr;
      unsigned long mode = std::strtoul(value.c_str(), &end, 8);
      if (value.empty() || *end != '\0' || mode > 0777 || (mode & 0600) != 0600) {
        errors.Add(section, key, "'" + value + "' is not an octal file mode that lets the owner read and write (e.g. 0600, 0640)");
      } else {
        config.file_mode = static_cast<unsigned>(mode);
      }
    } else if (full == "target.allow_attach_outside") {
      if (value == "true") config.allow_attach_outside = true;
      else if (value == "false") config.allow_attach_outside = false;
      else errors.Add(section, key, "'" + value + "' is not one of: true, false");
    } else if (full == "target.busy_timeout" || full == "source.connect_timeout" || full == "batch.max_wait" ||
               full == "batch.every" || full == "staging.retention" || full == "batch.retry_for" ||
               full == "batch.step_timeout") {
      Result<std::chrono::milliseconds> duration = ParseDuration(value);
      if (!duration.ok()) {
        errors.Add(section, key, duration.status().message());
      } else if (full == "batch.every" && duration->count() == 0) {
        errors.Add(section, key, "must be longer than 0");
      } else if (full == "target.busy_timeout") {
        config.busy_timeout_ms = static_cast<int>(std::min<int64_t>(duration->count(), 3600000));
      } else if (full == "staging.retention") {
        config.retention = *duration;
      } else if (full == "batch.retry_for") {
        config.retry_for = *duration;
      } else if (full == "batch.step_timeout") {
        config.step_timeout = *duration;
      } else if (full == "source.connect_timeout") {
        config.source.connect_timeout = *duration;
      } else if (full == "batch.max_wait") {
        config.max_wait = *duration;
      } else {
        config.every = *duration;
      }
    }
  }
  if (overrides.brokers) config.source.brokers = *overrides.brokers;
  if (overrides.max_messages) config.max_messages = *overrides.max_messages;
  if (overrides.database) database = *overrides.database;
  if (config.source.topics.empty()) errors.Add("source", "topic", "is required: the topic (or comma-separated topics) to read");
  for (size_t topic_idx = 0; topic_idx < config.source.topics.size(); ++topic_idx) {
    const std::string& topic = config.source.topics[topic_idx];
    if (std::find(config.source.topics.begin(), config.source.topics.begin() + topic_idx, topic) !=
        config.source.topics.begin() + topic_idx) {
      errors.Add("source", "topic", "names '" + topic + "' twice");
    }
  }
  if (database.empty()) {
    errors.Add("target", "database",
               overrides.database ? "--db is empty (an unset variable?); give the database's path"
                                  : "is empty; give the database's path");
  }
  if (config.source.brokers.empty()) errors.Add("source", "brokers", "is empty; set it or pass --brokers");
  if (config.source.group.empty()) errors.Add("source", "group", "is empty");
  if (!errors.empty()) return errors.ToStatus();
  config.database = database == ":memory:" || fs::path(database).is_absolute() || overrides.database ||
                            IsDatabaseUrl(database)
                        ? database
                        : (fs::path(dir) / database).string();
  return config;
}

const char* const kEngines[2] = {"sqlite", "postgres"};

std::string EngineOf(const std::string& database) { return IsDatabaseUrl(database) ? kEngines[1] : kEngines[0]; }

Result<Pipeline> LoadPipeline(const std::string& dir, const ConfigOverrides& overrides) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return Status::InvalidConfig(dir + ": not a pipeline directory (it does not exist)");
  fs::path conf_path = fs::path(dir) / "pipeline.conf";
  std::ifstream in(conf_path);
  if (!in) {
    return Status::InvalidConfig(conf_path.string() +
                                 ": missing; a pipeline directory needs pipeline.conf (see `sluice run --help`)");
  }
  std::ostringstream content;
  content << in.rdbuf();
  std::string text = content.str();
  if (text.compare(0, 3, "\xEF\xBB\xBF") == 0) text.erase(0, 3);  // byte-order mark
  Pipeline pipeline;
  Result<PipelineConfig> config = ParseConfig(text, conf_path.string(), dir, overrides);
  if (!config.ok()) return config.status();
  pipeline.config = std::move(*config);

  // Files may ATTACH databases inside the pipeline directory only, unless
  // the configuration allows more.
  auto allow_attach = [&](SqlFile* file) {
    file->attach_root = dir;
    file->attach_anywhere = pipeline.config.allow_attach_outside;
  };
  pipeline.engine = EngineOf(pipeline.config.database);
  std::vector<ChosenFile> schema_files, step_files, check_files;
  SLUICE_RETURN_IF_ERROR(ChooseFiles(dir, "", "schema", pipeline.engine, &schema_files, &pipeline.per_engine));
  for (const auto& chosen : schema_files) {
    Result<SqlFile> file = ReadSqlFile(chosen.path.string(), chosen.display);
    if (!file.ok()) return file.status();
    allow_attach(&*file);
    pipeline.schema = std::move(*file);
  }
  fs::path steps = fs::path(dir) / "steps";
  if (fs::is_directory(steps, ec)) {
    SLUICE_RETURN_IF_ERROR(ChooseFiles(steps, "steps/", "", pipeline.engine, &step_files, &pipeline.per_engine));
    for (const auto& chosen : step_files) {
      Result<SqlFile> step = ReadSqlFile(chosen.path.string(), chosen.display);
      if (!step.ok()) return step.status();
      allow_attach(&*step);
      pipeline.steps.push_back(std::move(*step));
    }
  }
  fs::path checks = fs::path(dir) / "checks";
  if (fs::is_directory(checks, ec)) {
    SLUICE_RETURN_IF_ERROR(ChooseFiles(checks, "checks/", "", pipeline.engine, &check_files, &pipeline.per_engine));
    for (const auto& chosen : check_files) {
      Result<SqlFile> check = ReadSqlFile(chosen.path.string(), chosen.display);
      if (!check.ok()) return check.status();
      CheckFile entry{std::move(*check), false};
      // "-- severity: warn" (or error) in the comment lines before the query.
      std::istringstream lines(entry.file.text);
      std::string line;
      int number = 0;
      while (std::getline(lines, line)) {
        ++number;
        std::string trimmed = Trim(line);
        if (trimmed.empty()) continue;
        if (trimmed.rfind("--", 0) != 0) break;
        std::string comment = Lower(Trim(trimmed.substr(2)));
        if (comment.rfind("severity:", 0) != 0) continue;
        std::string severity = Trim(comment.substr(9));
        if (severity == "warn") {
          entry.warn_only = true;
        } else if (severity != "error") {
          return Status::InvalidConfig(entry.file.display + ":" + std::to_string(number) + ": severity '" + severity +
                                       "' is not one of: error, warn");
        }
      }
      pipeline.checks.push_back(std::move(entry));
    }
  }
  std::vector<std::string> seed_problems;
  pipeline.seeds = FindSeeds(dir, &seed_problems);
  if (!seed_problems.empty()) {
    std::string all;
    for (const auto& problem : seed_problems) all += (all.empty() ? "" : "\n") + problem;
    return Status::InvalidConfig(all);
  }
  return pipeline;
}

}  // namespace sluice
