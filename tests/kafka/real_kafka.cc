// The kafka tier's broker and admin helpers. The broker is started once per
// test binary by a GoogleTest global environment and stopped when the binary
// ends (the tool also stops it when its stdin closes, so a killed test binary
// leaves no broker behind).
#include "real_kafka.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <sstream>
#include <thread>

extern char** environ;

namespace sluice::testing {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

RealKafka* g_kafka = nullptr;

// An admin-capable handle (a producer) on the tier's broker.
struct Handle {
  rd_kafka_t* rk = nullptr;
  explicit Handle(const std::string& brokers, rd_kafka_type_t type = RD_KAFKA_PRODUCER) {
    char errstr[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr));
    if (type == RD_KAFKA_CONSUMER) rd_kafka_conf_set(conf, "group.id", "sluice-kafka-tier-admin", errstr, sizeof(errstr));
    rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));
    if (rk == nullptr) rd_kafka_conf_destroy(conf);
  }
  ~Handle() {
    if (rk) rd_kafka_destroy(rk);
  }
};

// Waits for the admin result event of `type` on `queue`.
rd_kafka_event_t* WaitEvent(rd_kafka_queue_t* queue, rd_kafka_event_type_t type, int timeout_ms) {
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (Clock::now() < deadline) {
    rd_kafka_event_t* event = rd_kafka_queue_poll(queue, 200);
    if (event == nullptr) continue;
    if (rd_kafka_event_type(event) == type) return event;
    rd_kafka_event_destroy(event);
  }
  return nullptr;
}

Status TopicResults(const rd_kafka_topic_result_t** results, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    rd_kafka_resp_err_t err = rd_kafka_topic_result_error(results[i]);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      const char* message = rd_kafka_topic_result_error_string(results[i]);
      return Status::KafkaError(std::string(rd_kafka_topic_result_name(results[i])) + ": " +
                           (message ? message : rd_kafka_err2str(err)));
    }
  }
  return Status::Ok();
}

// Sends one admin request (`send`, on a fresh handle and queue) and waits up
// to 30 s for its result event of `type`; `results` reads the event when the
// request as a whole did not fail.
Status AdminRequest(const std::string& brokers, const std::string& name, rd_kafka_event_type_t type,
                    const std::function<void(rd_kafka_t*, rd_kafka_queue_t*)>& send,
                    const std::function<Status(rd_kafka_event_t*)>& results) {
  Handle admin(brokers);
  if (!admin.rk) return Status::KafkaError("cannot create an admin handle");
  rd_kafka_queue_t* queue = rd_kafka_queue_new(admin.rk);
  send(admin.rk, queue);
  rd_kafka_event_t* event = WaitEvent(queue, type, 30000);
  Status status = Status::KafkaError(name + ": no answer within 30 s");
  if (event) {
    status = rd_kafka_event_error(event) ? Status::KafkaError(rd_kafka_event_error_string(event)) : results(event);
    rd_kafka_event_destroy(event);
  }
  rd_kafka_queue_destroy(queue);
  return status;
}

// Reads an admin result event's per-topic results: `as` is the event's
// rd_kafka_event_*_result, `topics` the matching rd_kafka_*_result_topics.
template <typename Result>
std::function<Status(rd_kafka_event_t*)> TopicResultsOf(const Result* (*as)(rd_kafka_event_t*),
                                                        const rd_kafka_topic_result_t** (*topics)(const Result*,
                                                                                                  size_t*)) {
  return [as, topics](rd_kafka_event_t* event) {
    size_t count = 0;
    const rd_kafka_topic_result_t** results = topics(as(event), &count);
    return TopicResults(results, count);
  };
}

class KafkaEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    auto started = Clock::now();
    auto kafka = std::make_unique<RealKafka>();
    const char* tls = std::getenv("SLUICE_KAFKA_NO_TLS");
    std::string error;
    if (!kafka->Start(tls == nullptr, &error)) {
      FAIL() << "the real Kafka broker did not start: " << error << "\n(logs under " << KafkaWorkDir() << ")";
    }
    g_kafka = kafka.release();
    std::cerr << "[kafka tier] Apache Kafka " << SLUICE_KAFKA_VERSION << " at " << g_kafka->bootstrap() << " ready in "
              << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count() << " ms"
              << std::endl;
  }
  void TearDown() override {
    if (g_kafka) {
      g_kafka->Shutdown();
      delete g_kafka;
      g_kafka = nullptr;
    }
  }
};

[[maybe_unused]] ::testing::Environment* const kEnvironment =
    ::testing::AddGlobalTestEnvironment(new KafkaEnvironment());

}  // namespace

RealKafka* RealKafka::Get() { return g_kafka; }

std::string KafkaWorkDir() { return std::string(SLUICE_KAFKA_WORK_DIR) + "/run"; }

bool RealKafka::Start(bool tls, std::string* error) {
  std::error_code ec;
  fs::remove_all(KafkaWorkDir(), ec);
  fs::create_directories(KafkaWorkDir(), ec);
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
    *error = "pipe failed";
    return false;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  std::vector<std::string> args = {"python3", SLUICE_KAFKA_TOOL, "serve", "--lib", SLUICE_KAFKA_LIB_DIR,
                                   "--dir", KafkaWorkDir()};
  if (tls) args.push_back("--tls");
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  int rc = posix_spawnp(&pid_, "python3", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(in[0]);
  close(out[1]);
  to_tool_ = in[1];
  from_tool_ = out[0];
  if (rc != 0) {
    *error = "cannot run python3";
    pid_ = -1;
    return false;
  }
  std::string line;
  // Maven's first download and the broker's start: bounded by the tool (60 s for the start).
  if (!ReadLine(&line, 300000)) {
    *error = "kafka_broker.py printed nothing (see its stderr above)";
    return false;
  }
  return ParseReady(line, error);
}

bool RealKafka::ParseReady(const std::string& line, std::string* error) {
  if (line.rfind("READY ", 0) != 0) {
    *error = line;
    return false;
  }
  std::istringstream fields(line.substr(6));
  std::string field;
  while (fields >> field) {
    size_t eq = field.find('=');
    if (eq == std::string::npos) continue;
    std::string name = field.substr(0, eq), value = field.substr(eq + 1);
    if (name == "PLAINTEXT") bootstrap_ = value;
    if (name == "SSL") ssl_bootstrap_ = value;
    if (name == "SASL_SSL") sasl_ssl_bootstrap_ = value;
    if (name == "CA") ca_file_ = value;
  }
  return !bootstrap_.empty();
}

bool RealKafka::ReadLine(std::string* line, int timeout_ms) {
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    size_t newline = buffered_.find('\n');
    if (newline != std::string::npos) {
      *line = buffered_.substr(0, newline);
      buffered_.erase(0, newline + 1);
      return true;
    }
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (left <= 0) return false;
    pollfd pfd{from_tool_, POLLIN, 0};
    if (poll(&pfd, 1, left) <= 0) continue;
    char buffer[4096];
    ssize_t n = read(from_tool_, buffer, sizeof(buffer));
    if (n <= 0) return false;
    buffered_.append(buffer, static_cast<size_t>(n));
  }
}

bool RealKafka::Command(const std::string& command, std::string* reply, int timeout_ms) {
  std::string text = command + "\n";
  if (write(to_tool_, text.data(), text.size()) != static_cast<ssize_t>(text.size())) return false;
  return ReadLine(reply, timeout_ms);
}

bool RealKafka::StopBroker(bool kill, std::string* error) {
  std::string reply;
  if (!Command(kill ? "kill" : "stop", &reply, 60000) || reply != "STOPPED") {
    *error = "stop: " + reply;
    return false;
  }
  return true;
}

bool RealKafka::StartBroker(std::string* error) {
  std::string reply;
  if (!Command("start", &reply, 90000)) {
    *error = "start: no answer";
    return false;
  }
  return ParseReady(reply, error);
}

void RealKafka::Shutdown() {
  if (to_tool_ >= 0) close(to_tool_);
  to_tool_ = -1;
  if (pid_ > 0) {
    int status = 0;
    bool done = false;
    for (int i = 0; i < 400 && !done; ++i) {  // 40 s for a clean stop
      done = waitpid(pid_, &status, WNOHANG) == pid_;
      if (!done) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (!done) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
    }
    pid_ = -1;
  }
  if (from_tool_ >= 0) close(from_tool_);
  from_tool_ = -1;
}

Status RealKafka::CreateTopic(const std::string& topic, int partitions, const std::map<std::string, std::string>& configs) {
  char errstr[512];
  rd_kafka_NewTopic_t* request = rd_kafka_NewTopic_new(topic.c_str(), partitions, 1, errstr, sizeof(errstr));
  if (!request) return Status::KafkaError(errstr);
  for (const auto& [name, value] : configs) rd_kafka_NewTopic_set_config(request, name.c_str(), value.c_str());
  Status status = AdminRequest(
      bootstrap_, "CreateTopics", RD_KAFKA_EVENT_CREATETOPICS_RESULT,
      [&](rd_kafka_t* rk, rd_kafka_queue_t* queue) { rd_kafka_CreateTopics(rk, &request, 1, nullptr, queue); },
      TopicResultsOf(rd_kafka_event_CreateTopics_result, rd_kafka_CreateTopics_result_topics));
  rd_kafka_NewTopic_destroy(request);
  if (status.ok() && !WaitForPartitions(topic, partitions)) return Status::KafkaError(topic + ": not in the metadata after creation");
  return status;
}

Status RealKafka::DeleteTopic(const std::string& topic) {
  rd_kafka_DeleteTopic_t* request = rd_kafka_DeleteTopic_new(topic.c_str());
  Status status = AdminRequest(
      bootstrap_, "DeleteTopics", RD_KAFKA_EVENT_DELETETOPICS_RESULT,
      [&](rd_kafka_t* rk, rd_kafka_queue_t* queue) { rd_kafka_DeleteTopics(rk, &request, 1, nullptr, queue); },
      TopicResultsOf(rd_kafka_event_DeleteTopics_result, rd_kafka_DeleteTopics_result_topics));
  rd_kafka_DeleteTopic_destroy(request);
  if (status.ok() && !WaitForPartitions(topic, 0)) return Status::KafkaError(topic + ": still in the metadata after deletion");
  return status;
}

Status RealKafka::CreatePartitions(const std::string& topic, int total) {
  char errstr[512];
  rd_kafka_NewPartitions_t* request = rd_kafka_NewPartitions_new(topic.c_str(), total, errstr, sizeof(errstr));
  if (!request) return Status::KafkaError(errstr);
  Status status = AdminRequest(
      bootstrap_, "CreatePartitions", RD_KAFKA_EVENT_CREATEPARTITIONS_RESULT,
      [&](rd_kafka_t* rk, rd_kafka_queue_t* queue) { rd_kafka_CreatePartitions(rk, &request, 1, nullptr, queue); },
      TopicResultsOf(rd_kafka_event_CreatePartitions_result, rd_kafka_CreatePartitions_result_topics));
  rd_kafka_NewPartitions_destroy(request);
  if (status.ok() && !WaitForPartitions(topic, total)) return Status::KafkaError(topic + ": new partitions not in the metadata");
  return status;
}

Status RealKafka::AlterTopicConfigs(const std::string& topic, const std::map<std::string, std::string>& configs) {
  rd_kafka_ConfigResource_t* resource = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic.c_str());
  for (const auto& [name, value] : configs) rd_kafka_ConfigResource_set_config(resource, name.c_str(), value.c_str());
  Status status = AdminRequest(
      bootstrap_, "AlterConfigs", RD_KAFKA_EVENT_ALTERCONFIGS_RESULT,
      [&](rd_kafka_t* rk, rd_kafka_queue_t* queue) { rd_kafka_AlterConfigs(rk, &resource, 1, nullptr, queue); },
      [&](rd_kafka_event_t* event) {
        size_t count = 0;
        auto results = rd_kafka_AlterConfigs_result_resources(rd_kafka_event_AlterConfigs_result(event), &count);
        for (size_t i = 0; i < count; ++i) {
          if (rd_kafka_ConfigResource_error(results[i])) {
            const char* message = rd_kafka_ConfigResource_error_string(results[i]);
            return Status::KafkaError(topic + ": " + (message ? message : "AlterConfigs failed"));
          }
        }
        return Status::Ok();
      });
  rd_kafka_ConfigResource_destroy(resource);
  return status;
}

bool RealKafka::WaitForPartitions(const std::string& topic, int partitions, int timeout_ms) {
  Handle admin(bootstrap_);
  if (!admin.rk) return false;
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (Clock::now() < deadline) {
    const rd_kafka_metadata_t* metadata = nullptr;
    if (rd_kafka_metadata(admin.rk, 1, nullptr, &metadata, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      int found = 0;
      bool leaders = true;
      for (int t = 0; t < metadata->topic_cnt; ++t) {
        if (topic != metadata->topics[t].topic || metadata->topics[t].err) continue;
        found = metadata->topics[t].partition_cnt;
        for (int p = 0; p < found; ++p) leaders = leaders && metadata->topics[t].partitions[p].leader >= 0;
      }
      rd_kafka_metadata_destroy(metadata);
      if (found == partitions && leaders) return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

std::map<int32_t, std::pair<int64_t, int64_t>> RealKafka::Watermarks(const std::string& topic, int partitions) {
  std::map<int32_t, std::pair<int64_t, int64_t>> marks;
  Handle consumer(bootstrap_, RD_KAFKA_CONSUMER);
  for (int32_t p = 0; p < partitions && consumer.rk; ++p) {
    int64_t low = -1, high = -1;
    rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(consumer.rk, topic.c_str(), p, &low, &high, 10000);
    EXPECT_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR) << topic << "[" << p << "]: " << rd_kafka_err2str(err);
    marks[p] = {low, high};
  }
  return marks;
}

std::map<int32_t, int64_t> RealKafka::OffsetsForTime(const std::string& topic, int partitions, int64_t ms) {
  std::map<int32_t, int64_t> offsets;
  Handle consumer(bootstrap_, RD_KAFKA_CONSUMER);
  if (!consumer.rk) return offsets;
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
  for (int32_t p = 0; p < partitions; ++p) rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset = ms;
  rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(consumer.rk, list, 10000);
  EXPECT_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(err);
  for (int i = 0; i < list->cnt; ++i) offsets[list->elems[i].partition] = list->elems[i].offset;
  rd_kafka_topic_partition_list_destroy(list);
  return offsets;
}

}  // namespace sluice::testing
