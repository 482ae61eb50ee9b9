"""End to end: simulated Modbus TCP device -> tagrelay -> real mosquitto -> receiver.

Environment: TAGRELAY_BIN and TAGRELAY_SIM name the built binaries (ctest sets them).
"""

import os
import signal
import sqlite3
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import store_peek  # noqa: E402

AGENT = os.environ.get("TAGRELAY_BIN", "build/agent/tagrelay")
SIM = os.environ.get("TAGRELAY_SIM", "build/tests/tagrelay-modbus-sim")
GATEWAY = "gw-test"
GATEWAY_KEY = "k3y-for-gw-test-0123456789"
DEVICE = "sim-1"
POLL_S = 0.1
OUTAGE_S = 2.0


class EndToEndTest(unittest.TestCase):
    def setUp(self):
        self.work = harness.Workdir()
        self.broker = harness.Broker(self.work, {GATEWAY: GATEWAY_KEY, "receiver": "receiver-pw"})
        self.broker.start()
        self.sim = harness.Simulator(SIM)
        self.receiver = harness.Receiver(self.broker.port, "receiver", "receiver-pw")
        harness.wait_for(self.receiver.subscribed.is_set, 10, what="receiver subscription")
        key = self.work.file("gateway.key", GATEWAY_KEY + "\n", mode=0o600)
        config = harness.write_agent_config(self.work, GATEWAY, self.broker.port, self.sim.port, key,
                                            poll=f"{int(POLL_S * 1000)}ms")
        self.agent = harness.Agent(AGENT, config, self.work)
        self.db = os.path.join(self.work.path, "data", "tagrelay.db")

    def tearDown(self):
        self.agent.stop(signal.SIGKILL)
        self.receiver.close()
        self.sim.stop()
        self.broker.stop()
        if self._outcome_failed():
            print(f"\n--- agent log ---\n{self._read(self.agent.log)}", file=sys.stderr)
            print(f"--- broker log ---\n{self._read(self.broker.log)}", file=sys.stderr)
        self.work.close()

    def _outcome_failed(self):
        # unittest records the test method's own outcome here before tearDown runs.
        return not getattr(self._outcome, "success", True)

    @staticmethod
    def _read(path):
        try:
            with open(path) as f:
                return f.read()
        except OSError:
            return "(none)"

    def _wait_readings(self, count, timeout=20):
        harness.wait_for(lambda: len(self.receiver.seqs(DEVICE)) >= count, timeout,
                         what=f"{count} readings at the receiver")

    def _wait_unbroken_past(self, seq, timeout=30):
        def done():
            seqs = self.receiver.seqs(DEVICE)
            return seqs and seqs[-1] > seq and seqs == list(range(1, seqs[-1] + 1))
        harness.wait_for(done, timeout, what=f"unbroken sequence past {seq}")

    def test_readings_arrive_in_order_and_survive_a_broker_outage(self):
        self.agent.start()
        self._wait_readings(50)

        # Outage: the broker goes away for many poll intervals.
        down_ms = int(time.time() * 1000)
        self.broker.stop()
        time.sleep(OUTAGE_S)
        self.broker.start()
        up_ms = int(time.time() * 1000)
        seq_at_restart = self._store_last_seq()
        self._wait_unbroken_past(seq_at_restart + 50)

        rc = self.agent.stop(signal.SIGTERM)
        self.assertEqual(rc, 0, "a clean stop exits 0")
        batches, readings = self.receiver.snapshot()

        self.assertEqual(self.receiver.errors, [])
        self.assertTrue(batches)
        for b in batches:
            self.assertEqual(b["schema"], "tagrelay.telemetry.v1")
            self.assertEqual(b["gateway"], GATEWAY)
            self.assertEqual(b["device"], DEVICE)

        seqs = sorted(s for (_, s) in readings)
        self.assertEqual(seqs, list(range(1, seqs[-1] + 1)), "per-device sequence is unbroken")

        ordered = [readings[(DEVICE, s)] for s in seqs]
        for r in ordered:
            self.assertEqual(r["q"], "good", r)
            self.assertNotIn("err", r)
        counters = [r["v"] for r in ordered if r["tag"] == "counter"]
        self.assertGreater(len(counters), 40)
        steps = {b - a for a, b in zip(counters, counters[1:])}
        self.assertEqual(steps, {1}, "every poll of the counter arrived, none lost or repeated")
        ts = [r["ts"] for r in ordered]
        self.assertEqual(ts, sorted(ts), "acquisition timestamps follow the sequence")
        self.assertEqual({r["v"] for r in ordered if r["tag"] == "negative"}, {-1234})
        self.assertEqual({r["v"] for r in ordered if r["tag"] == "reference"}, {230.5})
        for r in ordered:
            if r["tag"] == "temperature":
                self.assertAlmostEqual(r["v"] * 10, round(r["v"] * 10), places=6)
                self.assertTrue(18.0 <= r["v"] <= 25.0, r)

        # Live batches arrive in sequence order; the backlog is replayed flagged historical.
        live_first = [b["seq_first"] for b in batches if not b["historical"]]
        self.assertEqual(live_first, sorted(live_first), "live batches in order")
        during_outage = [r for r in ordered if down_ms + 300 <= r["ts"] <= up_ms - 300]
        polls_in_outage = (OUTAGE_S - 0.6) / POLL_S
        self.assertGreaterEqual(len(during_outage), 5 * polls_in_outage * 0.5,
                                "readings polled during the outage reached the receiver")
        self.assertTrue(all(r["historical"] for r in during_outage),
                        "readings polled during the outage are flagged historical")

        # The store agrees: every polled sequence number is there, and every row
        # marked delivered did reach the receiver.
        with sqlite3.connect(self.db) as db:
            next_seq = db.execute("SELECT next_seq FROM devices WHERE name = ?", (DEVICE,)).fetchone()[0]
            integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        self.assertEqual(integrity, "ok")
        rows = store_peek.readings(self.db, DEVICE)
        stored = [r["seq"] for r in rows]
        self.assertEqual(stored, list(range(1, next_seq)), "store holds every polled sequence number")
        # The store's chunks, decoded here independently of the agent, hold what
        # the receiver got.
        for r in rows:
            got = readings.get((DEVICE, r["seq"]))
            if got is not None:
                self.assertEqual((got["tag"], got["ts"], got["v"], got["q"]),
                                 (r["tag"], r["ts"], r["v"], r["q"]))
        delivered = {r["seq"] for r in rows if r["delivered"]}
        self.assertTrue(delivered <= set(seqs), "nothing is marked delivered that was not received")
        self.assertTrue(set(seqs) <= set(stored))

    def test_restart_resumes_without_loss(self):
        self.agent.start()
        self._wait_readings(30)
        self.assertEqual(self.agent.stop(signal.SIGTERM), 0)
        last = self._store_last_seq()
        self.agent.start()
        self._wait_unbroken_past(last + 20)
        self.assertEqual(self.agent.stop(signal.SIGTERM), 0)
        seqs = self.receiver.seqs(DEVICE)
        self.assertEqual(seqs, list(range(1, seqs[-1] + 1)), "no gap across the restart")
        stored = [r["seq"] for r in store_peek.readings(self.db, DEVICE)]
        self.assertEqual(len(stored), len(set(stored)), "no sequence number was handed out twice")

    def _store_last_seq(self):
        with sqlite3.connect(self.db) as db:
            row = db.execute("SELECT next_seq - 1 FROM devices WHERE name = ?", (DEVICE,)).fetchone()
        return row[0] if row else 0


class CliTest(unittest.TestCase):
    def setUp(self):
        self.work = harness.Workdir()

    def tearDown(self):
        self.work.close()

    def run_cli(self, *args):
        return subprocess.run([AGENT, *args], capture_output=True, text=True, timeout=20)

    def test_version(self):
        r = self.run_cli("version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^tagrelay \d+\.\d+\.\d+")

    def test_check_config_reports_every_error_with_its_position(self):
        path = self.work.file("bad.toml", "\n".join([
            '[gateway]',
            'id = "gw/1"',
            '[uplink]',
            'url = "mqtt://broker:1883"',
            'batch_max_readings = 0',
            '[[bus]]',
            'name = "b"',
            'type = "tcp"',
            'host = "10.0.0.1"',
            'prot = 502',
            '[[device]]',
            'id = "d"',
            'bus = "nope"',
            '  [[device.tag]]',
            '  name = "t"',
            '  address = 0',
            '',
        ]))
        r = self.run_cli("check-config", "--config", path)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"{path}:2:6: error: [gateway].id", r.stderr)
        self.assertIn(f"{path}:4:7: error: [uplink].url 'mqtt://broker:1883' has no TLS", r.stderr)
        self.assertIn(f"{path}:5:22: error: [uplink].batch_max_readings", r.stderr)
        self.assertIn(f"{path}:10:1: error: unknown key 'prot' in [[bus]] (hint: did you mean 'port'?)",
                      r.stderr)
        self.assertIn(f"{path}:13:7: error: device 'd' is on bus 'nope'", r.stderr)
        self.assertIn("5 error(s)", r.stderr)

    def test_check_config_accepts_the_shipped_example(self):
        example = os.path.join(os.path.dirname(__file__), "..", "..", "etc", "tagrelay.toml")
        key = self.work.file("gateway.key", "secret\n", mode=0o600)
        with open(example) as f:
            text = f.read().replace("/etc/tagrelay/keys/gateway.key", key)
        path = self.work.file("example.toml", text)
        r = self.run_cli("check-config", "--config", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(": ok", r.stdout)

    def test_a_bad_config_never_touches_the_store(self):
        data = os.path.join(self.work.path, "data")
        os.mkdir(data)
        db = os.path.join(data, "tagrelay.db")
        with open(db, "wb") as f:
            f.write(b"not a database, and it must stay exactly so\n")
        path = self.work.file("bad.toml", f'[gateway]\nid = "gw"\ndata_dir = "{data}"\n[uplink]\n')
        r = self.run_cli("run", "--config", path)
        self.assertEqual(r.returncode, 1, r.stderr)
        with open(db, "rb") as f:
            self.assertEqual(f.read(), b"not a database, and it must stay exactly so\n")
        self.assertEqual(sorted(os.listdir(data)), ["tagrelay.db"], "nothing moved, nothing created")

    def test_unknown_command_is_bad_input(self):
        r = self.run_cli("frobnicate")
        self.assertEqual(r.returncode, 1)
        self.assertIn("unknown command", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
