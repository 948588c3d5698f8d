#!/usr/bin/env python3
"""The consumer a user would write instead of sluice: confluent-kafka and sqlite3.

Runs a sluice pipeline directory (pipeline.conf, schema.sql, steps/*.sql,
seeds/*.csv) the straightforward way, for bench/run.py to compare with
`sluice run --until-caught-up`:

  - takes every partition of the topic (like sluice's `assignment = all`),
    from the group's committed offsets, else the beginning;
  - notes the end offsets at start and stops when every partition reaches them;
  - per batch: consume(num_messages=max_messages, timeout=max_wait); parse each
    value with json.loads and cast the [columns] as leniently as sluice does
    ("42.50" is REAL 42.5, null or missing is NULL, "abc" for REAL goes to the
    quarantine table with the reason); then, in one SQLite transaction: empty
    the staging table, executemany the rows into it (same shape as sluice's,
    read through a `batch` view), run steps/*.sql, store the next offsets;
    commit; then commit the offsets to the Kafka group.

schema.sql runs once at start (the steps read orders_curated, so it must
exist) and the seeds are loaded once, with sluice's type inference. The
database uses WAL and synchronous=NORMAL, as sluice's does.

Prints one JSON object on stdout: events, staged, quarantined, batches,
seconds, events_per_s and the summed fetch/stage/steps/commit milliseconds.

    python3 bench/python_baseline.py --pipeline pipelines/orders \\
        --brokers 127.0.0.1:9092 --db /tmp/baseline.db --group baseline-1
"""
import argparse
import configparser
import csv
import json
import math
import os
import re
import sqlite3
import sys
import time

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaException, TopicPartition

STAGING = "_staging"
QUARANTINE = "_quarantine"
OFFSETS = "_offsets"


class BadMessage(Exception):
    """A message sluice would quarantine; the text is the reason."""


def parse_duration(text):
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", text)
    if not match:
        raise ValueError(f"bad duration {text!r}")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2) or "s"]
    return float(match.group(1)) * scale


def parse_path(spec):
    """'$.a.b[0]' -> ['a', 'b', 0]."""
    elements = []
    for member, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", spec[1:]):
        elements.append(member if member else int(index))
    return elements


def load_config(pipeline_dir):
    parser = configparser.ConfigParser(inline_comment_prefixes=("#",), interpolation=None)
    parser.optionxform = str  # column names keep their case
    with open(os.path.join(pipeline_dir, "pipeline.conf"), encoding="utf-8") as f:
        parser.read_file(f)
    columns = []
    for name, spec in parser.items("columns"):
        type_name, _, path = spec.strip().partition(" ")
        columns.append((name, type_name.upper(), parse_path(path.strip()) if path.strip() else [name]))
    return {
        "topic": parser.get("source", "topic", fallback="").strip(),
        "group": parser.get("source", "group", fallback="sluice-" + os.path.basename(os.path.abspath(pipeline_dir))),
        "max_messages": parser.getint("batch", "max_messages", fallback=50000),
        "max_wait": parse_duration(parser.get("batch", "max_wait", fallback="2s")),
        "columns": columns,
    }


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def cast(value, type_name, name):
    """sluice's lenient casts (sql/staging.cc RowParser::Convert)."""
    if value is None:
        return None
    if type_name == "TEXT":
        return value if isinstance(value, str) else compact(value)
    if type_name == "JSON":
        return compact(value)
    if type_name == "INTEGER":
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            if -2**63 <= value < 2**63:
                return value
            raise BadMessage(f"column {name}: {value} is out of range for a 64-bit integer (declared INTEGER)")
        if isinstance(value, float):
            if math.isfinite(value) and value.is_integer():
                return int(value)
        elif isinstance(value, str):
            text = value.strip()
            try:
                return int(text)
            except ValueError:
                try:
                    number = float(text)
                    if math.isfinite(number) and number.is_integer():
                        return int(number)
                except ValueError:
                    pass
        raise BadMessage(f"column {name}: {compact(value)[:60]} is not a whole number (declared INTEGER)")
    if type_name == "REAL":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                number = float(value.strip())
                if math.isfinite(number):
                    return number
            except ValueError:
                pass
        raise BadMessage(f"column {name}: {compact(value)[:60]} is not a number (declared REAL)")
    if type_name == "BOOLEAN":
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, (int, float)) and value in (0, 1):
            return int(value)
        if isinstance(value, str):
            text = value.strip().lower()
            if text in ("true", "t", "yes", "y", "1"):
                return 1
            if text in ("false", "f", "no", "n", "0"):
                return 0
        raise BadMessage(f"column {name}: {compact(value)[:60]} is not a boolean (declared BOOLEAN)")
    raise ValueError(f"unknown column type {type_name}")


def to_row(raw, columns):
    """The typed column values of one message value, or BadMessage."""
    if raw is None:
        return [None] * len(columns)  # tombstone
    try:
        doc = json.loads(raw)
    except ValueError as error:
        raise BadMessage(f"invalid JSON: {error}")
    if not isinstance(doc, dict):
        raise BadMessage("the value is not a JSON object")
    row = []
    for name, type_name, path in columns:
        node = doc
        for element in path:
            if isinstance(element, int):
                node = node[element] if isinstance(node, list) and element < len(node) else None
            else:
                node = node.get(element) if isinstance(node, dict) else None
            if node is None:
                break
        row.append(cast(node, type_name, name))
    return row


def split_statements(text):
    """The statements of an SQL file, split where sqlite3 says one is complete."""
    statements, start = [], 0
    for position, char in enumerate(text):
        if char == ";" and sqlite3.complete_statement(text[start:position + 1]):
            statement = text[start:position + 1].strip()
            if statement:
                statements.append(statement)
            start = position + 1
    return statements


def read_sql(path):
    with open(path, encoding="utf-8") as f:
        return split_statements(f.read())


def infer_type(cells):
    values = [cell for cell in cells if cell != ""]
    if all(re.fullmatch(r"[+-]?\d+", cell) for cell in values):
        return "INTEGER"
    try:
        for cell in values:
            float(cell)
        return "REAL"
    except ValueError:
        return "TEXT"


def load_seeds(conn, pipeline_dir):
    seeds_dir = os.path.join(pipeline_dir, "seeds")
    if not os.path.isdir(seeds_dir):
        return
    for file_name in sorted(os.listdir(seeds_dir)):
        if not file_name.endswith(".csv"):
            continue
        with open(os.path.join(seeds_dir, file_name), newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        header, body = rows[0], rows[1:]
        types = [infer_type([row[column_idx] for row in body]) for column_idx in range(len(header))]
        table = file_name[:-4]
        conn.execute(f'drop table if exists "{table}"')
        conn.execute(f'create table "{table}" ({", ".join(f"{chr(34)}{h}{chr(34)} {t}" for h, t in zip(header, types))})')
        converters = {"INTEGER": int, "REAL": float, "TEXT": str}
        conn.executemany(
            f'insert into "{table}" values ({", ".join("?" * len(header))})',
            [[None if cell == "" else converters[t](cell) for cell, t in zip(row, types)] for row in body])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", required=True, help="pipeline directory")
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--db", required=True, help="database to create (must not exist)")
    parser.add_argument("--group", help="consumer group (default: pipeline.conf's)")
    parser.add_argument("--max-messages", type=int, help="cap per batch (default: pipeline.conf's)")
    parser.add_argument("--no-steps", action="store_true", help="stage only")
    parser.add_argument("--idle-timeout", type=float, default=30, help="fail when nothing arrives for this long")
    args = parser.parse_args()

    started = time.perf_counter()
    config = load_config(args.pipeline)
    max_messages = args.max_messages or config["max_messages"]
    columns = config["columns"]
    topic = config["topic"]
    if os.path.exists(args.db):
        sys.exit(f"python_baseline: {args.db} exists; give a fresh database path")

    conn = sqlite3.connect(args.db, isolation_level=None)  # explicit BEGIN/COMMIT
    conn.execute("pragma journal_mode=wal")
    conn.execute("pragma synchronous=normal")
    names = [name for name, _, _ in columns]
    metadata = ["_kafka_topic", "_kafka_partition", "_kafka_offset", "_kafka_timestamp", "_kafka_key", "_kafka_value"]
    affinity = {"TEXT": "TEXT", "JSON": "TEXT", "INTEGER": "INTEGER", "BOOLEAN": "INTEGER", "REAL": "REAL"}
    conn.execute("begin immediate")
    conn.execute(f"create table {STAGING} (" +
                 ", ".join([f'"{name}" {affinity[t]}' for name, t, _ in columns] +
                           ["_kafka_topic TEXT", "_kafka_partition INTEGER", "_kafka_offset INTEGER",
                            "_kafka_timestamp INTEGER", "_kafka_key TEXT", "_kafka_value TEXT",
                            "_run_id INTEGER"]) + ")")
    conn.execute("create view batch as select " + ", ".join([f'"{n}"' for n in names] + metadata) + f" from {STAGING}")
    conn.execute(f"create table {QUARANTINE} (topic, partition, offset, timestamp, key, value, error, run_id)")
    conn.execute(f"create table {OFFSETS} (topic text, partition integer, next_offset integer, "
                 "primary key (topic, partition))")
    schema = os.path.join(args.pipeline, "schema.sql")
    if os.path.exists(schema):
        for statement in read_sql(schema):
            conn.execute(statement)
    load_seeds(conn, args.pipeline)
    conn.execute("commit")
    steps = []
    steps_dir = os.path.join(args.pipeline, "steps")
    if not args.no_steps and os.path.isdir(steps_dir):
        for file_name in sorted(os.listdir(steps_dir)):
            if file_name.endswith(".sql"):
                steps.extend(read_sql(os.path.join(steps_dir, file_name)))
    insert = f"insert into {STAGING} values ({', '.join('?' * (len(columns) + 7))})"
    quarantine = f"insert into {QUARANTINE} values (?, ?, ?, ?, ?, ?, ?, ?)"
    store_offset = (f"insert into {OFFSETS} values (?, ?, ?) "
                    "on conflict (topic, partition) do update set next_offset = excluded.next_offset")

    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": args.group or config["group"],
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
    })
    try:
        metadata_topics = consumer.list_topics(topic, timeout=30).topics
        if topic not in metadata_topics or metadata_topics[topic].error is not None:
            sys.exit(f"python_baseline: no topic {topic}")
        partitions = sorted(metadata_topics[topic].partitions)
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=30)
        position, end = {}, {}
        for tp in committed:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=30, cached=False)
            position[tp.partition] = tp.offset if tp.offset >= 0 else low
            end[tp.partition] = high
        consumer.assign([TopicPartition(topic, p, position[p]) for p in partitions])

        totals = {"events": 0, "staged": 0, "quarantined": 0, "batches": 0,
                  "fetch_ms": 0.0, "stage_ms": 0.0, "steps_ms": 0.0, "commit_ms": 0.0,
                  "first_fetch_at": time.time()}  # epoch seconds: where start-up ends
        last_progress = time.monotonic()
        while True:
            remaining = sum(max(0, end[p] - position[p]) for p in partitions)
            if remaining == 0:
                break
            fetch_start = time.perf_counter()
            # Asking for no more than what is left returns as soon as it is there.
            messages = consumer.consume(num_messages=min(max_messages, remaining), timeout=config["max_wait"])
            stage_start = time.perf_counter()
            if not messages:
                if time.monotonic() - last_progress > args.idle_timeout:
                    sys.exit(f"python_baseline: nothing arrived for {args.idle_timeout:.0f}s with {remaining} "
                             "messages left")
                continue
            last_progress = time.monotonic()
            run_id = totals["batches"] + 1
            rows, bad, next_offsets = [], [], {}
            for message in messages:
                if message.error():
                    raise KafkaException(message.error())
                partition, offset = message.partition(), message.offset()
                next_offsets[partition] = offset + 1
                ts_type, ts = message.timestamp()
                timestamp = None if ts_type == TIMESTAMP_NOT_AVAILABLE or ts < 0 else ts
                key = message.key()
                key = key.decode("utf-8", "replace") if key is not None else None
                raw = message.value()
                value = raw.decode("utf-8", "replace") if raw is not None else None
                try:
                    row = to_row(value, columns)
                except BadMessage as error:
                    bad.append((topic, partition, offset, timestamp, key, value, str(error), run_id))
                    continue
                row.extend((topic, partition, offset, timestamp, key, value, run_id))
                rows.append(row)
            conn.execute("begin immediate")
            conn.execute(f"delete from {STAGING}")
            conn.executemany(insert, rows)
            if bad:
                conn.executemany(quarantine, bad)
            steps_start = time.perf_counter()
            for statement in steps:
                conn.execute(statement)
            commit_start = time.perf_counter()
            conn.executemany(store_offset, [(topic, p, o) for p, o in next_offsets.items()])
            conn.execute("commit")
            consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in next_offsets.items()],
                            asynchronous=False)
            done = time.perf_counter()
            position.update(next_offsets)
            totals["events"] += len(messages)
            totals["staged"] += len(rows)
            totals["quarantined"] += len(bad)
            totals["batches"] += 1
            totals["fetch_ms"] += (stage_start - fetch_start) * 1000
            totals["stage_ms"] += (steps_start - stage_start) * 1000
            totals["steps_ms"] += (commit_start - steps_start) * 1000
            totals["commit_ms"] += (done - commit_start) * 1000
    except KafkaException as error:
        sys.exit(f"python_baseline: {error}")
    finally:
        consumer.close()
        conn.close()
    seconds = time.perf_counter() - started
    totals["seconds"] = seconds
    totals["events_per_s"] = totals["events"] / seconds if seconds > 0 else 0
    print(f"python_baseline: {totals['events']} events ({totals['staged']} staged, {totals['quarantined']} "
          f"quarantined) in {totals['batches']} batches, {seconds:.2f} s = {totals['events_per_s']:.0f} events/s",
          file=sys.stderr)
    print(json.dumps(totals))


if __name__ == "__main__":
    main()
