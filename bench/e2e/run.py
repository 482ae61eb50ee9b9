#!/usr/bin/python3
"""End-to-end benchmark of tagrelay against ceilings and peers, in one run.

    bench/run [options]        (builds, installs the peers, then runs this)

Scenarios (docs/benchmarks.md explains the method):
  1  steady load: F devices x R tags at 1 s, for tagrelay, collectd, Node-RED
  2  the highest sustainable tags/s of tagrelay before loss or lag
  3  a broker outage at the steady load, then the drain (peers: a shorter one)
  4  ceilings and the RTU line: raw SQLite, raw libmodbus, raw libmosquitto
     QoS 1 (bench/*_bench), and an RTU line at 19200 and 115200 baud

Medians over --runs runs. Prints the tables and writes them, with the machine,
the versions and the method, to --out (docs/benchmarks.md by default).
Ratios are the output: nothing here asserts a timing.

Runs under Debian's /usr/bin/python3 (python3-paho-mqtt, python3-jsonschema).
"""

import argparse
import datetime
import json
import os
import platform
import queue
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, HERE)
import harness  # noqa: E402
import receiver as rx  # noqa: E402
import reference_receiver  # noqa: E402
import subjects  # noqa: E402
import report  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
STATUS_BACKLOG_EVERY_S = 5  # how often tagrelay's status recomputes the backlog (supervisor.cpp)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- /proc ------------------------------------------------------------------

def cpu_seconds(pid):
    """utime + stime of a process (all its threads), in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def status_kib(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_parts(pid):
    """Resident memory of a process by kind, in MB (/proc/PID/smaps): the main
    heap, other malloc arenas (anonymous maps on a 64 MiB boundary), thread
    stacks (8 MiB anonymous maps), other anonymous memory, and mapped files
    by file name (the largest few; the rest together)."""
    parts, files = {}, {}
    name = None
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                head = line.split()
                if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                    lo, hi = (int(x, 16) for x in head[0].split("-"))
                    path = head[5] if len(head) > 5 else ""
                    if path == "[heap]":
                        name = "heap"
                    elif path.startswith("/"):
                        name = "file:" + os.path.basename(path)
                    elif path:
                        name = "other anonymous"
                    elif hi - lo in (8 << 20, (8 << 20) - 4096):
                        name = "thread stacks"
                    elif lo % (64 << 20) == 0:
                        name = "malloc arenas"
                    else:
                        name = "other anonymous"
                elif line.startswith("Rss:") and name:
                    kb = int(head[1])
                    if name.startswith("file:"):
                        files[name[5:]] = files.get(name[5:], 0) + kb
                    else:
                        parts[name] = parts.get(name, 0) + kb
    except OSError:
        return None
    top = sorted(files.items(), key=lambda kv: -kv[1])
    out = {k: v / 1024.0 for k, v in parts.items()}
    out["files"] = {k: v / 1024.0 for k, v in top[:4]}
    out["files"]["other files"] = sum(v for _k, v in top[4:]) / 1024.0
    return out


def machine_busy_seconds():
    """CPU seconds all cores spent busy since boot (/proc/stat), all processes."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


class CpuMeter:
    """CPU of several processes between two points in time, as % of one core,
    and under "machine" the whole machine's busy time in the same unit."""

    def __init__(self, pids):
        self.pids = {k: v for k, v in pids.items() if v}
        self.t0 = time.monotonic()
        self.m0 = machine_busy_seconds()
        self.c0 = {k: cpu_seconds(p) for k, p in self.pids.items()}

    def read(self):
        dt = time.monotonic() - self.t0
        out = {"machine": {"cpu_s": machine_busy_seconds() - self.m0}}
        out["machine"]["pct"] = 100.0 * out["machine"]["cpu_s"] / dt
        for k, p in self.pids.items():
            c1 = cpu_seconds(p)
            if c1 is not None and self.c0[k] is not None:
                out[k] = {"cpu_s": c1 - self.c0[k], "pct": 100.0 * (c1 - self.c0[k]) / dt}
        return dt, out


def other_load_pct(cpu):
    """% of one core that processes outside the bench used (other work on the machine)."""
    ours = sum(v["pct"] for k, v in cpu.items() if k != "machine")
    return max(cpu["machine"]["pct"] - ours, 0.0)


# --- the fleet simulator ----------------------------------------------------

class Fleet:
    count = 0  # fleets started so far: each one's devices get names of their own

    def __init__(self, binary, ports, units, registers):
        self.units = units
        self.registers = registers
        self.proc = subprocess.Popen([binary, "--ports", str(ports), "--units", str(units),
                                      "--registers", str(registers)],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().split()
        if not line or line[0] != "ports":
            raise RuntimeError(f"fleet simulator did not start: {line!r}")
        self.endpoints = [(int(p), u) for p in line[1:] for u in range(1, units + 1)]
        Fleet.count += 1
        self.devices = [subjects.device_name(i, Fleet.count) for i in range(len(self.endpoints))]
        self.lines = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)

    @property
    def pid(self):
        return self.proc.pid

    def stats(self):
        """Totals since start and {device: value of its holding register 0}."""
        while not self.lines.empty():
            self.lines.get_nowait()
        self.proc.send_signal(signal.SIGUSR1)
        line = self.lines.get(timeout=10)
        fields = dict(kv.split("=", 1) for kv in line.split()[1:])
        values = [int(v) for v in fields.pop("values").split(",")]
        out = {k: int(v) for k, v in fields.items()}
        out["values"] = dict(zip(self.devices, values))
        out["t"] = time.monotonic()
        return out

    def stop(self):
        try:
            harness.stop_process(self.proc)
        finally:
            self.proc.stdout.close()


# --- the bench: PKI, broker, receiver ---------------------------------------

class Bench:
    USERS = ("tagrelay", "collectd", "nodered", "cloud")

    def __init__(self, args, bins):
        self.args = args
        self.bins = bins
        self.node_red_dir = args.node_red_dir
        self.work = harness.Workdir(prefix="tagrelay-e2e-")
        self.pki = harness.Pki(self.work)
        cert, key = self.pki.issue("broker", ("localhost", "127.0.0.1"))
        self.passwords = {u: secrets.token_hex(16) for u in self.USERS}
        users = {("gw-bench" if u == "tagrelay" else u): p for u, p in self.passwords.items()}
        acl = ("user gw-bench\ntopic readwrite tagrelay/v1/gw-bench/#\n\n"
               "user collectd\ntopic readwrite bench/collectd/#\n\n"
               "user nodered\ntopic readwrite bench/nodered/#\n\n"
               "user cloud\ntopic read tagrelay/#\ntopic read bench/#\n"
               f"topic write {rx.SYNC_TOPIC}#\n")
        self.broker = harness.Broker(self.work, users, acl=acl,
                                     tls={"cafile": self.pki.cert, "certfile": cert,
                                          "keyfile": key})
        # The publishers use the TLS listener; the receiver a plain one on
        # loopback, so that its own cost stays small. Queues big enough that
        # the broker never drops a message for a slow receiver.
        self.plain_port = harness.free_port()
        with open(self.broker.conf, "a") as f:
            f.write(f"max_queued_messages 10000000\nmax_inflight_messages 100\n"
                    f"listener {self.plain_port} 127.0.0.1\n")
        self.keys = {}
        self.keyring = reference_receiver.KeyRing()
        self.receiver = rx.BenchReceiver(self.keyring, schema_every=args.schema_every)
        self.sub = None

    def secret(self, user):
        return self.passwords[user]

    def secret_file(self, user):
        return self.work.file(f"{user}.secret", self.passwords[user] + "\n")

    def device_key_file(self, device):
        if device not in self.keys:
            key = secrets.token_hex(24)
            self.keys[device] = self.work.file(f"{device}.key", key + "\n")
            self.keyring.add(subjects.GATEWAY, device, key)
        return self.keys[device]

    def start(self):
        self.broker.start()
        harness.wait_port(self.plain_port)
        self.sub = rx.Subscription(self.receiver, self.plain_port, "cloud", self.passwords["cloud"],
                                   ["tagrelay/v1/#", "bench/#"])
        if not self.sub.subscribed.wait(10):
            raise RuntimeError("the receiver did not subscribe")

    def close(self):
        if self.sub:
            self.sub.close()
        self.broker.stop()
        self.work.close()


# --- one measured run ---------------------------------------------------------

def wait_caught_up(receiver, expected, timeout, complete=False, step=0.1):
    """Seconds until the receiver has every expected value, or None on timeout.
    By default "has" means: every register has reached its expected value (the
    subject keeps up; a value skipped on the way counts as lost later). With
    `complete`, every value up to it must have arrived, with no gap: what a
    drain must wait for, since the backlog arrives behind newer live values."""
    start = time.monotonic()
    test = receiver.complete if complete else receiver.caught_up
    while time.monotonic() - start < timeout:
        if test(expected):
            return time.monotonic() - start
        time.sleep(step)
    return None


def expected_last(stats):
    # Register 0 of a device is read first in a poll; the rest of that poll
    # may still be in flight, so every register is owed one value less.
    return {d: v - 1 for d, v in stats["values"].items() if v > 1}


def sync_receiver(bench, timeout=600):
    """Waits until the receiver has taken every message the broker still holds
    for it. A previous subject's tail must not load the machine while the next
    one runs; and the broker keeps what it holds across a restart (persistence),
    so a tail left before an outage comes in during the next drain. Waiting for
    a quiet receiver is not enough: right after a restart it is quiet because it
    has not reconnected yet."""
    t0 = time.monotonic()
    if not bench.sub.sync(timeout):
        log(f"  the receiver still had the broker's queue to take after {timeout} s")
    elif time.monotonic() - t0 > 5:
        log(f"  the receiver took {time.monotonic() - t0:.0f} s to empty the broker's queue")


def start_subject(bench, subject, fleet, poll_ms):
    sync_receiver(bench)
    bench.receiver.clear(fleet.devices)
    subject.start(fleet, poll_ms)


def measure(bench, subject, fleet, poll_ms, warmup, window, settle):
    """Runs `subject` on `fleet`, measures a steady window; returns a dict."""
    start_subject(bench, subject, fleet, poll_ms)
    res = None
    try:
        time.sleep(warmup)
        if not subject.alive():
            raise RuntimeError(f"{subject.name} exited:\n{subject.log_tail()}")
        s0 = fleet.stats()
        meter = CpuMeter({"subject": subject.pid, "broker": bench.broker.proc.pid,
                          "sim": fleet.pid, "receiver": os.getpid()})
        bench.receiver.reset_window()
        time.sleep(window)
        s1 = fleet.stats()
        dt, cpu = meter.read()
        hwm = status_kib(subject.pid, "VmHWM")
        threads = status_kib(subject.pid, "Threads")
        rss_anon = status_kib(subject.pid, "RssAnon")
        rss_file = status_kib(subject.pid, "RssFile")
        parts = rss_parts(subject.pid) if subject.name == "tagrelay" else None
        expected = expected_last(s1)
        lag = wait_caught_up(bench.receiver, expected, settle)
        lost, silent = bench.receiver.loss(expected)
        r = bench.receiver
        interior, tail = r.loss_split(expected)
        tags = s1["registers"] - s0["registers"]
        res = {
            "subject": subject.name, "poll_ms": poll_ms, "window_s": dt,
            "target_tags_s": len(fleet.devices) * fleet.registers * 1000.0 / poll_ms,
            "tags_s": tags / dt, "requests_s": (s1["requests"] - s0["requests"]) / dt,
            "cpu_pct": cpu.get("subject", {}).get("pct"),
            "cpu_us_per_tag": (1e6 * cpu["subject"]["cpu_s"] / tags) if tags and "subject" in cpu
            else None,
            "broker_cpu_pct": cpu.get("broker", {}).get("pct"),
            "sim_cpu_pct": cpu.get("sim", {}).get("pct"),
            "receiver_cpu_pct": cpu.get("receiver", {}).get("pct"),
            "other_load_pct": other_load_pct(cpu),
            "rss_peak_mb": hwm / 1024.0 if hwm else None, "threads": threads,
            "rss_anon_mb": rss_anon / 1024.0 if rss_anon else None,
            "rss_file_mb": rss_file / 1024.0 if rss_file else None, "rss_parts": parts,
            "p50_ms": r.live.percentile(50), "p99_ms": r.live.percentile(99),
            "lag_s": lag, "lost": lost, "lost_interior": interior, "lost_tail": tail,
            "silent_devices": len(silent),
            "rejected": len(r.rejected), "duplicates": r.duplicates,
            "seq_gaps": r.seq_gaps(), "messages": r.messages, "values": r.values,
            "stray_messages": r.stray,
        }
        if r.rejected:
            log(f"  rejected: {r.rejected[:3]}")
        return res
    finally:
        subject.stop()
        if res is not None:
            res["subject_says"] = loss_lines(subject)


def loss_lines(subject):
    """The subject's own words about dropped or evicted data, if any (its log)."""
    try:
        with open(subject.log, errors="replace") as f:
            hits = [l.strip() for l in f if re.search(r"dropped|evicted|queue full", l)]
    except OSError:
        return ""
    return f"{len(hits)} line(s), last: {hits[-1]}" if hits else ""


def make_subject(bench, name, **kw):
    return {"tagrelay": subjects.Tagrelay, "collectd": subjects.Collectd,
            "nodered": subjects.NodeRed}[name](bench, name, **kw)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(runs):
    """Medians of every numeric field over runs; sums of the loss counters."""
    out = {"runs": len(runs)}
    for k in runs[0]:
        vals = [r[k] for r in runs]
        if k in ("lost", "lost_interior", "lost_tail", "silent_devices", "rejected", "seq_gaps",
                 "duplicates", "stray_messages", "unflagged_before_return"):
            out[k] = sum(v or 0 for v in vals)
        elif all(isinstance(v, (int, float)) or v is None for v in vals):
            out[k] = median(vals)
        else:
            out[k] = vals[0]
    out["lag_timeouts"] = sum(1 for r in runs if r.get("lag_s", 0) is None)
    return out


# --- scenarios ----------------------------------------------------------------

def scenario_steady(bench, args):
    results = {}
    for name in args.subjects:
        runs = []
        for i in range(args.runs):
            fleet = Fleet(bench.bins["fleet"], args.ports, args.units, args.registers)
            try:
                r = measure(bench, make_subject(bench, name), fleet, args.poll_ms, args.warmup,
                            args.window, args.settle)
            except RuntimeError as e:  # a subject that does not start: say so, go on
                log(f"  steady {name} run {i + 1}: {e}")
                results.setdefault("failed", {})[name] = str(e).splitlines()[0]
                break
            finally:
                fleet.stop()
            log(f"  steady {name} run {i + 1}/{args.runs}: {r['tags_s']:.0f} tags/s, "
                f"cpu {r['cpu_pct']:.2f} %, rss {r['rss_peak_mb'] or 0:.1f} MB, "
                f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, lost {r['lost']} "
                f"({r['lost_interior']} between values received, {r['lost_tail']} at the end), "
                f"caught up {r['lag_s']} s, receiver cpu {r['receiver_cpu_pct']:.1f} %, "
                f"other load {r['other_load_pct']:.0f} %")
            runs.append(r)
        if runs:
            results[name] = summarize(runs)
    return results


def scenario_max(bench, args):
    """Steps the poll interval down until a step shows loss or lag."""
    maxima, steps_seen = [], []
    for i in range(args.ramp_runs):
        best = None
        for poll_ms in args.ramp:
            fleet = Fleet(bench.bins["fleet"], args.ports, args.units, args.registers)
            try:
                r = measure(bench, make_subject(bench, "tagrelay"), fleet, poll_ms,
                            args.ramp_warmup, args.ramp_window, args.settle)
            finally:
                fleet.stop()
            why = []
            if r["lost"] or r["silent_devices"]:
                why.append(f"lost {r['lost']} ({r['lost_interior']} between values received, "
                           f"{r['lost_tail']} never arrived)")
            if r["tags_s"] < 0.95 * r["target_tags_s"]:
                why.append(f"acquired {r['tags_s']:.0f} of {r['target_tags_s']:.0f} tags/s")
            if r["lag_s"] is None:
                why.append(f"not caught up {args.settle} s after the window")
            if r["p99_ms"] is None or r["p99_ms"] > args.max_p99_ms:
                why.append(f"p99 latency {r['p99_ms']} ms")
            r["limited_by"] = "; ".join(why)
            r["run"] = i + 1
            steps_seen.append(r)
            log(f"  max run {i + 1}: poll {poll_ms} ms -> {r['tags_s']:.0f} tags/s, "
                f"cpu {r['cpu_pct']:.1f} %, sim {r['sim_cpu_pct']:.1f} %, "
                f"receiver {r['receiver_cpu_pct']:.1f} %, broker {r['broker_cpu_pct']:.1f} %, "
                f"other load {r['other_load_pct']:.0f} %, "
                f"p99 {r['p99_ms']} ms"
                f"{', FAILS: ' + r['limited_by'] if why else ''}")
            if why:
                if r["subject_says"]:
                    why.append(f"tagrelay's log: {r['subject_says']}")
                    r["limited_by"] = "; ".join(why)
                log(f"    {r['limited_by']}")
                break
            best = r
        maxima.append(best)
    passed = [m for m in maxima if m]
    return {"runs": len(maxima),
            "max_tags_s": median([m["tags_s"] for m in passed]) if passed else None,
            "cpu_pct_at_max": median([m["cpu_pct"] for m in passed]) if passed else None,
            "rss_at_max": median([m["rss_peak_mb"] for m in passed]) if passed else None,
            "sim_cpu_at_max": median([m["sim_cpu_pct"] for m in passed]) if passed else None,
            "steps": steps_seen}


def measure_bytes_per_reading(bench, args):
    """The store's bytes on disk per reading, with the broker down."""
    sync_receiver(bench)  # nothing of the previous scenario stays queued across the restart
    bench.broker.stop()
    fleet = Fleet(bench.bins["fleet"], args.ports, args.units, args.registers)
    subject = subjects.Tagrelay(bench, "tagrelay-bpr", max_bytes="16GiB")
    try:
        subject.start(fleet, args.poll_ms)
        time.sleep(args.warmup)
        s0 = fleet.stats()
        b0 = subject.store_bytes()
        time.sleep(args.bpr_window)
        s1 = fleet.stats()
        b1 = subject.store_bytes()
    finally:
        subject.stop()
        fleet.stop()
        bench.broker.start()
    readings = s1["registers"] - s0["registers"]
    return max(b1 - b0, 0) / readings if readings else None


def outage_run(bench, subject, fleet, args, outage_s):
    """Steady, broker stopped for outage_s, broker back: the drain."""
    r = bench.receiver
    start_subject(bench, subject, fleet, args.poll_ms)
    res = None
    try:
        time.sleep(args.warmup)
        meter = CpuMeter({"subject": subject.pid})
        bench.broker.stop()
        s_down = fleet.stats()
        log(f"  {subject.name}: broker stopped for {outage_s:.0f} s")
        time.sleep(outage_s)
        s_up = fleet.stats()
        _, cpu_outage = meter.read()
        hwm_outage = status_kib(subject.pid, "VmHWM")
        store_mb = subject.store_bytes() / 1e6 if hasattr(subject, "store_bytes") else None
        bench.broker.start()
        t_up = time.monotonic()
        wall_up = time.time()
        with r.lock:
            hist_bytes0, hist_values0 = r.historical_bytes, r.historical_values
        # Live values are those acquired since the broker's return; what came
        # unflagged from before it is counted apart.
        r.reset_window(live_since_ms=wall_up * 1000.0)
        meter = CpuMeter({"subject": subject.pid, "receiver": os.getpid(),
                          "broker": bench.broker.proc.pid})
        backlog = s_up["registers"] - s_down["registers"]
        log(f"  {subject.name}: broker back; {backlog} readings acquired during the outage")
        # A subject with a store must deliver all of the outage; one without
        # cannot, and its drain ends when its live values pass the outage.
        full = subject.store_and_forward
        drain = wait_caught_up(r, expected_last(s_up), args.drain_timeout_factor * outage_s + 60,
                               complete=full, step=0.5)
        _, cpu_drain = meter.read()
        with r.lock:
            hist_bytes = r.historical_bytes - hist_bytes0
            hist_values = r.historical_values - hist_values0
            live, live_before = r.live, r.live_before
            first = r.window_first_arrival
        # The reconnect (the subject's own backoff) and the transfer, apart.
        reconnect = (first / 1000.0 - wall_up) if first else None
        transfer = (drain - reconnect) if drain is not None and reconnect is not None else None
        # after the drain: everything acquired so far must arrive
        s_end = fleet.stats()
        wait_caught_up(r, expected_last(s_end), args.settle, complete=full, step=0.5)
        lost, silent = r.loss(expected_last(s_end))
        says = None
        if hasattr(subject, "loss_counters"):
            # The status recomputes its backlog figures every 5 s: read them
            # once they were taken after the drain, not during it.
            time.sleep(STATUS_BACKLOG_EVERY_S + 1)
            says = subject.loss_counters()
        res = {
            "agent_counters": says,
            "subject": subject.name, "outage_s": outage_s, "backlog_readings": backlog,
            "drain_s": drain, "lost": lost, "silent_devices": len(silent),
            "cpu_pct_outage": cpu_outage.get("subject", {}).get("pct"),
            "cpu_pct_drain": cpu_drain.get("subject", {}).get("pct"),
            "receiver_cpu_pct_drain": cpu_drain.get("receiver", {}).get("pct"),
            # the receiver idles during the reconnect: its CPU over the transfer alone
            "receiver_cpu_pct_transfer": (100.0 * cpu_drain["receiver"]["cpu_s"] / transfer
                                          if transfer and "receiver" in cpu_drain else None),
            "subject_cpu_pct_transfer": (100.0 * cpu_drain["subject"]["cpu_s"] / transfer
                                         if transfer and "subject" in cpu_drain else None),
            "other_load_pct_drain": other_load_pct(cpu_drain),
            "broker_cpu_pct_drain": cpu_drain.get("broker", {}).get("pct"),
            "rss_peak_mb": (status_kib(subject.pid, "VmHWM") or 0) / 1024.0,
            "rss_peak_outage_mb": (hwm_outage or 0) / 1024.0,
            "store_mb_at_end_of_outage": store_mb,
            "reconnect_s": reconnect, "transfer_s": transfer,
            "drain_mb_s": hist_bytes / transfer / 1e6 if transfer and hist_bytes else None,
            "drain_readings_s": hist_values / transfer if transfer and hist_values else None,
            "live_p50_ms_during_drain": live.percentile(50),
            "live_p99_ms_during_drain": live.percentile(99),
            "live_values_during_drain": live.n,
            "unflagged_before_return": live_before.n,
            "unflagged_before_return_max_ms": live_before.percentile(100),
            "rejected": len(r.rejected), "seq_gaps": r.seq_gaps(),
            "stray_messages": r.stray,
            "drain_wall_s": time.monotonic() - t_up,
        }
        if drain is None:
            log(f"  {subject.name}: not drained within the timeout")
        return res
    finally:
        subject.stop()
        if res is not None:
            res["subject_says"] = loss_lines(subject)
            if res["subject_says"]:
                log(f"  {subject.name}'s log: {res['subject_says']}")


def scenario_outage(bench, args):
    out = {}
    bpr = measure_bytes_per_reading(bench, args)
    rate = len(args.devices_list) * args.registers * 1000.0 / args.poll_ms
    # The file grows faster than linearly at first (indexes, free pages): 2.5 x.
    need = bpr * rate * (args.outage + args.warmup + 60) * 2.5 if bpr else 1 << 30
    max_bytes = max(int(need) // (1 << 20) + 16, 32)
    log(f"  store: {bpr:.1f} bytes per reading on disk -> max_bytes {max_bytes}MiB "
        f"for a {args.outage:.0f} s outage")
    out["bytes_per_reading"] = bpr
    out["max_bytes_mib"] = max_bytes
    free = shutil.disk_usage(bench.work.path).free
    if free < max_bytes * (1 << 20) * 1.1:
        out["skipped"] = (f"the store needs {max_bytes}MiB for this outage and "
                          f"{bench.work.path} has {free >> 20}MiB free: set TMPDIR to a "
                          f"bigger disk or shorten --outage")
        log(f"  scenario 3 skipped: {out['skipped']}")
        return out
    runs = []
    for i in range(args.outage_runs):
        fleet = Fleet(bench.bins["fleet"], args.ports, args.units, args.registers)
        try:
            runs.append(outage_run(bench, subjects.Tagrelay(bench, "tagrelay-outage",
                                                            max_bytes=f"{max_bytes}MiB"),
                                   fleet, args, args.outage))
        finally:
            fleet.stop()
        o = runs[-1]
        log(f"  outage run {i + 1}: drained in {o['drain_s']} s (reconnect {o['reconnect_s']} s, "
            f"transfer {o['transfer_s']} s), {o['drain_mb_s']} MB/s, lost {o['lost']}, "
            f"live p50 {o['live_p50_ms_during_drain']} ms p99 {o['live_p99_ms_during_drain']} ms "
            f"over {o['live_values_during_drain']} values, "
            f"{o['unflagged_before_return']} unflagged from before the return, "
            f"{o['stray_messages']} stray messages")
    out["tagrelay"] = summarize(runs)
    peer_outage = min(args.outage, args.peer_outage)
    for name in args.subjects:
        if name == "tagrelay":
            continue
        fleet = Fleet(bench.bins["fleet"], args.ports, args.units, args.registers)
        try:
            res = outage_run(bench, make_subject(bench, name), fleet, args, peer_outage)
        finally:
            fleet.stop()
        log(f"  outage {name}: lost {res['lost']} of {res['backlog_readings']}")
        out[name] = res
    return out


BENCH_PATTERNS = {
    "store_ring": r"100 tags per device: ring store (\d+) readings/s, raw SQLite ceiling (\d+)",
    "store_ring10": r"10 tags per device: ring store (\d+) readings/s, raw SQLite ceiling (\d+)",
    "tcp": r"\| TCP, one connection, (\d+) registers per poll \| (\d+) polls/s \| raw libmodbus "
           r"loop (\d+) req/s",
    "rtu19200": r"\| RTU 19200 baud, (\d+) registers per poll \| ([\d.]+) tx/s \| line rate "
                r"([\d.]+) tx/s",
    "rtu115200": r"\| RTU 115200 baud, (\d+) registers per poll \| ([\d.]+) tx/s \| line rate "
                 r"([\d.]+) tx/s",
    "drain": r"backlog drain: ([\d.]+) MB/s",
    "raw_mqtt": r"raw libmosquitto QoS 1 ceiling: ([\d.]+) MB/s",
    "wire": r"bytes per reading: ([\d.]+) payload",
    # The raw loops' own thread CPU time, scaled to one tag: the CPU floor.
    "store_raw_cpu": r"raw SQLite batch insert, 100 tags per device: ([\d.]+) us CPU per reading",
    "tcp_raw_cpu": r"raw libmodbus loop, (\d+) registers per request: ([\d.]+) us CPU per request "
                   r"\(client thread[^)]*\), ([\d.]+) us per register, at (\d+) req/s",
    "raw_mqtt_cpu": r"raw libmosquitto QoS 1 CPU, steady-load batches of (\d+) readings \((\d+) "
                    r"bytes\): ([\d.]+) us per reading, ([\d.]+) us per message \(publishing "
                    r"thread[^)]*\); (\d+) messages/s, ([\d.]+) MB/s",
    "raw_mqtt_cpu_drain": r"raw libmosquitto QoS 1 CPU, drain batches of (\d+) readings \((\d+) "
                          r"bytes\): ([\d.]+) us per reading",
}


def run_tool(argv, timeout):
    log(f"  $ {' '.join(os.path.relpath(a, ROOT) if a.startswith(ROOT) else a for a in argv)}")
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout)
    return p.stdout


def scenario_ceilings(bench, args):
    """The component benchmarks with their same-run ceilings, --runs times each."""
    found = {k: [] for k in BENCH_PATTERNS}
    for i in range(args.ceiling_runs):
        text = run_tool([bench.bins["store_bench"]], 900)
        text += run_tool([bench.bins["modbus_bench"], "--registers", str(args.registers),
                          "--seconds", str(args.modbus_seconds)], 900)
        text += run_tool(["/usr/bin/python3", os.path.join(ROOT, "bench", "uplink_bench.py"),
                          "--bin", bench.bins["uplink_bench"], "--rounds", "3",
                          "--readings", str(args.drain_readings)], 900)
        for k, pat in BENCH_PATTERNS.items():
            m = re.search(pat, text)
            if m:
                found[k].append([float(g) for g in m.groups()])
            else:
                log(f"  ceiling {k}: no result in the output")
    out = {}
    for k, rows in found.items():
        if rows:
            out[k] = [statistics.median(col) for col in zip(*rows)]
    out["runs"] = args.ceiling_runs
    out["micro"] = micro(bench)
    return out


def micro(bench):
    """The Google Benchmark micro benchmarks: ns per iteration, items/s."""
    path = os.path.join(bench.work.path, "micro.json")
    run_tool([bench.bins["micro_bench"], f"--benchmark_out={path}", "--benchmark_out_format=json",
              "--benchmark_repetitions=3", "--benchmark_report_aggregates_only=true"], 600)
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        log("  micro benchmarks: no JSON in the output")
        return []
    return [{"name": b["run_name"], "ns": b["real_time"], "cpu_ns": b["cpu_time"],
             "items_s": b.get("items_per_second")}
            for b in doc.get("benchmarks", []) if b.get("aggregate_name") == "median"]


# --- main ---------------------------------------------------------------------

def versions(bins, node_red_dir):
    def cmd(argv, pattern=r"(.*)"):
        try:
            p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, timeout=20)
            m = re.search(pattern, p.stdout)
            return m.group(1).strip() if m else p.stdout.strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            return "not found"

    def deb(name):
        return cmd(["dpkg-query", "-W", "-f=${Version}\\n", name])

    def npm_version(pkg):
        try:
            with open(os.path.join(node_red_dir, "node_modules", pkg, "package.json")) as f:
                return json.load(f)["version"]
        except (OSError, ValueError, KeyError):
            return "not installed"

    return {
        "tagrelay": cmd([bins["tagrelay"], "version"]),
        "mosquitto (broker)": cmd(["mosquitto", "-h"], r"mosquitto version (\S+)"),
        "libmosquitto": deb("libmosquitto1"), "libmodbus": deb("libmodbus5"),
        "SQLite": deb("libsqlite3-0"), "OpenSSL": deb("libssl3"),
        "collectd": deb("collectd-core"), "node": cmd([bins["node"], "--version"]),
        "node-red": npm_version("node-red"),
        "node-red-contrib-modbus": npm_version("node-red-contrib-modbus"),
        "python3-paho-mqtt (receiver)": deb("python3-paho-mqtt"),
    }


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // 1024
    osname = "Linux"
    try:
        with open("/etc/os-release") as f:
            osname = dict(l.strip().split("=", 1) for l in f if "=" in l)["PRETTY_NAME"].strip('"')
    except (OSError, KeyError):
        pass
    return {"cpu": model, "cores": os.cpu_count(), "memory_mib": mem, "os": osname,
            "kernel": platform.release()}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--build", default=os.path.join(ROOT, "build"), help="CMake build directory")
    p.add_argument("--node-red-dir", default=os.path.expanduser("~/.cache/tagrelay-bench/node-red"),
                   help="where bench/run installed Node-RED (has node_modules/)")
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"),
                   help="the report to write ('-' for none)")
    p.add_argument("--json", help="also write every figure as JSON here")
    p.add_argument("--render", metavar="JSON",
                   help="run nothing: write the report of a run saved with --json")
    p.add_argument("--scenarios", default="1,2,3,4", help="comma list of 1,2,3,4")
    p.add_argument("--subjects", default="tagrelay,collectd,nodered")
    p.add_argument("--runs", type=int, default=5, help="runs per figure (medians)")
    p.add_argument("--ports", type=int, default=100, help="simulated devices, one endpoint each")
    p.add_argument("--units", type=int, default=1, help="unit ids per endpoint")
    p.add_argument("--registers", type=int, default=100, help="tags per device")
    p.add_argument("--poll-ms", type=int, default=1000)
    p.add_argument("--warmup", type=float, default=10.0)
    p.add_argument("--window", type=float, default=60.0, help="steady window, seconds")
    p.add_argument("--settle", type=float, default=15.0,
                   help="seconds to wait for late values after a window")
    p.add_argument("--ramp", default="1000,500,250,150,100,75,50,35,25",
                   help="scenario 2: poll intervals in ms, slowest first")
    p.add_argument("--ramp-warmup", type=float, default=5.0)
    p.add_argument("--ramp-window", type=float, default=20.0)
    p.add_argument("--max-p99-ms", type=float, default=3000.0,
                   help="scenario 2: a step whose p99 latency exceeds this lags")
    p.add_argument("--outage", type=float, default=3600.0, help="scenario 3: seconds")
    p.add_argument("--outage-runs", type=int, default=1)
    p.add_argument("--peer-outage", type=float, default=120.0,
                   help="scenario 3: the peers' outage, at most --outage")
    p.add_argument("--bpr-window", type=float, default=60.0,
                   help="scenario 3: seconds of outage to measure the store's bytes per reading")
    p.add_argument("--drain-timeout-factor", type=float, default=2.0)
    p.add_argument("--ceiling-runs", type=int, help="default: --runs")
    p.add_argument("--ramp-runs", type=int, help="scenario 2's runs of the whole ramp; default: --runs")
    p.add_argument("--modbus-seconds", type=float, default=6.0)
    # Long enough (about a second at a few hundred MB/s) that the store's work
    # on the acks falls inside the timed drain.
    p.add_argument("--drain-readings", type=int, default=5000000)
    p.add_argument("--schema-every", type=int, default=20,
                   help="validate one tagrelay telemetry message in N against the schema")
    p.add_argument("--note", default="", help="a line to put at the top of the report")
    args = p.parse_args(argv)
    args.scenarios = {s.strip() for s in args.scenarios.split(",") if s.strip()}
    args.subjects = [s.strip() for s in args.subjects.split(",") if s.strip()]
    args.ramp = [int(x) for x in args.ramp.split(",")]
    args.ceiling_runs = args.ceiling_runs or args.runs
    args.ramp_runs = args.ramp_runs or args.runs
    args.devices_list = list(range(args.ports * args.units))
    return args


def rerun_command(argv):
    """The bench/run command line of this run, less what only names paths or
    words of the report (they change no figure)."""
    dropped = ("--build", "--node-red-dir", "--json", "--note", "--out")
    out, skip = ["bench/run"], False
    for a in argv:
        if skip:
            skip = False
        elif a in dropped:
            skip = True
        elif not a.startswith(tuple(d + "=" for d in dropped)):
            out.append(a)
    return " ".join(out)


def write_report(results, out):
    text = report.render(results)
    print(text)
    if out != "-":
        with open(out, "w") as f:
            f.write(text)
        log(f"wrote {out}")


def main(argv=None):
    args = parse_args(argv)
    if args.render:
        with open(args.render) as f:
            write_report(json.load(f), args.out)
        return 0
    b = os.path.abspath(args.build)
    bins = {
        "tagrelay": os.path.join(b, "agent", "tagrelay"),
        "fleet": os.path.join(b, "bench", "tagrelay-fleet-sim"),
        "store_bench": os.path.join(b, "bench", "tagrelay_store_bench"),
        "modbus_bench": os.path.join(b, "bench", "tagrelay_modbus_bench"),
        "uplink_bench": os.path.join(b, "bench", "tagrelay_uplink_bench"),
        "micro_bench": os.path.join(b, "bench", "tagrelay_micro_bench"),
        "collectd": shutil.which("collectd") or "/usr/sbin/collectd",
        "node": shutil.which("node") or "node",
    }
    for k in ("tagrelay", "fleet"):
        if not os.access(bins[k], os.X_OK):
            sys.exit(f"missing {bins[k]}: build first (bench/run does)")
    if "collectd" in args.subjects and not os.access(bins["collectd"], os.X_OK):
        log("collectd is not installed (collectd-core): left out")
        args.subjects.remove("collectd")
    red = os.path.join(args.node_red_dir, "node_modules", "node-red", "red.js")
    if "nodered" in args.subjects and not os.path.exists(red):
        log(f"Node-RED is not installed in {args.node_red_dir}: left out (bench/run installs it)")
        args.subjects.remove("nodered")

    results = {"started": datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds"), "machine": machine(), "versions": versions(bins, args.node_red_dir),
        "args": {k: v for k, v in vars(args).items() if k not in ("devices_list",)}}
    results["args"]["scenarios"] = sorted(args.scenarios)
    results["command"] = rerun_command(argv if argv is not None else sys.argv[1:])
    bench = Bench(args, bins)
    try:
        bench.start()
        if "1" in args.scenarios:
            log("scenario 1: steady load")
            results["steady"] = scenario_steady(bench, args)
        if "2" in args.scenarios:
            log("scenario 2: highest sustainable tags/s")
            results["max"] = scenario_max(bench, args)
        if "3" in args.scenarios:
            log("scenario 3: broker outage and drain")
            results["outage"] = scenario_outage(bench, args)
        if "4" in args.scenarios:
            log("scenario 4 and ceilings: component benchmarks")
            results["ceilings"] = scenario_ceilings(bench, args)
    finally:
        bench.close()
    results["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds")
    if args.json:  # first: a report that fails to render can be rendered again
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    write_report(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
