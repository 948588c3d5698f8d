// Target::Open: which implementation a database names.
#include "sql/target.h"

#include <sqlite3.h>

#include "sql/postgres/postgres_target.h"
#include "sql/sqlite/sqlite_target.h"

namespace sluice {

bool IsDatabaseUrl(const std::string& database) {
  return database.rfind("postgresql://", 0) == 0 || database.rfind("postgres://", 0) == 0;
}

std::string DescribeDatabase(const std::string& database) {
  return IsDatabaseUrl(database) ? PostgresTarget::RedactUrl(database) : database;
}

std::string TargetLibraries() {
  return std::string("SQLite ") + sqlite3_libversion() + ", " + PostgresTarget::LibraryVersion();
}

Result<std::unique_ptr<Target>> Target::Open(const TargetOptions& options) {
  if (IsDatabaseUrl(options.database)) {
    Result<std::unique_ptr<PostgresTarget>> target = PostgresTarget::Open(options);
    if (!target.ok()) return target.status();
    return std::unique_ptr<Target>(std::move(*target));
  }
  Result<std::unique_ptr<SqliteTarget>> target = SqliteTarget::Open(options);
  if (!target.ok()) return target.status();
  return std::unique_ptr<Target>(std::move(*target));
}

}  // namespace sluice
