// The orders pipeline's reference, computed without the pipeline's SQL, for
// the tests that check that pipeline end to end (tests/orders_pipeline_test.cc
// against the embedded broker, tests/kafka/orders_test.cc against a real
// one, tests/kafka/postgres_orders_test.cc with PostgreSQL on a real one,
// tests/postgres/portability_test.cc with PostgreSQL on the embedded one).
// Everything here is inline, so several sources of one binary may include it.
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

inline constexpr int kPartitions = 4;

// ---------------------------------------------------------------------------
// Small helpers, written here so that the reference owes nothing to sluice.

inline std::vector<std::string> Split(const std::string& row, char separator = '|') {
  std::vector<std::string> cells;
  std::string cell;
  std::istringstream in(row);
  while (std::getline(in, cell, separator)) cells.push_back(cell);
  if (!row.empty() && row.back() == separator) cells.emplace_back();
  return cells;
}

// SQLite's trim(): spaces only.
inline std::string TrimSpaces(const std::string& text) {
  size_t begin = text.find_first_not_of(' ');
  if (begin == std::string::npos) return "";
  return text.substr(begin, text.find_last_not_of(' ') - begin + 1);
}

inline std::string AsciiUpper(std::string text) {
  for (char& c : text) if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return text;
}

inline std::string AsciiLower(std::string text) {
  for (char& c : text) if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return text;
}

inline std::string JsonText(const rapidjson::Value& value) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  value.Accept(writer);
  return std::string(buffer.GetString(), buffer.GetSize());
}

// The whole of `text` (surrounding blanks allowed) is a finite number.
inline std::optional<double> FiniteNumber(const std::string& text) {
  size_t begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return std::nullopt;
  std::string trimmed = text.substr(begin, text.find_last_not_of(" \t\r\n") - begin + 1);
  char* end = nullptr;
  errno = 0;
  double value = std::strtod(trimmed.c_str(), &end);
  if (*end != '\0' || errno == ERANGE || !std::isfinite(value)) return std::nullopt;
  return value;
}

inline std::optional<int64_t> Integral(const rapidjson::Value& value) {
  if (value.IsInt64()) return value.GetInt64();
  if (value.IsBool()) return value.GetBool() ? 1 : 0;
  std::optional<double> number;
  if (value.IsDouble()) number = value.GetDouble();
  if (value.IsString()) number = FiniteNumber(value.GetString());
  if (!number || std::floor(*number) != *number || std::fabs(*number) >= 9.2e18) return std::nullopt;
  return static_cast<int64_t>(*number);
}

inline double Round2(double value) { return std::round(value * 100.0) / 100.0; }

inline std::string Fixed2(double value) {
  char out[64];
  std::snprintf(out, sizeof(out), "%.2f", value);
  return out;
}

// "2026-11-21T08:00:00Z" for the hour of epoch milliseconds `ms`.
inline std::string HourOf(int64_t ms) {
  std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char out[32];
  std::strftime(out, sizeof(out), "%Y-%m-%dT%H:00:00Z", &utc);
  return out;
}

// A CSV file with a header, as rows of column name -> value (quotes handled).
inline std::vector<std::map<std::string, std::string>> ReadCsv(const std::string& path) {
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
inline void Classify(Event* event) {
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
inline constexpr const char* kCuratedColumns =
    "order_id, customer_id, customer_name, region, product_id, product_name, category, currency, event_time, "
    "event_hour, _kafka_timestamp, _kafka_partition, _kafka_offset, amount, status";

inline std::string OrNull(const std::optional<std::string>& text) { return text ? *text : "NULL"; }

inline std::vector<std::string> ExpectedColumns(const Event& e, const Seeds& seeds) {
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

// The pipeline's two seed files, pipeline_dir/seeds/{customers,products}.csv.
inline Seeds LoadSeeds(const std::string& pipeline_dir) {
  Seeds seeds;
  for (const auto& row : ReadCsv(pipeline_dir + "/seeds/customers.csv")) {
    seeds.customers[std::stoll(row.at("customer_id"))] = {row.at("name"), row.at("region")};
  }
  for (const auto& row : ReadCsv(pipeline_dir + "/seeds/products.csv")) {
    seeds.products[row.at("product_id")] = {row.at("name"), row.at("category")};
  }
  return seeds;
}

// ---------------------------------------------------------------------------
// Where the events come from and where the broker puts them.

// The shell command that runs the repository's generator
// (pipelines/orders/generate.py), one JSON line per event on stdout.
inline std::string GeneratorCommand(int count, int seed) {
  return std::string("python3 '") + SLUICE_SOURCE_DIR + "/pipelines/orders/generate.py' --count " +
         std::to_string(count) + " --seed " + std::to_string(seed);
}

// 32-bit FNV-1a: the embedded-broker tests' own partitioner, so that every
// event's partition and offset are known before anything is produced.
inline int32_t FnvPartition(const std::string& key) {
  uint32_t hash = 2166136261u;
  for (unsigned char c : key) {
    hash ^= c;
    hash *= 16777619u;
  }
  return static_cast<int32_t>(hash % kPartitions);
}

// The generator's lines as the embedded-broker tests place them, decided
// here rather than by a broker: key = order_id, timestamp = event_time,
// partition = FnvPartition(key) (0 without a key), offsets counted per
// partition in line order. Every event is classified.
inline std::vector<Event> EventsFromGenerator(const std::string& jsonl) {
  std::vector<Event> events;
  std::istringstream lines(jsonl);
  std::string line;
  std::map<int32_t, int64_t> next_offset;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    Event event;
    event.value = line;
    rapidjson::Document doc;
    doc.Parse(line.data(), line.size());
    if (!doc.HasParseError() && doc.IsObject()) {
      auto id = doc.FindMember("order_id");
      if (id != doc.MemberEnd() && id->value.IsString()) event.key = id->value.GetString();
      auto time = doc.FindMember("event_time");
      if (time != doc.MemberEnd() && time->value.IsString()) {
        std::optional<int64_t> ms = ParseIsoMillis(time->value.GetString());
        if (ms) event.timestamp = *ms;
      }
    }
    event.partition = event.key ? FnvPartition(*event.key) : 0;
    event.offset = next_offset[event.partition]++;
    Classify(&event);
    events.push_back(event);
  }
  return events;
}

// The events as a real broker placed them, learnt by reading the topic back
// with a plain consumer (`sluice produce` chose key, timestamp and partition,
// the broker the offsets). `Record` is any type with key, value, timestamp,
// partition and offset, so that this header needs no Kafka client. Every
// event is classified.
template <typename Record>
std::vector<Event> EventsFromRecords(const std::vector<Record>& records) {
  std::vector<Event> events;
  for (const Record& record : records) {
    Event event;
    event.value = record.value.value_or("");
    event.key = record.key;
    event.timestamp = record.timestamp;
    event.partition = record.partition;
    event.offset = record.offset;
    Classify(&event);
    events.push_back(event);
  }
  return events;
}

// The messages that put `events` where EventsFromGenerator says they are.
inline std::vector<OutgoingMessage> MessagesFor(const std::vector<Event>& events) {
  std::vector<OutgoingMessage> messages;
  for (const Event& e : events) {
    OutgoingMessage message;
    message.key = e.key;
    message.value = e.value;
    message.partition = e.partition;
    message.timestamp = e.timestamp;
    messages.push_back(message);
  }
  return messages;
}

// ---------------------------------------------------------------------------
// What orders_curated keeps.

// Per order_id: the newest staged version by (timestamp, partition, offset),
// and the status of the newest staged event that had one ('unknown' if none
// did). The order of `events` does not matter: no two events share a
// (timestamp, partition, offset), so "newest" is a total order.
inline std::map<std::string, std::pair<const Event*, std::string>> NewestVersions(const std::vector<Event>& events) {
  auto newer = [](const Event* a, const Event* b) {
    return std::make_tuple(a->timestamp, a->partition, a->offset) >
           std::make_tuple(b->timestamp, b->partition, b->offset);
  };
  std::map<std::string, const Event*> newest, newest_with_status;
  for (const Event& e : events) {
    if (!e.staged) continue;
    const Event*& current = newest[*e.order_id];
    if (current == nullptr || newer(&e, current)) current = &e;
    if (e.status == "unknown") continue;
    const Event*& with_status = newest_with_status[*e.order_id];
    if (with_status == nullptr || newer(&e, with_status)) with_status = &e;
  }
  std::map<std::string, std::pair<const Event*, std::string>> curated;
  for (const auto& [id, e] : newest) {
    auto carried = newest_with_status.find(id);
    curated[id] = {e, carried == newest_with_status.end() ? "unknown" : carried->second->status};
  }
  return curated;
}

// ---------------------------------------------------------------------------
// revenue_hourly, keyed "hour|region|category|currency" -> (orders, revenue).

using Revenue = std::map<std::string, std::pair<int64_t, double>>;

// The non-cancelled orders of `curated` (from NewestVersions) by the hour of
// their kept event, region, category and currency ('unknown' without one).
// Revenue is summed unrounded; the comparison rounds it.
inline Revenue ExpectedRevenue(const std::map<std::string, std::pair<const Event*, std::string>>& curated,
                               const Seeds& seeds) {
  Revenue revenue;
  for (const auto& [id, kept] : curated) {
    if (kept.second == "cancelled") continue;
    std::vector<std::string> columns = ExpectedColumns(*kept.first, seeds);
    std::string currency = columns[7] == "NULL" ? "unknown" : columns[7];
    auto& cell = revenue[columns[9] + "|" + columns[3] + "|" + columns[6] + "|" + currency];
    cell.first += 1;
    cell.second += kept.first->amount.value_or(0);
  }
  return revenue;
}

// Rows of "select hour, region, category, currency, orders, revenue from
// revenue_hourly", '|'-separated. Fails fatally on a malformed row, so call
// it under ASSERT_NO_FATAL_FAILURE.
inline void ParseRevenue(const std::vector<std::string>& rows, Revenue* revenue) {
  for (const std::string& row : rows) {
    std::vector<std::string> cells = Split(row);
    ASSERT_EQ(cells.size(), 6u) << row;
    (*revenue)[cells[0] + "|" + cells[1] + "|" + cells[2] + "|" + cells[3]] = {std::stoll(cells[4]),
                                                                               std::strtod(cells[5].c_str(), nullptr)};
  }
}

// Every expected cell is there with the same orders and the revenue to the
// cent, and there is no other. Reports about 20 differences at most, so that
// a wrong pipeline does not bury the output.
inline void ExpectRevenueMatches(const Revenue& expected, const Revenue& actual) {
  EXPECT_EQ(actual.size(), expected.size());
  int mismatches = 0;
  for (const auto& [key, cell] : expected) {
    auto found = actual.find(key);
    if (found == actual.end()) {
      ADD_FAILURE() << "revenue_hourly lacks " << key;
    } else if (found->second.first != cell.first || std::fabs(found->second.second - Round2(cell.second)) > 0.01) {
      ADD_FAILURE() << "revenue_hourly " << key << ": expected " << cell.first << " orders, " << Round2(cell.second)
                    << "; actual " << found->second.first << " orders, " << found->second.second;
    } else {
      continue;
    }
    if (++mismatches > 20) break;
  }
  for (const auto& [key, cell] : actual) {
    if (!expected.count(key)) ADD_FAILURE() << "revenue_hourly has an unexpected row " << key;
  }
}

// orders_curated rows as read with kCuratedColumns, '|'-separated, by
// order_id. Fails fatally on a malformed row, so call it under
// ASSERT_NO_FATAL_FAILURE.
inline void ParseCurated(const std::vector<std::string>& rows,
                         std::map<std::string, std::vector<std::string>>* curated) {
  for (const std::string& row : rows) {
    std::vector<std::string> cells = Split(row);
    ASSERT_EQ(cells.size(), 15u) << row;
    (*curated)[cells[0]] = cells;
  }
}

}  // namespace sluice::orders_reference
