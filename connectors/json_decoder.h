// JsonDecoder: the JSON format. The declared [columns] are taken from the
// value (a JSON object) by name or by JSON path and cast leniently: "42.00"
// and 42 are both REAL 42.0; a missing field or JSON null is NULL; "abc" for
// a REAL column is an error naming the column, the value and the type.
// Values that SQLite's JSON functions could not read later (NUL bytes,
// invalid UTF-8, nesting deeper than 1000) are errors too, so they never
// block a step. RapidJSON stays inside the implementation.
#pragma once

#include <memory>
#include <vector>

#include "connectors/decoder.h"

namespace sluice {

class JsonDecoder : public Decoder {
 public:
  explicit JsonDecoder(std::vector<ColumnSpec> columns);
  ~JsonDecoder() override;

  void Decode(const Message& message, DecodedRow* row) override;
  const std::vector<ColumnSpec>& columns() const override { return columns_; }
  const char* format() const override { return "json"; }

 private:
  struct Parser;  // RapidJSON's document and allocators, reused across messages
  std::vector<ColumnSpec> columns_;
  std::unique_ptr<Parser> parser_;
};

}  // namespace sluice
