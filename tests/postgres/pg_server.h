// A real PostgreSQL server for the tests: initdb into a temporary directory,
// pg_ctl start listening on a Unix socket in that directory only (no TCP, so
// no port can clash), stopped when the object is destroyed and, through a
// watchdog process, when the test binary dies any other way. Run as root,
// the server runs as the `postgres` system user (initdb refuses root).
#pragma once

#include <libpq-fe.h>
#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sluice::testing {

class PgServer {
 public:
  // Starts a server, or returns nullptr with the reason in *error.
  static std::unique_ptr<PgServer> Start(std::string* error);
  ~PgServer();

  // postgresql://sluice@/DB?host=SOCKET_DIR&port=PORT
  std::string Url(const std::string& database = "postgres") const;
  // Creates database `name` (a fresh one per test keeps tests apart).
  bool CreateDatabase(const std::string& name, std::string* error);
  // Stops the server at once (as a crash would) and starts it again.
  bool Restart(std::string* error);
  // Stops the server at once (as a crash would) and leaves it down;
  // Restart() brings it back.
  bool Stop(std::string* error);
  const std::string& dir() const { return dir_; }

 private:
  PgServer() = default;
  bool Run(const std::vector<std::string>& args, std::string* output);
  std::string dir_;
  std::string bin_;
  int port_ = 5432;
  bool as_postgres_ = false;
  pid_t watchdog_ = -1;
};

// The server every test of this binary shares: started on first use,
// stopped when the process exits (by the watchdog if it dies). nullptr with
// the reason in *error when it cannot start.
PgServer* SharedServer(std::string* error);

// A fresh database on the shared server for one test, as a URL; empty with
// the reason in *error.
std::string FreshDatabase(std::string* error);

// A libpq connection for checking what sluice wrote.
class PgClient {
 public:
  explicit PgClient(const std::string& url);
  ~PgClient();
  bool ok() const;
  std::string error() const;
  // Rows of the query, each row its cells joined with '|' (NULL as "NULL");
  // nullopt on error (the message in error()).
  std::optional<std::vector<std::string>> Rows(const std::string& sql);
  // The first cell of the first row, or "ERROR: ..." / "NO ROW".
  std::string One(const std::string& sql);
  bool Exec(const std::string& sql);

 private:
  PGconn* conn_;
  std::string last_error_;
};

}  // namespace sluice::testing
