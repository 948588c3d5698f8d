// Time helper functions: parsing ISO-8601 text, formatting ISO-8601 UTC text,
// truncating to a unit and counting unit boundaries. Calendar arithmetic uses
// Howard Hinnant's days_from_civil and civil_from_days on the proleptic
// Gregorian calendar (http://howardhinnant.github.io/date_algorithms.html),
// never timegm, gmtime or localtime: the functions keep no state, are
// thread-safe and do not depend on TZ. Instants are int64 milliseconds since
// 1970-01-01T00:00:00Z, limited to years 0000 to 9999 so that every result
// prints as a four-digit year and no arithmetic can overflow. Division rounds
// toward negative infinity, so instants before 1970 fall in the right second,
// day or week (C++'s `/` rounds toward zero and would put -1 ms in 1970).
#include "sql/sqlite/functions.h"

#include "common/time.h"

#include <sqlite3.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

namespace sluice {
namespace {

constexpr int64_t kMsPerSecond = 1000;
constexpr int64_t kMsPerMinute = 60 * kMsPerSecond;
constexpr int64_t kMsPerHour = 60 * kMsPerMinute;
constexpr int64_t kMsPerDay = 24 * kMsPerHour;

enum class Unit { kMillisecond, kSecond, kMinute, kHour, kDay, kWeek, kMonth, kQuarter, kYear };

constexpr char kUnitList[] = "millisecond, second, minute, hour, day, week, month, quarter, year";
constexpr char kIsoHint[] =
    "expected YYYY-MM-DD, optionally followed by THH:MM[:SS[.fff]] and Z, +HH:MM or -HH:MM; "
    "for example 2026-11-21T08:34:19.706Z";

int DaysInMonth(int64_t year, int month) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return month == 2 && IsLeapYear(year) ? 29 : kDays[month - 1];
}

// The supported range: 0000-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z.
constexpr int64_t kMinMs = DaysFromCivil(0, 1, 1) * kMsPerDay;
constexpr int64_t kMaxMs = DaysFromCivil(10000, 1, 1) * kMsPerDay - 1;
static_assert(kMinMs == -62167219200000, "0000-01-01 in epoch ms");
static_assert(kMaxMs == 253402300799999, "9999-12-31T23:59:59.999 in epoch ms");

// `ms` is the number as the user wrote it.
std::string OutOfRange(const std::string& ms) {
  return ms + " ms is outside the supported range (years 0000 to 9999: " + std::to_string(kMinMs) +
         " to " + std::to_string(kMaxMs) + ")";
}

// Shows text input in an error message: quoted, cut to about 60 bytes
// without splitting a UTF-8 sequence.
std::string ShowText(std::string_view text) {
  if (text.size() <= 60) return "'" + std::string(text) + "'";
  size_t cut = 57;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return "'" + std::string(text.substr(0, cut)) + "...'";
}

// Appends `value` (>= 0) zero-padded to `width` digits.
void AppendPadded(std::string* out, int64_t value, int width) {
  std::string digits = std::to_string(value);
  if (static_cast<int>(digits.size()) < width) out->append(width - digits.size(), '0');
  *out += digits;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Reads exactly `count` digits at `*pos` into `*out`, advancing `*pos`.
bool ReadDigits(std::string_view text, size_t* pos, size_t count, int* out) {
  if (text.size() - *pos < count) return false;
  int value = 0;
  for (size_t digit_idx = 0; digit_idx < count; ++digit_idx) {
    char c = text[*pos + digit_idx];
    if (!IsDigit(c)) return false;
    value = value * 10 + (c - '0');
  }
  *pos += count;
  *out = value;
  return true;
}

// Consumes `expected` at `*pos` if it is there.
bool Accept(std::string_view text, size_t* pos, char expected) {
  if (*pos >= text.size() || text[*pos] != expected) return false;
  ++*pos;
  return true;
}

// Parses ISO-8601 text into epoch ms:
//   YYYY-MM-DD [ (T|t|space) HH:MM [:SS [.fraction]] [ Z|z | (+|-)HH[[:]MM] ] ]
// No offset means UTC. Fraction digits beyond milliseconds are dropped
// (truncated, like date_trunc). Leap seconds (:60) and 24:00 are refused.
Result<int64_t> ParseTimestamp(std::string_view text) {
  auto syntax_error = [&]() {
    bool digits_only = !text.empty();
    for (size_t char_idx = 0; char_idx < text.size(); ++char_idx) {
      if (!IsDigit(text[char_idx]) && !(char_idx == 0 && text[0] == '-' && text.size() > 1)) digits_only = false;
    }
    if (digits_only && text.size() > 4) {
      return Status::InvalidInput(ShowText(text) +
                                  " is not an ISO-8601 timestamp (epoch milliseconds must be an INTEGER, not TEXT: "
                                  "use CAST(... AS INTEGER))");
    }
    return Status::InvalidInput(ShowText(text) + " is not an ISO-8601 timestamp (" + kIsoHint + ")");
  };
  auto range_error = [&](const std::string& what) {
    return Status::InvalidInput(ShowText(text) + " is not a valid timestamp: " + what);
  };

  size_t pos = 0;
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0, millis = 0, offset_minutes = 0;
  if (!ReadDigits(text, &pos, 4, &year) || !Accept(text, &pos, '-') || !ReadDigits(text, &pos, 2, &month) ||
      !Accept(text, &pos, '-') || !ReadDigits(text, &pos, 2, &day)) {
    return syntax_error();
  }
  if (pos < text.size()) {
    if (!Accept(text, &pos, 'T') && !Accept(text, &pos, 't') && !Accept(text, &pos, ' ')) return syntax_error();
    if (!ReadDigits(text, &pos, 2, &hour) || !Accept(text, &pos, ':') || !ReadDigits(text, &pos, 2, &minute)) {
      return syntax_error();
    }
    if (Accept(text, &pos, ':')) {
      if (!ReadDigits(text, &pos, 2, &second)) return syntax_error();
      if (Accept(text, &pos, '.')) {
        size_t fraction_digits = 0;
        while (pos < text.size() && IsDigit(text[pos])) {
          if (fraction_digits < 3) millis = millis * 10 + (text[pos] - '0');
          ++fraction_digits;
          ++pos;
        }
        if (fraction_digits == 0) return syntax_error();
        for (; fraction_digits < 3; ++fraction_digits) millis *= 10;
      }
    }
    if (Accept(text, &pos, 'Z') || Accept(text, &pos, 'z')) {
      // UTC.
    } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
      size_t offset_start = pos;
      int sign = text[pos++] == '-' ? -1 : 1;
      int offset_hour = 0, offset_minute = 0;
      if (!ReadDigits(text, &pos, 2, &offset_hour)) return syntax_error();
      if (pos < text.size()) {
        Accept(text, &pos, ':');
        if (!ReadDigits(text, &pos, 2, &offset_minute)) return syntax_error();
      }
      if (pos != text.size()) return syntax_error();
      if (offset_hour > 23 || offset_minute > 59) {
        return range_error("UTC offset " + std::string(text.substr(offset_start)) +
                           " is not between -23:59 and +23:59");
      }
      offset_minutes = sign * (offset_hour * 60 + offset_minute);
    }
    if (pos != text.size()) return syntax_error();
  }

  if (month < 1 || month > 12) return range_error("month " + std::to_string(month) + " does not exist");
  if (day < 1 || day > DaysInMonth(year, month)) {
    std::string year_month;
    AppendPadded(&year_month, year, 4);
    year_month += '-';
    AppendPadded(&year_month, month, 2);
    return range_error(year_month + " has no day " + std::to_string(day));
  }
  if (hour > 23) return range_error("hour " + std::to_string(hour) + " does not exist (use 00 to 23)");
  if (minute > 59) return range_error("minute " + std::to_string(minute) + " does not exist (use 00 to 59)");
  if (second > 59) {
    return range_error("second " + std::to_string(second) + " does not exist (leap seconds are not supported)");
  }

  int64_t ms = DaysFromCivil(year, month, day) * kMsPerDay + hour * kMsPerHour + minute * kMsPerMinute +
               second * kMsPerSecond + millis - offset_minutes * kMsPerMinute;
  if (ms < kMinMs || ms > kMaxMs) return range_error("in UTC it is outside years 0000 to 9999");
  return ms;
}

// Formats `ms` (within [kMinMs, kMaxMs]) as 'YYYY-MM-DDTHH:MM:SS.sssZ', or as
// 'YYYY-MM-DDTHH:MM:SSZ' without `with_millis`.
std::string FormatTimestamp(int64_t ms, bool with_millis) {
  CivilDate date = CivilFromDays(FloorDiv(ms, kMsPerDay));
  int64_t ms_of_day = FloorMod(ms, kMsPerDay);
  std::string text;
  text.reserve(24);
  AppendPadded(&text, date.year, 4);
  text += '-';
  AppendPadded(&text, date.month, 2);
  text += '-';
  AppendPadded(&text, date.day, 2);
  text += 'T';
  AppendPadded(&text, ms_of_day / kMsPerHour, 2);
  text += ':';
  AppendPadded(&text, ms_of_day / kMsPerMinute % 60, 2);
  text += ':';
  AppendPadded(&text, ms_of_day / kMsPerSecond % 60, 2);
  if (with_millis) {
    text += '.';
    AppendPadded(&text, ms_of_day % kMsPerSecond, 3);
  }
  text += 'Z';
  return text;
}

// Parses a unit name: singular or plural, any case.
Result<Unit> ParseUnit(std::string_view text) {
  std::string name;
  for (char c : text) name += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  if (name.size() > 1 && name.back() == 's') name.pop_back();
  if (name == "millisecond") return Unit::kMillisecond;
  if (name == "second") return Unit::kSecond;
  if (name == "minute") return Unit::kMinute;
  if (name == "hour") return Unit::kHour;
  if (name == "day") return Unit::kDay;
  if (name == "week") return Unit::kWeek;
  if (name == "month") return Unit::kMonth;
  if (name == "quarter") return Unit::kQuarter;
  if (name == "year") return Unit::kYear;
  return Status::InvalidInput(ShowText(text) + " is not a unit (use " + kUnitList + ")");
}

// The start of the `unit` containing `ms`. Weeks start on Monday (ISO 8601).
// The result may lie before kMinMs (the week of 0000-01-01 starts in year -1).
int64_t Truncate(Unit unit, int64_t ms) {
  int64_t days = FloorDiv(ms, kMsPerDay);
  CivilDate date = CivilFromDays(days);
  switch (unit) {
    case Unit::kMillisecond: return ms;
    case Unit::kSecond: return FloorDiv(ms, kMsPerSecond) * kMsPerSecond;
    case Unit::kMinute: return FloorDiv(ms, kMsPerMinute) * kMsPerMinute;
    case Unit::kHour: return FloorDiv(ms, kMsPerHour) * kMsPerHour;
    case Unit::kDay: return days * kMsPerDay;
    // 1970-01-01 was a Thursday: day 0 is 3 days after a Monday.
    case Unit::kWeek: return (days - FloorMod(days + 3, 7)) * kMsPerDay;
    case Unit::kMonth: return DaysFromCivil(date.year, date.month, 1) * kMsPerDay;
    case Unit::kQuarter: return DaysFromCivil(date.year, (date.month - 1) / 3 * 3 + 1, 1) * kMsPerDay;
    case Unit::kYear: return DaysFromCivil(date.year, 1, 1) * kMsPerDay;
  }
  return ms;
}

// The ordinal of the `unit` holding `ms`, counted so that consecutive units
// differ by one: date_diff is the difference of two ordinals, i.e. the number
// of unit boundaries crossed going from one instant to the other.
int64_t UnitOrdinal(Unit unit, int64_t ms) {
  int64_t days = FloorDiv(ms, kMsPerDay);
  CivilDate date = CivilFromDays(days);
  switch (unit) {
    case Unit::kMillisecond: return ms;
    case Unit::kSecond: return FloorDiv(ms, kMsPerSecond);
    case Unit::kMinute: return FloorDiv(ms, kMsPerMinute);
    case Unit::kHour: return FloorDiv(ms, kMsPerHour);
    case Unit::kDay: return days;
    case Unit::kWeek: return FloorDiv(days + 3, 7);  // Monday-based, as in Truncate
    case Unit::kMonth: return date.year * 12 + (date.month - 1);
    case Unit::kQuarter: return date.year * 4 + (date.month - 1) / 3;
    case Unit::kYear: return date.year;
  }
  return ms;
}

// The text of `value` as SQLite converts it (empty if SQLite runs out of memory).
std::string_view TextOf(sqlite3_value* value) {
  const char* text = reinterpret_cast<const char*>(sqlite3_value_text(value));
  if (text == nullptr) return {};
  return std::string_view(text, static_cast<size_t>(sqlite3_value_bytes(value)));
}

// Reads a timestamp argument (not NULL): ISO-8601 text, an INTEGER of epoch
// ms, or a REAL holding a whole number of ms. Instants outside years 0000 to
// 9999 are refused, except INTEGERs without `check_range`.
Result<int64_t> ReadTimestamp(sqlite3_value* value, bool check_range) {
  int64_t ms = 0;
  switch (sqlite3_value_type(value)) {
    case SQLITE_INTEGER:
      ms = sqlite3_value_int64(value);
      break;
    case SQLITE_FLOAT: {
      double real = sqlite3_value_double(value);
      if (!std::isfinite(real) || std::floor(real) != real) {
        return Status::InvalidInput(std::string(TextOf(value)) + " is not a whole number of epoch milliseconds");
      }
      // Checked even for epoch_ms: converting a double beyond int64 is undefined.
      if (real < static_cast<double>(kMinMs) || real > static_cast<double>(kMaxMs)) {
        return Status::InvalidInput(OutOfRange(std::string(TextOf(value))));
      }
      ms = static_cast<int64_t>(real);
      break;
    }
    case SQLITE_TEXT:
      return ParseTimestamp(TextOf(value));
    default:
      return Status::InvalidInput("a BLOB is not a timestamp (use ISO-8601 text or INTEGER epoch milliseconds)");
  }
  if (check_range && (ms < kMinMs || ms > kMaxMs)) return Status::InvalidInput(OutOfRange(std::to_string(ms)));
  return ms;
}

// Reads a unit argument (not NULL).
Result<Unit> ReadUnit(sqlite3_value* value) { return ParseUnit(TextOf(value)); }

// Shows an argument in an error message: text quoted, numbers as SQLite prints them.
std::string ShowValue(sqlite3_value* value) {
  return sqlite3_value_type(value) == SQLITE_TEXT ? ShowText(TextOf(value)) : std::string(TextOf(value));
}

void ReportError(sqlite3_context* context, const char* function, const Status& status) {
  std::string message = std::string(function) + ": " + status.message();
  sqlite3_result_error(context, message.c_str(), static_cast<int>(message.size()));
}

bool IsNull(sqlite3_value* value) { return sqlite3_value_type(value) == SQLITE_NULL; }

// date_trunc(unit, ts): the start of the unit holding ts, as ISO-8601 UTC
// text. A bad unit is an error even when ts is NULL, so that a typo shows.
void DateTrunc(sqlite3_context* context, int /*argc*/, sqlite3_value** argv) {
  if (IsNull(argv[0])) return sqlite3_result_null(context);
  Result<Unit> unit = ReadUnit(argv[0]);
  if (!unit.ok()) return ReportError(context, "date_trunc", unit.status());
  if (IsNull(argv[1])) return sqlite3_result_null(context);
  Result<int64_t> ms = ReadTimestamp(argv[1], /*check_range=*/true);
  if (!ms.ok()) return ReportError(context, "date_trunc", ms.status());
  int64_t start = Truncate(*unit, *ms);
  if (start < kMinMs) {
    // Only the week holding 0000-01-01 and 0000-01-02 (Saturday, Sunday) starts earlier, in year -1.
    return ReportError(context, "date_trunc",
                       Status::InvalidInput("the week holding " + ShowValue(argv[1]) +
                                            " starts before 0000-01-01 (supported years are 0000 to 9999)"));
  }
  std::string text = FormatTimestamp(start, *unit == Unit::kMillisecond);
  sqlite3_result_text(context, text.c_str(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
}

// date_diff(unit, a, b): unit boundaries crossed from a to b (negative when
// b is earlier).
void DateDiff(sqlite3_context* context, int /*argc*/, sqlite3_value** argv) {
  if (IsNull(argv[0])) return sqlite3_result_null(context);
  Result<Unit> unit = ReadUnit(argv[0]);
  if (!unit.ok()) return ReportError(context, "date_diff", unit.status());
  if (IsNull(argv[1]) || IsNull(argv[2])) return sqlite3_result_null(context);
  Result<int64_t> start = ReadTimestamp(argv[1], /*check_range=*/true);
  if (!start.ok()) return ReportError(context, "date_diff", start.status());
  Result<int64_t> end = ReadTimestamp(argv[2], /*check_range=*/true);
  if (!end.ok()) return ReportError(context, "date_diff", end.status());
  sqlite3_result_int64(context, UnitOrdinal(*unit, *end) - UnitOrdinal(*unit, *start));
}

// epoch_ms(ts): milliseconds since the epoch. Integers pass through unchanged.
void EpochMs(sqlite3_context* context, int /*argc*/, sqlite3_value** argv) {
  if (IsNull(argv[0])) return sqlite3_result_null(context);
  Result<int64_t> ms = ReadTimestamp(argv[0], /*check_range=*/false);
  if (!ms.ok()) return ReportError(context, "epoch_ms", ms.status());
  sqlite3_result_int64(context, *ms);
}

// to_timestamp(ms): ISO-8601 UTC text with milliseconds. ISO text is
// accepted too, and normalised to UTC.
void ToTimestamp(sqlite3_context* context, int /*argc*/, sqlite3_value** argv) {
  if (IsNull(argv[0])) return sqlite3_result_null(context);
  Result<int64_t> ms = ReadTimestamp(argv[0], /*check_range=*/true);
  if (!ms.ok()) return ReportError(context, "to_timestamp", ms.status());
  std::string text = FormatTimestamp(*ms, /*with_millis=*/true);
  sqlite3_result_text(context, text.c_str(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
}

}  // namespace

Status RegisterFunctions(sqlite3* db) {
  struct Definition {
    const char* name;
    int arg_count;
    void (*function)(sqlite3_context*, int, sqlite3_value**);
  };
  static constexpr Definition kDefinitions[] = {
      {"date_trunc", 2, DateTrunc},
      {"date_diff", 3, DateDiff},
      {"epoch_ms", 1, EpochMs},
      {"to_timestamp", 1, ToTimestamp},
  };
  constexpr int kFlags = SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS;
  for (const Definition& definition : kDefinitions) {
    int rc = sqlite3_create_function_v2(db, definition.name, definition.arg_count, kFlags, nullptr, definition.function,
                                        nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) {
      return Status::SqlError(std::string("cannot register SQL function ") + definition.name + ": " +
                              sqlite3_errstr(rc));
    }
  }
  return Status::Ok();
}

}  // namespace sluice
