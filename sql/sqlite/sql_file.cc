// SqlFile implementation: prepare/step/finalize per statement, an authorizer
// for the statements files may not run, and error positions as file:line.
#include "sql/sqlite/sql_file.h"

#include "sql/sqlite/merge.h"

#include <sqlite3.h>

#include <algorithm>
#include <cctype>
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

// Pragmas that change durability or locking: a step could otherwise weaken
// the crash guarantee of every batch after it without a word.
bool WeakensDurability(const std::string& pragma) {
  static const char* const kDenied[] = {"synchronous", "journal_mode", "locking_mode", "fullfsync",
                                        "checkpoint_fullfsync", "wal_autocheckpoint", "wal_checkpoint",
                                        "writable_schema", "busy_timeout", "journal_size_limit", "query_only"};
  std::string lower;
  for (char c : pragma) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const char* denied : kDenied) {
    if (lower == denied) return true;
  }
  return false;
}

int Authorize(void* context, int action, const char* arg1, const char* arg2, const char*, const char*) {
  auto* guard = static_cast<Guard*>(context);
  switch (action) {
    case SQLITE_PRAGMA:
      if (arg1 != nullptr && WeakensDurability(arg1) && (arg2 != nullptr || std::string(arg1) == "wal_checkpoint")) {
        guard->refusal = std::string("PRAGMA ") + arg1 +
                         " is not allowed in pipeline SQL: sluice sets durability and locking for every batch "
                         "(WAL, synchronous = NORMAL, busy_timeout from [target]); remove it";
        return SQLITE_DENY;
      }
      return SQLITE_OK;
    case SQLITE_TRANSACTION:
    case SQLITE_SAVEPOINT:
      guard->refusal =
          "BEGIN, COMMIT, ROLLBACK and SAVEPOINT are not allowed: sluice runs every file inside the batch "
          "transaction; remove them";
      return SQLITE_DENY;
    case SQLITE_ATTACH: {
      if (arg1 == nullptr && !guard->file->attach_anywhere) {
        // An expression ('/tmp/' || 'x.db') reaches the authorizer as NULL:
        // where it points cannot be checked.
        guard->refusal = "ATTACH needs a literal file name ('reference.db') so sluice can check that it is inside "
                         "the pipeline directory";
        return SQLITE_DENY;
      }
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

// Where in `text` (a statement starting at `pos`) the error SQLite just
// reported lies: its own offset where it gives one, else the first mention of
// the name a "no such table/column/function" message quotes, else `pos`.
size_t ErrorPosition(sqlite3* handle, const std::string& text, size_t pos) {
  int error_offset = sqlite3_error_offset(handle);
  if (error_offset >= 0) return pos + static_cast<size_t>(error_offset);
  std::string message = sqlite3_errmsg(handle);
  for (const char* prefix : {"no such table: ", "no such column: ", "no such function: ", "no such collation sequence: "}) {
    if (message.rfind(prefix, 0) != 0) continue;
    std::string name = message.substr(std::string(prefix).size());
    size_t dot = name.rfind('.');
    if (dot != std::string::npos) name = name.substr(dot + 1);
    if (name.empty()) break;
    auto lower = [](std::string value) {
      for (char& c : value) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      return value;
    };
    std::string haystack = lower(text.substr(pos));
    std::string needle = lower(name);
    for (size_t at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + 1)) {
      bool starts = at == 0 || !(std::isalnum(static_cast<unsigned char>(haystack[at - 1])) || haystack[at - 1] == '_');
      size_t end = at + needle.size();
      bool ends = end >= haystack.size() || !(std::isalnum(static_cast<unsigned char>(haystack[end])) || haystack[end] == '_');
      if (starts && ends) return pos + at;
    }
    break;
  }
  return pos;
}

}  // namespace

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
      size_t at = ErrorPosition(handle, text, pos);
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

Result<CheckOutcome> RunCheckFile(Database* db, const SqlFile& file, size_t sample_rows) {
  sqlite3* handle = db->handle();
  Guard guard{&file, ""};
  sqlite3_set_authorizer(handle, &Authorize, &guard);
  struct Unset {
    sqlite3* handle;
    ~Unset() { sqlite3_set_authorizer(handle, nullptr, nullptr); }
  } unset{handle};
  const std::string& text = file.text;
  size_t pos = SkipBlank(text, 0);
  auto where = [&](size_t at) { return file.display + ":" + std::to_string(LineAt(text, at)) + ": "; };
  if (pos >= text.size()) return Status::SqlError(where(0) + "a check holds one query (SELECT the rows that break it)");
  sqlite3_stmt* raw = nullptr;
  const char* tail = nullptr;
  int rc = sqlite3_prepare_v2(handle, text.c_str() + pos, static_cast<int>(text.size() - pos), &raw, &tail);
  Statement stmt(raw);
  if (rc != SQLITE_OK) {
    size_t at = ErrorPosition(handle, text, pos);
    return Status::SqlError(where(at) + (guard.refusal.empty() ? sqlite3_errmsg(handle) : guard.refusal));
  }
  size_t next = tail ? static_cast<size_t>(tail - text.c_str()) : text.size();
  if (SkipBlank(text, next) < text.size()) {
    return Status::SqlError(where(next) + "a check holds exactly one query; put further checks in files of their own");
  }
  if (raw == nullptr || !sqlite3_stmt_readonly(raw) || sqlite3_column_count(raw) == 0) {
    return Status::SqlError(where(pos) + "a check is one read-only query that returns the rows breaking it "
                                         "(SELECT ...); it may not change anything");
  }
  CheckOutcome outcome;
  while (true) {
    Result<bool> row = stmt.Step();
    if (!row.ok()) return Status::SqlError(where(pos) + row.status().message());
    if (!*row) break;
    if (outcome.sample.size() < sample_rows) {
      std::string line;
      for (int column = 0; column < sqlite3_column_count(raw); ++column) {
        const char* name = sqlite3_column_name(raw, column);
        const unsigned char* value = sqlite3_column_text(raw, column);
        line += (column ? ", " : "") + std::string(name ? name : "?") + "=" +
                (value ? std::string(reinterpret_cast<const char*>(value)) : std::string("NULL"));
      }
      outcome.sample.push_back(line);
    }
    ++outcome.rows;
  }
  return outcome;
}

}  // namespace sluice
