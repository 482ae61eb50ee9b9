"""The gateway against a scripted broker (scripted_broker.py) that withholds,
reorders or rejects (0x87) acknowledgements, or drops the connection between
PUBLISH and PUBACK. After a clean stop the store's delivered flags must be
exactly the readings the broker acknowledged with a reason code below 0x80:
nothing is marked delivered that was not acknowledged, and nothing
acknowledged is left unmarked.

Environment: TAGRELAY_BIN and TAGRELAY_SIM name the built binaries (ctest sets them).
"""

import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import store_peek  # noqa: E402
import scripted_broker as sb  # noqa: E402

AGENT = os.environ.get("TAGRELAY_BIN", "build/agent/tagrelay")
SIM = os.environ.get("TAGRELAY_SIM", "build/tests/tagrelay-modbus-sim")
GATEWAY = "gw-script"
DEVICE = "sim-1"


class ScriptedBrokerTest(unittest.TestCase):
    def setUp(self):
        self.work = harness.Workdir()
        self.sim = harness.Simulator(SIM)
        self.key = self.work.file("gateway.key", "scripted-key\n", mode=0o600)
        self.db = os.path.join(self.work.path, "data", "tagrelay.db")
        self.broker = None
        self.agent = None

    def tearDown(self):
        if self.agent:
            self.agent.stop(signal.SIGKILL)
        if self.broker:
            self.broker.close()
        self.sim.stop()
        self.work.close()

    def start(self, policy, max_inflight=4):
        self.broker = sb.ScriptedBroker(policy)
        config = harness.write_agent_config(
            self.work, GATEWAY, self.broker.port, self.sim.port, self.key, poll="50ms",
            linger="100ms",
            extra_uplink=(f"max_inflight = {max_inflight}\nbatch_max_readings = 20\n"
                          'reconnect_min = "100ms"\nreconnect_max = "300ms"'))
        self.agent = harness.Agent(AGENT, config, self.work)
        self.agent.start()

    def wait(self, predicate, what, timeout=20):
        try:
            harness.wait_for(predicate, timeout, what=what)
        except TimeoutError:
            print(self.agent.log_text(), file=sys.stderr)
            raise

    def stop_and_check(self):
        """Stops the agent cleanly and compares the store with the broker's acks."""
        self.assertEqual(self.agent.stop(signal.SIGTERM), 0)
        self.agent = None
        rows = sorted((r["seq"], r["delivered"]) for r in store_peek.readings(self.db))
        delivered = {s for s, d in rows if d}
        acked = self.broker.acked_seqs(DEVICE)
        self.assertTrue(delivered <= acked,
                        f"marked delivered without an ack: {sorted(delivered - acked)[:20]}")
        self.assertEqual(delivered, acked, "every acknowledged chunk is marked delivered")
        self.assertEqual([s for s, _ in rows], list(range(1, len(rows) + 1)))
        return delivered, {s for s, _ in rows}

    def test_rejected_acks_leave_rows_undelivered_until_accepted(self):
        refused = []

        def policy(p, broker):
            # The first six telemetry batches are refused as not authorized.
            if p.telemetry and len(refused) < 6:
                refused.append(p.json()["seq_first"])
                return (sb.ACK, 0x87)
            return (sb.ACK, 0)
        self.start(policy)
        self.wait(lambda: len(self.broker.acked_seqs(DEVICE)) > 100, "acks after the refusals")
        delivered, stored = self.stop_and_check()
        self.assertEqual(len(refused), 6)
        # Each refused batch went out again and was then accepted.
        for first in refused:
            self.assertIn(first, delivered)
        self.assertIn("with reason 0x87", self.read_log())
        self.assertEqual(self.broker.sessions, 1, "a refusal does not end the session")

    def test_withheld_acks_then_a_new_session(self):
        def policy(p, broker):
            # Session 1 withholds every second telemetry ack; later sessions ack all.
            if p.telemetry and p.session == 1 and p.mid % 2 == 0:
                return sb.WITHHOLD
            return (sb.ACK, 0)
        self.start(policy)
        self.wait(lambda: any(p.outcome == "withheld" for p in self.broker.telemetry()),
                  "a withheld ack")
        time.sleep(0.5)
        delivered_now = store_peek.seqs(self.db, DEVICE, delivered=True)
        withheld = set()
        for p in self.broker.telemetry():
            if p.outcome == "withheld":
                b = p.json()
                withheld.update(range(b["seq_first"], b["seq_last"] + 1))
        self.assertFalse(delivered_now & withheld, "a withheld batch is not marked delivered")
        # The window fills with unacked batches; a new session frees them.
        self.broker.drop_connection()
        self.wait(lambda: withheld <= self.broker.acked_seqs(DEVICE),
                  "the withheld batches, resent and acked in a later session")
        self.stop_and_check()

    def test_acks_in_reverse_order(self):
        def policy(p, broker):
            if p.telemetry:
                return sb.HOLD
            return (sb.ACK, 0)
        self.start(policy, max_inflight=5)
        for _ in range(4):
            self.wait(lambda: self.broker.held() == 5, "a full window of held batches")
            self.broker.release_held(order=reversed)
        self.broker.policy = lambda p, b: (sb.ACK, 0)
        self.broker.release_held()
        self.wait(lambda: len(self.broker.acked_seqs(DEVICE)) >= 80, "acked readings")
        delivered, _ = self.stop_and_check()
        self.assertGreaterEqual(len(delivered), 80)

    def test_connection_cut_between_publish_and_puback(self):
        cut = []

        def policy(p, broker):
            # Every fifth telemetry publish of the first sessions: drop the line instead of acking.
            if p.telemetry and len(cut) < 3 and len(broker.telemetry()) % 5 == 0:
                cut.append(p.json())
                return sb.CUT
            return (sb.ACK, 0)
        self.start(policy)
        def resent():
            acked = self.broker.acked_seqs(DEVICE)
            return len(cut) == 3 and all(
                set(range(b["seq_first"], b["seq_last"] + 1)) <= acked for b in cut)
        self.wait(resent, "three cuts, each cut batch resent and acked")
        delivered, stored = self.stop_and_check()
        self.assertGreaterEqual(self.broker.sessions, 4)
        for b in cut:
            seqs = set(range(b["seq_first"], b["seq_last"] + 1))
            self.assertTrue(seqs <= delivered, "a batch cut before its ack was sent again")
        # Resent batches after a cut are replayed as historical.
        historical = [p for p in self.broker.telemetry() if p.session > 1 and p.json()["historical"]]
        self.assertTrue(historical)

    def read_log(self):
        with open(os.path.join(self.work.path, "agent.log")) as f:
            return f.read()


if __name__ == "__main__":
    unittest.main(verbosity=2)
