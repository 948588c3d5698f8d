// SQL time helpers (date_trunc, date_diff, epoch_ms, to_timestamp): calendar
// boundaries, leap years, UTC offsets, instants before 1970, accepted input
// forms, NULLs and error messages, all through SQL on an in-memory connection.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <string>

#include "sql/sqlite/functions.h"

namespace sluice {
namespace {

// An in-memory connection with the functions registered. Eval() returns the
// single value of a query as text ("NULL" for NULL), or "error: <message>".
class FunctionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(sqlite3_open(":memory:", &db_), SQLITE_OK);
    Status st = RegisterFunctions(db_);
    ASSERT_TRUE(st.ok()) << st.message();
  }
  void TearDown() override { sqlite3_close(db_); }

  std::string Eval(const std::string& expression) {
    std::string sql = "select " + expression;
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
      return "error: " + std::string(sqlite3_errmsg(db_));
    }
    std::string value;
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
      const unsigned char* text = sqlite3_column_text(stmt, 0);
      value = text == nullptr ? "NULL" : reinterpret_cast<const char*>(text);
    } else {
      value = "error: " + std::string(sqlite3_errmsg(db_));
    }
    sqlite3_finalize(stmt);
    return value;
  }

  sqlite3* db_ = nullptr;
};

TEST_F(FunctionsTest, DateTruncToEveryUnit) {
  const std::string ts = "'2026-11-21T08:34:19.706Z'";  // a Saturday
  EXPECT_EQ(Eval("date_trunc('millisecond', " + ts + ")"), "2026-11-21T08:34:19.706Z");
  EXPECT_EQ(Eval("date_trunc('second', " + ts + ")"), "2026-11-21T08:34:19Z");
  EXPECT_EQ(Eval("date_trunc('minute', " + ts + ")"), "2026-11-21T08:34:00Z");
  EXPECT_EQ(Eval("date_trunc('hour', " + ts + ")"), "2026-11-21T08:00:00Z");
  EXPECT_EQ(Eval("date_trunc('day', " + ts + ")"), "2026-11-21T00:00:00Z");
  EXPECT_EQ(Eval("date_trunc('week', " + ts + ")"), "2026-11-16T00:00:00Z");
  EXPECT_EQ(Eval("date_trunc('month', " + ts + ")"), "2026-11-01T00:00:00Z");
  EXPECT_EQ(Eval("date_trunc('quarter', " + ts + ")"), "2026-10-01T00:00:00Z");
  EXPECT_EQ(Eval("date_trunc('year', " + ts + ")"), "2026-01-01T00:00:00Z");
  EXPECT_EQ(Eval("typeof(date_trunc('day', " + ts + "))"), "text");
}

TEST_F(FunctionsTest, UnitsArePluralOrSingularInAnyCase) {
  EXPECT_EQ(Eval("date_trunc('HOURS', '2026-11-21T08:34:19Z')"), "2026-11-21T08:00:00Z");
  EXPECT_EQ(Eval("date_trunc('Month', '2026-11-21T08:34:19Z')"), "2026-11-01T00:00:00Z");
  EXPECT_EQ(Eval("date_diff('Weeks', '2026-11-16', '2026-11-30')"), "2");
  EXPECT_EQ(Eval("date_diff('milliseconds', '2026-11-16', '2026-11-16T00:00:01Z')"), "1000");
  EXPECT_EQ(Eval("date_diff('QUARTERS', '2026-01-01', '2027-01-01')"), "4");
}

TEST_F(FunctionsTest, WeeksStartOnMonday) {
  EXPECT_EQ(Eval("date_trunc('week', '2026-11-16T00:00:00Z')"), "2026-11-16T00:00:00Z");  // Monday itself
  EXPECT_EQ(Eval("date_trunc('week', '2026-11-22T23:59:59.999Z')"), "2026-11-16T00:00:00Z");  // Sunday
  EXPECT_EQ(Eval("date_trunc('week', '2026-11-23')"), "2026-11-23T00:00:00Z");
  // Across a year boundary: Thursday 2026-01-01 is in the week of Monday 2025-12-29.
  EXPECT_EQ(Eval("date_trunc('week', '2026-01-01')"), "2025-12-29T00:00:00Z");
  // Sunday to the next Monday crosses one week boundary; Monday to Sunday none.
  EXPECT_EQ(Eval("date_diff('week', '2026-11-22T23:59:59Z', '2026-11-23T00:00:00Z')"), "1");
  EXPECT_EQ(Eval("date_diff('week', '2026-11-16', '2026-11-22T23:59:59.999Z')"), "0");
  EXPECT_EQ(Eval("date_diff('week', '2025-12-31', '2026-01-01')"), "0");
  EXPECT_EQ(Eval("date_diff('week', '2026-11-23', '2026-11-22')"), "-1");
}

TEST_F(FunctionsTest, QuarterTruncationAndDiff) {
  EXPECT_EQ(Eval("date_trunc('quarter', '2026-01-01')"), "2026-01-01T00:00:00Z");
  EXPECT_EQ(Eval("date_trunc('quarter', '2026-03-31T23:59:59.999Z')"), "2026-01-01T00:00:00Z");
  EXPECT_EQ(Eval("date_trunc('quarter', '2026-04-01')"), "2026-04-01T00:00:00Z");
  EXPECT_EQ(Eval("date_trunc('quarter', '2026-08-15')"), "2026-07-01T00:00:00Z");
  EXPECT_EQ(Eval("date_trunc('quarter', '2026-12-31T23:59:59Z')"), "2026-10-01T00:00:00Z");
  EXPECT_EQ(Eval("date_diff('quarter', '2026-03-31', '2026-04-01')"), "1");
  EXPECT_EQ(Eval("date_diff('quarter', '2026-01-01', '2026-03-31')"), "0");
  EXPECT_EQ(Eval("date_diff('quarter', '2025-11-15', '2026-02-15')"), "1");
}

TEST_F(FunctionsTest, MonthEndsCountCalendarBoundaries) {
  EXPECT_EQ(Eval("date_diff('month', '2026-01-31', '2026-02-01')"), "1");
  EXPECT_EQ(Eval("date_diff('month', '2026-01-01', '2026-01-31T23:59:59.999Z')"), "0");
  EXPECT_EQ(Eval("date_diff('month', '2026-01-31', '2026-03-01')"), "2");
  EXPECT_EQ(Eval("date_diff('month', '2026-03-31', '2026-02-28')"), "-1");
  EXPECT_EQ(Eval("date_diff('month', '2025-12-31', '2027-01-01')"), "13");
  EXPECT_EQ(Eval("date_trunc('month', '2026-04-30T23:59:59.999Z')"), "2026-04-01T00:00:00Z");
  EXPECT_EQ(Eval("date_diff('day', '2026-01-31', '2026-02-01')"), "1");
}

TEST_F(FunctionsTest, LeapYears) {
  EXPECT_EQ(Eval("epoch_ms('2024-02-29')"), "1709164800000");
  EXPECT_EQ(Eval("epoch_ms('2000-02-29')"), "951782400000");  // divisible by 400: leap
  EXPECT_EQ(Eval("date_trunc('month', '2024-02-29T12:00:00Z')"), "2024-02-01T00:00:00Z");
  EXPECT_EQ(Eval("date_diff('day', '2024-02-28', '2024-03-01')"), "2");
  EXPECT_EQ(Eval("date_diff('day', '2000-02-28', '2000-03-01')"), "2");
  EXPECT_EQ(Eval("date_diff('day', '2100-02-28', '2100-03-01')"), "1");  // divisible by 100: not leap
  EXPECT_EQ(Eval("date_diff('day', '2023-02-28', '2023-03-01')"), "1");
  EXPECT_EQ(Eval("date_diff('day', '2024-01-01', '2025-01-01')"), "366");
  EXPECT_EQ(Eval("date_diff('day', '2100-01-01', '2101-01-01')"), "365");
  EXPECT_EQ(Eval("date_diff('year', '2024-02-29', '2025-02-28')"), "1");
  EXPECT_EQ(Eval("to_timestamp(epoch_ms('2024-02-29') + 86400000)"), "2024-03-01T00:00:00.000Z");
  EXPECT_EQ(Eval("epoch_ms('2100-02-29')"), "error: epoch_ms: '2100-02-29' is not a valid timestamp: 2100-02 has no day 29");
  EXPECT_EQ(Eval("epoch_ms('2023-02-29T00:00:00Z')"),
            "error: epoch_ms: '2023-02-29T00:00:00Z' is not a valid timestamp: 2023-02 has no day 29");
}

TEST_F(FunctionsTest, YearBoundaries) {
  const std::string last = "'2025-12-31T23:59:59.999Z'";
  const std::string first = "'2026-01-01T00:00:00Z'";
  EXPECT_EQ(Eval("date_diff('millisecond', " + last + ", " + first + ")"), "1");
  EXPECT_EQ(Eval("date_diff('second', " + last + ", " + first + ")"), "1");
  EXPECT_EQ(Eval("date_diff('minute', " + last + ", " + first + ")"), "1");
  EXPECT_EQ(Eval("date_diff('hour', " + last + ", " + first + ")"), "1");
  EXPECT_EQ(Eval("date_diff('day', " + last + ", " + first + ")"), "1");
  EXPECT_EQ(Eval("date_diff('month', " + last + ", " + first + ")"), "1");
  EXPECT_EQ(Eval("date_diff('quarter', " + last + ", " + first + ")"), "1");
  EXPECT_EQ(Eval("date_diff('year', " + last + ", " + first + ")"), "1");
  EXPECT_EQ(Eval("date_diff('year', " + first + ", " + last + ")"), "-1");
  EXPECT_EQ(Eval("date_diff('year', '2026-01-01', '2026-12-31T23:59:59.999Z')"), "0");
  EXPECT_EQ(Eval("date_diff('year', '2026-01-01', '2024-12-31')"), "-2");
  EXPECT_EQ(Eval("date_trunc('year', " + last + ")"), "2025-01-01T00:00:00Z");
  EXPECT_EQ(Eval("to_timestamp(epoch_ms(" + last + ") + 1)"), "2026-01-01T00:00:00.000Z");
}

TEST_F(FunctionsTest, DiffsCountBoundariesNotElapsedTime) {
  EXPECT_EQ(Eval("date_diff('hour', '2026-01-01T00:59:59Z', '2026-01-01T01:00:00Z')"), "1");
  EXPECT_EQ(Eval("date_diff('hour', '2026-01-01T01:00:00Z', '2026-01-01T01:59:59.999Z')"), "0");
  EXPECT_EQ(Eval("date_diff('minute', '2026-01-01T00:00:59.999Z', '2026-01-01T00:01:00Z')"), "1");
  EXPECT_EQ(Eval("date_diff('second', '2026-01-01T00:00:00.999Z', '2026-01-01T00:00:01.000Z')"), "1");
  EXPECT_EQ(Eval("date_diff('day', '2026-01-01T23:59:00Z', '2026-01-02T00:01:00Z')"), "1");
  EXPECT_EQ(Eval("date_diff('day', '2026-01-01T00:00:00Z', '2026-01-01T23:59:59Z')"), "0");
  EXPECT_EQ(Eval("date_diff('hour', '2026-01-02', '2026-01-01')"), "-24");
  EXPECT_EQ(Eval("typeof(date_diff('day', '2026-01-01', '2026-01-02'))"), "integer");
}

TEST_F(FunctionsTest, UtcOffsetsAreNormalisedToUtc) {
  // 00:30 at +01:00 is 23:30 UTC the day before.
  EXPECT_EQ(Eval("date_trunc('day', '2026-03-01T00:30:00+01:00')"), "2026-02-28T00:00:00Z");
  EXPECT_EQ(Eval("date_trunc('month', '2026-03-01T00:30:00+01:00')"), "2026-02-01T00:00:00Z");
  EXPECT_EQ(Eval("to_timestamp('2026-03-01T00:30:00+01:00')"), "2026-02-28T23:30:00.000Z");
  EXPECT_EQ(Eval("epoch_ms('2026-03-01T00:30:00+01:00')"), "1772321400000");
  EXPECT_EQ(Eval("to_timestamp('2025-12-31T20:00:00-05:00')"), "2026-01-01T01:00:00.000Z");
  EXPECT_EQ(Eval("to_timestamp('2026-01-01T05:30:00+0530')"), "2026-01-01T00:00:00.000Z");
  EXPECT_EQ(Eval("to_timestamp('2026-01-01T05:30:00+05:30')"), "2026-01-01T00:00:00.000Z");
  EXPECT_EQ(Eval("to_timestamp('2026-01-01T09:00:00+09')"), "2026-01-01T00:00:00.000Z");
  EXPECT_EQ(Eval("to_timestamp('2026-01-01T00:00:00-00:00')"), "2026-01-01T00:00:00.000Z");
  // The same instant in two zones is zero apart.
  EXPECT_EQ(Eval("date_diff('millisecond', '2026-06-01T12:00:00+02:00', '2026-06-01T10:00:00Z')"), "0");
  // Day boundaries are UTC days, whatever the input's offset.
  EXPECT_EQ(Eval("date_diff('day', '2026-06-01T23:00:00-02:00', '2026-06-02T00:30:00+00:00')"), "0");
}

TEST_F(FunctionsTest, AcceptedTextForms) {
  EXPECT_EQ(Eval("to_timestamp('2026-11-21')"), "2026-11-21T00:00:00.000Z");
  EXPECT_EQ(Eval("to_timestamp('2026-11-21 08:34:19')"), "2026-11-21T08:34:19.000Z");  // space, no offset: UTC
  EXPECT_EQ(Eval("to_timestamp('2026-11-21T08:34:19')"), "2026-11-21T08:34:19.000Z");
  EXPECT_EQ(Eval("to_timestamp('2026-11-21t08:34:19z')"), "2026-11-21T08:34:19.000Z");
  EXPECT_EQ(Eval("to_timestamp('2026-11-21T08:34')"), "2026-11-21T08:34:00.000Z");
  EXPECT_EQ(Eval("to_timestamp('2026-11-21 08:34:19.706+00:00')"), "2026-11-21T08:34:19.706Z");
  EXPECT_EQ(Eval("epoch_ms('2026-11-21T08:34:19.706Z')"), "1795250059706");
  EXPECT_EQ(Eval("epoch_ms('1970-01-01')"), "0");
}

TEST_F(FunctionsTest, FractionalSecondsOfAnyLengthAreTruncatedToMilliseconds) {
  EXPECT_EQ(Eval("epoch_ms('1970-01-01T00:00:01.7Z')"), "1700");
  EXPECT_EQ(Eval("epoch_ms('1970-01-01T00:00:01.70Z')"), "1700");
  EXPECT_EQ(Eval("epoch_ms('1970-01-01T00:00:01.706Z')"), "1706");
  EXPECT_EQ(Eval("epoch_ms('1970-01-01T00:00:01.7069Z')"), "1706");
  EXPECT_EQ(Eval("epoch_ms('1970-01-01T00:00:01.123456789Z')"), "1123");
  EXPECT_EQ(Eval("epoch_ms('1970-01-01T00:00:01.000999+00:00')"), "1000");
  EXPECT_EQ(Eval("epoch_ms('1970-01-01T00:00:01.0')"), "1000");
  EXPECT_EQ(Eval("to_timestamp('2026-11-21T08:34:19.5Z')"), "2026-11-21T08:34:19.500Z");
  EXPECT_EQ(Eval("date_trunc('millisecond', '2026-11-21T08:34:19.123999Z')"), "2026-11-21T08:34:19.123Z");
  EXPECT_EQ(Eval("date_trunc('second', '2026-11-21T08:34:19.999999Z')"), "2026-11-21T08:34:19Z");
}

TEST_F(FunctionsTest, InstantsBefore1970) {
  EXPECT_EQ(Eval("epoch_ms('1969-12-31T23:59:59.999Z')"), "-1");
  EXPECT_EQ(Eval("to_timestamp(-1)"), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(Eval("date_trunc('second', -1)"), "1969-12-31T23:59:59Z");
  EXPECT_EQ(Eval("date_trunc('minute', -1)"), "1969-12-31T23:59:00Z");
  EXPECT_EQ(Eval("date_trunc('day', -1)"), "1969-12-31T00:00:00Z");
  EXPECT_EQ(Eval("date_trunc('month', -1)"), "1969-12-01T00:00:00Z");
  EXPECT_EQ(Eval("date_trunc('week', 0)"), "1969-12-29T00:00:00Z");  // 1970-01-01 was a Thursday
  EXPECT_EQ(Eval("date_diff('second', -1, 0)"), "1");
  EXPECT_EQ(Eval("date_diff('day', -1, 0)"), "1");
  EXPECT_EQ(Eval("date_diff('year', -1, 0)"), "1");
  EXPECT_EQ(Eval("date_diff('second', -1001, -1000)"), "1");
  EXPECT_EQ(Eval("date_diff('second', -1999, -1000)"), "1");
  EXPECT_EQ(Eval("date_diff('second', -2000, -1001)"), "0");
  EXPECT_EQ(Eval("epoch_ms('1969-07-20T20:17:40Z')"), "-14182940000");
  EXPECT_EQ(Eval("date_trunc('week', '1969-07-20T20:17:40Z')"), "1969-07-14T00:00:00Z");  // a Sunday
  EXPECT_EQ(Eval("epoch_ms('1900-01-01')"), "-2208988800000");
  EXPECT_EQ(Eval("to_timestamp(-2208988800000)"), "1900-01-01T00:00:00.000Z");
  EXPECT_EQ(Eval("to_timestamp(-309188369544)"), "1960-03-15T10:20:30.456Z");
  EXPECT_EQ(Eval("date_trunc('quarter', -309188369544)"), "1960-01-01T00:00:00Z");
  EXPECT_EQ(Eval("date_diff('day', '1900-01-01', '2000-01-01')"), "36524");
  EXPECT_EQ(Eval("epoch_ms('0001-01-01')"), "-62135596800000");
}

TEST_F(FunctionsTest, IntegerMillisecondInputs) {
  EXPECT_EQ(Eval("epoch_ms(1795250059706)"), "1795250059706");
  EXPECT_EQ(Eval("epoch_ms(-5)"), "-5");
  EXPECT_EQ(Eval("typeof(epoch_ms('2026-01-01'))"), "integer");
  EXPECT_EQ(Eval("to_timestamp(0)"), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(Eval("to_timestamp(1795250059706)"), "2026-11-21T08:34:19.706Z");
  EXPECT_EQ(Eval("date_trunc('hour', 1795250059706)"), "2026-11-21T08:00:00Z");
  EXPECT_EQ(Eval("date_diff('day', 0, '1970-01-02')"), "1");  // integer and text mix
  EXPECT_EQ(Eval("date_diff('millisecond', 1000, 250)"), "-750");
  // A REAL holding a whole number counts as milliseconds (JSON numbers can arrive as REAL).
  EXPECT_EQ(Eval("to_timestamp(1795250059706.0)"), "2026-11-21T08:34:19.706Z");
  EXPECT_EQ(Eval("epoch_ms(1795250059706.0)"), "1795250059706");
  EXPECT_EQ(Eval("typeof(epoch_ms(1795250059706.0))"), "integer");
  EXPECT_EQ(Eval("to_timestamp(epoch_ms('2026-11-21T08:34:19.706Z'))"), "2026-11-21T08:34:19.706Z");
}

TEST_F(FunctionsTest, SupportedRangeIsYears0000To9999) {
  EXPECT_EQ(Eval("to_timestamp(253402300799999)"), "9999-12-31T23:59:59.999Z");
  EXPECT_EQ(Eval("to_timestamp(-62167219200000)"), "0000-01-01T00:00:00.000Z");
  EXPECT_EQ(Eval("epoch_ms('9999-12-31T23:59:59.999Z')"), "253402300799999");
  EXPECT_EQ(Eval("to_timestamp(253402300800000)"),
            "error: to_timestamp: 253402300800000 ms is outside the supported range (years 0000 to 9999: "
            "-62167219200000 to 253402300799999)");
  EXPECT_EQ(Eval("epoch_ms('9999-12-31T23:00:00-01:00')"),
            "error: epoch_ms: '9999-12-31T23:00:00-01:00' is not a valid timestamp: in UTC it is outside years 0000 "
            "to 9999");
  // 0000-01-01 was a Saturday: its week starts in year -1.
  EXPECT_EQ(Eval("date_trunc('week', '0000-01-01')"),
            "error: date_trunc: the week holding '0000-01-01' starts before 0000-01-01 (supported years are 0000 "
            "to 9999)");
  EXPECT_EQ(Eval("date_trunc('week', -62167219200000)"),
            "error: date_trunc: the week holding -62167219200000 starts before 0000-01-01 (supported years are 0000 "
            "to 9999)");
  EXPECT_EQ(Eval("date_trunc('week', '0000-01-03')"), "0000-01-03T00:00:00Z");  // Monday
  EXPECT_EQ(Eval("date_diff('week', '0000-01-01', '0000-01-03')"), "1");
  EXPECT_EQ(Eval("date_diff('year', '0000-01-01', '9999-12-31')"), "9999");
  // epoch_ms passes integers through without checking them.
  EXPECT_EQ(Eval("epoch_ms(9223372036854775807)"), "9223372036854775807");
}

TEST_F(FunctionsTest, NullInNullOut) {
  EXPECT_EQ(Eval("date_trunc('day', NULL)"), "NULL");
  EXPECT_EQ(Eval("date_trunc(NULL, '2026-01-01')"), "NULL");
  EXPECT_EQ(Eval("date_diff('day', NULL, '2026-01-01')"), "NULL");
  EXPECT_EQ(Eval("date_diff('day', '2026-01-01', NULL)"), "NULL");
  EXPECT_EQ(Eval("date_diff(NULL, '2026-01-01', '2026-01-02')"), "NULL");
  EXPECT_EQ(Eval("epoch_ms(NULL)"), "NULL");
  EXPECT_EQ(Eval("to_timestamp(NULL)"), "NULL");
  EXPECT_EQ(Eval("typeof(to_timestamp(NULL))"), "null");
}

TEST_F(FunctionsTest, ErrorsNameTheFunctionAndTheValue) {
  EXPECT_EQ(Eval("date_trunc('fortnight', '2026-01-01')"),
            "error: date_trunc: 'fortnight' is not a unit (use millisecond, second, minute, hour, day, week, month, "
            "quarter, year)");
  EXPECT_EQ(Eval("date_diff('decade', '2026-01-01', '2036-01-01')"),
            "error: date_diff: 'decade' is not a unit (use millisecond, second, minute, hour, day, week, month, "
            "quarter, year)");
  // A bad unit is reported even when the timestamp is NULL, so typos show early.
  EXPECT_EQ(Eval("date_trunc('hr', NULL)"),
            "error: date_trunc: 'hr' is not a unit (use millisecond, second, minute, hour, day, week, month, "
            "quarter, year)");
  EXPECT_EQ(Eval("epoch_ms('yesterday')"),
            "error: epoch_ms: 'yesterday' is not an ISO-8601 timestamp (expected YYYY-MM-DD, optionally followed by "
            "THH:MM[:SS[.fff]] and Z, +HH:MM or -HH:MM; for example 2026-11-21T08:34:19.706Z)");
  EXPECT_EQ(Eval("to_timestamp('1795250059706')"),
            "error: to_timestamp: '1795250059706' is not an ISO-8601 timestamp (epoch milliseconds must be an "
            "INTEGER, not TEXT: use CAST(... AS INTEGER))");
  EXPECT_EQ(Eval("date_diff('day', '2026-01-01', '2026-13-01')"),
            "error: date_diff: '2026-13-01' is not a valid timestamp: month 13 does not exist");
  EXPECT_EQ(Eval("epoch_ms('2026-04-31')"), "error: epoch_ms: '2026-04-31' is not a valid timestamp: 2026-04 has no day 31");
  EXPECT_EQ(Eval("epoch_ms('2026-01-01T24:00:00Z')"),
            "error: epoch_ms: '2026-01-01T24:00:00Z' is not a valid timestamp: hour 24 does not exist (use 00 to 23)");
  EXPECT_EQ(Eval("epoch_ms('2026-01-01T10:60:00Z')"),
            "error: epoch_ms: '2026-01-01T10:60:00Z' is not a valid timestamp: minute 60 does not exist (use 00 to 59)");
  EXPECT_EQ(Eval("epoch_ms('2016-12-31T23:59:60Z')"),
            "error: epoch_ms: '2016-12-31T23:59:60Z' is not a valid timestamp: second 60 does not exist (leap seconds "
            "are not supported)");
  EXPECT_EQ(Eval("epoch_ms('2026-01-01T10:00:00+24:00')"),
            "error: epoch_ms: '2026-01-01T10:00:00+24:00' is not a valid timestamp: UTC offset +24:00 is not between "
            "-23:59 and +23:59");
  EXPECT_EQ(Eval("to_timestamp(1.5)"), "error: to_timestamp: 1.5 is not a whole number of epoch milliseconds");
  EXPECT_EQ(Eval("to_timestamp(x'00')"),
            "error: to_timestamp: a BLOB is not a timestamp (use ISO-8601 text or INTEGER epoch milliseconds)");
  EXPECT_EQ(Eval("date_trunc('day', 1e300)"),
            "error: date_trunc: 1.0e+300 ms is outside the supported range (years 0000 to 9999: -62167219200000 to "
            "253402300799999)");
  EXPECT_EQ(Eval("epoch_ms(-1e19)"),
            "error: epoch_ms: -1.0e+19 ms is outside the supported range (years 0000 to 9999: -62167219200000 to "
            "253402300799999)");
  // Malformed shapes are refused rather than guessed at.
  for (const char* bad : {"2026-1-01", "2026-01-01T", "2026-01-01T10", "2026-01-01T10:00:00.", "2026-01-01T10:00:00Zjunk",
                          "2026-01-01T10:00:00+1", "2026-01-01T10:00:00 +01:00", " 2026-01-01", "2026-01-01Z", "",
                          "26-01-01"}) {
    EXPECT_NE(Eval("epoch_ms('" + std::string(bad) + "')").find("is not an ISO-8601 timestamp"), std::string::npos)
        << bad;
  }
  // Long values are shortened in messages.
  std::string long_value(100, 'x');
  std::string shortened = "error: epoch_ms: '" + std::string(57, 'x') + "...' is not an ISO-8601 timestamp";
  EXPECT_EQ(Eval("epoch_ms('" + long_value + "')").substr(0, shortened.size()), shortened);
  EXPECT_EQ(Eval("date_trunc('day')"), "error: wrong number of arguments to function date_trunc()");
}

TEST_F(FunctionsTest, UsableInIndexesAndGeneratedColumnsWithUntrustedSchema) {
  // Indexes and generated columns need deterministic functions; with
  // trusted_schema off (as Database::Open sets it) they must be innocuous too.
  ASSERT_EQ(sqlite3_db_config(db_, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, nullptr), SQLITE_OK);
  const char* sql =
      "create table events(ts text, day text generated always as (date_trunc('day', ts)));"
      "create index events_hour on events(date_trunc('hour', ts));"
      "insert into events(ts) values ('2026-11-21T08:34:19.706Z'), ('2026-11-21T23:59:59+01:00');";
  char* error = nullptr;
  ASSERT_EQ(sqlite3_exec(db_, sql, nullptr, nullptr, &error), SQLITE_OK) << (error ? error : "");
  EXPECT_EQ(Eval("group_concat(day, ',') from (select day from events order by rowid)"),
            "2026-11-21T00:00:00Z,2026-11-21T00:00:00Z");
  EXPECT_EQ(Eval("count(*) from events where date_trunc('hour', ts) = '2026-11-21T22:00:00Z'"), "1");
}

TEST_F(FunctionsTest, RegisteringTwiceIsHarmless) {
  Status st = RegisterFunctions(db_);
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(Eval("date_trunc('day', '2026-11-21T08:34:19Z')"), "2026-11-21T00:00:00Z");
}

}  // namespace
}  // namespace sluice
