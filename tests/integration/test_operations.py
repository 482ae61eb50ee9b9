"""Operations, with the real binary: sd_notify (READY, STATUS, WATCHDOG,
RELOADING, STOPPING) to a notification socket of the test's own, `tagrelay
status` over the status socket, /metrics, and SIGHUP reloads: a valid config is
applied without losing buffered data, an invalid one leaves the running config
in force.

Environment: TAGRELAY_BIN and TAGRELAY_SIM name the built binaries (ctest sets them).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

AGENT = os.environ.get("TAGRELAY_BIN", "build/agent/tagrelay")
SIM = os.environ.get("TAGRELAY_SIM", "build/tests/tagrelay-modbus-sim")
GATEWAY = "gw-ops"
GATEWAY_KEY = "k3y-for-gw-ops-0123456789"

SECOND_DEVICE = """
[[device]]
id = "sim-2"
bus = "sim"
unit = 2
poll = "100ms"

  [[device.tag]]
  name = "counter"
  address = 0
  type = "uint16"
  description = "the simulator's poll counter"
"""


class NotifySocket:
    """A datagram socket standing in for systemd's notification socket."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.path = path
        self.messages = []

    def poll(self):
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                return self.messages

    def wait_for(self, predicate, timeout, what):
        return harness.wait_for(lambda: predicate(self.poll()), timeout, interval=0.01, what=what)

    def close(self):
        self.sock.close()


class OperationsTest(unittest.TestCase):
    def setUp(self):
        self.work = harness.Workdir()
        self.broker = harness.Broker(self.work, {GATEWAY: GATEWAY_KEY, "receiver": "receiver-pw"})
        self.broker.start()
        self.sim = harness.Simulator(SIM)
        self.receiver = harness.Receiver(self.broker.port, "receiver", "receiver-pw")
        harness.wait_for(self.receiver.subscribed.is_set, 10, what="receiver subscription")
        self.key = self.work.file("gateway.key", GATEWAY_KEY + "\n", mode=0o600)
        self.socket_path = os.path.join(self.work.path, "status.sock")
        self.http_port = harness.free_port()
        self.config = self.write_config()
        self.notify = NotifySocket(os.path.join(self.work.path, "notify.sock"))
        self.log = os.path.join(self.work.path, "agent.log")
        self.proc = None

    def tearDown(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.notify.close()
        self.receiver.close()
        self.sim.stop()
        self.broker.stop()
        if not getattr(self._outcome, "success", True):
            print(f"\n--- agent log ---\n{self.log_text()}", file=sys.stderr)
        self.work.close()

    def write_config(self, extra="", status=True):
        path = harness.write_agent_config(self.work, GATEWAY, self.broker.port, self.sim.port,
                                          self.key)
        with open(path, "a") as f:
            if status:
                f.write(f'\n[status]\nlisten = "127.0.0.1:{self.http_port}"\n'
                        f'socket = "{self.socket_path}"\n')
            f.write(extra)
        return path

    def start(self, watchdog_usec=1_000_000):
        env = dict(os.environ, NOTIFY_SOCKET=self.notify.path, WATCHDOG_USEC=str(watchdog_usec))
        env.pop("WATCHDOG_PID", None)
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen([AGENT, "run", "--config", self.config],
                                         stdout=subprocess.DEVNULL, stderr=log, env=env)
        self.notify.wait_for(lambda m: any(x.startswith("READY=1") for x in m), 20, "READY=1")

    def stop(self):
        rc = harness.stop_process(self.proc, signal.SIGTERM, 20)
        self.proc = None
        return rc

    def log_text(self):
        try:
            with open(self.log) as f:
                return f.read()
        except OSError:
            return ""

    def cli(self, *args):
        return subprocess.run([AGENT, *args], capture_output=True, text=True, timeout=20)

    def status(self):
        r = self.cli("status", "--json", "--socket", self.socket_path)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def device(self, status, device_id):
        return next(d for d in status["devices"] if d["id"] == device_id)

    def sighup(self, config_text=None):
        if config_text is not None:
            with open(self.config, "w") as f:
                f.write(config_text)
        before = len(self.notify.poll())
        self.proc.send_signal(signal.SIGHUP)
        self.notify.wait_for(lambda m: any(x.startswith("READY=1") for x in m[before:]), 30,
                             "READY=1 after the reload")
        return self.notify.messages[before:]

    def test_notifications_ready_status_watchdog_reload_stop(self):
        self.start(watchdog_usec=400_000)
        ready = next(m for m in self.notify.messages if m.startswith("READY=1"))
        self.assertRegex(ready, r"^READY=1\nSTATUS=\d/1 devices ok, uplink ")
        # WATCHDOG=1 every half interval (200 ms) while every worker shows progress.
        self.notify.wait_for(lambda m: m.count("WATCHDOG=1") >= 5, 10, "5 watchdog pings")
        # STATUS= follows the state: the device and the uplink come up.
        harness.wait_for(lambda: self.device(self.status(), "sim-1")["link"] == "ok", 10,
                         what="device ok")
        self.notify.wait_for(
            lambda m: any(x.startswith("STATUS=1/1 devices ok, uplink connected") or
                          x.startswith("READY=1\nSTATUS=1/1 devices ok, uplink connected")
                          for x in m), 15, "STATUS= with the device ok and the uplink up")

        # Plain pings may come at any moment between the others.
        got = [m for m in self.sighup() if m != "WATCHDOG=1"]
        self.assertTrue(got[0].startswith("RELOADING=1\nMONOTONIC_USEC="), got)
        # The watchdog waits longer while the reload runs, then as before.
        self.assertEqual(got[1], "WATCHDOG=1\nWATCHDOG_USEC=300000000", got)
        self.assertIn("WATCHDOG=1\nWATCHDOG_USEC=400000", got)
        self.assertEqual(self.stop(), 0)
        self.assertIn("STOPPING=1\nSTATUS=stopping", self.notify.poll())
        self.assertIn("systemd watchdog on: confirming every 200 ms", self.log_text())

    def test_status_command_and_metrics(self):
        self.start()
        harness.wait_for(lambda: self.device(self.status(), "sim-1")["polls"] >= 10, 15,
                         what="10 polls in the status")
        harness.wait_for(lambda: self.status()["uplink"]["readings_acked"] > 0, 15,
                         what="acks in the status")
        s = self.status()
        self.assertEqual(s["gateway"], GATEWAY)
        self.assertEqual(s["state"], "running")
        d = self.device(s, "sim-1")
        self.assertEqual(d["link"], "ok")
        self.assertEqual(d["bus"], "sim")
        self.assertEqual(d["timeouts"], 0)
        self.assertIsNotNone(d["last_good_age_ms"])
        self.assertLess(d["last_good_age_ms"], 5000)
        self.assertTrue(s["uplink"]["connected"])
        self.assertEqual(s["alarms"], [])
        self.assertTrue(all(not w["stalled"] for w in s["workers"]), s["workers"])
        self.assertEqual({w["name"] for w in s["workers"]},
                         {"poller sim", "store writer", "uplink", "status"})
        harness.wait_for(lambda: self.device(self.status(), "sim-1")["poll_rate"] > 5, 10,
                         what="a poll rate near 10/s")

        table = self.cli("status", "--socket", self.socket_path)
        self.assertEqual(table.returncode, 0, table.stderr)
        self.assertRegex(table.stdout, r"\nsim-1 +sim +ok +")
        self.assertIn("gateway gw-ops  running", table.stdout)
        self.assertIn("alarms  none active", table.stdout)

        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5) as r:
            self.assertEqual(r.headers["Content-Type"], "text/plain; version=0.0.4; charset=utf-8")
            metrics = r.read().decode()
        polls = [float(line.split()[-1]) for line in metrics.splitlines()
                 if line.startswith('tagrelay_device_polls_total{device="sim-1"}')]
        self.assertEqual(len(polls), 1, metrics)
        self.assertGreaterEqual(polls[0], 10)
        self.assertIn("tagrelay_uplink_connected 1\n", metrics)
        self.assertIn('tagrelay_device_link{device="sim-1",bus="sim",state="ok"} 1\n', metrics)

        self.assertEqual(self.stop(), 0)
        gone = self.cli("status", "--socket", self.socket_path)
        self.assertEqual(gone.returncode, 2)
        self.assertIn("is the agent running?", gone.stderr)

    def test_reload_applies_a_new_config_without_losing_buffered_data(self):
        self.start()
        harness.wait_for(lambda: len(self.receiver.seqs("sim-1")) >= 20, 20, what="20 readings")
        # The broker goes away: readings pile up in the store, then the config changes.
        self.broker.stop()
        harness.wait_for(lambda: not self.status()["uplink"]["connected"], 10, what="disconnected")
        # A backlog to carry across the reload: 50 readings committed since.
        committed = self.status()["store"]["rows_committed"]
        harness.wait_for(lambda: self.status()["store"]["rows_committed"] >= committed + 50, 10,
                         what="a backlog in the store")
        digest = self.status()["config_digest"]
        with open(self.config) as f:
            text = f.read()
        self.sighup(text + SECOND_DEVICE)
        self.assertIn("the store stays open", self.log_text())
        s = self.status()
        self.assertNotEqual(s["config_digest"], digest)
        self.assertEqual([d["id"] for d in s["devices"]], ["sim-1", "sim-2"])
        harness.wait_for(lambda: self.device(self.status(), "sim-2")["polls"] > 5, 10,
                         what="the new device polled")

        # Now a change of the store's settings: it is committed and reopened.
        self.sighup(text.replace('commit_interval = "50ms"', 'commit_interval = "60ms"') +
                    SECOND_DEVICE)
        self.assertIn("the store's settings changed", self.log_text())

        self.broker.start()
        harness.wait_for(lambda: len(self.receiver.seqs("sim-2")) >= 10, 30,
                         what="the new device's readings")
        self.assertEqual(self.stop(), 0)
        last = self.status_after_stop_last_seq()

        def unbroken():
            seqs = self.receiver.seqs("sim-1")
            return seqs == list(range(1, last + 1))
        # Every reading of sim-1, across the outage and both reloads, arrives once.
        self.broker_catch_up(unbroken)
        self.assertGreater(last, 70)
        self.assertEqual(self.receiver.errors, [])

    def status_after_stop_last_seq(self):
        import sqlite3
        db = os.path.join(self.work.path, "data", "tagrelay.db")
        with sqlite3.connect(db) as c:
            return c.execute("SELECT next_seq - 1 FROM devices WHERE name = 'sim-1'").fetchone()[0]

    def broker_catch_up(self, done):
        # The agent stopped with everything committed; a restart delivers the rest.
        if not done():
            self.start()
            harness.wait_for(done, 30, what="every reading of sim-1 at the receiver")

    def test_an_invalid_config_leaves_the_running_one_in_force(self):
        self.start()
        harness.wait_for(lambda: self.device(self.status(), "sim-1")["polls"] >= 5, 15,
                         what="polls")
        digest = self.status()["config_digest"]
        with open(self.config) as f:
            good = f.read()
        got = self.sighup(good.replace('poll = "100ms"', 'poll = "fast"'))
        self.assertTrue(got[0].startswith("RELOADING=1"))
        log = self.log_text()
        self.assertRegex(log, r"error config: .*tagrelay.toml:\d+:\d+: error: \[\[device\]\]\.poll: "
                              r"'fast' is not a duration")
        self.assertIn(f"the running config (digest {digest}) stays in force", log)
        polls = self.device(self.status(), "sim-1")["polls"]
        harness.wait_for(lambda: self.device(self.status(), "sim-1")["polls"] > polls + 5, 10,
                         what="polling goes on")
        self.assertEqual(self.status()["config_digest"], digest)

        # Valid, but it cannot be applied (data_dir under a file): back to the running one.
        self.work.file("not-a-dir", "x")
        self.sighup(good.replace(f'data_dir = "{self.work.path}/data"',
                                 f'data_dir = "{self.work.path}/not-a-dir/data"'))
        log = self.log_text()
        self.assertIn("cannot apply the new config", log)
        self.assertIn("going back to the running config", log)
        self.assertEqual(self.status()["config_digest"], digest)
        polls = self.device(self.status(), "sim-1")["polls"]
        harness.wait_for(lambda: self.device(self.status(), "sim-1")["polls"] > polls + 5, 10,
                         what="polling goes on after the failed reload")
        self.assertEqual(self.stop(), 0)


if __name__ == "__main__":
    unittest.main()
