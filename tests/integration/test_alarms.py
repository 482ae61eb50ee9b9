"""Local alarms and counters, end to end: the simulator's counter register (one
more each poll) crosses alarm limits; the receiver gets the alarm events on the
device's alarms topic, promptly while the broker is up, and first of all when it
comes back after an outage during which an alarm was raised locally. A counter
with a running condition publishes run time and starts."""

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
GATEWAY = "gw-alarms"
KEY = "alarms-test-key"
DEVICE = "sim-1"
POLL_MS = 100
LINGER_MS = 300


def config(work, broker_port, sim_port, key_file, first, second):
    return work.file("tagrelay.toml", f"""
[gateway]
id = "{GATEWAY}"
data_dir = "{work.path}/data"

[store]
commit_interval = "50ms"

[uplink]
url = "mqtt://127.0.0.1:{broker_port}"
insecure = true
api_key_file = "{key_file}"
batch_linger = "{LINGER_MS}ms"
reconnect_max = "1s"

[[bus]]
name = "sim"
type = "tcp"
host = "127.0.0.1"
port = {sim_port}

[[device]]
id = "{DEVICE}"
bus = "sim"
poll = "{POLL_MS}ms"
  [[device.tag]]
  name = "counter"
  address = 0
  unit = "polls"

[[alarm]]
id = "count-high"
device = "{DEVICE}"
tag = "counter"
kind = "high"
limit = {first}
severity = "minor"
message = "counter at {{value}} {{unit}}, above {{limit}}"

[[alarm]]
id = "count-very-high"
device = "{DEVICE}"
tag = "counter"
kind = "high_high"
limit = {second}
severity = "critical"

[[counter]]
id = "busy"
device = "{DEVICE}"
running = "counter > 10"
snapshot = "1s"
""")


class AlarmsTest(unittest.TestCase):
    def setUp(self):
        self.work = harness.Workdir()
        self.broker = harness.Broker(self.work, {GATEWAY: KEY, "receiver": "pw"})
        self.broker.start()
        self.sim = harness.Simulator(SIM)
        self.receiver = harness.Receiver(self.broker.port, "receiver", "pw")
        harness.wait_for(self.receiver.subscribed.is_set, 10, what="receiver")
        self.key = self.work.file("gateway.key", KEY, mode=0o600)
        self.db = os.path.join(self.work.path, "data", "tagrelay.db")
        self.agent = None

    def tearDown(self):
        if self.agent:
            self.agent.stop(signal.SIGKILL)
            if not getattr(self._outcome, "success", True):
                print(self.agent.log_text(), file=sys.stderr)
        self.receiver.close()
        self.sim.stop()
        self.broker.stop()
        self.work.close()

    def start(self, first, second):
        self.agent = harness.Agent(AGENT, config(self.work, self.broker.port, self.sim.port,
                                                 self.key, first, second), self.work)
        self.agent.start()

    def records(self, stream):
        with self.receiver.core.lock:
            return {seq: r for (g, d, k, seq), r in self.receiver.core.records.items()
                    if k == stream and d == DEVICE}

    def alarm(self, name, state="raised"):
        for r in self.records("alarms").values():
            if r["alarm"] == name and r["state"] == state:
                return r
        return None

    def test_an_alarm_reaches_the_receiver_promptly_and_first_after_an_outage(self):
        self.start(first=30, second=90)
        harness.wait_for(lambda: self.alarm("count-high"), 30, what="the first alarm")
        event = self.alarm("count-high")
        self.assertEqual(event["kind"], "high")
        self.assertEqual(event["severity"], "minor")
        self.assertEqual(event["v"], 31)
        self.assertEqual(event["limit"], 30)
        self.assertEqual(event["message"], "counter at 31 polls, above 30")
        # The alarm's time is the time of the reading that crossed the limit.
        readings = self.records("telemetry")
        harness.wait_for(lambda: any(r["v"] == 31 for r in self.records("telemetry").values()), 10,
                         what="the crossing reading")
        crossing = next(r for r in self.records("telemetry").values() if r["v"] == 31)
        self.assertEqual(event["ts"], crossing["ts"])
        latency = event["arrived_ms"] - event["ts"]
        print(f"\nalarm latency, poll to receiver: {latency} ms (poll {POLL_MS} ms, "
              f"linger {LINGER_MS} ms)", file=sys.stderr)
        # Alarms do not wait for the batch linger; the bound is generous for a loaded machine.
        self.assertLess(latency, POLL_MS + LINGER_MS + 2000)
        self.assertLess(event["arrived_ms"], crossing["arrived_ms"] + 1,
                        "the alarm arrived no later than the reading that raised it")
        del readings

        # Operators see it on the box: `tagrelay status` lists the active alarm.
        def active():
            return [a for a in self.agent.status()["alarms"] if a["id"] == "count-high"]
        harness.wait_for(active, 10, what="the alarm in the status")
        shown = active()[0]
        self.assertEqual((shown["device"], shown["tag"], shown["severity"]),
                         (DEVICE, "counter", "minor"), shown)
        self.assertEqual(shown["message"], "counter at 31 polls, above 30")

        # The broker goes away; the counter crosses the second limit meanwhile.
        self.broker.stop()
        crossed = self.store_value_after(90)
        self.assertIsNotNone(crossed)

        def raised_locally():
            with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as db:
                return db.execute("SELECT count(*) FROM events WHERE stream = 'alarms' AND "
                                  "body LIKE '%count-very-high%' AND delivered = 0").fetchone()[0]
        harness.wait_for(raised_locally, 20, what="the alarm raised locally, undelivered")
        self.assertIn("alarm count-very-high raised", self.agent.log_text())
        with self.receiver.core.lock:
            before = len(self.receiver.core.batches)
        time.sleep(1.0)
        self.broker.start()
        harness.wait_for(lambda: self.alarm("count-very-high"), 30, what="the alarm after the outage")
        harness.wait_for(lambda: len(self.receiver.core.batches) > before + 3, 30, what="the backlog")
        with self.receiver.core.lock:
            after = [kind for kind, _ in self.receiver.core.batches[before:]]
        first_data = next(k for k in after if k in ("telemetry", "alarms"))
        self.assertEqual(first_data, "alarms", f"alarms go ahead of the backlog: {after[:8]}")

        # The counter: running since the register passed 10, one start, snapshots every second.
        snaps = [r for r in self.records("counters").values() if r.get("kind") != "downtime"]
        self.assertTrue(snaps)
        last = max(snaps, key=lambda r: r["ts"])
        self.assertEqual(last["counter"], "busy")
        self.assertEqual(last["starts"], 1)
        self.assertTrue(last["running"])
        self.assertGreater(last["run_s"], 1.0)
        self.assertEqual(self.agent.stop(signal.SIGTERM), 0)
        self.agent = None
        self.assertEqual(self.receiver.errors, [], self.receiver.core.summary())

    def test_a_reload_applies_new_rules_and_loses_nothing(self):
        self.start(first=1_000_000, second=2_000_000)
        self.agent.wait_running()
        harness.wait_for(lambda: len(self.records("telemetry")) >= 10, 20, what="readings")
        self.assertIsNone(self.alarm("count-high"))
        # The new rules: the counter is far past the first limit already.
        config(self.work, self.broker.port, self.sim.port, self.key, first=5, second=2_000_000)
        self.agent.proc.send_signal(signal.SIGHUP)
        harness.wait_for(lambda: self.alarm("count-high"), 20, what="the alarm of the new rules")
        self.assertIn("the alarm or counter rules changed", self.agent.log_text())
        self.assertGreater(self.alarm("count-high")["v"], 5)
        seen = max(self.records("telemetry"))
        harness.wait_for(lambda: max(self.records("telemetry")) > seen + 5, 20,
                         what="readings after the reload")
        self.assertEqual(self.agent.stop(signal.SIGTERM), 0)
        self.agent = None
        self.assertEqual(self.receiver.core.gaps(), {}, self.receiver.core.summary())
        self.assertEqual(self.receiver.errors, [], self.receiver.core.summary())

    def store_value_after(self, limit, timeout=30):
        """Waits until the store holds a counter reading above `limit`; returns its ts."""
        import store_peek

        def found():
            try:
                rows = store_peek.readings(self.db, DEVICE)
            except sqlite3.OperationalError:
                return None
            return next((r["ts"] for r in rows if r["v"] is not None and r["v"] > limit), None)
        return harness.wait_for(found, timeout, what=f"a reading above {limit}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
