// PipelineLock: an advisory lock beside the target database
// ("<database>-sluice.lock", flock). `all` mode takes it exclusively, so a
// second process cannot consume the same partitions into the same database;
// `group` mode takes it shared, so group members coexist but an `all`-mode
// process is refused while they run. The kernel drops the lock when the
// process dies, so a SIGKILL never leaves a stale lock behind.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"

namespace sluice {

class PipelineLock {
 public:
  // Fails at once (never waits) with a message naming the holder.
  // `hint` ends the refusal: what the refused command should do instead.
  static Result<std::unique_ptr<PipelineLock>> Acquire(const std::string& database, bool exclusive,
                                                       const std::string& hint = kRunHint);
  static constexpr const char* kRunHint =
      "only one `assignment = all` process may run a pipeline (use assignment = group to share partitions between "
      "processes)";
  ~PipelineLock();
  PipelineLock(const PipelineLock&) = delete;
  PipelineLock& operator=(const PipelineLock&) = delete;

 private:
  explicit PipelineLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace sluice
