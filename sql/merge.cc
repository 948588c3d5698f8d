// MERGE implementation: a tokenizer that knows SQLite's literals, quoted
// identifiers and comments; a small parser for the supported grammar; and a
// translator that copies the analyst's expressions verbatim into one of three
// statements in which the aliases they were written with are still in scope.
// Every generated statement is prepared while planning, so that mistakes
// (unknown columns, bad syntax inside an expression) surface as the MERGE's
// error before anything runs.
#include "sql/merge.h"

#include <sqlite3.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <set>
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

struct KeyEquality {
  Name column;  // target column
  Span source;  // the source expression ON equates it with
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
    SLUICE_RETURN_IF_ERROR(ExpectWord("MERGE", "at the start"));
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
      spec->keys.push_back({tokens_.NameAt(target.first + 2), source});
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

// What the database says about the target table.
struct TargetInfo {
  std::vector<std::string> columns;                   // in declared order
  std::map<std::string, std::string> defaults;        // lowercased column -> default expression ("" for none)
  std::vector<std::vector<std::string>> unique_keys;  // primary key, then unique indexes
};

// A pragma table-valued function call: pragma_index_list('t', 'main').
std::string PragmaCall(const char* pragma, const std::string& argument, const std::string& schema) {
  std::string call = std::string("pragma_") + pragma + "(" + QuoteLiteral(argument);
  if (!schema.empty()) call += ", " + QuoteLiteral(schema);
  return call + ")";
}

// Reads the target's kind, columns, defaults and unique keys. Partial unique
// indexes and indexes on expressions are left out: ON t.col = ... cannot use
// them as an upsert's conflict target.
Result<TargetInfo> ReadTarget(Database* db, const MergeSpec& spec) {
  std::string kind_sql = "SELECT type FROM pragma_table_list WHERE name = " + QuoteLiteral(spec.target.name) +
                         " COLLATE NOCASE";
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
  std::vector<std::pair<int64_t, std::string>> primary_key;
  Result<Statement> columns = db->Prepare("SELECT name, dflt_value, pk FROM " +
                                          PragmaCall("table_info", spec.target.name, spec.target_schema));
  if (!columns.ok()) return columns.status();
  while (true) {
    Result<bool> row = columns->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    std::string name = columns->ColumnText(0);
    info.columns.push_back(name);
    info.defaults[Lower(name)] = columns->ColumnText(1);
    if (columns->ColumnInt(2) > 0) primary_key.emplace_back(columns->ColumnInt(2), name);
  }
  if (!primary_key.empty()) {
    std::sort(primary_key.begin(), primary_key.end());
    info.unique_keys.emplace_back();
    for (const auto& column : primary_key) info.unique_keys.back().push_back(column.second);
  }

  Result<Statement> indexes = db->Prepare("SELECT name FROM " +
                                          PragmaCall("index_list", spec.target.name, spec.target_schema) +
                                          " WHERE \"unique\" AND NOT partial ORDER BY seq DESC");
  if (!indexes.ok()) return indexes.status();
  while (true) {
    Result<bool> row = indexes->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    Result<Statement> index_columns = db->Prepare(
        "SELECT name FROM " + PragmaCall("index_info", indexes->ColumnText(0), spec.target_schema) + " ORDER BY seqno");
    if (!index_columns.ok()) return index_columns.status();
    std::vector<std::string> key;
    bool on_expression = false;
    while (true) {
      Result<bool> column = index_columns->Step();
      if (!column.ok()) return column.status();
      if (!*column) break;
      on_expression = on_expression || index_columns->IsNull(0);
      key.push_back(index_columns->ColumnText(0));
    }
    if (!on_expression) info.unique_keys.push_back(key);
  }
  return info;
}

// The source's column names, from preparing SELECT * over it.
Result<std::vector<std::string>> SourceColumns(Database* db, const std::string& source) {
  Result<Statement> stmt = db->Prepare("SELECT * FROM " + source);
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
};

// Builds the SQL of a parsed MERGE from the target's schema.
class Translator {
 public:
  Translator(const Tokens& tokens, const MergeSpec& spec)
      : tokens_(tokens), spec_(spec), prefix_("MERGE INTO " + spec.target_text) {}

  Result<Translation> Translate(Database* db) {
    Result<TargetInfo> target = ReadTarget(db, spec_);
    if (!target.ok()) return target.status().WithContext(prefix_);
    target_ = *target;
    for (const std::string& column : target_.columns) declared_[Lower(column)] = column;

    Translation translation;
    translation.prefix = prefix_;
    SLUICE_RETURN_IF_ERROR(ResolveKeys(&translation));

    std::vector<Assignment> updates = spec_.updates;
    std::vector<Assignment> inserts = spec_.inserts;
    if (spec_.update_all || spec_.insert_all) SLUICE_RETURN_IF_ERROR(ExpandStars(db, &updates, &inserts));
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
      Result<Statement> prepared = db->Prepare(*sql);
      if (!prepared.ok()) return prepared.status().WithContext(prefix_);
    }
    return translation;
  }

 private:
  Status Error(const std::string& what) const { return Status::SqlError(prefix_ + ": " + what); }

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
    for (const std::vector<std::string>& unique_key : target_.unique_keys) {
      std::set<std::string> columns;
      std::vector<std::string> names;
      for (const std::string& column : unique_key) {
        columns.insert(Lower(column));
        names.push_back(Shown(column));
      }
      if (columns == on_columns) return Status::Ok();
      known.push_back("(" + Join(names, ", ") + ")");
    }
    std::string table = Shown(spec_.target.name);
    std::string columns = Join(shown, ", ");
    std::string index = spec_.target.name + "_by";
    for (const std::string& column : translation->key_columns) index += "_" + column;
    std::string message = "ON (" + columns + ") needs a unique index or primary key on " + table + "(" + columns + ")";
    if (!known.empty()) message += ", and its unique keys are " + Join(known, ", ");
    return Error(message + "; add: create unique index " + Shown(index) + " on " + table + "(" + columns + ");");
  }

  bool IsKey(const std::string& column) const {
    for (const KeyEquality& key : spec_.keys) {
      if (Lower(key.column.name) == Lower(column)) return true;
    }
    return false;
  }

  // UPDATE SET * and INSERT *: every target column the source has by name
  // (any case). SET * leaves the key columns alone: ON made them equal.
  Status ExpandStars(Database* db, std::vector<Assignment>* updates, std::vector<Assignment>* inserts) {
    Result<std::vector<std::string>> source = SourceColumns(db, SourceAs());
    if (!source.ok()) return source.status().WithContext(prefix_);
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
    std::string sql = "UPDATE " + TargetAs() + " SET " + Join(sets, ", ") + " FROM " + SourceAs() + " WHERE (" +
                      tokens_.Slice(spec_.on) + ")";
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
    std::string sql = "INSERT INTO " + spec_.target_text + " (" + Join(columns, ", ") + ") SELECT " +
                      Join(values, ", ") + " FROM " + SourceAs() + " WHERE NOT " + Exists(tokens_.Slice(spec_.on));
    if (!spec_.insert_condition.empty()) sql += " AND (" + tokens_.Slice(spec_.insert_condition) + ")";
    return sql;
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
    return "INSERT INTO " + spec_.target_text + " (" + Join(columns, ", ") + ") SELECT " + Join(values, ", ") +
           " FROM " + SourceAs() + " LEFT JOIN " + TargetAs() + " ON " + tokens_.Slice(spec_.on) + " WHERE " +
           filter + " ON CONFLICT (" + Join(conflict, ", ") + ") DO " + action;
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
  // WHEN conditions are not considered, as in Delta; NULL keys match nothing
  // and may repeat. Columns: the key values, the row count, 1 when matched.
  std::string CheckSql(Form form) const {
    std::vector<std::string> keys;
    std::vector<std::string> not_null;
    std::vector<std::string> named;
    std::vector<std::string> outer;
    std::vector<std::string> matches;
    for (size_t key_idx = 0; key_idx < spec_.keys.size(); ++key_idx) {
      const KeyEquality& key = spec_.keys[key_idx];
      std::string expression = "(" + tokens_.Slice(key.source) + ")";
      std::string name = QuoteIdentifier("_k" + std::to_string(key_idx + 1));
      keys.push_back(expression);
      not_null.push_back(expression + " IS NOT NULL");
      named.push_back(expression + " AS " + name);
      outer.push_back(name);
      matches.push_back(TargetColumn(declared_.at(Lower(key.column.name))) + " = \"_merge_keys\"." + name);
    }
    std::string sql = "WITH \"_merge_keys\" AS (SELECT " + Join(named, ", ") + ", count(*) AS \"_rows\" FROM " +
                      SourceAs() + " WHERE " + Join(not_null, " AND ") + " GROUP BY " + Join(keys, ", ") +
                      " HAVING count(*) > 1) SELECT " + Join(outer, ", ") + ", \"_rows\", \"_matched\" FROM " +
                      "(SELECT *, " + Exists(Join(matches, " AND ")) + " AS \"_matched\" FROM \"_merge_keys\")";
    if (form == Form::kUpdate) sql += " WHERE \"_matched\"";
    if (form == Form::kInsert) sql += " WHERE NOT \"_matched\"";
    return sql + " ORDER BY \"_matched\" DESC LIMIT 1";
  }

  const Tokens& tokens_;
  const MergeSpec& spec_;
  std::string prefix_;
  TargetInfo target_;
  std::map<std::string, std::string> declared_;  // lowercased -> declared target column name
};

Result<Translation> TranslateMerge(Database* db, std::string_view statement) {
  Result<std::vector<Token>> tokenized = Tokenize(statement);
  if (!tokenized.ok()) return tokenized.status();
  Tokens tokens(statement, std::move(*tokenized));
  Result<MergeSpec> spec = Parser(tokens).Parse();
  if (!spec.ok()) return spec.status();
  return Translator(tokens, *spec).Translate(db);
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
  if (sql.size() - pos < 5 || Lower(sql.substr(pos, 5)) != "merge") return false;
  return pos + 5 == sql.size() || !IsIdentChar(sql[pos + 5]);
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
  Result<Translation> translation = TranslateMerge(db, statement);
  if (!translation.ok()) return translation.status();
  return translation->plan;
}

Status RunMerge(Database* db, std::string_view statement) {
  Result<Translation> translation = TranslateMerge(db, statement);
  if (!translation.ok()) return translation.status();
  const std::string& prefix = translation->prefix;
  {
    Result<Statement> check = db->Prepare(translation->plan.check_sql);
    if (!check.ok()) return check.status().WithContext(prefix);
    Result<bool> row = check->Step();
    if (!row.ok()) return row.status().WithContext(prefix);
    if (*row) {
      int key_count = static_cast<int>(translation->key_columns.size());
      std::vector<std::string> equalities;
      for (int key_idx = 0; key_idx < key_count; ++key_idx) {
        equalities.push_back(Shown(translation->key_columns[key_idx]) + " = " + ShowValue(*check, key_idx));
      }
      std::string rows = std::to_string(check->ColumnInt(key_count));
      bool matched = check->ColumnInt(key_count + 1) != 0;
      std::string what = matched ? rows + " source rows match the target row with "
                                 : rows + " source rows would insert the same new row with ";
      return Status::SqlError(prefix + ": " + what + Join(equalities, " and ") +
                              "; deduplicate the source first (e.g. keep row_number() over (partition by " +
                              Join(translation->key_sources, ", ") + " order by ...) = 1)");
    }
  }
  Status st = db->Exec(translation->plan.sql);
  if (!st.ok()) return st.WithContext(prefix);
  return Status::Ok();
}

}  // namespace sluice
