#!/usr/bin/env python3
"""How sluice's cost grows: events/s by backlog size and by batch size (issue 4).

    python3 bench/scaling.py [--build build-bench] [--sizes 100k,1M,5M] [--batch-sizes 1k,10k,100k]

Runs `sluice run <copy of pipelines/orders>` end to end, each run with a fresh
consumer group, a fresh database and a fresh embedded broker per backlog, over
the same generated events (pipelines/orders/generate.py, fixed seed; a smaller
backlog is a prefix of a larger one):

  size     --sizes (default 100k, 1M, 5M) at pipeline.conf's max_messages: the
           curated table grows with the events (about half of them are new orders);
  batch    --batch-sizes (default 1k, 10k, 100k) as --max-messages over
           --batch-events (default 1M) events;
  memory   --memory-events (default 250k and 1M) at --memory-batch (default 100k):
           issue 4 wants peak RSS <= 150 MB and within 10 % of each other;
  chunked reference  --reference-events N (off by default) runs N events the way
           the largest backlog is run (below), in chunks of --reference-chunk
           (default 100k). Not needed to judge the chunked feed: the script
           prints when the largest (chunked) run reached each smaller backlog,
           next to that backlog's preloaded time. (Small chunks make short
           `--every` passes, and a pass shorter than the 1 s tick waits for it.)

Two ways to feed a run:

  preloaded  the whole backlog is published first (`sluice produce --key-field
             order_id --timestamp-field event_time` over 64 partitions, low
             watermarks checked to be 0), then `sluice run --until-caught-up` is
             timed from launch to exit;
  chunked    for backlogs the broker cannot hold (it keeps about 5 MiB per
             partition: 5M events are about 12 MiB per partition over 64): the
             events are published in chunks of --chunk events (default 500k)
             while `sluice run --every 1s` consumes. Two chunks are published
             before the clock starts; chunk k+2 is published once sluice has
             committed everything up to the end of chunk k, so at most two
             chunks (about 3 MB per partition) are unread and sluice always
             has a backlog. The time is from launch to the poll (every 100 ms)
             that finds every partition committed to its end; sluice is then
             stopped with SIGTERM. The script fails loudly if the broker ever
             dropped a message sluice had not committed, or if sluice did not read
             every partition from 0 to its end exactly once. The publishing runs
             on the same 2 cores; the report compares the time the chunked run
             took to reach each smaller backlog with that backlog's preloaded run.

Each run reports events/s, seconds, batches, peak RSS (sluice's VmHWM, sampled
every 50 ms: wait4's ru_maxrss would also count this script's own image, which
the child has until its exec; scaling.csv keeps ru_maxrss as well), the
time by stage from _sluice_runs (per event), the bytes sluice read and wrote
through system calls (/proc/PID/io rchar/wchar: SQLite's page reads and its WAL
and checkpoint writes), the rows of orders_curated and the database size. The
largest run is also cut into segments of --segment events (default 500k) from
_sluice_runs, to show the rate falling as the table grows within one run.

Before each timed run the script waits (up to --wait-timeout s, default 600)
for the 1-minute load average to fall below --wait-idle (default 1.0), and
records the load average either way. Prints the tables, writes
<build>/bench/scaling.csv and <build>/bench/scaling_segments.csv.

Every child (broker, sluice, sluice produce) is stopped on every exit path;
all waits are bounded (--timeout per run). Needs python3-confluent-kafka
(Debian's, for /usr/bin/python3; the script re-runs itself with it if needed).
"""
import argparse
import bisect
import csv
import datetime
import itertools
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in bench/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402  (re-execs with /usr/bin/python3 when confluent_kafka is missing)
from confluent_kafka import Consumer, TopicPartition  # noqa: E402

REPO = bench.REPO
BenchError = bench.BenchError
log = bench.log
PARTITION_BYTES = 5 * 1024 * 1024  # what the embedded broker keeps per partition
RECORD_OVERHEAD = 40  # bytes a record adds to its value in the broker's log (approximate)
ORDER_NUMBER = re.compile(r'"order_id":\s*"O(\d{8})"')


def count_arg(text):
    """100k, 1M, 5000000 -> int."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a count: {text!r}")
    value = float(match.group(1)) * {"": 1, "k": 1000, "m": 1000000}[match.group(2).lower()]
    return int(value)


def counts_arg(text):
    return [count_arg(part) for part in text.split(",") if part.strip()] if text.strip() else []


def short(n):
    if n >= 1000000 and n % 100000 == 0:
        return f"{n / 1000000:g}M"
    if n >= 1000 and n % 100 == 0:
        return f"{n / 1000:g}k"
    return str(n)


# ---------------------------------------------------------------- processes


def proc_io(pid):
    try:
        with open(f"/proc/{pid}/io") as f:
            return {k: int(v) for k, v in (line.split(":") for line in f)}
    except (OSError, ValueError):
        return None


def reap(proc):
    """Non-blocking wait4: the rusage when the child has exited, else None."""
    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
    if pid == proc.pid:
        proc.returncode = os.waitstatus_to_exitcode(status)
        return usage
    return None


def stop_measured(proc, grace=60):
    """SIGTERM, wait up to `grace` s (wait4, for ru_maxrss), then SIGKILL. Returns (exit code, rusage)."""
    if proc.returncode is not None:
        return proc.returncode, None
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        usage = reap(proc)
        if usage is not None:
            return proc.returncode, usage
        time.sleep(0.02)
    log(f"pid {proc.pid} did not exit {grace} s after SIGTERM: killing it")
    proc.kill()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        usage = reap(proc)
        if usage is not None:
            return proc.returncode, usage
        time.sleep(0.02)
    return None, None


def proc_hwm(pid):
    """VmHWM (peak RSS of the running program, since its exec) in bytes, or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class IoSamples:
    """(monotonic time, epoch time, rchar, wchar) of a process, sampled every `every` s, and its peak RSS.

    The peak RSS is VmHWM, not wait4()'s ru_maxrss: a child's ru_maxrss also counts the parent's
    image it was forked from (until exec), so it would report this script's own size when that is
    larger than sluice's. VmHWM is sampled, so a peak in the last `every` s before exit is missed.
    """

    def __init__(self, pid, every=0.05):
        self.pid, self.every, self.samples, self.next, self.hwm = pid, every, [], 0.0, None

    def sample(self, force=False):
        now = time.monotonic()
        if not force and now < self.next:
            return
        self.next = now + self.every
        io = proc_io(self.pid)
        if io is not None:
            self.samples.append((now, time.time(), io.get("rchar", 0), io.get("wchar", 0)))
        hwm = proc_hwm(self.pid)
        if hwm is not None:
            self.hwm = max(self.hwm or 0, hwm)

    def last(self):
        return self.samples[-1] if self.samples else (0, 0, 0, 0)

    def at(self, epoch):
        """rchar, wchar interpolated at an epoch time."""
        if not self.samples:
            return 0, 0
        times = [s[1] for s in self.samples]
        i = bisect.bisect_left(times, epoch)
        if i == 0:
            return self.samples[0][2], self.samples[0][3]
        if i >= len(times):
            return self.samples[-1][2], self.samples[-1][3]
        (_, t0, r0, w0), (_, t1, r1, w1) = self.samples[i - 1], self.samples[i]
        f = (epoch - t0) / (t1 - t0) if t1 > t0 else 0
        return r0 + f * (r1 - r0), w0 + f * (w1 - w0)


def watermarks(brokers, topic, partitions):
    """[(low, high)] per partition. The consumer is closed again (no librdkafka threads left for the next fork)."""
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": "sluice-scaling-watermarks",
                         "enable.auto.commit": False})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
                for p in range(partitions)]
    finally:
        consumer.close()


def committed_offsets(db_path, topic):
    if not os.path.exists(db_path):
        return {}
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
        try:
            return dict(conn.execute('select "partition", next_offset from _sluice_offsets where topic = ?', (topic,)))
        finally:
            conn.close()
    except sqlite3.Error:
        return {}  # not created yet


def epoch(iso):
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# ---------------------------------------------------------------- events


def prepare_events(work, total, seed, ranges, timeout):
    """Generates `total` events; writes one file per (start, end) line range; returns paths, sizes, order counts.

    orders_at[i] is the number of distinct (well-formed) orders among the first i*10000 events: the
    generator numbers new orders O00000001, O00000002, ... so it is the highest number seen so far.
    """
    events_path = os.path.join(work, "events.jsonl")
    generator = os.path.join(REPO, "pipelines", "orders", "generate.py")
    wall, _, _ = bench.run_checked("generate.py", [sys.executable, generator, "--count", str(total), "--seed",
                                                   str(seed)], timeout, events_path, os.path.join(work, "generate.log"))
    size = os.path.getsize(events_path)
    log(f"generated {total:,} events ({size / total:.0f} bytes each on average) in {wall:.1f} s")
    paths = {}
    orders_at = [0]
    highest = 0
    ranges = sorted(set(ranges))
    outputs = {r: open(os.path.join(work, f"events_{r[0]}_{r[1]}.jsonl"), "w") for r in ranges}
    try:
        starts = sorted({r[0] for r in ranges} | {r[1] for r in ranges})
        with open(events_path) as f:
            active = []
            boundary_index = 0
            for i, line in enumerate(f):
                if boundary_index < len(starts) and i == starts[boundary_index]:
                    active = [outputs[r] for r in ranges if r[0] <= i < r[1]]
                    boundary_index += 1
                for out in active:
                    out.write(line)
                match = ORDER_NUMBER.search(line)
                if match and line.rstrip().endswith("}") and '"n/a"' not in line:
                    highest = max(highest, int(match.group(1)))
                if (i + 1) % 10000 == 0:
                    orders_at.append(highest)
    finally:
        for r, out in outputs.items():
            out.close()
            paths[r] = out.name
    os.remove(events_path)
    return paths, size / total, orders_at


def orders_after(orders_at, events):
    return orders_at[min(len(orders_at) - 1, events // 10000)]


# ---------------------------------------------------------------- runs


class Runner:
    def __init__(self, args, sluice, pipeline, work, version):
        self.args, self.sluice, self.pipeline, self.work, self.version = args, sluice, pipeline, work, version
        self.tag = f"{os.getpid()}-{int(time.time())}"
        self.results = []

    def publish(self, brokers, path, name):
        wall, _, _ = bench.run_checked(
            f"sluice produce ({name})",
            [self.sluice, "produce", "--brokers", brokers, "--topic", self.args.topic, "--key-field", "order_id",
             "--timestamp-field", "event_time", path],
            self.args.timeout, os.path.join(self.work, f"produce-{name}.out"),
            os.path.join(self.work, f"produce-{name}.log"))
        return wall

    def wait_idle(self):
        waited = None
        if self.args.wait_idle > 0:
            waited = bench.wait_until_idle(self.args.wait_idle, self.args.wait_timeout)
            if waited >= self.args.wait_idle:
                log(f"load average still {waited:.2f} after {self.args.wait_timeout:.0f} s: measuring anyway")
        return waited, os.getloadavg()[0]

    def prepare_run(self, spec):
        slug = spec["slug"]
        directory = bench.copy_pipeline(self.pipeline, os.path.join(self.work, slug), f"sluice-scaling-{slug}-{self.tag}",
                                        with_steps=True)
        return directory, os.path.join(self.work, f"{slug}.db")

    def finish(self, spec, db, wall, usage, io_samples, ends, started_at, load, extra):
        io = io_samples.last()
        topic = self.args.topic
        runs = bench.sluice_runs(db)
        problems = bench.check_offsets(db, topic, ends)
        if problems:
            raise BenchError(f"{spec['name']}: sluice did not read every message exactly once:\n  " +
                             "\n  ".join(problems[:10]))
        if runs["messages"] != spec["events"] or runs["failed"]:
            raise BenchError(f"{spec['name']}: sluice processed {runs['messages']:.0f} of {spec['events']} messages "
                             f"({runs['failed']} failed runs)")
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            curated = conn.execute("select count(*) from orders_curated").fetchone()[0]
        finally:
            conn.close()
        db_bytes = sum(os.path.getsize(db + suffix) for suffix in ("", "-wal") if os.path.exists(db + suffix))
        staged_ms = runs["fetch_ms"] + runs["stage_ms"] + runs["steps_ms"] + runs["commit_ms"]
        startup_ms = max(0.0, (epoch(runs["first_started_at"]) - started_at) * 1000)
        result = dict(spec)
        result.update({
            "seconds": wall, "events_per_s": spec["events"] / wall, "batches": runs["batches"],
            "peak_rss": io_samples.hwm, "ru_maxrss": usage.ru_maxrss * 1024 if usage is not None else None,
            "startup_ms": startup_ms, "fetch_ms": runs["fetch_ms"], "stage_ms": runs["stage_ms"],
            "steps_ms": runs["steps_ms"], "commit_ms": runs["commit_ms"],
            "other_ms": wall * 1000 - staged_ms - startup_ms, "rchar": io[2], "wchar": io[3],
            "curated_rows": curated, "db_bytes": db_bytes, "load_waited": load[0], "load_before": load[1],
            "load_after": os.getloadavg()[0], "db": db, "started_at": started_at})
        result.update(extra)
        self.results.append(result)
        log(f"{spec['name']}: {result['events_per_s']:,.0f} events/s, {wall:.1f} s, {runs['batches']} batches, peak RSS "
            f"{(result['peak_rss'] or 0) / 2**20:.0f} MB, wrote {io[3] / 2**20:,.0f} MB, orders_curated {curated:,} rows")
        return result

    def run_preloaded(self, spec, brokers, ends):
        directory, db = self.prepare_run(spec)
        load = self.wait_idle()
        cmd = [self.sluice, "run", directory, "--until-caught-up", "--brokers", brokers, "--db", db,
               "--max-messages", str(spec["max_messages"])]
        log(f"{spec['name']}: {' '.join(cmd)}")
        log_path = os.path.join(self.work, f"{spec['slug']}.log")
        with open(os.path.join(self.work, f"{spec['slug']}.out"), "wb") as out, open(log_path, "wb") as err:
            started_at = time.time()
            start = time.perf_counter()
            proc = bench.PROCESSES.start(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        io = IoSamples(proc.pid)
        deadline = start + self.args.timeout
        while True:
            io.sample()
            usage = reap(proc)
            if usage is not None:
                wall = time.perf_counter() - start
                break
            if time.perf_counter() > deadline:
                bench.PROCESSES.stop(proc)
                raise BenchError(f"{spec['name']} did not finish within {self.args.timeout:.0f} s (killed)")
            time.sleep(0.005)
        if proc.returncode != 0:
            raise BenchError(f"{spec['name']} exited with {proc.returncode}:\n{bench.tail(log_path)}")
        return self.finish(spec, db, wall, usage, io, ends, started_at, load, {"io_samples": io, "starved_s": 0.0})

    def run_chunked(self, spec, paths, chunks):
        """Publishes chunks while `sluice run --every 1s` consumes; see the module's docstring."""
        args, topic = self.args, self.args.topic
        broker, brokers = bench.start_broker(self.sluice, topic, args.partitions,
                                             os.path.join(self.work, f"broker-{spec['slug']}.log"))
        try:
            ends_after = []

            def after_publish(index):
                marks = watermarks(brokers, topic, args.partitions)
                ends_after.append([high for _, high in marks])
                if sum(ends_after[-1]) != chunks[index][1]:
                    raise BenchError(f"{spec['name']}: the topic holds {sum(ends_after[-1])} messages after chunk "
                                     f"{index + 1}, not {chunks[index][1]}")
                return marks

            publish_s = 0.0
            for index in range(min(2, len(chunks))):
                publish_s += self.publish(brokers, paths[chunks[index]], f"{spec['slug']}-{index}")
                marks = after_publish(index)
                if any(low != 0 for low, _ in marks):
                    raise BenchError(f"THE BROKER DROPPED MESSAGES before {spec['name']} started: use a smaller "
                                     "--chunk or more --partitions")
            log(f"{spec['name']}: {len(chunks)} chunks of up to {spec['chunk']:,} events; 2 published before the "
                "clock")
            directory, db = self.prepare_run(spec)
            load = self.wait_idle()
            cmd = [self.sluice, "run", directory, "--every", "1s", "--brokers", brokers, "--db", db,
                   "--max-messages", str(spec["max_messages"])]
            log(f"{spec['name']}: {' '.join(cmd)}")
            log_path = os.path.join(self.work, f"{spec['slug']}.log")
            with open(os.path.join(self.work, f"{spec['slug']}.out"), "wb") as out, open(log_path, "wb") as err:
                started_at = time.time()
                start = time.perf_counter()
                proc = bench.PROCESSES.start(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
            io = IoSamples(proc.pid)
            deadline = start + args.timeout
            next_chunk, producing, producing_since = len(ends_after), None, None
            starved_s, last = 0.0, time.perf_counter()
            while True:
                io.sample()
                if reap(proc) is not None:
                    raise BenchError(f"{spec['name']}: sluice run exited with {proc.returncode}:\n{bench.tail(log_path)}")
                offsets = committed_offsets(db, topic)
                now = time.perf_counter()
                if producing is not None and producing.poll() is not None:
                    if producing.returncode != 0:
                        raise BenchError(f"{spec['name']}: sluice produce exited with {producing.returncode}:\n"
                                         f"{bench.tail(producing.log_path)}")
                    publish_s += now - producing_since
                    marks = after_publish(next_chunk - 1)
                    offsets = committed_offsets(db, topic)
                    lost = [f"{topic}[{p}] starts at {low}, sluice had committed {offsets.get(p, 0)}"
                            for p, (low, _) in enumerate(marks) if low > offsets.get(p, 0)]
                    if lost:
                        raise BenchError("THE BROKER DROPPED MESSAGES sluice had not read: " + "; ".join(lost[:5]) +
                                         " (use a smaller --chunk or more --partitions)")
                    producing = None
                done_to = lambda ends: all(offsets.get(p, 0) >= end for p, end in enumerate(ends))
                if producing is None and next_chunk == len(chunks) and done_to(ends_after[-1]):
                    wall = now - start
                    break
                if producing is not None and done_to(ends_after[-1]):
                    starved_s += now - last  # sluice has read everything published: waiting for the publisher
                if producing is None and next_chunk < len(chunks) and done_to(ends_after[next_chunk - 2]):
                    name = f"{spec['slug']}-{next_chunk}"
                    produce_log = os.path.join(self.work, f"produce-{name}.log")
                    with open(os.path.join(self.work, f"produce-{name}.out"), "wb") as out, \
                            open(produce_log, "wb") as err:
                        producing = bench.PROCESSES.start(
                            [self.sluice, "produce", "--brokers", brokers, "--topic", topic, "--key-field",
                             "order_id", "--timestamp-field", "event_time", paths[chunks[next_chunk]]],
                            stdout=out, stderr=err, stdin=subprocess.DEVNULL)
                    producing.log_path = produce_log
                    producing_since = now
                    next_chunk += 1
                last = now
                if now > deadline:
                    raise BenchError(f"{spec['name']} did not finish within {args.timeout:.0f} s")
                time.sleep(0.1)
            io.sample(force=True)
            code, usage = stop_measured(proc)
            if code != 0:
                raise BenchError(f"{spec['name']}: sluice run exited with {code} after SIGTERM:\n{bench.tail(log_path)}")
            marks = watermarks(brokers, topic, args.partitions)
            ends = [high for _, high in marks]
            return self.finish(spec, db, wall, usage, io, ends, started_at, load,
                               {"io_samples": io, "starved_s": starved_s, "publish_s": publish_s})
        finally:
            bench.PROCESSES.stop(broker)


def time_to(result, events):
    """Seconds from the run's launch to the end of the batch that brought it to `events` (None if never)."""
    conn = sqlite3.connect(f"file:{result['db']}?mode=ro", uri=True, timeout=5)
    try:
        batches = conn.execute("select messages, finished_at from _sluice_runs where status = 'ok' and messages > 0 "
                               "order by run_id").fetchall()
    finally:
        conn.close()
    done = 0
    for messages, finished in batches:
        done += messages
        if done >= events:
            return epoch(finished) - result["started_at"]
    return None


def segments(result, size, orders_at):
    """The run cut into segments of about `size` events, from its batches in _sluice_runs."""
    conn = sqlite3.connect(f"file:{result['db']}?mode=ro", uri=True, timeout=5)
    try:
        batches = conn.execute("select messages, started_at, finished_at, fetch_ms, stage_ms, steps_ms, commit_ms "
                               "from _sluice_runs where status = 'ok' and messages > 0 order by run_id").fetchall()
    finally:
        conn.close()
    out = []
    done, begin_events = 0, 0
    begin_time = epoch(batches[0][1]) if batches else 0
    acc = {"fetch": 0.0, "stage": 0.0, "steps": 0.0, "commit": 0.0, "batches": 0}
    for messages, started, finished, fetch_ms, stage_ms, steps_ms, commit_ms in batches:
        done += messages
        acc["fetch"] += fetch_ms or 0
        acc["stage"] += stage_ms or 0
        acc["steps"] += steps_ms or 0
        acc["commit"] += commit_ms or 0
        acc["batches"] += 1
        if done >= begin_events + size or done == result["events"]:
            end_time = epoch(finished)
            events = done - begin_events
            r0, w0 = result["io_samples"].at(begin_time)
            r1, w1 = result["io_samples"].at(end_time)
            out.append({"run": result["name"], "from": begin_events, "to": done,
                        "orders_at_end": orders_after(orders_at, done), "batches": acc["batches"],
                        "seconds": end_time - begin_time, "events_per_s": events / max(1e-9, end_time - begin_time),
                        **{f"{k}_us_per_event": acc[k] * 1000 / events for k in ("fetch", "stage", "steps", "commit")},
                        "written_bytes_per_event": (w1 - w0) / events, "read_bytes_per_event": (r1 - r0) / events})
            begin_events, begin_time = done, end_time
            acc = {k: 0 for k in acc}
    return out


# ---------------------------------------------------------------- report


def table(header, rows):
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    print(line(header))
    print(line(["-" * w for w in widths]))
    for row in rows:
        print(line(row))


def report(runner, args, default_mm, segment_rows, build, avg_bytes):
    results = runner.results
    now = datetime.datetime.now().astimezone()
    print()
    print(f"sluice scaling, {now:%Y-%m-%d %H:%M %Z}: pipelines/orders, {args.partitions} partitions, events of "
          f"{avg_bytes:.0f} bytes on average (seed {args.seed}); default max_messages {default_mm}")
    print(f"{runner.version}; {bench.machine()}")
    loads = [r["load_before"] for r in results]
    print(f"1-minute load average before each run (waited for < {args.wait_idle:g}, up to {args.wait_timeout:.0f} s): "
          + ", ".join(f"{r['load_before']:.2f}" for r in results) + "; after: "
          + ", ".join(f"{r['load_after']:.2f}" for r in results))
    if max(loads) > (os.cpu_count() or 1) / 2:
        print("WARNING: other work was running on this machine before some runs; compare them with care")
    print("(the load after a run includes the run itself: sluice, the broker and, for chunked runs, sluice produce)")
    print()
    header = ["run", "series", "events", "max_msgs", "feed", "events/s", "seconds", "batches", "peak RSS",
              "curated rows", "db MB", "load"]
    rows = [[r["name"], r["series"], short(r["events"]), short(r["max_messages"]), r["method"],
             f"{r['events_per_s']:,.0f}", f"{r['seconds']:.1f}", str(r["batches"]),
             "-" if r["peak_rss"] is None else f"{r['peak_rss'] / 2**20:.0f} MB", f"{r['curated_rows']:,}",
             f"{r['db_bytes'] / 2**20:.0f}", f"{r['load_before']:.2f}/{r['load_after']:.2f}"] for r in results]
    table(header, rows)

    print()
    print("per event (µs; sluice's stages from _sluice_runs; other = wall - stages - start-up: SQLite COMMIT, Kafka")
    print("offset commit, between batches, exit), per batch (ms), and bytes through system calls per event")
    header = ["run", "start-up ms", "fetch", "stage", "steps", "commit", "other", "total µs", "ms/batch",
              "steps ms/batch", "read B/ev", "written B/ev", "starved s"]
    rows = []
    for r in results:
        n = r["events"]
        us = lambda ms: f"{ms * 1000 / n:.1f}"
        rows.append([r["name"], f"{r['startup_ms']:,.0f}", us(r["fetch_ms"]), us(r["stage_ms"]), us(r["steps_ms"]),
                     us(r["commit_ms"]), us(r["other_ms"]), us(r["seconds"] * 1000),
                     f"{r['seconds'] * 1000 / max(1, r['batches']):,.0f}",
                     f"{r['steps_ms'] / max(1, r['batches']):,.0f}", f"{r['rchar'] / n:,.0f}",
                     f"{r['wchar'] / n:,.0f}", f"{r['starved_s']:.1f}"])
    table(header, rows)

    if segment_rows:
        print()
        name = segment_rows[0]["run"]
        print(f"{name}, in segments of about {short(args.segment)} events (from its batches; orders = rows of "
              "orders_curated at the segment's end)")
        header = ["events", "orders", "batches", "events/s", "fetch µs/ev", "stage µs/ev", "steps µs/ev",
                  "commit µs/ev", "read B/ev", "written B/ev"]
        rows = [[f"{short(s['from'])}-{short(s['to'])}", f"{s['orders_at_end']:,}", str(s["batches"]),
                 f"{s['events_per_s']:,.0f}", f"{s['fetch_us_per_event']:.1f}", f"{s['stage_us_per_event']:.1f}",
                 f"{s['steps_us_per_event']:.1f}", f"{s['commit_us_per_event']:.1f}",
                 f"{s['read_bytes_per_event']:,.0f}", f"{s['written_bytes_per_event']:,.0f}"] for s in segment_rows]
        table(header, rows)
        largest = next(r for r in results if r["name"] == name)
        for r in results:
            if r["method"] == "preloaded" and r["max_messages"] == largest["max_messages"] and \
                    r["events"] < largest["events"]:
                t = time_to(largest, r["events"])
                if t:
                    print(f"{name} reached {short(r['events'])} events after {t:.1f} s ({r['events'] / t:,.0f} "
                          f"events/s), publishing as it went; {r['name']} preloaded: {r['seconds']:.1f} s "
                          f"({r['events_per_s']:,.0f} events/s)")

    print()
    print("targets (issue 4):")
    memory = sorted((r for r in results if "memory" in r["series"] and r["peak_rss"]), key=lambda r: r["events"])
    if len(memory) >= 2:
        low, high = memory[0], memory[-1]
        peak = max(r["peak_rss"] for r in memory)
        spread = (high["peak_rss"] - low["peak_rss"]) / low["peak_rss"]
        print(f"  {'met    ' if peak <= 150 * 2**20 else 'NOT MET'}  peak RSS <= 150 MB with max_messages "
              f"{short(args.memory_batch)}: " + ", ".join(f"{short(r['events'])} backlog {r['peak_rss'] / 2**20:.0f} MB"
                                                           for r in memory))
        print(f"  {'met    ' if abs(spread) <= 0.10 else 'NOT MET'}  within 10 % between a {short(low['events'])} and "
              f"a {short(high['events'])} backlog: {spread * 100:+.1f} %")

    os.makedirs(os.path.join(build, "bench"), exist_ok=True)
    path = os.path.join(build, "bench", "scaling.csv")
    fields = ["run", "series", "events", "max_messages", "method", "events_per_s", "seconds", "batches", "peak_rss_mb",
              "ru_maxrss_mb",
              "startup_ms", "fetch_ms", "stage_ms", "steps_ms", "commit_ms", "other_ms", "read_mb", "written_mb",
              "curated_rows", "db_mb", "starved_s", "load_waited", "load_before", "load_after", "partitions", "date",
              "version", "machine"]
    stamp = now.isoformat(timespec="seconds")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        for r in results:
            writer.writerow([r["name"], r["series"], r["events"], r["max_messages"], r["method"],
                             round(r["events_per_s"]), round(r["seconds"], 3), r["batches"],
                             "" if r["peak_rss"] is None else round(r["peak_rss"] / 2**20, 1),
                             "" if r["ru_maxrss"] is None else round(r["ru_maxrss"] / 2**20, 1)] +
                            [round(r[k], 1) for k in ("startup_ms", "fetch_ms", "stage_ms", "steps_ms", "commit_ms",
                                                      "other_ms")] +
                            [round(r["rchar"] / 2**20, 1), round(r["wchar"] / 2**20, 1), r["curated_rows"],
                             round(r["db_bytes"] / 2**20, 1), round(r["starved_s"], 1),
                             "" if r["load_waited"] is None else round(r["load_waited"], 2),
                             round(r["load_before"], 2), round(r["load_after"], 2), args.partitions, stamp,
                             runner.version, bench.machine()])
    print()
    print(f"wrote {path}")
    if segment_rows:
        path = os.path.join(build, "bench", "scaling_segments.csv")
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(segment_rows[0]) + ["date"])
            writer.writeheader()
            for s in segment_rows:
                writer.writerow({**{k: round(v, 2) if isinstance(v, float) else v for k, v in s.items()},
                                 "date": stamp})
        print(f"wrote {path}")


# ---------------------------------------------------------------- main


def plan(args, default_mm, fits):
    """The runs, in order; the same (events, max_messages, feed) asked for twice runs once."""
    specs = {}

    def add(series, events, max_messages, method=None):
        method = method or ("preloaded" if events <= fits else "chunked")
        key = (events, max_messages, method)
        if key in specs:
            specs[key]["series"] += "+" + series
            return
        name = f"{short(events)} @{short(max_messages)}" + (" chunked" if method == "chunked" else "")
        if method == "chunked" and series == "chunked reference":
            name += " (ref)"
        specs[key] = {"name": name, "slug": re.sub(r"\W+", "-", name).strip("-"), "series": series,
                      "events": events, "max_messages": max_messages, "method": method}

    for n in args.sizes:
        add("size", n, default_mm)
    for b in args.batch_sizes:
        add("batch", args.batch_events, b)
    for n in args.memory_events:
        add("memory", n, args.memory_batch)
    if args.reference_events:
        add("chunked reference", args.reference_events, default_mm, "chunked")
    for spec in specs.values():
        if spec["method"] == "chunked":
            spec["chunk"] = args.reference_chunk if "chunked reference" in spec["series"] else args.chunk
    order = lambda s: (s["method"] == "chunked", s["events"], s["max_messages"])
    return sorted(specs.values(), key=order)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--build", default="build-bench", help="build directory, relative to the repository "
                        "(default build-bench)")
    parser.add_argument("--sizes", type=counts_arg, default=counts_arg("100k,1M,5M"),
                        help="backlogs at the default batch size (default 100k,1M,5M)")
    parser.add_argument("--batch-sizes", type=counts_arg, default=counts_arg("1k,10k,100k"),
                        help="--max-messages values (default 1k,10k,100k)")
    parser.add_argument("--batch-events", type=count_arg, default=count_arg("1M"),
                        help="backlog for --batch-sizes (default 1M)")
    parser.add_argument("--memory-events", type=counts_arg, default=counts_arg("250k,1M"),
                        help="backlogs for the memory target (default 250k,1M)")
    parser.add_argument("--memory-batch", type=count_arg, default=count_arg("100k"),
                        help="max_messages for the memory target (default 100k)")
    parser.add_argument("--reference-events", type=count_arg, default=0,
                        help="a backlog to run chunked as well, to compare the two feeds (default 0: none)")
    parser.add_argument("--chunk", type=count_arg, default=count_arg("500k"),
                        help="events per published chunk for the chunked feed (default 500k)")
    parser.add_argument("--reference-chunk", type=count_arg, default=count_arg("100k"),
                        help="events per published chunk for the chunked reference (default 100k)")
    parser.add_argument("--segment", type=count_arg, default=count_arg("500k"),
                        help="segment size for the largest run's curve (default 500k)")
    parser.add_argument("--partitions", type=int, default=64, help="partitions of the topic (default 64)")
    parser.add_argument("--pipeline", default=os.path.join(REPO, "pipelines", "orders"), help="pipeline directory")
    parser.add_argument("--topic", default="orders")
    parser.add_argument("--seed", type=int, default=42, help="generator seed (default 42)")
    parser.add_argument("--wait-idle", type=float, default=1.0, metavar="LOAD",
                        help="before each run, wait for the 1-minute load average to fall below LOAD (default 1.0; "
                        "0 to skip)")
    parser.add_argument("--wait-timeout", type=float, default=600, help="longest wait for --wait-idle, per run "
                        "(default 600)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed to each step (default 3600)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (databases, logs)")
    args = parser.parse_args()

    build = args.build if os.path.isabs(args.build) else os.path.join(REPO, args.build)
    sluice = os.path.join(build, "sluice")
    if not os.access(sluice, os.X_OK):
        raise BenchError(f"{sluice} not found: build with\n  cmake -S . -B {args.build} -DCMAKE_BUILD_TYPE=Release "
                         f"-DSLUICE_BUILD_BENCHMARKS=ON && cmake --build {args.build} -j2")
    pipeline = os.path.abspath(args.pipeline)
    default_mm = bench.pipeline_max_messages(pipeline)
    # What fits the broker: about 190 bytes a record (152 of JSON plus overhead), 80 % of 5 MiB per partition.
    budget = 0.8 * PARTITION_BYTES * args.partitions
    fits = int(budget / (160 + RECORD_OVERHEAD))
    for option, value in (("--chunk", args.chunk),) + ((("--reference-chunk", args.reference_chunk),)
                                                        if args.reference_events else ()):
        if 2 * value > fits or value <= 0:
            raise BenchError(f"{option} {value}: two chunks must fit the broker ({fits:,} events over "
                             f"{args.partitions} partitions)")
    specs = plan(args, default_mm, fits)
    if not specs:
        raise BenchError("nothing to run")
    total = max(s["events"] for s in specs)
    ranges = set()
    for s in specs:
        if s["method"] == "preloaded":
            ranges.add((0, s["events"]))
        else:
            s["chunks"] = [(a, min(a + s["chunk"], s["events"])) for a in range(0, s["events"], s["chunk"])]
            ranges.update(s["chunks"])

    work = tempfile.mkdtemp(prefix="sluice-scaling-")
    ok = False
    try:
        version = subprocess.run([sluice, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
        log(f"{version}; {bench.machine()}; work dir {work}")
        log("runs: " + "; ".join(f"{s['name']} ({s['series']})" for s in specs))
        paths, avg_bytes, orders_at = prepare_events(work, total, args.seed, ranges, args.timeout)
        runner = Runner(args, sluice, pipeline, work, version)

        for events, group in itertools.groupby([s for s in specs if s["method"] == "preloaded"],
                                               key=lambda s: s["events"]):
            group = list(group)
            broker, brokers = bench.start_broker(sluice, args.topic, args.partitions,
                                                 os.path.join(work, f"broker-{events}.log"))
            try:
                wall = runner.publish(brokers, paths[(0, events)], short(events))
                ends = bench.check_watermarks(brokers, args.topic, args.partitions, events)
                log(f"published {events:,} events in {wall:.1f} s; every partition starts at offset 0")
                for spec in group:
                    runner.run_preloaded(spec, brokers, ends)
            finally:
                bench.PROCESSES.stop(broker)
        for spec in specs:
            if spec["method"] == "chunked":
                runner.run_chunked(spec, paths, spec["chunks"])
        # Remove the events early (several hundred MB at 5M); the databases are needed for the segments.
        for path in paths.values():
            os.remove(path)

        largest = max(runner.results, key=lambda r: (r["events"], r["method"] == "chunked"))
        segment_rows = segments(largest, args.segment, orders_at)
        report(runner, args, default_mm, segment_rows, build, avg_bytes)
        ok = True
    finally:
        bench.PROCESSES.stop_all()
        if args.keep:
            log(f"kept {work}")
        elif not ok:
            for name in os.listdir(work):
                if name.endswith(".jsonl") or ".db" in name:
                    os.remove(os.path.join(work, name))
            log(f"logs of the failed run are in {work} (remove it with rm -r)")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    bench.run_main(main, "bench/scaling.py")
