// libFuzzer target for the seed CSV parser: any bytes as a seed file's text
// go through ParseCsv. The properties, beyond no crash and no sanitizer
// report:
//  - a refusal has a message that names the file;
//  - an accepted table has a header of distinct, non-empty names; every row
//    has as many cells as the header; `quoted` and `lines` are parallel to
//    `rows`; a NULL cell was never quoted and an unquoted cell is never the
//    empty string; no row is blank (one NULL cell);
//  - line numbers: header_line >= 1, each row's line is greater than the one
//    before it (and than header_line) and within the text's line count;
//  - re-serialising the table as RFC 4180 CSV (every non-NULL cell quoted;
//    then again quoting only where needed) and parsing that gives the same
//    header and rows, and the line numbers the serialised text implies.
// A broken property traps.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "sql/seed_file.h"

namespace {

constexpr const char* kDisplay = "seeds/fuzz.csv";

#define CHECK(condition)                 \
  do {                                   \
    if (!(condition)) __builtin_trap();  \
  } while (0)

bool NeedsQuotes(const std::string& cell) {
  // The empty string is quoted, or it would read back as NULL. A leading
  // byte-order mark would be stripped from the first header cell.
  return cell.empty() || cell.find_first_of(",\"\r\n") != std::string::npos || cell.compare(0, 3, "\xEF\xBB\xBF") == 0;
}

void AppendCell(const std::optional<std::string>& cell, bool quote_all, std::string* out) {
  if (!cell) return;  // NULL: an empty, unquoted cell
  if (!quote_all && !NeedsQuotes(*cell)) {
    *out += *cell;
    return;
  }
  *out += '"';
  for (char c : *cell) {
    if (c == '"') *out += '"';
    *out += c;
  }
  *out += '"';
}

size_t CountNewlines(const std::string& text) {
  size_t count = 0;
  for (char c : text) count += c == '\n';
  return count;
}

// `table` as CSV with "\n" between records; `lines` receives the line each
// row starts on (the header starts on line 1).
std::string Serialise(const sluice::CsvTable& table, bool quote_all, std::vector<int>* lines) {
  std::string out;
  for (size_t column = 0; column < table.header.size(); ++column) {
    if (column) out += ',';
    AppendCell(table.header[column], quote_all, &out);
  }
  out += '\n';
  for (const auto& row : table.rows) {
    lines->push_back(static_cast<int>(1 + CountNewlines(out)));
    for (size_t column = 0; column < row.size(); ++column) {
      if (column) out += ',';
      AppendCell(row[column], quote_all, &out);
    }
    out += '\n';
  }
  return out;
}

void CheckTable(const sluice::CsvTable& table, const std::string& text) {
  CHECK(!table.header.empty());
  std::set<std::string> names;
  for (const auto& name : table.header) {
    CHECK(!name.empty());
    CHECK(names.insert(name).second);
  }
  CHECK(table.quoted.size() == table.rows.size());
  CHECK(table.lines.size() == table.rows.size());
  // Every line ends at "\n", "\r\n" or a lone "\r": no line number can pass
  // one more than the count of both characters.
  size_t max_line = 1;
  for (char c : text) max_line += c == '\n' || c == '\r';
  CHECK(table.header_line >= 1);
  CHECK(static_cast<size_t>(table.header_line) <= max_line);
  int previous = table.header_line;
  for (size_t row = 0; row < table.rows.size(); ++row) {
    const auto& cells = table.rows[row];
    CHECK(cells.size() == table.header.size());
    CHECK(table.quoted[row].size() == cells.size());
    CHECK(!(cells.size() == 1 && !cells[0]));  // a blank line is skipped, not a row
    for (size_t column = 0; column < cells.size(); ++column) {
      if (table.quoted[row][column]) CHECK(cells[column].has_value());
      if (!table.quoted[row][column] && cells[column]) CHECK(!cells[column]->empty());
    }
    CHECK(table.lines[row] > previous);
    CHECK(static_cast<size_t>(table.lines[row]) <= max_line);
    previous = table.lines[row];
  }
}

void CheckRoundTrip(const sluice::CsvTable& table, bool quote_all) {
  std::vector<int> lines;
  std::string text = Serialise(table, quote_all, &lines);
  sluice::Result<sluice::CsvTable> again = sluice::ParseCsv(text, kDisplay);
  CHECK(again.ok());
  CheckTable(*again, text);
  CHECK(again->header == table.header);
  CHECK(again->rows == table.rows);
  CHECK(again->header_line == 1);
  CHECK(again->lines == lines);
  for (size_t row = 0; row < again->rows.size(); ++row) {
    for (size_t column = 0; column < again->rows[row].size(); ++column) {
      const auto& cell = again->rows[row][column];
      bool expect_quoted = cell && (quote_all || NeedsQuotes(*cell));
      CHECK(again->quoted[row][column] == expect_quoted);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  sluice::Result<sluice::CsvTable> table = sluice::ParseCsv(text, kDisplay);
  if (!table.ok()) {
    CHECK(table.status().code() == sluice::Status::Code::kInvalidInput);
    CHECK(table.status().message().find(kDisplay) != std::string::npos);
    return 0;
  }
  CheckTable(*table, text);
  CheckRoundTrip(*table, /*quote_all=*/true);
  CheckRoundTrip(*table, /*quote_all=*/false);
  return 0;
}
