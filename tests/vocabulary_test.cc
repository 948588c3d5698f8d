// The vocabulary's time functions: one strict ISO-8601 parser and one
// formatter for every layer (producer, file envelopes, reset --to, catalog).
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "common/time.h"
#include "test_support.h"

namespace sluice {
namespace {

TEST(ParseIsoMillis, ReadsEveryZoneFormExactly) {
  const int64_t instant = 1795250059706;  // 2026-11-21T08:34:19.706Z
  EXPECT_EQ(ParseIsoMillis("2026-11-21T08:34:19.706Z"), instant);
  EXPECT_EQ(ParseIsoMillis("2026-11-21t08:34:19.706z"), instant);
  EXPECT_EQ(ParseIsoMillis("2026-11-21 08:34:19.706Z"), instant);
  EXPECT_EQ(ParseIsoMillis("2026-11-21T14:04:19.706+05:30"), instant);
  EXPECT_EQ(ParseIsoMillis("2026-11-21T14:04:19.706+0530"), instant);
  EXPECT_EQ(ParseIsoMillis("2026-11-21T03:34:19.706-05"), instant);
  EXPECT_EQ(ParseIsoMillis("2026-11-21T08:34:19.7069999Z"), instant);  // truncated to milliseconds
  EXPECT_EQ(ParseIsoMillis("2026-11-21T08:34:19.706"), instant);       // no zone: UTC by default
}

TEST(ParseIsoMillis, RefusesWhatIsNotExactlyATime) {
  for (const char* text : {"2026-02-30T00:00:00Z", "2026-02-29T00:00:00Z", "2026-13-01T00:00:00Z",
                           "2026-11-21T24:00:00Z", "2026-11-21T08:60:00Z", "2026-11-21T08:34:60Z",
                           "2026-11-21T08:34:19+5", "2026-11-21T08:34:19+05:3", "2026-11-21T08:34:19+24:00",
                           "2026-11-21T08:34:19+05:60", "2026-11-21T08:34:19 UTC", "2026-11-21T08:34:19.Z",
                           "2026-11-21T08:34:19Zjunk", "2026-11-21", "26-11-21T08:34:19Z", "2026-1-21T08:34:19Z",
                           "2026-11-21X08:34:19Z", ""}) {
    EXPECT_EQ(ParseIsoMillis(text), std::nullopt) << text;
  }
  EXPECT_EQ(ParseIsoMillis("2024-02-29T00:00:00Z"), 1709164800000);  // a leap day exists in 2024
  EXPECT_EQ(ParseIsoMillis("2000-02-29T00:00:00Z"), 951782400000);
  EXPECT_EQ(ParseIsoMillis("1900-02-29T00:00:00Z"), std::nullopt);
}

TEST(ParseIsoMillis, ARequiredZoneRefusesATimeWithoutOne) {
  EXPECT_EQ(ParseIsoMillis("2026-11-21T08:34:19.706", ZoneRule::kRequired), std::nullopt);
  EXPECT_EQ(ParseIsoMillis("2026-11-21T08:34:19.706Z", ZoneRule::kRequired), 1795250059706);
  EXPECT_EQ(ParseIsoMillis("2026-11-21T09:34:19.706+01:00", ZoneRule::kRequired), 1795250059706);
}

TEST(FormatIsoMillis, WritesUtcWithMillisecondsAndRoundTrips) {
  EXPECT_EQ(FormatIsoMillis(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatIsoMillis(-1), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(FormatIsoMillis(1795250059706), "2026-11-21T08:34:19.706Z");
  EXPECT_EQ(FormatIsoMillis(951782400000), "2000-02-29T00:00:00.000Z");
  // Every day from 1600 to 2400 at an odd time of day, both ways.
  for (int64_t day = -135140; day <= 157000; day += 37) {
    int64_t millis = day * 86400000 + 45296789;  // 12:34:56.789
    std::string text = FormatIsoMillis(millis);
    ASSERT_EQ(ParseIsoMillis(text), millis) << text;
  }
}

TEST(FormatIsoMillis, NowIsTodayAndSortsLikeTheInstant) {
  std::string before = NowIso();
  std::string after = NowIso();
  EXPECT_LE(before, after);
  ASSERT_TRUE(ParseIsoMillis(before, ZoneRule::kRequired).has_value()) << before;
}

TEST(ResetTo, AnImpossibleDateIsRefusedNotNormalised) {
  testing::TempDir dir;
  std::string output;
  EXPECT_NE(testing::RunSluice({"reset", dir.path(), "--to", "2026-02-30T00:00:00Z", "--yes"}, &output), 0);
  EXPECT_TRUE(testing::Contains(output, "--to 2026-02-30T00:00:00Z: use earliest, latest")) << output;
  EXPECT_NE(testing::RunSluice({"reset", dir.path(), "--to", "2026-11-21T08:00:00+5", "--yes"}, &output), 0);
  EXPECT_TRUE(testing::Contains(output, "use earliest, latest")) << output;
}

}  // namespace
}  // namespace sluice
