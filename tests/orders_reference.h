// The orders pipeline's reference, computed without the pipeline's SQL, for
// the tests that check that pipeline end to end (tests/orders_pipeline_test.cc
// against the embedded broker, tests/kafka/orders_test.cc against a real
// one). Include it from one source file per test binary.
#pragma once

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "connectors/producer.h"
#include "test_support.h"

namespace sluice::orders_reference {
namespace {

constexpr int kPartitions = 4;

// ---------------------------------------------------------------------------
// Small helpers, written here so that the reference owes nothing to sluice.

std::vector<std::string> Split(const std::string& row, char separator = '|') {
  std::vector<std::string> cells;
  std::string cell;
  std::istringstream in(row);
  while (std::getline(in, cell, separator)) cells.push_back(cell);
  if (!row.empty() && row.back() == separator) cells.emplace_back();
  return cells;
}

// SQLite's trim(): spaces only.
std::string TrimSpaces(const std::string& text) {
  size_t begin = text.find_first_not_of(' ');
  if (begin == std::string::npos) return "";
  return text.substr(begin, text.find_last_not_of(' ') - begin + 1);
}

std::string AsciiUpper(std::string text) {
  for (char& c : text) if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return text;
}

std::string AsciiLower(std::string text) {
  for (char& c : text) if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return text;
}

std::string JsonText(const rapidjson::Value& value) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  value.Accept(writer);
  return std::string(buffer.GetString(), buffer.GetSize());
}

// The whole of `text` (surrounding blanks allowed) is a finite number.
std::optional<double> FiniteNumber(const std::string& text) {
  size_t begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return std::nullopt;
  std::string trimmed = text.substr(begin, text.find_last_not_of(" \t\r\n") - begin + 1);
  char* end = nullptr;
  errno = 0;
  double value = std::strtod(trimmed.c_str(), &end);
  if (*end != '\0' || errno == ERANGE || !std::isfinite(value)) return std::nullopt;
  return value;
}

std::optional<int64_t> Integral(const rapidjson::Value& value) {
  if (value.IsInt64()) return value.GetInt64();
  if (value.IsBool()) return value.GetBool() ? 1 : 0;
  std::optional<double> number;
  if (value.IsDouble()) number = value.GetDouble();
  if (value.IsString()) number = FiniteNumber(value.GetString());
  if (!number || std::floor(*number) != *number || std::fabs(*number) >= 9.2e18) return std::nullopt;
  return static_cast<int64_t>(*number);
}

double Round2(double value) { return std::round(value * 100.0) / 100.0; }

std::string Fixed2(double value) {
  char out[64];
  std::snprintf(out, sizeof(out), "%.2f", value);
  return out;
}

// "2026-11-21T08:00:00Z" for the hour of epoch milliseconds `ms`.
std::string HourOf(int64_t ms) {
  std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char out[32];
  std::strftime(out, sizeof(out), "%Y-%m-%dT%H:00:00Z", &utc);
  return out;
}

// A CSV file with a header, as rows of column name -> value (quotes handled).
std::vector<std::map<std::string, std::string>> ReadCsv(const std::string& path) {
  std::string text = testing::ReadFile(path);
  std::vector<std::vector<std::string>> rows(1);
  std::string field;
  bool quoted = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') field += '"', ++i;
      else if (c == '"') quoted = false;
      else field += c;
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      rows.back().push_back(field);
      field.clear();
    } else if (c == '\n') {
      rows.back().push_back(field);
      field.clear();
      rows.emplace_back();
    } else if (c != '\r') {
      field += c;
    }
  }
  if (!field.empty() || !rows.back().empty()) rows.back().push_back(field);
  std::vector<std::map<std::string, std::string>> out;
  for (size_t r = 1; r < rows.size(); ++r) {
    if (rows[r].empty() || (rows[r].size() == 1 && rows[r][0].empty())) continue;
    EXPECT_EQ(rows[r].size(), rows[0].size()) << path << " row " << r;
    std::map<std::string, std::string> row;
    for (size_t c = 0; c < rows[0].size() && c < rows[r].size(); ++c) row[rows[0][c]] = rows[r][c];
    out.push_back(row);
  }
  return out;
}

// ---------------------------------------------------------------------------
// The reference.

// One produced message and, when it stages, its columns after 10_dedup's
// cleaning and 20_enrich's joins.
struct Event {
  std::string value;
  std::optional<std::string> key;
  int64_t timestamp = 0;
  int32_t partition = 0;
  int64_t offset = 0;
  bool staged = false;

  std::optional<std::string> order_id;  // trimmed
  std::optional<int64_t> customer_id;
  std::optional<std::string> product_id;
  std::optional<double> amount;  // rounded to 2 decimals
  std::optional<std::string> currency;
  std::string status;  // never empty: 'unknown' when missing
  std::optional<std::string> event_time;

  std::tuple<int64_t, int64_t> Version() const { return {timestamp, offset}; }
};

// Parses one generated line as staging would: quarantined unless it is a JSON
// object whose amount (when present) is a number or numeric text and whose
// customer_id (when present) is a whole number.
void Classify(Event* event) {
  rapidjson::Document doc;
  doc.Parse(event->value.data(), event->value.size());
  if (doc.HasParseError() || !doc.IsObject()) return;
  auto field = [&](const char* name) -> const rapidjson::Value* {
    auto member = doc.FindMember(name);
    return member == doc.MemberEnd() || member->value.IsNull() ? nullptr : &member->value;
  };
  auto text = [&](const char* name) -> std::optional<std::string> {
    const rapidjson::Value* value = field(name);
    if (value == nullptr) return std::nullopt;
    if (value->IsString()) return std::string(value->GetString(), value->GetStringLength());
    return JsonText(*value);
  };
  if (const rapidjson::Value* amount = field("amount")) {
    if (amount->IsNumber()) event->amount = Round2(amount->GetDouble());
    else if (amount->IsString() && FiniteNumber(amount->GetString())) event->amount = Round2(*FiniteNumber(amount->GetString()));
    else return;
  }
  if (const rapidjson::Value* customer = field("customer_id")) {
    event->customer_id = Integral(*customer);
    if (!event->customer_id) return;
  }
  event->staged = true;
  if (auto id = text("order_id")) event->order_id = TrimSpaces(*id);
  if (auto product = text("product_id")) event->product_id = AsciiUpper(TrimSpaces(*product));
  if (auto currency = text("currency")) event->currency = AsciiUpper(TrimSpaces(*currency));
  std::string status = AsciiLower(TrimSpaces(text("status").value_or("")));
  event->status = status.empty() ? "unknown" : status;
  event->event_time = text("event_time");
}

struct Seeds {
  std::map<int64_t, std::pair<std::string, std::string>> customers;      // id -> (name, region)
  std::map<std::string, std::pair<std::string, std::string>> products;  // id -> (name, category)
};

// An orders_curated row as this test expects it, in the column order of
// kCuratedColumns (amount is compared separately, to 2 decimals).
constexpr const char* kCuratedColumns =
    "order_id, customer_id, customer_name, region, product_id, product_name, category, currency, event_time, "
    "event_hour, _kafka_timestamp, _kafka_partition, _kafka_offset, amount, status";

std::string OrNull(const std::optional<std::string>& text) { return text ? *text : "NULL"; }

std::vector<std::string> ExpectedColumns(const Event& e, const Seeds& seeds) {
  std::optional<std::string> customer_name, product_name;
  std::string region = "unknown", category = "unknown";
  if (e.customer_id) {
    auto it = seeds.customers.find(*e.customer_id);
    if (it != seeds.customers.end()) customer_name = it->second.first, region = it->second.second;
  }
  if (e.product_id) {
    auto it = seeds.products.find(*e.product_id);
    if (it != seeds.products.end()) product_name = it->second.first, category = it->second.second;
  }
  std::optional<int64_t> event_ms = e.event_time ? ParseIsoMillis(*e.event_time) : std::nullopt;
  return {*e.order_id,
          e.customer_id ? std::to_string(*e.customer_id) : "NULL",
          OrNull(customer_name),
          region,
          OrNull(e.product_id),
          OrNull(product_name),
          category,
          OrNull(e.currency),
          OrNull(e.event_time),
          event_ms ? HourOf(*event_ms) : "NULL",
          std::to_string(e.timestamp),
          std::to_string(e.partition),
          std::to_string(e.offset)};
}


}  // namespace
}  // namespace sluice::orders_reference
