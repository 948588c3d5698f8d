// Crash points for fault-injection tests: when the environment variable
// SLUICE_CRASH_AT equals a point's name, the process kills itself (SIGKILL)
// there, the way a power cut or the OOM killer would. Without the variable a
// crash point costs one pointer comparison.
#pragma once

namespace sluice {

// Kills the process with SIGKILL if SLUICE_CRASH_AT names `point`.
void CrashPoint(const char* point);

}  // namespace sluice
