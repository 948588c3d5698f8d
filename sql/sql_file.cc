// Reading analysts' SQL files.
#include "sql/sql_file.h"

#include <fstream>
#include <sstream>

namespace sluice {

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
  return SqlFile{path, display, content.str(), {}, false};
}

}  // namespace sluice
