// Target::Open: which implementation a database names.
#include "sql/target.h"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <sqlite3.h>

#include "sql/postgres/postgres_target.h"
#include "sql/sqlite/sqlite_target.h"

namespace sluice {

std::string RangesJson(const std::vector<PartitionRange>& ranges) {
  // RapidJSON escapes every control character a file name may hold.
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> json(buffer);
  json.StartArray();
  for (const auto& range : ranges) {
    json.StartObject();
    json.Key("topic");
    json.String(range.partition.first.data(), static_cast<rapidjson::SizeType>(range.partition.first.size()));
    json.Key("partition");
    json.Int(range.partition.second);
    json.Key("first");
    json.Int64(range.first_offset);
    json.Key("last");
    json.Int64(range.last_offset);
    json.Key("count");
    json.Int64(range.count);
    json.EndObject();
  }
  json.EndArray();
  return std::string(buffer.GetString(), buffer.GetSize());
}

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
  TargetOptions sqlite = options;
  if (options.scratch) {
    sqlite.database = ":memory:";
    sqlite.lock = TargetOptions::Lock::kNone;
  }
  Result<std::unique_ptr<SqliteTarget>> target = SqliteTarget::Open(sqlite);
  if (!target.ok()) return target.status();
  return std::unique_ptr<Target>(std::move(*target));
}

}  // namespace sluice
