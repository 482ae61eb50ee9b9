"""kill -9 of the real agent at random moments under load, again and again.

After every kill the store passes integrity_check; at the end, after one clean
run that drains the store, every sequence number the store ever handed out has
reached the receiver, and duplicates stay within what was in flight at each kill.

TAGRELAY_CRASH_CYCLES sets the number of kills (default 20; scripts/crash-soak
runs hundreds). TAGRELAY_CRASH_SEED makes the kill times reproducible.
"""

import os
import random
import signal
import sqlite3
import statistics
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import store_peek  # noqa: E402

AGENT = os.environ.get("TAGRELAY_BIN", "build/agent/tagrelay")
SIM = os.environ.get("TAGRELAY_SIM", "build/tests/tagrelay-modbus-sim")
CYCLES = int(os.environ.get("TAGRELAY_CRASH_CYCLES", "20"))
SEED = int(os.environ.get("TAGRELAY_CRASH_SEED", str(int(time.time()))))
GATEWAY = "gw-crash"
KEY = "crash-test-gateway-key"
DEVICES = 5
MAX_INFLIGHT = 8
BATCH_MAX = 100


def config(work, broker_port, sim_port, key_file):
    devices = harness.sim_devices(DEVICES, "50ms")
    return work.file("tagrelay.toml", f"""
[gateway]
id = "{GATEWAY}"
data_dir = "{work.path}/data"

[store]
commit_interval = "100ms"

[uplink]
url = "mqtt://127.0.0.1:{broker_port}"
insecure = true
api_key_file = "{key_file}"
batch_linger = "100ms"
batch_max_readings = {BATCH_MAX}
max_inflight = {MAX_INFLIGHT}

[[bus]]
name = "sim"
type = "tcp"
host = "127.0.0.1"
port = {sim_port}
{devices}
""")


class CrashTest(unittest.TestCase):
    def setUp(self):
        self.work = harness.Workdir()
        self.broker = harness.Broker(self.work, {GATEWAY: KEY, "receiver": "pw"})
        self.broker.start()
        self.sim = harness.Simulator(SIM)
        self.receiver = harness.Receiver(self.broker.port, "receiver", "pw")
        harness.wait_for(self.receiver.subscribed.is_set, 10, what="receiver")
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

    def store(self, sql, *args):
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as db:
            return db.execute(sql, args).fetchall()

    def received_count(self):
        return len(self.receiver.snapshot()[0])

    def test_kill_9_at_random_moments_loses_nothing(self):
        rng = random.Random(SEED)
        first_publish = []
        for cycle in range(CYCLES):
            before = self.received_count()
            started = time.monotonic()
            self.agent.start()
            try:
                harness.wait_for(lambda: self.received_count() > before, 20, interval=0.005,
                                 what="a publish after the restart")
                first_publish.append(time.monotonic() - started)
            except TimeoutError:
                self.fail(f"cycle {cycle} (seed {SEED}): nothing published\n{self.agent.log_text()}")
            time.sleep(rng.uniform(0.0, 1.0))
            self.agent.stop(signal.SIGKILL)
            (check,) = self.store("PRAGMA integrity_check")[0]
            self.assertEqual(check, "ok", f"cycle {cycle}, seed {SEED}")

        # A clean run delivers the backlog of every kill.
        backlog = dict(self.store("SELECT name, next_seq FROM devices"))
        self.agent.start()

        def delivered_backlog():
            return all(self.receiver.seqs(d)[:n - 1] == list(range(1, n)) for d, n in backlog.items())
        harness.wait_for(delivered_backlog, 60, interval=0.1, what="the backlog to be delivered")
        # The killed runs may have delivered it all already: a SIGTERM must not
        # come before the agent handles signals (until then it simply kills it).
        self.agent.wait_running()
        self.assertEqual(self.agent.stop(signal.SIGTERM), 0)
        time.sleep(0.2)

        devices = dict(self.store("SELECT name, next_seq FROM devices"))
        self.assertEqual(len(devices), DEVICES)
        for name, next_seq in devices.items():
            got = set(self.receiver.seqs(name))
            kept = store_peek.seqs(self.db, name, delivered=False)
            self.assertEqual(got | kept, set(range(1, next_seq)),
                             f"{name}: every sequence number is at the receiver or in the store "
                             f"(seed {SEED})")
            delivered = store_peek.seqs(self.db, name, delivered=True)
            self.assertTrue(delivered <= got, f"{name}: marked delivered but never received")
        self.assertEqual(self.receiver.errors, [])
        # A kill can cost at most what was in flight, plus acks not yet committed.
        bound = (CYCLES + 1) * 2 * MAX_INFLIGHT * BATCH_MAX
        self.assertLessEqual(self.receiver.duplicates, bound)
        print(f"\n{CYCLES} kills (seed {SEED}): {sum(devices.values()) - len(devices)} readings, "
              f"{self.receiver.duplicates} duplicates dropped by the receiver, "
              f"restart to first publish median {statistics.median(first_publish) * 1000:.0f} ms, "
              f"max {max(first_publish) * 1000:.0f} ms", file=sys.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
