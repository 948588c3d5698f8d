// `sluice test`: how an expected cell is compared with the table's value
// (integers exactly, text as text, REAL to the decimals written or within a
// stated tolerance), and files in expected/ that would not be read.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "test_support.h"

namespace sluice {
namespace {

using testing::Contains;
using testing::PipelineFiles;
using testing::RunSluice;
using testing::TempDir;
using testing::WriteFile;
using testing::WritePipeline;

// Copies each message into seen(id, ts, big, amount, code), keeping each
// value's type: ts and big INTEGER, amount REAL, code TEXT.
PipelineFiles CopyPipeline() {
  PipelineFiles files;
  files.conf = testing::BasicConf("127.0.0.1:1", "events",
                                  "id = TEXT\nts = INTEGER\nbig = INTEGER\namount = REAL\ncode = TEXT");
  files.schema = "CREATE TABLE IF NOT EXISTS seen(id TEXT, ts INTEGER, big INTEGER, amount REAL, code TEXT);\n";
  files.steps["10_copy.sql"] = "INSERT INTO seen SELECT id, ts, big, amount, code FROM batch;\n";
  return files;
}

class FixturesTest : public ::testing::Test {
 protected:
  void SetUp() override { WritePipeline(dir_.path(), CopyPipeline()); }

  // One case: `input` lines and expected/seen.csv.
  void Case(const std::string& name, const std::string& input, const std::string& expected_csv) {
    WriteFile(dir_ / ("tests/" + name + "/input.jsonl"), input);
    WriteFile(dir_ / ("tests/" + name + "/expected/seen.csv"), expected_csv);
  }

  // Runs `sluice test` and returns "PASS" or "FAIL" for each case.
  std::map<std::string, std::string> Run() {
    int code = RunSluice({"test", dir_.path()}, &output_);
    std::map<std::string, std::string> outcome;
    size_t start = 0;
    bool any_failed = false;
    while (start < output_.size()) {
      size_t end = output_.find('\n', start);
      std::string line = output_.substr(start, end == std::string::npos ? std::string::npos : end - start);
      if (line.rfind("PASS ", 0) == 0) outcome[line.substr(5)] = "PASS";
      if (line.rfind("FAIL ", 0) == 0) outcome[line.substr(5)] = "FAIL", any_failed = true;
      if (end == std::string::npos) break;
      start = end + 1;
    }
    EXPECT_EQ(code, any_failed ? 1 : 0) << output_;
    return outcome;
  }

  TempDir dir_;
  std::string output_;
};

TEST_F(FixturesTest, IntegersCompareExactly) {
  const std::string input = "{\"id\":\"a\",\"ts\":1795250059706,\"big\":9007199254740993}\n";
  Case("exact", input, "id,ts,big\na,1795250059706,9007199254740993\n");
  Case("same_number_written_otherwise", input, "id,ts,big\na,+1795250059706,9007199254740993.0\n");
  Case("epoch_ms_off_by_1700", input, "id,ts\na,1795250058006\n");
  Case("id_off_by_one", input, "id,big\na,9007199254740992\n");
  auto outcome = Run();
  EXPECT_EQ(outcome["exact"], "PASS") << output_;
  EXPECT_EQ(outcome["same_number_written_otherwise"], "PASS") << output_;
  EXPECT_EQ(outcome["epoch_ms_off_by_1700"], "FAIL") << output_;
  EXPECT_EQ(outcome["id_off_by_one"], "FAIL") << output_;
  EXPECT_TRUE(Contains(output_, "- a | 1795250058006\n    + a | 1795250059706")) << output_;
}

TEST_F(FixturesTest, RealsCompareToTheDecimalsWritten) {
  const std::string input =
      "{\"id\":\"a\",\"amount\":10000000.01}\n"
      "{\"id\":\"b\",\"amount\":12.6000000001}\n"
      "{\"id\":\"c\",\"amount\":0.30000000000000004}\n"
      "{\"id\":\"d\",\"amount\":42}\n";
  Case("as_shown", input, "id,amount\na,10000000.01\nb,12.6\nc,0.3\nd,42\n");
  Case("more_zeros_written", input, "id,amount\na,10000000.010\nb,12.60\nc,0.30\nd,42.00\n");
  Case("fewer_decimals_written", input, "id,amount\na,10000000.0\nb,13\nc,0.3\nd,42\n");
  Case("off_by_a_cent", input, "id,amount\na,10000000.00\nb,12.6\nc,0.3\nd,42\n");
  Case("whole_number_written", input, "id,amount\na,10000000\nb,12.6\nc,0.3\nd,42\n");
  Case("all_digits_written", input, "id,amount\na,10000000.01\nb,12.6000000001\nc,0.30000000000000004\nd,42\n");
  auto outcome = Run();
  EXPECT_EQ(outcome["as_shown"], "PASS") << output_;
  EXPECT_EQ(outcome["more_zeros_written"], "PASS") << output_;
  EXPECT_EQ(outcome["all_digits_written"], "PASS") << output_;
  // 10000000.01 to one decimal is 10000000.0; 12.6000000001 is not 13.
  EXPECT_EQ(outcome["fewer_decimals_written"], "FAIL") << output_;
  EXPECT_TRUE(Contains(output_, "- b | 13\n")) << output_;
  EXPECT_EQ(outcome["off_by_a_cent"], "FAIL") << output_;
  // A whole number states the value, not a precision of one unit.
  EXPECT_EQ(outcome["whole_number_written"], "FAIL") << output_;
}

TEST_F(FixturesTest, TextComparesAsText) {
  const std::string input =
      "{\"id\":\"a\",\"code\":\"01234\"}\n"
      "{\"id\":\"b\",\"code\":\" 5\"}\n"
      "{\"id\":\"c\",\"code\":\"7\"}\n";
  Case("as_written", input, "id,code\na,01234\nb, 5\nc,7\n");
  Case("leading_zero_dropped", input, "id,code\na,1234\nb, 5\nc,7\n");
  Case("space_dropped", input, "id,code\na,01234\nb,5\nc,7\n");
  Case("number_written_otherwise", input, "id,code\na,01234\nb, 5\nc,7.0\n");
  auto outcome = Run();
  EXPECT_EQ(outcome["as_written"], "PASS") << output_;
  EXPECT_EQ(outcome["leading_zero_dropped"], "FAIL") << output_;
  EXPECT_EQ(outcome["space_dropped"], "FAIL") << output_;
  EXPECT_EQ(outcome["number_written_otherwise"], "FAIL") << output_;
  // Text with a leading space is shown quoted, so that it can be told from 5.
  EXPECT_TRUE(Contains(output_, "+ b | ' 5'")) << output_;
}

TEST_F(FixturesTest, HeaderStatesAToleranceForAColumn) {
  const std::string input = "{\"id\":\"a\",\"ts\":1795250059706,\"amount\":10.004}\n";
  Case("within", input, "id,ts~2000,amount~0.005\na,1795250057906,10\n");
  Case("outside", input, "id,ts~1000,amount~0.005\na,1795250057906,10\n");
  Case("zero_is_exact", input, "id,amount~0\na,10.004\n");
  Case("not_a_number", input, "id,amount~a lot\na,10\n");
  auto outcome = Run();
  EXPECT_EQ(outcome["within"], "PASS") << output_;
  EXPECT_EQ(outcome["outside"], "FAIL") << output_;
  EXPECT_EQ(outcome["zero_is_exact"], "PASS") << output_;
  EXPECT_EQ(outcome["not_a_number"], "FAIL") << output_;
  EXPECT_TRUE(Contains(output_, "expected/seen.csv: header cell 'amount~a lot': write column~TOLERANCE")) << output_;
}

// With a tolerance, one expected row may match several rows: the outcome must
// not depend on the order of the rows.
TEST_F(FixturesTest, RowsArePairedWhateverTheirOrder) {
  const std::string input = "{\"id\":\"a\",\"amount\":10.5}\n{\"id\":\"a\",\"amount\":11.6}\n";
  Case("paired", input, "id,amount~1\na,11\na,10\n");
  auto outcome = Run();
  EXPECT_EQ(outcome["paired"], "PASS") << output_;
}

TEST_F(FixturesTest, FilesInExpectedThatWouldNotBeReadFailTheCase) {
  const std::string input = "{\"id\":\"a\",\"code\":\"x\"}\n";
  Case("upper_case_extension", input, "id,code\na,x\n");
  WriteFile(dir_ / "tests/upper_case_extension/expected/other.CSV", "id\nnot-there\n");
  Case("stray_file", input, "id,code\na,x\n");
  WriteFile(dir_ / "tests/stray_file/expected/seen.csv~", "id\nold\n");
  Case("only_csv", input, "id,code\na,x\n");
  auto outcome = Run();
  EXPECT_EQ(outcome["upper_case_extension"], "FAIL") << output_;
  EXPECT_TRUE(Contains(output_, "expected/other.CSV: not read")) << output_;
  EXPECT_EQ(outcome["stray_file"], "FAIL") << output_;
  EXPECT_TRUE(Contains(output_, "expected/seen.csv~: not read")) << output_;
  EXPECT_EQ(outcome["only_csv"], "PASS") << output_;
}

TEST_F(FixturesTest, NullMatchesOnlyAnEmptyCell) {
  const std::string input = "{\"id\":\"a\",\"code\":\"\"}\n{\"id\":\"b\"}\n";
  Case("right", input, "id,code,amount\na,\"\",\nb,,\n");
  Case("empty_string_is_not_null", input, "id,code\na,\nb,\n");
  Case("zero_is_not_null", input, "id,amount\na,0\nb,\n");
  auto outcome = Run();
  EXPECT_EQ(outcome["right"], "PASS") << output_;
  EXPECT_EQ(outcome["empty_string_is_not_null"], "FAIL") << output_;
  EXPECT_TRUE(Contains(output_, "+ a | ''")) << output_;
  EXPECT_EQ(outcome["zero_is_not_null"], "FAIL") << output_;
}

}  // namespace
}  // namespace sluice
