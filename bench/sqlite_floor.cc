// sqlite_floor: SQLite's own ceiling for a pipeline, the figure sluice is
// measured against. Before the clock starts it reads a JSONL file of events
// and turns every line into the row sluice would stage: the typed columns
// (cast by sluice's own JSON decoder, so the values are the same) and the
// _kafka_* metadata that `sluice produce --key-field F --timestamp-field F`
// gives the message (partition chosen like librdkafka's default partitioner,
// offsets counted per partition in file order). Messages sluice would
// quarantine are kept, with their reason, for the quarantine table.
//
// Then it runs sluice's batch loop with nothing else in it: per batch of N
// rows, one transaction that loads changed seeds, clears the staging table,
// inserts the rows with one reused prepared statement (every parameter bound
// from memory, no JSON), runs the pipeline's steps/*.sql and commits. No
// Kafka, no parsing, no catalog bookkeeping while timed.
//
//   sqlite_floor --pipeline DIR --input FILE --db PATH [--batch N]
//                [--partitions P] [--topic NAME] [--no-steps]
//                [--key-field F] [--timestamp-field F]
//
// Prints a summary on stderr and one JSON object on stdout (read by run.py).
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "connectors/producer.h"
#include "engine/config.h"
#include "sql/sqlite/catalog.h"
#include "sql/sqlite/database.h"
#include "sql/sqlite/seeds.h"
#include "sql/sqlite/sql_file.h"
#include "connectors/json_decoder.h"
#include "sql/sqlite/staging.h"

namespace {

using Clock = std::chrono::steady_clock;

double MillisSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

struct Options {
  std::string pipeline;
  std::string input;
  std::string db;
  std::string topic = "orders";
  std::string key_field = "order_id";          // as `sluice produce --key-field`
  std::string timestamp_field = "event_time";  // as `sluice produce --timestamp-field`
  size_t batch = 50000;
  int partitions = 64;
  bool steps = true;
};

const char* kUsage =
    "usage: sqlite_floor --pipeline DIR --input FILE --db PATH [--batch N] [--partitions P] [--topic NAME] "
    "[--no-steps]\n"
    "                    [--key-field F (order_id)] [--timestamp-field F (event_time)]\n";

std::optional<Options> ParseArgs(int argc, char** argv) {
  Options options;
  for (int arg_idx = 1; arg_idx < argc; ++arg_idx) {
    std::string arg = argv[arg_idx];
    auto value = [&]() -> std::optional<std::string> {
      if (arg_idx + 1 >= argc) return std::nullopt;
      return std::string(argv[++arg_idx]);
    };
    std::optional<std::string> text;
    if (arg == "--no-steps") {
      options.steps = false;
      continue;
    }
    if (arg == "--help" || arg == "-h") return std::nullopt;
    text = value();
    if (!text) {
      std::cerr << "sqlite_floor: " << arg << " needs a value\n";
      return std::nullopt;
    }
    if (arg == "--pipeline") options.pipeline = *text;
    else if (arg == "--input") options.input = *text;
    else if (arg == "--db") options.db = *text;
    else if (arg == "--topic") options.topic = *text;
    else if (arg == "--key-field") options.key_field = *text;
    else if (arg == "--timestamp-field") options.timestamp_field = *text;
    else if (arg == "--batch") options.batch = std::strtoull(text->c_str(), nullptr, 10);
    else if (arg == "--partitions") options.partitions = std::atoi(text->c_str());
    else {
      std::cerr << "sqlite_floor: unknown option " << arg << "\n";
      return std::nullopt;
    }
  }
  if (options.pipeline.empty() || options.input.empty() || options.db.empty() || options.batch == 0 ||
      options.partitions < 1) {
    return std::nullopt;
  }
  return options;
}

// CRC-32 (IEEE, reflected; zlib's): librdkafka's default partitioner
// (consistent_random) sends a keyed message to crc32(key) % partitions.
uint32_t Crc32(std::string_view data) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> entries{};
    for (uint32_t entry_idx = 0; entry_idx < 256; ++entry_idx) {
      uint32_t crc = entry_idx;
      for (int bit = 0; bit < 8; ++bit) crc = (crc & 1) ? 0xEDB88320u ^ (crc >> 1) : crc >> 1;
      entries[entry_idx] = crc;
    }
    return entries;
  }();
  uint32_t crc = 0xFFFFFFFFu;
  for (char c : data) crc = table[(crc ^ static_cast<uint8_t>(c)) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

// A text is stored once in the arena and referred to by position, so the
// arena may grow while loading; pointers are taken only once it is complete.
struct TextRef {
  size_t offset = 0;
  size_t size = 0;
};

struct StoredCell {
  sluice::Cell::Kind kind = sluice::Cell::Kind::kNull;
  int64_t int_value = 0;
  double real_value = 0;
  TextRef text;
};

// One message, ready to bind.
struct Event {
  size_t first_cell = 0;  // into Events::cells; columns.size() cells
  int32_t partition = 0;
  int64_t offset = 0;
  int64_t timestamp = 0;
  std::optional<TextRef> key;
  TextRef value;
  int64_t error = -1;  // index into Events::errors when sluice would quarantine it
};

struct Events {
  std::string arena;
  std::vector<StoredCell> cells;
  std::vector<Event> rows;
  std::vector<std::string> errors;

  TextRef Store(std::string_view text) {
    TextRef ref{arena.size(), text.size()};
    arena.append(text);
    return ref;
  }
  std::string_view View(const TextRef& ref) const { return std::string_view(arena.data() + ref.offset, ref.size); }
};

// The key and timestamp `sluice produce --key-field --timestamp-field` takes
// from a line (see connectors/producer.cc ApplyFields).
void KeyAndTimestamp(const std::string& line, const std::string& key_field, const std::string& timestamp_field,
                     std::optional<std::string>* key, std::optional<int64_t>* timestamp) {
  rapidjson::Document doc;
  doc.Parse(line.data(), line.size());
  if (doc.HasParseError() || !doc.IsObject()) return;
  auto key_member = doc.FindMember(key_field.c_str());
  if (key_member != doc.MemberEnd() && !key_member->value.IsNull()) {
    if (key_member->value.IsString()) {
      key->emplace(key_member->value.GetString(), key_member->value.GetStringLength());
    } else {
      rapidjson::StringBuffer buffer;
      rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
      key_member->value.Accept(writer);
      key->emplace(buffer.GetString(), buffer.GetSize());
    }
  }
  auto ts_member = doc.FindMember(timestamp_field.c_str());
  if (ts_member == doc.MemberEnd()) return;
  if (ts_member->value.IsInt64() && ts_member->value.GetInt64() > 0) {
    *timestamp = ts_member->value.GetInt64();
  } else if (ts_member->value.IsString()) {
    std::optional<int64_t> ms = sluice::ParseIsoMillis(ts_member->value.GetString());
    if (ms && *ms > 0) *timestamp = *ms;
  }
}

// Reads and pre-parses every non-empty line of `path` (untimed).
sluice::Result<Events> LoadEvents(const Options& options, const std::vector<sluice::ColumnSpec>& columns) {
  std::ifstream in(options.input, std::ios::binary);
  if (!in) return sluice::Status::IoError("cannot read " + options.input);
  const int partitions = options.partitions;
  Events events;
  sluice::JsonDecoder decoder(columns);
  sluice::Message message;
  sluice::DecodedRow row;
  std::vector<int64_t> next_offset(static_cast<size_t>(partitions), 0);
  int64_t unkeyed = 0;
  int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  std::string line;
  while (std::getline(in, line)) {
    // The lines `sluice produce` publishes.
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    Event event;
    std::optional<std::string> key;
    std::optional<int64_t> timestamp;
    KeyAndTimestamp(line, options.key_field, options.timestamp_field, &key, &timestamp);
    // Unkeyed messages go to a random partition in librdkafka; round-robin here.
    event.partition = key ? static_cast<int32_t>(Crc32(*key) % static_cast<uint32_t>(partitions))
                          : static_cast<int32_t>(unkeyed++ % partitions);
    event.offset = next_offset[static_cast<size_t>(event.partition)]++;
    event.timestamp = timestamp.value_or(now_ms);
    if (key) event.key = events.Store(*key);
    event.value = events.Store(line);
    event.first_cell = events.cells.size();

    message.value = line;
    decoder.Decode(message, &row);
    if (row.error) {
      event.error = static_cast<int64_t>(events.errors.size());
      events.errors.push_back(*row.error);
      events.cells.resize(events.cells.size() + columns.size());
    } else {
      for (const sluice::Cell& cell : row.cells) {
        StoredCell stored;
        stored.kind = cell.kind;
        stored.int_value = cell.int_value;
        stored.real_value = cell.real_value;
        if (cell.kind == sluice::Cell::Kind::kText) stored.text = events.Store(cell.text);
        events.cells.push_back(stored);
      }
    }
    events.rows.push_back(std::move(event));
  }
  return events;
}

// The staging insert StagingWriter prepares: the declared columns, the six
// _kafka_* columns and, when the staging table has it, _sluice_run_id (set
// to true in `has_run_id`; bound after _kafka_value).
std::string StagingInsertSql(sluice::Database* db, const std::vector<sluice::ColumnSpec>& columns, bool* has_run_id) {
  sluice::Result<int64_t> found = db->QueryInt(std::string("SELECT count(*) FROM pragma_table_info('") +
                                               sluice::StagingWriter::kTable + "') WHERE name = '_sluice_run_id'");
  *has_run_id = found.ok() && *found > 0;
  std::string names, placeholders;
  for (const auto& column : columns) {
    names += sluice::QuoteIdentifier(column.name) + ", ";
    placeholders += "?, ";
  }
  names += "_kafka_topic, _kafka_partition, _kafka_offset, _kafka_timestamp, _kafka_key, _kafka_value";
  placeholders += "?, ?, ?, ?, ?, ?";
  if (*has_run_id) {
    names += ", _sluice_run_id";
    placeholders += ", ?";
  }
  return std::string("INSERT INTO ") + sluice::StagingWriter::kTable + " (" + names + ") VALUES (" + placeholders +
         ")";
}

sluice::Status Check(int rc, sqlite3* db, const char* what) {
  if (rc == SQLITE_DONE || rc == SQLITE_OK) return sluice::Status::Ok();
  return sluice::Status::SqlError(std::string(what) + ": " + sqlite3_errmsg(db));
}

void BindText(sqlite3_stmt* stmt, int index, std::string_view text) {
  sqlite3_bind_text64(stmt, index, text.data(), text.size(), SQLITE_STATIC, SQLITE_UTF8);
}

struct Totals {
  int64_t batches = 0;
  int64_t staged = 0;
  int64_t quarantined = 0;
  double stage_ms = 0, steps_ms = 0, commit_ms = 0, total_ms = 0;
};

sluice::Status RunFloor(const Options& options, const sluice::Pipeline& pipeline, const Events& events,
                        Totals* totals) {
  struct stat existing;
  if (::stat(options.db.c_str(), &existing) == 0) {
    return sluice::Status::InvalidConfig(options.db + " exists; give sqlite_floor a fresh database path");
  }
  sluice::Result<std::unique_ptr<sluice::Database>> opened = sluice::Database::Open(options.db);
  if (!opened.ok()) return opened.status();
  sluice::Database* db = opened->get();
  sqlite3* handle = db->handle();
  const auto& columns = pipeline.config.columns;

  {  // The set-up `sluice run` does before its first batch.
    auto tx = sluice::Transaction::Begin(db);
    if (!tx.ok()) return tx.status();
    SLUICE_RETURN_IF_ERROR(sluice::Catalog(db).Install());
    if (pipeline.schema) SLUICE_RETURN_IF_ERROR(sluice::RunSqlFile(db, *pipeline.schema));
    SLUICE_RETURN_IF_ERROR(db->Exec(sluice::StagingTableDdl(columns, sluice::StagingWriter::kTable) + "; " +
                                    sluice::BatchViewDdl(columns, sluice::StagingWriter::kView,
                                                         sluice::StagingWriter::kTable)));
    SLUICE_RETURN_IF_ERROR((*tx)->Commit());
  }
  bool has_run_id = false;
  auto insert = db->Prepare(StagingInsertSql(db, columns, &has_run_id));
  if (!insert.ok()) return insert.status();
  auto quarantine = db->Prepare(
      "INSERT INTO _sluice_quarantine(topic, \"partition\", \"offset\", \"timestamp\", key, value, error, run_id, "
      "quarantined_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ','now'))");
  if (!quarantine.ok()) return quarantine.status();
  auto clear = db->Prepare(std::string("DELETE FROM ") + sluice::StagingWriter::kTable);
  if (!clear.ok()) return clear.status();
  sqlite3_stmt* insert_stmt = insert->get();
  sqlite3_stmt* quarantine_stmt = quarantine->get();
  const int metadata = static_cast<int>(columns.size()) + 1;

  auto loop_start = Clock::now();
  for (size_t batch_start = 0; batch_start < events.rows.size(); batch_start += options.batch) {
    size_t batch_end = std::min(events.rows.size(), batch_start + options.batch);
    int64_t run_id = ++totals->batches;
    auto stage_start = Clock::now();
    auto tx = sluice::Transaction::Begin(db);
    if (!tx.ok()) return tx.status();
    SLUICE_RETURN_IF_ERROR(sluice::LoadChangedSeeds(db, pipeline.seeds, nullptr));
    SLUICE_RETURN_IF_ERROR(clear->Run());
    clear->Reset();
    for (size_t row_idx = batch_start; row_idx < batch_end; ++row_idx) {
      const Event& event = events.rows[row_idx];
      sqlite3_stmt* stmt = insert_stmt;
      int first = metadata;
      if (event.error >= 0) {
        stmt = quarantine_stmt;
        first = 1;
      } else {
        for (size_t column_idx = 0; column_idx < columns.size(); ++column_idx) {
          const StoredCell& cell = events.cells[event.first_cell + column_idx];
          int index = static_cast<int>(column_idx) + 1;
          switch (cell.kind) {
            case sluice::Cell::Kind::kNull: sqlite3_bind_null(stmt, index); break;
            case sluice::Cell::Kind::kInt: sqlite3_bind_int64(stmt, index, cell.int_value); break;
            case sluice::Cell::Kind::kReal: sqlite3_bind_double(stmt, index, cell.real_value); break;
            case sluice::Cell::Kind::kText: BindText(stmt, index, events.View(cell.text)); break;
          }
        }
      }
      BindText(stmt, first, options.topic);
      sqlite3_bind_int(stmt, first + 1, event.partition);
      sqlite3_bind_int64(stmt, first + 2, event.offset);
      sqlite3_bind_int64(stmt, first + 3, event.timestamp);
      if (event.key) BindText(stmt, first + 4, events.View(*event.key));
      else sqlite3_bind_null(stmt, first + 4);
      BindText(stmt, first + 5, events.View(event.value));
      if (event.error >= 0) {
        BindText(stmt, 7, events.errors[static_cast<size_t>(event.error)]);
        sqlite3_bind_int64(stmt, 8, run_id);
        ++totals->quarantined;
      } else {
        if (has_run_id) sqlite3_bind_int64(stmt, first + 6, run_id);
        ++totals->staged;
      }
      SLUICE_RETURN_IF_ERROR(Check(sqlite3_step(stmt), handle, "cannot insert"));
      sqlite3_reset(stmt);  // every parameter is bound again for the next row
    }
    auto steps_start = Clock::now();
    totals->stage_ms += std::chrono::duration<double, std::milli>(steps_start - stage_start).count();
    if (options.steps) {
      for (const auto& step : pipeline.steps) SLUICE_RETURN_IF_ERROR(sluice::RunSqlFile(db, step));
    }
    auto commit_start = Clock::now();
    totals->steps_ms += std::chrono::duration<double, std::milli>(commit_start - steps_start).count();
    SLUICE_RETURN_IF_ERROR((*tx)->Commit());
    totals->commit_ms += MillisSince(commit_start);
  }
  totals->total_ms = MillisSince(loop_start);
  return sluice::Status::Ok();
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<Options> options = ParseArgs(argc, argv);
  if (!options) {
    std::cerr << kUsage;
    return 2;
  }
  sluice::Result<sluice::Pipeline> pipeline = sluice::LoadPipeline(options->pipeline);
  if (!pipeline.ok()) {
    std::cerr << "sqlite_floor: " << pipeline.status().message() << "\n";
    return 1;
  }
  auto load_start = Clock::now();
  sluice::Result<Events> events = LoadEvents(*options, pipeline->config.columns);
  if (!events.ok()) {
    std::cerr << "sqlite_floor: " << events.status().message() << "\n";
    return 1;
  }
  double load_ms = MillisSince(load_start);
  Totals totals;
  sluice::Status st = RunFloor(*options, *pipeline, *events, &totals);
  if (!st.ok()) {
    std::cerr << "sqlite_floor: " << st.message() << "\n";
    return 1;
  }
  const auto event_count = static_cast<int64_t>(events->rows.size());
  double per_second = totals.total_ms > 0 ? event_count / (totals.total_ms / 1000.0) : 0;
  std::fprintf(stderr,
               "sqlite_floor: %lld events (%lld staged, %lld quarantined) in %lld batches of up to %zu%s: "
               "%.0f ms (stage %.0f, steps %.0f, commit %.0f) = %.0f events/s; pre-parsing took %.0f ms\n",
               static_cast<long long>(event_count), static_cast<long long>(totals.staged),
               static_cast<long long>(totals.quarantined), static_cast<long long>(totals.batches), options->batch,
               options->steps ? "" : ", no steps", totals.total_ms, totals.stage_ms, totals.steps_ms,
               totals.commit_ms, per_second, load_ms);
  std::printf(
      "{\"events\": %lld, \"staged\": %lld, \"quarantined\": %lld, \"batches\": %lld, \"seconds\": %.6f, "
      "\"events_per_s\": %.1f, \"stage_ms\": %.3f, \"steps_ms\": %.3f, \"commit_ms\": %.3f, \"load_ms\": %.3f}\n",
      static_cast<long long>(event_count), static_cast<long long>(totals.staged),
      static_cast<long long>(totals.quarantined), static_cast<long long>(totals.batches), totals.total_ms / 1000.0,
      per_second, totals.stage_ms, totals.steps_ms, totals.commit_ms, load_ms);
  return 0;
}
