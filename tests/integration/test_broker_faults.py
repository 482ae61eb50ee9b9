"""Brokers that misbehave, with the agent under load (five devices polled
every 50 ms, 500 readings/s):
- a broker that accepts TCP and never answers, first in the URL list: the
  agent gives up on it after its connect timeout and delivers to the next;
- a broker that falls silent in the middle of a session (no PUBACK, no
  PINGRESP, the connection left open): the keepalive notices, the agent
  reconnects and sends again what was not acknowledged;
- a slow broker (a proxy that lets a few KB/s through with added latency):
  the backlog waits in the store, the agent's memory stays bounded, and when
  the link is fast again everything arrives;
- broker restarts under load: each time the agent comes back by itself and
  nothing is lost;
- the line to the broker cut again and again under load (a proxy that drops
  every connection), so that cuts land between PUBLISH and PUBACK: the agent
  reconnects by itself and nothing is lost. (tests/integration/
  test_scripted_broker.py cuts exactly there, batch by batch.)
Each test prints the figures it measured (docs/reliability.md).

Environment: TAGRELAY_BIN and TAGRELAY_SIM name the built binaries (ctest
sets them); TAGRELAY_SANITIZE names the sanitizers of that build, if any.
"""

import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faults  # noqa: E402
import harness  # noqa: E402
import scripted_broker as sb  # noqa: E402
import store_peek  # noqa: E402

AGENT = os.environ.get("TAGRELAY_BIN", "build/agent/tagrelay")
SIM = os.environ.get("TAGRELAY_SIM", "build/tests/tagrelay-modbus-sim")
SANITIZED = bool(os.environ.get("TAGRELAY_SANITIZE"))
GATEWAY = "gw-faults"
KEY = "broker-faults-key-20d1"
MAX_INFLIGHT = 8


def report(text):
    print(f"\n[figures] {text}", file=sys.stderr)


class BrokerFaultTest(unittest.TestCase):
    def setUp(self):
        self.work = harness.Workdir()
        self.sim = harness.Simulator(SIM)
        self.key = self.work.file("gateway.key", KEY + "\n", mode=0o600)
        self.db = os.path.join(self.work.path, "data", "tagrelay.db")
        self.agent = None
        self.cleanups = []

    def tearDown(self):
        if self.agent:
            self.agent.stop(signal.SIGKILL)
        for close in reversed(self.cleanups):
            close()
        self.sim.stop()
        if not getattr(self._outcome, "success", True) and self.agent:
            print(f"\n--- agent log (tail) ---\n{self.agent.log_text()[-6000:]}", file=sys.stderr)
        self.work.close()

    def mosquitto(self):
        broker = harness.Broker(self.work, {GATEWAY: KEY, "receiver": "rx-pw"})
        broker.start()
        self.cleanups.append(broker.stop)
        receiver = harness.Receiver(broker.port, "receiver", "rx-pw")
        self.cleanups.append(receiver.close)
        harness.wait_for(receiver.subscribed.is_set, 10, what="receiver subscription")
        return broker, receiver

    def start_agent(self, urls, extra_uplink=""):
        config = faults.write_load_config(
            self.work, GATEWAY, urls, self.sim.port, self.key,
            extra_uplink=f"max_inflight = {MAX_INFLIGHT}\n{extra_uplink}")
        self.agent = harness.Agent(AGENT, config, self.work)
        self.agent.start()
        self.agent.wait_running()

    def stop_and_assert_nothing_lost(self, receiver):
        self.assertEqual(self.agent.stop(signal.SIGTERM), 0)
        self.agent = None
        self.assertEqual(faults.losses(receiver, self.db), {},
                         "every reading is at the receiver or still in the store")
        self.assertEqual(receiver.errors, [])

    def drain(self, receiver, timeout=60):
        """Waits until the receiver holds everything the store had numbered when called."""
        marks = faults.next_seqs(self.db)
        started = time.monotonic()
        harness.wait_for(lambda: faults.received_up_to(receiver, marks), timeout, interval=0.1,
                         what="every reading numbered so far at the receiver")
        return time.monotonic() - started, sum(marks.values()) - len(marks)

    def test_a_broker_that_accepts_tcp_and_never_answers_is_passed_over(self):
        silent = faults.SilentServer()
        self.cleanups.append(silent.close)
        broker, receiver = self.mosquitto()
        started = time.monotonic()
        self.start_agent([f"mqtt://127.0.0.1:{silent.port}", f"mqtt://127.0.0.1:{broker.port}"])
        harness.wait_for(lambda: receiver.seqs("dev-1"), 40, what="a reading through the second broker")
        first = time.monotonic() - started
        self.assertGreaterEqual(silent.accepted, 1)
        log = self.agent.log_text()
        self.assertIn(f"mqtt://127.0.0.1:{silent.port}", log)
        self.assertIn("no CONNACK within 10000 ms", log)
        _, total = self.drain(receiver)
        self.stop_and_assert_nothing_lost(receiver)
        report(f"silent broker first in the list: first publish after {first:.1f} s "
               f"(connect timeout 10 s), {total} readings, none lost")

    def test_a_broker_that_falls_silent_mid_session(self):
        silenced = []

        def policy(p, broker):
            if p.telemetry and not silenced and len(broker.telemetry()) >= 20:
                silenced.append(p)
                return sb.SILENT
            return (sb.ACK, 0)
        broker = sb.ScriptedBroker(policy)
        self.cleanups.append(broker.close)
        self.start_agent(f"mqtt://127.0.0.1:{broker.port}", extra_uplink='keepalive = "5s"')
        harness.wait_for(lambda: broker.silent_since is not None, 30, what="the broker silent")
        harness.wait_for(lambda: broker.sessions >= 2, 40, interval=0.05,
                         what="a new session after the silence")
        noticed = time.monotonic() - broker.silent_since
        withheld = set()
        for p in broker.telemetry():
            if p.outcome == "withheld" and p.json()["device"] == "dev-1":
                b = p.json()
                withheld.update(range(b["seq_first"], b["seq_last"] + 1))
        self.assertTrue(withheld, "batches went unanswered during the silence")
        harness.wait_for(lambda: withheld <= broker.acked_seqs("dev-1"), 30,
                         what="the unanswered batches sent again and acknowledged")
        self.assertEqual(self.agent.stop(signal.SIGTERM), 0)
        self.agent = None
        for device in (f"dev-{i}" for i in range(1, 6)):
            delivered = store_peek.seqs(self.db, device, delivered=True)
            stored = store_peek.seqs(self.db, device)
            acked = broker.acked_seqs(device)
            self.assertEqual(delivered, acked & stored,
                             f"{device}: delivered exactly what was acknowledged")
            everything = set(range(1, faults.next_seqs(self.db)[device]))
            self.assertEqual(everything - acked - stored, set(), f"{device}: nothing lost")
        report(f"broker silent mid-session (keepalive 5 s): new session after {noticed:.1f} s, "
               f"{len(withheld)} unanswered readings of dev-1 resent and acknowledged")

    def test_a_slow_broker_keeps_memory_bounded_and_loses_nothing(self):
        broker, receiver = self.mosquitto()
        proxy = faults.ThrottledProxy(broker.port)
        self.cleanups.append(proxy.close)
        self.start_agent(f"mqtt://127.0.0.1:{proxy.port}")
        harness.wait_for(lambda: len(receiver.seqs("dev-1")) >= 50, 20, what="readings")
        self.drain(receiver)
        pid = self.agent.proc.pid
        before = faults.sample(pid)

        # Slow: 4 KB/s each way and 50 ms per chunk, far below the 500 readings/s made.
        proxy.rate, proxy.delay = 4096, 0.05
        samples, backlog = [], 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            samples.append(faults.sample(pid))
            status = self.agent.status()
            backlog = max(backlog, status["store"]["backlog_readings"])
            self.assertLessEqual(status["uplink"]["inflight"], MAX_INFLIGHT)
            time.sleep(0.5)
        self.assertEqual(self.agent.proc.poll(), None)
        received_slow = proxy.bytes_up
        self.assertGreater(backlog, 2000, "the readings wait in the store")

        # Fast again: the backlog drains by itself.
        proxy.rate, proxy.delay = None, 0.0
        took, total = self.drain(receiver, timeout=90)
        after = faults.sample(pid)
        peak = max(s["rss_kib"] for s in samples)
        growth = peak - before["rss_kib"]
        if not SANITIZED:
            # The backlog (several thousand readings) is on disk, not in memory.
            self.assertLess(growth, 16 * 1024, f"RSS grew by {growth} KiB while the broker was slow")
            self.assertLess(peak, 64 * 1024, f"RSS peaked at {peak} KiB")
        self.assertLessEqual(after["fds"], before["fds"] + 2)
        self.assertEqual(after["threads"], before["threads"])
        self.stop_and_assert_nothing_lost(receiver)
        report(f"slow broker (4 KB/s, +50 ms per chunk, 20 s): backlog up to {backlog} readings in "
               f"the store; RSS {before['rss_kib']} KiB before, peak {peak} KiB "
               f"(+{growth} KiB); fds {before['fds']} -> {after['fds']}, threads "
               f"{before['threads']} -> {after['threads']}; {received_slow} bytes through; "
               f"drained in {took:.1f} s once fast; {total} readings, none lost")

    def test_broker_restarts_under_load(self):
        broker, receiver = self.mosquitto()
        self.start_agent(f"mqtt://127.0.0.1:{broker.port}")
        harness.wait_for(lambda: len(receiver.seqs("dev-1")) >= 50, 20, what="readings")
        recoveries = []
        for down_s in (0.5, 2.0, 1.0):
            time.sleep(1.5)
            broker.stop()
            time.sleep(down_s)
            before = len(receiver.seqs("dev-1"))
            restarted = time.monotonic()
            broker.start()
            harness.wait_for(lambda: len(receiver.seqs("dev-1")) > before, 30, interval=0.02,
                             what="readings after the broker restart")
            recoveries.append(time.monotonic() - restarted)
        took, total = self.drain(receiver)
        harness.wait_for(lambda: self.agent.status()["uplink"]["connects"] >= 4, 10,
                         what="four sessions in the status")
        self.stop_and_assert_nothing_lost(receiver)
        report(f"3 broker restarts under load: first reading after each restart in "
               f"{', '.join(f'{r:.2f}' for r in recoveries)} s; {total} readings, none lost, "
               f"{receiver.duplicates} duplicates dropped by the receiver")

    def test_the_line_cut_under_load_again_and_again(self):
        broker, receiver = self.mosquitto()
        # 30 ms more each way: a PUBACK takes a while, so that batches are in flight.
        proxy = faults.ThrottledProxy(broker.port, delay=0.03)
        self.cleanups.append(proxy.close)
        self.start_agent(f"mqtt://127.0.0.1:{proxy.port}")
        harness.wait_for(lambda: len(receiver.seqs("dev-1")) >= 50, 20, what="readings")
        pid = self.agent.proc.pid
        before = faults.sample(pid)
        recoveries = []
        for _ in range(10):
            connections = proxy.connections
            # Cut while batches are on the way: publishes in flight lose their PUBACK.
            harness.wait_for(lambda: self.agent.status()["uplink"]["inflight"] > 0, 30,
                             interval=0.005, what="batches in flight")
            proxy.cut()
            cut_at = time.monotonic()
            harness.wait_for(lambda: proxy.connections > connections, 30, interval=0.02,
                             what="a new connection after the cut")
            recoveries.append(time.monotonic() - cut_at)
        took, total = self.drain(receiver)
        after = faults.sample(pid)
        self.assertLessEqual(after["fds"], before["fds"] + 2)
        self.assertEqual(after["threads"], before["threads"])
        self.stop_and_assert_nothing_lost(receiver)
        # A cut costs at most what was in flight (batches of at most 500 readings).
        self.assertLessEqual(receiver.duplicates, 10 * MAX_INFLIGHT * 500)
        report(f"10 cuts of the line with batches in flight: reconnected after "
               f"{min(recoveries):.2f}..{max(recoveries):.2f} s; {total} readings, none lost, "
               f"{receiver.duplicates} duplicates dropped by the receiver; fds "
               f"{before['fds']} -> {after['fds']}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
