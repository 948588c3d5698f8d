// Decoder vocabulary: the [columns] specification and the decoder factory.
#include "connectors/decoder.h"

#include <cctype>

#include "connectors/json_decoder.h"

namespace sluice {
namespace {

std::string Upper(std::string text) {
  for (char& c : text) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return text;
}

std::string_view Trim(std::string_view text) {
  size_t begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string_view::npos) return {};
  size_t end = text.find_last_not_of(" \t\r\n");
  return text.substr(begin, end - begin + 1);
}

Result<std::vector<ColumnSpec::PathElement>> ParsePath(const std::string& path) {
  std::vector<ColumnSpec::PathElement> elements;
  if (path.empty() || path[0] != '$') return Status::InvalidConfig("a JSON path starts with $ (for example $.customer.id)");
  size_t pos = 1;
  while (pos < path.size()) {
    if (path[pos] == '.') {
      size_t end = path.find_first_of(".[", pos + 1);
      std::string member = path.substr(pos + 1, end == std::string::npos ? std::string::npos : end - pos - 1);
      if (member.empty()) return Status::InvalidConfig("empty member name in JSON path " + path);
      elements.push_back({member, -1});
      pos = end == std::string::npos ? path.size() : end;
    } else if (path[pos] == '[') {
      size_t end = path.find(']', pos);
      if (end == std::string::npos) return Status::InvalidConfig("unclosed [ in JSON path " + path);
      std::string inside = path.substr(pos + 1, end - pos - 1);
      if (inside.size() >= 2 && (inside.front() == '"' || inside.front() == '\'') && inside.back() == inside.front()) {
        elements.push_back({inside.substr(1, inside.size() - 2), -1});
      } else {
        char* parse_end = nullptr;
        errno = 0;
        long long index = std::strtoll(inside.c_str(), &parse_end, 10);
        if (inside.empty() || *parse_end != '\0' || index < 0 || errno != 0) {
          return Status::InvalidConfig("[" + inside + "] in JSON path " + path + " is not an array index or a quoted name");
        }
        elements.push_back({"", index});
      }
      pos = end + 1;
    } else {
      return Status::InvalidConfig("unexpected '" + std::string(1, path[pos]) + "' in JSON path " + path +
                                   " (use $.a.b or $.a[0])");
    }
  }
  return elements;
}

}  // namespace

const char* ColumnTypeName(ColumnType type) {
  switch (type) {
    case ColumnType::kText: return "TEXT";
    case ColumnType::kInteger: return "INTEGER";
    case ColumnType::kReal: return "REAL";
    case ColumnType::kBoolean: return "BOOLEAN";
    case ColumnType::kJson: return "JSON";
  }
  return "TEXT";
}

Result<ColumnSpec> ParseColumnSpec(const std::string& name, const std::string& spec) {
  ColumnSpec column;
  column.name = name;
  std::string_view trimmed = Trim(spec);
  size_t space = trimmed.find_first_of(" \t");
  std::string type = Upper(std::string(trimmed.substr(0, space)));
  if (type == "TEXT") column.type = ColumnType::kText;
  else if (type == "INTEGER") column.type = ColumnType::kInteger;
  else if (type == "REAL") column.type = ColumnType::kReal;
  else if (type == "BOOLEAN") column.type = ColumnType::kBoolean;
  else if (type == "JSON") column.type = ColumnType::kJson;
  else {
    return Status::InvalidConfig("unknown type '" + std::string(trimmed.substr(0, space)) +
                                 "' (use TEXT, INTEGER, REAL, BOOLEAN or JSON, optionally followed by a path like $.a.b)");
  }
  if (space != std::string_view::npos) {
    column.path_text = std::string(Trim(trimmed.substr(space)));
    Result<std::vector<ColumnSpec::PathElement>> path = ParsePath(column.path_text);
    if (!path.ok()) return path.status();
    column.path = *path;
  }
  return column;
}

Result<std::unique_ptr<Decoder>> MakeDecoder(const std::string& format, std::vector<ColumnSpec> columns) {
  if (format == "json") return std::unique_ptr<Decoder>(new JsonDecoder(std::move(columns)));
  return Status::InvalidConfig("unknown format '" + format + "' (sluice decodes json)");
}

}  // namespace sluice
