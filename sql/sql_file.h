// SqlFile: an analyst's .sql file (schema.sql, a step, a check) as read from
// the pipeline directory, with the name it has in messages. Running it is the
// target's business (sql/target.h).
#pragma once

#include <cstddef>
#include <string>

#include "common/status.h"

namespace sluice {

struct SqlFile {
  std::string path;     // on disk
  std::string display;  // in messages: "steps/20_upsert.sql"
  std::string text;
  std::string attach_root;      // ATTACH may name files under this directory; empty: no ATTACH at all
  bool attach_anywhere = false;  // [target] allow_attach_outside
};

// Reads `path`; `display` names it in messages.
Result<SqlFile> ReadSqlFile(const std::string& path, const std::string& display);

// The 1-based line of byte `offset` in `text`.
int LineAt(const std::string& text, size_t offset);

}  // namespace sluice
