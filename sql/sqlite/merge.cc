// MERGE implementation: a tokenizer that knows SQLite's literals, quoted
// identifiers and comments; a small parser for the supported grammar; and a
// translator that copies the analyst's expressions verbatim into one of three
// statements in which the aliases they were written with are still in scope.
// Every generated statement is prepared while planning, so that mistakes
// (unknown columns, bad syntax inside an expression) surface as the MERGE's
// error before anything runs.
#include "sql/sqlite/merge.h"

#include <sqlite3.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>
#include <utility>
#include <vector>

namespace sluice {
namespace {

const char* const kGrammar =
    "supported: MERGE INTO target [AS t] USING source | (select ...) [AS s] "
    "ON t.key = s.expr [AND t.key2 = s.expr2 ...] "
    "[WHEN MATCHED [AND cond] THEN UPDATE SET * | UPDATE SET col = expr, ...] "
    "[WHEN NOT MATCHED [AND cond] THEN INSERT * | INSERT (col, ...) VALUES (expr, ...)]";

constexpr size_t kNone = std::string_view::npos;

// The SQL function that gives a source key the target column's affinity:
// sluice_merge_key(value, 'INTEGER' | 'TEXT' | 'BLOB' | 'REAL' | 'NUMERIC').
constexpr const char* kKeyFunction = "sluice_merge_key";

// A plan cache holds at most this many statements per connection.
constexpr size_t kMaxCachedPlans = 256;

std::string Lower(std::string_view text) {
  std::string lower(text);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower;
}

std::string Join(const std::vector<std::string>& parts, const std::string& separator) {
  std::string joined;
  for (size_t part_idx = 0; part_idx < parts.size(); ++part_idx) {
    if (part_idx > 0) joined += separator;
    joined += parts[part_idx];
  }
  return joined;
}

// A name as an analyst would type it in a message: bare when it can be.
std::string Shown(const std::string& name) { return IsPlainIdentifier(name) ? name : QuoteIdentifier(name); }

bool IsIdentStart(char c) {
  unsigned char byte = static_cast<unsigned char>(c);
  return std::isalpha(byte) || c == '_' || byte >= 0x80;
}

bool IsIdentChar(char c) {
  return IsIdentStart(c) || std::isdigit(static_cast<unsigned char>(c)) || c == '$';
}

// Skips whitespace and comments from `pos`; returns the next token's offset,
// or text.size(). An unterminated block comment runs to the end, as in SQLite.
size_t SkipBlank(std::string_view text, size_t pos) {
  while (pos < text.size()) {
    char c = text[pos];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v') {
      ++pos;
    } else if (text.compare(pos, 2, "--") == 0) {
      size_t end = text.find('\n', pos);
      pos = end == kNone ? text.size() : end + 1;
    } else if (text.compare(pos, 2, "/*") == 0) {
      size_t end = text.find("*/", pos + 2);
      pos = end == kNone ? text.size() : end + 2;
    } else {
      break;
    }
  }
  return pos;
}

// The offset just past the quoted token opened at `pos` by ', " or ` (closed
// by the same character, doubled to escape it) or by [ (closed by ]); kNone
// when it is never closed.
size_t QuotedEnd(std::string_view text, size_t pos) {
  char close = text[pos] == '[' ? ']' : text[pos];
  for (size_t i = pos + 1; i < text.size(); ++i) {
    if (text[i] != close) continue;
    if (close != ']' && i + 1 < text.size() && text[i + 1] == close) {
      ++i;  // a doubled quote stands for itself
      continue;
    }
    return i + 1;
  }
  return kNone;
}

enum class TokenKind { kWord, kQuoted, kString, kNumber, kParameter, kSymbol };

struct Token {
  TokenKind kind;
  size_t begin;
  size_t end;
};

// Splits `text` into tokens. Fails only on an unterminated literal or quoted
// identifier; anything else SQLite itself judges when the translation is
// prepared.
Result<std::vector<Token>> Tokenize(std::string_view text) {
  static const char* const kLongSymbols[] = {"->>", "||", "<=", ">=", "==", "!=", "<>", "<<", ">>", "->"};
  auto digit = [&](size_t at) { return at < text.size() && std::isdigit(static_cast<unsigned char>(text[at])); };
  std::vector<Token> tokens;
  size_t pos = SkipBlank(text, 0);
  while (pos < text.size()) {
    char c = text[pos];
    Token token{TokenKind::kSymbol, pos, pos + 1};
    bool blob = (c == 'x' || c == 'X') && pos + 1 < text.size() && text[pos + 1] == '\'';
    if (c == '\'' || c == '"' || c == '`' || c == '[' || blob) {
      size_t end = QuotedEnd(text, blob ? pos + 1 : pos);
      bool literal = c == '\'' || blob;
      if (end == kNone) {
        return Status::SqlError(std::string("MERGE: unterminated ") +
                                (literal ? "string literal " : "quoted identifier ") +
                                std::string(text.substr(pos, 20)) + "...");
      }
      token = {literal ? TokenKind::kString : TokenKind::kQuoted, pos, end};
    } else if (IsIdentStart(c)) {
      size_t end = pos + 1;
      while (end < text.size() && IsIdentChar(text[end])) ++end;
      token = {TokenKind::kWord, pos, end};
    } else if (digit(pos) || (c == '.' && digit(pos + 1))) {
      size_t end = pos;
      while (end < text.size() &&
             (std::isalnum(static_cast<unsigned char>(text[end])) || text[end] == '.' || text[end] == '_' ||
              ((text[end] == '+' || text[end] == '-') && (text[end - 1] == 'e' || text[end - 1] == 'E')))) {
        ++end;
      }
      token = {TokenKind::kNumber, pos, end};
    } else if ((c == '?' || c == ':' || c == '@' || c == '$') && pos + 1 < text.size() && IsIdentChar(text[pos + 1])) {
      size_t end = pos + 1;
      while (end < text.size() && IsIdentChar(text[end])) ++end;
      token = {TokenKind::kParameter, pos, end};
    } else {
      for (const char* symbol : kLongSymbols) {
        size_t length = std::char_traits<char>::length(symbol);
        if (text.compare(pos, length, symbol) == 0) {
          token.end = pos + length;
          break;
        }
      }
    }
    tokens.push_back(token);
    pos = SkipBlank(text, token.end);
  }
  return tokens;
}

// A range of token indexes [first, last).
struct Span {
  size_t first = 0;
  size_t last = 0;
  bool empty() const { return first >= last; }
  size_t size() const { return empty() ? 0 : last - first; }
};

// An identifier as written ("Order Id") and the name it stands for (Order Id).
struct Name {
  std::string text;
  std::string name;
};

// The statement's text and tokens, and the questions the parser and the
// translator ask about them.
class Tokens {
 public:
  Tokens(std::string_view text, std::vector<Token> tokens) : text_(text), tokens_(std::move(tokens)) {}

  size_t size() const { return tokens_.size(); }

  std::string_view Text(size_t index) const {
    return text_.substr(tokens_[index].begin, tokens_[index].end - tokens_[index].begin);
  }

  // The original text of `span`, comments and line breaks included.
  std::string Slice(Span span) const {
    if (span.empty()) return std::string();
    return std::string(text_.substr(tokens_[span.first].begin, tokens_[span.last - 1].end - tokens_[span.first].begin));
  }

  bool Is(size_t index, TokenKind kind) const { return index < size() && tokens_[index].kind == kind; }

  bool IsWord(size_t index, std::string_view keyword) const {
    return index < size() && tokens_[index].kind == TokenKind::kWord && Lower(Text(index)) == Lower(keyword);
  }

  bool IsSymbol(size_t index, std::string_view symbol) const {
    return index < size() && tokens_[index].kind == TokenKind::kSymbol && Text(index) == symbol;
  }

  bool IsName(size_t index) const {
    return index < size() && (tokens_[index].kind == TokenKind::kWord || tokens_[index].kind == TokenKind::kQuoted);
  }

  Name NameAt(size_t index) const {
    std::string_view written = Text(index);
    Name name{std::string(written), std::string(written)};
    if (tokens_[index].kind == TokenKind::kQuoted) {
      char quote = written.front();
      name.name.clear();
      for (size_t i = 1; i + 1 < written.size(); ++i) {
        name.name += written[i];
        if (quote != '[' && written[i] == quote) ++i;  // "" stands for "
      }
    }
    return name;
  }

  // True when token `index` is `alias` (any case, quoted or not).
  bool IsAlias(size_t index, const Name& alias) const {
    return IsName(index) && Lower(NameAt(index).name) == Lower(alias.name);
  }

  // How token `index` changes the nesting that hides commas and keywords
  // from the clause around it: +1 for ( and CASE, -1 for ) and END.
  int Nesting(size_t index) const {
    if (IsSymbol(index, "(") || IsWord(index, "CASE")) return 1;
    if (IsSymbol(index, ")") || IsWord(index, "END")) return -1;
    return 0;
  }

  // `span` without parentheses around all of it: (t.k = s.k) -> t.k = s.k.
  Span Unwrap(Span span) const {
    while (span.size() >= 2 && IsSymbol(span.first, "(") && IsSymbol(span.last - 1, ")")) {
      int depth = 0;
      size_t close = span.first;
      for (; close < span.last; ++close) {
        if (IsSymbol(close, "(")) ++depth;
        if (IsSymbol(close, ")") && --depth == 0) break;
      }
      if (close != span.last - 1) break;  // (a) = (b): the first ( closes early
      span = {span.first + 1, span.last - 1};
    }
    return span;
  }

  // `span` with names unquoted and lowercased, to compare two expressions.
  std::string Normalized(Span span) const {
    std::string normal;
    for (size_t index = span.first; index < span.last; ++index) {
      normal += IsName(index) ? Lower(NameAt(index).name) : std::string(Text(index));
      normal += '\x1f';
    }
    return normal;
  }

 private:
  std::string_view text_;
  std::vector<Token> tokens_;
};

// The token just past the common table expressions that start at `pos`
// (after WITH [RECURSIVE]): name [(columns)] AS [[NOT] MATERIALIZED] (...)
// [, ...]; kNone when they are not well formed.
size_t SkipCommonTableExpressions(const Tokens& tokens, size_t pos) {
  auto skip_parentheses = [&](size_t at) -> size_t {
    if (!tokens.IsSymbol(at, "(")) return kNone;
    int depth = 0;
    for (; at < tokens.size(); ++at) {
      if (tokens.IsSymbol(at, "(")) ++depth;
      if (tokens.IsSymbol(at, ")") && --depth == 0) return at + 1;
    }
    return kNone;
  };
  while (true) {
    if (!tokens.IsName(pos)) return kNone;
    ++pos;
    if (tokens.IsSymbol(pos, "(")) {
      pos = skip_parentheses(pos);
      if (pos == kNone) return kNone;
    }
    if (!tokens.IsWord(pos, "AS")) return kNone;
    ++pos;
    if (tokens.IsWord(pos, "NOT")) ++pos;
    if (tokens.IsWord(pos, "MATERIALIZED")) ++pos;
    pos = skip_parentheses(pos);
    if (pos == kNone) return kNone;
    if (!tokens.IsSymbol(pos, ",")) return pos;
    ++pos;
  }
}

struct KeyEquality {
  Name column;  // target column
  Span source;  // the source expression ON equates it with, without a trailing COLLATE
  std::vector<std::string> collations;  // collations ON names in the source expression (outside parentheses)
};

// A value for a target column: an expression of the analyst's, or (for `*`)
// the source column of the same name.
struct Value {
  Span expression;
  std::string source_column;
};

struct Assignment {
  Name column;
  Value value;
};

// A parsed MERGE, before the database is consulted.
struct MergeSpec {
  std::string with_text;      // "WITH [RECURSIVE] cte AS (...), ..." as written, or empty
  std::string with_list;      // the same without WITH [RECURSIVE]: "cte AS (...), ..."
  bool with_recursive = false;
  std::string target_text;    // as written, with its schema if any
  std::string target_schema;  // empty: SQLite's usual search order
  Name target;
  bool target_has_alias = false;
  Name target_alias;          // the table's name when there is no alias
  std::string source_text;    // a table as written, or (subquery) with its parentheses
  bool source_has_alias = false;
  Name source_alias;          // the table's name when there is no alias
  Span on;
  std::vector<KeyEquality> keys;
  bool has_matched = false;
  Span matched_condition;
  bool update_all = false;
  std::vector<Assignment> updates;
  bool has_not_matched = false;
  Span insert_condition;
  bool insert_all = false;
  std::vector<Assignment> inserts;
};

// Reads one MERGE statement into a MergeSpec. Expressions stay token spans;
// only their nesting is followed, to find where each one ends.
class Parser {
 public:
  explicit Parser(const Tokens& tokens) : tokens_(tokens) {}

  Result<MergeSpec> Parse() {
    MergeSpec spec;
    if (tokens_.IsWord(pos_, "WITH")) {
      size_t with_start = pos_++;
      spec.with_recursive = tokens_.IsWord(pos_, "RECURSIVE");
      if (spec.with_recursive) ++pos_;
      size_t list_start = pos_;
      size_t end = SkipCommonTableExpressions(tokens_, pos_);
      if (end == kNone) {
        return Syntax("expected WITH name [(columns)] AS (select ...) [, ...] before MERGE, found " + Found());
      }
      pos_ = end;
      spec.with_list = tokens_.Slice({list_start, pos_});
      spec.with_text = tokens_.Slice({with_start, pos_});
    }
    SLUICE_RETURN_IF_ERROR(ExpectWord("MERGE", spec.with_text.empty() ? "at the start" : "after the WITH clause"));
    SLUICE_RETURN_IF_ERROR(ExpectWord("INTO", "after MERGE"));
    size_t target_start = pos_;
    Result<Name> target = ParseName("the target table");
    if (!target.ok()) return target.status();
    spec.target = *target;
    if (tokens_.IsSymbol(pos_, ".")) {
      ++pos_;
      spec.target_schema = spec.target.name;
      target = ParseName("the target table");
      if (!target.ok()) return target.status();
      spec.target = *target;
    }
    spec.target_text = tokens_.Slice({target_start, pos_});
    prefix_ = "MERGE INTO " + spec.target_text;
    Result<bool> alias = ParseAlias("USING", &spec.target_alias);
    if (!alias.ok()) return alias.status();
    spec.target_has_alias = *alias;
    if (!spec.target_has_alias) spec.target_alias = spec.target;

    SLUICE_RETURN_IF_ERROR(ExpectWord("USING", "after the target table"));
    size_t source_start = pos_;
    bool source_is_query = tokens_.IsSymbol(pos_, "(");
    if (source_is_query) {
      if (!SkipParentheses() || pos_ == source_start + 2) return Syntax("expected (select ...) after USING");
    } else {
      Result<Name> source = ParseName("the source table or (select ...)");
      if (!source.ok()) return source.status();
      if (tokens_.IsSymbol(pos_, ".")) {
        ++pos_;
        source = ParseName("the source table");
        if (!source.ok()) return source.status();
      }
      spec.source_alias = *source;
    }
    spec.source_text = tokens_.Slice({source_start, pos_});
    alias = ParseAlias("ON", &spec.source_alias);
    if (!alias.ok()) return alias.status();
    spec.source_has_alias = *alias;
    if (source_is_query && !spec.source_has_alias) {
      return Error("a subquery source needs an alias: USING (select ...) AS s");
    }
    if (Lower(spec.source_alias.name) == Lower(spec.target_alias.name)) {
      return Error("target and source are both called " + spec.source_alias.text +
                   "; give them different aliases: MERGE INTO target AS t USING source AS s ...");
    }

    SLUICE_RETURN_IF_ERROR(ExpectWord("ON", "after the source"));
    spec.on = Scan({"WHEN"});
    if (spec.on.empty()) return Syntax("expected a join condition after ON");
    SLUICE_RETURN_IF_ERROR(ParseKeys(&spec));
    while (tokens_.IsWord(pos_, "WHEN")) SLUICE_RETURN_IF_ERROR(ParseClause(&spec));
    if (!spec.has_matched && !spec.has_not_matched) return Syntax("expected WHEN MATCHED or WHEN NOT MATCHED");
    if (tokens_.IsSymbol(pos_, ";")) ++pos_;
    if (pos_ < tokens_.size()) return Syntax("unexpected " + Found() + " after the WHEN clauses");
    return spec;
  }

 private:
  // What the parser is looking at, for messages.
  std::string Found() const {
    if (pos_ >= tokens_.size()) return "the end of the statement";
    return "'" + std::string(tokens_.Text(pos_).substr(0, 40)) + "'";
  }

  Status Error(const std::string& what) const { return Status::SqlError(prefix_ + ": " + what); }
  // An error about the shape of the statement: shows the supported grammar.
  Status Syntax(const std::string& what) const { return Error(what + " (" + kGrammar + ")"); }

  Status ExpectWord(std::string_view keyword, const char* where) {
    if (!tokens_.IsWord(pos_, keyword)) {
      return Syntax("expected " + std::string(keyword) + " " + where + ", found " + Found());
    }
    ++pos_;
    return Status::Ok();
  }

  Status ExpectSymbol(std::string_view symbol, const char* where) {
    if (!tokens_.IsSymbol(pos_, symbol)) {
      return Syntax("expected '" + std::string(symbol) + "' " + where + ", found " + Found());
    }
    ++pos_;
    return Status::Ok();
  }

  Result<Name> ParseName(const char* what) {
    if (!tokens_.IsName(pos_)) return Syntax(std::string("expected ") + what + ", found " + Found());
    return tokens_.NameAt(pos_++);
  }

  // An optional [AS] alias before the keyword `next`; true when there is one.
  Result<bool> ParseAlias(std::string_view next, Name* alias) {
    if (tokens_.IsWord(pos_, "AS")) {
      ++pos_;
    } else if (!tokens_.IsName(pos_) || tokens_.IsWord(pos_, next) || tokens_.IsWord(pos_, "WHEN")) {
      return false;
    }
    Result<Name> name = ParseName("an alias");
    if (!name.ok()) return name.status();
    *alias = *name;
    return true;
  }

  // Advances from '(' to just past its matching ')'; false when there is none.
  bool SkipParentheses() {
    int depth = 0;
    for (; pos_ < tokens_.size(); ++pos_) {
      if (tokens_.IsSymbol(pos_, "(")) ++depth;
      if (tokens_.IsSymbol(pos_, ")") && --depth == 0) {
        ++pos_;
        return true;
      }
    }
    return false;
  }

  // Advances over an expression and returns it: up to the first ',', ')',
  // ';' or keyword of `stop` outside parentheses and CASE ... END.
  Span Scan(std::initializer_list<std::string_view> stop) {
    size_t start = pos_;
    int depth = 0;
    for (; pos_ < tokens_.size(); ++pos_) {
      if (depth == 0) {
        if (tokens_.IsSymbol(pos_, ",") || tokens_.IsSymbol(pos_, ")") || tokens_.IsSymbol(pos_, ";")) break;
        bool stopped = false;
        for (std::string_view keyword : stop) stopped = stopped || tokens_.IsWord(pos_, keyword);
        if (stopped) break;
      }
      depth = std::max(0, depth + tokens_.Nesting(pos_));
    }
    return {start, pos_};
  }

  // True when `span` is exactly alias.column for the target's alias.
  bool IsTargetColumn(Span span, const MergeSpec& spec) const {
    return span.size() == 3 && tokens_.IsAlias(span.first, spec.target_alias) &&
           tokens_.IsSymbol(span.first + 1, ".") && tokens_.IsName(span.first + 2);
  }

  // True when `span` mentions alias.anything for the target's alias.
  bool MentionsTarget(Span span, const MergeSpec& spec) const {
    for (size_t index = span.first; index + 1 < span.last; ++index) {
      if (tokens_.IsAlias(index, spec.target_alias) && tokens_.IsSymbol(index + 1, ".") &&
          (index == span.first || !tokens_.IsSymbol(index - 1, "."))) {
        return true;
      }
    }
    return false;
  }

  // True when `span` has, outside parentheses, an operator that binds no
  // tighter than '=', so that "t.k = s.k OR x" is not taken for an equality.
  bool HasLooseOperator(Span span) const {
    static const std::set<std::string> kWords = {"or",    "not",     "is",      "in",     "like",   "glob",
                                                 "match", "regexp",  "between", "isnull", "notnull"};
    static const std::set<std::string> kSymbols = {"=", "==", "!=", "<>", "<", ">", "<=", ">="};
    int depth = 0;
    for (size_t index = span.first; index < span.last; ++index) {
      if (depth == 0) {
        std::string text = Lower(tokens_.Text(index));
        if (tokens_.Is(index, TokenKind::kWord) && kWords.count(text)) return true;
        if (tokens_.Is(index, TokenKind::kSymbol) && kSymbols.count(text)) return true;
      }
      depth = std::max(0, depth + tokens_.Nesting(index));
    }
    return false;
  }

  // Splits ON at its top-level ANDs into target.column = source expression
  // pairs, either way round.
  Status ParseKeys(MergeSpec* spec) {
    std::vector<Span> parts;
    Span on = tokens_.Unwrap(spec->on);
    int depth = 0;
    size_t start = on.first;
    for (size_t index = on.first; index < on.last; ++index) {
      if (depth == 0 && tokens_.IsWord(index, "AND")) {
        parts.push_back(tokens_.Unwrap({start, index}));
        start = index + 1;
      }
      depth = std::max(0, depth + tokens_.Nesting(index));
    }
    parts.push_back(tokens_.Unwrap({start, on.last}));

    for (Span part : parts) {
      std::string shown = tokens_.Slice(part.empty() ? spec->on : part);
      Status not_equality = Syntax("ON must be target.column = source expression, joined by AND; '" + shown +
                                   "' is not");
      size_t equals = kNone;
      depth = 0;
      for (size_t index = part.first; index < part.last; ++index) {
        if (depth == 0 && (tokens_.IsSymbol(index, "=") || tokens_.IsSymbol(index, "=="))) {
          if (equals != kNone) return not_equality;
          equals = index;
        }
        depth = std::max(0, depth + tokens_.Nesting(index));
      }
      if (equals == kNone) return not_equality;
      Span target = tokens_.Unwrap({part.first, equals});
      Span source = tokens_.Unwrap({equals + 1, part.last});
      if (!IsTargetColumn(target, *spec) && IsTargetColumn(source, *spec)) std::swap(target, source);
      if (!IsTargetColumn(target, *spec)) {
        return Syntax("ON must equate a target column, written " + spec->target_alias.text +
                      ".column, with a source expression; '" + shown + "' does not");
      }
      if (source.empty() || HasLooseOperator(source)) return not_equality;
      if (MentionsTarget(source, *spec)) {
        return Syntax("in ON, each target column must be equated with an expression of the source only; '" +
                      shown + "' is not");
      }
      KeyEquality key{tokens_.NameAt(target.first + 2), source, {}};
      depth = 0;
      for (size_t index = source.first; index < source.last; ++index) {
        if (depth == 0 && tokens_.IsWord(index, "COLLATE") && tokens_.IsName(index + 1)) {
          key.collations.push_back(tokens_.NameAt(index + 1).name);
        }
        depth = std::max(0, depth + tokens_.Nesting(index));
      }
      // s.k COLLATE nocase: the collation is checked against the index's when
      // the database is read; the value is s.k.
      while (key.source.size() > 2 && tokens_.IsWord(key.source.last - 2, "COLLATE") &&
             tokens_.IsName(key.source.last - 1)) {
        key.source = tokens_.Unwrap({key.source.first, key.source.last - 2});
      }
      spec->keys.push_back(key);
    }
    return Status::Ok();
  }

  // A target column in SET or in an INSERT list: col, or t.col.
  Result<Name> ParseColumn(const MergeSpec& spec) {
    Result<Name> column = ParseName("a target column");
    if (!column.ok()) return column.status();
    if (!tokens_.IsSymbol(pos_, ".")) return column;
    if (Lower(column->name) != Lower(spec.target_alias.name)) {
      return Syntax("SET and INSERT name columns of the target; " + column->text + "." +
                    std::string(pos_ + 1 < tokens_.size() ? tokens_.Text(pos_ + 1) : "") + " is not one");
    }
    ++pos_;
    return ParseName("a target column");
  }

  // One WHEN [NOT] MATCHED [BY TARGET] [AND cond] THEN action.
  Status ParseClause(MergeSpec* spec) {
    ++pos_;  // WHEN
    bool not_matched = tokens_.IsWord(pos_, "NOT");
    if (not_matched) ++pos_;
    SLUICE_RETURN_IF_ERROR(ExpectWord("MATCHED", not_matched ? "after WHEN NOT" : "after WHEN"));
    if (tokens_.IsWord(pos_, "BY")) {
      if (tokens_.IsWord(pos_ + 1, "SOURCE")) {
        return Syntax("WHEN NOT MATCHED BY SOURCE is not supported; delete or update target rows missing from the "
                      "source in a separate statement");
      }
      if (!not_matched || !tokens_.IsWord(pos_ + 1, "TARGET")) return Syntax("unexpected " + Found());
      pos_ += 2;  // BY TARGET: the same as plain NOT MATCHED
    }
    Span condition;
    if (tokens_.IsWord(pos_, "AND")) {
      ++pos_;
      condition = Scan({"THEN"});
      if (condition.empty()) return Syntax("expected a condition after AND");
    }
    SLUICE_RETURN_IF_ERROR(ExpectWord("THEN", "after the WHEN condition"));
    return not_matched ? ParseInsert(spec, condition) : ParseUpdate(spec, condition);
  }

  // The action of WHEN MATCHED: UPDATE SET * or UPDATE SET col = expr, ...
  Status ParseUpdate(MergeSpec* spec, Span condition) {
    if (spec->has_matched) {
      return Syntax("only one WHEN MATCHED clause is supported; fold the cases into one clause with CASE "
                    "expressions in SET");
    }
    if (tokens_.IsWord(pos_, "DELETE")) {
      return Syntax("WHEN MATCHED THEN DELETE is not supported; delete matching rows in a separate statement "
                    "(delete from target where key in (select key from source where ...))");
    }
    SLUICE_RETURN_IF_ERROR(ExpectWord("UPDATE", "after WHEN MATCHED THEN"));
    SLUICE_RETURN_IF_ERROR(ExpectWord("SET", "after UPDATE"));
    spec->has_matched = true;
    spec->matched_condition = condition;
    if (tokens_.IsSymbol(pos_, "*")) {
      ++pos_;
      spec->update_all = true;
      return Status::Ok();
    }
    while (true) {
      Result<Name> column = ParseColumn(*spec);
      if (!column.ok()) return column.status();
      SLUICE_RETURN_IF_ERROR(ExpectSymbol("=", "after the column in SET"));
      Span value = Scan({"WHEN"});
      if (value.empty()) return Syntax("expected an expression after " + column->text + " =");
      spec->updates.push_back({*column, {value, ""}});
      if (!tokens_.IsSymbol(pos_, ",")) return Status::Ok();
      ++pos_;
    }
  }

  // The action of WHEN NOT MATCHED: INSERT * or INSERT (cols) VALUES (exprs).
  Status ParseInsert(MergeSpec* spec, Span condition) {
    if (spec->has_not_matched) {
      return Syntax("only one WHEN NOT MATCHED clause is supported; fold the cases into one clause with CASE "
                    "expressions in VALUES");
    }
    if (tokens_.IsWord(pos_, "UPDATE") || tokens_.IsWord(pos_, "DELETE")) {
      return Syntax("WHEN NOT MATCHED can only INSERT");
    }
    SLUICE_RETURN_IF_ERROR(ExpectWord("INSERT", "after WHEN NOT MATCHED THEN"));
    spec->has_not_matched = true;
    spec->insert_condition = condition;
    if (tokens_.IsSymbol(pos_, "*")) {
      ++pos_;
      spec->insert_all = true;
      return Status::Ok();
    }
    SLUICE_RETURN_IF_ERROR(ExpectSymbol("(", "after INSERT (name the columns: INSERT (col, ...) VALUES (expr, ...))"));
    std::vector<Name> columns;
    while (true) {
      Result<Name> column = ParseColumn(*spec);
      if (!column.ok()) return column.status();
      columns.push_back(*column);
      if (!tokens_.IsSymbol(pos_, ",")) break;
      ++pos_;
    }
    SLUICE_RETURN_IF_ERROR(ExpectSymbol(")", "after the INSERT columns"));
    SLUICE_RETURN_IF_ERROR(ExpectWord("VALUES", "after the INSERT columns"));
    SLUICE_RETURN_IF_ERROR(ExpectSymbol("(", "after VALUES"));
    std::vector<Span> values;
    while (true) {
      Span value = Scan({});
      if (value.empty()) return Syntax("expected an expression in VALUES, found " + Found());
      values.push_back(value);
      if (!tokens_.IsSymbol(pos_, ",")) break;
      ++pos_;
    }
    SLUICE_RETURN_IF_ERROR(ExpectSymbol(")", "after the VALUES expressions"));
    if (values.size() != columns.size()) {
      return Error("INSERT names " + std::to_string(columns.size()) + " columns but VALUES has " +
                   std::to_string(values.size()) + " expressions");
    }
    for (size_t column_idx = 0; column_idx < columns.size(); ++column_idx) {
      spec->inserts.push_back({columns[column_idx], {values[column_idx], ""}});
    }
    return Status::Ok();
  }

  const Tokens& tokens_;
  size_t pos_ = 0;
  std::string prefix_ = "MERGE";  // "MERGE INTO <target>" once the target is read
};

// A unique key of the target: the columns of a primary key or of a
// non-partial unique index on plain columns, each with the collation the
// index compares it with. `rowid` marks an INTEGER PRIMARY KEY, which has no
// index (the rowid is the key) and takes a new rowid for NULL.
struct UniqueKey {
  std::string index;  // the index's name; empty for the rowid
  bool rowid = false;
  std::vector<std::string> columns;
  std::vector<std::string> collations;  // per column, as the index names them (BINARY, NOCASE, RTRIM, ...)
};

// What the database says about the target table.
struct TargetInfo {
  std::string schema;                             // where it was found: main, temp or an attached name
  std::vector<std::string> columns;               // in declared order
  std::map<std::string, std::string> defaults;    // lowercased column -> default expression ("" for none)
  std::map<std::string, std::string> affinities;  // lowercased column -> INTEGER, TEXT, BLOB, REAL or NUMERIC
  std::vector<UniqueKey> unique_keys;             // primary key first
};

// A pragma table-valued function call: pragma_index_list('t', 'main').
std::string PragmaCall(const char* pragma, const std::string& argument, const std::string& schema) {
  std::string call = std::string("pragma_") + pragma + "(" + QuoteLiteral(argument);
  if (!schema.empty()) call += ", " + QuoteLiteral(schema);
  return call + ")";
}

// The affinity SQLite gives a column declared `declared`, by its rules (the
// first that applies: INT, then CHAR/CLOB/TEXT, then BLOB or no type, then
// REAL/FLOA/DOUB, else NUMERIC). In a STRICT table ANY keeps values as given.
std::string AffinityOf(const std::string& declared, bool strict) {
  std::string type = Lower(declared);
  auto has = [&](const char* part) { return type.find(part) != std::string::npos; };
  if (strict && type == "any") return "BLOB";
  if (has("int")) return "INTEGER";
  if (has("char") || has("clob") || has("text")) return "TEXT";
  if (has("blob") || type.empty()) return "BLOB";
  if (has("real") || has("floa") || has("doub")) return "REAL";
  return "NUMERIC";
}

// Reads the target's kind, columns, defaults, affinities and unique keys.
// Partial unique indexes and indexes on expressions are left out: ON t.col =
// ... cannot use them as an upsert's conflict target.
Result<TargetInfo> ReadTarget(Database* db, const MergeSpec& spec) {
  std::string kind_sql = "SELECT type, schema, strict FROM pragma_table_list WHERE name = " +
                         QuoteLiteral(spec.target.name) + " COLLATE NOCASE";
  if (!spec.target_schema.empty()) kind_sql += " AND schema = " + QuoteLiteral(spec.target_schema) + " COLLATE NOCASE";
  kind_sql += " ORDER BY schema = 'temp' DESC, schema = 'main' DESC LIMIT 1";  // SQLite's search order
  Result<Statement> kind = db->Prepare(kind_sql);
  if (!kind.ok()) return kind.status();
  Result<bool> found = kind->Step();
  if (!found.ok()) return found.status();
  if (!*found) return Status::SqlError("no such table: " + spec.target_text);
  if (kind->ColumnText(0) != "table") {
    return Status::SqlError(spec.target_text + " is a " + kind->ColumnText(0) + "; MERGE writes to a table");
  }
  TargetInfo info;
  info.schema = kind->ColumnText(1);
  bool strict = kind->ColumnInt(2) != 0;

  std::vector<std::pair<int64_t, std::string>> primary_key;
  Result<Statement> columns =
      db->Prepare("SELECT name, dflt_value, pk, type FROM " + PragmaCall("table_info", spec.target.name, info.schema));
  if (!columns.ok()) return columns.status();
  while (true) {
    Result<bool> row = columns->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    std::string name = columns->ColumnText(0);
    info.columns.push_back(name);
    info.defaults[Lower(name)] = columns->ColumnText(1);
    info.affinities[Lower(name)] = AffinityOf(columns->ColumnText(3), strict);
    if (columns->ColumnInt(2) > 0) primary_key.emplace_back(columns->ColumnInt(2), name);
  }

  bool primary_key_indexed = false;
  Result<Statement> indexes = db->Prepare("SELECT name, origin FROM " +
                                          PragmaCall("index_list", spec.target.name, info.schema) +
                                          " WHERE \"unique\" AND NOT partial ORDER BY origin <> 'pk', seq");
  if (!indexes.ok()) return indexes.status();
  while (true) {
    Result<bool> row = indexes->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    UniqueKey key;
    key.index = indexes->ColumnText(0);
    primary_key_indexed = primary_key_indexed || indexes->ColumnText(1) == "pk";
    Result<Statement> index_columns = db->Prepare("SELECT name, coll, cid FROM " +
                                                  PragmaCall("index_xinfo", key.index, info.schema) +
                                                  " WHERE key ORDER BY seqno");
    if (!index_columns.ok()) return index_columns.status();
    bool on_expression = false;
    while (true) {
      Result<bool> column = index_columns->Step();
      if (!column.ok()) return column.status();
      if (!*column) break;
      on_expression = on_expression || index_columns->ColumnInt(2) < 0;
      key.columns.push_back(index_columns->ColumnText(0));
      key.collations.push_back(index_columns->ColumnText(1));
    }
    if (!on_expression) info.unique_keys.push_back(key);
  }
  if (primary_key.size() == 1 && !primary_key_indexed) {
    // INTEGER PRIMARY KEY: the rowid itself, compared as an integer.
    UniqueKey key;
    key.rowid = true;
    key.columns.push_back(primary_key[0].second);
    key.collations.push_back("BINARY");
    info.unique_keys.insert(info.unique_keys.begin(), key);
  }
  return info;
}

// The source's column names, from preparing `select_star` (SELECT * over it).
Result<std::vector<std::string>> SourceColumns(Database* db, const std::string& select_star) {
  Result<Statement> stmt = db->Prepare(select_star);
  if (!stmt.ok()) return stmt.status();
  std::vector<std::string> columns;
  for (int column = 0; column < sqlite3_column_count(stmt->get()); ++column) {
    columns.push_back(sqlite3_column_name(stmt->get(), column));
  }
  return columns;
}

// Which statement the MERGE becomes.
enum class Form { kUpdate, kInsert, kUpsert };

// A planned MERGE, with what RunMerge needs for its messages.
struct Translation {
  MergePlan plan;
  std::string prefix;                    // "MERGE INTO orders_curated"
  std::vector<std::string> key_columns;  // target columns, in ON order
  std::vector<std::string> key_sources;  // their source expressions, as written
  // What the plan depends on besides the statement's text, for the cache.
  std::string target_name;               // the table's name, unquoted
  std::string target_schema;             // the schema it was found in
  bool target_qualified = false;         // written with its schema
  std::string select_star;               // for UPDATE SET * / INSERT *: SELECT * over the source
  std::vector<std::string> source_columns;  // ... and the columns it had
};

// Builds the SQL of a parsed MERGE from the target's schema.
class Translator {
 public:
  Translator(const Tokens& tokens, const MergeSpec& spec)
      : tokens_(tokens), spec_(spec), prefix_("MERGE INTO " + spec.target_text) {}

  // Reads the schema and builds the statements; with `validate`, also
  // prepares them, so that their mistakes are the MERGE's.
  Result<Translation> Translate(Database* db, bool validate) {
    Result<TargetInfo> target = ReadTarget(db, spec_);
    if (!target.ok()) return target.status().WithContext(prefix_);
    target_ = *target;
    for (const std::string& column : target_.columns) declared_[Lower(column)] = column;

    Translation translation;
    translation.prefix = prefix_;
    translation.target_name = spec_.target.name;
    translation.target_schema = target_.schema;
    translation.target_qualified = !spec_.target_schema.empty();
    SLUICE_RETURN_IF_ERROR(ResolveKeys(&translation));

    std::vector<Assignment> updates = spec_.updates;
    std::vector<Assignment> inserts = spec_.inserts;
    if (spec_.update_all || spec_.insert_all) {
      translation.select_star = With() + "SELECT * FROM " + SourceAs();
      SLUICE_RETURN_IF_ERROR(ExpandStars(db, translation.select_star, &updates, &inserts,
                                         &translation.source_columns));
    }
    SLUICE_RETURN_IF_ERROR(ResolveColumns(&updates, "SET"));
    SLUICE_RETURN_IF_ERROR(ResolveColumns(&inserts, "INSERT"));

    Form form = !spec_.has_not_matched ? Form::kUpdate : !spec_.has_matched ? Form::kInsert : Form::kUpsert;
    if (form == Form::kUpdate) translation.plan.sql = UpdateSql(updates);
    if (form == Form::kInsert) translation.plan.sql = InsertSql(inserts);
    if (form == Form::kUpsert) {
      Result<std::string> sql = UpsertSql(updates, inserts);
      if (!sql.ok()) return sql.status();
      translation.plan.sql = *sql;
    }
    translation.plan.check_sql = CheckSql(form);
    for (const std::string* sql : {&translation.plan.check_sql, &translation.plan.sql}) {
      if (!validate) break;
      Result<Statement> prepared = db->Prepare(*sql);
      if (!prepared.ok()) return prepared.status().WithContext(prefix_);
    }
    return translation;
  }

 private:
  Status Error(const std::string& what) const { return Status::SqlError(prefix_ + ": " + what); }

  // The analyst's WITH clause, to put before each generated statement.
  std::string With() const { return spec_.with_text.empty() ? std::string() : spec_.with_text + " "; }

  std::string TargetAs() const {
    return spec_.target_text + (spec_.target_has_alias ? " AS " + spec_.target_alias.text : "");
  }
  std::string SourceAs() const {
    return spec_.source_text + (spec_.source_has_alias ? " AS " + spec_.source_alias.text : "");
  }
  // alias.column for a target column, as the generated SQL names it.
  std::string TargetColumn(const std::string& column) const {
    return spec_.target_alias.text + "." + QuoteIdentifier(column);
  }
  std::string Exists(const std::string& condition) const {
    return "EXISTS (SELECT 1 FROM " + TargetAs() + " WHERE " + condition + ")";
  }

  // A value as it reads where the source alias is in scope.
  std::string Render(const Value& value) const {
    if (value.expression.empty()) return spec_.source_alias.text + "." + QuoteIdentifier(value.source_column);
    return tokens_.Slice(value.expression);
  }

  // Matches the ON columns to a unique key of the target, or says which
  // index to create.
  Status ResolveKeys(Translation* translation) {
    std::set<std::string> on_columns;
    std::vector<std::string> shown;
    for (const KeyEquality& key : spec_.keys) {
      auto declared = declared_.find(Lower(key.column.name));
      if (declared == declared_.end()) {
        return Error(spec_.target_text + " has no column " + key.column.text + " (in ON)");
      }
      if (!on_columns.insert(declared->first).second) return Error("ON names " + key.column.text + " twice");
      translation->key_columns.push_back(declared->second);
      translation->key_sources.push_back(tokens_.Slice(key.source));
      shown.push_back(Shown(declared->second));
    }
    std::vector<std::string> known;
    const UniqueKey* chosen = nullptr;
    for (const UniqueKey& unique_key : target_.unique_keys) {
      std::set<std::string> columns;
      std::vector<std::string> names;
      for (const std::string& column : unique_key.columns) {
        columns.insert(Lower(column));
        names.push_back(Shown(column));
      }
      known.push_back("(" + Join(names, ", ") + ")");
      if (columns != on_columns) continue;
      if (chosen == nullptr) {
        chosen = &unique_key;
        continue;
      }
      // Two unique keys on these columns: the upsert's conflict target would
      // be either, so they must compare alike.
      for (size_t column_idx = 0; column_idx < unique_key.columns.size(); ++column_idx) {
        const std::string& column = unique_key.columns[column_idx];
        std::string other = CollationOf(*chosen, column);
        if (Lower(other) != Lower(unique_key.collations[column_idx])) {
          return Error("two unique keys of " + spec_.target_text + " are on (" + Join(shown, ", ") +
                       ") but compare " + Shown(column) + " differently (" + other + " in " + IndexName(*chosen) +
                       ", " + unique_key.collations[column_idx] + " in " + IndexName(unique_key) +
                       "); MERGE matches as the upsert's unique key does and cannot tell which one that is: "
                       "drop one of them");
        }
      }
    }
    if (chosen != nullptr) {
      key_rowid_ = chosen->rowid;
      for (const KeyEquality& key : spec_.keys) {
        const std::string& column = declared_.at(Lower(key.column.name));
        std::string collation = CollationOf(*chosen, column);
        for (const std::string& written : key.collations) {
          if (Lower(written) != Lower(collation)) {
            return Error("ON compares " + Shown(column) + " with COLLATE " + written + ", but " +
                         IndexName(*chosen) + " compares it with " + collation +
                         "; MERGE matches rows as the unique key does: remove the COLLATE from ON");
          }
        }
        key_collations_.push_back(collation);
        key_affinities_.push_back(chosen->rowid ? "INTEGER" : target_.affinities.at(Lower(column)));
      }
      return Status::Ok();
    }
    std::string table = Shown(spec_.target.name);
    std::string columns = Join(shown, ", ");
    std::string index = spec_.target.name + "_by";
    for (const std::string& column : translation->key_columns) index += "_" + column;
    std::string message = "ON (" + columns + ") needs a unique index or primary key on " + table + "(" + columns + ")";
    if (!known.empty()) message += ", and its unique keys are " + Join(known, ", ");
    return Error(message + "; add: create unique index " + Shown(index) + " on " + table + "(" + columns + ");");
  }

  static std::string CollationOf(const UniqueKey& key, const std::string& column) {
    for (size_t column_idx = 0; column_idx < key.columns.size(); ++column_idx) {
      if (Lower(key.columns[column_idx]) == Lower(column)) return key.collations[column_idx];
    }
    return "BINARY";
  }

  std::string IndexName(const UniqueKey& key) const {
    return key.rowid ? "the INTEGER PRIMARY KEY" : "index " + Shown(key.index);
  }

  // The value of key `key_idx` as the unique key sees it: the source
  // expression with the target column's affinity applied, as INSERT would.
  std::string KeyValue(size_t key_idx) const {
    return std::string(kKeyFunction) + "(" + tokens_.Slice(spec_.keys[key_idx].source) + ", '" +
           key_affinities_[key_idx] + "')";
  }

  // `column` = `value` compared as the unique key compares (its collation;
  // the value is already converted, so no affinity applies).
  std::string KeyEquals(const std::string& column, const std::string& value, size_t key_idx) const {
    return column + " = " + value + Collate(key_idx);
  }

  // " COLLATE <the unique key's collation>" for key `key_idx` ("" for a rowid).
  std::string Collate(size_t key_idx) const {
    if (key_rowid_) return "";
    const std::string& collation = key_collations_[key_idx];
    bool builtin = Lower(collation) == "binary" || Lower(collation) == "nocase" || Lower(collation) == "rtrim";
    return " COLLATE " + (builtin ? collation : QuoteIdentifier(collation));
  }

  // The ON clause as the unique index sees it: each key column of the target
  // row equal to its converted source value.
  std::string Match() const {
    std::vector<std::string> equalities;
    for (size_t key_idx = 0; key_idx < spec_.keys.size(); ++key_idx) {
      equalities.push_back(
          KeyEquals(TargetColumn(declared_.at(Lower(spec_.keys[key_idx].column.name))), KeyValue(key_idx), key_idx));
    }
    return Join(equalities, " AND ");
  }

  // Into an INTEGER PRIMARY KEY a NULL key takes a new rowid: such rows go
  // last, so that the new rowid is never the key of another source row.
  std::string NullKeysLast() const {
    if (!key_rowid_) return "";
    return " ORDER BY (" + tokens_.Slice(spec_.keys[0].source) + ") IS NULL";
  }

  bool IsKey(const std::string& column) const {
    for (const KeyEquality& key : spec_.keys) {
      if (Lower(key.column.name) == Lower(column)) return true;
    }
    return false;
  }

  // UPDATE SET * and INSERT *: every target column the source has by name
  // (any case). SET * leaves the key columns alone: ON made them equal.
  Status ExpandStars(Database* db, const std::string& select_star, std::vector<Assignment>* updates,
                     std::vector<Assignment>* inserts, std::vector<std::string>* source_columns) {
    Result<std::vector<std::string>> source = SourceColumns(db, select_star);
    if (!source.ok()) return source.status().WithContext(prefix_);
    *source_columns = *source;
    std::map<std::string, std::string> by_name;
    for (const std::string& column : *source) by_name.emplace(Lower(column), column);
    for (const std::string& column : target_.columns) {
      auto found = by_name.find(Lower(column));
      if (found == by_name.end()) continue;
      Assignment assignment{{Shown(column), column}, {{}, found->second}};
      if (spec_.update_all && !IsKey(column)) updates->push_back(assignment);
      if (spec_.insert_all) inserts->push_back(assignment);
    }
    if (spec_.insert_all && inserts->empty()) {
      return Error("INSERT * found no column of " + spec_.target_text + " in the source");
    }
    if (spec_.update_all && updates->empty() && !spec_.has_not_matched) {
      return Error("UPDATE SET * found no column of " + spec_.target_text + " in the source besides the key");
    }
    return Status::Ok();
  }

  // Gives written column names the target's spelling; rejects unknown and
  // repeated columns.
  Status ResolveColumns(std::vector<Assignment>* assignments, const char* clause) const {
    std::set<std::string> seen;
    for (Assignment& assignment : *assignments) {
      auto declared = declared_.find(Lower(assignment.column.name));
      if (declared == declared_.end()) {
        return Error(spec_.target_text + " has no column " + assignment.column.text + " (in " + clause + ")");
      }
      if (!seen.insert(declared->first).second) {
        return Error(std::string(clause) + " names " + assignment.column.text + " twice");
      }
      assignment.column.name = declared->second;
    }
    return Status::Ok();
  }

  // WHEN MATCHED only: UPDATE target AS t SET ... FROM source AS s WHERE (on)
  // [AND (cond)]. UPDATE ... FROM needs SQLite 3.33.
  std::string UpdateSql(const std::vector<Assignment>& updates) const {
    std::vector<std::string> sets;
    for (const Assignment& update : updates) {
      sets.push_back(QuoteIdentifier(update.column.name) + " = " + Render(update.value));
    }
    std::string sql = With() + "UPDATE " + TargetAs() + " SET " + Join(sets, ", ") + " FROM " + SourceAs() +
                      " WHERE " + Match();
    if (!spec_.matched_condition.empty()) sql += " AND (" + tokens_.Slice(spec_.matched_condition) + ")";
    return sql;
  }

  // WHEN NOT MATCHED only: INSERT INTO target (cols) SELECT ... FROM source AS
  // s WHERE NOT EXISTS (the match) [AND (cond)]. SQLite runs the SELECT to the
  // end before inserting, because it reads the target.
  std::string InsertSql(const std::vector<Assignment>& inserts) const {
    std::vector<std::string> columns;
    std::vector<std::string> values;
    for (const Assignment& insert : inserts) {
      columns.push_back(QuoteIdentifier(insert.column.name));
      values.push_back(Render(insert.value));
    }
    std::string sql = With() + "INSERT INTO " + spec_.target_text + " (" + Join(columns, ", ") + ") SELECT " +
                      Join(values, ", ") + " FROM " + SourceAs() + " WHERE NOT " + Exists(Match());
    if (!spec_.insert_condition.empty()) sql += " AND (" + tokens_.Slice(spec_.insert_condition) + ")";
    return sql + NullKeysLast();
  }

  // Both clauses: INSERT INTO target (cols) SELECT ... FROM source AS s LEFT
  // JOIN target AS t ON (on) WHERE filter ON CONFLICT (key) DO UPDATE SET
  // col = excluded.col. The join puts the matched target row beside each
  // source row, so every value is computed in the SELECT with s and t in
  // scope, as MERGE defines it: a matched row proposes its updated values
  // (and its stored ones for the columns SET leaves alone), an unmatched row
  // its INSERT values (and the defaults of columns only SET names); the
  // filter applies each WHEN condition to its own rows. The upsert then finds
  // the matched row through the unique key, which is why the INSERT must put
  // exactly the ON expressions into the key columns.
  //
  // Computing the update in DO UPDATE from excluded.* instead, as a
  // hand-written upsert does, goes wrong twice: excluded holds only what the
  // INSERT computes (not the source columns the update reads), and SQLite
  // checks NOT NULL and CHECK constraints on the proposed row before it finds
  // the conflict, so a matched row would be held to the INSERT's values.
  Result<std::string> UpsertSql(const std::vector<Assignment>& updates, const std::vector<Assignment>& inserts) const {
    auto find = [](const std::vector<Assignment>& assignments, const std::string& column) -> const Assignment* {
      for (const Assignment& assignment : assignments) {
        if (Lower(assignment.column.name) == Lower(column)) return &assignment;
      }
      return nullptr;
    };
    std::vector<std::string> conflict;
    for (const KeyEquality& key : spec_.keys) {
      const std::string& column = declared_.at(Lower(key.column.name));
      const Assignment* insert = find(inserts, column);
      std::string on_value = tokens_.Slice(key.source);
      if (insert == nullptr) {
        return Error("the INSERT must set the key column " + Shown(column) + " to " + on_value +
                     " (its ON expression): SQLite's upsert finds the matching row by the inserted key");
      }
      std::string inserted =
          insert->value.expression.empty()
              ? Lower(spec_.source_alias.name) + "\x1f.\x1f" + Lower(insert->value.source_column) + "\x1f"
              : tokens_.Normalized(tokens_.Unwrap(insert->value.expression));
      if (inserted != tokens_.Normalized(key.source)) {
        return Error("the INSERT sets the key column " + Shown(column) + " to " + Render(insert->value) +
                     ", but ON equates it with " + on_value + "; SQLite's upsert finds the matching row by the "
                     "inserted key, so they must be the same expression");
      }
      if (find(updates, column) != nullptr) {
        return Error("UPDATE SET cannot change the key column " + Shown(column) +
                     " in a MERGE with both WHEN clauses (the upsert finds the row by it)");
      }
      conflict.push_back(QuoteIdentifier(column));
    }

    // A matched row has a non-NULL key: ON made it equal to something.
    std::string matched = TargetColumn(declared_.at(Lower(spec_.keys[0].column.name))) + " IS NOT NULL";
    std::vector<std::string> columns;
    std::vector<std::string> values;
    std::vector<std::string> sets;
    auto add = [&](const std::string& column) {
      const Assignment* insert = find(inserts, column);
      const Assignment* update = find(updates, column);
      std::string if_matched = update != nullptr ? Render(update->value) : TargetColumn(column);
      std::string if_new = insert != nullptr ? Render(insert->value) : DefaultOf(column);
      columns.push_back(QuoteIdentifier(column));
      if (IsKey(column) || if_matched == if_new) {
        values.push_back(if_new);
      } else {
        values.push_back("CASE WHEN " + matched + " THEN " + if_matched + " ELSE " + if_new + " END");
      }
      if (update != nullptr) sets.push_back(QuoteIdentifier(column) + " = excluded." + QuoteIdentifier(column));
    };
    for (const Assignment& insert : inserts) add(insert.column.name);
    for (const Assignment& update : updates) {
      if (find(inserts, update.column.name) == nullptr) add(update.column.name);
    }

    std::string filter = "true";
    if (!spec_.matched_condition.empty() || !spec_.insert_condition.empty()) {
      auto condition = [&](Span span) { return span.empty() ? std::string("1") : "(" + tokens_.Slice(span) + ")"; };
      filter = "CASE WHEN " + matched + " THEN " + condition(spec_.matched_condition) + " ELSE " +
               condition(spec_.insert_condition) + " END";
    }
    std::string action = sets.empty() ? "NOTHING" : "UPDATE SET " + Join(sets, ", ");
    return With() + "INSERT INTO " + spec_.target_text + " (" + Join(columns, ", ") + ") SELECT " +
           Join(values, ", ") + " FROM " + SourceAs() + " LEFT JOIN " + TargetAs() + " ON " + Match() + " WHERE " +
           filter + NullKeysLast() + " ON CONFLICT (" + Join(conflict, ", ") + ") DO " + action;
  }

  // The value a new row gets for a column its INSERT does not name: the
  // declared default (a constant in SQLite), or NULL.
  std::string DefaultOf(const std::string& column) const {
    auto found = target_.defaults.find(Lower(column));
    if (found == target_.defaults.end() || found->second.empty()) return "NULL";
    return "(" + found->second + ")";
  }

  // The first source key MERGE must refuse, if any: one with several source
  // rows. Matched keys for an UPDATE (two updates of one row, as Delta
  // refuses), unmatched keys for an INSERT (two inserts of one key), any key
  // for an upsert (where the second row would silently update the first).
  // Keys are compared as the unique key compares them (the column's affinity,
  // the index's collation), so '7' and 7, or 'a' and 'A' under NOCASE, are one
  // key. WHEN conditions are not considered, as in Delta; NULL keys match
  // nothing and may repeat. Columns: the key values, the row count, 1 when
  // matched, and the distinct source spellings of the key when there are
  // several (else NULL).
  std::string CheckSql(Form form) const {
    std::vector<std::string> keys;
    std::vector<std::string> not_null;
    std::vector<std::string> named;
    std::vector<std::string> outer;
    std::vector<std::string> matches;
    std::vector<std::string> same_key;
    std::vector<std::string> spellings;
    for (size_t key_idx = 0; key_idx < spec_.keys.size(); ++key_idx) {
      const KeyEquality& key = spec_.keys[key_idx];
      std::string value = KeyValue(key_idx);
      std::string name = QuoteIdentifier("_k" + std::to_string(key_idx + 1));
      std::string grouped = "\"_merge_keys\"." + name;
      keys.push_back(value + Collate(key_idx));
      // A key an INTEGER PRIMARY KEY cannot hold (not an integer) never
      // matches and cannot be inserted (SQLite: datatype mismatch).
      not_null.push_back(key_rowid_ ? "typeof(" + value + ") = 'integer'"
                                    : "(" + tokens_.Slice(key.source) + ") IS NOT NULL");
      named.push_back(value + " AS " + name);
      outer.push_back(name);
      matches.push_back(KeyEquals(TargetColumn(declared_.at(Lower(key.column.name))), grouped, key_idx));
      same_key.push_back(KeyEquals(value, grouped, key_idx));
      spellings.push_back("quote(" + tokens_.Slice(key.source) + ")");
    }
    std::string spelling = Join(spellings, " || ', ' || ");
    if (spellings.size() > 1) spelling = "'(' || " + spelling + " || ')'";
    std::string written = "(SELECT CASE WHEN count(*) > 1 THEN group_concat(\"_w\", ', ') END FROM (SELECT DISTINCT " +
                          spelling + " AS \"_w\" FROM " + SourceAs() + " WHERE " + Join(same_key, " AND ") + "))";
    std::string with = spec_.with_text.empty()
                           ? "WITH "
                           : std::string(spec_.with_recursive ? "WITH RECURSIVE " : "WITH ") + spec_.with_list + ", ";
    std::string sql = with + "\"_merge_keys\" AS (SELECT " + Join(named, ", ") + ", count(*) AS \"_rows\" FROM " +
                      SourceAs() + " WHERE " + Join(not_null, " AND ") + " GROUP BY " + Join(keys, ", ") +
                      " HAVING count(*) > 1) SELECT " + Join(outer, ", ") + ", \"_rows\", \"_matched\", " + written +
                      " FROM (SELECT *, " + Exists(Join(matches, " AND ")) + " AS \"_matched\" FROM \"_merge_keys\") AS \"_merge_keys\"";
    if (form == Form::kUpdate) sql += " WHERE \"_matched\"";
    if (form == Form::kInsert) sql += " WHERE NOT \"_matched\"";
    return sql + " ORDER BY \"_matched\" DESC LIMIT 1";
  }

  const Tokens& tokens_;
  const MergeSpec& spec_;
  std::string prefix_;
  TargetInfo target_;
  std::map<std::string, std::string> declared_;  // lowercased -> declared target column name
  bool key_rowid_ = false;                       // the key is an INTEGER PRIMARY KEY
  std::vector<std::string> key_collations_;      // per ON key: the unique key's collation
  std::vector<std::string> key_affinities_;      // per ON key: the target column's affinity
};

Result<Translation> TranslateMerge(Database* db, std::string_view statement, bool validate) {
  Result<std::vector<Token>> tokenized = Tokenize(statement);
  if (!tokenized.ok()) return tokenized.status();
  Tokens tokens(statement, std::move(*tokenized));
  Result<MergeSpec> spec = Parser(tokens).Parse();
  if (!spec.ok()) return spec.status();
  return Translator(tokens, *spec).Translate(db, validate);
}

// sluice_merge_key(value, affinity): `value` as a column of `affinity` would
// store it, by SQLite's own conversion (sqlite3_value_numeric_type applies
// numeric affinity as an INSERT does): for TEXT, numbers become their text
// ('7', '1.0'); for INTEGER, REAL and NUMERIC, text that is a well-formed
// number becomes that number, and for INTEGER a REAL with an integer value
// becomes that integer (so an INTEGER PRIMARY KEY's candidates are exactly
// the integers); BLOB changes nothing; blobs and NULL never change. A REAL
// key cannot hold an integer beyond 2^53 exactly (SQLite keeps it as an
// integer in the record but reads it back rounded), so such a value is
// refused instead of being matched one way by the index and another by a
// comparison.
void MergeKeyFunction(sqlite3_context* context, int, sqlite3_value** argv) {
  sqlite3_value* value = argv[0];
  const unsigned char* affinity = sqlite3_value_text(argv[1]);
  char kind = affinity != nullptr ? static_cast<char>(affinity[0]) : 'B';
  int type = sqlite3_value_type(value);
  if (type == SQLITE_NULL || type == SQLITE_BLOB) {
    sqlite3_result_value(context, value);
    return;
  }
  if (kind == 'T') {
    if (type == SQLITE_TEXT) {
      sqlite3_result_value(context, value);
      return;
    }
    const unsigned char* text = sqlite3_value_text(value);
    if (text == nullptr) {
      sqlite3_result_error_nomem(context);
      return;
    }
    sqlite3_result_text(context, reinterpret_cast<const char*>(text), sqlite3_value_bytes(value), SQLITE_TRANSIENT);
    return;
  }
  if (kind != 'I' && kind != 'R' && kind != 'N') {
    sqlite3_result_value(context, value);
    return;
  }
  sqlite3_value* converted = sqlite3_value_dup(value);
  if (converted == nullptr) {
    sqlite3_result_error_nomem(context);
    return;
  }
  if (type == SQLITE_TEXT) sqlite3_value_numeric_type(converted);
  int converted_type = sqlite3_value_type(converted);
  if (kind == 'I' && converted_type == SQLITE_FLOAT) {
    double real = sqlite3_value_double(converted);
    if (real > -9223372036854775808.0 && real < 9223372036854775808.0 &&
        static_cast<double>(static_cast<int64_t>(real)) == real) {
      sqlite3_value_free(converted);
      sqlite3_result_int64(context, static_cast<int64_t>(real));
      return;
    }
  }
  if (kind == 'R' && converted_type == SQLITE_INTEGER) {
    int64_t integer = sqlite3_value_int64(converted);
    double real = static_cast<double>(integer);
    bool exact = real >= -9223372036854775808.0 && real < 9223372036854775808.0 && static_cast<int64_t>(real) == integer;
    if (!exact) {
      sqlite3_value_free(converted);
      std::string message = "the key value " + std::to_string(integer) +
                             " has no exact REAL value, so a REAL key column cannot match it reliably; declare the "
                             "key column INTEGER or NUMERIC";
      sqlite3_result_error(context, message.c_str(), -1);
      return;
    }
  }
  sqlite3_result_value(context, converted);
  sqlite3_value_free(converted);
}

// A translation and what it was made from.
struct CachedPlan {
  Translation translation;
  std::string stamp;
};

// The plans of one connection, by statement text. It lives as long as the
// connection: it is the user data of sluice_merge_key, whose destructor
// SQLite calls when the connection closes.
struct PlanCache {
  sqlite3* handle;
  std::unordered_map<std::string, CachedPlan> plans;
};

std::mutex& CachesMutex() {
  static std::mutex mutex;
  return mutex;
}

std::unordered_map<sqlite3*, PlanCache*>& Caches() {
  static auto* caches = new std::unordered_map<sqlite3*, PlanCache*>();
  return *caches;
}

void DestroyPlanCache(void* pointer) {
  auto* cache = static_cast<PlanCache*>(pointer);
  {
    std::lock_guard<std::mutex> lock(CachesMutex());
    auto found = Caches().find(cache->handle);
    if (found != Caches().end() && found->second == cache) Caches().erase(found);
  }
  delete cache;
}

// The connection's plan cache. The first call registers sluice_merge_key on
// the connection, with the cache as its user data.
Result<PlanCache*> CacheFor(Database* db) {
  sqlite3* handle = db->handle();
  {
    std::lock_guard<std::mutex> lock(CachesMutex());
    auto found = Caches().find(handle);
    if (found != Caches().end()) return found->second;
  }
  auto* cache = new PlanCache{handle, {}};
  // On failure SQLite calls the destructor itself.
  int rc = sqlite3_create_function_v2(handle, kKeyFunction, 2, SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS,
                                      cache, &MergeKeyFunction, nullptr, nullptr, &DestroyPlanCache);
  if (rc != SQLITE_OK) {
    return Status::SqlError(std::string("MERGE: cannot register ") + kKeyFunction + ": " + sqlite3_errmsg(handle));
  }
  std::lock_guard<std::mutex> lock(CachesMutex());
  Caches()[handle] = cache;
  return cache;
}

// What a translation depends on besides its text, read cheaply: the schema
// version of main and of the target's schema (any DDL there bumps it),
// whether a temp table now hides an unqualified target, and for SET * or
// INSERT * the source's columns (a temp table recreated with other columns
// does not bump main's version). Empty when the plan must not be cached (an
// unqualified target found in an attached database, whose search order
// other schemas can change).
Result<std::string> Stamp(Database* db, const Translation& translation) {
  const std::string& schema = translation.target_schema;
  if (!translation.target_qualified && schema != "main" && schema != "temp") return std::string();
  std::string stamp;
  for (const std::string& name : {std::string("main"), schema}) {
    Result<int64_t> version = db->QueryInt("PRAGMA " + QuoteIdentifier(name) + ".schema_version");
    if (!version.ok()) return version.status();
    stamp += std::to_string(*version) + "/";
  }
  if (!translation.target_qualified && schema != "temp") {
    int hidden = sqlite3_table_column_metadata(db->handle(), "temp", translation.target_name.c_str(), nullptr,
                                               nullptr, nullptr, nullptr, nullptr, nullptr);
    stamp += hidden == SQLITE_OK ? "hidden/" : "/";
  }
  if (!translation.select_star.empty()) {
    Result<std::vector<std::string>> columns = SourceColumns(db, translation.select_star);
    if (!columns.ok()) return columns.status();
    if (*columns != translation.source_columns) return std::string("stale");
  }
  return stamp;
}

// The translation of `statement`, from the connection's cache when the
// schema it was made from has not changed.
Result<const Translation*> CachedTranslation(Database* db, std::string_view statement) {
  Result<PlanCache*> cache = CacheFor(db);
  if (!cache.ok()) return cache.status();
  std::string key(statement);
  auto found = (*cache)->plans.find(key);
  if (found != (*cache)->plans.end()) {
    Result<std::string> stamp = Stamp(db, found->second.translation);
    if (stamp.ok() && !stamp->empty() && *stamp == found->second.stamp) return &found->second.translation;
    (*cache)->plans.erase(found);
  }
  Result<Translation> translation = TranslateMerge(db, statement, /*validate=*/false);
  if (!translation.ok()) return translation.status();
  Result<std::string> stamp = Stamp(db, *translation);
  if ((*cache)->plans.size() >= kMaxCachedPlans) (*cache)->plans.clear();
  CachedPlan& entry = (*cache)->plans[key];
  entry.translation = std::move(*translation);
  // Not cacheable: kept until the next run of the statement, which replans.
  entry.stamp = stamp.ok() ? *stamp : std::string();
  return &entry.translation;
}

// A key value as an analyst would write it: 'O1', 42, x'00ff'.
std::string ShowValue(const Statement& stmt, int column) {
  switch (sqlite3_column_type(stmt.get(), column)) {
    case SQLITE_INTEGER:
    case SQLITE_FLOAT: return stmt.ColumnText(column);
    case SQLITE_BLOB: {
      const auto* bytes = static_cast<const unsigned char*>(sqlite3_column_blob(stmt.get(), column));
      int size = sqlite3_column_bytes(stmt.get(), column);
      static const char kHex[] = "0123456789abcdef";
      std::string hex = "x'";
      for (int byte_idx = 0; byte_idx < size && byte_idx < 32; ++byte_idx) {
        hex += kHex[bytes[byte_idx] >> 4];
        hex += kHex[bytes[byte_idx] & 0xf];
      }
      return hex + (size > 32 ? "...'" : "'");
    }
    default: {
      std::string text = stmt.ColumnText(column);
      if (text.size() <= 100) return QuoteLiteral(text);
      size_t cut = 100;
      while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;  // keep UTF-8 whole
      return QuoteLiteral(text.substr(0, cut)) + "...";
    }
  }
}

}  // namespace

bool IsMergeStatement(std::string_view sql) {
  size_t pos = SkipBlank(sql, 0);
  auto keyword_at = [&](size_t at, std::string_view keyword) {
    return sql.size() - at >= keyword.size() && Lower(sql.substr(at, keyword.size())) == keyword &&
           (at + keyword.size() == sql.size() || !IsIdentChar(sql[at + keyword.size()]));
  };
  if (keyword_at(pos, "merge")) return true;
  if (!keyword_at(pos, "with")) return false;
  // WITH ... MERGE: past the common table expressions of this statement.
  std::string_view statement = sql.substr(0, StatementEnd(sql, pos));
  Result<std::vector<Token>> tokenized = Tokenize(statement);
  if (!tokenized.ok()) return false;
  Tokens tokens(statement, std::move(*tokenized));
  size_t index = tokens.IsWord(1, "RECURSIVE") ? 2 : 1;
  index = SkipCommonTableExpressions(tokens, index);
  return index != kNone && tokens.IsWord(index, "MERGE");
}

size_t StatementEnd(std::string_view text, size_t start) {
  int depth = 0;
  size_t pos = start;
  while (pos < text.size()) {
    size_t next = SkipBlank(text, pos);
    if (next != pos) {
      pos = next;
      continue;
    }
    char c = text[pos];
    if (c == '\'' || c == '"' || c == '`' || c == '[') {
      size_t end = QuotedEnd(text, pos);
      if (end == kNone) return text.size();
      pos = end;
      continue;
    }
    if (c == '(') ++depth;
    if (c == ')' && depth > 0) --depth;
    if (c == ';' && depth == 0) return pos + 1;
    ++pos;
  }
  return text.size();
}

Result<MergePlan> PlanMerge(Database* db, std::string_view statement) {
  Result<PlanCache*> cache = CacheFor(db);  // registers sluice_merge_key, which the plan calls
  if (!cache.ok()) return cache.status();
  Result<Translation> translation = TranslateMerge(db, statement, /*validate=*/true);
  if (!translation.ok()) return translation.status();
  return translation->plan;
}

Status RunMerge(Database* db, std::string_view statement) {
  Result<const Translation*> cached = CachedTranslation(db, statement);
  if (!cached.ok()) return cached.status();
  const Translation& translation = **cached;
  const std::string& prefix = translation.prefix;
  Result<Statement> check = db->Prepare(translation.plan.check_sql);
  if (!check.ok()) return check.status().WithContext(prefix);
  Result<Statement> merge = db->Prepare(translation.plan.sql);
  if (!merge.ok()) return merge.status().WithContext(prefix);
  Result<bool> row = check->Step();
  if (!row.ok()) return row.status().WithContext(prefix);
  if (*row) {
    int key_count = static_cast<int>(translation.key_columns.size());
    std::vector<std::string> equalities;
    for (int key_idx = 0; key_idx < key_count; ++key_idx) {
      equalities.push_back(Shown(translation.key_columns[key_idx]) + " = " + ShowValue(*check, key_idx));
    }
    std::string rows = std::to_string(check->ColumnInt(key_count));
    bool matched = check->ColumnInt(key_count + 1) != 0;
    std::string what = matched ? rows + " source rows match the target row with "
                               : rows + " source rows would insert the same new row with ";
    std::string written;
    if (!check->IsNull(key_count + 2)) {
      written = check->ColumnText(key_count + 2);
      if (written.size() > 200) {
        size_t cut = 200;
        while (cut > 0 && (static_cast<unsigned char>(written[cut]) & 0xC0) == 0x80) --cut;  // keep UTF-8 whole
        written = written.substr(0, cut) + "...";
      }
      written = " (the source writes it " + written + ", one key for the target's unique key)";
    }
    return Status::SqlError(prefix + ": " + what + Join(equalities, " and ") + written +
                            "; deduplicate the source first (e.g. keep row_number() over (partition by " +
                            Join(translation.key_sources, ", ") + " order by ...) = 1)");
  }
  check = Statement();  // done reading before writing
  Status st = merge->Run();
  if (!st.ok()) return st.WithContext(prefix);
  return Status::Ok();
}

}  // namespace sluice
