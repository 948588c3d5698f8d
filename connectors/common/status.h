// Status and Result: errors as values for expected failures (bad config, bad
// record, SQL error in a user's file, broker unreachable). Exceptions stay at
// the CLI edge. A Status is cheap when ok (no allocation).
#pragma once

#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>

namespace sluice {

class [[nodiscard]] Status {
 public:
  enum class Code {
    kOk, kInvalidConfig, kInvalidInput, kSqlError, kIoError, kKafkaError, kConflict, kAborted, kUnavailable, kRetryBatch,
    kDataLoss
  };

  Status() = default;
  static Status Ok() { return Status(); }
  static Status InvalidConfig(std::string msg) { return Status(Code::kInvalidConfig, std::move(msg)); }
  static Status InvalidInput(std::string msg) { return Status(Code::kInvalidInput, std::move(msg)); }
  static Status SqlError(std::string msg) { return Status(Code::kSqlError, std::move(msg)); }
  static Status IoError(std::string msg) { return Status(Code::kIoError, std::move(msg)); }
  static Status KafkaError(std::string msg) { return Status(Code::kKafkaError, std::move(msg)); }
  // Another process changed state this one relied on (stored offsets moved).
  static Status Conflict(std::string msg) { return Status(Code::kConflict, std::move(msg)); }
  // Work stopped on request (signal) before it finished.
  static Status Aborted(std::string msg) { return Status(Code::kAborted, std::move(msg)); }
  // A transient condition worth retrying: the database is locked or busy,
  // the brokers are unreachable, a request timed out.
  static Status Unavailable(std::string msg) { return Status(Code::kUnavailable, std::move(msg)); }
  // The database aborted the batch's transaction for a reason the next
  // attempt does not share: a serialization failure or a deadlock with
  // another worker, or the connection lost mid-batch. Nothing of the batch
  // was kept, so the engine runs it again at once (a few times, with a short
  // backoff) in every run mode. Transient: when the attempts run out,
  // `run --every` retries it like Unavailable.
  static Status RetryBatch(std::string msg) { return Status(Code::kRetryBatch, std::move(msg)); }
  // The log does not hold what the stored offsets say (deleted by retention,
  // topic recreated, impossible stored offset): never retried.
  static Status DataLoss(std::string msg) { return Status(Code::kDataLoss, std::move(msg)); }

  bool ok() const { return code_ == Code::kOk; }
  bool transient() const { return code_ == Code::kUnavailable || code_ == Code::kRetryBatch; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

  // Returns a copy whose message is prefixed with `context: `.
  Status WithContext(const std::string& context) const {
    if (ok()) return *this;
    return Status(code_, context + ": " + message_);
  }

 private:
  Status(Code code, std::string msg) : code_(code), message_(std::move(msg)) {}
  Code code_ = Code::kOk;
  std::string message_;
};

// A value or the Status explaining why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}           // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {     // NOLINT: implicit by design
    assert(!status_.ok() && "a Result built from a Status must carry an error");
  }

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  // Reading the value of an error is a programming error: it stops the
  // process with the error's message in every build, never undefined
  // behaviour.
  T& value() & { CheckHasValue(); return *value_; }
  const T& value() const& { CheckHasValue(); return *value_; }
  T&& value() && { CheckHasValue(); return std::move(*value_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }

 private:
  void CheckHasValue() const {
    if (!value_) {
      std::fprintf(stderr, "sluice: internal error: the value of a failed result was read (%s)\n",
                   status_.message().c_str());
      std::abort();
    }
  }
  Status status_;
  std::optional<T> value_;
};

}  // namespace sluice

#define SLUICE_RETURN_IF_ERROR(expr)           \
  do {                                         \
    ::sluice::Status _st = (expr);             \
    if (!_st.ok()) return _st;                 \
  } while (0)
