#!/usr/bin/env python3
"""The PostgreSQL target with 1, 2 and 3 workers in one consumer group, next to SQLite, on the same events.

    python3 bench/postgres_workers.py [--events 200000] [--partitions 12] [--build build] [--runs 1]

Steps, all bounded in time and cleaned up on every exit path:
  1. start a real Apache Kafka broker (tests/kafka/kafka_broker.py serve: KRaft,
     one JVM; its jars in <build>/kafka-broker/lib or --kafka-lib, fetched with
     Maven only when missing) and a throwaway PostgreSQL server (initdb into a
     temporary directory, as the `postgres` user when run as root; Unix socket
     in that directory, no TCP);
  2. create topic `orders` with P partitions (Kafka's admin API), generate N
     events with pipelines/orders/generate.py (fixed seed), publish them with
     `sluice produce --key-field order_id --timestamp-field event_time`, and
     check every partition starts at 0 and the end offsets add up to N;
  3. time, one after the other, each with a fresh consumer group and a fresh
     database, a copy of the pipeline with `assignment = group`:
       postgresql, W worker(s)  W = --workers (default 1, 2, 3) `sluice run DIR
                                --until-caught-up` started together, [target]
                                database = a new PostgreSQL database
       sqlite, 1 worker         the same pipeline into a SQLite file (baseline)
     --runs K repeats the whole list K times, interleaved;
  4. check every contender: each worker exited 0, the offsets stored in
     _sluice_offsets equal the topic's end offsets, the offset ranges of the
     committed batches (_sluice_runs) cover every partition from 0 to its end
     exactly once, and the curated tables (every table the pipeline creates,
     seeds excluded; columns named *_at, the time of writing, left out) hold
     the same rows in every contender, numbers rounded to 6 decimals;
  5. print one table (events/s, ratio to 1 PostgreSQL worker, peak RSS per
     worker, CPU time of the workers, of the PostgreSQL server and of the
     Kafka broker) and the time by stage from _sluice_runs, and write them to
     <build>/bench/postgres_workers.csv.

A worker that fails stops the benchmark; `run --until-caught-up` does not
retry a deadlock or a serialization failure, and --restart-transient starts
such a worker again (what `run --every` would retry), counted and listed.

What is timed: from the launch of the first worker until the last one has
exited (a group member exits once the partitions it holds reach the end
offsets it saw at start); the stored offsets are then checked to equal the end
offsets, so the time covers every message committed. Peak RSS per worker is
its VmHWM, sampled every 50 ms (wait4's ru_maxrss would also count this
script's own image, which a child holds until its exec). Worker CPU is the
workers' user + system time from wait4(); server CPU is the PostgreSQL
processes' (the postmaster, its live children, and the children it reaped:
cutime/cstime in /proc/PID/stat) between launch and the end, the share is
server / (server + workers); broker CPU is the JVM's, the same way.

Needs python3-confluent-kafka (Debian's, for /usr/bin/python3: this script
re-runs itself with it when the first python3 on PATH lacks it), java (the
broker), PostgreSQL's server binaries (postgresql-15) and psql.
"""
import argparse
import csv
import datetime
import hashlib
import json
import os
import re
import selectors
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in bench/
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as bench  # noqa: E402  (re-execs with /usr/bin/python3 when confluent_kafka is missing)
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

REPO = bench.REPO
BenchError = bench.BenchError
PROCESSES = bench.PROCESSES
log = bench.log
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PG_PORT = 5432  # only names the socket file, in the server's own directory


# --- CPU time of process trees, from /proc ---------------------------------

def proc_stat(pid):
    """(ppid, utime + stime, cutime + cstime) in seconds, or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    ppid = int(fields[1])
    own = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    reaped = (int(fields[13]) + int(fields[14])) / CLOCK_TICKS
    return ppid, own, reaped


def tree_cpu(root):
    """CPU seconds of `root`, its live descendants and every descendant already reaped."""
    if root is None:
        return None
    stats = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = proc_stat(int(name))
            if stat is not None:
                stats[int(name)] = stat
    if root not in stats:
        return None
    children = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total = stats[root][1] + stats[root][2]
    pending = list(children.get(root, []))
    while pending:
        pid = pending.pop()
        total += stats[pid][1] + stats[pid][2]  # its own and what it reaped (its parent counts it once it exits)
        pending.extend(children.get(pid, []))
    return total


def vm_hwm(pid):
    """Peak resident set of a live process in bytes (VmHWM), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# --- Kafka -------------------------------------------------------------------

class KafkaBroker:
    """tests/kafka/kafka_broker.py serve: a real broker, stopped when its stdin closes."""

    def __init__(self, lib, directory, log_path, timeout):
        self.log_path = log_path
        err = open(log_path, "wb")
        self.proc = PROCESSES.start([sys.executable, os.path.join(REPO, "tests", "kafka", "kafka_broker.py"), "serve",
                                     "--lib", lib, "--dir", directory],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
        err.close()
        line = read_line(self.proc.stdout, timeout, lambda: bench.tail(log_path))
        if not line.startswith("READY "):
            raise BenchError(f"the Kafka broker did not start: {line}\n{bench.tail(log_path)}")
        fields = dict(item.split("=", 1) for item in line.split()[1:])
        self.bootstrap = fields["PLAINTEXT"]

    def cpu(self):
        return tree_cpu(self.proc.pid if self.proc.returncode is None else None)

    def stop(self):
        if self.proc.returncode is not None:
            return
        try:
            self.proc.stdin.close()  # end of stdin: the tool stops the broker (TERM, KILL after 30 s)
            self.proc.wait(timeout=40)
        except (OSError, subprocess.TimeoutExpired):
            PROCESSES.stop(self.proc)


def read_line(stream, timeout, context):
    """The first line a child prints on `stream`, waiting at most `timeout` seconds."""
    selector = selectors.DefaultSelector()
    selector.register(stream, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    data = b""
    try:
        while b"\n" not in data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(f"no answer within {timeout:.0f} s\n{context()}")
            if not selector.select(timeout=remaining):
                continue
            chunk = os.read(stream.fileno(), 4096)
            if not chunk:
                raise BenchError(f"the child exited before it answered\n{context()}")
            data += chunk
    finally:
        selector.close()
    return data.decode(errors="replace").splitlines()[0].strip()


def create_topic(bootstrap, topic, partitions, timeout=60):
    """Creates the topic and waits until every partition has a leader (the broker does not auto-create)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                                  operation_timeout=timeout, request_timeout=timeout)
    try:
        futures[topic].result(timeout=timeout)
    except Exception as error:  # noqa: BLE001 (KafkaException and timeouts alike)
        raise BenchError(f"cannot create topic {topic} with {partitions} partitions: {error}") from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metadata = admin.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is not None and metadata.error is None and len(metadata.partitions) == partitions and \
                all(p.leader >= 0 for p in metadata.partitions.values()):
            return
        time.sleep(0.2)
    raise BenchError(f"topic {topic} has no leader for all {partitions} partitions after {timeout} s")


# --- PostgreSQL ----------------------------------------------------------------

WATCHDOG = r"""
import shutil, subprocess, sys
sys.stdin.read()  # EOF: the benchmark ended, however it ended
subprocess.run(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
shutil.rmtree(sys.argv[1], ignore_errors=True)
"""


def pg_bindir():
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=30).stdout.strip()
        if out and os.path.exists(os.path.join(out, "pg_ctl")):
            return out
    except (OSError, subprocess.TimeoutExpired):
        pass
    for version in ("17", "16", "15", "14", "13"):
        directory = f"/usr/lib/postgresql/{version}/bin"
        if os.path.exists(os.path.join(directory, "pg_ctl")):
            return directory
    raise BenchError("no PostgreSQL server binaries (install postgresql-15: .ci/setup does)")


class PgServer:
    """A throwaway server: initdb into a new directory, socket there, no TCP; stop() removes it all.

    A watchdog (its own session, reading a pipe from this script) stops the
    server and removes the directory when this script dies without stop()."""

    def __init__(self, settings, timeout):
        self.bin = pg_bindir()
        self.psql = os.path.join(self.bin, "psql") if os.path.exists(os.path.join(self.bin, "psql")) else "psql"
        self.dir = tempfile.mkdtemp(prefix="sluice-pgw-", dir="/tmp")  # short: socket paths are limited to 107 bytes
        self.data = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "server.log")
        self.as_postgres = os.getuid() == 0
        self.watchdog = None
        self.started = False
        self.timeout = timeout
        if self.as_postgres:
            shutil.chown(self.dir, user="postgres")
        stop = self.command(os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-m", "immediate", "stop")
        self.watchdog = subprocess.Popen([sys.executable, "-c", WATCHDOG, self.dir] + stop, stdin=subprocess.PIPE,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.run(os.path.join(self.bin, "initdb"), "-D", self.data, "-A", "trust", "-U", "sluice", "--no-sync",
                 "-E", "UTF8")
        options = f"-p {PG_PORT} -k {self.dir} -c listen_addresses='' -c max_connections=50" + \
                  "".join(f" -c {setting}" for setting in settings)
        self.started = True
        self.run(os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-o", options, "-l", self.log_path, "-w", "-t",
                 "60", "start")

    def command(self, *args):
        return (["runuser", "-u", "postgres", "--"] if self.as_postgres else []) + list(args)

    def run(self, *args):
        result = subprocess.run(self.command(*args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                timeout=self.timeout)
        if result.returncode != 0:
            raise BenchError(f"{os.path.basename(args[0])} failed (exit {result.returncode}):\n{result.stdout[-3000:]}"
                             f"\n{bench.tail(self.log_path)}")
        return result.stdout

    def url(self, database="postgres"):
        return f"postgresql://sluice@/{database}?host={self.dir}&port={PG_PORT}"

    def postmaster_pid(self):
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                return int(f.readline())
        except (OSError, ValueError):
            return None

    def cpu(self):
        return tree_cpu(self.postmaster_pid())

    def sql(self, database, statement):
        """Runs one statement with psql; returns its stdout."""
        result = subprocess.run([self.psql, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", self.url(database),
                                 "-c", statement], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                timeout=self.timeout)
        if result.returncode != 0:
            raise BenchError(f"psql failed on {database}: {statement[:200]}\n{result.stderr.strip()}")
        return result.stdout

    def rows(self, database, select):
        """The rows of a query as tuples of str (None for NULL), through COPY's text format."""
        out = self.sql(database, f"COPY ({select}) TO STDOUT")
        rows = []
        for line in out.split("\n"):
            if line == "":
                continue
            rows.append(tuple(None if cell == r"\N" else unescape_copy(cell) for cell in line.split("\t")))
        return rows

    def stop(self):
        if self.started:
            self.started = False
            try:
                self.run(os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-m", "fast", "-w", "-t", "60", "stop")
            except (BenchError, subprocess.TimeoutExpired):
                pass
        if self.watchdog is not None:
            self.watchdog.stdin.close()  # the watchdog stops the server again (immediate) and removes the directory
            try:
                self.watchdog.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.watchdog.kill()
            self.watchdog = None


COPY_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def unescape_copy(cell):
    if "\\" not in cell:
        return cell
    return re.sub(r"\\(.)", lambda m: COPY_ESCAPES.get(m.group(1), m.group(1)), cell)


# --- contenders ------------------------------------------------------------------

def pipeline_copy(source, target, group, database):
    """bench.copy_pipeline() with `assignment = group` and [target] database = `database`."""
    bench.copy_pipeline(source, target, group, with_steps=True)
    path = os.path.join(target, "pipeline.conf")
    with open(path) as f:
        lines = f.read().splitlines()
    out, section, placed = [], None, {"source": False, "target": False}
    wanted = {"source": ("assignment", "group"), "target": ("database", database)}

    def close_section():
        if section in wanted and not placed[section]:
            out.append(f"{wanted[section][0]} = {wanted[section][1]}")
            placed[section] = True

    for line in lines:
        header = re.match(r"^\s*\[([^\]]+)\]", line)
        if header:
            close_section()
            section = header.group(1).strip()
        elif section in wanted and re.match(rf"^\s*{wanted[section][0]}\s*=", line):
            line = f"{wanted[section][0]} = {wanted[section][1]}"
            placed[section] = True
        out.append(line)
    close_section()
    for name, (key, value) in wanted.items():
        if not placed[name]:
            out += ["", f"[{name}]", f"{key} = {value}"]
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    return target


class Target:
    """Where one contender wrote: a PostgreSQL database or a SQLite file; read back without sluice."""

    def __init__(self, pg=None, database=None, path=None):
        self.pg, self.database, self.path = pg, database, path

    def rows(self, select):
        if self.pg is not None:
            return self.pg.rows(self.database, select)
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            return [tuple(row) for row in conn.execute(select)]
        finally:
            conn.close()

    def tables(self):
        if self.pg is not None:
            return {name for (name,) in self.rows(
                "select table_name from information_schema.tables where table_schema = current_schema() "
                "and table_type = 'BASE TABLE'")}
        return {name for (name,) in self.rows("select name from sqlite_schema where type = 'table'")}

    def drop(self):
        if self.pg is not None:
            self.pg.sql("postgres", f'DROP DATABASE IF EXISTS "{self.database}"')
        else:
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(self.path + suffix):
                    os.remove(self.path + suffix)


def parse_time(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


TRANSIENT = re.compile(r"deadlock detected|could not serialize|serialization failure|40P01|40001")


def failed_transiently(log_path):
    """True when a worker's last error is one `run --every` would retry (deadlock, serialization failure)."""
    errors = [line for line in bench.tail(log_path, 30).splitlines() if " error " in line or "ERROR" in line]
    return bool(errors) and TRANSIENT.search(errors[-1]) is not None


def run_contender(name, workers, directory, target, brokers, max_messages, args, logs, pg, kafka):
    """Starts `workers` `sluice run --until-caught-up` together; returns the measurements once all exited.

    With --restart-transient, a worker that fails on a deadlock or a
    serialization failure is started again (what `run --every` would do
    in-process) and counted; any other failure stops the benchmark."""
    cmd = [SLUICE, "run", directory, "--until-caught-up", "--brokers", brokers, "--max-messages", str(max_messages)]
    log(f"{name}: {workers} x {' '.join(cmd)}")
    server_before = pg.cpu() if target.pg is not None else None
    broker_before = kafka.cpu()
    procs = [None] * workers
    log_paths = [os.path.join(logs, f"{name}.{i}.log") for i in range(workers)]
    hwm, cpu, exited_at, codes = [None] * workers, [0.0] * workers, [None] * workers, [None] * workers
    restarts, transient = [0] * workers, []
    running = {}

    def launch(i):
        with open(os.path.join(logs, f"{name}.{i}.out"), "ab") as out, open(log_paths[i], "ab") as err:
            procs[i] = PROCESSES.start(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        running[procs[i].pid] = i

    started_at = time.time()
    start = time.perf_counter()
    for i in range(workers):
        launch(i)
    deadline = start + args.timeout
    last_sample = 0.0
    while running:
        now = time.perf_counter()
        if now - last_sample >= 0.05:
            last_sample = now
            for pid, i in running.items():
                value = vm_hwm(pid)
                if value is not None:
                    hwm[i] = max(hwm[i] or 0, value)
        for pid, i in list(running.items()):
            got, status, rusage = os.wait4(pid, os.WNOHANG)
            if got != pid:
                continue
            del running[pid]
            exited_at[i] = time.perf_counter() - start
            codes[i] = procs[i].returncode = os.waitstatus_to_exitcode(status)
            cpu[i] += rusage.ru_utime + rusage.ru_stime
            if hwm[i] is None:
                hwm[i] = rusage.ru_maxrss * 1024  # exited before the first sample (includes this script's image)
            if codes[i] != 0 and failed_transiently(log_paths[i]):
                transient.append(f"worker {i} at {exited_at[i]:.2f} s: " + bench.tail(log_paths[i], 30).strip()
                                 .splitlines()[-1][:300])
                if args.restart_transient:
                    restarts[i] += 1
                    log(f"{name}: worker {i} failed transiently (exit {codes[i]}); started again")
                    launch(i)
        if now > deadline:
            for proc in procs:
                PROCESSES.stop(proc)
            raise BenchError(f"{name}: {len(running)} of {workers} workers still running after {args.timeout:.0f} s "
                             f"(killed); logs in {logs}")
        time.sleep(0.01)
    wall = max(exited_at)
    server = None if server_before is None else pg.cpu() - server_before
    broker_after = kafka.cpu()
    broker = None if broker_before is None or broker_after is None else broker_after - broker_before
    for i, code in enumerate(codes):
        if code != 0:
            hint = ("\n(a deadlock or serialization failure: `run --every` would retry it; --restart-transient "
                    "starts such a worker again)") if transient and not args.restart_transient else ""
            raise BenchError(f"{name}: worker {i} exited with {code}:\n{bench.tail(log_paths[i])}{hint}")
    return {"seconds": wall, "started_at": started_at, "exits": exited_at, "rss": hwm, "worker_cpu": sum(cpu),
            "server_cpu": server, "broker_cpu": broker, "restarts": sum(restarts), "transient": transient}


STAGES = ("fetch_ms", "stage_ms", "steps_ms", "commit_ms")


def check_offsets(name, target, topic, ends, events):
    """Stored offsets equal the end offsets, and the committed batches read each partition once, 0 to its end."""
    stored = {int(p): int(o) for p, o in target.rows(
        f"select \"partition\", next_offset from _sluice_offsets where topic = '{topic}'")}
    expected = dict(enumerate(ends))
    if stored != expected:
        wrong = [f"[{p}] stored {stored.get(p)}, end {e}" for p, e in expected.items() if stored.get(p) != e]
        wrong += [f"[{p}] stored {o}, not a partition of the topic" for p, o in stored.items() if p not in expected]
        raise BenchError(f"{name}: THE STORED OFFSETS ARE NOT THE END OFFSETS although every worker exited: " +
                         "; ".join(wrong[:12]))
    runs = target.rows("select run_id, status, messages, offsets, started_at, coalesce(fetch_ms, 0), "
                       "coalesce(stage_ms, 0), coalesce(steps_ms, 0), coalesce(commit_ms, 0) from _sluice_runs")
    ranges = {p: [] for p in expected}
    messages, batches, rolled_back, first_batch = 0, 0, 0, None
    stages = dict.fromkeys(STAGES, 0.0)
    for run_id, status, count, offsets, started, *stage_ms in runs:
        if status != "ok":
            rolled_back += 1
            continue
        messages += int(count)
        for stage, ms in zip(STAGES, stage_ms):
            stages[stage] += float(ms)
        if int(count) > 0:
            batches += 1
            first_batch = min(first_batch or parse_time(started), parse_time(started))
        for item in json.loads(offsets or "[]"):
            if item["topic"] == topic:
                ranges.setdefault(item["partition"], []).append((item["first"], item["last"], item["count"], run_id))
    problems = []
    for partition, items in sorted(ranges.items()):
        position = 0
        for first, last, count, run_id in sorted(items):
            if first < position:
                problems.append(f"run {run_id} read [{partition}] from {first} again (already read to {position})")
            elif first > position:
                problems.append(f"run {run_id} skipped [{partition}] {position}..{first - 1}")
            if count != last - first + 1:
                problems.append(f"run {run_id}: [{partition}] {first}..{last} holds {count} messages")
            position = max(position, last + 1)
        if position != expected.get(partition):
            problems.append(f"[{partition}] was read to {position}, not to its end {expected.get(partition)}")
    if problems or messages != events:
        raise BenchError(f"{name} did not read every message exactly once ({messages} of {events} messages in "
                         "committed batches):\n  " + "\n  ".join(problems[:10]))
    return {"batches": batches, "rolled_back": rolled_back, "first_batch": first_batch, **stages}


def column_kind(declared):
    declared = (declared or "").upper()
    if "INT" in declared:
        return "int"
    if any(word in declared for word in ("REAL", "DOUB", "FLOA", "NUMERIC", "DECIMAL")):
        return "real"
    return "text"


def normalize(value, kind):
    """One spelling for a value read from either engine: integers as int, reals rounded to 6 decimals."""
    if value is None:
        return None
    if kind in ("int", "real"):
        try:
            if kind == "int":
                return int(value)
        except (TypeError, ValueError):
            pass
        try:
            return round(float(value), 6) + 0.0  # + 0.0: -0.0 and 0.0 are the same number
        except (TypeError, ValueError):
            pass
    return str(value)


class CuratedTables:
    """The curated tables of the first contender checked, against which every other is compared."""

    def __init__(self, pipeline):
        seeds_dir = os.path.join(pipeline, "seeds")
        self.seeds = {n[:-4] for n in os.listdir(seeds_dir) if n.endswith(".csv")} if os.path.isdir(seeds_dir) else set()
        self.reference = None  # (contender name, {table: (columns, sorted rows)})
        self.columns = None  # {table: [(column, kind)]}

    def curated(self, target):
        return sorted(t for t in target.tables() if not t.startswith("_") and not t.startswith("sqlite")
                      and t not in self.seeds)

    def read(self, target, tables):
        result = {}
        for table in tables:
            columns = self.columns[table]
            names = ", ".join(f'"{c}"' for c, _ in columns)
            rows = [tuple(normalize(v, kind) for v, (_, kind) in zip(row, columns))
                    for row in target.rows(f'select {names} from "{table}"')]
            rows.sort(key=repr)
            result[table] = rows
        return result

    def check(self, name, target, sqlite_path=None):
        """Compares `target`'s curated tables to the reference; the first call sets it. Returns a summary."""
        tables = self.curated(target)
        if self.columns is None:
            if sqlite_path is None:
                raise BenchError("the reference must be a SQLite contender (its declared types name the columns)")
            conn = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
            try:
                self.columns = {t: [(c, column_kind(decl)) for _, c, decl, *_ in
                                    conn.execute(f'pragma table_info("{t}")') if not c.endswith("_at")]
                                for t in tables}
            finally:
                conn.close()
        if self.reference is None:
            self.reference = (name, self.read(target, tables))
            return self.summary(self.reference[1])
        reference_name, reference = self.reference
        if tables != sorted(reference):
            raise BenchError(f"{name} has curated tables {tables}, {reference_name} {sorted(reference)}")
        here = self.read(target, tables)
        differences = []
        for table in tables:
            if here[table] == reference[table]:
                continue
            only_here = sorted(set(here[table]) - set(reference[table]), key=repr)
            only_there = sorted(set(reference[table]) - set(here[table]), key=repr)
            differences.append(f"{table}: {len(here[table])} rows in {name}, {len(reference[table])} in "
                               f"{reference_name}; columns {[c for c, _ in self.columns[table]]}")
            differences += [f"  only in {name}: {row}" for row in only_here[:5]]
            differences += [f"  only in {reference_name}: {row}" for row in only_there[:5]]
        if differences:
            raise BenchError(f"THE CURATED TABLES OF {name} DIFFER FROM {reference_name}'s:\n" + "\n".join(differences))
        return self.summary(here)

    def columns_from(self, target):
        """Without a SQLite contender: the columns of the first PostgreSQL one, every value compared as text."""
        self.columns = {t: [(c, "text") for (c,) in target.rows(
            "select column_name from information_schema.columns where table_schema = current_schema() "
            f"and table_name = '{t}' and column_name not like '%\\_at' order by ordinal_position")]
            for t in self.curated(target)}

    @staticmethod
    def summary(tables):
        digest = hashlib.sha256(repr(sorted(tables.items())).encode()).hexdigest()[:12]
        return ", ".join(f"{t} {len(rows)} rows" for t, rows in sorted(tables.items())) + f" (sha256 {digest})"


# --- report -----------------------------------------------------------------------

def mb(value):
    return f"{value / 2**20:.0f}"


def report(results, contenders, args, max_messages, version, load, csv_path, tables_summary):
    runs = args.runs
    reference = "postgresql, 1 worker" if "postgresql, 1 worker" in contenders else contenders[0]
    by_name = {name: [r for r in results if r["contender"] == name] for name in contenders}
    median = {name: statistics.median(r["events_per_s"] for r in rs) for name, rs in by_name.items()}
    header = ["contender", "events/s"] + (["min", "max"] if runs > 1 else []) + \
             ["vs pg x1", "seconds", "start-up s", "after start-up", "peak RSS MB/worker", "worker CPU s",
              "server CPU s", "server share", "broker CPU s", "batches", "rolled back", "restarted"]
    rows = []
    for name in contenders:
        rs = by_name[name]
        pick = lambda key: statistics.median(r[key] for r in rs)  # noqa: E731
        eps = [r["events_per_s"] for r in rs]
        server = [r["server_cpu"] for r in rs if r["server_cpu"] is not None]
        broker = [r["broker_cpu"] for r in rs if r["broker_cpu"] is not None]
        server_cpu = statistics.median(server) if server else None
        worker_cpu = pick("worker_cpu")
        rss = [max(r["rss"][i] for r in rs) for i in range(rs[0]["workers"])]
        row = [name, f"{median[name]:,.0f}"] + ([f"{min(eps):,.0f}", f"{max(eps):,.0f}"] if runs > 1 else []) + \
              [f"{median[name] / median[reference]:.2f}x", f"{pick('seconds'):.2f}", f"{pick('startup'):.2f}",
               f"{pick('running_eps'):,.0f}",
               "/".join(mb(v) for v in rss), f"{worker_cpu:.1f}",
               "-" if server_cpu is None else f"{server_cpu:.1f}",
               "-" if server_cpu is None else f"{100 * server_cpu / (server_cpu + worker_cpu):.0f} %",
               f"{statistics.median(broker):.1f}" if broker else "-",
               f"{pick('batches'):.0f}", f"{pick('rolled_back'):.0f}", str(sum(r["restarts"] for r in rs))]
        rows.append(row)
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    print()
    print(f"sluice PostgreSQL workers, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}: {args.events} events, "
          f"{args.partitions} partitions, max_messages {max_messages}, {runs} run{'s' if runs > 1 else ''}"
          f"{' (median, min, max)' if runs > 1 else ''}")
    print(f"{version}; {bench.machine()}; load average {load[0]:.1f} before timing, {load[1]:.1f} after")
    if max(load) > (os.cpu_count() or 1) / 2:
        print("WARNING: other work was running on this machine; the figures below are not reliable "
              "(try --wait-idle 0.5)")
    print()
    print(line(header))
    print(line(["-" * w for w in widths]))
    for row in rows:
        print(line(row))
    print()
    print("time by stage, ms summed over the committed batches of all workers (_sluice_runs; workers overlap, so")
    print("the sum can exceed the wall time). stage: parse + COPY into staging; steps: the pipeline's SQL; commit:")
    print("the offset check and store (the COMMIT itself is outside these).")
    stage_header = ["contender"] + [s_[:-3] for s_ in STAGES] + ["wall"]
    stage_rows = [[name] + [f"{statistics.median(r[k] for r in by_name[name]):,.0f}" for k in STAGES] +
                  [f"{1000 * statistics.median(r['seconds'] for r in by_name[name]):,.0f}"] for name in contenders]
    stage_widths = [max(len(stage_header[i]), *(len(row[i]) for row in stage_rows)) for i in range(len(stage_header))]
    for cells in [stage_header] + stage_rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, stage_widths))))
    print()
    print("seconds: first launch to last exit. start-up: to the first batch (group join included); after start-up:")
    print("events/s from there. CPU: user + system; server: the PostgreSQL processes; share: server / (server +")
    print("workers); broker: the Kafka JVM. rolled back: batches refused (a rebalance moved their partitions), run")
    print("again by the new owner. vs pg x1: events/s over the 1-worker PostgreSQL figure.")
    transient = [(r["contender"], r["run"], line_) for r in results for line_ in r["transient"]]
    if transient:
        print(f"WARNING: {len(transient)} worker exit(s) on a deadlock or serialization failure (restarted: "
              "`run --until-caught-up` does not retry them, `run --every` does):")
        for name, run, text in transient[:10]:
            print(f"  {name}, run {run}, {text}")
    print(f"every contender stored the end offsets and read each partition once; curated tables agree: {tables_summary}")

    os.makedirs(os.path.dirname(csv_path), exist_ok=True)
    fields = ["contender", "workers", "run", "events", "events_per_s", "ratio_to_pg_1_worker", "seconds", "startup_s",
              "events_per_s_after_startup", "peak_rss_mb_per_worker", "worker_cpu_s", "server_cpu_s", "broker_cpu_s",
              "batches", "rolled_back", "restarted", *STAGES, "max_messages", "partitions", "date", "machine", "load_before",
              "load_after"]
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        for r in results:
            writer.writerow([r["contender"], r["workers"], r["run"], r["events"], round(r["events_per_s"]),
                             round(r["events_per_s"] / median[reference], 3), round(r["seconds"], 3),
                             round(r["startup"], 3), round(r["running_eps"]), "/".join(mb(v) for v in r["rss"]),
                             round(r["worker_cpu"], 2),
                             "" if r["server_cpu"] is None else round(r["server_cpu"], 2),
                             "" if r["broker_cpu"] is None else round(r["broker_cpu"], 2), r["batches"],
                             r["rolled_back"], r["restarts"], *(round(r[k]) for k in STAGES), max_messages, args.partitions, now, bench.machine(),
                             round(load[0], 2), round(load[1], 2)])
    print(f"wrote {csv_path}")


# --- main --------------------------------------------------------------------------

SLUICE = None


def main():
    global SLUICE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--events", type=int, default=200000, help="events to generate (default 200000)")
    parser.add_argument("--partitions", type=int, default=12, help="partitions of the topic (default 12)")
    parser.add_argument("--workers", default="1,2,3", help="PostgreSQL contenders' worker counts (default 1,2,3)")
    parser.add_argument("--runs", type=int, default=1, help="repeat the contenders K times, interleaved (default 1)")
    parser.add_argument("--build", default="build", help="build directory, relative to the repository (default build)")
    parser.add_argument("--kafka-lib", help="the broker's jars (default: $SLUICE_KAFKA_LIB_DIR, else "
                        "<build>/kafka-broker/lib; fetched with Maven when missing)")
    parser.add_argument("--pipeline", default=os.path.join(REPO, "pipelines", "orders"), help="pipeline directory")
    parser.add_argument("--max-messages", type=int, help="cap per batch (default: pipeline.conf's)")
    parser.add_argument("--topic", default="orders")
    parser.add_argument("--seed", type=int, default=42, help="generator seed (default 42)")
    parser.add_argument("--skip-sqlite", action="store_true", help="no SQLite baseline (the first PostgreSQL "
                        "contender's columns are then compared as text)")
    parser.add_argument("--pg-setting", action="append", default=[], metavar="NAME=VALUE",
                        help="a PostgreSQL server setting (-c NAME=VALUE), repeatable; default: the server's "
                        "defaults (fsync on, shared_buffers 128MB)")
    parser.add_argument("--restart-transient", action="store_true",
                        help="start a worker again when it fails on a deadlock or a serialization failure (what "
                        "`run --every` retries), counted under 'restarted'; default: such a failure stops the run")
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed to each step (default 900)")
    parser.add_argument("--wait-idle", type=float, metavar="LOAD",
                        help="before timing, wait up to 15 min for the 1-minute load average to drop below LOAD")
    parser.add_argument("--workdir", help="an empty directory for events, databases and logs (default: a new "
                        "temporary one, removed after a successful run)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (events, logs, SQLite files) "
                        "and the PostgreSQL databases until the end (the server is removed on exit regardless)")
    args = parser.parse_args()

    build = args.build if os.path.isabs(args.build) else os.path.join(REPO, args.build)
    SLUICE = os.path.join(build, "sluice")
    if not os.access(SLUICE, os.X_OK):
        raise BenchError(f"{SLUICE} not found: build with cmake --build {args.build} --target sluice")
    kafka_lib = os.path.abspath(args.kafka_lib or os.environ.get("SLUICE_KAFKA_LIB_DIR") or
                                os.path.join(build, "kafka-broker", "lib"))
    try:
        worker_counts = [int(n) for n in args.workers.split(",") if n.strip()]
    except ValueError:
        raise BenchError(f"--workers takes numbers separated by commas, not {args.workers}") from None
    if not worker_counts or min(worker_counts) < 1 or args.runs < 1:
        raise BenchError("--workers needs at least one count >= 1 and --runs at least 1")
    pipeline = os.path.abspath(args.pipeline)
    max_messages = args.max_messages or bench.pipeline_max_messages(pipeline)
    if args.workdir and os.path.isdir(args.workdir) and os.listdir(args.workdir):
        raise BenchError(f"--workdir {args.workdir} is not empty")
    work = os.path.abspath(args.workdir or tempfile.mkdtemp(prefix="sluice-pgw-bench-"))
    os.makedirs(work, exist_ok=True)
    logs = os.path.join(work, "logs")
    os.makedirs(logs, exist_ok=True)
    csv_path = os.path.join(build, "bench", "postgres_workers.csv")
    tag = f"{os.getpid()}-{int(time.time())}"
    ok, kafka, pg = False, None, None
    try:
        version = subprocess.run([SLUICE, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
        version = " ".join(version.split())
        log(f"{version}; {bench.machine()}")
        log(f"{args.events} events, {args.partitions} partitions, max_messages {max_messages}; work dir {work}")

        pg = PgServer(args.pg_setting, args.timeout)
        server_version = pg.sql("postgres", "select version(), current_setting('lc_collate'), "
                                            "current_setting('shared_buffers'), current_setting('work_mem'), "
                                            "current_setting('fsync')").strip().split("|")
        log(f"PostgreSQL at {pg.dir}: {server_version[0].split(' on ')[0]}, lc_collate {server_version[1]}, "
            f"shared_buffers {server_version[2]}, work_mem {server_version[3]}, fsync {server_version[4]}"
            f"{', ' + ', '.join(args.pg_setting) if args.pg_setting else ''}")
        kafka = KafkaBroker(kafka_lib, os.path.join(work, "kafka"), os.path.join(logs, "kafka.log"), args.timeout)
        log(f"Kafka broker at {kafka.bootstrap}")
        create_topic(kafka.bootstrap, args.topic, args.partitions)

        events_path = os.path.join(work, "events.jsonl")
        generator = os.path.join(REPO, "pipelines", "orders", "generate.py")
        bench.run_checked("generate.py", [sys.executable, generator, "--count", str(args.events), "--seed",
                                          str(args.seed)], args.timeout, events_path, os.path.join(logs, "generate.log"))
        with open(events_path, "rb") as f:
            lines = sum(1 for line in f if line.strip())
        wall, _, _ = bench.run_checked("sluice produce",
                                       [SLUICE, "produce", "--brokers", kafka.bootstrap, "--topic", args.topic,
                                        "--key-field", "order_id", "--timestamp-field", "event_time", events_path],
                                       args.timeout, os.path.join(logs, "produce.out"), os.path.join(logs, "produce.log"))
        ends = bench.check_watermarks(kafka.bootstrap, args.topic, args.partitions, lines)
        log(f"published {lines} events in {wall:.1f} s; {min(ends)}..{max(ends)} per partition, "
            f"{sum(ends)} in all")

        contenders = [(f"postgresql, {n} worker{'s' if n > 1 else ''}", "postgres", n) for n in worker_counts]
        if not args.skip_sqlite:
            contenders.append(("sqlite, 1 worker", "sqlite", 1))
        # The SQLite baseline is checked first: its declared column types say which columns are numbers.
        check_order = sorted(range(len(contenders)), key=lambda i: contenders[i][1] != "sqlite")

        if args.wait_idle:
            bench.wait_until_idle(args.wait_idle, 900)
        load_before = os.getloadavg()[0]
        tables = CuratedTables(pipeline)
        results, summary = [], None
        for run in range(1, args.runs + 1):
            measured = []
            for name, engine, workers in contenders:
                slug = re.sub(r"\W+", "-", name).strip("-") + f"-r{run}"
                group = f"sluice-pgw-{slug}-{tag}"
                if engine == "postgres":
                    database = re.sub(r"\W+", "_", slug)
                    pg.sql("postgres", f'CREATE DATABASE "{database}"')
                    target = Target(pg=pg, database=database)
                    url = pg.url(database)
                else:
                    url = os.path.join(work, f"{slug}.db")
                    target = Target(path=url)
                directory = pipeline_copy(pipeline, os.path.join(work, slug), group, url)
                result = run_contender(slug, workers, directory, target, kafka.bootstrap, max_messages, args, logs,
                                       pg, kafka)
                result.update(check_offsets(name, target, args.topic, ends, lines))
                result.update({"contender": name, "workers": workers, "run": run, "events": lines,
                               "events_per_s": lines / result["seconds"],
                               "startup": (result["first_batch"] or result["started_at"]) - result["started_at"]})
                running = result["seconds"] - result["startup"]
                result["running_eps"] = lines / running if running > 0 else 0.0
                log(f"{name}: {result['events_per_s']:,.0f} events/s, {result['seconds']:.2f} s, workers exited at "
                    f"{', '.join(f'{t:.2f}' for t in result['exits'])} s, peak RSS "
                    f"{'/'.join(mb(v) for v in result['rss'])} MB, {result['batches']} batches, "
                    f"{result['rolled_back']} rolled back" +
                    (f", {result['restarts']} workers restarted after a transient failure" if result["restarts"] else ""))
                measured.append((name, engine, target, url))
                results.append(result)
            for i in check_order:
                name, engine, target, url = measured[i]
                if tables.columns is None and engine != "sqlite":
                    tables.columns_from(target)  # --skip-sqlite
                summary = tables.check(f"{name} (run {run})", target, url if engine == "sqlite" else None)
                if not args.keep:
                    target.drop()
        load = (load_before, os.getloadavg()[0])
        report(results, [c[0] for c in contenders], args, max_messages, version, load, csv_path, summary)
        ok = True
    finally:
        if kafka is not None:
            kafka.stop()
        if pg is not None:
            pg.stop()
        PROCESSES.stop_all()
        if args.keep or args.workdir:
            log(f"kept {work}")
        elif not ok:
            for name in os.listdir(work):
                path = os.path.join(work, name)
                if name.endswith(".jsonl") or ".db" in name or name == "kafka":
                    shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)
            log(f"logs of the failed run are in {work} (remove it with rm -r)")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    bench.run_main(main, "bench/postgres_workers.py")
