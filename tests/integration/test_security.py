"""Keys stay secret: the agent runs under load with a gateway API key and a
signing key for each device (the receiver checks every signature), connects
once with a wrong gateway key first (refused, then the right one is put in
place: keys are re-read at every connect), and then the test looks
everywhere the agent writes or shows something for the key values, whole
and in pieces of 8 characters: its log (stderr), `tagrelay status` (table and
--json), the local page (/, /status.json, /status.txt, /metrics), every file
in its data directory (the database, its WAL, the marks and whatever else is
there), and /proc/<pid>/environ and /proc/<pid>/cmdline. None may be found.

Environment: TAGRELAY_BIN and TAGRELAY_SIM name the built binaries (ctest sets them).
"""

import os
import secrets
import signal
import subprocess
import sys
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faults  # noqa: E402
import harness  # noqa: E402
import reference_receiver  # noqa: E402

AGENT = os.environ.get("TAGRELAY_BIN", "build/agent/tagrelay")
SIM = os.environ.get("TAGRELAY_SIM", "build/tests/tagrelay-modbus-sim")
GATEWAY = "gw-secrets"
DEVICES = 5


def pieces(key, size=8):
    """The key and every run of `size` characters of its random part."""
    random_part = key.split("-")[-1]
    return {key} | {random_part[i:i + size] for i in range(len(random_part) - size + 1)}


class SecretsTest(unittest.TestCase):
    def setUp(self):
        self.work = harness.Workdir()
        self.gateway_key = "gwkey-" + secrets.token_hex(16)
        self.wrong_key = "wrongkey-" + secrets.token_hex(16)
        self.device_keys = {f"dev-{i}": f"devkey{i}-" + secrets.token_hex(16)
                            for i in range(1, DEVICES + 1)}
        self.broker = harness.Broker(self.work, {GATEWAY: self.gateway_key, "receiver": "rx-pw"})
        self.broker.start()
        self.sim = harness.Simulator(SIM)
        keyring = reference_receiver.KeyRing()
        for device, key in self.device_keys.items():
            keyring.add(GATEWAY, device, key)
        self.receiver = harness.Receiver(self.broker.port, "receiver", "rx-pw", keyring=keyring)
        harness.wait_for(self.receiver.subscribed.is_set, 10, what="receiver subscription")
        self.agent = None

    def tearDown(self):
        if self.agent:
            self.agent.stop(signal.SIGKILL)
        self.receiver.close()
        self.sim.stop()
        self.broker.stop()
        if not getattr(self._outcome, "success", True) and self.agent:
            print(f"\n--- agent log (tail) ---\n{self.agent.log_text()[-6000:]}", file=sys.stderr)
        self.work.close()

    def test_no_key_appears_anywhere_the_agent_writes_or_shows(self):
        key_file = self.work.file("gateway.key", self.wrong_key + "\n", mode=0o600)
        http_port = harness.free_port()
        status_socket = os.path.join(self.work.path, "status.sock")
        config = faults.write_load_config(
            self.work, GATEWAY, f"mqtt://127.0.0.1:{self.broker.port}", self.sim.port, key_file,
            devices=DEVICES,
            extra=f'[status]\nlisten = "127.0.0.1:{http_port}"\nsocket = "{status_socket}"\n')
        with open(config) as f:
            text = f.read()
        for i, (device, key) in enumerate(self.device_keys.items(), 1):
            path = self.work.file(f"{device}.key", key + "\n", mode=0o600)
            text = text.replace(f"\nunit = {i}\n", f'\nunit = {i}\napi_key_file = "{path}"\n', 1)
        with open(config, "w") as f:
            f.write(text)
        self.agent = harness.Agent(AGENT, config, self.work)
        self.agent.start()
        self.agent.wait_running()
        # The wrong key first: the broker refuses it, the agent says so (without the key).
        harness.wait_for(lambda: "not authori" in self.agent.log_text().lower(), 20,
                         what="the refusal of the wrong key in the log")
        self.work.file("gateway.key", self.gateway_key + "\n", mode=0o600)
        harness.wait_for(lambda: all(len(self.receiver.seqs(d)) >= 50 for d in self.device_keys),
                         30, what="signed readings of every device")
        self.assertEqual(self.receiver.errors, [], "every signature checks out")

        pid = self.agent.proc.pid
        places = {}
        with open(f"/proc/{pid}/environ", "rb") as f:
            places["/proc/<pid>/environ"] = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            places["/proc/<pid>/cmdline"] = f.read()
        for args in (["status", "--json"], ["status"]):
            r = subprocess.run([AGENT, *args, "--socket", status_socket], capture_output=True,
                               timeout=20)
            self.assertEqual(r.returncode, 0, r.stderr)
            places["tagrelay " + " ".join(args)] = r.stdout + r.stderr
        for page in ("/", "/status.json", "/status.txt", "/metrics"):
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}{page}", timeout=10) as r:
                places[f"http {page}"] = r.read()
        # Every file of the data directory while the agent runs (the WAL is live),
        # then again after it stopped, and its log.
        data = os.path.join(self.work.path, "data")

        def data_files(when):
            for name in os.listdir(data):
                with open(os.path.join(data, name), "rb") as f:
                    places[f"data/{name} ({when})"] = f.read()
        data_files("running")
        self.assertEqual(self.agent.stop(signal.SIGTERM), 0)
        self.agent = None
        data_files("stopped")
        with open(os.path.join(self.work.path, "agent.log"), "rb") as f:
            places["the agent's log"] = f.read()
        self.assertTrue(any(name.startswith("data/tagrelay.db") for name in places))
        self.assertIn(b"dev-1", places["tagrelay status --json"])
        self.assertIn(b"tagrelay_uplink_connected", places["http /metrics"])

        keys = {"the gateway key": self.gateway_key, "the wrong gateway key": self.wrong_key,
                **{f"{d}'s key": k for d, k in self.device_keys.items()}}
        found = []
        for what, key in keys.items():
            for piece in pieces(key):
                for place, content in places.items():
                    if piece.encode() in content:
                        found.append(f"{what} ({piece!r}) in {place}")
        self.assertEqual(found, [])
        size = sum(len(c) for c in places.values())
        print(f"\n[figures] {len(keys)} keys, {sum(len(pieces(k)) for k in keys.values())} "
              f"pieces searched in {len(places)} places ({size} bytes): none found",
              file=sys.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
