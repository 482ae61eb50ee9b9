"""Modbus acquisition end to end: the real agent against simulated devices over
Modbus TCP and over RTU through a socat pty pair, several unit ids per bus with
one of them dead, and the probe command.

No broker runs here: the agent keeps every reading in its store, which the
tests read after stopping it.

Environment: TAGRELAY_BIN, TAGRELAY_SIM and TAGRELAY_RTU_SIM name the built
binaries (ctest sets them).
"""

import os
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import store_peek  # noqa: E402

AGENT = os.environ.get("TAGRELAY_BIN", "build/agent/tagrelay")
SIM = os.environ.get("TAGRELAY_SIM", "build/tests/tagrelay-modbus-sim")
RTU_SIM = os.environ.get("TAGRELAY_RTU_SIM", "build/tests/tagrelay-modbus-rtu-sim")


def config_head(work, extra=""):
    return f"""
[gateway]
id = "gw-modbus"
data_dir = "{work.path}/data"

[store]
commit_interval = "50ms"

[uplink]
url = "mqtt://127.0.0.1:{harness.free_port()}"
insecure = true
{extra}
"""


def device(dev_id, bus, unit, poll, tags):
    out = f"""
[[device]]
id = "{dev_id}"
bus = "{bus}"
unit = {unit}
poll = "{poll}"
"""
    for name, keys in tags:
        out += f"""
  [[device.tag]]
  name = "{name}"
{keys}
"""
    return out


def readings(db_path, dev_id, tag):
    """(ts, quality, value, err) of one tag, in acquisition order; quality 0 is good."""
    codes = {"good": 0, "bad": 1, "uncertain": 2}
    return [(r["ts"], codes[r["q"]], r["v"], r["err"] or None)
            for r in store_peek.readings(db_path, dev_id) if r["tag"] == tag]


def good_rate(rows, since_ms):
    """Good readings per second from `since_ms` to the last reading."""
    good = [r for r in rows if r[1] == 0 and r[0] >= since_ms]
    if len(good) < 2:
        return 0.0
    return (len(good) - 1) / ((good[-1][0] - good[0][0]) / 1000.0)


class ModbusTest(unittest.TestCase):
    def setUp(self):
        self.work = harness.Workdir(prefix="tagrelay-modbus-")
        self.procs = []
        self.agent = None

    def tearDown(self):
        if self.agent is not None:
            self.agent.stop(signal.SIGKILL)
            if not getattr(self._outcome, "success", True):
                print(f"\n--- agent log ---\n{self.agent.log_text()}", file=sys.stderr)
        for p in reversed(self.procs):
            harness.stop_process(p)
            if p.stdout:
                p.stdout.close()
        self.work.close()

    def start(self, args, **kw):
        p = subprocess.Popen(args, **kw)
        self.procs.append(p)
        return p

    def run_agent(self, config_text, seconds):
        config = self.work.file("tagrelay.toml", config_text, mode=0o644)
        check = subprocess.run([AGENT, "check-config", "--config", config],
                               capture_output=True, text=True)
        self.assertEqual(check.returncode, 0, check.stderr)
        self.agent = harness.Agent(AGENT, config, self.work)
        self.agent.start()
        started = int(time.time() * 1000)
        time.sleep(seconds)
        self.assertEqual(self.agent.stop(), 0)
        return os.path.join(self.work.path, "data", "tagrelay.db"), started

    def test_tcp_units_keep_their_rate_while_one_is_dead(self):
        dead = self.start([SIM, "--port", "0", "--dead-unit", "3"], stdout=subprocess.PIPE, text=True)
        port = int(dead.stdout.readline().split()[2])
        tags = [("counter", 'address = 0'), ("reference", 'register = 30001\n  type = "float32"')]
        text = config_head(self.work) + f"""
[[bus]]
name = "gateway"
type = "tcp"
host = "127.0.0.1"
port = {port}
timeout = "200ms"
"""
        for unit in (1, 2, 3):
            text += device(f"unit-{unit}", "gateway", unit, "100ms", tags)
        db, started = self.run_agent(text, 5)

        for unit in (1, 2):
            rows = readings(db, f"unit-{unit}", "reference")
            self.assertTrue(rows)
            self.assertTrue(all(r[1] == 0 and r[2] == 230.5 for r in rows[5:]), rows[:8])
            rate = good_rate(rows, started + 1500)
            self.assertGreaterEqual(rate, 9.0, f"unit {unit}: {rate:.1f} polls/s, want 10")
        dead_rows = readings(db, "unit-3", "reference")
        self.assertTrue(dead_rows)
        self.assertTrue(all(r[1] == 1 and r[2] is None and r[3] == "timeout" for r in dead_rows),
                        dead_rows[:5])
        log = self.agent.log_text()
        self.assertIn("link down", log)

    def socat_pair(self):
        a = os.path.join(self.work.path, "agent-tty")
        b = os.path.join(self.work.path, "sim-tty")
        self.start(["socat", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
                   stderr=subprocess.DEVNULL)
        harness.wait_for(lambda: os.path.exists(a) and os.path.exists(b), 10, what="socat ptys")
        return a, b

    def test_rtu_through_a_pty_pair_with_a_dead_unit(self):
        agent_tty, sim_tty = self.socat_pair()
        stats = os.path.join(self.work.path, "rtu-sim.stats")
        with open(stats, "w") as err:
            sim = self.start([RTU_SIM, "--device", sim_tty, "--units", "1,2", "--baud", "19200"],
                             stdout=subprocess.PIPE, stderr=err, text=True)
        self.assertTrue(sim.stdout.readline().startswith("listening on "))
        tags = [("counter", "address = 0"), ("r1", "address = 1"),
                ("pair", 'address = 2\n  type = "uint32"')]
        text = config_head(self.work) + f"""
[[bus]]
name = "line"
type = "rtu"
port = "{agent_tty}"
baud = 19200
parity = "none"
timeout = "150ms"
retries = 1
"""
        for unit in (1, 2, 3):
            text += device(f"rtu-{unit}", "line", unit, "100ms", tags)
        db, started = self.run_agent(text, 6)
        harness.stop_process(sim)
        with open(stats) as f:
            counts = f.read().split()
        # "requests 1:N 2:M 3:K violations V bad_crc C"
        per_unit = dict(c.split(":") for c in counts if ":" in c)
        self.assertEqual(counts[counts.index("violations") + 1], "0",
                         "the agent must keep 3.5 characters of silence between frames")
        self.assertEqual(counts[counts.index("bad_crc") + 1], "0")

        for unit in (1, 2):
            r1 = readings(db, f"rtu-{unit}", "r1")
            self.assertTrue(all(r[1] == 0 and r[2] == unit * 100 + 1 for r in r1), r1[:5])
            pair = readings(db, f"rtu-{unit}", "pair")
            self.assertEqual(pair[-1][2], ((unit * 100 + 2) << 16) + unit * 100 + 3)
            rate = good_rate(readings(db, f"rtu-{unit}", "counter"), started + 2000)
            # A dead unit that stalled the bus (150 ms, retried, every cycle) would
            # leave the live ones about 3 polls/s; 8 leaves room for a loaded machine.
            self.assertGreaterEqual(rate, 8.0, f"unit {unit}: {rate:.1f} polls/s, want 10")
        dead = readings(db, "rtu-3", "counter")
        self.assertTrue(dead and all(r[3] == "timeout" for r in dead))
        # Three polls with a retry each, then single attempts backed off 1, 2, 4 s.
        self.assertLessEqual(int(per_unit["3"]), 12, per_unit)

    def test_probe_reads_with_and_without_a_config(self):
        sim = harness.Simulator(SIM)
        self.addCleanup(sim.stop)
        out = subprocess.run([AGENT, "probe", "--tcp", f"127.0.0.1:{sim.port}", "--unit", "1",
                              "--input", "0", "--count", "2", "--type", "float32"],
                             capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("0x4366 0x8000", out.stdout)
        self.assertIn("= 230.5", out.stdout)

        refused = subprocess.run([AGENT, "probe", "--tcp", f"127.0.0.1:{sim.port}", "--unit", "1",
                                  "--holding", "100"], capture_output=True, text=True)
        self.assertEqual(refused.returncode, 2)
        self.assertIn("exception:2 (illegal data address)", refused.stdout)

        tags = [("negative", 'register = "40002"\n  type = "int16"'),
                ("temperature", 'address = 2\n  type = "int16"\n  scale = 0.1\n  unit = "degC"')]
        text = config_head(self.work) + f"""
[[bus]]
name = "sim"
type = "tcp"
host = "127.0.0.1"
port = {sim.port}
""" + device("sim-1", "sim", 1, "1s", tags)
        config = self.work.file("probe.toml", text, mode=0o644)
        out = subprocess.run([AGENT, "probe", "--config", config, "--device", "sim-1"],
                             capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("negative", out.stdout)
        self.assertIn("= -1234", out.stdout)
        self.assertRegex(out.stdout, r"temperature .* = \d+(\.\d)? degC")
        one = subprocess.run([AGENT, "probe", "--config", config, "--device", "sim-1", "--tag",
                              "negative"], capture_output=True, text=True)
        self.assertEqual(one.returncode, 0, one.stderr)
        self.assertNotIn("temperature", one.stdout)
        bad = subprocess.run([AGENT, "probe", "--config", config, "--device", "nope"],
                             capture_output=True, text=True)
        self.assertEqual(bad.returncode, 1)
        self.assertIn("no device 'nope'", bad.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
