// SqlFile implementation: prepare/step/finalize per statement, an authorizer
// for the statements files may not run, and error positions as file:line.
#include "sql/sql_file.h"

#include "sql/merge.h"

#include <sqlite3.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace sluice {
namespace {

struct Guard {
  const SqlFile* file;
  std::string refusal;  // why the authorizer said no, for the message
};

// True when `path` (as ATTACH names it) is `root` or under it.
bool Inside(const std::string& path, const std::string& root) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path resolved = fs::weakly_canonical(fs::absolute(path, ec), ec);
  fs::path base = fs::weakly_canonical(fs::absolute(root, ec), ec);
  if (ec) return false;
  auto mismatch = std::mismatch(base.begin(), base.end(), resolved.begin(), resolved.end());
  return mismatch.first == base.end();
}

int Authorize(void* context, int action, const char* arg1, const char*, const char*, const char*) {
  auto* guard = static_cast<Guard*>(context);
  switch (action) {
    case SQLITE_TRANSACTION:
    case SQLITE_SAVEPOINT:
      guard->refusal =
          "BEGIN, COMMIT, ROLLBACK and SAVEPOINT are not allowed: sluice runs every file inside the batch "
          "transaction; remove them";
      return SQLITE_DENY;
    case SQLITE_ATTACH: {
      std::string target = arg1 ? arg1 : "";
      bool in_memory = target.empty() || target == ":memory:";
      if (!guard->file->attach_root.empty() &&
          (in_memory || guard->file->attach_anywhere || Inside(target, guard->file->attach_root))) {
        return SQLITE_OK;
      }
      guard->refusal = guard->file->attach_root.empty()
                           ? "ATTACH is not allowed here; use seeds/*.csv for reference data"
                           : "ATTACH '" + target + "' is outside the pipeline directory; move the file into it, or "
                             "set [target] allow_attach_outside = true";
      return SQLITE_DENY;
    }
    case SQLITE_DETACH:
      return guard->file->attach_root.empty() ? SQLITE_DENY : SQLITE_OK;
    default:
      return SQLITE_OK;
  }
}

// Skips whitespace and comments from `pos`; returns the first token's offset.
size_t SkipBlank(const std::string& text, size_t pos) {
  while (pos < text.size()) {
    char c = text[pos];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      ++pos;
    } else if (text.compare(pos, 2, "--") == 0) {
      size_t end = text.find('\n', pos);
      pos = end == std::string::npos ? text.size() : end + 1;
    } else if (text.compare(pos, 2, "/*") == 0) {
      size_t end = text.find("*/", pos + 2);
      pos = end == std::string::npos ? text.size() : end + 2;
    } else {
      break;
    }
  }
  return pos;
}

}  // namespace

int LineAt(const std::string& text, size_t offset) {
  int line = 1;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') ++line;
  }
  return line;
}

Result<SqlFile> ReadSqlFile(const std::string& path, const std::string& display) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IoError("cannot read " + display);
  std::ostringstream content;
  content << in.rdbuf();
  return SqlFile{path, display, content.str()};
}

Status RunSqlFile(Database* db, const SqlFile& file) {
  sqlite3* handle = db->handle();
  Guard guard{&file, ""};
  sqlite3_set_authorizer(handle, &Authorize, &guard);
  struct Unset {
    sqlite3* handle;
    ~Unset() { sqlite3_set_authorizer(handle, nullptr, nullptr); }
  } unset{handle};

  const std::string& text = file.text;
  size_t pos = 0;
  while (true) {
    pos = SkipBlank(text, pos);
    if (pos >= text.size()) return Status::Ok();
    if (IsMergeStatement(std::string_view(text).substr(pos))) {
      // MERGE INTO ... is translated to SQLite's upsert (sql/merge.h).
      size_t end = StatementEnd(text, pos);
      Status st = RunMerge(db, std::string_view(text).substr(pos, end - pos));
      if (!st.ok()) {
        return Status::SqlError(file.display + ":" + std::to_string(LineAt(text, pos)) + ": " + st.message());
      }
      pos = end;
      continue;
    }
    sqlite3_stmt* raw = nullptr;
    const char* tail = nullptr;
    const char* start = text.c_str() + pos;
    int rc = sqlite3_prepare_v2(handle, start, static_cast<int>(text.size() - pos), &raw, &tail);
    Statement stmt(raw);
    if (rc != SQLITE_OK) {
      int error_offset = sqlite3_error_offset(handle);
      size_t at = error_offset >= 0 ? pos + static_cast<size_t>(error_offset) : pos;
      std::string what = guard.refusal.empty() ? sqlite3_errmsg(handle) : guard.refusal;
      return Status::SqlError(file.display + ":" + std::to_string(LineAt(text, at)) + ": " + what);
    }
    size_t next = tail ? static_cast<size_t>(tail - text.c_str()) : text.size();
    if (raw != nullptr) {
      Status st = stmt.Run();
      if (!st.ok()) {
        return Status::SqlError(file.display + ":" + std::to_string(LineAt(text, pos)) + ": " + st.message());
      }
    }
    if (next <= pos) return Status::Ok();
    pos = next;
  }
}

}  // namespace sluice
