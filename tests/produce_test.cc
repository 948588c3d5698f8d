// `sluice produce`: times are parsed strictly (a date that does not exist or a
// zone written +0530 is never read as something else), a timestamp field that
// is not a time stops with the line, and a key field no line has is an error.
#include <gtest/gtest.h>

#include <string>

#include "connectors/producer.h"
#include "test_support.h"

namespace sluice {
namespace {

using testing::Contains;
using testing::RunSluice;
using testing::TempDir;

TEST(ParseIsoMillis, ReadsZonesExactlyAndRefusesDatesThatDoNotExist) {
  EXPECT_EQ(ParseIsoMillis("2026-11-21T08:34:19.706Z"), std::optional<int64_t>(1795250059706));
  EXPECT_EQ(ParseIsoMillis("2026-11-21T14:04:19.706+05:30"), std::optional<int64_t>(1795250059706));
  EXPECT_EQ(ParseIsoMillis("2026-11-21T14:04:19.706+0530"), std::optional<int64_t>(1795250059706));
  EXPECT_EQ(ParseIsoMillis("2026-11-21T03:34:19.706-05"), std::optional<int64_t>(1795250059706));
  EXPECT_EQ(ParseIsoMillis("2026-02-30T00:00:00Z"), std::nullopt);
  EXPECT_EQ(ParseIsoMillis("2026-13-01T00:00:00Z"), std::nullopt);
  EXPECT_EQ(ParseIsoMillis("2026-11-21T24:00:00Z"), std::nullopt);
  EXPECT_EQ(ParseIsoMillis("2026-11-21T08:34:19+5"), std::nullopt);
  EXPECT_EQ(ParseIsoMillis("2026-11-21T08:34:19 UTC"), std::nullopt);
}

TEST(Produce, TimestampFieldThatIsNotATimeStopsNamingTheLine) {
  auto broker = testing::StartBroker("events", 1);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  testing::WriteFile(dir / "in.jsonl",
                     "{\"id\":\"a\",\"at\":\"2026-11-21T08:00:00Z\"}\n{\"id\":\"b\",\"at\":\"2026-02-30T08:00:00Z\"}\n");
  std::string output;
  int code = RunSluice({"produce", "--brokers", broker->bootstrap(), "--topic", "events", "--timestamp-field", "at",
                        dir / "in.jsonl"},
                       &output);
  EXPECT_EQ(code, 1) << output;
  EXPECT_TRUE(Contains(output, "line 2: at = \"2026-02-30T08:00:00Z\" is not a time")) << output;
}

TEST(Produce, KeyFieldThatNoLineHasIsAnError) {
  auto broker = testing::StartBroker("events", 1);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  testing::WriteFile(dir / "in.jsonl", "{\"id\":\"a\"}\n{\"id\":\"b\"}\n");
  std::string output;
  int code = RunSluice({"produce", "--brokers", broker->bootstrap(), "--topic", "events", "--key-field", "order_id",
                        dir / "in.jsonl"},
                       &output);
  EXPECT_EQ(code, 1) << output;
  EXPECT_TRUE(Contains(output, "no line has the field 'order_id' given by --key-field")) << output;
}

TEST(Produce, SaysWhenTheBrokerDroppedWhatWasDelivered) {
  auto broker = testing::StartBroker("big", 1);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  std::string lines;
  for (int i = 0; i < 8000; ++i) lines += "{\"id\":" + std::to_string(i) + ",\"pad\":\"" + std::string(1000, 'x') + "\"}\n";
  testing::WriteFile(dir / "big.jsonl", lines);
  std::string output;
  ASSERT_EQ(RunSluice({"produce", "--brokers", broker->bootstrap(), "--topic", "big", dir / "big.jsonl"}, &output), 0)
      << output;
  EXPECT_TRUE(Contains(output, "big[0]: the broker deleted ")) << output;
  EXPECT_TRUE(Contains(output, "no longer there to read")) << output;
}

}  // namespace
}  // namespace sluice
