// staging_bench: micro-benchmarks of sluice's hot path, one message at a time.
//   parse/<case>   JsonDecoder::Decode: JSON into typed cells
//   insert/<case>  binding those cells (and the _kafka_* metadata) into the
//                  staging insert and stepping it: the SQLite share
//   write/<case>   StagingWriter::Write: both, as `sluice run` does per message
// Cases: one declared column of each type (TEXT, INTEGER, REAL, REAL from a
// string, BOOLEAN, JSON) in a one-field message, then the orders pipeline's
// seven columns over a real orders event, and a malformed one (quarantined).
// Inserts go to an in-memory database inside one transaction, as in a batch;
// the staging table is emptied every kRowsPerBatch rows outside the timing.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "sql/sqlite/catalog.h"
#include "sql/sqlite/database.h"
#include "connectors/json_decoder.h"
#include "sql/sqlite/staging.h"

namespace {

constexpr int64_t kRowsPerBatch = 50000;

struct Case {
  std::string name;
  std::vector<std::pair<std::string, std::string>> columns;  // name, [columns] spec
  std::string value;                                          // the message value (JSON)
};

// The example pipeline's [columns] (pipelines/orders/pipeline.conf).
const std::vector<std::pair<std::string, std::string>> kOrdersColumns = {
    {"order_id", "TEXT"}, {"customer_id", "INTEGER"}, {"product_id", "TEXT"}, {"amount", "REAL"},
    {"currency", "TEXT"}, {"status", "TEXT"},         {"event_time", "TEXT"}};

std::vector<Case> Cases() {
  return {
      {"TEXT", {{"v", "TEXT"}}, R"({"v":"O00012345"})"},
      {"INTEGER", {{"v", "INTEGER"}}, R"({"v":42})"},
      {"REAL", {{"v", "REAL"}}, R"({"v":129.99})"},
      {"REAL_from_string", {{"v", "REAL"}}, R"({"v":"129.99"})"},
      {"BOOLEAN", {{"v", "BOOLEAN"}}, R"({"v":true})"},
      {"JSON", {{"v", "JSON"}}, R"({"v":{"city":"Lyon","zip":"69001","lines":["1 rue de la Paix",null]}})"},
      // Shaped like pipelines/orders/generate.py's output (about 170 bytes).
      {"orders",
       kOrdersColumns,
       R"({"order_id":"O00012345","customer_id":17,"product_id":"P004","amount":129.99,"currency":"eur",)"
       R"("status":"paid","event_time":"2026-11-21T09:41:07.512Z"})"},
      {"orders_amount_string",
       kOrdersColumns,
       R"({"order_id":"O00012345","customer_id":17,"product_id":"P004","amount":"129.99","currency":"EUR",)"
       R"("status":"paid","event_time":"2026-11-21T09:41:07.512Z"})"},
      {"orders_malformed", kOrdersColumns, R"({"order_id": "O-broken", "amount": )"},
  };
}

std::vector<sluice::ColumnSpec> Columns(const Case& bench_case) {
  std::vector<sluice::ColumnSpec> columns;
  for (const auto& [name, spec] : bench_case.columns) {
    sluice::Result<sluice::ColumnSpec> column = sluice::ParseColumnSpec(name, spec);
    if (!column.ok()) {
      std::fprintf(stderr, "staging_bench: %s\n", column.status().message().c_str());
      std::abort();
    }
    columns.push_back(*column);
  }
  return columns;
}

sluice::Message MessageFor(const Case& bench_case) {
  sluice::Message message;
  message.topic = "orders";
  message.partition = 17;
  message.offset = 123456;
  message.timestamp = 1795250467512;
  message.key = "O00012345";
  message.value = bench_case.value;
  return message;
}

void Require(const sluice::Status& status, benchmark::State& state) {
  if (!status.ok()) state.SkipWithError(status.message().c_str());
}

// An in-memory database with sluice's catalog and a staging table for
// `columns`, inside an open transaction.
struct StagingDb {
  std::unique_ptr<sluice::Database> db;
  std::unique_ptr<sluice::StagingWriter> writer;

  static std::unique_ptr<StagingDb> Create(const std::vector<sluice::ColumnSpec>& columns) {
    auto staging = std::make_unique<StagingDb>();
    auto db = sluice::Database::Open(":memory:");
    if (!db.ok()) return nullptr;
    staging->db = std::move(*db);
    if (!sluice::Catalog(staging->db.get()).Install().ok()) return nullptr;
    auto writer = sluice::StagingWriter::Create(staging->db.get(), columns);
    if (!writer.ok()) return nullptr;
    staging->writer = std::move(*writer);
    if (!staging->db->Exec("BEGIN").ok()) return nullptr;
    return staging;
  }

  // Empties the staging table and the quarantine, as the next batch would.
  sluice::Status NextBatch() {
    SLUICE_RETURN_IF_ERROR(writer->Clear());
    SLUICE_RETURN_IF_ERROR(db->Exec("DELETE FROM _sluice_quarantine; COMMIT; BEGIN"));
    return sluice::Status::Ok();
  }
};

void BM_Parse(benchmark::State& state, const Case& bench_case) {
  sluice::JsonDecoder decoder(Columns(bench_case));
  const sluice::Message message = MessageFor(bench_case);
  sluice::DecodedRow row;
  for (auto _ : state) {
    decoder.Decode(message, &row);
    benchmark::DoNotOptimize(row.error);
    benchmark::DoNotOptimize(row.cells.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bench_case.value.size()));
}

// The binding StagingWriter::Write does for a parsed row, on its own.
void BM_Insert(benchmark::State& state, const Case& bench_case) {
  std::vector<sluice::ColumnSpec> columns = Columns(bench_case);
  sluice::JsonDecoder decoder(columns);
  const sluice::Message message = MessageFor(bench_case);
  sluice::DecodedRow row;
  decoder.Decode(message, &row);
  if (row.error) {
    state.SkipWithError("the message does not parse: no insert to measure");
    return;
  }
  auto staging = StagingDb::Create(columns);
  if (!staging) {
    state.SkipWithError("cannot set up the staging database");
    return;
  }
  // The statement StagingWriter prepares: declared columns, the _kafka_*
  // metadata and, when the staging table has it, _sluice_run_id.
  sluice::Result<int64_t> run_id_column = staging->db->QueryInt(
      std::string("SELECT count(*) FROM pragma_table_info('") + sluice::StagingWriter::kTable +
      "') WHERE name = '_sluice_run_id'");
  const bool has_run_id = run_id_column.ok() && *run_id_column > 0;
  std::string names, placeholders;
  for (const auto& column : columns) {
    names += sluice::QuoteIdentifier(column.name) + ", ";
    placeholders += "?, ";
  }
  names += "_kafka_topic, _kafka_partition, _kafka_offset, _kafka_timestamp, _kafka_key, _kafka_value";
  placeholders += "?, ?, ?, ?, ?, ?";
  if (has_run_id) {
    names += ", _sluice_run_id";
    placeholders += ", ?";
  }
  auto insert = staging->db->Prepare(std::string("INSERT INTO ") + sluice::StagingWriter::kTable + " (" + names +
                                     ") VALUES (" + placeholders + ")");
  if (!insert.ok()) {
    state.SkipWithError(insert.status().message().c_str());
    return;
  }
  int64_t rows = 0;
  for (auto _ : state) {
    int index = 1;
    for (const sluice::Cell& cell : row.cells) {
      switch (cell.kind) {
        case sluice::Cell::Kind::kNull: insert->BindNull(index); break;
        case sluice::Cell::Kind::kInt: insert->BindInt(index, cell.int_value); break;
        case sluice::Cell::Kind::kReal: insert->BindDouble(index, cell.real_value); break;
        case sluice::Cell::Kind::kText: insert->BindText(index, cell.text, true); break;
      }
      ++index;
    }
    insert->BindText(index, message.topic, true);
    insert->BindInt(index + 1, message.partition);
    insert->BindInt(index + 2, message.offset);
    insert->BindInt(index + 3, *message.timestamp);
    insert->BindText(index + 4, *message.key, true);
    insert->BindText(index + 5, *message.value, true);
    if (has_run_id) insert->BindInt(index + 6, 1);
    sluice::Status status = insert->Run();
    insert->Reset();
    if (!status.ok()) {
      state.SkipWithError(status.message().c_str());
      break;
    }
    if (++rows % kRowsPerBatch == 0) {
      state.PauseTiming();
      Require(staging->NextBatch(), state);
      state.ResumeTiming();
    }
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_Write(benchmark::State& state, const Case& bench_case) {
  auto staging = StagingDb::Create(Columns(bench_case));
  if (!staging) {
    state.SkipWithError("cannot set up the staging database");
    return;
  }
  const sluice::Message message = MessageFor(bench_case);
  sluice::JsonDecoder decoder(Columns(bench_case));
  sluice::DecodedRow row;
  sluice::StageCounts counts;
  int64_t rows = 0;
  for (auto _ : state) {
    decoder.Decode(message, &row);
    sluice::Status status = staging->writer->Write(message, row, 1, &counts);
    if (!status.ok()) {
      state.SkipWithError(status.message().c_str());
      break;
    }
    if (++rows % kRowsPerBatch == 0) {
      state.PauseTiming();
      Require(staging->NextBatch(), state);
      state.ResumeTiming();
    }
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bench_case.value.size()));
}

}  // namespace

int main(int argc, char** argv) {
  static const std::vector<Case> cases = Cases();
  for (const Case& bench_case : cases) {
    benchmark::RegisterBenchmark(("parse/" + bench_case.name).c_str(), BM_Parse, bench_case);
  }
  for (const Case& bench_case : cases) {
    if (bench_case.name == "orders_malformed") continue;  // nothing to insert
    benchmark::RegisterBenchmark(("insert/" + bench_case.name).c_str(), BM_Insert, bench_case);
  }
  for (const Case& bench_case : cases) {
    benchmark::RegisterBenchmark(("write/" + bench_case.name).c_str(), BM_Write, bench_case);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
