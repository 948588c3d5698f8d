// CrashPoint implementation.
#include "engine/crash_point.h"

#include <csignal>
#include <cstdlib>
#include <cstring>

namespace sluice {

void CrashPoint(const char* point) {
  static const char* target = std::getenv("SLUICE_CRASH_AT");
  if (target != nullptr && std::strcmp(target, point) == 0) std::raise(SIGKILL);
}

}  // namespace sluice
