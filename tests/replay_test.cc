// File replays and the tools around them: `run --from-file` never skips or
// doubles silently (the input is identified by more than its name, stdin
// resumes every partition and re-reads a failed batch), `reset` covers file
// inputs and refuses times before 1970, envelope fields of the wrong type are
// converted or quarantined, a message is quarantined once however often it is
// read, and a retained staging table follows a column's new type.
#include <gtest/gtest.h>

#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "connectors/file_source.h"
#include "test_support.h"

namespace sluice {
namespace {

using testing::BasicConf;
using testing::Contains;
using testing::Exec;
using testing::IdAmountValues;
using testing::PipelineFiles;
using testing::ProduceValues;
using testing::Query;
using testing::QueryOne;
using testing::RunShell;
using testing::RunSluice;
using testing::ShellQuote;
using testing::TempDir;
using testing::WriteFile;
using testing::WritePipeline;

using Rows = std::vector<std::string>;

// A pipeline on topic "events" (never contacted by --from-file runs) that
// appends every staged row to seen(id, part, off).
PipelineFiles SeenPipeline(const std::string& brokers = "127.0.0.1:1", const std::string& extra = "") {
  PipelineFiles files;
  files.conf = BasicConf(brokers, "events", "id = TEXT\namount = REAL", extra);
  files.schema = "CREATE TABLE IF NOT EXISTS seen(id TEXT, part INTEGER, off INTEGER);\n";
  files.steps["10_seen.sql"] = "INSERT INTO seen SELECT id, _kafka_partition, _kafka_offset FROM batch;\n";
  return files;
}

std::string Lines(const std::vector<std::string>& ids) {
  std::string text;
  for (const auto& id : ids) text += R"({"id":")" + id + "\"}\n";
  return text;
}

// `run DIR --from-file INPUT -q EXTRA...`
std::vector<std::string> FromFileArgs(const TempDir& dir, const std::string& input,
                                      const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"run", dir.path(), "--from-file", input, "-q"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

int RunFile(const TempDir& dir, const std::string& file, std::string* output, const std::vector<std::string>& extra = {}) {
  return RunSluice(FromFileArgs(dir, file, extra), output);
}

// `cat FILE | sluice run DIR --from-file - -q EXTRA...`
int RunPiped(const TempDir& dir, const std::string& file, std::string* output,
             const std::vector<std::string>& extra = {}) {
  return testing::RunSluicePipedFrom(file, FromFileArgs(dir, "-", extra), output);
}

std::string ignored;  // output of set-up commands

std::string SeenIds(const TempDir& dir) {
  return QueryOne(dir / "pipeline.db", "SELECT group_concat(id, ',') FROM (SELECT id FROM seen ORDER BY rowid)");
}

// --- file identity ---------------------------------------------------------

TEST(FileIdentity, DifferentFileWithTheSameNameIsRefused) {
  TempDir dir;
  WritePipeline(dir.path(), SeenPipeline());
  std::string a = dir / "a", b = dir / "b";
  ASSERT_EQ(RunShell("mkdir -p " + ShellQuote(a) + " " + ShellQuote(b), &ignored), 0);
  WriteFile(a + "/orders.jsonl", Lines({"a1", "a2"}));
  WriteFile(b + "/orders.jsonl", Lines({"b1", "b2", "b3"}));
  std::string output;
  ASSERT_EQ(RunFile(dir, a + "/orders.jsonl", &output), 0) << output;
  // Before: exit 0 and only b3 read (b1 and b2 skipped as if already read).
  EXPECT_EQ(RunFile(dir, b + "/orders.jsonl", &output), 1) << output;
  EXPECT_TRUE(Contains(output, "--restart")) << output;
  EXPECT_TRUE(Contains(output, "differ from those read before")) << output;
  EXPECT_EQ(SeenIds(dir), "a1,a2");
  // --restart forgets the position: b is read from its first line.
  ASSERT_EQ(RunFile(dir, b + "/orders.jsonl", &output, {"--restart"}), 0) << output;
  EXPECT_EQ(SeenIds(dir), "a1,a2,b1,b2,b3");
  // Appending to the file read resumes after its last line.
  WriteFile(b + "/orders.jsonl", Lines({"b1", "b2", "b3", "b4"}));
  ASSERT_EQ(RunFile(dir, b + "/orders.jsonl", &output), 0) << output;
  EXPECT_EQ(SeenIds(dir), "a1,a2,b1,b2,b3,b4");
}

// A file still being written: its last line has no newline yet. It is left
// for the next run, which reads it whole once it is complete (it used to be
// read half, quarantined, and the completed file then refused).
TEST(FileIdentity, LastLineWithoutNewlineWaitsForTheNextRun) {
  TempDir dir;
  WritePipeline(dir.path(), SeenPipeline());
  std::string file = dir / "growing.jsonl";
  WriteFile(file, Lines({"g1", "g2"}) + "{\"id\": \"g3\", \"amou");
  std::string output;
  ASSERT_EQ(RunFile(dir, file, &output), 0) << output;
  EXPECT_EQ(SeenIds(dir), "g1,g2");
  EXPECT_EQ(QueryOne(dir / "pipeline.db", "SELECT count(*) FROM _sluice_quarantine"), "0");
  WriteFile(file, Lines({"g1", "g2"}) + "{\"id\": \"g3\", \"amount\": 3}\n" + Lines({"g4"}));
  ASSERT_EQ(RunFile(dir, file, &output), 0) << output;
  EXPECT_EQ(SeenIds(dir), "g1,g2,g3,g4");
}

TEST(FileIdentity, TruncatedFileIsRefused) {
  TempDir dir;
  WritePipeline(dir.path(), SeenPipeline());
  std::string file = dir / "archive.jsonl";
  WriteFile(file, Lines({"x1", "x2", "x3"}));
  std::string output;
  ASSERT_EQ(RunFile(dir, file, &output), 0) << output;
  WriteFile(file, Lines({"y1"}));
  // Before: exit 0, nothing read.
  EXPECT_EQ(RunFile(dir, file, &output), 1) << output;
  EXPECT_TRUE(Contains(output, "has only 1 line")) << output;
  EXPECT_TRUE(Contains(output, "--restart")) << output;
  EXPECT_EQ(SeenIds(dir), "x1,x2,x3");
}

TEST(FileIdentity, LineInsertedAtTheTopIsRefused) {
  TempDir dir;
  WritePipeline(dir.path(), SeenPipeline());
  std::string file = dir / "archive.jsonl";
  WriteFile(file, Lines({"x1", "x2"}));
  std::string output;
  ASSERT_EQ(RunFile(dir, file, &output), 0) << output;
  WriteFile(file, Lines({"x0", "x1", "x2"}));
  // Before: exit 0, x2 read twice and x0 never.
  EXPECT_EQ(RunFile(dir, file, &output), 1) << output;
  EXPECT_EQ(SeenIds(dir), "x1,x2");
}

TEST(FileIdentity, PositionWithoutIdentityIsRefused) {
  // A position stored by an earlier version (or moved by hand) cannot be checked.
  TempDir dir;
  WritePipeline(dir.path(), SeenPipeline());
  std::string file = dir / "archive.jsonl";
  WriteFile(file, Lines({"x1", "x2", "x3"}));
  std::string output;
  ASSERT_EQ(RunFile(dir, file, &output), 0) << output;
  ASSERT_EQ(Exec(dir / "pipeline.db", "UPDATE _sluice_offsets SET next_offset = 3 WHERE topic = 'archive.jsonl'"), "");
  EXPECT_EQ(RunFile(dir, file, &output), 1) << output;
  EXPECT_TRUE(Contains(output, "cannot be checked")) << output;
  EXPECT_EQ(SeenIds(dir), "x1,x2,x3");
}

TEST(FileIdentity, FileNamedLikeAKafkaTopicIsRefused) {
  TempDir dir;
  WritePipeline(dir.path(), SeenPipeline());
  std::string output;
  WriteFile(dir / "other.jsonl", Lines({"o1"}));
  ASSERT_EQ(RunFile(dir, dir / "other.jsonl", &output), 0) << output;
  // The pipeline read events[0] up to offset 2 from Kafka.
  ASSERT_EQ(Exec(dir / "pipeline.db",
                 "INSERT INTO _sluice_offsets(pipeline, topic, \"partition\", next_offset, updated_at) "
                 "VALUES ('test-group', 'events', 0, 2, 'x')"),
            "");
  std::string archive = dir / "events";
  WriteFile(archive, Lines({"e1", "e2", "e3"}));
  // Before: the Kafka offset was taken as the file's, e1 skipped, exit 0.
  EXPECT_EQ(RunFile(dir, archive, &output), 1) << output;
  EXPECT_TRUE(Contains(output, "is a topic of this pipeline")) << output;
  EXPECT_EQ(SeenIds(dir), "o1");
  EXPECT_EQ(QueryOne(dir / "pipeline.db", "SELECT next_offset FROM _sluice_offsets WHERE topic = 'events'"), "2");
}

// --- stdin -----------------------------------------------------------------

TEST(Stdin, ResumesEveryEnvelopePartition) {
  TempDir dir;
  WritePipeline(dir.path(), SeenPipeline());
  std::string file = dir / "archive.jsonl";
  WriteFile(file, "{\"id\":\"a\",\"_kafka_partition\":0}\n{\"id\":\"b\",\"_kafka_partition\":1}\n");
  std::string output;
  ASSERT_EQ(RunPiped(dir, file, &output), 0) << output;
  WriteFile(file, "{\"id\":\"a\",\"_kafka_partition\":0}\n{\"id\":\"b\",\"_kafka_partition\":1}\n"
                  "{\"id\":\"c\",\"_kafka_partition\":1}\n");
  // Before: c lost (a conflict on stdin[1], then the stream drained), exit 0.
  ASSERT_EQ(RunPiped(dir, file, &output), 0) << output;
  EXPECT_EQ(Query(dir / "pipeline.db", "SELECT id, part, off FROM seen ORDER BY rowid"),
            (Rows{"a|0|1", "b|1|2", "c|1|3"}));
}

TEST(Stdin, RepipedArchiveGetsPastAFixedFailure) {
  TempDir dir;
  PipelineFiles files = SeenPipeline();
  files.schema = "CREATE TABLE IF NOT EXISTS seen(id TEXT CHECK (id <> 'boom'), part INTEGER, off INTEGER);\n";
  WritePipeline(dir.path(), files);
  std::string file = dir / "archive.jsonl";
  WriteFile(file, "{\"id\":\"a\",\"_kafka_partition\":0}\n{\"id\":\"b\",\"_kafka_partition\":1}\n"
                  "{\"id\":\"boom\",\"_kafka_partition\":1}\n{\"id\":\"c\",\"_kafka_partition\":0}\n");
  std::string output;
  EXPECT_EQ(RunPiped(dir, file, &output, {"--max-messages", "2"}), 1) << output;
  EXPECT_EQ(RunPiped(dir, file, &output, {"--max-messages", "2"}), 1) << output;
  // The step is fixed; the same archive piped again goes past the failure.
  files.steps["10_seen.sql"] = "INSERT INTO seen SELECT id, _kafka_partition, _kafka_offset FROM batch WHERE id <> 'boom';\n";
  WritePipeline(dir.path(), files);
  ASSERT_EQ(RunPiped(dir, file, &output, {"--max-messages", "2"}), 0) << output;
  EXPECT_FALSE(Contains(output, "another process")) << output;
  EXPECT_EQ(Query(dir / "pipeline.db", "SELECT id, part, off FROM seen ORDER BY rowid"),
            (Rows{"a|0|1", "b|1|2", "c|0|4"}));
  EXPECT_EQ(Query(dir / "pipeline.db", "SELECT topic, \"partition\", next_offset FROM _sluice_offsets ORDER BY 2"),
            (Rows{"stdin|0|5", "stdin|1|4"}));
}

TEST(Stdin, RewindReReadsTheBatchInFlight) {
  // A failed batch is fetched again in the same process (--every retrying a
  // transient failure): stdin cannot seek, so its lines are kept until committed.
  std::istringstream in(Lines({"s1", "s2", "s3"}));
  std::streambuf* saved = std::cin.rdbuf(in.rdbuf());
  FileSourceOptions options;
  options.path = "-";
  FileSource source(options);
  Status opened = source.Open(nullptr);
  std::vector<Message> first, second;
  Status fetched = opened.ok() ? source.Fetch(2, std::chrono::milliseconds(0), &first) : opened;
  Status rewound = fetched.ok() ? source.Rewind({{{"stdin", 0}, 1}}) : fetched;
  Status again = rewound.ok() ? source.Fetch(3, std::chrono::milliseconds(0), &second) : rewound;
  std::cin.rdbuf(saved);
  ASSERT_TRUE(opened.ok()) << opened.message();
  ASSERT_TRUE(fetched.ok()) << fetched.message();
  ASSERT_TRUE(rewound.ok()) << rewound.message();  // before: "cannot re-read stdin"
  ASSERT_TRUE(again.ok()) << again.message();
  ASSERT_EQ(second.size(), 3u);
  EXPECT_EQ(second[0].offset, 1);
  EXPECT_EQ(*second[0].value, "{\"id\":\"s1\"}");
  EXPECT_EQ(second[2].offset, 3);
}

// --- reset and file inputs ---------------------------------------------------

TEST(ResetFileInputs, RebuildFromAnArchiveReadsTheArchiveAgain) {
  auto broker = testing::StartBroker("events", 1);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  WritePipeline(dir.path(), SeenPipeline(broker->bootstrap()));
  ProduceValues(broker->bootstrap(), "events", IdAmountValues("k", 0, 2));
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "-q"}, &output), 0) << output;
  std::string archive = dir / "archive-2026-10.jsonl";
  WriteFile(archive, Lines({"old1", "old2"}));
  ASSERT_EQ(RunFile(dir, archive, &output), 0) << output;
  // The cookbook's rebuild: reset to earliest emptying the table, then the archive, then Kafka.
  ASSERT_EQ(RunSluice({"reset", dir.path(), "--to", "earliest", "--truncate", "seen", "--yes"}, &output), 0) << output;
  EXPECT_TRUE(Contains(output, "archive-2026-10.jsonl[0]")) << output;
  EXPECT_EQ(QueryOne(dir / "pipeline.db", "SELECT count(*) FROM _sluice_offsets WHERE topic LIKE 'archive%'"), "0");
  ASSERT_EQ(RunFile(dir, archive, &output), 0) << output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "-q"}, &output), 0) << output;
  // Before: the archive's offset survived the reset and its lines were dropped.
  EXPECT_EQ(SeenIds(dir), "old1,old2,k0,k1");
}

TEST(ResetFileInputs, InputForgetsOneInputWithoutABroker) {
  TempDir dir;
  WritePipeline(dir.path(), SeenPipeline());
  std::string archive = dir / "archive.jsonl";
  WriteFile(archive, Lines({"x1", "x2"}));
  std::string output;
  ASSERT_EQ(RunFile(dir, archive, &output), 0) << output;
  // Moving a file input as if it were a partition is refused with the way to do it.
  EXPECT_EQ(RunSluice({"reset", dir.path(), "--topic", "archive.jsonl", "--partition", "0", "--offset", "1", "--yes"},
                      &output),
            2);
  EXPECT_TRUE(Contains(output, "--input archive.jsonl")) << output;
  ASSERT_EQ(RunSluice({"reset", dir.path(), "--input", "archive.jsonl", "--truncate", "seen", "--yes"}, &output), 0)
      << output;
  ASSERT_EQ(RunFile(dir, archive, &output), 0) << output;
  EXPECT_EQ(SeenIds(dir), "x1,x2");
  EXPECT_EQ(QueryOne(dir / "pipeline.db", "SELECT status FROM _sluice_runs WHERE run_id = (SELECT max(run_id) - 1 FROM _sluice_runs)"),
            "reset");
}

TEST(ResetTime, RefusesTimesBefore1970) {
  auto broker = testing::StartBroker("events", 1);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  WritePipeline(dir.path(), SeenPipeline(broker->bootstrap()));
  ProduceValues(broker->bootstrap(), "events", IdAmountValues("k", 0, 3));
  std::string output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "-q"}, &output), 0) << output;
  for (const std::string to : {"1969-12-31T23:59:59.999Z", "-1", "-2"}) {
    // Before: -1 and -2 went to the broker as its latest/earliest markers.
    EXPECT_EQ(RunSluice({"reset", dir.path(), "--to", to, "--dry-run"}, &output), 2) << to << ": " << output;
    EXPECT_TRUE(Contains(output, "before 1970")) << to << ": " << output;
  }
}

// --- envelope fields ----------------------------------------------------------

TEST(Envelope, UnambiguousValuesAreConverted) {
  Message m;
  FileSource::ParseLine(R"({"id":"k","_kafka_key":42})", 1, "f", 0, &m);
  ASSERT_TRUE(m.key.has_value());  // before: NULL
  EXPECT_EQ(*m.key, "42");
  EXPECT_EQ(*m.value, R"({"id":"k"})");
  FileSource::ParseLine(R"({"id":"t","_kafka_timestamp":1795250059706.0})", 2, "f", 0, &m);
  EXPECT_EQ(m.timestamp, 1795250059706);  // before: the default
  FileSource::ParseLine(R"({"id":"t","_kafka_timestamp":"2026-11-21T08:00:00.5+01:00"})", 3, "f", 0, &m);
  EXPECT_EQ(m.timestamp, 1795244400500);
  FileSource::ParseLine(R"({"id":"t","_kafka_timestamp":"2026-11-21T07:00:00Z"})", 4, "f", 0, &m);
  EXPECT_EQ(m.timestamp, 1795244400000);
  FileSource::ParseLine(R"({"id":"p","_kafka_partition":3.0})", 5, "f", 0, &m);
  EXPECT_EQ(m.partition, 3);
}

TEST(Envelope, WrongTypesAreQuarantinedWithTheReason) {
  TempDir dir;
  WritePipeline(dir.path(), SeenPipeline());
  std::string file = dir / "archive.jsonl";
  WriteFile(file,
            "{\"id\":\"ok\",\"_kafka_key\":42,\"_kafka_timestamp\":1795250059706.0,\"_kafka_partition\":1}\n"
            "{\"id\":\"p1\",\"_kafka_partition\":\"1\"}\n"
            "{\"id\":\"p2\",\"_kafka_partition\":1.5}\n"
            "{\"id\":\"p3\",\"_kafka_partition\":2147483648}\n"
            "{\"id\":\"p4\",\"_kafka_partition\":-1}\n"
            "{\"id\":\"t1\",\"_kafka_timestamp\":\"2026-11-21 08:00\"}\n"
            "{\"id\":\"t2\",\"_kafka_timestamp\":\"2026-02-30T00:00:00Z\"}\n"
            "{\"id\":\"t3\",\"_kafka_timestamp\":1.5}\n"
            "{\"id\":\"k1\",\"_kafka_key\":{\"a\":1}}\n");
  std::string output;
  ASSERT_EQ(RunFile(dir, file, &output), 0) << output;
  std::string db = dir / "pipeline.db";
  EXPECT_EQ(Query(db, "SELECT id, part, off FROM seen"), (Rows{"ok|1|1"}));
  EXPECT_EQ(Query(db, "SELECT _kafka_key, _kafka_timestamp FROM _sluice_staging WHERE id = 'ok'"),
            (Rows{"42|1795250059706"}));
  Rows quarantined = Query(db, "SELECT \"offset\" || ' ' || error FROM _sluice_quarantine ORDER BY \"offset\"");
  ASSERT_EQ(quarantined.size(), 8u) << ::testing::PrintToString(quarantined);
  EXPECT_TRUE(Contains(quarantined[0], "2 envelope field _kafka_partition is \"1\"")) << quarantined[0];
  EXPECT_TRUE(Contains(quarantined[3], "5 envelope field _kafka_partition is -1")) << quarantined[3];
  EXPECT_TRUE(Contains(quarantined[4], "_kafka_timestamp")) << quarantined[4];
  EXPECT_TRUE(Contains(quarantined[7], "_kafka_key")) << quarantined[7];
  // The quarantined value is the line as written.
  EXPECT_EQ(QueryOne(db, "SELECT value FROM _sluice_quarantine WHERE \"offset\" = 2"),
            "{\"id\":\"p1\",\"_kafka_partition\":\"1\"}");
}

// --- quarantine --------------------------------------------------------------

TEST(QuarantineOnce, ResetAndRerunDoNotCopyAndReplayStagesOnce) {
  auto broker = testing::StartBroker("events", 1);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  WritePipeline(dir.path(), SeenPipeline(broker->bootstrap()));
  ProduceValues(broker->bootstrap(), "events", {R"({"id":"good","amount":1})", R"({"id":"bad","amount":"abc"})"});
  std::string output;
  std::string db = dir / "pipeline.db";
  ASSERT_EQ(RunSluice({"run", dir.path(), "-q"}, &output), 0) << output;
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(RunSluice({"reset", dir.path(), "--to", "earliest", "--truncate", "seen", "--yes"}, &output), 0)
        << output;
    ASSERT_EQ(RunSluice({"run", dir.path(), "-q"}, &output), 0) << output;
  }
  // Before: three copies.
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM _sluice_quarantine"), "1");
  // Declared as TEXT, the message passes: replay stages it once.
  PipelineFiles files = SeenPipeline(broker->bootstrap());
  files.conf = BasicConf(broker->bootstrap(), "events", "id = TEXT\namount = TEXT");
  WritePipeline(dir.path(), files);
  ASSERT_EQ(RunSluice({"quarantine", dir.path(), "replay"}, &output), 0) << output;
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM seen WHERE id = 'bad'"), "1");
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM _sluice_quarantine"), "0");
}

// A message that passes when it is read again (after a fix to [columns] and a
// reset) leaves the quarantine then: `quarantine replay` must not stage it a
// second time.
TEST(QuarantineOnce, AMessageThatPassesOnRereadLeavesTheQuarantine) {
  auto broker = testing::StartBroker("events", 1);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  WritePipeline(dir.path(), SeenPipeline(broker->bootstrap()));
  ProduceValues(broker->bootstrap(), "events",
                {R"({"id":"good","amount":1})", R"({"id":"bad","amount":"abc"})", "not json"});
  std::string output;
  std::string db = dir / "pipeline.db";
  ASSERT_EQ(RunSluice({"run", dir.path(), "-q"}, &output), 0) << output;
  ASSERT_EQ(QueryOne(db, "SELECT count(*) FROM _sluice_quarantine"), "2");
  PipelineFiles files = SeenPipeline(broker->bootstrap());
  files.conf = BasicConf(broker->bootstrap(), "events", "id = TEXT\namount = TEXT");
  WritePipeline(dir.path(), files);
  ASSERT_EQ(RunSluice({"reset", dir.path(), "--to", "earliest", "--truncate", "seen", "--yes"}, &output), 0) << output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "-q"}, &output), 0) << output;
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM seen"), "2");
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM _sluice_quarantine"), "1");  // only the line that is not JSON
  ASSERT_EQ(RunSluice({"quarantine", dir.path(), "replay"}, &output), 0) << output;
  EXPECT_EQ(QueryOne(db, "SELECT count(*) || '/' || count(DISTINCT off) FROM seen"), "2/2");
}

// reset, then replay, then run: the replay must leave to the run what the run
// reads again, or those messages are staged twice.
TEST(QuarantineOnce, ReplayAfterAResetLeavesRereadMessagesToTheRun) {
  auto broker = testing::StartBroker("events", 1);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  WritePipeline(dir.path(), SeenPipeline(broker->bootstrap()));
  ProduceValues(broker->bootstrap(), "events", {R"({"id":"good","amount":1})", R"({"id":"bad","amount":"abc"})"});
  std::string output;
  std::string db = dir / "pipeline.db";
  ASSERT_EQ(RunSluice({"run", dir.path(), "-q"}, &output), 0) << output;
  PipelineFiles files = SeenPipeline(broker->bootstrap());
  files.conf = BasicConf(broker->bootstrap(), "events", "id = TEXT\namount = TEXT");
  WritePipeline(dir.path(), files);
  ASSERT_EQ(RunSluice({"reset", dir.path(), "--to", "earliest", "--truncate", "seen", "--yes"}, &output), 0) << output;
  ASSERT_EQ(RunSluice({"quarantine", dir.path(), "replay"}, &output), 0) << output;
  EXPECT_TRUE(Contains(output, "the next `sluice run` reads them again")) << output;
  ASSERT_EQ(RunSluice({"run", dir.path(), "-q"}, &output), 0) << output;
  EXPECT_EQ(QueryOne(db, "SELECT count(*) || '/' || count(DISTINCT off) FROM seen"), "2/2");
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM _sluice_quarantine"), "0");
}

TEST(QuarantineOnce, ExistingDuplicatesAreMergedKeepingTheNewest) {
  TempDir dir;
  WritePipeline(dir.path(), SeenPipeline());
  std::string db = dir / "pipeline.db";
  // A quarantine table from before, with two copies of offset 7.
  ASSERT_EQ(Exec(db,
                 "CREATE TABLE _sluice_quarantine (topic TEXT, \"partition\" INTEGER, \"offset\" INTEGER, "
                 "\"timestamp\" INTEGER, key TEXT, value TEXT, error TEXT NOT NULL, run_id INTEGER, quarantined_at TEXT); "
                 "INSERT INTO _sluice_quarantine(topic, \"partition\", \"offset\", error) "
                 "VALUES ('events', 0, 7, 'old'), ('events', 0, 7, 'new'), ('events', 0, 8, 'other')"),
            "");
  WriteFile(dir / "empty.jsonl", "");
  std::string output;
  ASSERT_EQ(RunFile(dir, dir / "empty.jsonl", &output), 0) << output;
  EXPECT_EQ(Query(db, "SELECT \"offset\", error FROM _sluice_quarantine ORDER BY \"offset\""), (Rows{"7|new", "8|other"}));
}

// --- retained staging ----------------------------------------------------------

TEST(RetainedStaging, FollowsAColumnsNewType) {
  TempDir dir;
  PipelineFiles files;
  files.conf = BasicConf("127.0.0.1:1", "events", "code = INTEGER", "[staging]\nretention = 1h\n");
  files.schema = "CREATE TABLE IF NOT EXISTS codes(code, type TEXT);\n";
  files.steps["10_codes.sql"] = "INSERT INTO codes SELECT code, typeof(code) FROM batch;\n";
  WritePipeline(dir.path(), files);
  WriteFile(dir / "one.jsonl", "{\"code\":7}\n");
  std::string output;
  ASSERT_EQ(RunFile(dir, dir / "one.jsonl", &output), 0) << output;
  files.conf = BasicConf("127.0.0.1:1", "events", "code = TEXT", "[staging]\nretention = 1h\n");
  WritePipeline(dir.path(), files);
  WriteFile(dir / "two.jsonl", "{\"code\":\"0042\"}\n");
  ASSERT_EQ(RunFile(dir, dir / "two.jsonl", &output), 0) << output;
  std::string db = dir / "pipeline.db";
  // Before: 42|integer (the kept table converted by the old INTEGER affinity).
  EXPECT_EQ(Query(db, "SELECT code, type FROM codes ORDER BY rowid"), (Rows{"7|integer", "0042|text"}));
  // Past batches stay.
  EXPECT_EQ(QueryOne(db, "SELECT count(*) FROM _sluice_staging"), "2");
}

}  // namespace
}  // namespace sluice
