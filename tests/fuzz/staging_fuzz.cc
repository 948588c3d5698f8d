// libFuzzer target for the message-to-row path: any bytes as a message value
// (and key) go through the JSON decoder and StagingWriter into an in-memory
// database. The property: no crash, no sanitizer report, and every message
// is either staged or quarantined, never both, never neither.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "connectors/json_decoder.h"
#include "sql/sqlite/catalog.h"
#include "sql/sqlite/database.h"
#include "sql/sqlite/staging.h"

namespace {

struct Harness {
  std::unique_ptr<sluice::Database> db;
  std::unique_ptr<sluice::StagingWriter> writer;
  std::unique_ptr<sluice::JsonDecoder> decoder;
  sluice::DecodedRow row;

  Harness() {
    auto opened = sluice::Database::Open(":memory:");
    if (!opened.ok()) std::abort();
    db = std::move(*opened);
    if (!sluice::Catalog(db.get()).Install().ok()) std::abort();
    std::vector<sluice::ColumnSpec> columns;
    const std::pair<const char*, const char*> specs[] = {
        {"t", "TEXT"},    {"i", "INTEGER"},        {"r", "REAL"},          {"b", "BOOLEAN"},
        {"j", "JSON"},    {"deep", "TEXT $.a.b.c"}, {"idx", "REAL $.arr[2]"}, {"q", "INTEGER $[\"x y\"]"}};
    for (const auto& [name, spec] : specs) {
      auto column = sluice::ParseColumnSpec(name, spec);
      if (!column.ok()) std::abort();
      columns.push_back(*column);
    }
    decoder = std::make_unique<sluice::JsonDecoder>(columns);
    auto created = sluice::StagingWriter::Create(db.get(), columns);
    if (!created.ok()) std::abort();
    writer = std::move(*created);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Harness harness;
  sluice::Message message;
  message.topic = "fuzz";
  message.offset = 1;
  message.timestamp = 1;
  message.value = std::string(reinterpret_cast<const char*>(data), size);
  if (size > 0 && data[0] == 'K') message.key = std::string(reinterpret_cast<const char*>(data), size / 2);
  sluice::StageCounts counts;
  if (!harness.writer->Clear().ok()) std::abort();
  harness.decoder->Decode(message, &harness.row);
  if (!harness.row.error && harness.row.cells.size() != harness.decoder->columns().size()) std::abort();
  if (!harness.writer->Write(message, harness.row, 1, &counts).ok()) std::abort();
  if (counts.staged + counts.quarantined != 1) std::abort();
  return 0;
}
