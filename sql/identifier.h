// SQL names and literals, quoted the way standard SQL (and so SQLite and
// PostgreSQL) reads them.
#pragma once

#include <string>
#include <string_view>

namespace sluice {

// Quotes `name` as an SQL identifier: "a""b". Safe for any input.
std::string QuoteIdentifier(std::string_view name);
// Quotes `text` as an SQL string literal: 'it''s'.
std::string QuoteLiteral(std::string_view text);
// True for names made of [A-Za-z_][A-Za-z0-9_]*: the names sluice accepts for
// tables and columns it creates, so that analysts can write them unquoted.
bool IsPlainIdentifier(std::string_view name);

}  // namespace sluice
