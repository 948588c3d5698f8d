// PgServer and PgClient.
#include "pg_server.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

namespace sluice::testing {
namespace {

std::string Quote(const std::string& arg) {
  std::string quoted = "'";
  for (char c : arg) {
    if (c == '\'') quoted += "'\\''";
    else quoted += c;
  }
  return quoted + "'";
}

std::string BinDir() {
  std::array<char, 512> buffer{};
  std::string out;
  if (FILE* pipe = ::popen("pg_config --bindir 2>/dev/null", "r")) {
    while (std::fgets(buffer.data(), buffer.size(), pipe)) out += buffer.data();
    ::pclose(pipe);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  if (!out.empty() && std::filesystem::exists(out + "/pg_ctl")) return out;
  for (const char* version : {"17", "16", "15", "14", "13"}) {
    std::string dir = std::string("/usr/lib/postgresql/") + version + "/bin";
    if (std::filesystem::exists(dir + "/pg_ctl")) return dir;
  }
  return "";
}

}  // namespace

bool PgServer::Run(const std::vector<std::string>& args, std::string* output) {
  std::string command = as_postgres_ ? "runuser -u postgres --" : "";
  for (const auto& arg : args) command += " " + Quote(arg);
  command += " 2>&1";
  output->clear();
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return false;
  std::array<char, 4096> buffer{};
  while (std::fgets(buffer.data(), buffer.size(), pipe)) *output += buffer.data();
  int status = ::pclose(pipe);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

std::unique_ptr<PgServer> PgServer::Start(std::string* error) {
  std::unique_ptr<PgServer> server(new PgServer);
  server->bin_ = BinDir();
  if (server->bin_.empty()) {
    *error = "no PostgreSQL server binaries (install postgresql-15: .ci/setup does)";
    return nullptr;
  }
  char pattern[] = "/tmp/sluice-pg-XXXXXX";
  if (::mkdtemp(pattern) == nullptr) {
    *error = "cannot create a temporary directory";
    return nullptr;
  }
  server->dir_ = pattern;
  server->as_postgres_ = ::getuid() == 0;
  if (server->as_postgres_) {
    if (::system(("chown postgres " + Quote(server->dir_)).c_str()) != 0) {
      *error = "cannot hand " + server->dir_ + " to the postgres user";
      return nullptr;
    }
  }
  std::string out;
  if (!server->Run({server->bin_ + "/initdb", "-D", server->dir_ + "/data", "-A", "trust", "-U", "sluice",
                    "--no-sync", "-E", "UTF8"},
                   &out)) {
    *error = "initdb failed: " + out;
    return nullptr;
  }
  std::string options = "-p " + std::to_string(server->port_) + " -k " + server->dir_ +
                        " -c listen_addresses='' -c fsync=off -c max_connections=50";
  if (!server->Run({server->bin_ + "/pg_ctl", "-D", server->dir_ + "/data", "-o", options, "-l",
                    server->dir_ + "/server.log", "-w", "-t", "60", "start"},
                   &out)) {
    *error = "pg_ctl start failed: " + out;
    return nullptr;
  }
  // The watchdog stops the server when this process dies without running
  // the destructor (a crash, SIGKILL from a test timeout).
  pid_t parent = ::getpid();
  pid_t watchdog = ::fork();
  if (watchdog == 0) {
    ::setsid();
    while (::kill(parent, 0) == 0) ::sleep(1);
    std::string stop = (server->as_postgres_ ? std::string("runuser -u postgres -- ") : std::string()) +
                       Quote(server->bin_ + "/pg_ctl") + " -D " + Quote(server->dir_ + "/data") +
                       " -m immediate stop >/dev/null 2>&1; rm -rf " + Quote(server->dir_);
    int ignored = ::system(stop.c_str());
    (void)ignored;
    ::_exit(0);
  }
  server->watchdog_ = watchdog;
  return server;
}

PgServer::~PgServer() {
  std::string out;
  Run({bin_ + "/pg_ctl", "-D", dir_ + "/data", "-m", "immediate", "stop"}, &out);
  if (watchdog_ > 0) {
    ::kill(watchdog_, SIGKILL);
    ::waitpid(watchdog_, nullptr, 0);
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string PgServer::Url(const std::string& database) const {
  return "postgresql://sluice@/" + database + "?host=" + dir_ + "&port=" + std::to_string(port_);
}

PgServer* SharedServer(std::string* error) {
  static std::string start_error;
  static std::unique_ptr<PgServer> server = PgServer::Start(&start_error);
  if (!server && error != nullptr) *error = start_error;
  return server.get();
}

std::string FreshDatabase(std::string* error) {
  PgServer* server = SharedServer(error);
  if (server == nullptr) return {};
  static int counter = 0;
  std::string name = "t" + std::to_string(::getpid()) + "_" + std::to_string(++counter);
  if (!server->CreateDatabase(name, error)) return {};
  return server->Url(name);
}

bool PgServer::CreateDatabase(const std::string& name, std::string* error) {
  PgClient client(Url());
  if (!client.ok()) {
    *error = client.error();
    return false;
  }
  if (!client.Exec("CREATE DATABASE \"" + name + "\"")) {
    *error = client.error();
    return false;
  }
  return true;
}

bool PgServer::Stop(std::string* error) {
  std::string out;
  if (Run({bin_ + "/pg_ctl", "-D", dir_ + "/data", "-m", "immediate", "stop"}, &out)) return true;
  *error = "pg_ctl stop failed: " + out;
  return false;
}

bool PgServer::Restart(std::string* error) {
  std::string out;
  Run({bin_ + "/pg_ctl", "-D", dir_ + "/data", "-m", "immediate", "stop"}, &out);
  std::string options = "-p " + std::to_string(port_) + " -k " + dir_ + " -c listen_addresses='' -c fsync=off";
  if (!Run({bin_ + "/pg_ctl", "-D", dir_ + "/data", "-o", options, "-l", dir_ + "/server.log", "-w", "-t", "60",
            "start"},
           &out)) {
    *error = out;
    return false;
  }
  return true;
}

PgClient::PgClient(const std::string& url) : conn_(PQconnectdb(url.c_str())) {}
PgClient::~PgClient() { PQfinish(conn_); }
bool PgClient::ok() const { return PQstatus(conn_) == CONNECTION_OK; }
std::string PgClient::error() const { return last_error_.empty() ? PQerrorMessage(conn_) : last_error_; }

std::optional<std::vector<std::string>> PgClient::Rows(const std::string& sql) {
  PGresult* result = PQexec(conn_, sql.c_str());
  ExecStatusType status = PQresultStatus(result);
  if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
    last_error_ = PQresultErrorMessage(result);
    PQclear(result);
    return std::nullopt;
  }
  std::vector<std::string> rows;
  for (int row = 0; row < PQntuples(result); ++row) {
    std::string line;
    for (int column = 0; column < PQnfields(result); ++column) {
      if (column > 0) line += "|";
      line += PQgetisnull(result, row, column) ? "NULL" : PQgetvalue(result, row, column);
    }
    rows.push_back(line);
  }
  PQclear(result);
  return rows;
}

std::string PgClient::One(const std::string& sql) {
  auto rows = Rows(sql);
  if (!rows) return "ERROR: " + last_error_;
  if (rows->empty()) return "NO ROW";
  return (*rows)[0].substr(0, (*rows)[0].find('|'));
}

bool PgClient::Exec(const std::string& sql) { return Rows(sql).has_value(); }

}  // namespace sluice::testing
