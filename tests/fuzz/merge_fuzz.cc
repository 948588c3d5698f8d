// libFuzzer target for the MERGE parser and translator: any bytes as a step
// file's text go through IsMergeStatement and StatementEnd, and each
// statement through PlanMerge against an in-memory database with a few
// tables (unique keys of several types and collations). Plans are prepared,
// never run, so a fuzzed recursive query cannot hang. The properties: no
// crash, no sanitizer report; StatementEnd always moves forward and stays in
// the text; a failed plan's message names MERGE; a plan writes nothing.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "sql/sqlite/database.h"
#include "sql/sqlite/merge.h"

namespace {

struct Harness {
  std::unique_ptr<sluice::Database> db;

  Harness() {
    auto opened = sluice::Database::Open(":memory:");
    if (!opened.ok()) std::abort();
    db = std::move(*opened);
    sluice::Status st = db->Exec(
        "CREATE TABLE orders (order_id TEXT PRIMARY KEY, amount REAL, status TEXT DEFAULT 'new', ts INTEGER);"
        "CREATE TABLE users (email TEXT, visits INTEGER, updated_at INTEGER);"
        "CREATE UNIQUE INDEX users_by_email ON users(email COLLATE NOCASE);"
        "CREATE TABLE counters (id INTEGER PRIMARY KEY, hits INTEGER);"
        "CREATE TABLE lines (o TEXT, n INTEGER, q, PRIMARY KEY (o, n COLLATE RTRIM)) WITHOUT ROWID;"
        "CREATE TABLE updates (order_id TEXT, amount REAL, status TEXT, ts INTEGER, email, id, o, n, q);"
        "INSERT INTO orders VALUES ('O1', 1, 'new', 1);");
    if (!st.ok()) std::abort();
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Harness harness;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  size_t pos = 0;
  int statements = 0;
  while (pos < text.size() && statements++ < 16) {
    size_t end = sluice::StatementEnd(text, pos);
    if (end <= pos || end > text.size()) std::abort();
    std::string_view statement = text.substr(pos, end - pos);
    if (sluice::IsMergeStatement(statement)) {
      sluice::Result<sluice::MergePlan> plan = sluice::PlanMerge(harness.db.get(), statement);
      if (!plan.ok() && plan.status().message().find("MERGE") == std::string::npos) std::abort();
    }
    pos = end;
  }
  auto rows = harness.db->QueryInt("SELECT count(*) FROM orders");
  if (!rows.ok() || *rows != 1) std::abort();
  return 0;
}
