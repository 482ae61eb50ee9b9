"""The supervisor under faults, with the real agent under load (five devices
polled every 50 ms) and a notification socket of the test's own:
- SIGHUP after SIGHUP with broken configs (a TOML syntax error, a bad
  value, a config that parses but cannot be applied, a missing file): the
  running config stays in force, polling and delivery go on, nothing lost;
- a worker thread hung (stopped by ptrace while the rest of the process runs
  on): once it has shown no progress for its stall limit, WATCHDOG=1 stops,
  so that systemd restarts the service; when the thread goes on, so do the
  confirmations.

Environment: TAGRELAY_BIN and TAGRELAY_SIM name the built binaries (ctest sets them).
"""

import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faults  # noqa: E402
import harness  # noqa: E402
from test_operations import NotifySocket  # noqa: E402

AGENT = os.environ.get("TAGRELAY_BIN", "build/agent/tagrelay")
SIM = os.environ.get("TAGRELAY_SIM", "build/tests/tagrelay-modbus-sim")
GATEWAY = "gw-supervision"
KEY = "supervision-key-5be0"
STALL_LIMIT_S = 120  # kStallFloor in agent/watchdog.h: the uplink's stall limit


def report(text):
    print(f"\n[figures] {text}", file=sys.stderr)


class SupervisionTest(unittest.TestCase):
    def setUp(self):
        self.work = harness.Workdir()
        self.broker = harness.Broker(self.work, {GATEWAY: KEY, "receiver": "rx-pw"})
        self.broker.start()
        self.sim = harness.Simulator(SIM)
        self.receiver = harness.Receiver(self.broker.port, "receiver", "rx-pw")
        harness.wait_for(self.receiver.subscribed.is_set, 10, what="receiver subscription")
        self.key = self.work.file("gateway.key", KEY + "\n", mode=0o600)
        self.db = os.path.join(self.work.path, "data", "tagrelay.db")
        self.notify = NotifySocket(os.path.join(self.work.path, "notify.sock"))
        self.agent = None
        self.frozen = None

    def tearDown(self):
        if self.frozen:
            self.frozen.release()
        if self.agent:
            self.agent.stop(signal.SIGKILL)
        self.notify.close()
        self.receiver.close()
        self.sim.stop()
        self.broker.stop()
        if not getattr(self._outcome, "success", True) and self.agent:
            print(f"\n--- agent log (tail) ---\n{self.agent.log_text()[-6000:]}", file=sys.stderr)
        self.work.close()

    def start_agent(self, watchdog_usec):
        self.config = faults.write_load_config(self.work, GATEWAY,
                                               f"mqtt://127.0.0.1:{self.broker.port}",
                                               self.sim.port, self.key)
        self.agent = harness.Agent(AGENT, self.config, self.work, env={
            "NOTIFY_SOCKET": self.notify.path, "WATCHDOG_USEC": str(watchdog_usec)})
        self.agent.start()
        self.notify.wait_for(lambda m: any(x.startswith("READY=1") for x in m), 30, "READY=1")

    def polls(self):
        self.notify.poll()  # the agent blocks on a full notification socket, as it would on systemd's
        return sum(d["polls"] for d in self.agent.status()["devices"])

    def test_broken_configs_on_sighup_under_load_change_nothing(self):
        self.start_agent(watchdog_usec=2_000_000)
        harness.wait_for(lambda: len(self.receiver.seqs("dev-1")) >= 50, 20, what="readings")
        digest = self.agent.status()["config_digest"]
        with open(self.config) as f:
            good = f.read()
        self.work.file("not-a-dir", "x")
        broken = [
            ("a TOML syntax error", good.replace("[uplink]", "[uplink"),
             r"error config: .*tagrelay\.toml:\d+:\d+: "),
            ("a bad value", good.replace('poll = "50ms"', 'poll = "fast"', 1),
             r"'fast' is not a duration"),
            ("a config that cannot be applied",
             good.replace(f'data_dir = "{self.work.path}/data"',
                          f'data_dir = "{self.work.path}/not-a-dir/data"'),
             r"cannot apply the new config"),
            ("no config file", None, r"error config: .*tagrelay\.toml"),
        ]
        started, numbered_before = time.monotonic(), faults.next_seqs(self.db)
        for what, text, message in broken:
            if text is None:
                os.unlink(self.config)
            else:
                with open(self.config, "w") as f:
                    f.write(text)
            before = len(self.notify.poll())
            log_before = len(self.agent.log_text())
            self.agent.proc.send_signal(signal.SIGHUP)
            self.notify.wait_for(lambda m: any(x.startswith("READY=1") for x in m[before:]), 60,
                                 f"READY=1 after the reload with {what}")
            log = self.agent.log_text()[log_before:]
            self.assertRegex(log, message, what)
            self.assertRegex(log, r"stays in force|going back to the running config", what)
            self.assertIsNone(self.agent.proc.poll(), what)
            status = self.agent.status()
            self.assertEqual(status["config_digest"], digest, what)
            self.assertEqual(status["state"], "running", what)
            polls = self.polls()
            harness.wait_for(lambda: self.polls() >= polls + 50, 20,
                             what=f"polling after the reload with {what}")
        took = time.monotonic() - started
        numbered = sum(faults.next_seqs(self.db).values()) - sum(numbered_before.values())
        with open(self.config, "w") as f:
            f.write(good)

        marks = faults.next_seqs(self.db)
        harness.wait_for(lambda: faults.received_up_to(self.receiver, marks), 60, interval=0.1,
                         what="every reading at the receiver")
        self.assertEqual(self.agent.stop(signal.SIGTERM), 0)
        self.agent = None
        self.assertEqual(faults.losses(self.receiver, self.db), {})
        self.assertEqual(self.receiver.errors, [])
        total = sum(marks.values()) - len(marks)
        report(f"4 SIGHUPs with broken configs under load in {took:.1f} s: {numbered} readings "
               f"stored meanwhile ({numbered / took:.0f}/s of 500/s polled), the running config "
               f"stayed in force; {total} readings, none lost")

    def test_a_hung_worker_stops_the_watchdog_confirmations(self):
        self.start_agent(watchdog_usec=2_000_000)  # WATCHDOG=1 every second while all is well
        harness.wait_for(lambda: len(self.receiver.seqs("dev-1")) >= 20, 20, what="readings")
        self.notify.wait_for(lambda m: m.count("WATCHDOG=1") >= 3, 10, "watchdog pings")
        (tid,) = faults.thread_ids(self.agent.proc.pid)["uplink"]
        try:
            self.frozen = faults.FrozenThread(tid)
        except OSError as e:
            self.skipTest(str(e))
        frozen_at = time.monotonic()
        # Read the notifications meanwhile: a full socket would block the agent's main thread.
        harness.wait_for(lambda: self.notify.poll() and
                         "watchdog: stalled: uplink" in self.agent.log_text(),
                         STALL_LIMIT_S + 60, interval=0.5, what="the stalled uplink in the log")
        noticed = time.monotonic() - frozen_at
        self.assertGreaterEqual(noticed, STALL_LIMIT_S - 1)
        self.assertRegex(self.agent.log_text(), r"watchdog: stalled: uplink \(no progress for "
                                                r"\d+ s\); no longer confirming the watchdog")
        # From now on, no confirmation: five ping intervals of silence.
        seen = len(self.notify.poll())
        quiet_from = time.monotonic()
        polls = self.polls()
        harness.wait_for(lambda: time.monotonic() - quiet_from >= 5, 10)
        self.assertNotIn("WATCHDOG=1", self.notify.poll()[seen:])
        self.assertGreater(self.polls(), polls, "the other workers go on")

        self.frozen.release()
        self.frozen = None
        seen = len(self.notify.poll())
        self.notify.wait_for(lambda m: "WATCHDOG=1" in m[seen:], 20, "WATCHDOG=1 again")
        self.assertIn("watchdog: every worker shows progress again", self.agent.log_text())
        self.assertEqual(self.agent.stop(signal.SIGTERM), 0)
        self.agent = None
        report(f"uplink thread hung: stall noticed after {noticed:.0f} s (limit {STALL_LIMIT_S} "
               f"s), no WATCHDOG=1 for 5 s after that, confirmations again once it went on")


if __name__ == "__main__":
    unittest.main(verbosity=2)
