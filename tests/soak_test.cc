// Soak: a producer writes continuously while `sluice run --every 1s`
// consumes and an analyst-style reader queries the curated table in a loop.
// Bounded (about 25 s). No reader error, memory bounded by the batch rather
// than the backlog, and the final table equals the reference.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <map>
#include <thread>

#include "test_support.h"

namespace sluice {
namespace {

using testing::BackgroundSluice;
using testing::TempDir;

// Resident set size of `pid` in KiB, from /proc (0 when unreadable).
int64_t RssKib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtoll(line.c_str() + 6, nullptr, 10);
  }
  return 0;
}

TEST(Soak, ProducerConsumerAndReaderTogether) {
  auto broker = testing::StartBroker("events", 4);
  ASSERT_NE(broker, nullptr);
  TempDir dir;
  testing::PipelineFiles files;
  files.conf = testing::BasicConf(broker->bootstrap(), "events", "k = TEXT\nseq = INTEGER", "[batch]\n") ;
  files.conf = "[source]\nbrokers = " + broker->bootstrap() +
               "\ntopic = events\ngroup = soak\n[batch]\nmax_messages = 2000\nmax_wait = 500ms\n"
               "[columns]\nk = TEXT\nseq = INTEGER\n[target]\ndatabase = pipeline.db\n";
  files.schema =
      "create table if not exists latest (k text primary key, seq integer not null, ts integer not null, "
      "off integer not null);";
  files.steps["10_latest.sql"] =
      "insert into latest (k, seq, ts, off)\n"
      "select k, seq, _kafka_timestamp, _kafka_offset from (\n"
      "  select b.*, row_number() over (partition by k order by _kafka_timestamp desc, _kafka_offset desc) as r\n"
      "  from batch b) where r = 1\n"
      "on conflict (k) do update set seq = excluded.seq, ts = excluded.ts, off = excluded.off\n"
      "where (excluded.ts, excluded.off) > (latest.ts, latest.off);\n";
  testing::WritePipeline(dir.path(), files);
  std::string db = dir / "pipeline.db";

  BackgroundSluice run({"run", dir.path(), "--brokers", broker->bootstrap(), "--every", "1s", "-q"},
                       dir / "run.log");
  ASSERT_GT(run.pid(), 0);

  // Producer: keyed events, each key's seq increasing, for ~12 s.
  std::map<std::string, int64_t> last_seq;
  int64_t produced = 0;
  std::atomic<bool> producing{true};
  std::thread producer([&] {
    int64_t seq = 0;
    for (int round = 0; round < 60; ++round) {
      std::vector<OutgoingMessage> messages;
      for (int i = 0; i < 400; ++i) {
        std::string key = "k" + std::to_string((seq * 7919) % 500);
        OutgoingMessage message;
        message.key = key;
        message.value = R"({"k":")" + key + R"(","seq":)" + std::to_string(seq) + "}";
        messages.push_back(message);
        last_seq[key] = seq;
        ++seq;
      }
      Status st = ProduceMessages(broker->bootstrap(), "events", messages);
      if (!st.ok()) ADD_FAILURE() << st.message();
      produced += static_cast<int64_t>(messages.size());
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    producing = false;
  });

  // Reader: what an analyst's dashboard does, with its own busy timeout.
  std::atomic<int> reads{0}, reader_errors{0};
  std::string first_error;
  std::thread reader([&] {
    while (producing.load()) {
      sqlite3* handle = nullptr;
      if (sqlite3_open_v2(db.c_str(), &handle, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
        sqlite3_busy_timeout(handle, 2000);
        char* error = nullptr;
        int rc = sqlite3_exec(handle, "select count(*), max(seq) from latest", nullptr, nullptr, &error);
        if (rc == SQLITE_OK) {
          ++reads;
        } else if (std::string(error ? error : "").find("no such table") == std::string::npos) {
          if (reader_errors++ == 0) first_error = error ? error : sqlite3_errstr(rc);
        }
        sqlite3_free(error);
      }
      sqlite3_close(handle);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });

  // Memory, sampled while it runs.
  std::vector<int64_t> rss;
  while (producing.load()) {
    rss.push_back(RssKib(run.pid()));
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  producer.join();
  reader.join();
  ASSERT_TRUE(testing::WaitFor(
      [&] { return testing::TryQueryOne(db, "select sum(next_offset) from _sluice_offsets") == std::to_string(produced); },
      std::chrono::seconds(30)))
      << run.output();
  std::optional<int> code = run.Stop(SIGTERM, std::chrono::seconds(20));
  ASSERT_TRUE(code.has_value()) << run.output();
  EXPECT_EQ(*code, 0) << run.output();

  EXPECT_EQ(reader_errors.load(), 0) << first_error;
  EXPECT_GT(reads.load(), 50);
  std::map<std::string, int64_t> actual;
  for (const auto& row : testing::Query(db, "select k, seq from latest")) {
    size_t bar = row.find('|');
    actual[row.substr(0, bar)] = std::stoll(row.substr(bar + 1));
  }
  EXPECT_EQ(actual, last_seq);
  EXPECT_EQ(testing::QueryOne(db, "select count(*) from _sluice_runs where status <> 'ok'"), "0");
  // Memory follows the batch, not the backlog: no growth from the first
  // third of the run to the last, and far below what the data would take.
  // (Not under AddressSanitizer, whose shadow memory and quarantine grow
  // by design.)
#if defined(__SANITIZE_ADDRESS__)
  return;
#endif
  ASSERT_GE(rss.size(), 9u);
  int64_t early = *std::max_element(rss.begin(), rss.begin() + rss.size() / 3);
  int64_t late = *std::max_element(rss.end() - rss.size() / 3, rss.end());
  EXPECT_LT(late, early * 3 / 2 + 8 * 1024) << "early " << early << " KiB, late " << late << " KiB";
  EXPECT_LT(late, 200 * 1024);
}

}  // namespace
}  // namespace sluice
