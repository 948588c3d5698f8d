// The vocabulary's ISO-8601 parser and formatter: civil-date arithmetic by
// Howard Hinnant's algorithms, so no timegm/gmtime and no time zone state.
#include "common/time.h"

#include <chrono>
#include <cstdio>

namespace sluice {
namespace {

bool Digits(std::string_view text, size_t at, size_t count, int* out) {
  if (at + count > text.size()) return false;
  int value = 0;
  for (size_t i = at; i < at + count; ++i) {
    if (text[i] < '0' || text[i] > '9') return false;
    value = value * 10 + (text[i] - '0');
  }
  *out = value;
  return true;
}

}  // namespace

std::optional<int64_t> ParseIsoMillis(std::string_view text, ZoneRule zone_rule) {
  int year, month, day, hour, minute, second;
  if (!Digits(text, 0, 4, &year) || text.size() < 19 || text[4] != '-' || !Digits(text, 5, 2, &month) ||
      text[7] != '-' || !Digits(text, 8, 2, &day) || (text[10] != 'T' && text[10] != 't' && text[10] != ' ') ||
      !Digits(text, 11, 2, &hour) || text[13] != ':' || !Digits(text, 14, 2, &minute) || text[16] != ':' ||
      !Digits(text, 17, 2, &second)) {
    return std::nullopt;
  }
  static const int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month < 1 || month > 12 || day < 1 || day > kDays[month - 1] || (month == 2 && day == 29 && !IsLeapYear(year)) ||
      hour > 23 || minute > 59 || second > 59) {
    return std::nullopt;
  }
  size_t at = 19;
  int64_t millis = 0;
  if (at < text.size() && text[at] == '.') {
    ++at;
    size_t first = at;
    int64_t scale = 100;
    while (at < text.size() && text[at] >= '0' && text[at] <= '9') {
      millis += (text[at] - '0') * scale;
      scale /= 10;
      ++at;
    }
    if (at == first) return std::nullopt;
  }
  int64_t offset_minutes = 0;
  std::string_view zone = text.substr(at);
  if (zone.empty()) {
    if (zone_rule == ZoneRule::kRequired) return std::nullopt;
  } else if (zone == "Z" || zone == "z") {
    offset_minutes = 0;
  } else if (zone[0] == '+' || zone[0] == '-') {
    int zone_hours = 0, zone_minutes = 0;
    bool ok = Digits(text, at + 1, 2, &zone_hours);
    if (zone.size() == 6) {
      ok = ok && zone[3] == ':' && Digits(text, at + 4, 2, &zone_minutes);
    } else if (zone.size() == 5) {
      ok = ok && Digits(text, at + 3, 2, &zone_minutes);
    } else {
      ok = ok && zone.size() == 3;
    }
    if (!ok || zone_hours > 23 || zone_minutes > 59) return std::nullopt;
    offset_minutes = (zone[0] == '-' ? -1 : 1) * (zone_hours * 60 + zone_minutes);
  } else {
    return std::nullopt;
  }
  int64_t days = DaysFromCivil(year, month, day);
  int64_t seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
  return seconds * 1000 + millis;
}

std::string FormatIsoMillis(int64_t millis) {
  const int64_t days = FloorDiv(millis, 86400000);
  const int64_t in_day = millis - days * 86400000;
  const CivilDate date = CivilFromDays(days);
  char out[96];
  std::snprintf(out, sizeof(out), "%04lld-%02d-%02dT%02lld:%02lld:%02lld.%03lldZ", static_cast<long long>(date.year),
                date.month, date.day, static_cast<long long>(in_day / 3600000), static_cast<long long>(in_day / 60000 % 60),
                static_cast<long long>(in_day / 1000 % 60), static_cast<long long>(in_day % 1000));
  return out;
}

std::string NowIso() {
  auto now = std::chrono::system_clock::now().time_since_epoch();
  return FormatIsoMillis(std::chrono::duration_cast<std::chrono::milliseconds>(now).count());
}

}  // namespace sluice
