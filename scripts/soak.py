"""Endurance run of the real agent (see scripts/soak): many simulated devices
polled fast, a mosquitto restarted every few minutes, the agent's RSS, open
descriptors and threads sampled all along; at the end the backlog is drained
and every sequence number the store handed out must be at the subscriber or
still in the store. Prints the figures and whether they stayed flat; exits 0
if nothing was lost and they did, 1 otherwise.

The subscriber here keeps one bit per sequence number (no schema checks):
an hour at thousands of readings per second would not fit the reference
receiver's records. The integration tests check the messages themselves.

Runs under Debian's /usr/bin/python3 (python3-paho-mqtt)."""

import argparse
import json
import os
import re
import signal
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import faults  # noqa: E402
import harness  # noqa: E402
import store_peek  # noqa: E402

GATEWAY = "gw-soak"
KEY = "soak-gateway-key-4f2a"


def duration(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(s|m|h)?", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (600, 600s, 10m, 1h)")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


class SeqCounter:
    """An MQTT 5 subscription to the gateway's telemetry that keeps, per
    device, one bit per sequence number received, and counts duplicates."""

    def __init__(self, port, user, password):
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
        self.lock = threading.Lock()
        self.bits = {}
        self.received = 0
        self.duplicates = 0
        self.subscribed = threading.Event()
        self.client = mqtt.Client(client_id=f"tagrelay-soak-{os.getpid()}", protocol=mqtt.MQTTv5)
        self.client.username_pw_set(user, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600  # queued at the broker while we are away
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        if rc == 0:
            client.subscribe(f"tagrelay/v1/{GATEWAY}/+/telemetry", qos=1)
            self.subscribed.set()

    def _on_message(self, client, userdata, msg):
        doc = json.loads(msg.payload)
        with self.lock:
            bits = self.bits.setdefault(doc["device"], bytearray())
            for seq in range(doc["seq_first"], doc["seq_last"] + 1):
                byte, bit = divmod(seq, 8)
                if byte >= len(bits):
                    bits.extend(bytes(byte - len(bits) + 4096))
                if bits[byte] >> bit & 1:
                    self.duplicates += 1
                else:
                    bits[byte] |= 1 << bit
                    self.received += 1

    def has_all(self, device, below):
        """True if every seq in 1..below-1 of `device` arrived."""
        return not self.missing(device, below, limit=1)

    def missing(self, device, below, limit=None):
        with self.lock:
            bits = self.bits.get(device, bytearray())
            out = []
            for seq in range(1, below):
                byte, bit = divmod(seq, 8)
                if byte >= len(bits) or not bits[byte] >> bit & 1:
                    out.append(seq)
                    if limit and len(out) >= limit:
                        break
            return out

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def config(work, broker_port, sim_port, key_file, devices, tags, poll_ms):
    holding = min(tags, 16)
    floats = tags - holding
    tag_text = "".join(f"""
  [[device.tag]]
  name = "h{a}"
  address = {a}
""" for a in range(holding)) + "".join(f"""
  [[device.tag]]
  name = "f{i}"
  table = "input"
  address = {2 * i}
  type = "float32"
""" for i in range(floats))
    device_text = "".join(f"""
[[device]]
id = "dev-{i}"
bus = "sim"
unit = {i}
poll = "{poll_ms}ms"
{tag_text}""" for i in range(1, devices + 1))
    return work.file("tagrelay.toml", f"""
[gateway]
id = "{GATEWAY}"
data_dir = "{work.path}/data"

[uplink]
url = "mqtt://127.0.0.1:{broker_port}"
insecure = true
api_key_file = "{key_file}"
reconnect_min = "100ms"
reconnect_max = "2s"

[[bus]]
name = "sim"
type = "tcp"
host = "127.0.0.1"
port = {sim_port}
{device_text}
""", mode=0o644)


def flat(samples, key, tolerance):
    """(first-third median, last-third median, max, flat?) over the samples after warm-up."""
    values = [s[key] for s in samples]
    third = max(1, len(values) // 3)
    first, last = statistics.median(values[:third]), statistics.median(values[-third:])
    return first, last, max(values), last <= first + tolerance(first)


def main():
    p = argparse.ArgumentParser(prog="scripts/soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=duration, default=3600.0,
                   help="how long to run (600, 10m, 1h; default 1h)")
    p.add_argument("--devices", type=int, default=20)
    p.add_argument("--tags", type=int, default=20, help="tags per device (at most 24)")
    p.add_argument("--poll-ms", type=int, default=100,
                   help="poll interval (default 100 ms: ten times a nominal 1 s)")
    p.add_argument("--flap-every", type=duration, default=180.0,
                   help="restart the broker this often (default 3m)")
    p.add_argument("--flap-down", type=duration, default=10.0,
                   help="how long the broker stays down (default 10s)")
    p.add_argument("--sample-every", type=duration, default=10.0)
    p.add_argument("--agent", default="build/agent/tagrelay")
    p.add_argument("--sim", default="build/tests/tagrelay-modbus-sim")
    args = p.parse_args()
    if not 1 <= args.tags <= 24:
        p.error("--tags: 1..24 (16 holding registers and 4 floats of the simulator)")

    work = harness.Workdir(prefix="tagrelay-soak-")
    broker = harness.Broker(work, {GATEWAY: KEY, "soak": "soak-pw"})
    broker.start()
    sim = harness.Simulator(args.sim)
    counter = SeqCounter(broker.port, "soak", "soak-pw")
    harness.wait_for(counter.subscribed.is_set, 10, what="the subscription")
    key = work.file("gateway.key", KEY + "\n")
    db = os.path.join(work.path, "data", "tagrelay.db")
    agent = harness.Agent(os.path.abspath(args.agent),
                          config(work, broker.port, sim.port, key, args.devices, args.tags,
                                 args.poll_ms), work)
    nominal = args.devices * args.tags * 1000 / args.poll_ms
    print(f"soak: {args.devices} devices x {args.tags} tags every {args.poll_ms} ms "
          f"({nominal:.0f} readings/s), broker down {args.flap_down:.0f} s every "
          f"{args.flap_every:.0f} s, for {args.duration:.0f} s; work dir {work.path}", flush=True)
    ok = False
    try:
        agent.start()
        agent.wait_running()
        pid = agent.proc.pid
        started = time.monotonic()
        end = started + args.duration
        next_sample, next_flap = started, started + args.flap_every
        samples, flaps, up_at = [], 0, None
        while time.monotonic() < end:
            now = time.monotonic()
            if agent.proc.poll() is not None:
                raise RuntimeError(f"the agent exited with {agent.proc.returncode}")
            if now >= next_sample:
                s = faults.sample(pid)
                s["t"] = now - started
                s["received"] = counter.received
                samples.append(s)
                print(f"  {s['t']:6.0f} s  rss {s['rss_kib']} KiB  fds {s['fds']}  threads "
                      f"{s['threads']}  received {s['received']}", flush=True)
                next_sample = now + args.sample_every
            if up_at is not None and now >= up_at:
                broker.start()
                up_at, next_flap = None, time.monotonic() + args.flap_every
            elif up_at is None and now >= next_flap and now + args.flap_down < end:
                broker.stop()  # sampling goes on while it is down
                up_at = now + args.flap_down
                flaps += 1
            time.sleep(0.2)
        ran = time.monotonic() - started
        if up_at is not None:
            broker.start()

        marks = faults.next_seqs(db)
        drain_started = time.monotonic()
        harness.wait_for(lambda: all(counter.has_all(d, n) for d, n in marks.items()), 600,
                         interval=1, what="the backlog at the subscriber")
        drained = time.monotonic() - drain_started
        status = agent.status()
        rc = agent.stop(signal.SIGTERM, timeout=60)
        lost = {}
        for device, next_seq in faults.next_seqs(db).items():
            kept = store_peek.seqs(db, device, delivered=False)
            gone = [s for s in counter.missing(device, next_seq) if s not in kept]
            if gone:
                lost[device] = gone
        total = sum(n - 1 for n in faults.next_seqs(db).values())

        warm = [s for s in samples if s["t"] >= min(60.0, args.duration / 10)] or samples
        rss = flat(warm, "rss_kib", lambda v: max(v * 0.10, 2048))
        fds = flat(warm, "fds", lambda v: 2)
        threads = flat(warm, "threads", lambda v: 0)
        print(f"\nran {ran:.0f} s, {flaps} broker restarts; {total} readings "
              f"({total / ran:.0f}/s of {nominal:.0f}/s nominal), {counter.received} received, "
              f"{counter.duplicates} duplicates, drained in {drained:.1f} s; agent exit {rc}; "
              f"store: {status['store']['failed_commits']} failed commits, "
              f"{status['store']['evicted']} evicted, {status['store']['lost_in_memory']} "
              f"dropped in memory")
        for name, (first, last, peak, is_flat) in (("RSS KiB", rss), ("open fds", fds),
                                                    ("threads", threads)):
            print(f"{name:9} first third {first:8.0f}  last third {last:8.0f}  max {peak:8.0f}  "
                  f"{'flat' if is_flat else 'GREW'}")
        if lost:
            print("LOST: " + "; ".join(f"{d}: {len(s)} seqs from {s[0]}" for d, s in lost.items()))
        else:
            print("lost: 0")
        ok = not lost and rc == 0 and rss[3] and fds[3] and threads[3]
    finally:
        agent.stop(signal.SIGKILL)
        counter.close()
        sim.stop()
        broker.stop()
        if ok:
            work.close()
        else:
            print(f"kept {work.path}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
