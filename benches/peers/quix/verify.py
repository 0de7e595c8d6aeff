"""End-to-end check of the Quix Streams peer against a running Kafka broker.

Creates uniquely named input/output topics, produces a deterministic dataset of
meter readings in event-time order (plus a share of negative readings that must
be dropped, and one sentinel record per partition that moves every partition's
event time past the last window's end + grace), runs the peer through run.sh
until the consumer group's committed offsets reach the end offsets, stops it with
SIGTERM, reads the output topic with isolation.level=read_committed and compares
every (meter, hour) result with the values computed here from the produced data.

Reports the throughput (input records / seconds from process start to all offsets
committed) and the peak RSS (VmHWM) of the peer process.

With --interrupt term|kill the peer is stopped once a third of the input is
committed and started again on an empty state directory, so its window state
must come back from the changelog topic; with SIGKILL under at-least-once,
repeated results are accepted if identical.

Usage:
  .venv/bin/python verify.py --bootstrap HOST:PORT [--guarantee exactly-once]
      [--partitions 4] [--meters 200] [--hours 3] [--readings-per-hour 12]
      [--negative-every 50] [--interrupt none|term|kill] [--keep-topics]
Exit status 0 when every check passed.
"""

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

HERE = os.path.dirname(os.path.abspath(__file__))
HOUR_MS = 3_600_000
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY_MS = 86_400_000


def splitmix64(x: int) -> int:
    mask = (1 << 64) - 1
    x = (x + 0x9E3779B97F4A7C15) & mask
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def readings(meters: int, hours: int, per_hour: int, negative_every: int):
    """Yields (meter_id, ts, kwh) in event-time order.

    kwh has three decimals in [0, 2); about one reading in `negative_every`
    (when > 0, chosen by hash) is negative and must be ignored by the job.
    """
    step = HOUR_MS // per_hour
    for instant in range(hours * per_hour):
        ts = START_MS + instant * step
        for m in range(meters):
            r = splitmix64((m << 32) ^ instant ^ 0x5EED)
            kwh = (r % 2000) / 1000.0
            if negative_every and (r >> 32) % negative_every == 0:
                kwh = -kwh - 0.001
            yield f"meter-{m:05d}", ts, kwh


def create_topics(admin: AdminClient, names, partitions: int) -> None:
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names]
    )
    for f in futures.values():
        f.result()


def delete_topics(admin: AdminClient, prefix: str) -> None:
    names = [t for t in admin.list_topics(timeout=10).topics if prefix in t]
    if names:
        for f in admin.delete_topics(names).values():
            try:
                f.result()
            except Exception:
                pass


def produce(bootstrap, topic, partitions, meters, hours, per_hour, negative_every):
    """Produces the dataset and the sentinels; returns (count, expected results)."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 20,
            "compression.type": "none",
        }
    )
    expected = {}
    count = 0
    max_ts = 0
    for meter, ts, kwh in readings(meters, hours, per_hour, negative_every):
        value = json.dumps({"meter_id": meter, "ts": ts, "kwh": kwh}).encode()
        while True:
            try:
                producer.produce(topic, key=meter.encode(), value=value)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
        count += 1
        max_ts = max(max_ts, ts)
        if kwh < 0:
            continue
        start = ts - ts % HOUR_MS
        agg = expected.get((meter, start))
        if agg is None:
            expected[(meter, start)] = [1, kwh, kwh, kwh]
        else:
            agg[0] += 1
            agg[1] += kwh
            if kwh < agg[2]:
                agg[2] = kwh
            if kwh > agg[3]:
                agg[3] = kwh
    sentinel_ts = max_ts + DAY_MS
    for p in range(partitions):
        key = f"sentinel-{p}"
        value = json.dumps({"meter_id": key, "ts": sentinel_ts, "kwh": 0.0}).encode()
        producer.produce(topic, key=key.encode(), value=value, partition=p)
        count += 1
    remaining = producer.flush(60)
    if remaining:
        raise RuntimeError(f"{remaining} records were not delivered")
    return count, expected


def end_offsets(bootstrap, topic, partitions):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4()}"})
    try:
        return {
            p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        }
    finally:
        c.close()


def committed_offsets(consumer, topic, partitions):
    tps = consumer.committed(
        [TopicPartition(topic, p) for p in range(partitions)], timeout=10
    )
    return {tp.partition: tp.offset for tp in tps}


def vm_hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return -1.0


def read_output(bootstrap, topic):
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"verify-{uuid.uuid4()}",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    meta = c.list_topics(topic, timeout=10).topics[topic]
    parts = sorted(meta.partitions)
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    at_eof = set()
    records = []
    deadline = time.time() + 120
    while len(at_eof) < len(parts) and time.time() < deadline:
        for msg in c.consume(10000, timeout=1.0):
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    at_eof.add(msg.partition())
                    continue
                raise RuntimeError(msg.error())
            at_eof.discard(msg.partition())
            records.append((msg.key(), msg.value()))
    c.close()
    if len(at_eof) < len(parts):
        raise RuntimeError("timed out reading the output topic")
    return records


def compare(records, expected, allow_identical_duplicates=False):
    problems = []
    duplicates = 0
    seen = {}
    sentinel = 0
    for key, value in records:
        key = key.decode() if key is not None else None
        v = json.loads(value)
        if key is not None and key.startswith("sentinel-"):
            sentinel += 1
            continue
        if key != v.get("meter_id"):
            problems.append(f"key {key!r} != meter_id {v.get('meter_id')!r}")
        wk = (v["meter_id"], v["window_start_ms"])
        if wk in seen:
            duplicates += 1
            if not (allow_identical_duplicates and seen[wk] == v):
                problems.append(f"duplicate result for {wk}")
            continue
        seen[wk] = v
        if v["window_end_ms"] != v["window_start_ms"] + HOUR_MS:
            problems.append(f"bad window end for {wk}: {v['window_end_ms']}")
        exp = expected.get(wk)
        if exp is None:
            problems.append(f"unexpected result {wk}")
            continue
        count, total, lo, hi = exp
        if v["count"] != count:
            problems.append(f"{wk}: count {v['count']} != {count}")
        if not math.isclose(v["avg"], total / count, rel_tol=0, abs_tol=1e-9):
            problems.append(f"{wk}: avg {v['avg']} != {total / count}")
        if v["min"] != lo:
            problems.append(f"{wk}: min {v['min']} != {lo}")
        if v["max"] != hi:
            problems.append(f"{wk}: max {v['max']} != {hi}")
        for field, kind in (("avg", float), ("min", float), ("max", float), ("count", int)):
            if type(v[field]) is not kind:
                problems.append(f"{wk}: {field} is {type(v[field]).__name__}")
    missing = set(expected) - set(seen)
    for wk in sorted(missing)[:20]:
        problems.append(f"missing result {wk}")
    if len(missing) > 20:
        problems.append(f"... {len(missing)} missing in total")
    return problems, len(seen), sentinel, duplicates


class Peer:
    """One run of the peer through run.sh, with its stdout watched for RUNNING."""

    def __init__(self, env):
        self.started = time.time()
        self.running_at = None
        self.proc = subprocess.Popen(
            [os.path.join(HERE, "run.sh")], env=env, stdout=subprocess.PIPE, text=True
        )
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self):
        for line in self.proc.stdout:
            sys.stdout.write(f"  [peer stdout] {line}")
            if line.strip() == "quix peer: RUNNING" and self.running_at is None:
                self.running_at = time.time()

    def hwm_kb(self):
        return vm_hwm_kb(self.proc.pid)

    def stop(self, sig=signal.SIGTERM, timeout=60):
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return f"killed after {timeout}s"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", default=os.environ.get("BOOTSTRAP"))
    ap.add_argument("--guarantee", default="at-least-once")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--meters", type=int, default=200)
    ap.add_argument("--hours", type=int, default=3)
    ap.add_argument("--readings-per-hour", type=int, default=12)
    ap.add_argument("--negative-every", type=int, default=50)
    ap.add_argument("--commit-interval", default="1.0")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument(
        "--interrupt", choices=("none", "term", "kill"), default="none",
        help="stop the peer with SIGTERM or SIGKILL once it has committed some "
        "progress, then start it again on an empty state dir (state restored "
        "from the changelog topic)",
    )
    ap.add_argument("--keep-topics", action="store_true")
    args = ap.parse_args()
    if not args.bootstrap:
        ap.error("--bootstrap (or BOOTSTRAP) is required")

    run_id = uuid.uuid4().hex[:8]
    prefix = f"quix-peer-dev-{run_id}"
    in_topic, out_topic, group = f"{prefix}-in", f"{prefix}-out", f"{prefix}-group"
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    create_topics(admin, [in_topic, out_topic], args.partitions)

    t0 = time.time()
    n_in, expected = produce(
        args.bootstrap, in_topic, args.partitions, args.meters, args.hours,
        args.readings_per_hour, args.negative_every,
    )
    print(f"produced {n_in} records to {in_topic} in {time.time() - t0:.1f}s; "
          f"{len(expected)} expected results", flush=True)
    ends = end_offsets(args.bootstrap, in_topic, args.partitions)
    total_end = sum(ends.values())

    state_root = tempfile.mkdtemp(prefix=f"{prefix}-state-")
    env = dict(os.environ)
    env.update(
        BOOTSTRAP=args.bootstrap, INPUT_TOPIC=in_topic, OUTPUT_TOPIC=out_topic,
        CONSUMER_GROUP=group, GUARANTEE=args.guarantee,
        COMMIT_INTERVAL_S=args.commit_interval,
        STATE_DIR=os.path.join(state_root, "run-1"),
    )
    ok = True
    peer = Peer(env)
    first_start = peer.started
    hwm = -1
    rc = None
    done_at = None
    cpu = -1.0
    interrupted = args.interrupt == "none"
    probe = Consumer({"bootstrap.servers": args.bootstrap, "group.id": group})
    try:
        while time.time() - first_start < args.timeout:
            if peer.proc.poll() is not None:
                print(f"FAIL: peer exited early with {peer.proc.returncode}")
                return 1
            hwm = max(hwm, peer.hwm_kb())
            committed = committed_offsets(probe, in_topic, args.partitions)
            if all(committed[p] >= ends[p] for p in ends):
                done_at = time.time()
                cpu = cpu_seconds(peer.proc.pid)
                break
            progress = sum(max(o, 0) for o in committed.values())
            if not interrupted and progress >= total_end // 3:
                interrupted = True
                sig = signal.SIGTERM if args.interrupt == "term" else signal.SIGKILL
                rc1 = peer.stop(sig)
                print(f"interrupted the peer with {sig.name} at {progress}/{total_end} "
                      f"committed; exit status {rc1}", flush=True)
                if sig == signal.SIGTERM and rc1 != 0:
                    print(f"FAIL: exit status after SIGTERM: {rc1}")
                    ok = False
                env["STATE_DIR"] = os.path.join(state_root, "run-2")
                peer = Peer(env)
                continue
            time.sleep(0.2)
    finally:
        probe.close()
        hwm = max(hwm, peer.hwm_kb())
        rc = peer.stop()
        shutil.rmtree(state_root, ignore_errors=True)

    if done_at is None:
        print("FAIL: committed offsets never reached the end offsets")
        ok = False
    if rc != 0:
        print(f"FAIL: exit status after SIGTERM: {rc}")
        ok = False
    if peer.running_at is None:
        print("FAIL: no RUNNING line")
        ok = False

    records = read_output(args.bootstrap, out_topic)
    # At-least-once may repeat results after a crash; they must then be identical.
    allow_dups = args.guarantee == "at-least-once" and args.interrupt == "kill"
    problems, n_ok, n_sentinel, n_dups = compare(records, expected, allow_dups)
    for p in problems[:40]:
        print(f"  mismatch: {p}")
    if problems:
        ok = False
    print(f"guarantee={args.guarantee} interrupt={args.interrupt} input={n_in} "
          f"outputs={len(records)} duplicates={n_dups} sentinel-outputs={n_sentinel} "
          f"expected={len(expected)}")
    if done_at is not None and args.interrupt == "none":
        elapsed = done_at - first_start
        line = f"start->all committed: {elapsed:.2f}s = {n_in / elapsed:,.0f} records/s"
        if peer.running_at is not None:
            since = done_at - peer.running_at
            line += f"; RUNNING->all committed: {since:.2f}s = {n_in / since:,.0f} records/s"
        print(line)
        print(f"peak RSS (VmHWM): {hwm / 1024:.1f} MiB; CPU time at that point: "
              f"{cpu:.1f}s; exit status {rc}")
    if not args.keep_topics:
        delete_topics(admin, prefix)
    print("PASS" if ok else "FAIL", f"({n_ok} results checked, {len(problems)} problems)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
