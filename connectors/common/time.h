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

// Days since 1970-01-01 of a proleptic Gregorian date (no range check).
int64_t DaysFromCivil(int64_t year, unsigned month, unsigned day);

}  // namespace sluice
