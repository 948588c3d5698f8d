// Decoder: how a message's bytes become the typed columns of the staging
// table, like Kafka Connect's converters. A decoder takes a message and the
// pipeline's declared [columns] and gives one typed cell per column, or the
// reason the message cannot be staged (it then goes to the quarantine with
// that reason). The JSON decoder (connectors/json_decoder.h) is the first;
// a second format (Avro) is another implementation of the same interface.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/message.h"
#include "common/status.h"

namespace sluice {

enum class ColumnType { kText, kInteger, kReal, kBoolean, kJson };

// One declared column: [columns] NAME = TYPE [PATH].
struct ColumnSpec {
  std::string name;
  ColumnType type = ColumnType::kText;
  // Path into the value: object member names and array indices. Empty means
  // the top-level member called `name`.
  struct PathElement {
    std::string member;  // used when index < 0
    int64_t index = -1;
  };
  std::vector<PathElement> path;
  std::string path_text;  // as written, for messages ("$.customer.id")
};

// Parses a [columns] value such as "REAL" or "TEXT $.customer.id". The error
// says what is accepted.
Result<ColumnSpec> ParseColumnSpec(const std::string& name, const std::string& spec);
const char* ColumnTypeName(ColumnType type);

// One converted value, ready to bind.
struct Cell {
  enum class Kind { kNull, kInt, kReal, kText };
  Kind kind = Kind::kNull;
  int64_t int_value = 0;
  double real_value = 0;
  std::string_view text;  // points into the decoder's buffers or `owned`
  std::string owned;
};

// What a decoder made of one message.
struct DecodedRow {
  std::vector<Cell> cells;           // one per declared column, in order (when `error` is empty)
  std::optional<std::string> error;  // why the message cannot be staged: it goes to the quarantine
  // The value is known to be valid UTF-8 without NUL bytes (the decoder
  // checked), so a target may store it as text without scanning it again.
  bool value_is_text = false;
};

class Decoder {
 public:
  virtual ~Decoder() = default;

  // Decodes `message` into `row`. A tombstone (no value) gives all-NULL
  // cells; a message whose source flagged its metadata (envelope_error)
  // gives that error. Never fails otherwise: a value that does not fit the
  // columns is an `error`, not a Status. The cells' text stays valid until
  // the next Decode() on this decoder, or until `message` is destroyed.
  // Not thread-safe: one decoder per thread (they are cheap).
  virtual void Decode(const Message& message, DecodedRow* row) = 0;

  // The declared columns, in the order of the cells.
  virtual const std::vector<ColumnSpec>& columns() const = 0;

  // "json": the format's name, for messages.
  virtual const char* format() const = 0;
};

// The decoder for [source] format `format` ("json"); InvalidConfig naming
// the formats there are otherwise.
Result<std::unique_ptr<Decoder>> MakeDecoder(const std::string& format, std::vector<ColumnSpec> columns);

}  // namespace sluice
