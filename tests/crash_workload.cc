#include "crash_workload.h"

#include <cctype>
#include <cstdlib>
#include <iostream>
#include <utility>

#include "test_support.h"

namespace sluice::testing {
namespace {

const std::vector<std::string> kStepFiles = {"10_upsert.sql", "20_audit.sql", "30_totals.sql"};

std::string Schema(const CrashDialect& dialect) {
  const std::string wide = dialect.wide_integer;
  return "\n"
         "create table if not exists curated (\n"
         "  id text primary key, customer text, region text, cents " + wide + ", version " + wide + " not null);\n"
         "create table if not exists history (part integer, off " + wide + ", eid text, run_id " + wide + ");\n"
         "create table if not exists totals (customer text primary key, n " + wide + " not null, cents " + wide +
         " not null);\n";
}

// The latest version of each id, within the batch and then against the
// table: the result does not depend on the order batches arrive in.
const char* kUpsertStep = R"sql(
insert into curated (id, customer, region, cents, version)
select d.id, d.customer, c.region, d.cents, d.version
from (select id, customer, cents, version,
             row_number() over (partition by id order by version desc) as rn
      from batch where id is not null) as d
left join customers as c on c.customer = d.customer
where d.rn = 1
on conflict (id) do update set customer = excluded.customer, region = excluded.region,
  cents = excluded.cents, version = excluded.version
where excluded.version > curated.version;
)sql";

// Every batch row, no key: a message processed twice is there twice. The
// batch's own run is the one 'running' row its transaction can see.
const char* kAuditStep = R"sql(
insert into history (part, off, eid, run_id)
select _kafka_partition, _kafka_offset, eid,
       (select max(run_id) from _sluice_runs where status = 'running')
from batch;
)sql";

std::string TotalsStep(const CrashDialect& dialect) {
  const std::string existing = dialect.qualify_existing_row ? "totals." : "";
  return "\n"
         "insert into totals (customer, n, cents)\n"
         "select customer, count(*), sum(cents) from batch where customer is not null group by customer\n"
         "on conflict (customer) do update set n = " + existing + "n + excluded.n, cents = " + existing +
         "cents + excluded.cents;\n";
}

}  // namespace

Regions InitialRegions() {
  return {{"c0", "north"}, {"c1", "south"}, {"c2", "east"}, {"c3", "west"},
          {"c4", "north"}, {"c5", "south"}, {"c6", "east"}, {"c7", "west"}};
}

std::string SeedCsv(const Regions& regions) {
  std::string csv = "customer,region\n";
  for (const auto& [customer, region] : regions) csv += customer + "," + region + "\n";
  return csv;
}

std::string CrashPipelineConf(const std::string& brokers, const std::string& group, const std::string& database,
                              bool group_assignment) {
  std::string conf = "[source]\nbrokers = " + brokers + "\ntopic = " + kCrashTopic + "\ngroup = " + group +
                     "\nstart = earliest\nconnect_timeout = 15s\n";
  if (group_assignment) conf += "assignment = group\n";
  conf +=
      "[batch]\nmax_messages = 40\nmax_wait = 500ms\n"
      "[columns]\neid = TEXT\nid = TEXT\ncustomer = TEXT\ncents = INTEGER\nversion = INTEGER\n"
      "[target]\ndatabase = " + database + "\n"
      // Without it the first fetch after start-up waits out the default
      // 500 ms long poll (about 1.5 s per run against the embedded broker).
      "[kafka]\nfetch.wait.max.ms = 100\n";
  if (group_assignment) conf += "session.timeout.ms = 6000\nheartbeat.interval.ms = 500\n";
  return conf;
}

void WriteCrashPipeline(const std::string& dir, const std::string& conf, const CrashDialect& dialect,
                        const Regions& regions) {
  PipelineFiles files;
  files.conf = conf;
  files.schema = Schema(dialect);
  files.steps[kStepFiles[0]] = kUpsertStep;
  files.steps[kStepFiles[1]] = kAuditStep;
  files.steps[kStepFiles[2]] = TotalsStep(dialect);
  files.seeds["customers.csv"] = SeedCsv(regions);
  WritePipeline(dir, files);
}

void Workload::Produce(int count, const std::string& extra_customer) {
  if (count <= 0) return;
  std::vector<OutgoingMessage> messages;
  std::vector<Event> made;
  std::uniform_int_distribution<int> partition(0, kCrashPartitions - 1);
  std::uniform_int_distribution<int> key(0, 59);
  std::uniform_int_distribution<int> customer(0, 9);
  std::uniform_int_distribution<int> cents(1, 100000);
  std::uniform_int_distribution<int> percent(0, 99);
  for (int i = 0; i < count; ++i) {
    Event event;
    event.partition = partition(rng_);
    event.offset = next_offset_[event.partition]++;
    event.version = ++next_version_;
    event.eid = "e" + std::to_string(event.version);
    event.key = "k" + std::to_string(key(rng_));
    // The draws, and their order, are what a seed replays: keep them as they are.
    event.customer =
        !extra_customer.empty() && percent(rng_) < 30 ? extra_customer : "c" + std::to_string(customer(rng_));
    event.cents = cents(rng_);
    event.valid = percent(rng_) >= 4;
    OutgoingMessage message;
    message.key = event.key;
    message.partition = event.partition;
    message.value = R"({"eid":")" + event.eid + R"(","id":")" + event.key + R"(","customer":")" + event.customer +
                    R"(","cents":)" + (event.valid ? std::to_string(event.cents) : std::string(R"("lots")")) +
                    R"(,"version":)" + std::to_string(event.version) + "}";
    messages.push_back(std::move(message));
    made.push_back(std::move(event));
  }
  Status st = ProduceMessages(brokers_, kCrashTopic, messages);
  ASSERT_TRUE(st.ok()) << st.message();
  events_.insert(events_.end(), made.begin(), made.end());
}

Reference ComputeReference(const std::vector<Event>& events, const std::map<int32_t, int64_t>& upto,
                           const Regions& regions) {
  Reference ref;
  std::map<std::string, const Event*> latest;
  std::map<std::string, std::pair<int64_t, int64_t>> totals;  // customer -> (n, cents)
  for (const auto& event : events) {
    auto limit = upto.find(event.partition);
    if (limit == upto.end() || event.offset >= limit->second) continue;
    ref.ledger.push_back(std::to_string(event.partition) + "|" + std::to_string(event.offset) + "|" + event.eid);
    if (!event.valid) {
      ++ref.invalid;
      continue;
    }
    ++ref.valid;
    const Event*& best = latest[event.key];
    if (best == nullptr || best->version < event.version) best = &event;
    auto& total = totals[event.customer];
    total.first += 1;
    total.second += event.cents;
  }
  for (const auto& [key, event] : latest) {
    auto region = regions.find(event->customer);
    ref.curated.push_back(key + "|" + event->customer + "|" + (region == regions.end() ? "NULL" : region->second) +
                          "|" + std::to_string(event->cents) + "|" + std::to_string(event->version));
  }
  for (const auto& [customer, total] : totals) {
    ref.totals.push_back(customer + "|" + std::to_string(total.first) + "|" + std::to_string(total.second));
  }
  return ref;
}

uint32_t CrashSeed() {
  const char* text = std::getenv("SLUICE_CRASH_SEED");
  const uint32_t seed = text != nullptr && *text != '\0' ? static_cast<uint32_t>(std::strtoul(text, nullptr, 10))
                                                         : std::random_device{}();
  std::cout << "[ crash seed ] SLUICE_CRASH_SEED=" << seed << " (set it to replay this run)" << std::endl;
  ::testing::Test::RecordProperty("crash_seed", std::to_string(seed));
  return seed;
}

void PrintTo(const CrashCase& crash, std::ostream* out) { *out << crash.point; }

std::vector<CrashCase> CrashCases() {
  std::vector<CrashCase> cases = {{"after_fetch", false}, {"after_seeds", false}, {"after_stage", false}};
  for (const auto& step : kStepFiles) cases.push_back({"after_step:steps/" + step, false});
  // The engine's names for the target's commit, whichever the target is.
  cases.push_back({"before_sqlite_commit", false});
  cases.push_back({"after_sqlite_commit", true});
  cases.push_back({"after_kafka_commit", true});
  return cases;
}

std::string CrashCaseName(const ::testing::TestParamInfo<CrashCase>& info) {
  std::string name;
  for (char c : info.param.point) name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return name;
}

}  // namespace sluice::testing
