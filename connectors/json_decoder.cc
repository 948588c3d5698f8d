// JsonDecoder implementation: JSON path lookup and lenient casts, with
// RapidJSON's document and allocators reused across messages.
#include "connectors/json_decoder.h"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace sluice {
namespace {

constexpr size_t kValueBufferSize = 64 * 1024;
constexpr size_t kMaxJsonDepth = 1000;

// The deepest nesting of [ and { in `text`, outside strings.
size_t JsonDepth(std::string_view text) {
  size_t depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}
constexpr unsigned kParseFlags = rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag;

std::string Lower(std::string_view text) {
  std::string lower(text);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower;
}

std::string_view Trim(std::string_view text) {
  size_t begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string_view::npos) return {};
  size_t end = text.find_last_not_of(" \t\r\n");
  return text.substr(begin, end - begin + 1);
}

std::string ToJson(const rapidjson::Value& value) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  value.Accept(writer);
  return std::string(buffer.GetString(), buffer.GetSize());
}

// Shows a value in an error message, shortened.
std::string Show(const rapidjson::Value& value) {
  std::string json = ToJson(value);
  if (json.size() > 60) json = json.substr(0, 57) + "...";
  return json;
}

const char* KindOf(const rapidjson::Value& value) {
  if (value.IsObject()) return "an object";
  if (value.IsArray()) return "an array";
  if (value.IsString()) return "a string";
  if (value.IsBool()) return "a boolean";
  if (value.IsNumber()) return "a number";
  return "null";
}

bool ParseDouble(std::string_view text, double* out) {
  std::string trimmed(Trim(text));
  if (trimmed.empty()) return false;
  char* end = nullptr;
  errno = 0;
  double parsed = std::strtod(trimmed.c_str(), &end);
  if (*end != '\0' || errno == ERANGE || !std::isfinite(parsed)) return false;
  *out = parsed;
  return true;
}

bool DoubleToInt(double value, int64_t* out) {
  if (!std::isfinite(value) || std::floor(value) != value) return false;
  if (value < -9223372036854775808.0 || value >= 9223372036854775808.0) return false;
  *out = static_cast<int64_t>(value);
  return true;
}

bool ParseInteger(std::string_view text, int64_t* out) {
  std::string trimmed(Trim(text));
  if (trimmed.empty()) return false;
  char* end = nullptr;
  errno = 0;
  long long parsed = std::strtoll(trimmed.c_str(), &end, 10);
  if (*end == '\0' && errno == 0) {
    *out = parsed;
    return true;
  }
  double as_double = 0;
  return ParseDouble(trimmed, &as_double) && DoubleToInt(as_double, out);
}

Status Convert(const ColumnSpec& column, const rapidjson::Value* value, Cell* cell) {
  cell->kind = Cell::Kind::kNull;
  if (value == nullptr || value->IsNull()) return Status::Ok();
  auto fail = [&](const std::string& why) {
    std::string where = column.path_text.empty() ? column.name : column.name + " (" + column.path_text + ")";
    return Status::InvalidInput("column " + where + ": " + Show(*value) + " " + why + " (declared " +
                                ColumnTypeName(column.type) + ")");
  };
  auto set_owned_text = [&](std::string text) {
    cell->owned = std::move(text);
    cell->text = cell->owned;
    cell->kind = Cell::Kind::kText;
  };
  switch (column.type) {
    case ColumnType::kText:
      if (value->IsString()) {
        cell->kind = Cell::Kind::kText;
        cell->text = std::string_view(value->GetString(), value->GetStringLength());
      } else {
        set_owned_text(ToJson(*value));
      }
      return Status::Ok();
    case ColumnType::kJson:
      set_owned_text(ToJson(*value));
      return Status::Ok();
    case ColumnType::kInteger: {
      int64_t parsed = 0;
      if (value->IsInt64()) {
        parsed = value->GetInt64();
      } else if (value->IsUint64()) {
        return fail("is out of range for a 64-bit integer");
      } else if (value->IsDouble()) {
        double number = value->GetDouble();
        if (std::fabs(number) >= 9223372036854775808.0) return fail("is out of range for a 64-bit integer");
        if (!DoubleToInt(number, &parsed)) return fail("is not a whole number");
      } else if (value->IsString()) {
        std::string_view text(value->GetString(), value->GetStringLength());
        if (!ParseInteger(text, &parsed)) {
          double number = 0;
          if (ParseDouble(text, &number) && std::fabs(number) >= 9223372036854775808.0) {
            return fail("is out of range for a 64-bit integer");
          }
          return fail("is not a whole number");
        }
      } else if (value->IsBool()) {
        parsed = value->GetBool() ? 1 : 0;
      } else {
        return fail(std::string("is ") + KindOf(*value) + ", not a whole number");
      }
      cell->kind = Cell::Kind::kInt;
      cell->int_value = parsed;
      return Status::Ok();
    }
    case ColumnType::kReal: {
      double parsed = 0;
      if (value->IsNumber()) {
        parsed = value->GetDouble();
      } else if (value->IsString()) {
        if (!ParseDouble(std::string_view(value->GetString(), value->GetStringLength()), &parsed)) {
          return fail("is not a number");
        }
      } else {
        return fail(std::string("is ") + KindOf(*value) + ", not a number");
      }
      cell->kind = Cell::Kind::kReal;
      cell->real_value = parsed;
      return Status::Ok();
    }
    case ColumnType::kBoolean: {
      int64_t parsed = -1;
      if (value->IsBool()) {
        parsed = value->GetBool() ? 1 : 0;
      } else if (value->IsNumber()) {
        double number = value->GetDouble();
        if (number == 0 || number == 1) parsed = static_cast<int64_t>(number);
      } else if (value->IsString()) {
        std::string text = Lower(Trim(std::string_view(value->GetString(), value->GetStringLength())));
        if (text == "true" || text == "t" || text == "yes" || text == "y" || text == "1") parsed = 1;
        if (text == "false" || text == "f" || text == "no" || text == "n" || text == "0") parsed = 0;
      }
      if (parsed < 0) return fail("is not a boolean (use true/false, 1/0 or \"yes\"/\"no\")");
      cell->kind = Cell::Kind::kInt;
      cell->int_value = parsed;
      return Status::Ok();
    }
  }
  return Status::Ok();
}

}  // namespace

struct JsonDecoder::Parser {
  Parser() : value_buffer(new char[kValueBufferSize]), value_allocator(value_buffer.get(), kValueBufferSize) {}
  std::unique_ptr<char[]> value_buffer;
  rapidjson::MemoryPoolAllocator<> value_allocator;
  rapidjson::MemoryPoolAllocator<> stack_allocator;
  // Fills `cells` from `value`, or returns InvalidInput with the reason.
  Status Parse(const std::vector<ColumnSpec>& columns, const std::optional<std::string>& value, std::vector<Cell>& cells) {
    for (Cell& cell : cells) {
      cell.kind = Cell::Kind::kNull;
      cell.text = {};
    }
    if (!value) return Status::Ok();  // tombstone
    if (value->empty()) return Status::InvalidInput("empty value: not a JSON document");
    if (const void* nul = std::memchr(value->data(), '\0', value->size())) {
      return Status::InvalidInput("the value contains a NUL byte at offset " +
                                  std::to_string(static_cast<const char*>(nul) - value->data()) +
                                  " (JSON text cannot; escape it as \\u0000)");
    }
    // SQLite's JSON functions refuse documents nested deeper than this (2000 in
    // 3.40, 1000 from 3.45): such a message would stage, then fail every step
    // that reads _kafka_value, and block the pipeline.
    if (value->size() > 2 * kMaxJsonDepth && JsonDepth(*value) > kMaxJsonDepth) {
      return Status::InvalidInput("the value is nested more than " + std::to_string(kMaxJsonDepth) +
                                  " levels deep, more than SQLite's JSON functions accept");
    }
    value_allocator.Clear();
    stack_allocator.Clear();
    using Document = rapidjson::GenericDocument<rapidjson::UTF8<>, rapidjson::MemoryPoolAllocator<>,
                                                rapidjson::MemoryPoolAllocator<>>;
    Document doc(&value_allocator, 1024, &stack_allocator);
    doc.Parse<kParseFlags>(value->data(), value->size());
    if (doc.HasParseError()) {
      return Status::InvalidInput("invalid JSON at byte " + std::to_string(doc.GetErrorOffset()) + ": " +
                                  rapidjson::GetParseError_En(doc.GetParseError()));
    }
    if (!doc.IsObject()) {
      return Status::InvalidInput(std::string("the value is ") + KindOf(doc) + ", not a JSON object");
    }
    if (columns.empty()) return Status::Ok();
    // The document's strings live in value_allocator (which never frees) until
    // the next Parse(), so cells may point into them.
    for (size_t column_idx = 0; column_idx < columns.size(); ++column_idx) {
      const ColumnSpec& column = columns[column_idx];
      const rapidjson::Value* node = &doc;
      if (column.path.empty()) {
        auto member = doc.FindMember(rapidjson::StringRef(column.name.data(), column.name.size()));
        node = member == doc.MemberEnd() ? nullptr : &member->value;
      } else {
        for (const auto& element : column.path) {
          if (element.index >= 0) {
            if (!node->IsArray() || static_cast<size_t>(element.index) >= node->Size()) {
              node = nullptr;
              break;
            }
            node = &(*node)[static_cast<rapidjson::SizeType>(element.index)];
          } else {
            if (!node->IsObject()) {
              node = nullptr;
              break;
            }
            auto member = node->FindMember(rapidjson::StringRef(element.member.data(), element.member.size()));
            if (member == node->MemberEnd()) {
              node = nullptr;
              break;
            }
            node = &member->value;
          }
        }
      }
      SLUICE_RETURN_IF_ERROR(Convert(column, node, &cells[column_idx]));
    }
    return Status::Ok();
  }
};

JsonDecoder::JsonDecoder(std::vector<ColumnSpec> columns) : columns_(std::move(columns)), parser_(new Parser) {}
JsonDecoder::~JsonDecoder() = default;

void JsonDecoder::Decode(const Message& message, DecodedRow* row) {
  row->cells.resize(columns_.size());
  row->error.reset();
  row->value_is_text = false;
  if (message.envelope_error) {
    row->error = *message.envelope_error;
    return;
  }
  Status parsed = parser_->Parse(columns_, message.value, row->cells);
  if (!parsed.ok()) {
    row->error = parsed.message();
    return;
  }
  // Parsing validated the encoding and refused NUL bytes.
  row->value_is_text = message.value.has_value();
}

}  // namespace sluice
