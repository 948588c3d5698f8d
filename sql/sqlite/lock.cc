// PipelineLock implementation.
#include "sql/sqlite/lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include "sql/sqlite/catalog.h"

namespace sluice {

Result<std::unique_ptr<PipelineLock>> PipelineLock::Acquire(const std::string& database, bool exclusive,
                                                            const std::string& hint) {
  if (database == ":memory:" || database.empty()) return std::unique_ptr<PipelineLock>(new PipelineLock(-1));
  // The lock names the database's real path: the same file reached through
  // a symbolic link or another relative path gets the same lock.
  std::error_code ec;
  std::filesystem::path real = std::filesystem::weakly_canonical(std::filesystem::absolute(database, ec), ec);
  std::string path = (ec ? database : real.string()) + "-sluice.lock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Status::IoError("cannot open lock file " + path + ": " + std::strerror(errno));
  if (::flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0) {
    char holder[256] = {0};
    ssize_t n = ::pread(fd, holder, sizeof(holder) - 1, 0);
    ::close(fd);
    std::string who = n > 0 ? std::string(holder, static_cast<size_t>(n)) : "another process";
    while (!who.empty() && (who.back() == '\n' || who.back() == '\0')) who.pop_back();
    return Status::Conflict("database " + database + " is in use by " + who + "; " + hint);
  }
  if (exclusive) {
    char host[128] = {0};
    ::gethostname(host, sizeof(host) - 1);
    std::string holder = "sluice pid " + std::to_string(::getpid()) + " on " + host + " since " + NowIso() + "\n";
    if (::ftruncate(fd, 0) == 0) {
      ssize_t written = ::pwrite(fd, holder.data(), holder.size(), 0);
      (void)written;
    }
  }
  return std::unique_ptr<PipelineLock>(new PipelineLock(fd));
}

PipelineLock::~PipelineLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace sluice
