// Status and Result: reading the value of a failed Result stops the process
// with the error in every build (it was undefined behaviour in release
// builds, where assert() is compiled out).
#include <gtest/gtest.h>

#include "common/status.h"

namespace sluice {
namespace {

Result<int> Failing() { return Status::IoError("disk on fire"); }

TEST(ResultDeathTest, ValueOfAnErrorStopsWithTheErrorInEveryBuild) {
  EXPECT_DEATH({ (void)Failing().value(); }, "value of a failed result was read \\(disk on fire\\)");
  Result<int> failed = Failing();
  EXPECT_DEATH({ (void)*failed; }, "disk on fire");
}

TEST(Result, CarriesTheValueOrTheStatus) {
  Result<int> good = 7;
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 7);
  Result<int> bad = Failing();
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Status::Code::kIoError);
  EXPECT_TRUE(Status::Unavailable("locked").transient());
  EXPECT_FALSE(Status::DataLoss("gone").transient());
}

}  // namespace
}  // namespace sluice
