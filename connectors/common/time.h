// Time in the vocabulary: one strict ISO-8601 parser and one formatter, for
// every layer (the producer's --timestamp-field, `run --from-file` envelopes,
// `reset --to TIME`, the catalog's timestamps). Instants are milliseconds
// since the Unix epoch, UTC. Pure functions: no time zone database, no
// locale, no global state; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sluice {

enum class ZoneRule {
  kDefaultUtc,  // no zone means UTC ("2026-11-21T08:34:19" is 08:34:19Z)
  kRequired,    // no zone is refused (file envelopes: the writer must say)
};

// Parses YYYY-MM-DD(T|t| )HH:MM:SS[.fraction][zone], zone being Z, z,
// +HH:MM, +HHMM or +HH (or -). The date must exist (2026-02-30 does not),
// hours 00-23, minutes and seconds 00-59, zone hours 00-23 and minutes 00-59;
// the fraction has at least one digit and is truncated to milliseconds.
// Anything else, including trailing text, gives nullopt.
std::optional<int64_t> ParseIsoMillis(std::string_view text, ZoneRule zone = ZoneRule::kDefaultUtc);

// "2026-11-21T08:34:19.706Z": always UTC, always milliseconds, so that the
// text sorts like the instant (years 0000-9999).
std::string FormatIsoMillis(int64_t millis);

// The current time as FormatIsoMillis gives it.
std::string NowIso();

// Civil-date arithmetic on the proleptic Gregorian calendar (Howard
// Hinnant's algorithms), shared with the SQL time functions.
// `value / divisor` rounded toward negative infinity; `divisor` > 0.
constexpr int64_t FloorDiv(int64_t value, int64_t divisor) {
  int64_t quotient = value / divisor;
  return value % divisor < 0 ? quotient - 1 : quotient;
}

// `value` modulo `divisor`, in [0, divisor); `divisor` > 0.
constexpr int64_t FloorMod(int64_t value, int64_t divisor) { return value - FloorDiv(value, divisor) * divisor; }

struct CivilDate {
  int64_t year;
  int month;  // 1..12
  int day;    // 1..31
};

// Days since 1970-01-01 of the proleptic Gregorian date (Hinnant's
// days_from_civil). `month` and `day` must be valid for `year`.
constexpr int64_t DaysFromCivil(int64_t year, int month, int day) {
  year -= month <= 2 ? 1 : 0;
  const int64_t era = FloorDiv(year, 400);
  const int64_t year_of_era = year - era * 400;  // [0, 399]
  // Day of the year counted from March 1, so that February's length does not matter: [0, 365].
  const int64_t day_of_year = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
  const int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
  return era * 146097 + day_of_era - 719468;
}

// The proleptic Gregorian date `days` after 1970-01-01 (Hinnant's civil_from_days).
constexpr CivilDate CivilFromDays(int64_t days) {
  days += 719468;  // now counted from 0000-03-01
  const int64_t era = FloorDiv(days, 146097);
  const int64_t day_of_era = days - era * 146097;  // [0, 146096]
  const int64_t year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
  const int64_t day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
  const int64_t shifted_month = (5 * day_of_year + 2) / 153;  // 0 is March
  const int day = static_cast<int>(day_of_year - (153 * shifted_month + 2) / 5 + 1);
  const int month = static_cast<int>(shifted_month < 10 ? shifted_month + 3 : shifted_month - 9);
  return {year_of_era + era * 400 + (month <= 2 ? 1 : 0), month, day};
}

constexpr bool IsLeapYear(int64_t year) { return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0); }

}  // namespace sluice
