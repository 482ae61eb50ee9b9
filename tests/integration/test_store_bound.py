"""The store's bound, end to end: with the broker away and a small max_bytes,
the agent evicts its oldest undelivered readings to stay within the bound, and
when the broker is back the cloud learns exactly which readings are gone: every
gap in a device's sequence is covered by a readings_lost event, and nothing else
is missing."""

import os
import signal
import sqlite3
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

AGENT = os.environ.get("TAGRELAY_BIN", "build/agent/tagrelay")
SIM = os.environ.get("TAGRELAY_SIM", "build/tests/tagrelay-modbus-sim")
GATEWAY = "gw-bound"
KEY = "bound-test-key"
DEVICES = 5
MAX_BYTES = 1 << 20


def config(work, broker_port, sim_port, key_file):
    tags = "".join(f"""
  [[device.tag]]
  name = "t{i}"
  address = {i % 4}
  type = "int16"
""" for i in range(20))
    devices = "".join(f"""
[[device]]
id = "dev-{d}"
bus = "sim"
unit = {d}
poll = "10ms"
{tags}""" for d in range(1, DEVICES + 1))
    return work.file("tagrelay.toml", f"""
[gateway]
id = "{GATEWAY}"
data_dir = "{work.path}/data"

[store]
max_bytes = {MAX_BYTES}

[uplink]
url = "mqtt://127.0.0.1:{broker_port}"
insecure = true
api_key_file = "{key_file}"
batch_linger = "100ms"
reconnect_max = "1s"

[[bus]]
name = "sim"
type = "tcp"
host = "127.0.0.1"
port = {sim_port}
{devices}""")


class StoreBoundTest(unittest.TestCase):
    def setUp(self):
        self.work = harness.Workdir()
        self.broker = harness.Broker(self.work, {GATEWAY: KEY, "receiver": "pw"})
        self.broker.start()
        self.receiver = harness.Receiver(self.broker.port, "receiver", "pw")
        harness.wait_for(self.receiver.subscribed.is_set, 10, what="receiver")
        self.broker.stop()  # the receiver's session waits in the broker's persistence
        self.sim = harness.Simulator(SIM)
        key = self.work.file("gateway.key", KEY, mode=0o600)
        self.agent = harness.Agent(AGENT, config(self.work, self.broker.port, self.sim.port, key),
                                   self.work)
        self.db = os.path.join(self.work.path, "data", "tagrelay.db")

    def tearDown(self):
        self.agent.stop(signal.SIGKILL)
        self.receiver.close()
        self.sim.stop()
        self.broker.stop()
        self.work.close()

    def store(self, sql):
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as db:
            return db.execute(sql).fetchall()

    def test_evicted_readings_are_reported_and_are_the_only_gaps(self):
        self.agent.start()
        harness.wait_for(lambda: os.path.exists(self.db), 10, what="the store")

        def evicted():
            try:
                return self.store("SELECT coalesce(sum(lost), 0) FROM devices")[0][0] > 0
            except sqlite3.OperationalError:  # not created yet
                return False
        harness.wait_for(evicted, 90, interval=0.2, what="the ring to evict")
        for _ in range(20):  # a while at the bound
            size = sum(os.path.getsize(self.db + s) for s in ("", "-wal") if os.path.exists(self.db + s))
            self.assertLessEqual(size, MAX_BYTES, "database plus WAL stay within max_bytes")
            time.sleep(0.1)

        self.broker.start()
        last = dict(self.store("SELECT name, next_seq - 1 FROM devices"))

        def caught_up():
            # Everything up to what was stored at the broker's return is in, or reported lost.
            for device, n in last.items():
                got = set(self.receiver.seqs(device))
                lost = self.receiver.core.lost_ranges(GATEWAY, device)
                if any(s not in got and not any(a <= s <= b for a, b, _ in lost)
                       for s in range(1, n + 1)):
                    return False
            return True
        harness.wait_for(caught_up, 120, interval=0.5, what="the backlog after the outage")
        self.assertEqual(self.agent.stop(signal.SIGTERM), 0)
        time.sleep(0.3)

        lost_in_store = dict(self.store("SELECT name, lost FROM devices"))
        core = self.receiver.core
        self.assertEqual(self.receiver.errors, [], core.summary())
        gaps = core.gaps()
        self.assertEqual(gaps, {}, "every gap is a reported loss:\n" + core.summary())
        for device, lost in lost_in_store.items():
            reported = core.lost_ranges(GATEWAY, device)
            self.assertTrue(reported, device)
            self.assertTrue(all(reason == "ring_full" for _, _, reason in reported))
            with core.lock:
                records = dict(core.records)
            events = [r for (g, d, k, s), r in records.items()
                      if k == "events" and r.get("device") == device]
            self.assertEqual(sum(e["count"] for e in events), lost,
                             f"{device}: the counts reported add up to what the store counted")
            got = set(self.receiver.seqs(device))
            missing = set(range(1, max(got) + 1)) - got
            self.assertEqual(len(missing), lost, f"{device}: exactly the evicted readings are missing")


if __name__ == "__main__":
    unittest.main(verbosity=2)
