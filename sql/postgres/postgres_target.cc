// PostgresTarget implementation: the connection and its lock, the catalog,
// staging by COPY, the step runner, seeds, and the commands' reads and writes.
#include "sql/postgres/postgres_target.h"

#include <libpq-fe.h>
#include <poll.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string_view>
#include <thread>
#include <tuple>

#include "common/time.h"
#include "sql/identifier.h"

namespace sluice {

// --- Results ---------------------------------------------------------------

// Owns a PGresult: the rows of one statement.
class PostgresTarget::Rows {
 public:
  explicit Rows(PGresult* result) : result_(result) {}
  Rows(Rows&& other) noexcept : result_(other.result_) { other.result_ = nullptr; }
  Rows& operator=(Rows&& other) noexcept {
    std::swap(result_, other.result_);
    return *this;
  }
  Rows(const Rows&) = delete;
  Rows& operator=(const Rows&) = delete;
  ~Rows() {
    if (result_ != nullptr) PQclear(result_);
  }

  int size() const { return PQntuples(result_); }
  bool empty() const { return size() == 0; }
  int columns() const { return PQnfields(result_); }
  bool IsNull(int row, int column) const { return PQgetisnull(result_, row, column) != 0; }
  std::string Text(int row, int column) const {
    return std::string(PQgetvalue(result_, row, column), static_cast<size_t>(PQgetlength(result_, row, column)));
  }
  int64_t Int(int row, int column) const { return std::strtoll(PQgetvalue(result_, row, column), nullptr, 10); }
  double Double(int row, int column) const { return std::strtod(PQgetvalue(result_, row, column), nullptr); }
  bool Bool(int row, int column) const { return PQgetvalue(result_, row, column)[0] == 't'; }
  // Rows a command changed.
  int64_t Affected() const { return std::strtoll(PQcmdTuples(result_), nullptr, 10); }
  PGresult* get() const { return result_; }

 private:
  PGresult* result_;
};

namespace {

struct ResultDeleter {
  void operator()(PGresult* result) const { PQclear(result); }
};
using ResultPtr = std::unique_ptr<PGresult, ResultDeleter>;

constexpr const char* kStagingTable = "_sluice_staging";
constexpr const char* kRunHint =
    "only one `assignment = all` process may run a pipeline (use assignment = group to share partitions between "
    "processes)";
// Staged rows are sent when this much is buffered, and at the latest before
// anything else of the batch runs.
constexpr size_t kCopyFlushBytes = 8u << 20;
constexpr size_t kQuarantineFlushRows = 1000;

std::string TrimRight(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == '\r')) text.pop_back();
  return text;
}

std::string ReplaceAll(std::string text, const std::string& what, const std::string& with) {
  if (what.empty()) return text;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + with.size())) {
    text.replace(at, what.size(), with);
  }
  return text;
}

// --- Text --------------------------------------------------------------------

// The length of the UTF-8 sequence at `text[i]` as PostgreSQL accepts it (no
// NUL, no surrogates, no overlong forms, nothing beyond U+10FFFF), or 0.
size_t Utf8Length(std::string_view text, size_t i) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  const unsigned char c = s[i];
  if (c == 0) return 0;
  if (c < 0x80) return 1;
  auto cont = [&](size_t k, unsigned char low = 0x80, unsigned char high = 0xBF) {
    return i + k < n && s[i + k] >= low && s[i + k] <= high;
  };
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c == 0xE0) return cont(1, 0xA0) && cont(2) ? 3 : 0;
  if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) return cont(1) && cont(2) ? 3 : 0;
  if (c == 0xED) return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;
  if (c == 0xF0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xF1 && c <= 0xF3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c == 0xF4) return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

// True when `text` can be stored as PostgreSQL text (UTF-8, no NUL byte).
bool IsCleanUtf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c != 0 && c < 0x80) {
      ++i;
      continue;
    }
    const size_t length = Utf8Length(text, i);
    if (length == 0) return false;
    i += length;
  }
  return true;
}

// `text` with every byte that cannot be PostgreSQL text replaced by U+FFFD
// (for messages and free text: reasons, errors, notes).
std::string CleanText(std::string_view text) {
  if (IsCleanUtf8(text)) return std::string(text);
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    const size_t length = Utf8Length(text, i);
    if (length == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(text.substr(i, length));
      i += length;
    }
  }
  return out;
}

// True when `json` holds the escape \u0000, which jsonb refuses.
bool HasJsonNul(std::string_view json) {
  for (size_t at = json.find("\\u0000"); at != std::string_view::npos; at = json.find("\\u0000", at + 1)) {
    size_t backslashes = 0;
    for (size_t k = at; k > 0 && json[k - 1] == '\\'; --k) ++backslashes;
    if (backslashes % 2 == 0) return true;  // the backslash itself is not escaped
  }
  return false;
}

// Appends `text` escaped for COPY's text format.
void AppendCopyText(std::string* out, std::string_view text) {
  size_t plain = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const char* escape = c == '\\' ? "\\\\" : c == '\t' ? "\\t" : c == '\n' ? "\\n" : c == '\r' ? "\\r" : nullptr;
    if (escape == nullptr) continue;
    out->append(text.substr(plain, i - plain));
    out->append(escape);
    plain = i + 1;
  }
  out->append(text.substr(plain));
}

std::string FormatDouble(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  char buffer[40];
  std::snprintf(buffer, sizeof(buffer), "%.17g", value);
  return buffer;
}

// "2.5s": a wait, for messages.
std::string FormatSeconds(std::chrono::milliseconds duration) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.1fs", duration.count() / 1000.0);
  return buffer;
}

// A string literal that means `text` whatever standard_conforming_strings is.
std::string EscapedLiteral(std::string_view text) {
  std::string out = "E'";
  for (char c : text) {
    if (c == '\\') out += "\\\\";
    else if (c == '\'') out += "''";
    else out += c;
  }
  return out + "'";
}

// The index just past the quoted text starting at `start` (a literal in
// single quotes or an identifier in double quotes; a doubled quote stands for
// itself), or the end of `text` when the quote is never closed.
size_t SkipQuoted(const std::string& text, size_t start, char quote) {
  size_t i = start + 1;
  while (i < text.size()) {
    if (text[i] != quote) {
      ++i;
    } else if (i + 1 < text.size() && text[i + 1] == quote) {
      i += 2;
    } else {
      return i + 1;
    }
  }
  return i;
}

std::string HexBytes(std::string_view bytes) {
  static const char* const kDigits = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) {
    const unsigned char b = static_cast<unsigned char>(c);
    out += kDigits[b >> 4];
    out += kDigits[b & 15];
  }
  return out;
}

// The name PostgreSQL gives a plain name written without quotes (lower
// case): staging columns and seed tables are created under it, so that step
// SQL written for SQLite (which ignores the case of names) finds them
// unquoted. Other names are kept as written.
std::string FoldedName(const std::string& name) { return IsPlainIdentifier(name) ? LowerAscii(name) : name; }

// --- Step files --------------------------------------------------------------

// One statement of an SQL file: where it starts (its first token) and ends,
// and its first words in lower case.
struct SqlStatement {
  size_t start = 0;
  size_t end = 0;
  std::vector<std::string> words;
};

bool IdentStart(unsigned char c) { return std::isalpha(c) || c == '_' || c >= 0x80; }
bool IdentChar(unsigned char c) { return std::isalnum(c) || c == '_' || c == '$' || c >= 0x80; }

// Splits `text` into statements as PostgreSQL's lexer does (psql's rules):
// comments (nested /* */), string literals ('', E'' with backslash escapes),
// quoted identifiers, dollar quotes ($tag$...$tag$), parentheses, and the
// BEGIN ... END bodies of CREATE FUNCTION/PROCEDURE ... BEGIN ATOMIC.
std::vector<SqlStatement> SplitSql(const std::string& text) {
  std::vector<SqlStatement> statements;
  const size_t n = text.size();
  SqlStatement current;
  bool open = false;
  int parens = 0, begin_depth = 0, identifiers = 0;
  char heads[4] = {0, 0, 0, 0};  // psql's identifiers[]: c(reate), o(r), r(eplace), f(unction), p(rocedure)
  auto finish = [&](size_t end) {
    if (open) {
      current.end = end;
      statements.push_back(std::move(current));
    }
    current = SqlStatement();
    open = false;
    parens = begin_depth = identifiers = 0;
    std::fill(std::begin(heads), std::end(heads), 0);
  };
  size_t i = 0;
  while (i < n) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      ++i;
      continue;
    }
    if (c == '-' && i + 1 < n && text[i + 1] == '-') {
      size_t end = text.find('\n', i);
      i = end == std::string::npos ? n : end + 1;
      continue;
    }
    if (c == '/' && i + 1 < n && text[i + 1] == '*') {
      int depth = 1;
      i += 2;
      while (i < n && depth > 0) {
        if (text.compare(i, 2, "/*") == 0) {
          ++depth;
          i += 2;
        } else if (text.compare(i, 2, "*/") == 0) {
          --depth;
          i += 2;
        } else {
          ++i;
        }
      }
      continue;
    }
    if (c == ';' && parens == 0 && begin_depth == 0) {
      finish(i);
      ++i;
      continue;
    }
    if (!open) {
      open = true;
      current.start = i;
    }
    if (c == '\'') {
      // A literal; E'...' (checked where the identifier E is read) takes
      // backslash escapes, the others double their quotes.
      i = SkipQuoted(text, i, '\'');
      continue;
    }
    if (c == '"') {
      i = SkipQuoted(text, i, '"');
      ++identifiers;
      if (current.words.size() < 4) current.words.push_back("\"");
      continue;
    }
    if (c == '$' && (i == 0 || !IdentChar(static_cast<unsigned char>(text[i - 1])))) {
      size_t tag_end = i + 1;
      if (tag_end < n && IdentStart(static_cast<unsigned char>(text[tag_end]))) {
        while (tag_end < n && IdentChar(static_cast<unsigned char>(text[tag_end])) && text[tag_end] != '$') ++tag_end;
      }
      if (tag_end < n && text[tag_end] == '$') {
        const std::string tag = text.substr(i, tag_end - i + 1);
        size_t close = text.find(tag, tag_end + 1);
        i = close == std::string::npos ? n : close + tag.size();
        continue;
      }
      ++i;
      continue;
    }
    if (IdentStart(c)) {
      size_t end = i;
      while (end < n && IdentChar(static_cast<unsigned char>(text[end]))) ++end;
      std::string word = LowerAscii(text.substr(i, end - i));
      i = end;
      if (word == "e" && i < n && text[i] == '\'') {
        // An escape string: backslashes escape the next character.
        ++i;
        while (i < n) {
          if (text[i] == '\\') {
            i += 2;
            continue;
          }
          if (text[i] == '\'') {
            if (i + 1 < n && text[i + 1] == '\'') {
              i += 2;
              continue;
            }
            ++i;
            break;
          }
          ++i;
        }
        continue;
      }
      if (current.words.size() < 4) current.words.push_back(word);
      if (word == "create" || word == "function" || word == "procedure" || word == "or" || word == "replace") {
        if (identifiers < 4) heads[identifiers] = word[0];
      }
      ++identifiers;
      const bool or_replace = heads[1] == 'o' && heads[2] == 'r' && (heads[3] == 'f' || heads[3] == 'p');
      const bool routine = heads[0] == 'c' && (heads[1] == 'f' || heads[1] == 'p' || or_replace);
      if (routine && parens == 0) {
        if (word == "begin") ++begin_depth;
        else if (word == "case" && begin_depth >= 1) ++begin_depth;
        else if (word == "end" && begin_depth > 0) --begin_depth;
      }
      continue;
    }
    if (c == '(') ++parens;
    if (c == ')' && parens > 0) --parens;
    ++i;
  }
  finish(n);
  return statements;
}

// Why a statement may not run in pipeline SQL, or empty.
std::string Refusal(const SqlStatement& statement) {
  const auto& words = statement.words;
  if (words.empty()) return {};
  const std::string& first = words[0];
  const std::string second = words.size() > 1 ? words[1] : "";
  if (first == "begin" || first == "start" || first == "commit" || first == "end" || first == "rollback" ||
      first == "abort" || first == "savepoint" || first == "release" ||
      (first == "prepare" && second == "transaction")) {
    return "BEGIN, COMMIT, ROLLBACK and SAVEPOINT are not allowed: sluice runs every file inside the batch "
           "transaction; remove them";
  }
  if (first == "discard") {
    return "DISCARD is not allowed in pipeline SQL: it would drop the session's staging table";
  }
  if (first == "set" || first == "reset") {
    const std::string name = (second == "local" || second == "session") && words.size() > 2 ? words[2] : second;
    if (name == "synchronous_commit" || name == "session_replication_role" ||
        name == "default_transaction_read_only" || name == "transaction_read_only") {
      return "SET " + name + " is not allowed in pipeline SQL: sluice sets durability for every batch; remove it";
    }
  }
  return {};
}

// The byte offset in `text` of the 1-based character position `position`.
size_t ByteOffsetOfCharacter(const std::string& text, long position) {
  long seen = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80 && ++seen == position) return i;
  }
  return text.size();
}

// What one simple query gave.
struct SendOutcome {
  bool sent = true;       // false: it could not be sent (the connection)
  int completed = 0;      // statements that completed
  ResultPtr error;        // the first error
  bool cancelled = false;  // the interrupt check asked for it
};

// Sends `sql` (one or more statements) as one simple query and collects its
// results, polling `interrupt` (when set) while the server works: once it
// returns true the query is cancelled. `on_result` (optional) gets every
// result holding rows; with `single_rows`, one row at a time.
SendOutcome Send(PGconn* conn, const std::string& sql, const std::function<bool()>& interrupt, bool single_rows,
                 const std::function<void(const PGresult*)>& on_result) {
  SendOutcome outcome;
  if (PQsendQuery(conn, sql.c_str()) == 0) {
    outcome.sent = false;
    return outcome;
  }
  if (single_rows) PQsetSingleRowMode(conn);
  bool cancel_sent = false;
  while (true) {
    while (PQisBusy(conn) != 0) {
      if (interrupt && !cancel_sent && interrupt()) {
        if (PGcancel* cancel = PQgetCancel(conn)) {
          char error[256];
          PQcancel(cancel, error, sizeof(error));
          PQfreeCancel(cancel);
        }
        cancel_sent = outcome.cancelled = true;
      }
      pollfd ready{PQsocket(conn), POLLIN, 0};
      if (ready.fd < 0) break;
      if (::poll(&ready, 1, interrupt ? 50 : 1000) < 0 && errno != EINTR) break;
      if (PQconsumeInput(conn) == 0) break;
    }
    PGresult* raw = PQgetResult(conn);
    if (raw == nullptr) break;
    ResultPtr result(raw);
    switch (PQresultStatus(raw)) {
      case PGRES_SINGLE_TUPLE:
        if (on_result && !outcome.error) on_result(raw);
        break;
      case PGRES_TUPLES_OK:
        if (on_result && !outcome.error) on_result(raw);
        ++outcome.completed;
        break;
      case PGRES_COMMAND_OK:
        ++outcome.completed;
        break;
      case PGRES_EMPTY_QUERY:
        break;
      case PGRES_COPY_IN:
        PQputCopyEnd(conn, "COPY ... FROM STDIN is not supported in pipeline SQL");
        break;
      case PGRES_COPY_OUT: {
        char* buffer = nullptr;
        while (PQgetCopyData(conn, &buffer, 0) > 0) PQfreemem(buffer);
        break;
      }
      default:
        if (!outcome.error) outcome.error = std::move(result);
        break;
    }
    if (PQstatus(conn) == CONNECTION_BAD && PQisBusy(conn) == 0 && outcome.error) {
      // Drain what libpq still holds, then stop.
      while (PGresult* rest = PQgetResult(conn)) PQclear(rest);
      break;
    }
  }
  return outcome;
}

// SQLSTATEs that end the session: a connection exception, the server
// terminating it (pg_terminate_backend, a shutdown, a crash of another
// server process) or ending an idle one. The batch's transaction went with
// it; a new session can run the batch again.
bool SessionEnded(const std::string& state) {
  return state.rfind("08", 0) == 0 || state == "57P01" || state == "57P02" || state == "57P05" || state == "25P03";
}

// SQLSTATEs of a transaction the server aborted because of other sessions
// (workers upserting into the same aggregate rows): a serialization failure
// or a deadlock. Run again, the batch usually passes.
bool AbortedByOthers(const std::string& state) { return state == "40001" || state == "40P01"; }

// SQLSTATEs worth waiting for: a lock held too long, the server starting,
// stopping or out of resources.
bool Busy(const std::string& state) {
  return state == "55P03" || state.rfind("57P", 0) == 0 || state.rfind("53", 0) == 0;
}

// A Status of the same kind as `kind` (RetryBatch, Unavailable, else
// SqlError) with `message`: a step's error, reworded to name its file and line.
Status SameKind(const Status& kind, std::string message) {
  switch (kind.code()) {
    case Status::Code::kRetryBatch: return Status::RetryBatch(std::move(message));
    case Status::Code::kUnavailable: return Status::Unavailable(std::move(message));
    default: return Status::SqlError(std::move(message));
  }
}

const char* ErrorField(const PGresult* result, int field) {
  return result == nullptr ? nullptr : PQresultErrorField(result, field);
}

void OnNotice(void*, const PGresult* result) {
  const char* severity = PQresultErrorField(result, PG_DIAG_SEVERITY_NONLOCALIZED);
  const char* message = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
  std::string text = CleanText(message != nullptr ? message : TrimRight(PQresultErrorMessage(result)));
  if (severity != nullptr && std::strcmp(severity, "WARNING") == 0) {
    spdlog::warn("PostgreSQL: {}", text);
  } else {
    spdlog::debug("PostgreSQL {}: {}", severity != nullptr ? severity : "notice", text);
  }
}

std::string StagingType(ColumnType type) {
  switch (type) {
    case ColumnType::kText: return "text";
    case ColumnType::kInteger: return "bigint";
    case ColumnType::kReal: return "double precision";
    // SQLite keeps booleans as 0/1 integers and step SQL compares them with
    // 1 (`where paid = 1`); bigint keeps such steps working on both engines.
    case ColumnType::kBoolean: return "bigint";
    case ColumnType::kJson: return "jsonb";
  }
  return "text";
}

// --- Seeds ---------------------------------------------------------------------
// The same rules as sql/sqlite/seeds.cc, with PostgreSQL's types.

const char* SeedKindType(SeedType type) {
  return type == SeedType::kInteger ? "bigint" : type == SeedType::kReal ? "double precision" : "text";
}

// The shared column plan (sql/seed_file.h), with plain names folded to
// lower case as PostgreSQL folds unquoted names.
Result<std::vector<SeedColumn>> PlanPostgresSeedColumns(const CsvTable& csv, const std::string& display) {
  Result<std::vector<SeedColumn>> columns = PlanSeedColumns(csv, display);
  if (!columns.ok()) return columns.status();
  for (auto& column : *columns) column.name = FoldedName(column.name);
  return columns;
}

const char* RelationKind(const std::string& relkind) {
  if (relkind == "r" || relkind == "p") return "table";
  if (relkind == "v") return "view";
  if (relkind == "m") return "materialized view";
  if (relkind == "f") return "foreign table";
  if (relkind == "S") return "sequence";
  if (relkind == "i" || relkind == "I") return "index";
  return "relation";
}

std::string HostName() {
  char host[128] = {0};
  ::gethostname(host, sizeof(host) - 1);
  return host;
}

// --- sluice's SQL functions --------------------------------------------------------

// The version of the functions below: Prepare() replaces them when the schema
// `sluice_functions` carries another.
constexpr char kFunctionsVersion[] = "sluice SQL functions, version 2";

// The helpers, then the functions steps call: date_trunc, date_diff,
// epoch_ms, to_timestamp (sql/sqlite/functions.cc on SQLite) and
// json_extract (built into SQLite), in schema `sluice_functions`. Not
// `sluice`: PostgreSQL's default search_path starts with "$user", so for a
// role named sluice a schema `sluice` would become the schema new tables go
// to, and the catalog would be created afresh, empty, beside the real one
// (the second run then read everything again). Calendar arithmetic
// is Hinnant's days_from_civil / civil_from_days, as on SQLite, so years
// 0000 to 9999 work (PostgreSQL's own dates have no year 0). Every
// timestamp argument is overloaded for text, bigint, integer, numeric and
// double precision: an exact match for each type keeps PostgreSQL's
// pg_catalog.to_timestamp(double precision) and date_trunc(text, timestamp)
// from being chosen for a literal.
std::string FunctionsSql() {
  // Speed matters: steps call these once per row. So the work for a valid
  // argument happens in as few PL/pgSQL frames as possible (one for a number,
  // two for text: the function and _parse), with the calendar arithmetic
  // written out in place rather than in helper functions (a PL/pgSQL call
  // costs more than the arithmetic, and SQL helpers called from PL/pgSQL are
  // not inlined), and error messages are built only when there is an error.
  std::string sql = R"sql(
CREATE SCHEMA IF NOT EXISTS sluice_functions;
CREATE OR REPLACE FUNCTION sluice_functions._fdiv(a bigint, b bigint) RETURNS bigint LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $f$ SELECT a / b - CASE WHEN a % b <> 0 AND (a < 0) <> (b < 0) THEN 1 ELSE 0 END $f$;
CREATE OR REPLACE FUNCTION sluice_functions._fmod(a bigint, b bigint) RETURNS bigint LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $f$ SELECT a - sluice_functions._fdiv(a, b) * b $f$;
CREATE OR REPLACE FUNCTION sluice_functions._show(t text) RETURNS text LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $f$
DECLARE n integer := 57;
BEGIN
  IF octet_length(t) <= 60 THEN RETURN '''' || t || ''''; END IF;
  WHILE octet_length(left(t, n)) > 57 LOOP n := n - 1; END LOOP;
  RETURN '''' || left(t, n) || '...''';
END $f$;
CREATE OR REPLACE FUNCTION sluice_functions._unit(fn text, unit text) RETURNS text LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $f$
DECLARE u text := lower(unit);
BEGIN
  IF length(u) > 1 AND right(u, 1) = 's' THEN u := left(u, -1); END IF;
  IF u IN ('millisecond', 'second', 'minute', 'hour', 'day', 'week', 'month', 'quarter', 'year') THEN RETURN u; END IF;
  RAISE EXCEPTION '%', fn || ': ' || sluice_functions._show(unit) ||
    ' is not a unit (use millisecond, second, minute, hour, day, week, month, quarter, year)' USING ERRCODE = '22023';
END $f$;
-- Raises the error for text that is not a timestamp at all.
CREATE OR REPLACE FUNCTION sluice_functions._not_iso(fn text, t text) RETURNS void LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $f$
BEGIN
  IF t ~ '^-?[0-9]+$' AND length(t) > 4 THEN
    RAISE EXCEPTION '%', fn || ': ' || sluice_functions._show(t) ||
      ' is not an ISO-8601 timestamp (epoch milliseconds must be a number, not text: use CAST(... AS bigint))'
      USING ERRCODE = '22007';
  END IF;
  RAISE EXCEPTION '%', fn || ': ' || sluice_functions._show(t) || ' is not an ISO-8601 timestamp (expected YYYY-MM-DD, '
    'optionally followed by THH:MM[:SS[.fff]] and Z, +HH:MM or -HH:MM; for example 2026-11-21T08:34:19.706Z)'
    USING ERRCODE = '22007';
END $f$;
-- Raises the error for a timestamp with a field out of its range.
CREATE OR REPLACE FUNCTION sluice_functions._invalid(fn text, t text, what text) RETURNS void
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $f$
BEGIN
  RAISE EXCEPTION '%', fn || ': ' || sluice_functions._show(t) || ' is not a valid timestamp: ' || what USING ERRCODE = '22008';
END $f$;
CREATE OR REPLACE FUNCTION sluice_functions._parse(fn text, t text) RETURNS bigint LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $f$
DECLARE
  y bigint; mo bigint; d bigint; h bigint := 0; mi bigint := 0; s bigint := 0; ms bigint := 0; off bigint := 0;
  pos integer := 17; rest text; digits integer; zone text; oh bigint; om bigint;
  yy bigint; era bigint; yoe bigint; result bigint;
BEGIN
  -- A match without captures is several times faster than regexp_match; the
  -- fields are then at fixed places (the text is ASCII once it matches), but
  -- for the fraction, whose length varies.
  IF t !~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[Tt ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.][0-9]+)?)?(?:[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?)?$' THEN
    PERFORM sluice_functions._not_iso(fn, t);
  END IF;
  y := substr(t, 1, 4)::bigint; mo := substr(t, 6, 2)::bigint; d := substr(t, 9, 2)::bigint;
  IF length(t) > 10 THEN
    h := substr(t, 12, 2)::bigint; mi := substr(t, 15, 2)::bigint;
    IF substr(t, 17, 1) = ':' THEN
      s := substr(t, 18, 2)::bigint;
      pos := 20;
      IF substr(t, 20, 1) = '.' THEN
        rest := substr(t, 21);
        digits := length(rest) - length(ltrim(rest, '0123456789'));
        ms := rpad(left(rest, least(digits, 3)), 3, '0')::bigint;  -- truncated to milliseconds
        pos := 21 + digits;
      END IF;
    END IF;
    zone := substr(t, pos);
    IF left(zone, 1) IN ('+', '-') THEN
      oh := substr(zone, 2, 2)::bigint;
      om := CASE WHEN length(zone) > 3 THEN right(zone, 2)::bigint ELSE 0 END;
      IF oh > 23 OR om > 59 THEN
        PERFORM sluice_functions._invalid(fn, t, 'UTC offset ' || zone || ' is not between -23:59 and +23:59');
      END IF;
      off := (oh * 60 + om) * CASE WHEN left(zone, 1) = '-' THEN -1 ELSE 1 END;
    END IF;
  END IF;
  -- One test for every field in range; the messages, in the order SQLite checks, only when one is not.
  IF mo < 1 OR mo > 12 OR d < 1 OR
     (d > 28 AND d > CASE WHEN mo = 2 THEN CASE WHEN y % 4 = 0 AND (y % 100 <> 0 OR y % 400 = 0) THEN 29 ELSE 28 END
                          WHEN mo IN (4, 6, 9, 11) THEN 30 ELSE 31 END) OR
     h > 23 OR mi > 59 OR s > 59 THEN
    IF mo < 1 OR mo > 12 THEN PERFORM sluice_functions._invalid(fn, t, 'month ' || mo || ' does not exist'); END IF;
    IF d < 1 OR d > (CASE WHEN mo = 2 THEN CASE WHEN y % 4 = 0 AND (y % 100 <> 0 OR y % 400 = 0) THEN 29 ELSE 28 END
                          WHEN mo IN (4, 6, 9, 11) THEN 30 ELSE 31 END) THEN
      PERFORM sluice_functions._invalid(fn, t, left(t, 7) || ' has no day ' || d);
    END IF;
    IF h > 23 THEN PERFORM sluice_functions._invalid(fn, t, 'hour ' || h || ' does not exist (use 00 to 23)'); END IF;
    IF mi > 59 THEN PERFORM sluice_functions._invalid(fn, t, 'minute ' || mi || ' does not exist (use 00 to 59)'); END IF;
    PERFORM sluice_functions._invalid(fn, t, 'second ' || s || ' does not exist (leap seconds are not supported)');
  END IF;
  -- days_from_civil (Hinnant), floor division written out: yy >= -1.
  yy := y - CASE WHEN mo <= 2 THEN 1 ELSE 0 END;
  era := CASE WHEN yy < 0 THEN -1 ELSE yy / 400 END;
  yoe := yy - era * 400;
  result := (era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + (153 * (CASE WHEN mo > 2 THEN mo - 3 ELSE mo + 9 END) + 2) / 5 +
             d - 1 - 719468) * 86400000 + h * 3600000 + mi * 60000 + s * 1000 + ms - off * 60000;
  IF result < -62167219200000 OR result > 253402300799999 THEN
    PERFORM sluice_functions._invalid(fn, t, 'in UTC it is outside years 0000 to 9999');
  END IF;
  RETURN result;
END $f$;
CREATE OR REPLACE FUNCTION sluice_functions._range(fn text, v text) RETURNS void LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $f$
BEGIN
  RAISE EXCEPTION '%', fn || ': ' || v || ' ms is outside the supported range (years 0000 to 9999: -62167219200000 to '
    '253402300799999)' USING ERRCODE = '22008';
END $f$;
CREATE OR REPLACE FUNCTION sluice_functions._ms(fn text, v text) RETURNS bigint LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $f$ SELECT sluice_functions._parse(fn, v) $f$;
CREATE OR REPLACE FUNCTION sluice_functions._ms(fn text, v integer) RETURNS bigint LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $f$ SELECT v::bigint $f$;
CREATE OR REPLACE FUNCTION sluice_functions._ms(fn text, v bigint) RETURNS bigint LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $f$
BEGIN
  IF v < -62167219200000 OR v > 253402300799999 THEN PERFORM sluice_functions._range(fn, v::text); END IF;
  RETURN v;
END $f$;
CREATE OR REPLACE FUNCTION sluice_functions._ms(fn text, v numeric) RETURNS bigint LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $f$
BEGIN
  IF v = 'NaN'::numeric OR floor(v) <> v THEN
    RAISE EXCEPTION '%', fn || ': ' || v || ' is not a whole number of epoch milliseconds' USING ERRCODE = '22008';
  END IF;
  IF v < -62167219200000 OR v > 253402300799999 THEN PERFORM sluice_functions._range(fn, v::text); END IF;
  RETURN v::bigint;
END $f$;
CREATE OR REPLACE FUNCTION sluice_functions._ms(fn text, v double precision) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $f$
BEGIN
  IF v = 'NaN'::double precision OR v IN ('Infinity', '-Infinity') OR floor(v) <> v THEN
    RAISE EXCEPTION '%', fn || ': ' || v || ' is not a whole number of epoch milliseconds' USING ERRCODE = '22008';
  END IF;
  IF v < -62167219200000 OR v > 253402300799999 THEN PERFORM sluice_functions._range(fn, v::text); END IF;
  RETURN v::bigint;
END $f$;
CREATE OR REPLACE FUNCTION sluice_functions._bad_path(path text) RETURNS void LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $f$
BEGIN
  RAISE EXCEPTION '%', 'json_extract: bad JSON path: ' || sluice_functions._show(path) USING ERRCODE = '22023';
END $f$;
CREATE OR REPLACE FUNCTION sluice_functions.json_extract(j text, path text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $f$
DECLARE
  keys text[] := ARRAY[]::text[];
  pos integer := 2; n integer := length(path); c text; stop integer; v jsonb;
BEGIN
  -- Keys without quotes or brackets ($.a.b), the common case, split at once.
  IF path ~ E'^\\$(\\.[^.\\["][^.\\[]*)*$' THEN
    IF n > 1 THEN keys := string_to_array(substr(path, 3), '.'); END IF;
  ELSE
    IF left(path, 1) <> '$' THEN PERFORM sluice_functions._bad_path(path); END IF;
    WHILE pos <= n LOOP
      c := substr(path, pos, 1);
      IF c = '.' THEN
        pos := pos + 1;
        IF substr(path, pos, 1) = '"' THEN
          stop := strpos(substr(path, pos + 1), '"');
          IF stop = 0 THEN PERFORM sluice_functions._bad_path(path); END IF;
          keys := keys || substr(path, pos + 1, stop - 1);
          pos := pos + stop + 1;
        ELSE
          stop := pos;
          WHILE stop <= n AND substr(path, stop, 1) NOT IN ('.', '[') LOOP stop := stop + 1; END LOOP;
          IF stop = pos THEN PERFORM sluice_functions._bad_path(path); END IF;
          keys := keys || substr(path, pos, stop - pos);
          pos := stop;
        END IF;
      ELSIF c = '[' THEN
        stop := strpos(substr(path, pos), ']');
        IF stop < 3 OR substr(path, pos + 1, stop - 2) !~ '^[0-9]+$' THEN PERFORM sluice_functions._bad_path(path); END IF;
        keys := keys || substr(path, pos + 1, stop - 2);
        pos := pos + stop;
      ELSE
        PERFORM sluice_functions._bad_path(path);
      END IF;
    END LOOP;
  END IF;
  v := j::jsonb #> keys;
  RETURN CASE jsonb_typeof(v) WHEN 'string' THEN v #>> '{}' WHEN 'null' THEN NULL
              WHEN 'boolean' THEN CASE WHEN v = 'true'::jsonb THEN '1' ELSE '0' END ELSE v::text END;
END $f$;
CREATE OR REPLACE FUNCTION sluice_functions.json_extract(j jsonb, path text) RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $f$ SELECT sluice_functions.json_extract(j::text, path) $f$;
CREATE OR REPLACE FUNCTION sluice_functions.json_extract(j json, path text) RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $f$ SELECT sluice_functions.json_extract(j::text, path) $f$;
)sql";
  const char* const types[] = {"text", "bigint", "integer", "numeric", "double precision"};
  auto show = [](const std::string& type, const char* arg) {
    return type == "text" ? std::string("sluice_functions._show(") + arg + ")" : std::string(arg) + "::text";
  };
  // PL/pgSQL statements that set `var` to the epoch ms of argument `arg`
  // (of `type`, not NULL), raising `fn`'s error when it is none.
  auto read_ms = [](const std::string& fn, const std::string& type, const std::string& var, const std::string& arg) {
    if (type == "text") return "  " + var + " := sluice_functions._parse('" + fn + "', " + arg + ");\n";
    if (type == "integer") return "  " + var + " := " + arg + ";\n";  // always in range
    if (type == "bigint") {
      return "  " + var + " := " + arg + ";\n  IF " + var + " < -62167219200000 OR " + var +
             " > 253402300799999 THEN PERFORM sluice_functions._range('" + fn + "', " + var + "::text); END IF;\n";
    }
    return "  " + var + " := sluice_functions._ms('" + fn + "', " + arg + ");\n";
  };
  // Floor division and modulo by a positive constant.
  auto fdiv = [](const std::string& a, const std::string& b) {
    return "((" + a + ") - ((" + a + ") % " + b + " + " + b + ") % " + b + ") / " + b;
  };
  auto fmod = [](const std::string& a, const std::string& b) { return "((" + a + ") % " + b + " + " + b + ") % " + b; };
  // civil_from_days (Hinnant) of `days`: sets cy, cm, cd.
  const std::string civil =
      "  z := days + 719468;\n"
      "  era := " + fdiv("z", "146097") + ";\n"
      "  doe := z - era * 146097;\n"
      "  yoe := (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;\n"
      "  doy := doe - (365 * yoe + yoe / 4 - yoe / 100);\n"
      "  mp := (5 * doy + 2) / 153;\n"
      "  cd := doy - (153 * mp + 2) / 5 + 1;\n"
      "  cm := CASE WHEN mp < 10 THEN mp + 3 ELSE mp - 9 END;\n"
      "  cy := yoe + era * 400 + CASE WHEN cm <= 2 THEN 1 ELSE 0 END;\n";
  const std::string civil_vars = "days bigint; z bigint; era bigint; doe bigint; yoe bigint; doy bigint; mp bigint; "
                                 "cy bigint; cm bigint; cd bigint;";
  // Returns `ms` (in years 0000 to 9999) as ISO-8601 UTC text.
  auto format = [&](const std::string& with_millis) {
    return "  days := " + fdiv("ms", "86400000") + ";\n" + civil +
           "  ms := ms - days * 86400000;\n"
           "  RETURN lpad(cy::text, 4, '0') || '-' || lpad(cm::text, 2, '0') || '-' || lpad(cd::text, 2, '0') || 'T' ||\n"
           "         lpad((ms / 3600000)::text, 2, '0') || ':' || lpad((ms / 60000 % 60)::text, 2, '0') || ':' ||\n"
           "         lpad((ms / 1000 % 60)::text, 2, '0') ||\n"
           "         CASE WHEN " + with_millis + " THEN '.' || lpad((ms % 1000)::text, 3, '0') ELSE '' END || 'Z';\n";
  };
  // Sets `u` to the unit `unit` names, lower case and singular.
  auto read_unit = [](const std::string& fn) {
    return "  u := lower(unit);\n"
           "  IF length(u) > 1 AND right(u, 1) = 's' THEN u := left(u, -1); END IF;\n"
           "  IF u NOT IN ('millisecond', 'second', 'minute', 'hour', 'day', 'week', 'month', 'quarter', 'year') THEN\n"
           "    PERFORM sluice_functions._unit('" + fn + "', unit);\n"
           "  END IF;\n";
  };
  // Sets `var` to the ordinal of unit `u` holding instant `ms` (see
  // UnitOrdinal in sql/sqlite/functions.cc).
  auto ordinal = [&](const std::string& var, const std::string& ms) {
    return "  days := " + fdiv(ms, "86400000") + ";\n"
           "  CASE u\n"
           "    WHEN 'millisecond' THEN " + var + " := " + ms + ";\n"
           "    WHEN 'second' THEN " + var + " := " + fdiv(ms, "1000") + ";\n"
           "    WHEN 'minute' THEN " + var + " := " + fdiv(ms, "60000") + ";\n"
           "    WHEN 'hour' THEN " + var + " := " + fdiv(ms, "3600000") + ";\n"
           "    WHEN 'day' THEN " + var + " := days;\n"
           "    WHEN 'week' THEN " + var + " := " + fdiv("days + 3", "7") + ";\n"
           "    ELSE\n" + civil +
           "      " + var + " := CASE u WHEN 'month' THEN cy * 12 + cm - 1 WHEN 'quarter' THEN cy * 4 + (cm - 1) / 3 "
           "ELSE cy END;\n"
           "  END CASE;\n";
  };
  for (const std::string type : types) {
    // epoch_ms passes integers through unchanged, as on SQLite.
    sql += "CREATE OR REPLACE FUNCTION sluice_functions.epoch_ms(ts " + type +
           ") RETURNS bigint LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $f$ SELECT " +
           (type == "bigint" || type == "integer" ? std::string("ts::bigint")
            : type == "text"                      ? std::string("sluice_functions._parse('epoch_ms', ts)")
                                                  : std::string("sluice_functions._ms('epoch_ms', ts)")) +
           " $f$;\n";
    sql += "CREATE OR REPLACE FUNCTION sluice_functions.to_timestamp(ts " + type +
           ") RETURNS text LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $f$\n"
           "DECLARE ms bigint; " + civil_vars + "\n"
           "BEGIN\n" + read_ms("to_timestamp", type, "ms", "ts") + format("true") +
           "END $f$;\n";
    // A bad unit is an error even when the timestamp is NULL: not STRICT.
    sql += "CREATE OR REPLACE FUNCTION sluice_functions.date_trunc(unit text, ts " + type +
           ") RETURNS text LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $f$\n"
           "DECLARE u text; ms bigint; yy bigint; m bigint; " + civil_vars + "\n"
           "BEGIN\n"
           "  IF unit IS NULL THEN RETURN NULL; END IF;\n" + read_unit("date_trunc") +
           "  IF ts IS NULL THEN RETURN NULL; END IF;\n" + read_ms("date_trunc", type, "ms", "ts") +
           "  days := " + fdiv("ms", "86400000") + ";\n"
           "  CASE u\n"
           "    WHEN 'millisecond' THEN NULL;\n"
           "    WHEN 'second' THEN ms := ms - " + fmod("ms", "1000") + ";\n"
           "    WHEN 'minute' THEN ms := ms - " + fmod("ms", "60000") + ";\n"
           "    WHEN 'hour' THEN ms := ms - " + fmod("ms", "3600000") + ";\n"
           "    WHEN 'day' THEN ms := days * 86400000;\n"
           "    WHEN 'week' THEN ms := (days - " + fmod("days + 3", "7") + ") * 86400000;  -- Monday; 1970-01-01 was a Thursday\n"
           "    WHEN 'month' THEN\n" + civil +
           "      ms := (days - cd + 1) * 86400000;\n"
           "    ELSE\n" + civil +
           "      -- days_from_civil(cy, m, 1); m <= 2 only for January, so yy >= -1.\n"
           "      m := CASE WHEN u = 'quarter' THEN (cm - 1) / 3 * 3 + 1 ELSE 1 END;\n"
           "      yy := cy - CASE WHEN m <= 2 THEN 1 ELSE 0 END;\n"
           "      era := CASE WHEN yy < 0 THEN -1 ELSE yy / 400 END;\n"
           "      yoe := yy - era * 400;\n"
           "      ms := (era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + (153 * (CASE WHEN m > 2 THEN m - 3 ELSE m + 9 END)"
           " + 2) / 5 - 719468) * 86400000;\n"
           "  END CASE;\n"
           "  IF ms < -62167219200000 THEN\n"
           "    RAISE EXCEPTION '%', 'date_trunc: the week holding ' || " + show(type, "ts") +
           " || ' starts before 0000-01-01 (supported years are 0000 to 9999)' USING ERRCODE = '22008';\n"
           "  END IF;\n" + format("u = 'millisecond'") +
           "END $f$;\n";
    for (const std::string other : types) {
      sql += "CREATE OR REPLACE FUNCTION sluice_functions.date_diff(unit text, a " + type + ", b " + other +
             ") RETURNS bigint LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $f$\n"
             "DECLARE u text; ma bigint; mb bigint; oa bigint; ob bigint; " + civil_vars + "\n"
             "BEGIN\n"
             "  IF unit IS NULL THEN RETURN NULL; END IF;\n" + read_unit("date_diff") +
             "  IF a IS NULL OR b IS NULL THEN RETURN NULL; END IF;\n" + read_ms("date_diff", type, "ma", "a") +
             read_ms("date_diff", other, "mb", "b") + ordinal("oa", "ma") + ordinal("ob", "mb") +
             "  RETURN ob - oa;\n"
             "END $f$;\n";
    }
  }
  sql += std::string("COMMENT ON SCHEMA sluice_functions IS '") + kFunctionsVersion + "';\n";
  return sql;
}

}  // namespace

// --- Opening -------------------------------------------------------------------

std::string PostgresTarget::LibraryVersion() {
  const int version = PQlibVersion();
  if (version >= 100000) return "libpq " + std::to_string(version / 10000) + "." + std::to_string(version % 10000);
  return "libpq " + std::to_string(version / 10000) + "." + std::to_string(version / 100 % 100) + "." +
         std::to_string(version % 100);
}

std::string PostgresTarget::RedactUrl(const std::string& url) {
  const size_t scheme = url.find("://");
  if (scheme == std::string::npos) return url;
  const size_t authority = scheme + 3;
  size_t authority_end = url.find_first_of("/?#", authority);
  if (authority_end == std::string::npos) authority_end = url.size();
  std::string out = url.substr(0, authority);
  const size_t at = authority_end > authority ? url.rfind('@', authority_end - 1) : std::string::npos;
  if (at != std::string::npos && at >= authority) {
    const std::string userinfo = url.substr(authority, at - authority);
    out += userinfo.substr(0, userinfo.find(':'));
    out += url.substr(at, authority_end - at);
  } else {
    out += url.substr(authority, authority_end - authority);
  }
  std::string rest = url.substr(authority_end);
  const size_t question = rest.find('?');
  if (question == std::string::npos) return out + rest;
  out += rest.substr(0, question);
  std::string query = rest.substr(question + 1), fragment;
  const size_t hash = query.find('#');
  if (hash != std::string::npos) {
    fragment = query.substr(hash);
    query = query.substr(0, hash);
  }
  std::string kept;
  size_t start = 0;
  while (start <= query.size()) {
    size_t end = query.find('&', start);
    if (end == std::string::npos) end = query.size();
    const std::string parameter = query.substr(start, end - start);
    const std::string key = LowerAscii(parameter.substr(0, parameter.find('=')));
    if (!parameter.empty() && key != "password" && key != "sslpassword") kept += (kept.empty() ? "" : "&") + parameter;
    start = end + 1;
  }
  return out + (kept.empty() ? "" : "?" + kept) + fragment;
}

PostgresTarget::PostgresTarget(pg_conn* conn, TargetOptions options, std::string described)
    : conn_(conn), options_(std::move(options)), described_(std::move(described)) {}

PostgresTarget::~PostgresTarget() {
  if (conn_ == nullptr) return;
  if (!scratch_schema_.empty() && PQstatus(conn_) == CONNECTION_OK) {
    // A scratch target's schema goes with it (a killed process leaves it
    // behind; its name says what it is).
    if (PQtransactionStatus(conn_) != PQTRANS_IDLE) PQclear(PQexec(conn_, "ROLLBACK"));
    ResultPtr dropped(PQexec(conn_, ("DROP SCHEMA IF EXISTS " + QuoteIdentifier(scratch_schema_) + " CASCADE").c_str()));
    if (PQresultStatus(dropped.get()) != PGRES_COMMAND_OK) {
      spdlog::warn("cannot drop the scratch schema {} on {}: {}", scratch_schema_, described_,
                   Scrub(TrimRight(PQresultErrorMessage(dropped.get()))));
    }
  }
  PQfinish(conn_);  // the session's locks and temporary tables go with it
}

std::string PostgresTarget::Scrub(std::string text) const {
  if (!secret_.empty()) text = ReplaceAll(std::move(text), secret_, "***");
  return text;
}

Result<std::unique_ptr<PostgresTarget>> PostgresTarget::Open(const TargetOptions& options) {
  const std::string described = RedactUrl(options.database);
  // The password, to keep it out of every message.
  std::string secret;
  char* parse_error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(options.database.c_str(), &parse_error);
  if (parsed == nullptr) {
    std::string why = parse_error != nullptr ? TrimRight(parse_error) : "out of memory";
    if (parse_error != nullptr) PQfreemem(parse_error);
    return Status::InvalidConfig("[target] database " + described + ": " + why);
  }
  for (PQconninfoOption* option = parsed; option->keyword != nullptr; ++option) {
    if (option->val != nullptr && std::strcmp(option->keyword, "password") == 0) secret = option->val;
  }
  PQconninfoFree(parsed);
  auto scrub = [&](std::string text) { return secret.empty() ? text : ReplaceAll(std::move(text), secret, "***"); };

  // Parameters before dbname are defaults the URL may override; those after
  // it win over the URL.
  const std::string application = "sluice pid " + std::to_string(::getpid()) + " on " + HostName();
  const char* keywords[] = {"connect_timeout", "fallback_application_name", "dbname", "client_encoding", nullptr};
  const char* values[] = {"10", application.c_str(), options.database.c_str(), "UTF8", nullptr};
  PGconn* conn = PQconnectdbParams(keywords, values, 1);
  if (conn == nullptr) return Status::Unavailable("cannot connect to " + described + ": out of memory");
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string why = scrub(TrimRight(PQerrorMessage(conn)));
    PQfinish(conn);
    return Status::Unavailable("cannot connect to " + described + ": " + why);
  }
  PQsetNoticeReceiver(conn, &OnNotice, nullptr);
  TargetOptions session = options;
  if (options.scratch) session.lock = TargetOptions::Lock::kNone;
  std::unique_ptr<PostgresTarget> target(new PostgresTarget(conn, session, described));
  target->secret_ = secret;
  if (options.scratch) {
    static std::atomic<int> scratch_count{0};
    target->scratch_schema_ =
        "sluice_scratch_" + std::to_string(::getpid()) + "_" +
        std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count()) +
        "_" + std::to_string(++scratch_count);
    Status created = target->Exec("CREATE SCHEMA " + QuoteIdentifier(target->scratch_schema_));
    if (!created.ok()) {
      target->scratch_schema_.clear();  // not ours to drop
      return created.WithContext("cannot create a scratch schema on " + described);
    }
  }
  SLUICE_RETURN_IF_ERROR(target->ConfigureSession());
  if (options.access != TargetOptions::Access::kCreate) {
    Result<bool> exists = target->RelationExists("_sluice_runs");
    if (!exists.ok()) return exists.status();
    if (!*exists) return Status::IoError("no sluice tables in " + described + " yet: `sluice run` creates them");
  }
  SLUICE_RETURN_IF_ERROR(target->TakeLock());
  return target;
}

Status PostgresTarget::ConfigureSession() {
  // A statement waits for another session's locks as long as SQLite waits
  // for a busy database ([target] busy_timeout); then it fails as
  // Unavailable, which `--every` retries.
  std::string settings = "SET lock_timeout = " + std::to_string(std::max(0, options_.busy_timeout_ms)) + ";";
  // A worker paused inside its batch (SIGSTOP, a frozen VM) would hold its
  // row locks and stall the partitions' new owners for as long as it sleeps:
  // the server ends a session idle in a transaction this long, the batch
  // rolls back, and the worker, when it wakes, reconnects and finds its
  // offsets moved (a conflict). sluice itself is idle inside a batch only
  // while it decodes the batch's messages.
  settings += " SET idle_in_transaction_session_timeout = '120s';";
  if (options_.access == TargetOptions::Access::kReadOnly) settings += " SET default_transaction_read_only = on;";
  // A scratch target's schema comes first, whatever the URL or the role chose.
  if (!scratch_schema_.empty()) settings += " SET search_path = " + QuoteIdentifier(scratch_schema_) + ";";
  // sluice's SQL functions (schema sluice_functions, see Prepare) after the schemas the
  // URL or the role chose: an unqualified name finds the user's tables and
  // functions first (and pg_catalog's, which PostgreSQL searches first).
  settings +=
      " SELECT set_config('search_path', CASE WHEN btrim(current_setting('search_path')) = '' THEN 'sluice_functions' "
      "ELSE current_setting('search_path') || ', sluice_functions' END, false) "
      "WHERE NOT string_to_array(replace(current_setting('search_path'), ' ', ''), ',') @> ARRAY['sluice_functions'];";
  return Exec(settings).WithContext("cannot set up the session on " + described_);
}

Status PostgresTarget::TakeLock() {
  if (options_.lock == TargetOptions::Lock::kNone) return Status::Ok();
  const bool exclusive = options_.lock == TargetOptions::Lock::kExclusive;
  const std::string key = "sluice:" + options_.pipeline;
  const std::string function = exclusive ? "pg_try_advisory_lock" : "pg_try_advisory_lock_shared";
  Result<Rows> taken = Run("SELECT " + function + "(hashtextextended($1, 0))", {key});
  if (!taken.ok()) return taken.status().WithContext("cannot take the pipeline lock on " + described_);
  if (taken->Bool(0, 0)) return Status::Ok();
  // Who holds it: the sessions with the lock, by their application name
  // (sluice sets "sluice pid N on HOST").
  std::string holders = "another session";
  Result<Rows> who = Run(
      "WITH k AS (SELECT hashtextextended($1, 0) AS key) "
      "SELECT string_agg(coalesce(nullif(a.application_name, ''), 'a session') || ' (server process ' || l.pid || "
      "coalesce(', since ' || to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '') || "
      "')', ', ' ORDER BY l.pid) "
      "FROM k, pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
      "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND l.pid <> pg_backend_pid() "
      "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
      "AND l.classid = ((k.key >> 32) & 4294967295)::oid AND l.objid = (k.key & 4294967295)::oid",
      {key});
  if (who.ok() && !who->empty() && !who->IsNull(0, 0)) holders = who->Text(0, 0);
  return Status::Conflict("pipeline '" + options_.pipeline + "' in " + described_ + " is in use by " + holders +
                          " (advisory lock hashtextextended('" + key + "', 0)); " +
                          (options_.lock_hint.empty() ? std::string(kRunHint) : options_.lock_hint));
}

bool PostgresTarget::usable() const { return replaced_.empty() && PQstatus(conn_) != CONNECTION_BAD; }

Result<std::string> PostgresTarget::Identity() {
  // The database's and the offsets table's object ids: both change when the
  // database is dropped and created again (or restored from a dump), or the
  // catalog tables are; neither changes across a restart or a failover to
  // a physical replica.
  Result<Rows> identity = Run(
      "SELECT (SELECT oid FROM pg_database WHERE datname = current_database())::text || '/' || "
      "coalesce(to_regclass('_sluice_offsets')::oid::text, 'none')");
  if (!identity.ok()) return identity.status();
  return identity->Text(0, 0);
}

Status PostgresTarget::Reconnect() {
  // A server restart (a failover, pg_ctl restart) takes a few seconds: try
  // again with backoff for as long as a statement waits for another
  // session's lock ([target] busy_timeout), then give up naming the server.
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const std::chrono::milliseconds patience(std::max(0, options_.busy_timeout_ms));
  std::chrono::milliseconds pause(100);
  if (!replaced_.empty()) return Status::IoError(replaced_);
  session_ready_ = false;
  spdlog::warn("lost the connection to {}; connecting again (for up to {:.1f}s, [target] busy_timeout)", described_,
               patience.count() / 1000.0);
  while (true) {
    PQreset(conn_);
    if (PQstatus(conn_) == CONNECTION_OK) break;
    const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    if (waited >= patience || Interrupted()) {
      return Status::Unavailable("lost the connection to " + described_ + " and cannot connect again (tried for " +
                                 FormatSeconds(waited) + ", [target] busy_timeout): " + ConnectionError());
    }
    const auto until = Clock::now() + std::min(pause, patience - waited);
    while (Clock::now() < until && !Interrupted()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    pause = std::min(pause * 2, std::chrono::milliseconds(2000));
  }
  spdlog::info("connected to {} again after {}", described_,
               FormatSeconds(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start)));
  SLUICE_RETURN_IF_ERROR(ConfigureSession());
  if (!identity_.empty()) {
    // The offsets this process holds belong to the database it prepared: a
    // database created anew under the same name would take this batch as
    // its first and skip everything before it.
    Result<std::string> now = Identity();
    if (!now.ok()) return now.status();
    if (*now != identity_) {
      replaced_ = "the database " + described_ +
                  " was dropped and created again (or sluice's tables in it were) while sluice had it open; "
                  "nothing more is committed into it: start sluice again to begin there from [source] start";
      return Status::IoError(replaced_);
    }
  }
  // The old session's lock and temporary tables went with it.
  SLUICE_RETURN_IF_ERROR(TakeLock());
  if (prepared_) SLUICE_RETURN_IF_ERROR(CreateStaging().WithContext("cannot create the staging table again"));
  session_ready_ = true;
  return Status::Ok();
}

std::string PostgresTarget::ConnectionError() const {
  // libpq's message spans lines ("...failed: Connection refused\n\tIs the
  // server running...?"): one line for the log.
  std::string why = TrimRight(PQerrorMessage(conn_));
  why = ReplaceAll(ReplaceAll(std::move(why), "\n\t", ". "), "\n", "; ");
  return Scrub(CleanText(why.empty() ? "unknown error" : why));
}

// --- Statements ------------------------------------------------------------------

Status PostgresTarget::Failure(const PGresult* result, const std::string& context) const {
  const char* primary = ErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
  const char* state = ErrorField(result, PG_DIAG_SQLSTATE);
  std::string message;
  if (primary != nullptr) {
    message = primary;
  } else {
    // An error of libpq's own (the connection): its first line says it.
    message = TrimRight(result != nullptr ? PQresultErrorMessage(result) : "");
    if (message.empty()) message = TrimRight(PQerrorMessage(conn_));
    message = message.substr(0, message.find('\n'));
  }
  if (message.empty()) message = "unknown error";
  message = Scrub(CleanText(message));
  if (!context.empty()) message = context + ": " + message;
  // Every error the server sends has a SQLSTATE; one without comes from
  // libpq, which has lost (or is losing) the connection. Either way the
  // batch's transaction is gone, and the next attempt connects again.
  if (PQstatus(conn_) == CONNECTION_BAD || state == nullptr || SessionEnded(state)) {
    return Status::RetryBatch(message + " (the connection to " + described_ + " was lost)");
  }
  if (AbortedByOthers(state)) return Status::RetryBatch(message);
  if (Busy(state)) return Status::Unavailable(message);
  return Status::SqlError(message);
}

Result<PostgresTarget::Rows> PostgresTarget::Run(const std::string& sql, const Params& params) {
  std::vector<std::string> texts;
  texts.reserve(params.size());
  for (const auto& param : params) texts.push_back(param ? CleanText(*param) : std::string());
  std::vector<const char*> values;
  for (size_t i = 0; i < params.size(); ++i) values.push_back(params[i] ? texts[i].c_str() : nullptr);
  Rows rows(PQexecParams(conn_, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(), nullptr,
                         nullptr, 0));
  const ExecStatusType status = PQresultStatus(rows.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) return Failure(rows.get());
  return rows;
}

Result<PostgresTarget::Rows> PostgresTarget::RunBetweenBatches(const std::string& sql, const Params& params) {
  if (in_batch_) return Run(sql, params);
  if (!usable() || !session_ready_) SLUICE_RETURN_IF_ERROR(Reconnect());
  Result<Rows> rows = Run(sql, params);
  if (rows.ok() || usable()) return rows;
  // The server ended the session since the last statement (a restart):
  // nothing was under way, so connect again and ask once more.
  SLUICE_RETURN_IF_ERROR(Reconnect());
  return Run(sql, params);
}

Status PostgresTarget::Exec(const std::string& sql) {
  ResultPtr result(PQexec(conn_, sql.c_str()));
  const ExecStatusType status = PQresultStatus(result.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) return Failure(result.get());
  return Status::Ok();
}

Status PostgresTarget::CopyIn(const std::string& copy_sql, const std::string& data) {
  {
    ResultPtr started(PQexec(conn_, copy_sql.c_str()));
    if (PQresultStatus(started.get()) != PGRES_COPY_IN) return Failure(started.get());
  }
  constexpr size_t kChunk = 1u << 20;
  bool sent = true;
  for (size_t at = 0; at < data.size() && sent; at += kChunk) {
    const size_t length = std::min(kChunk, data.size() - at);
    sent = PQputCopyData(conn_, data.data() + at, static_cast<int>(length)) == 1;
  }
  sent = PQputCopyEnd(conn_, sent ? nullptr : "sending the rows failed") == 1 && sent;
  Status outcome;
  bool first = true;
  while (PGresult* raw = PQgetResult(conn_)) {
    ResultPtr result(raw);
    if (first && PQresultStatus(raw) != PGRES_COMMAND_OK) outcome = Failure(raw);
    first = false;
  }
  if (first && outcome.ok()) outcome = Failure(nullptr);
  if (!sent && outcome.ok()) outcome = Failure(nullptr);
  return outcome;
}

Result<bool> PostgresTarget::RelationExists(const std::string& name) {
  Result<Rows> found = Run("SELECT to_regclass($1) IS NOT NULL", {QuoteIdentifier(name)});
  if (!found.ok()) return found.status();
  return found->Bool(0, 0);
}

// --- Catalog -------------------------------------------------------------------

Status PostgresTarget::Install() {
  // Several workers may start at once: one installs, the others wait and
  // then find the tables.
  SLUICE_RETURN_IF_ERROR(Exec("SELECT pg_advisory_xact_lock(hashtextextended('sluice-install', 0))"));
  // The catalog the search path reaches must be in the schema new tables go
  // to: otherwise (a schema created later in front of it, such as one named
  // after the role, which "$user" puts first) CREATE TABLE IF NOT EXISTS
  // would make a second, empty catalog there, and the pipeline would read
  // everything again.
  Result<Rows> placed = Run(
      "SELECT n.nspname, coalesce(current_schema(), '') FROM pg_class c JOIN pg_namespace n ON n.oid = "
      "c.relnamespace WHERE c.oid = to_regclass('_sluice_offsets')");
  if (!placed.ok()) return placed.status();
  if (!placed->empty() && placed->Text(0, 0) != placed->Text(0, 1)) {
    return Status::InvalidConfig(
        "the pipeline's catalog (_sluice_offsets) is in schema " + QuoteIdentifier(placed->Text(0, 0)) +
        ", but new tables would go to schema " + QuoteIdentifier(placed->Text(0, 1)) +
        " (the first schema of the search path that exists): a schema was created in front of it. Put " +
        QuoteIdentifier(placed->Text(0, 0)) + " first in the search path (options=-csearch_path=" +
        placed->Text(0, 0) + " in the URL) or move sluice's tables; nothing was read");
  }
  SLUICE_RETURN_IF_ERROR(Exec(R"sql(
CREATE TABLE IF NOT EXISTS _sluice_offsets (
  pipeline text NOT NULL,
  topic text NOT NULL,
  "partition" integer NOT NULL,
  next_offset bigint NOT NULL,
  run_id bigint,
  updated_at text NOT NULL,
  last_offset bigint,
  last_fingerprint bigint,
  PRIMARY KEY (pipeline, topic, "partition")
);
CREATE TABLE IF NOT EXISTS _sluice_checks (
  pipeline text NOT NULL,
  "check" text NOT NULL,
  severity text NOT NULL,
  "rows" bigint NOT NULL,
  sample text,
  run_id bigint,
  checked_at text NOT NULL,
  PRIMARY KEY (pipeline, "check")
);
CREATE TABLE IF NOT EXISTS _sluice_runs (
  run_id bigserial PRIMARY KEY,
  started_at text NOT NULL,
  finished_at text,
  status text NOT NULL,
  messages bigint NOT NULL DEFAULT 0,
  staged bigint NOT NULL DEFAULT 0,
  quarantined bigint NOT NULL DEFAULT 0,
  offsets text,
  error text,
  notes text,
  fetch_ms double precision,
  stage_ms double precision,
  parse_ms double precision,
  steps_ms double precision,
  commit_ms double precision
);
CREATE TABLE IF NOT EXISTS _sluice_quarantine (
  quarantine_id bigserial PRIMARY KEY,
  pipeline text NOT NULL DEFAULT '',
  topic text,
  "partition" integer,
  "offset" bigint,
  "timestamp" bigint,
  key text,
  value text,
  error text NOT NULL,
  run_id bigint,
  quarantined_at text,
  key_bytes bytea,
  value_bytes bytea,
  CONSTRAINT _sluice_quarantine_message UNIQUE (pipeline, topic, "partition", "offset")
);
CREATE INDEX IF NOT EXISTS _sluice_quarantine_by_run ON _sluice_quarantine (run_id);
CREATE TABLE IF NOT EXISTS _sluice_seeds (
  name text PRIMARY KEY,
  checksum text NOT NULL,
  "rows" bigint NOT NULL,
  loaded_at text NOT NULL
);
CREATE TABLE IF NOT EXISTS _sluice_inputs (
  pipeline text NOT NULL,
  input text NOT NULL,
  next_offset bigint NOT NULL,
  bytes bigint NOT NULL,
  checksum text NOT NULL,
  recorded_at text NOT NULL,
  PRIMARY KEY (pipeline, input, next_offset)
);
)sql"));
  installed_ = true;
  return Status::Ok();
}

Status PostgresTarget::EnsureInstalled() {
  if (installed_) return Status::Ok();
  Result<bool> exists = RelationExists("_sluice_inputs");
  if (!exists.ok()) return exists.status();
  if (*exists) {
    installed_ = true;
    return Status::Ok();
  }
  if (in_batch_) return Install();
  SLUICE_RETURN_IF_ERROR(Exec("BEGIN"));
  Status st = Install();
  if (st.ok()) st = Exec("COMMIT");
  if (!st.ok() && usable()) (void)Exec("ROLLBACK");
  return st;
}

Status PostgresTarget::CreateStaging() {
  std::string columns, names;
  for (size_t i = 0; i < columns_.size(); ++i) {
    columns += QuoteIdentifier(column_names_[i]) + " " + StagingType(columns_[i].type) + ", ";
    names += QuoteIdentifier(column_names_[i]) + ", ";
  }
  // Temporary: private to this session (workers sharing a database never
  // see each other's batch) and never written to the WAL.
  return Exec(std::string("DROP VIEW IF EXISTS pg_temp.batch; DROP TABLE IF EXISTS pg_temp.") + kStagingTable +
              "; CREATE TEMPORARY TABLE " + kStagingTable + " (" + columns +
              "_kafka_topic text, _kafka_partition integer, _kafka_offset bigint, _kafka_timestamp bigint, "
              "_kafka_key text, _kafka_value text, _sluice_run_id bigint); "
              "CREATE TEMPORARY VIEW batch AS SELECT " + names +
              "_kafka_topic, _kafka_partition, _kafka_offset, _kafka_timestamp, _kafka_key, _kafka_value FROM "
              "pg_temp." + kStagingTable + ";");
}

Status PostgresTarget::Prepare(const std::optional<SqlFile>& schema, const std::vector<ColumnSpec>& columns,
                               std::chrono::milliseconds retention) {
  if (retention.count() > 0) {
    return Status::InvalidConfig("[staging] retention: keeping past batches is not supported for PostgreSQL targets "
                                 "yet; remove it (" + described_ + ")");
  }
  if (in_batch_) return Status::SqlError("internal error: Prepare() inside a batch on " + described_);
  columns_ = columns;
  column_names_.clear();
  for (const auto& column : columns_) column_names_.push_back(FoldedName(column.name));
  copy_sql_ = std::string("COPY pg_temp.") + kStagingTable + " (";
  for (const auto& name : column_names_) copy_sql_ += QuoteIdentifier(name) + ", ";
  copy_sql_ += "_kafka_topic, _kafka_partition, _kafka_offset, _kafka_timestamp, _kafka_key, _kafka_value, "
               "_sluice_run_id) FROM STDIN";

  SLUICE_RETURN_IF_ERROR(Exec("BEGIN"));
  in_batch_ = true;
  Status st = Install().WithContext("cannot create sluice's tables in " + described_);
  // sluice's SQL functions (schema `sluice_functions`, on the session's search_path
  // after the user's schemas), under Install()'s advisory lock so that
  // workers starting together do not replace them concurrently. Replaced only
  // when their version changed. A role that may not create the schema still
  // runs the pipeline: its steps cannot use the functions.
  if (st.ok()) {
    Result<Rows> version =
        Run("SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = 'sluice_functions'");
    if (!version.ok()) {
      st = version.status();
    } else if (version->empty() || version->IsNull(0, 0) || version->Text(0, 0) != kFunctionsVersion) {
      st = Exec("SAVEPOINT sluice_functions");
      if (st.ok()) {
        Status created = Exec(FunctionsSql());
        if (created.ok()) {
          st = Exec("RELEASE SAVEPOINT sluice_functions");
        } else {
          spdlog::warn("cannot create sluice's SQL functions (schema sluice) in {}; steps cannot use date_trunc, "
                       "date_diff, epoch_ms, to_timestamp or json_extract with their SQLite meaning: {}",
                       described_, created.message());
          st = Exec("ROLLBACK TO SAVEPOINT sluice_functions");
        }
      }
    }
  }
  if (st.ok() && schema) st = RunFile(*schema);
  if (st.ok()) st = CreateStaging().WithContext("cannot create the staging table");
  if (!st.ok()) {
    RollbackBatch();
    return st;
  }
  in_batch_ = false;
  SLUICE_RETURN_IF_ERROR(Exec("COMMIT").WithContext("cannot commit sluice's tables to " + described_));
  Result<std::string> identity = Identity();
  if (!identity.ok()) return identity.status();
  identity_ = *identity;
  prepared_ = true;
  return Status::Ok();
}

Status PostgresTarget::CheckSteps(const std::vector<SqlFile>& steps, const std::vector<SqlFile>& checks,
                                  const std::vector<SeedFile>& seeds) {
  if (!prepared_) return Status::SqlError("internal error: CheckSteps() before Prepare() on " + described_);
  SLUICE_RETURN_IF_ERROR(BeginBatch());
  Status st = LoadSeeds(seeds, nullptr);
  if (st.ok()) st = ClearStaging();
  for (size_t i = 0; st.ok() && i < steps.size(); ++i) st = RunFile(steps[i]);
  // Checks run too (over the empty batch's results), so a broken one is
  // found before anything is consumed; what they find here is not judged.
  for (size_t i = 0; st.ok() && i < checks.size(); ++i) {
    Result<CheckOutcome> outcome = RunCheck(checks[i]);
    if (!outcome.ok()) st = outcome.status();
  }
  RollbackBatch();
  return st;
}

Status PostgresTarget::CheckSeed(const SeedFile& seed) {
  // In a transaction that is rolled back: checking leaves nothing behind.
  SLUICE_RETURN_IF_ERROR(BeginBatch());
  Status st = Install();
  if (st.ok()) st = LoadSeeds({seed}, nullptr);
  RollbackBatch();
  return st;
}

// --- The batch -------------------------------------------------------------------

Status PostgresTarget::BeginBatch() {
  if (in_batch_) return Status::SqlError("internal error: a batch is already open on " + described_);
  // A batch starts on a whole session: connected, set up, holding the
  // pipeline lock (a reconnection whose set-up failed is tried again here).
  if (!usable() || !session_ready_) SLUICE_RETURN_IF_ERROR(Reconnect());
  if (PQtransactionStatus(conn_) != PQTRANS_IDLE) (void)Exec("ROLLBACK");
  DiscardBuffers();
  Status begun = Exec("BEGIN");
  if (!begun.ok() && !usable()) {
    // The server closed the connection between batches (a restart, an idle
    // timeout, pg_terminate_backend): nothing of the batch ran yet, so
    // connect again and begin once more.
    spdlog::debug("begin on {}: {}", described_, begun.message());
    SLUICE_RETURN_IF_ERROR(Reconnect());
    begun = Exec("BEGIN");
  }
  SLUICE_RETURN_IF_ERROR(begun.WithContext("cannot begin a batch on " + described_));
  in_batch_ = true;
  return Status::Ok();
}

Status PostgresTarget::CommitBatch() {
  if (!in_batch_) return Status::SqlError("internal error: no batch is open on " + described_);
  Status flushed = Flush();
  if (!flushed.ok()) {
    RollbackBatch();
    return flushed;
  }
  if (PQtransactionStatus(conn_) != PQTRANS_INTRANS) {
    Status failed = usable() ? Status::SqlError("cannot commit the batch to " + described_ +
                                                ": a statement of the batch failed, so the server rolled it back")
                             : Failure(nullptr, "cannot commit the batch to " + described_);
    RollbackBatch();
    return failed;
  }
  ResultPtr result(PQexec(conn_, "COMMIT"));
  if (PQresultStatus(result.get()) != PGRES_COMMAND_OK) {
    Status failed = Failure(result.get(), "cannot commit the batch to " + described_);
    if (!usable()) {
      // Whether the server committed is unknown. Running the batch again is
      // safe: the next attempt locks the partitions' offsets and compares
      // them with where it started, so a batch that did commit is rolled
      // back as a conflict and reading carries on from the stored offsets
      // (nothing twice, nothing skipped).
      failed = Status::RetryBatch(failed.message() +
                                  "; whether the batch committed is unknown: the next attempt starts from the offsets "
                                  "the database holds");
    }
    RollbackBatch();
    return failed;
  }
  in_batch_ = false;
  if (std::strcmp(PQcmdStatus(result.get()), "ROLLBACK") == 0) {
    return Status::SqlError("cannot commit the batch to " + described_ + ": the server rolled it back");
  }
  return Status::Ok();
}

void PostgresTarget::RollbackBatch() {
  DiscardBuffers();
  if (usable() && PQtransactionStatus(conn_) != PQTRANS_IDLE) {
    Status rolled_back = Exec("ROLLBACK");
    if (!rolled_back.ok()) spdlog::debug("rollback on {}: {}", described_, rolled_back.message());
  }
  in_batch_ = false;
}

Result<int64_t> PostgresTarget::BeginRun(const std::string& started_at) {
  Result<Rows> inserted =
      Run("INSERT INTO _sluice_runs (started_at, status) VALUES ($1, 'running') RETURNING run_id", {started_at});
  if (!inserted.ok()) return inserted.status();
  return inserted->Int(0, 0);
}

Status PostgresTarget::ClearStaging() {
  if (!prepared_) return Status::SqlError("internal error: staging used before Prepare()");
  staging_buffer_.clear();
  return Exec(std::string("TRUNCATE pg_temp.") + kStagingTable).WithContext("cannot empty the staging table");
}

void PostgresTarget::DiscardBuffers() {
  staging_buffer_.clear();
  quarantine_buffer_.clear();
}

Status PostgresTarget::Stage(const Message& message, const DecodedRow& row, int64_t run_id, StageCounts* counts) {
  if (!prepared_) return Status::SqlError("internal error: staging used before Prepare()");
  // What PostgreSQL cannot store as the staging table's types goes to the
  // quarantine with the reason, like a message the decoder refused.
  std::optional<std::string> reason = row.error;
  if (!reason && message.key && !IsCleanUtf8(*message.key)) {
    reason = "the key is not UTF-8 text (or holds a NUL byte); a PostgreSQL target keeps _kafka_key as text";
  }
  if (!reason && message.value && !IsCleanUtf8(*message.value)) {
    reason = "the value is not UTF-8 text (or holds a NUL byte); a PostgreSQL target keeps _kafka_value as text";
  }
  for (size_t i = 0; !reason && i < row.cells.size() && i < columns_.size(); ++i) {
    const Cell& cell = row.cells[i];
    if (cell.kind != Cell::Kind::kText) continue;
    if (!IsCleanUtf8(cell.text)) {
      reason = "column " + columns_[i].name +
               ": the text is not valid UTF-8 or holds a NUL byte (\\u0000), which PostgreSQL text cannot store";
    } else if (columns_[i].type == ColumnType::kJson && HasJsonNul(cell.text)) {
      reason = "column " + columns_[i].name + ": the JSON holds \\u0000, which PostgreSQL's jsonb cannot store";
    }
  }
  if (reason) {
    quarantine_buffer_.push_back({message, CleanText(*reason), run_id});
    ++counts->quarantined;
    if (quarantine_buffer_.size() >= kQuarantineFlushRows) return FlushQuarantine();
    return Status::Ok();
  }
  std::string& out = staging_buffer_;
  for (const Cell& cell : row.cells) {
    switch (cell.kind) {
      case Cell::Kind::kNull: out += "\\N"; break;
      case Cell::Kind::kInt: out += std::to_string(cell.int_value); break;
      case Cell::Kind::kReal: out += FormatDouble(cell.real_value); break;
      case Cell::Kind::kText: AppendCopyText(&out, cell.text); break;
    }
    out += '\t';
  }
  AppendCopyText(&out, message.topic);
  out += '\t';
  out += std::to_string(message.partition);
  out += '\t';
  out += std::to_string(message.offset);
  out += '\t';
  out += message.timestamp ? std::to_string(*message.timestamp) : "\\N";
  out += '\t';
  if (message.key) AppendCopyText(&out, *message.key);
  else out += "\\N";
  out += '\t';
  if (message.value) AppendCopyText(&out, *message.value);
  else out += "\\N";
  out += '\t';
  out += std::to_string(run_id);
  out += '\n';
  ++counts->staged;
  if (staging_buffer_.size() >= kCopyFlushBytes) {
    std::string data;
    data.swap(staging_buffer_);
    return CopyIn(copy_sql_, data).WithContext("cannot write to the staging table");
  }
  return Status::Ok();
}

Status PostgresTarget::FlushQuarantine() {
  if (quarantine_buffer_.empty()) return Status::Ok();
  std::vector<QuarantineRow> rows;
  rows.swap(quarantine_buffer_);
  // Once per message, the latest reason winning: within the buffer too (one
  // INSERT may not change a row twice).
  std::map<std::tuple<std::string, int32_t, int64_t>, size_t> last;
  for (size_t i = 0; i < rows.size(); ++i) {
    last[{rows[i].message.topic, rows[i].message.partition, rows[i].message.offset}] = i;
  }
  const std::string now = NowIso();
  const std::string pipeline = EscapedLiteral(CleanText(options_.pipeline));
  auto text_or_bytes = [](const std::optional<std::string>& bytes, std::string* text, std::string* raw) {
    if (!bytes) {
      *text = *raw = "NULL";
    } else if (IsCleanUtf8(*bytes)) {
      *text = EscapedLiteral(*bytes);
      *raw = "NULL";
    } else {
      *text = "NULL";
      *raw = "decode('" + HexBytes(*bytes) + "', 'hex')";
    }
  };
  std::string values;
  size_t pending = 0;
  auto send = [&]() -> Status {
    if (pending == 0) return Status::Ok();
    std::string sql =
        "INSERT INTO _sluice_quarantine (pipeline, topic, \"partition\", \"offset\", \"timestamp\", key, value, "
        "key_bytes, value_bytes, error, run_id, quarantined_at) VALUES " +
        values +
        " ON CONFLICT (pipeline, topic, \"partition\", \"offset\") DO UPDATE SET \"timestamp\" = "
        "excluded.\"timestamp\", key = excluded.key, value = excluded.value, key_bytes = excluded.key_bytes, "
        "value_bytes = excluded.value_bytes, error = excluded.error, run_id = excluded.run_id, "
        "quarantined_at = excluded.quarantined_at";
    values.clear();
    pending = 0;
    return Exec(sql).WithContext("cannot write to _sluice_quarantine");
  };
  for (size_t i = 0; i < rows.size(); ++i) {
    const QuarantineRow& row = rows[i];
    const Message& message = row.message;
    if (last[{message.topic, message.partition, message.offset}] != i) continue;
    std::string key, key_bytes, value, value_bytes;
    text_or_bytes(message.key, &key, &key_bytes);
    text_or_bytes(message.value, &value, &value_bytes);
    values += std::string(pending ? ", " : "") + "(" + pipeline + ", " + EscapedLiteral(CleanText(message.topic)) +
              ", " + std::to_string(message.partition) + ", " + std::to_string(message.offset) + ", " +
              (message.timestamp ? std::to_string(*message.timestamp) : "NULL") + ", " + key + ", " + value + ", " +
              key_bytes + ", " + value_bytes + ", " + EscapedLiteral(row.error) + ", " + std::to_string(row.run_id) +
              ", " + EscapedLiteral(now) + ")";
    if (++pending == 500) SLUICE_RETURN_IF_ERROR(send());
  }
  return send();
}

Status PostgresTarget::Flush() {
  if (!staging_buffer_.empty()) {
    std::string data;
    data.swap(staging_buffer_);
    SLUICE_RETURN_IF_ERROR(CopyIn(copy_sql_, data).WithContext("cannot write to the staging table"));
  }
  return FlushQuarantine();
}

Status PostgresTarget::ClearPassedQuarantine(const std::vector<PartitionRange>& ranges, int64_t run_id) {
  SLUICE_RETURN_IF_ERROR(Flush());
  for (const auto& range : ranges) {
    Result<Rows> removed = Run(
        "DELETE FROM _sluice_quarantine WHERE pipeline = $1 AND topic = $2 AND \"partition\" = $3 AND \"offset\" "
        "BETWEEN $4 AND $5 AND run_id IS DISTINCT FROM $6",
        {options_.pipeline, range.partition.first, std::to_string(range.partition.second),
         std::to_string(range.first_offset), std::to_string(range.last_offset), std::to_string(run_id)});
    if (!removed.ok()) return removed.status();
  }
  return Status::Ok();
}

// --- Step files -------------------------------------------------------------------

Status PostgresTarget::RunFile(const SqlFile& file) {
  const std::string& text = file.text;
  auto where = [&](size_t at) { return file.display + ":" + std::to_string(LineAt(text, at)) + ": "; };
  const size_t nul = text.find('\0');
  if (nul != std::string::npos) return Status::SqlError(where(nul) + "the file holds a NUL byte");
  std::vector<SqlStatement> statements = SplitSql(text);
  for (const auto& statement : statements) {
    std::string refusal = Refusal(statement);
    if (!refusal.empty()) return Status::SqlError(where(statement.start) + refusal);
  }
  if (statements.empty()) return Status::Ok();
  SendOutcome outcome = Send(conn_, text, interrupt_, false, nullptr);
  if (!outcome.sent) return Failure(nullptr, file.display);
  if (outcome.error) {
    // The position PostgreSQL gives (a character of the text), else the
    // statement that failed (those before it completed).
    const char* position = ErrorField(outcome.error.get(), PG_DIAG_STATEMENT_POSITION);
    size_t at = 0;
    if (position != nullptr && std::atol(position) > 0) {
      at = ByteOffsetOfCharacter(text, std::atol(position));
    } else {
      at = statements[std::min(static_cast<size_t>(outcome.completed), statements.size() - 1)].start;
    }
    Status failed = Failure(outcome.error.get());
    std::string message = failed.message();
    if (outcome.cancelled) message = "interrupted";
    return SameKind(failed, where(at) + message);
  }
  if (in_batch_ && PQtransactionStatus(conn_) != PQTRANS_INTRANS) {
    return Status::SqlError(file.display + ": ended the batch transaction; transaction control is not allowed in "
                                           "pipeline SQL");
  }
  return Status::Ok();
}

Status PostgresTarget::RunStep(const SqlFile& step) {
  SLUICE_RETURN_IF_ERROR(Flush());
  // SQLite interrupts a running statement through its progress handler;
  // here Send() polls the check while the server works and cancels the
  // query (so no statement_timeout is needed).
  if (Interrupted()) return Status::SqlError(step.display + ": interrupted");
  return RunFile(step);
}

Result<CheckOutcome> PostgresTarget::RunCheck(const SqlFile& check) {
  SLUICE_RETURN_IF_ERROR(Flush());
  const std::string& text = check.text;
  auto where = [&](size_t at) { return check.display + ":" + std::to_string(LineAt(text, at)) + ": "; };
  const size_t nul = text.find('\0');
  if (nul != std::string::npos) return Status::SqlError(where(nul) + "the file holds a NUL byte");
  std::vector<SqlStatement> statements = SplitSql(text);
  if (statements.empty()) return Status::SqlError(where(0) + "a check holds one query (SELECT the rows that break it)");
  if (statements.size() > 1) {
    return Status::SqlError(where(statements[1].start) +
                            "a check holds exactly one query; put further checks in files of their own");
  }
  const std::string readonly_rule =
      "a check is one read-only query that returns the rows breaking it (SELECT ...); it may not change anything";
  const std::string first = statements[0].words.empty() ? "" : statements[0].words[0];
  if (first != "select" && first != "with" && first != "values" && first != "table") {
    return Status::SqlError(where(statements[0].start) + readonly_rule);
  }
  if (Interrupted()) return Status::SqlError(check.display + ": interrupted");
  // In a savepoint that is rolled back, read-only: a function or a
  // data-modifying WITH cannot change anything either.
  const bool own_transaction = PQtransactionStatus(conn_) == PQTRANS_IDLE;
  SLUICE_RETURN_IF_ERROR(Exec(own_transaction ? "BEGIN READ ONLY"
                                              : "SAVEPOINT sluice_check; SET LOCAL transaction_read_only = on"));
  CheckOutcome outcome;
  int fields = -1;
  std::vector<std::string> names;
  SendOutcome sent = Send(conn_, text, interrupt_, true, [&](const PGresult* result) {
    if (fields < 0) {
      fields = PQnfields(result);
      for (int column = 0; column < fields; ++column) names.push_back(PQfname(result, column));
    }
    for (int row = 0; row < PQntuples(result); ++row) {
      if (outcome.sample.size() < 3) {
        std::string line;
        for (int column = 0; column < fields && column < PQnfields(result); ++column) {
          const bool null = PQgetisnull(result, row, column) != 0;
          line += (column ? ", " : "") + names[column] + "=" + (null ? "NULL" : PQgetvalue(result, row, column));
        }
        outcome.sample.push_back(line);
      }
      ++outcome.rows;
    }
  });
  Status ended = usable() ? Exec(own_transaction ? "ROLLBACK" : "ROLLBACK TO SAVEPOINT sluice_check; "
                                                                "RELEASE SAVEPOINT sluice_check")
                          : Status::Ok();
  if (!sent.sent) return Failure(nullptr, check.display);
  if (sent.error) {
    const char* position = ErrorField(sent.error.get(), PG_DIAG_STATEMENT_POSITION);
    const char* state = ErrorField(sent.error.get(), PG_DIAG_SQLSTATE);
    size_t at = position != nullptr && std::atol(position) > 0 ? ByteOffsetOfCharacter(text, std::atol(position))
                                                                : statements[0].start;
    Status failed = Failure(sent.error.get());
    std::string message = sent.cancelled ? "interrupted" : failed.message();
    if (state != nullptr && std::strcmp(state, "25006") == 0) message = readonly_rule + " (" + message + ")";
    return SameKind(failed, where(at) + message);
  }
  SLUICE_RETURN_IF_ERROR(ended);
  if (fields <= 0) return Status::SqlError(where(statements[0].start) + readonly_rule);
  return outcome;
}

Status PostgresTarget::RecordCheck(const std::string& check, const std::string& severity, int64_t rows,
                                   const std::string& sample, int64_t run_id) {
  SLUICE_RETURN_IF_ERROR(Flush());
  Result<Rows> recorded = Run(
      "INSERT INTO _sluice_checks (pipeline, \"check\", severity, \"rows\", sample, run_id, checked_at) "
      "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (pipeline, \"check\") DO UPDATE SET severity = "
      "excluded.severity, \"rows\" = excluded.\"rows\", sample = excluded.sample, run_id = excluded.run_id, "
      "checked_at = excluded.checked_at",
      {options_.pipeline, check, severity, std::to_string(rows),
       sample.empty() ? std::nullopt : std::optional<std::string>(sample), std::to_string(run_id), NowIso()});
  return recorded.ok() ? Status::Ok() : recorded.status();
}

// --- Offsets -----------------------------------------------------------------------

Result<OffsetMap> PostgresTarget::StoredOffsets(const std::vector<TopicPartition>& partitions) {
  SLUICE_RETURN_IF_ERROR(Flush());
  std::vector<TopicPartition> sorted = partitions;
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  OffsetMap stored;
  for (const auto& tp : sorted) {
    const Params key{options_.pipeline, tp.first, std::to_string(tp.second)};
    if (in_batch_) {
      // Two workers committing the same partition serialize here (in the
      // same order everywhere, so they cannot deadlock): the second reads
      // the first's offsets once it committed, and the engine's
      // compare-and-set rolls it back. A row lock alone would not do for a
      // partition that has no row yet.
      Result<Rows> locked = Run(
          "SELECT pg_advisory_xact_lock(hashtext('sluice-offsets'), hashtext($1 || chr(10) || $2 || chr(10) || $3))",
          key);
      if (!locked.ok()) return locked.status();
    }
    Result<Rows> row = Run(std::string("SELECT next_offset FROM _sluice_offsets WHERE pipeline = $1 AND topic = $2 AND "
                                       "\"partition\" = $3") +
                               (in_batch_ ? " FOR UPDATE" : ""),
                           key);
    if (!row.ok()) return row.status();
    if (!row->empty()) stored[tp] = row->Int(0, 0);
  }
  return stored;
}

Status PostgresTarget::StoreOffsetRows(const OffsetMap& next, int64_t run_id, const LastReadMap* last_read) {
  // With `last_read`, partitions it names get their last message's offset
  // and fingerprint and the others keep theirs; without (a reset moved the
  // positions by hand), both are cleared.
  const std::string now = NowIso();
  for (const auto& [tp, offset] : next) {
    if (offset < 0) {
      return Status::InvalidInput("refusing to store offset " + std::to_string(offset) + " for " + tp.first + "[" +
                                  std::to_string(tp.second) + "]: offsets are never negative");
    }
    std::optional<std::string> last_offset, last_fingerprint;
    if (last_read != nullptr) {
      auto last = last_read->find(tp);
      if (last != last_read->end()) {
        last_offset = std::to_string(last->second.first);
        last_fingerprint = std::to_string(last->second.second);
      }
    }
    Result<Rows> stored = Run(
        "INSERT INTO _sluice_offsets (topic, \"partition\", next_offset, run_id, updated_at, pipeline, last_offset, "
        "last_fingerprint) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
        "ON CONFLICT (pipeline, topic, \"partition\") DO UPDATE SET next_offset = excluded.next_offset, "
        "run_id = excluded.run_id, updated_at = excluded.updated_at, "
        "last_offset = CASE WHEN $9::boolean THEN coalesce(excluded.last_offset, _sluice_offsets.last_offset) END, "
        "last_fingerprint = CASE WHEN $9::boolean THEN coalesce(excluded.last_fingerprint, "
        "_sluice_offsets.last_fingerprint) END",
        {tp.first, std::to_string(tp.second), std::to_string(offset), std::to_string(run_id), now, options_.pipeline,
         last_offset, last_fingerprint, std::string(last_read != nullptr ? "true" : "false")});
    if (!stored.ok()) return stored.status();
  }
  return Status::Ok();
}

Status PostgresTarget::StoreOffsets(const OffsetMap& next, int64_t run_id, const LastReadMap* last_read) {
  SLUICE_RETURN_IF_ERROR(Flush());
  return StoreOffsetRows(next, run_id, last_read);
}

Result<int64_t> PostgresTarget::FinishRunRow(const RunRecord& run) {
  Params params{run.started_at,
                NowIso(),
                run.status,
                std::to_string(run.messages),
                std::to_string(run.staged),
                std::to_string(run.quarantined),
                RangesJson(run.ranges),
                run.error.empty() ? std::nullopt : std::optional<std::string>(run.error),
                run.notes.empty() ? std::nullopt : std::optional<std::string>(run.notes),
                FormatDouble(run.fetch_ms),
                FormatDouble(run.stage_ms),
                FormatDouble(run.steps_ms),
                FormatDouble(run.commit_ms),
                FormatDouble(run.parse_ms)};
  if (run.run_id == 0) {
    Result<Rows> inserted = Run(
        "INSERT INTO _sluice_runs (started_at, finished_at, status, messages, staged, quarantined, offsets, error, "
        "notes, fetch_ms, stage_ms, steps_ms, commit_ms, parse_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
        "$11, $12, $13, $14) RETURNING run_id",
        params);
    if (!inserted.ok()) return inserted.status();
    return inserted->Int(0, 0);
  }
  params.push_back(std::to_string(run.run_id));
  Result<Rows> updated = Run(
      "UPDATE _sluice_runs SET started_at = $1, finished_at = $2, status = $3, messages = $4, staged = $5, "
      "quarantined = $6, offsets = $7, error = $8, notes = $9, fetch_ms = $10, stage_ms = $11, steps_ms = $12, "
      "commit_ms = $13, parse_ms = $14 WHERE run_id = $15",
      params);
  if (!updated.ok()) return updated.status();
  return run.run_id;
}

Result<int64_t> PostgresTarget::FinishRun(const RunRecord& run) {
  if (in_batch_) {
    SLUICE_RETURN_IF_ERROR(Flush());
    return FinishRunRow(run);
  }
  // Outside a batch (a failed run recorded after its batch rolled back): one
  // statement, so a transaction of its own.
  if (usable() && PQtransactionStatus(conn_) != PQTRANS_IDLE) (void)Exec("ROLLBACK");
  return FinishRunRow(run);
}

Status PostgresTarget::RecordCommitTime(int64_t run_id, double commit_ms) {
  Result<Rows> updated = Run("UPDATE _sluice_runs SET commit_ms = $1 WHERE run_id = $2",
                             {FormatDouble(commit_ms), std::to_string(run_id)});
  return updated.ok() ? Status::Ok() : updated.status();
}

Result<OffsetMap> PostgresTarget::AllStoredOffsets() {
  Result<Rows> rows = RunBetweenBatches("SELECT topic, \"partition\", next_offset FROM _sluice_offsets WHERE pipeline = $1",
                          {options_.pipeline});
  if (!rows.ok()) return rows.status();
  OffsetMap stored;
  for (int row = 0; row < rows->size(); ++row) {
    stored[{rows->Text(row, 0), static_cast<int32_t>(rows->Int(row, 1))}] = rows->Int(row, 2);
  }
  return stored;
}

Result<LastReadMap> PostgresTarget::LastRead() {
  Result<Rows> rows = RunBetweenBatches(
      "SELECT topic, \"partition\", last_offset, last_fingerprint FROM _sluice_offsets WHERE pipeline = $1 AND "
      "last_offset IS NOT NULL AND last_fingerprint IS NOT NULL AND last_offset < next_offset",
      {options_.pipeline});
  if (!rows.ok()) return rows.status();
  LastReadMap last;
  for (int row = 0; row < rows->size(); ++row) {
    last[{rows->Text(row, 0), static_cast<int32_t>(rows->Int(row, 1))}] = {rows->Int(row, 2), rows->Int(row, 3)};
  }
  return last;
}

Result<std::vector<std::string>> PostgresTarget::OtherPipelines(const std::vector<std::string>& topics) {
  std::vector<std::string> names;
  std::set<std::string> seen;
  for (const auto& topic : topics) {
    Result<Rows> rows = Run(
        "SELECT DISTINCT pipeline FROM _sluice_offsets WHERE pipeline <> $1 AND topic = $2 ORDER BY pipeline",
        {options_.pipeline, topic});
    if (!rows.ok()) return rows.status();
    for (int row = 0; row < rows->size(); ++row) {
      if (seen.insert(rows->Text(row, 0)).second) names.push_back(rows->Text(row, 0));
    }
  }
  return names;
}

// --- Seeds ---------------------------------------------------------------------------

Status PostgresTarget::LoadChangedSeeds(const std::vector<SeedFile>& seeds, std::vector<std::string>* loaded) {
  SLUICE_RETURN_IF_ERROR(Flush());
  return LoadSeeds(seeds, loaded);
}

Status PostgresTarget::LoadSeeds(const std::vector<SeedFile>& seeds, std::vector<std::string>* loaded) {
  SLUICE_RETURN_IF_ERROR(CheckSeedNames(seeds));
  bool locked = false;
  for (const auto& seed : seeds) {
    // One snapshot: what is checksummed is what is loaded.
    Result<std::string> text = ReadSeedSnapshot(seed.path, seed.display);
    if (!text.ok()) return text.status();
    const std::string checksum = SeedChecksum(*text);
    const std::string table = FoldedName(seed.table);
    const std::string quoted = QuoteIdentifier(table);

    std::string relkind;  // of the relation the name finds, if any
    bool current = false;
    for (int attempt = 0; attempt < 2; ++attempt) {
      Result<Rows> stored = Run("SELECT checksum FROM _sluice_seeds WHERE lower(name) = lower($1)", {table});
      if (!stored.ok()) return stored.status();
      Result<Rows> existing = Run("SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)", {quoted});
      if (!existing.ok()) return existing.status();
      relkind = existing->empty() ? "" : existing->Text(0, 0);
      if (!stored->empty() && stored->Text(0, 0) == checksum && (relkind == "r" || relkind == "p")) {
        current = true;
        break;
      }
      if (stored->empty() && !relkind.empty()) {
        // Not loaded from a seed: schema.sql, a step or someone else created
        // it, and dropping it would lose its rows.
        const std::string kind = RelationKind(relkind);
        return Status::InvalidConfig(seed.display + ": the database already has a " + kind + " named " + table +
                                     " that sluice did not load from a seed (schema.sql, a step or a person created "
                                     "it); sluice will not drop it. Rename the seed file or that " + kind);
      }
      if (locked) break;
      // Workers sharing the database load a changed seed one at a time; the
      // one that waited looks again (the other may have loaded it).
      SLUICE_RETURN_IF_ERROR(Exec("SELECT pg_advisory_xact_lock(hashtextextended('sluice-seeds', 0))"));
      locked = true;
    }
    if (current) continue;

    Result<CsvTable> csv = ParseCsv(*text, seed.display);
    if (!csv.ok()) return csv.status();
    Result<std::vector<SeedColumn>> columns = PlanPostgresSeedColumns(*csv, seed.display);
    if (!columns.ok()) return columns.status();

    // Every cell as it will be loaded; declared types are checked here.
    std::vector<std::string> errors;
    size_t bad_cells = 0;
    std::string data;
    for (size_t row = 0; row < csv->rows.size(); ++row) {
      for (size_t index = 0; index < columns->size(); ++index) {
        const SeedColumn& column = (*columns)[index];
        const auto& cell = csv->rows[row][index];
        if (index > 0) data += '\t';
        if (!cell) {
          data += "\\N";
          continue;
        }
        int64_t integer = 0;
        double real = 0;
        if (column.type == SeedType::kInteger && ParseSeedInteger(*cell, &integer)) {
          data += std::to_string(integer);
        } else if (column.type == SeedType::kReal && ParseSeedReal(*cell, &real)) {
          data += *cell;
        } else if (column.type != SeedType::kText) {
          if (++bad_cells <= kMaxSeedErrorsPerFile) {
            errors.push_back(seed.display + ":" + std::to_string(csv->lines[row]) + ": column " + column.name +
                             " is declared " + SeedTypeName(column.type) + " but '" + *cell + "' is not " +
                             (column.type == SeedType::kInteger ? "a whole number that fits 64 bits" : "a number"));
          }
        } else {
          AppendCopyText(&data, *cell);
        }
      }
      data += '\n';
    }
    if (bad_cells > kMaxSeedErrorsPerFile) {
      errors.push_back(seed.display + ": " + std::to_string(bad_cells - kMaxSeedErrorsPerFile) +
                       " more cells that do not fit their declared type");
    }
    if (!errors.empty()) return Status::InvalidInput(JoinLines(errors));

    // A table with the same columns is emptied and filled again (views over
    // it keep working); otherwise it is created anew.
    bool same_shape = false;
    if (relkind == "r") {
      Result<Rows> shape = Run(
          "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = to_regclass($1) "
          "AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
          {quoted});
      if (!shape.ok()) return shape.status();
      same_shape = shape->size() == static_cast<int>(columns->size());
      for (int i = 0; same_shape && i < shape->size(); ++i) {
        same_shape = shape->Text(i, 0) == (*columns)[i].name && shape->Text(i, 1) == SeedKindType((*columns)[i].type);
      }
    }
    std::string column_list;
    for (const auto& column : *columns) column_list += (column_list.empty() ? "" : ", ") + QuoteIdentifier(column.name);
    Status st;
    if (same_shape) {
      st = Exec("TRUNCATE " + quoted);
    } else {
      std::string ddl = "DROP TABLE IF EXISTS " + quoted + "; CREATE TABLE " + quoted + " (";
      for (size_t index = 0; index < columns->size(); ++index) {
        const SeedColumn& column = (*columns)[index];
        ddl += (index ? ", " : "") + QuoteIdentifier(column.name) + " " + SeedKindType(column.type);
      }
      st = Exec(ddl + ")");
    }
    if (!st.ok()) return st.WithContext("cannot create seed table from " + seed.display);
    if (!data.empty() && !columns->empty()) {
      SLUICE_RETURN_IF_ERROR(CopyIn("COPY " + quoted + " (" + column_list + ") FROM STDIN", data)
                                 .WithContext("cannot load " + seed.display));
    }
    Result<Rows> forget = Run("DELETE FROM _sluice_seeds WHERE lower(name) = lower($1)", {table});
    if (!forget.ok()) return forget.status();
    Result<Rows> record = Run("INSERT INTO _sluice_seeds (name, checksum, \"rows\", loaded_at) VALUES ($1, $2, $3, $4)",
                              {table, checksum, std::to_string(csv->rows.size()), NowIso()});
    if (!record.ok()) return record.status();
    if (loaded) loaded->push_back(table);
  }
  return Status::Ok();
}

Result<bool> PostgresTarget::ForgetSeedChecksum(const std::string& table) {
  Result<bool> exists = RelationExists("_sluice_seeds");
  if (!exists.ok()) return exists.status();
  if (!*exists) return false;
  Result<Rows> forgotten = Run("UPDATE _sluice_seeds SET checksum = '' WHERE lower(name) = lower($1)", {table});
  if (!forgotten.ok()) return forgotten.status();
  return forgotten->Affected() > 0;
}

// --- Commands ----------------------------------------------------------------------------

Result<TargetReport> PostgresTarget::Report(int recent_runs) {
  TargetReport report;
  Result<OffsetMap> stored = AllStoredOffsets();
  if (!stored.ok()) return Status::IoError("cannot read " + described_ + ": " + stored.status().message());
  report.stored = std::move(*stored);
  Result<Rows> since_ok = Run(
      "SELECT floor(extract(epoch FROM now() - max(finished_at)::timestamptz))::bigint FROM _sluice_runs "
      "WHERE status = 'ok'");
  if (since_ok.ok() && !since_ok->empty() && !since_ok->IsNull(0, 0) && since_ok->Int(0, 0) >= 0) {
    report.seconds_since_ok = since_ok->Int(0, 0);
  }
  Result<Rows> runs = Run(
      "SELECT run_id, status, started_at, messages, staged, quarantined, "
      "coalesce(fetch_ms, 0) + coalesce(stage_ms, 0) + coalesce(steps_ms, 0) + coalesce(commit_ms, 0), "
      "coalesce(error, '') FROM _sluice_runs ORDER BY run_id DESC LIMIT $1",
      {std::to_string(recent_runs)});
  if (!runs.ok()) return runs.status();
  for (int row = 0; row < runs->size(); ++row) {
    RunSummary run;
    run.run_id = runs->Int(row, 0);
    run.status = runs->Text(row, 1);
    run.started_at = runs->Text(row, 2);
    run.messages = runs->Int(row, 3);
    run.staged = runs->Int(row, 4);
    run.quarantined = runs->Int(row, 5);
    run.duration_ms = runs->Double(row, 6);
    run.error = runs->Text(row, 7);
    report.runs.push_back(std::move(run));
  }
  Result<bool> has_checks = RelationExists("_sluice_checks");
  if (!has_checks.ok()) return has_checks.status();
  if (*has_checks) {
    Result<Rows> checks = Run(
        "SELECT \"check\", severity, \"rows\", run_id, coalesce(sample, '') FROM _sluice_checks WHERE pipeline = $1 "
        "ORDER BY \"check\"",
        {options_.pipeline});
    if (!checks.ok()) return checks.status();
    for (int row = 0; row < checks->size(); ++row) {
      CheckSummary check;
      check.check = checks->Text(row, 0);
      check.severity = checks->Text(row, 1);
      check.rows = checks->Int(row, 2);
      check.run_id = checks->Int(row, 3);
      check.sample = checks->Text(row, 4);
      report.checks.push_back(std::move(check));
    }
  }
  // Per reason: the partitions in order, each with its own offset range.
  Result<Rows> reasons = Run(
      "WITH per_partition AS (SELECT error, topic, \"partition\", count(*) AS n, min(\"offset\") AS first, "
      "max(\"offset\") AS last FROM _sluice_quarantine GROUP BY error, topic, \"partition\"), "
      "reasons AS (SELECT error, count(*) AS n, substr(min(coalesce(value, E'\\\\x' || encode(value_bytes, 'hex'))), "
      "1, 80) AS example FROM _sluice_quarantine GROUP BY error) "
      "SELECT r.error, r.n, (SELECT string_agg(p.topic || '[' || p.\"partition\" || '] ' || CASE WHEN p.first = "
      "p.last THEN p.first::text ELSE p.first || '..' || p.last END, ', ' ORDER BY p.topic, p.\"partition\") "
      "FROM per_partition p WHERE p.error = r.error), coalesce(r.example, '') FROM reasons r "
      "ORDER BY r.n DESC, r.error");
  if (!reasons.ok()) return reasons.status();
  for (int row = 0; row < reasons->size(); ++row) {
    QuarantineReason reason;
    reason.reason = reasons->Text(row, 0);
    reason.messages = reasons->Int(row, 1);
    reason.where = reasons->IsNull(row, 2) ? "" : reasons->Text(row, 2);
    reason.example = reasons->Text(row, 3);
    report.quarantine.push_back(std::move(reason));
  }
  return report;
}

Result<QuarantineSnapshot> PostgresTarget::TakeQuarantine() {
  QuarantineSnapshot snapshot;
  Result<Rows> rows = Run(
      "SELECT quarantine_id, topic, \"partition\", \"offset\", \"timestamp\", key, value, key_bytes, value_bytes "
      "FROM _sluice_quarantine WHERE pipeline = $1 ORDER BY quarantine_id",
      {options_.pipeline});
  if (!rows.ok()) return rows.status();
  // Messages at or past the stored position (after a reset) are read again
  // by the next run: replaying them too would stage them twice.
  Result<OffsetMap> stored = AllStoredOffsets();
  if (!stored.ok()) return stored.status();
  auto bytes = [&](int row, int text_column, int bytes_column) -> std::optional<std::string> {
    if (!rows->IsNull(row, text_column)) return rows->Text(row, text_column);
    if (rows->IsNull(row, bytes_column)) return std::nullopt;
    size_t length = 0;
    unsigned char* raw =
        PQunescapeBytea(reinterpret_cast<const unsigned char*>(PQgetvalue(rows->get(), row, bytes_column)), &length);
    if (raw == nullptr) return std::nullopt;
    std::string out(reinterpret_cast<const char*>(raw), length);
    PQfreemem(raw);
    return out;
  };
  for (int row = 0; row < rows->size(); ++row) {
    snapshot.through = rows->Int(row, 0);
    auto position = stored->find({rows->Text(row, 1), static_cast<int32_t>(rows->Int(row, 2))});
    if (position != stored->end() && rows->Int(row, 3) >= position->second) {
      ++snapshot.ahead;
      continue;
    }
    Message message;
    message.topic = rows->Text(row, 1);
    message.partition = static_cast<int32_t>(rows->Int(row, 2));
    message.offset = rows->Int(row, 3);
    if (!rows->IsNull(row, 4)) message.timestamp = rows->Int(row, 4);
    message.key = bytes(row, 5, 7);
    message.value = bytes(row, 6, 8);
    snapshot.messages.push_back(std::move(message));
  }
  return snapshot;
}

Status PostgresTarget::ForgetReplayed(int64_t through) {
  SLUICE_RETURN_IF_ERROR(Flush());
  // The rows replayed: up to the last one taken, except those the next run
  // reads again.
  Result<Rows> removed = Run(
      "DELETE FROM _sluice_quarantine AS q WHERE quarantine_id <= $1 AND pipeline = $2 AND NOT EXISTS (SELECT 1 "
      "FROM _sluice_offsets AS o WHERE o.pipeline = $2 AND o.topic = q.topic AND o.\"partition\" = q.\"partition\" "
      "AND q.\"offset\" >= o.next_offset)",
      {std::to_string(through), options_.pipeline});
  return removed.ok() ? Status::Ok() : removed.status();
}

Result<bool> PostgresTarget::HasTable(const std::string& name) { return RelationExists(name); }

Status PostgresTarget::DeleteInput(const std::string& input) {
  for (const char* sql : {"DELETE FROM _sluice_offsets WHERE pipeline = $1 AND topic = $2",
                          "DELETE FROM _sluice_inputs WHERE pipeline = $1 AND input = $2"}) {
    Result<Rows> removed = Run(sql, {options_.pipeline, input});
    if (!removed.ok()) return removed.status();
  }
  return Status::Ok();
}

Result<ResetOutcome> PostgresTarget::Reset(const ResetPlan& plan) {
  ResetOutcome outcome;
  if (in_batch_) return Status::SqlError("internal error: Reset() inside a batch on " + described_);
  SLUICE_RETURN_IF_ERROR(BeginBatch());
  auto run = [&]() -> Status {
    SLUICE_RETURN_IF_ERROR(Install());
    RunRecord record = plan.record;
    for (const auto& table : plan.truncate) {
      SLUICE_RETURN_IF_ERROR(Exec("TRUNCATE " + QuoteIdentifier(table)).WithContext("cannot empty " + table));
      // A seed's table is filled again by the next batch (its checksum is
      // forgotten), never left empty for good.
      Result<bool> seed = ForgetSeedChecksum(table);
      if (!seed.ok()) return seed.status();
      if (*seed) outcome.reloaded_seeds.push_back(table);
    }
    for (const auto& input : plan.forget_inputs) {
      SLUICE_RETURN_IF_ERROR(DeleteInput(input));
      record.notes += "; forgot the position of --from-file input " + input;
    }
    for (const auto& table : plan.truncate) record.notes += "; emptied " + table;
    for (const auto& table : outcome.reloaded_seeds) record.notes += "; seed " + table + " reloads at the next batch";
    record.run_id = 0;
    Result<int64_t> run_id = FinishRunRow(record);
    if (!run_id.ok()) return run_id.status();
    return StoreOffsetRows(plan.offsets, *run_id, nullptr);
  };
  Status st = run();
  if (!st.ok()) {
    RollbackBatch();
    return st;
  }
  SLUICE_RETURN_IF_ERROR(CommitBatch());
  return outcome;
}

Result<CompactOutcome> PostgresTarget::Compact(std::chrono::milliseconds /*retention*/) {
  // No staging history is kept on PostgreSQL (Prepare refuses a retention),
  // so nothing is pruned; VACUUM ANALYZE reclaims the catalog's dead rows.
  CompactOutcome outcome;
  const std::string size_sql =
      "SELECT coalesce(pg_total_relation_size(to_regclass('_sluice_runs')), 0) + "
      "coalesce(pg_total_relation_size(to_regclass('_sluice_quarantine')), 0)";
  Result<Rows> before = Run(size_sql);
  if (!before.ok()) return before.status();
  outcome.bytes_before = before->Int(0, 0);
  if (PQtransactionStatus(conn_) != PQTRANS_IDLE) (void)Exec("ROLLBACK");
  SLUICE_RETURN_IF_ERROR(Exec("VACUUM ANALYZE _sluice_runs, _sluice_quarantine").WithContext("compact"));
  Result<Rows> after = Run(size_sql);
  if (!after.ok()) return after.status();
  outcome.bytes_after = after->Int(0, 0);
  return outcome;
}

Result<std::optional<InputRecord>> PostgresTarget::FindInput(const std::string& input, int64_t next_offset) {
  Result<bool> exists = RelationExists("_sluice_inputs");
  if (!exists.ok()) return exists.status();
  if (!*exists) return std::optional<InputRecord>();
  Result<Rows> rows = Run(
      "SELECT bytes, checksum FROM _sluice_inputs WHERE pipeline = $1 AND input = $2 AND next_offset = $3",
      {options_.pipeline, input, std::to_string(next_offset)});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return std::optional<InputRecord>();
  InputRecord record;
  record.next_offset = next_offset;
  record.bytes = rows->Int(0, 0);
  record.checksum = rows->Text(0, 1);
  return std::optional<InputRecord>(record);
}

Status PostgresTarget::SaveInput(const std::string& input, const InputRecord& record) {
  SLUICE_RETURN_IF_ERROR(EnsureInstalled());
  Result<Rows> saved = Run(
      "INSERT INTO _sluice_inputs (pipeline, input, next_offset, bytes, checksum, recorded_at) "
      "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (pipeline, input, next_offset) DO UPDATE SET bytes = "
      "excluded.bytes, checksum = excluded.checksum, recorded_at = excluded.recorded_at",
      {options_.pipeline, input, std::to_string(record.next_offset), std::to_string(record.bytes), record.checksum,
       NowIso()});
  if (!saved.ok()) return saved.status();
  // Records behind the stored position are never checked again.
  Result<Rows> pruned = Run(
      "DELETE FROM _sluice_inputs WHERE pipeline = $1 AND input = $2 AND next_offset < "
      "(SELECT max(next_offset) FROM _sluice_offsets WHERE pipeline = $1 AND topic = $2)",
      {options_.pipeline, input});
  return pruned.ok() ? Status::Ok() : pruned.status();
}

Status PostgresTarget::ForgetInput(const std::string& input) {
  SLUICE_RETURN_IF_ERROR(EnsureInstalled());
  return DeleteInput(input);
}

Result<std::vector<std::string>> PostgresTarget::FileInputs(const std::vector<std::string>& topics) {
  std::set<std::string> names;
  Result<OffsetMap> stored = AllStoredOffsets();
  if (!stored.ok()) return stored.status();
  for (const auto& [tp, offset] : *stored) names.insert(tp.first);
  Result<bool> exists = RelationExists("_sluice_inputs");
  if (!exists.ok()) return exists.status();
  if (*exists) {
    Result<Rows> rows = Run("SELECT DISTINCT input FROM _sluice_inputs WHERE pipeline = $1", {options_.pipeline});
    if (!rows.ok()) return rows.status();
    for (int row = 0; row < rows->size(); ++row) names.insert(rows->Text(row, 0));
  }
  for (const auto& topic : topics) names.erase(topic);
  return std::vector<std::string>(names.begin(), names.end());
}

Result<QueryResult> PostgresTarget::Query(const std::string& sql) {
  SLUICE_RETURN_IF_ERROR(Flush());
  Result<Rows> rows = Run(sql);
  if (!rows.ok()) return rows.status();
  QueryResult result;
  const int columns = rows->columns();
  for (int column = 0; column < columns; ++column) result.columns.push_back(PQfname(rows->get(), column));
  for (int row = 0; row < rows->size(); ++row) {
    std::vector<Value> values;
    for (int column = 0; column < columns; ++column) {
      Value value;
      if (rows->IsNull(row, column)) {
        values.push_back(std::move(value));
        continue;
      }
      value.text = rows->Text(row, column);
      switch (PQftype(rows->get(), column)) {
        case 20:  // int8
        case 21:  // int2
        case 23:  // int4
          value.type = Value::Type::kInteger;
          value.integer = std::strtoll(value.text.c_str(), nullptr, 10);
          break;
        case 700:  // float4
        case 701:  // float8
          value.type = Value::Type::kReal;
          value.real = std::strtod(value.text.c_str(), nullptr);
          break;
        case 1700:  // numeric: exact, as the server writes it
          value.type = Value::Type::kDecimal;
          value.real = std::strtod(value.text.c_str(), nullptr);
          break;
        case 16:  // bool
          value.type = Value::Type::kInteger;
          value.integer = value.text == "t" ? 1 : 0;
          value.text = std::to_string(value.integer);
          break;
        case 17: {  // bytea
          size_t length = 0;
          unsigned char* raw = PQunescapeBytea(reinterpret_cast<const unsigned char*>(value.text.c_str()), &length);
          value.type = Value::Type::kBlob;
          if (raw != nullptr) {
            value.text.assign(reinterpret_cast<const char*>(raw), length);
            PQfreemem(raw);
          }
          break;
        }
        default:
          value.type = Value::Type::kText;
          break;
      }
      values.push_back(std::move(value));
    }
    result.rows.push_back(std::move(values));
  }
  return result;
}

}  // namespace sluice
