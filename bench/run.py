#!/usr/bin/env python3
"""Benchmarks sluice against its baselines, in one command, on the same events.

    python3 bench/run.py --events 1000000 [--build build] [--partitions 64]

Steps, all bounded in time and cleaned up on every exit path:
  1. start `sluice broker --topic orders:P` (the embedded, in-memory broker);
  2. generate N events with pipelines/orders/generate.py (fixed seed);
  3. publish them with `sluice produce --key-field order_id --timestamp-field
     event_time`, then check every partition's low watermark is still 0 (the
     broker keeps about 5 MiB per partition and silently drops older messages)
     and that the high watermarks add up to N;
  4. time, one after the other, each with a fresh consumer group and database:
       sluice               `sluice run <copy of the pipeline> --until-caught-up`
       sluice staging only  the same with no steps/ (sluice's ingest ceiling)
       python baseline      bench/python_baseline.py (confluent-kafka + sqlite3)
       sqlite_floor         the same rows pre-parsed in memory, one reused
                            prepared insert per batch, the same steps; no Kafka,
                            no JSON (SQLite's own ceiling)
       sqlite_floor staging only  the same with no steps
  5. print one table (events/s, ratio to sluice, peak RSS) and sluice's
     per-stage breakdown from _sluice_runs, check the curated tables agree
     across contenders, and write the table to <build>/bench/results.csv.

Peak RSS is the child's ru_maxrss from wait4() (what `/usr/bin/time -v`
reports). Needs python3-confluent-kafka (Debian's, for /usr/bin/python3: this
script re-runs itself with it when the first python3 on PATH lacks it).
"""
import argparse
import configparser
import csv
import datetime
import json
import os
import platform
import re
import selectors
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYSTEM_PYTHON = "/usr/bin/python3"

try:
    from confluent_kafka import Consumer, TopicPartition
except ImportError:
    if os.path.exists(SYSTEM_PYTHON) and os.path.realpath(sys.executable) != os.path.realpath(SYSTEM_PYTHON) \
            and not os.environ.get("SLUICE_BENCH_REEXEC"):
        os.environ["SLUICE_BENCH_REEXEC"] = "1"
        os.execv(SYSTEM_PYTHON, [SYSTEM_PYTHON] + sys.argv)
    sys.exit("bench/run.py needs confluent_kafka: apt-get install python3-confluent-kafka "
             "(and run it with /usr/bin/python3)")


class BenchError(Exception):
    """A failure that stops the benchmark with a message (and no traceback)."""


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def set_parent_death_signal():
    """Runs in the child before exec: the child gets SIGKILL if this script dies, even by SIGKILL."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 (best effort; the finally blocks clean up otherwise)
        pass


class Processes:
    """Every child this script starts; stop_all() ends them (TERM, then KILL)."""

    def __init__(self):
        self.children = []

    def start(self, cmd, **kwargs):
        # No threads exist in this script, so preexec_fn is safe here.
        proc = subprocess.Popen(cmd, preexec_fn=set_parent_death_signal, **kwargs)
        self.children.append(proc)
        return proc

    @staticmethod
    def stop(proc, grace=5):
        if proc.returncode is not None:
            return
        try:
            proc.terminate()
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace)
        except ProcessLookupError:
            pass

    def stop_all(self):
        for proc in reversed(self.children):
            self.stop(proc)


PROCESSES = Processes()


def run_measured(name, cmd, timeout, stdout_path, stderr_path, env=None):
    """Runs `cmd` to completion; returns (exit code, wall seconds, peak RSS in bytes, start epoch).

    Waits with wait4() (polled, so the wait is bounded) to get the child's
    ru_maxrss. Kills the child and raises BenchError after `timeout` seconds.
    """
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        started_at = time.time()
        start = time.perf_counter()
        proc = PROCESSES.start(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                wall = time.perf_counter() - start
                proc.returncode = os.waitstatus_to_exitcode(status)
                return proc.returncode, wall, usage.ru_maxrss * 1024, started_at
            if time.perf_counter() > deadline:
                PROCESSES.stop(proc)
                raise BenchError(f"{name} did not finish within {timeout:.0f} s (killed); see {stderr_path}")
            time.sleep(0.002)


def run_checked(name, cmd, timeout, stdout_path, stderr_path):
    """run_measured() that raises BenchError unless the command exits 0."""
    code, wall, rss, started_at = run_measured(name, cmd, timeout, stdout_path, stderr_path)
    if code != 0:
        raise BenchError(f"{name} exited with {code}:\n  {' '.join(cmd)}\n{tail(stderr_path)}")
    return wall, rss, started_at


def start_broker(sluice, topic, partitions, log_path, timeout=30):
    """Starts the embedded broker; returns (process, bootstrap address)."""
    err = open(log_path, "wb")
    proc = PROCESSES.start([sluice, "broker", "--topic", f"{topic}:{partitions}"], stdout=subprocess.PIPE,
                           stderr=err, stdin=subprocess.DEVNULL)
    err.close()
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BenchError(f"the broker printed no address within {timeout} s\n{tail(log_path)}")
        if not selector.select(timeout=remaining):
            continue
        chunk = os.read(proc.stdout.fileno(), 4096)
        if not chunk:
            raise BenchError(f"the broker exited before printing its address\n{tail(log_path)}")
        line += chunk
    selector.close()
    address = line.decode().splitlines()[0].strip()
    if not address:
        raise BenchError("the broker printed an empty first line")
    return proc, address


def check_watermarks(brokers, topic, partitions, expected):
    """Fails unless every partition still starts at offset 0 and the ends add up to `expected`."""
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": "sluice-bench-watermarks",
                         "enable.auto.commit": False})
    try:
        highs, dropped = [], []
        for partition in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
            if low != 0:
                dropped.append(f"{topic}[{partition}] starts at {low}")
            highs.append(high)
    finally:
        consumer.close()
    if dropped:
        raise BenchError(
            "THE BROKER DROPPED MESSAGES: " + "; ".join(dropped[:8]) + (" ..." if len(dropped) > 8 else "") +
            ".\nThe embedded broker keeps about 5 MiB per partition; use more --partitions or fewer --events.")
    if sum(highs) != expected:
        raise BenchError(f"the topic holds {sum(highs)} messages, not the {expected} published")
    return highs


def copy_pipeline(source, target, group, with_steps):
    """Copies a pipeline directory with a fresh consumer group (and optionally no steps/ and no checks/)."""
    # The checks read what the steps build (temp.stg_orders, the curated tables): without steps they go too.
    ignore = shutil.ignore_patterns("*.db", "*.db-*", "__pycache__", "generate.py",
                                    *([] if with_steps else ["steps", "checks"]))
    shutil.copytree(source, target, ignore=ignore)
    conf_path = os.path.join(target, "pipeline.conf")
    with open(conf_path) as f:
        text = f.read()
    text, count = re.subn(r"(?m)^(\s*group\s*=\s*)[^#\s]+", lambda m: m.group(1) + group, text)
    if count == 0:
        text = re.sub(r"(?m)^\[source\]\s*$", f"[source]\ngroup = {group}", text, count=1)
    with open(conf_path, "w") as f:
        f.write(text)
    return target


def pipeline_max_messages(pipeline):
    parser = configparser.ConfigParser(inline_comment_prefixes=("#",), interpolation=None)
    with open(os.path.join(pipeline, "pipeline.conf")) as f:
        parser.read_file(f)
    return parser.getint("batch", "max_messages", fallback=50000)


def sluice_runs(db_path):
    """Totals of _sluice_runs: batches and the per-stage milliseconds."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        row = conn.execute(
            "select count(*), count(*) filter (where messages > 0), total(messages), total(staged), "
            "total(quarantined), total(fetch_ms), total(stage_ms), total(steps_ms), total(commit_ms), "
            "count(*) filter (where status <> 'ok'), min(started_at) from _sluice_runs").fetchone()
    finally:
        conn.close()
    keys = ["runs", "batches", "messages", "staged", "quarantined", "fetch_ms", "stage_ms", "steps_ms", "commit_ms",
            "failed", "first_started_at"]
    return dict(zip(keys, row))


def check_offsets(db_path, topic, ends):
    """Problems with the offset ranges of sluice's batches: each partition must be read once, in order, 0 to end."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        runs = conn.execute("select run_id, offsets from _sluice_runs where status = 'ok' order by run_id").fetchall()
    finally:
        conn.close()
    problems = []
    next_offset = [0] * len(ends)
    for run_id, offsets in runs:
        for item in json.loads(offsets or "[]"):
            if item["topic"] != topic:
                continue
            partition, first, last = item["partition"], item["first"], item["last"]
            expected = next_offset[partition]
            if first < expected:
                problems.append(f"run {run_id} read {topic}[{partition}] from {first} again (already read to {expected})")
            elif first > expected:
                problems.append(f"run {run_id} skipped {topic}[{partition}] {expected}..{first - 1}")
            if item["count"] != last - first + 1:
                problems.append(f"run {run_id}: {topic}[{partition}] {first}..{last} holds {item['count']} messages")
            next_offset[partition] = max(expected, last + 1)
    for partition, (done, end) in enumerate(zip(next_offset, ends)):
        if done != end:
            problems.append(f"{topic}[{partition}] was read to {done}, not to its end {end}")
    return problems


def user_tables(conn, skip_tables):
    names = [name for (name,) in conn.execute(
        "select name from sqlite_schema where type = 'table' and name not like 'sqlite%' "
        "and name not like '\\_%' escape '\\' order by name")]
    return [name for name in names if name not in skip_tables]


def compared_columns(conn, table):
    """Columns that must agree across contenders: not the time of writing (*_at), not offsets (*_offset).

    Offsets are left out because sqlite_floor cannot know which partition
    librdkafka's partitioner picked at random for a keyless (malformed) line,
    which shifts later offsets in that partition.
    """
    return [(name, (decl or "").upper()) for _, name, decl, *_ in conn.execute(f'pragma table_info("{table}")')
            if not name.endswith("_at") and not name.endswith("_offset")]


def table_differences(db_path, reference_path, table, limit=5):
    """Up to `limit` rows of `table` found in only one of the two databases."""
    rows = []
    for path in (db_path, reference_path):
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            names = ", ".join(f'"{name}"' for name, _ in compared_columns(conn, table))
            rows.append(set(conn.execute(f'select {names} from "{table}"')))
        finally:
            conn.close()
    only_here = sorted(rows[0] - rows[1], key=repr)[:limit]
    only_reference = sorted(rows[1] - rows[0], key=repr)[:limit]
    return only_here, only_reference


def fingerprint(db_path, skip_tables):
    """Per user table: row count and the total of each numeric column (timestamps of writing excluded)."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    result = {}
    try:
        for table in user_tables(conn, skip_tables):
            columns = compared_columns(conn, table)
            numeric = [name for name, decl in columns if "INT" in decl or "REAL" in decl]
            # Integers summed exactly; reals rounded (their sum depends on the order rows are added in).
            declared = dict(columns)
            expressions = ["count(*)"] + [f'sum("{name}")' if "INT" in declared[name] else f'round(total("{name}"), 2)'
                                          for name in numeric]
            values = conn.execute(f'select {", ".join(expressions)} from "{table}"').fetchone()
            result[table] = dict(zip(["rows"] + numeric, values))
    finally:
        conn.close()
    return result


def wait_until_idle(limit, timeout):
    """Waits (at most `timeout` s) for the 1-minute load average to fall below `limit`."""
    deadline = time.monotonic() + timeout
    while os.getloadavg()[0] >= limit and time.monotonic() < deadline:
        log(f"waiting for the machine to calm down: load {os.getloadavg()[0]:.1f} (want < {limit})")
        time.sleep(min(30, max(1, deadline - time.monotonic())))
    return os.getloadavg()[0]


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model}), {platform.system()} {platform.release()}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--events", type=int, default=1000000, help="events to generate (default 1000000)")
    parser.add_argument("--build", default="build", help="build directory, relative to the repository (default build)")
    parser.add_argument("--partitions", type=int, default=64, help="partitions of the topic (default 64)")
    parser.add_argument("--max-messages", type=int, help="cap per batch for every contender (default: pipeline.conf's)")
    parser.add_argument("--pipeline", default=os.path.join(REPO, "pipelines", "orders"), help="pipeline directory")
    parser.add_argument("--topic", default="orders")
    parser.add_argument("--seed", type=int, default=42, help="generator seed (default 42)")
    parser.add_argument("--skip-python", action="store_true", help="skip the Python baseline")
    parser.add_argument("--skip-staging", action="store_true", help="skip the staging-only runs")
    parser.add_argument("--skip-floor", action="store_true", help="skip sqlite_floor")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed to each step (default 1800)")
    parser.add_argument("--wait-idle", type=float, metavar="LOAD",
                        help="before timing, wait up to 15 min for the 1-minute load average to drop below LOAD")
    parser.add_argument("--workdir", help="an empty directory for events, databases and logs (default: a new "
                        "temporary one, removed after a successful run)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (events, databases, logs)")
    args = parser.parse_args()

    build = args.build if os.path.isabs(args.build) else os.path.join(REPO, args.build)
    sluice = os.path.join(build, "sluice")
    floor = os.path.join(build, "bench", "sqlite_floor")
    for binary in [sluice] + ([] if args.skip_floor else [floor]):
        if not os.access(binary, os.X_OK):
            raise BenchError(f"{binary} not found: build with\n  cmake -S . -B {args.build} -DCMAKE_BUILD_TYPE=Release "
                             f"-DSLUICE_BUILD_BENCHMARKS=ON && cmake --build {args.build} -j2")
    pipeline = os.path.abspath(args.pipeline)
    max_messages = args.max_messages or pipeline_max_messages(pipeline)
    if args.workdir and os.path.isdir(args.workdir) and os.listdir(args.workdir):
        raise BenchError(f"--workdir {args.workdir} is not empty")
    work = args.workdir or tempfile.mkdtemp(prefix="sluice-bench-")
    os.makedirs(work, exist_ok=True)
    results_path = os.path.join(build, "bench", "results.csv")
    tag = f"{os.getpid()}-{int(time.time())}"
    ok = False
    try:
        version = subprocess.run([sluice, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
        log(f"{version}; {machine()}")
        log(f"{args.events} events, {args.partitions} partitions, max_messages {max_messages}; work dir {work}")

        _, brokers = start_broker(sluice, args.topic, args.partitions, os.path.join(work, "broker.log"))
        log(f"broker at {brokers}")

        events_path = os.path.join(work, "events.jsonl")
        generator = os.path.join(REPO, "pipelines", "orders", "generate.py")  # the events are orders, whatever --pipeline
        wall, _, _ = run_checked("generate.py",
                                 [sys.executable, generator, "--count", str(args.events), "--seed", str(args.seed)],
                                 args.timeout, events_path, os.path.join(work, "generate.log"))
        with open(events_path, "rb") as f:
            lines = sum(1 for line in f if line.strip())
        size = os.path.getsize(events_path)
        log(f"generated {lines} events ({size / lines:.0f} bytes each on average) in {wall:.1f} s")

        wall, _, _ = run_checked("sluice produce",
                                 [sluice, "produce", "--brokers", brokers, "--topic", args.topic, "--key-field",
                                  "order_id", "--timestamp-field", "event_time", events_path],
                                 args.timeout, os.path.join(work, "produce.out"), os.path.join(work, "produce.log"))
        ends = check_watermarks(brokers, args.topic, args.partitions, lines)
        log(f"published in {wall:.1f} s; every partition starts at offset 0; {min(ends)}..{max(ends)} messages "
            "per partition")

        if args.wait_idle:
            wait_until_idle(args.wait_idle, 900)
        load_before = os.getloadavg()[0]
        results = []  # dicts: contender, events_per_s, seconds, rss, batches, ...

        def run_sluice(name, with_steps):
            slug = re.sub(r"\W+", "-", name)
            directory = copy_pipeline(pipeline, os.path.join(work, slug), f"sluice-bench-{slug}-{tag}", with_steps)
            db = os.path.join(work, f"{slug}.db")
            cmd = [sluice, "run", directory, "--until-caught-up", "--brokers", brokers, "--db", db,
                   "--max-messages", str(max_messages)]
            log(f"{name}: {' '.join(cmd)}")
            wall, rss, started_at = run_checked(name, cmd, args.timeout, os.path.join(work, f"{slug}.out"),
                                                os.path.join(work, f"{slug}.log"))
            runs = sluice_runs(db)
            problems = check_offsets(db, args.topic, ends)
            if problems:
                raise BenchError(f"{name} did not read every message exactly once:\n  " + "\n  ".join(problems[:10]))
            first_batch = datetime.datetime.fromisoformat(runs["first_started_at"].replace("Z", "+00:00"))
            if runs["messages"] != lines or runs["failed"]:
                raise BenchError(f"{name} processed {runs['messages']:.0f} of {lines} messages "
                                 f"({runs['failed']} failed runs); see {os.path.join(work, slug + '.log')}")
            staged_ms = runs["fetch_ms"] + runs["stage_ms"] + runs["steps_ms"] + runs["commit_ms"]
            startup_ms = max(0.0, (first_batch.timestamp() - started_at) * 1000)
            results.append({"contender": name, "events": lines, "seconds": wall, "events_per_s": lines / wall,
                            "peak_rss": rss, "batches": runs["batches"], "fetch_ms": runs["fetch_ms"],
                            "stage_ms": runs["stage_ms"], "steps_ms": runs["steps_ms"],
                            "commit_ms": runs["commit_ms"], "startup_ms": startup_ms,
                            "other_ms": wall * 1000 - staged_ms - startup_ms,
                            "quarantined": runs["quarantined"], "db": db})
            log(f"{name}: {lines / wall:,.0f} events/s, {wall:.2f} s, peak RSS {rss / 2**20:.0f} MB, "
                f"{runs['batches']} batches")

        def run_json(name, cmd, db, wall_from_output):
            slug = re.sub(r"\W+", "-", name)
            log(f"{name}: {' '.join(cmd)}")
            out_path = os.path.join(work, f"{slug}.out")
            wall, rss, started_at = run_checked(name, cmd, args.timeout, out_path, os.path.join(work, f"{slug}.log"))
            with open(out_path) as f:
                report = json.loads(f.read().strip().splitlines()[-1])
            if report["events"] != lines:
                raise BenchError(f"{name} processed {report['events']} of {lines} messages")
            seconds = report["seconds"] if wall_from_output else wall
            startup_ms = (report["first_fetch_at"] - started_at) * 1000 if "first_fetch_at" in report else None
            results.append({"contender": name, "events": lines, "seconds": seconds, "events_per_s": lines / seconds,
                            "peak_rss": rss, "batches": report["batches"], "fetch_ms": report.get("fetch_ms"),
                            "stage_ms": report["stage_ms"], "steps_ms": report["steps_ms"],
                            "commit_ms": report["commit_ms"], "startup_ms": startup_ms,
                            "other_ms": seconds * 1000 - sum(report.get(k) or 0 for k in
                                                             ("fetch_ms", "stage_ms", "steps_ms", "commit_ms")) -
                                        (startup_ms or 0),
                            "quarantined": report["quarantined"], "db": db})
            log(f"{name}: {lines / seconds:,.0f} events/s, {seconds:.2f} s, peak RSS {rss / 2**20:.0f} MB, "
                f"{report['batches']} batches")

        run_sluice("sluice", with_steps=True)
        if not args.skip_staging:
            run_sluice("sluice staging only", with_steps=False)
        if not args.skip_python:
            directory = os.path.join(work, "python")
            copy_pipeline(pipeline, directory, f"python-bench-{tag}", with_steps=True)
            db = os.path.join(work, "python.db")
            run_json("python baseline", [sys.executable, os.path.join(REPO, "bench", "python_baseline.py"),
                                         "--pipeline", directory, "--brokers", brokers, "--db", db,
                                         "--max-messages", str(max_messages)], db, wall_from_output=False)
        if not args.skip_floor:
            db = os.path.join(work, "floor.db")
            run_json("sqlite_floor", [floor, "--pipeline", pipeline, "--input", events_path, "--db", db,
                                      "--batch", str(max_messages), "--partitions", str(args.partitions),
                                      "--topic", args.topic], db, wall_from_output=True)
            if not args.skip_staging:
                db = os.path.join(work, "floor-staging.db")
                run_json("sqlite_floor staging only", [floor, "--pipeline", pipeline, "--input", events_path, "--db",
                                                       db, "--batch", str(max_messages), "--partitions",
                                                       str(args.partitions), "--topic", args.topic, "--no-steps"],
                         db, wall_from_output=True)

        load = (load_before, os.getloadavg()[0])
        report(results, args, max_messages, version, results_path, pipeline, load)
        ok = True
    finally:
        PROCESSES.stop_all()
        if args.keep or args.workdir:
            log(f"kept {work}")
        elif not ok:
            # Keep the logs, not the events and databases (hundreds of MB at 1M events).
            for name in os.listdir(work):
                if name.endswith(".jsonl") or ".db" in name:
                    os.remove(os.path.join(work, name))
            log(f"logs of the failed run are in {work} (remove it with rm -r)")
        else:
            shutil.rmtree(work, ignore_errors=True)


def report(results, args, max_messages, version, results_path, pipeline, load):
    sluice_eps = results[0]["events_per_s"]
    for result in results:
        result["ratio"] = result["events_per_s"] / sluice_eps
        running = result["seconds"] - (result.get("startup_ms") or 0) / 1000
        result["running_eps"] = result["events"] / running if running > 0 else 0

    header = ["contender", "events/s", "vs sluice", "seconds", "peak RSS", "batches", "events/s after start-up"]
    rows = [[r["contender"], f"{r['events_per_s']:,.0f}", f"{r['ratio']:.2f}x", f"{r['seconds']:.2f}",
             f"{r['peak_rss'] / 2**20:.0f} MB", str(r["batches"]), f"{r['running_eps']:,.0f}"] for r in results]
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    print()
    print(f"sluice benchmark, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}: {args.events} events, "
          f"{args.partitions} partitions, max_messages {max_messages}")
    print(f"{version}; {machine()}; load average {load[0]:.1f} before timing, {load[1]:.1f} after")
    if max(load) > (os.cpu_count() or 1) / 2:
        print("WARNING: other work was running on this machine; the figures below are not reliable "
              "(try --wait-idle 0.5)")
    print()
    print(line(header))
    print(line(["-" * w for w in widths]))
    for row in rows:
        print(line(row))

    print()
    print("time by stage, ms (sluice's from _sluice_runs). start-up: from launch to the first batch (connect,")
    print("pipeline check, end offsets); other: the rest of the wall time (for sluice: SQLite COMMIT, Kafka offset")
    print("commit, between batches, exit). The floor's clock starts after pre-parsing, so it has neither.")
    stage_header = ["contender", "start-up", "fetch", "stage", "steps", "commit", "other", "total"]
    stage_rows = []
    for r in results:
        cells = [r.get("startup_ms"), r.get("fetch_ms"), r["stage_ms"], r["steps_ms"], r["commit_ms"], r["other_ms"],
                 r["seconds"] * 1000]
        stage_rows.append([r["contender"]] + ["-" if c is None else f"{c:,.0f}" for c in cells])
    widths = [max(len(stage_header[i]), *(len(row[i]) for row in stage_rows)) for i in range(len(stage_header))]
    print(line(stage_header))
    for row in stage_rows:
        print(line(row))

    # The same events through the same SQL must give the same curated tables.
    seeds_dir = os.path.join(pipeline, "seeds")
    seeds = {name[:-4] for name in os.listdir(seeds_dir) if name.endswith(".csv")} if os.path.isdir(seeds_dir) else set()
    with_steps = [r for r in results if "staging only" not in r["contender"]]
    prints = {r["contender"]: fingerprint(r["db"], seeds) for r in with_steps}
    reference = prints[results[0]["contender"]]
    reference_db = results[0]["db"]
    print()
    for r in with_steps:
        name, tables = r["contender"], prints[r["contender"]]
        if tables == reference:
            continue
        print(f"WARNING: {name}'s tables differ from sluice's:")
        for table in sorted(set(tables) | set(reference)):
            if tables.get(table) == reference.get(table):
                continue
            print(f"  {table}: {tables.get(table)}\n    vs sluice {reference.get(table)}")
            if table in tables and table in reference:
                only_here, only_sluice = table_differences(r["db"], reference_db, table)
                for row in only_here:
                    print(f"    only in {name}: {row}")
                for row in only_sluice:
                    print(f"    only in sluice: {row}")
    if all(tables == reference for tables in prints.values()):
        summary = ", ".join(f"{table} {values['rows']} rows" for table, values in reference.items())
        print(f"curated tables agree across {', '.join(prints)}: {summary}")

    by_name = {r["contender"]: r for r in results}
    print()
    print("targets (issue 4):")
    checks = [("end to end >= 250k events/s", sluice_eps >= 250000, f"{sluice_eps:,.0f}")]
    if "sluice staging only" in by_name:
        value = by_name["sluice staging only"]["events_per_s"]
        checks.append(("staging only >= 700k events/s", value >= 700000, f"{value:,.0f}"))
    if "sqlite_floor" in by_name:
        value = sluice_eps / by_name["sqlite_floor"]["events_per_s"]
        checks.append(("end to end >= 0.8x sqlite_floor", value >= 0.8, f"{value:.2f}x"))
    if "python baseline" in by_name:
        value = sluice_eps / by_name["python baseline"]["events_per_s"]
        checks.append(("end to end >= 3x python baseline", value >= 3, f"{value:.2f}x"))
    for label, passed, value in checks:
        print(f"  {'met    ' if passed else 'NOT MET'}  {label}: {value}")

    os.makedirs(os.path.dirname(results_path), exist_ok=True)
    fields = ["contender", "events", "events_per_s", "ratio_to_sluice", "events_per_s_after_startup", "seconds",
              "peak_rss_mb", "batches",
              "startup_ms", "fetch_ms", "stage_ms", "steps_ms", "commit_ms", "other_ms", "max_messages", "partitions",
              "date", "machine", "load_before", "load_after"]
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    with open(results_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        for r in results:
            writer.writerow([r["contender"], r["events"], round(r["events_per_s"]), round(r["ratio"], 3),
                             round(r["running_eps"]), round(r["seconds"], 3), round(r["peak_rss"] / 2**20, 1), r["batches"]] +
                            ["" if r.get(k) is None else round(r[k], 1)
                             for k in ("startup_ms", "fetch_ms", "stage_ms", "steps_ms", "commit_ms", "other_ms")] +
                            [max_messages, args.partitions, now, machine(), round(load[0], 2), round(load[1], 2)])
    print()
    print(f"wrote {results_path}")


def on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def run_main(main, script):
    """Runs `main` with SIGTERM/SIGHUP stopping it like Ctrl-C, and exits 1 on a BenchError, 130 when interrupted.

    Children are stopped by `main`'s own cleanup on the way out."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        main()
    except BenchError as error:
        print(f"{script}: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"{script}: interrupted; children stopped", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    run_main(main, "bench/run.py")
