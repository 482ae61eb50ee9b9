"""The store's disk misbehaves, with the real agent under load (five devices
polled every 50 ms):
- the disk fills up while the agent runs (a small tmpfs on its data
  directory): the store says so, polling and alarms go on, the readings wait
  in memory, and once there is room again they are written and delivered:
  nothing lost, and the alarm raised meanwhile reaches the cloud;
- a corrupt database at start: it is moved aside with a clear message, a
  fresh one starts, the cloud hears of it (a store_reset event), sequence
  numbers go on from where they were;
- a garbage WAL at start: ignored; everything committed before is delivered;
- a data directory the agent may not write (the agent run as nobody): a
  clear error naming the file, polling and alarms go on with the readings in
  memory; once the directory is the agent's, the store opens and everything
  is delivered. A data directory that turns read-only while the agent runs
  changes nothing for the files it has open.
I/O errors of single writes and syncs are injected below SQLite in
tests/unit/store_test.cpp and tests/unit/writer_test.cpp (fault VFS).

Needs root (a tmpfs, another user); skipped otherwise.
Environment: TAGRELAY_BIN and TAGRELAY_SIM name the built binaries (ctest sets them).
"""

import glob
import os
import pwd
import signal
import sqlite3
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faults  # noqa: E402
import harness  # noqa: E402
import store_peek  # noqa: E402

AGENT = os.path.abspath(os.environ.get("TAGRELAY_BIN", "build/agent/tagrelay"))
SIM = os.environ.get("TAGRELAY_SIM", "build/tests/tagrelay-modbus-sim")
GATEWAY = "gw-disk"
KEY = "disk-faults-key-7c1e"


ALARM = """
[[alarm]]
id = "counter-high"
device = "dev-1"
tag = "counter"
kind = "high"
limit = 3000
severity = "minor"
"""


def report(text):
    print(f"\n[figures] {text}", file=sys.stderr)


@unittest.skipUnless(os.geteuid() == 0, "needs root: a tmpfs and another user")
class DiskFaultTest(unittest.TestCase):
    def setUp(self):
        self.work = harness.Workdir()
        self.broker = harness.Broker(self.work, {GATEWAY: KEY, "receiver": "rx-pw"})
        self.broker.start()
        self.sim = harness.Simulator(SIM)
        self.receiver = harness.Receiver(self.broker.port, "receiver", "rx-pw")
        harness.wait_for(self.receiver.subscribed.is_set, 10, what="receiver subscription")
        self.key = self.work.file("gateway.key", KEY + "\n", mode=0o600)
        self.data = os.path.join(self.work.path, "data")
        self.db = os.path.join(self.data, "tagrelay.db")
        self.agent = None
        self.cleanups = []

    def tearDown(self):
        if self.agent:
            self.agent.stop(signal.SIGKILL)
        for close in reversed(self.cleanups):
            close()
        self.receiver.close()
        self.sim.stop()
        self.broker.stop()
        if not getattr(self._outcome, "success", True) and self.agent:
            print(f"\n--- agent log (tail) ---\n{self.agent.log_text()[-6000:]}", file=sys.stderr)
        self.work.close()

    def make_agent(self, prefix=(), extra="", broker_port=None):
        config = faults.write_load_config(
            self.work, GATEWAY, f"mqtt://127.0.0.1:{broker_port or self.broker.port}",
            self.sim.port, self.key, extra=extra)
        self.agent = harness.Agent(AGENT, config, self.work, prefix=prefix)
        return self.agent

    def stop_agent(self):
        rc = self.agent.stop(signal.SIGTERM)
        self.assertEqual(rc, 0, self.agent.log_text()[-3000:])

    def drain(self, timeout=60):
        marks = faults.next_seqs(self.db)
        harness.wait_for(lambda: faults.received_up_to(self.receiver, marks), timeout,
                         interval=0.1, what="every reading numbered so far at the receiver")
        return sum(marks.values()) - len(marks)

    def polls(self):
        return sum(d["polls"] for d in self.agent.status()["devices"])

    def test_the_disk_fills_up_while_the_agent_runs(self):
        try:
            disk = faults.SmallDisk(self.data, "8m")
        except RuntimeError as e:
            self.skipTest(str(e))
        self.cleanups.append(disk.close)
        # The simulator's counter goes up by one each poll of any device (100/s):
        # it crosses the limit some 30 s after the start, while the disk is full.
        agent = self.make_agent(extra=ALARM)
        agent.start()
        agent.wait_running()
        harness.wait_for(lambda: len(self.receiver.seqs("dev-1")) >= 50, 20, what="readings")
        self.assertEqual(agent.status()["alarms"], [])

        filled = disk.fill()
        harness.wait_for(lambda: agent.status()["store"]["failing"], 30,
                         what="the store reporting that it cannot write")
        full_at = time.monotonic()
        self.assertIn("database or disk is full", agent.log_text())
        # Polling goes on while nothing can be written.
        polls = self.polls()
        harness.wait_for(lambda: self.polls() >= polls + 100, 20, what="polls with the disk full")
        status = agent.status()
        self.assertTrue(status["store"]["failing"])
        self.assertGreater(status["store"]["failed_commits"], 0)
        self.assertIsNone(agent.proc.poll())
        # Alarms go on too: raised while nothing can be written.
        harness.wait_for(lambda: agent.status()["alarms"], 60, interval=0.5,
                         what="the alarm raised with the disk full")
        self.assertTrue(agent.status()["store"]["failing"], "the alarm came with the disk full")
        self.assertEqual(agent.status()["store"]["lost_in_memory"], 0)

        full_for = time.monotonic() - full_at
        disk.free()
        harness.wait_for(lambda: not agent.status()["store"]["failing"], 30,
                         what="the store writing again")
        self.assertRegex(agent.log_text(), r"writing again after \d+ s; 0 readings were dropped")
        total = self.drain()
        harness.wait_for(lambda: self.alarm_events("counter-high", "raised"), 20,
                         what="the alarm raised with the disk full at the receiver")
        status = agent.status()
        self.stop_agent()
        self.assertEqual(faults.losses(self.receiver, self.db), {})
        self.assertEqual(self.receiver.errors, [])
        report(f"disk full for {full_for:.0f} s ({filled} bytes of filler on an "
               f"8 MiB tmpfs): {status['store']['failed_commits']} failed commits, polling and "
               f"alarms went on, 0 dropped in memory; {total} readings, none lost")

    def alarm_events(self, alarm, state):
        with self.receiver.core.lock:
            return [r for (g, d, k, s), r in self.receiver.core.records.items()
                    if k == "alarms" and r["alarm"] == alarm and r["state"] == state]

    def test_a_corrupt_database_at_start_is_moved_aside(self):
        agent = self.make_agent()
        agent.start()
        agent.wait_running()
        harness.wait_for(lambda: len(self.receiver.seqs("dev-1")) >= 20, 20, what="readings")
        self.stop_agent()
        before = faults.next_seqs(self.db)
        # Garbage over everything but the header: SQLite opens it and finds it malformed.
        size = os.path.getsize(self.db)
        with open(self.db, "r+b") as f:
            f.seek(100)
            f.write(os.urandom(size - 100))

        agent.start()
        agent.wait_running()
        log = agent.log_text()
        self.assertRegex(log, r"the database was corrupt \(.+\); moved it to .*/corrupt-[^ ]+\.db")
        self.assertEqual(len(glob.glob(os.path.join(self.data, "corrupt-*.db"))), 1)
        harness.wait_for(lambda: self.status_events("store_reset"), 20,
                         what="the store_reset event at the receiver")
        # New readings carry on from the old numbers: a sequence number is never reused.
        harness.wait_for(lambda: max(self.receiver.seqs("dev-1")) > before["dev-1"], 20,
                         what="new readings")
        after = faults.next_seqs(self.db)
        for device, next_seq in before.items():
            stored = store_peek.seqs(self.db, device)
            self.assertTrue(stored, device)
            self.assertGreaterEqual(min(stored), next_seq, f"{device}: numbers go on")
            self.assertGreater(after[device], next_seq)
        self.stop_agent()
        self.assertEqual(self.receiver.errors, [])
        report(f"corrupt database at start: moved aside, fresh store, dev-1 went on from seq "
               f"{before['dev-1']}")

    def status_events(self, kind):
        with self.receiver.core.lock:
            return [r for (g, d, k, s), r in self.receiver.core.records.items()
                    if k == "events" and r.get("kind") == kind]

    def test_a_garbage_wal_at_start_is_ignored(self):
        # A backlog: the broker is away while the agent stores readings.
        agent = self.make_agent(broker_port=harness.free_port())
        agent.start()
        agent.wait_running()
        harness.wait_for(lambda: agent.status()["store"]["rows_committed"] >= 500, 20,
                         what="a backlog in the store")
        self.stop_agent()
        backlog = faults.next_seqs(self.db)
        with open(self.db + "-wal", "wb") as f:
            f.write(os.urandom(64 * 1024))

        agent = self.make_agent()
        agent.start()
        agent.wait_running()
        harness.wait_for(lambda: faults.received_up_to(self.receiver, backlog), 60, interval=0.1,
                         what="the backlog from before the garbage WAL")
        self.assertFalse(glob.glob(os.path.join(self.data, "corrupt-*")),
                         "a garbage WAL is no reason to move the database aside")
        self.drain()
        self.stop_agent()
        with sqlite3.connect(self.db) as db:
            self.assertEqual(db.execute("PRAGMA integrity_check").fetchone()[0], "ok")
        self.assertEqual(faults.losses(self.receiver, self.db), {})
        report(f"garbage WAL (64 KiB) at start: ignored; the backlog of "
               f"{sum(backlog.values()) - len(backlog)} readings delivered, none lost")

    def test_a_data_directory_the_agent_may_not_write(self):
        nobody = pwd.getpwnam("nobody")
        os.chmod(self.work.path, 0o755)
        os.chown(self.work.path, nobody.pw_uid, nobody.pw_gid)  # the log and status socket
        os.chown(self.key, nobody.pw_uid, nobody.pw_gid)
        os.makedirs(self.data, mode=0o755)  # root's
        as_nobody = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
                     "--clear-groups", "--"]
        # The simulator's counter rises by one per poll of any device (100/s).
        agent = self.make_agent(prefix=as_nobody, extra=ALARM.replace("3000", "600"))
        agent.start()
        agent.wait_running()
        harness.wait_for(lambda: not agent.status()["store"]["open"], 10,
                         what="the status saying the store is not open")
        log = agent.log_text()
        self.assertIn(f"open store {self.db}: ", log)
        self.assertIn("unable to open database file", log)
        self.assertIn("polling and alarms go on", log)
        self.assertEqual(os.listdir(self.data), [])
        # Polling and alarms go on; the readings wait in memory.
        polls = self.polls()
        harness.wait_for(lambda: self.polls() >= polls + 200, 20, what="polls without a store")
        harness.wait_for(lambda: agent.status()["alarms"], 30, interval=0.5,
                         what="the alarm raised without a store")
        status = agent.status()
        self.assertFalse(status["store"]["open"])
        self.assertGreater(status["store"]["in_memory"], 0)
        self.assertEqual(status["store"]["lost_in_memory"], 0)
        self.assertEqual(self.receiver.seqs("dev-1"), [])
        self.assertIsNone(agent.proc.poll())
        text = subprocess.run([AGENT, "status", "--socket", agent.status_socket],
                              capture_output=True, text=True, timeout=10, check=True).stdout
        self.assertIn("NOT OPEN", text)

        # The directory is made the agent's: the store opens, what waited in memory is
        # written and delivered, the alarm too.
        held = status["store"]["in_memory"]
        os.chown(self.data, nobody.pw_uid, nobody.pw_gid)
        harness.wait_for(lambda: agent.status()["store"]["open"], 20, what="the store opening")
        self.assertRegex(agent.log_text(), r"opened .*tagrelay.db; \d+ readings kept in memory")
        self.drain()
        harness.wait_for(lambda: self.alarm_events("counter-high", "raised"), 20,
                         what="the alarm raised without a store at the receiver")
        self.assertGreaterEqual(min(self.receiver.seqs("dev-1")), 1)

        # Then it turns read-only under the agent: the files it has open go on.
        os.chmod(self.data, 0o555)
        committed = agent.status()["store"]["rows_committed"]
        harness.wait_for(lambda: agent.status()["store"]["rows_committed"] >= committed + 500, 20,
                         what="commits in a read-only directory")
        self.assertFalse(agent.status()["store"]["failing"])
        os.chmod(self.data, 0o755)
        total = self.drain()
        self.stop_agent()
        self.assertEqual(faults.losses(self.receiver, self.db), {})
        self.assertEqual(self.receiver.errors, [])
        report(f"data directory not writable: polled on, alarm raised, {held} readings held in "
               f"memory; once writable, {total} readings in all, none lost")


if __name__ == "__main__":
    unittest.main(verbosity=2)
