#!/usr/bin/env python3
"""Generates order events for the example pipeline, one JSON object per line.

Deterministic for a given --seed. About half the events update an order seen
before (status moves on, the amount may change); amounts are sometimes
strings ("42.50"); some events have no status; currencies are sometimes
lower-case; a few customers and products are unknown to the seeds; a few
events arrive late (an older version of an order, with an older event_time);
and a small share is malformed (amount "n/a", or not JSON at all) to show
the quarantine. Uses only the standard library.

    python3 pipelines/orders/generate.py --count 10000 --seed 42 > orders.jsonl
"""
import argparse
import datetime
import json
import random
import sys

STATUSES = ["created", "paid", "shipped", "delivered"]
CURRENCIES = ["EUR", "USD", "GBP"]


def iso(ms):
    t = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def generate(count, seed, start_ms, bad_rate, late_rate):
    rng = random.Random(seed)
    orders = {}  # order_id -> dict of its latest version
    order_ids = []
    now = start_ms
    for _ in range(count):
        now += rng.randint(0, 1500)
        roll = rng.random()
        if roll < bad_rate:
            if rng.random() < 0.5:
                yield '{"order_id": "O-broken", "amount": '  # truncated JSON
            else:
                oid = f"O{rng.randint(1, 10**7):08d}"
                yield json.dumps({"order_id": oid, "customer_id": 1, "product_id": "P001",
                                  "amount": "n/a", "currency": "EUR", "status": "created",
                                  "event_time": iso(now)})
            continue
        if order_ids and roll < bad_rate + late_rate:
            # A late event: an older version of a known order.
            oid = rng.choice(order_ids)
            event = dict(orders[oid])
            event["status"] = "created"
            event["event_time"] = iso(max(start_ms, event["_ms"] - rng.randint(1000, 60000)))
            event.pop("_ms")
            yield json.dumps(event)
            continue
        if order_ids and rng.random() < 0.5:
            oid = rng.choice(order_ids)
            event = dict(orders[oid])
            step = STATUSES.index(event["status"]) if event["status"] in STATUSES else 0
            event["status"] = "cancelled" if rng.random() < 0.05 else STATUSES[min(step + 1, len(STATUSES) - 1)]
            if rng.random() < 0.2:
                event["amount"] = round(rng.uniform(5, 500), 2)
        else:
            oid = f"O{len(order_ids) + 1:08d}"
            order_ids.append(oid)
            customer = rng.randint(1, 50) if rng.random() < 0.97 else rng.randint(51, 60)
            product = rng.randint(1, 20) if rng.random() < 0.97 else rng.randint(21, 25)
            event = {"order_id": oid, "customer_id": customer, "product_id": f"P{product:03d}",
                     "amount": round(rng.uniform(5, 500), 2), "currency": rng.choice(CURRENCIES),
                     "status": "created"}
        event["event_time"] = iso(now)
        event["_ms"] = now
        orders[oid] = dict(event)
        out = dict(event)
        out.pop("_ms")
        if rng.random() < 0.2:
            out["amount"] = f"{out['amount']:.2f}"
        if rng.random() < 0.3:
            out["currency"] = out["currency"].lower()
        if rng.random() < 0.05:
            out.pop("status")
        yield json.dumps(out, separators=(",", ":"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10000, help="number of events (default 10000)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--start", default="2026-11-21T08:00:00Z", help="event_time of the first event")
    parser.add_argument("--bad-rate", type=float, default=0.005, help="share of malformed events")
    parser.add_argument("--late-rate", type=float, default=0.02, help="share of late (older) events")
    args = parser.parse_args()
    start = datetime.datetime.fromisoformat(args.start.replace("Z", "+00:00"))
    start_ms = int(start.timestamp() * 1000)
    out = sys.stdout
    for line in generate(args.count, args.seed, start_ms, args.bad_rate, args.late_rate):
        out.write(line + "\n")


if __name__ == "__main__":
    main()
