"""The uplink against a real mosquitto with TLS (a CA and certificates made by
the test with the openssl command), a password file and an ACL per gateway:
- a mutual-TLS session with a signed device survives the broker being killed
  and restarted mid-stream, with nothing lost and every message verified;
- each way a connection must be refused is refused, with a clear log line, and
  nothing is marked delivered: unknown CA, wrong host name, expired certificate,
  a server that offers only TLS 1.1, a wrong API key;
- a publish the broker's ACL denies (PUBACK 0x87) leaves the rows undelivered.

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
import reference_receiver  # noqa: E402

AGENT = os.environ.get("TAGRELAY_BIN", "build/agent/tagrelay")
SIM = os.environ.get("TAGRELAY_SIM", "build/tests/tagrelay-modbus-sim")
GATEWAY = "gw-tls"
GATEWAY_KEY = "gw-tls-key-6f1d2a90c3"
DEVICE = "sim-1"
DEVICE_KEY = "sim-1-device-key-51ab77"
ACL = """user receiver
topic read tagrelay/v1/#

pattern readwrite tagrelay/v1/%u/#
"""


class TlsTestBase(unittest.TestCase):
    def setUp(self):
        self.work = harness.Workdir()
        self.pki = harness.Pki(self.work)
        self.sim = harness.Simulator(SIM)
        self.gateway_key = self.work.file("gateway.key", GATEWAY_KEY + "\n", mode=0o600)
        self.device_key = self.work.file("device.key", DEVICE_KEY + "\n", mode=0o600)
        self.agent = None
        self.brokers = []
        self.db = os.path.join(self.work.path, "data", "tagrelay.db")

    def tearDown(self):
        if self.agent:
            self.agent.stop(signal.SIGKILL)
        for b in self.brokers:
            b.stop()
        self.sim.stop()
        if not getattr(self._outcome, "success", True) and self.agent:
            print(f"\n--- agent log ---\n{self._read(self.agent.log)}", file=sys.stderr)
        self.work.close()

    @staticmethod
    def _read(path):
        try:
            with open(path) as f:
                return f.read()
        except OSError:
            return "(none)"

    def broker(self, cert_hosts=("localhost",), expired=False, require_certificate=False,
               users=None):
        cert, key = self.pki.issue(f"broker{len(self.brokers)}", cert_hosts, expired=expired)
        b = harness.Broker(self.work, users or {GATEWAY: GATEWAY_KEY, "receiver": "rx-pw"},
                           tls={"cafile": self.pki.cert, "certfile": cert, "keyfile": key,
                                "require_certificate": require_certificate},
                           acl=ACL, name=f"mosquitto{len(self.brokers)}")
        b.start()
        self.brokers.append(b)
        return b

    def start_agent(self, port, ca_file=None, host="localhost", extra_uplink="", extra_device=""):
        config = harness.write_agent_config(
            self.work, GATEWAY, port, self.sim.port, self.gateway_key, poll="100ms",
            url=f"mqtts://{host}:{port}", insecure=False,
            extra_uplink=f'ca_file = "{ca_file or self.pki.cert}"\nreconnect_min = "200ms"\n'
                         f'reconnect_max = "1s"\n{extra_uplink}',
            extra_device=extra_device)
        self.agent = harness.Agent(AGENT, config, self.work)
        self.agent.start()

    def wait_log(self, text, timeout=15):
        harness.wait_for(lambda: text in self._read(self.agent.log), timeout,
                         what=f"log line containing {text!r}")

    def delivered_count(self):
        return len(store_peek.seqs(self.db, DEVICE, delivered=True))

    def assert_refused(self, log_text):
        self.wait_log(log_text)
        harness.wait_for(lambda: os.path.exists(self.db), 10, what="the store")
        time.sleep(0.5)  # a few more polls and connect attempts
        self.assertEqual(self.delivered_count(), 0, "nothing is delivered over a refused link")
        self.assertNotIn("connected to", self._read(self.agent.log))
        self.assertNotIn(GATEWAY_KEY, self._read(self.agent.log))


class TlsSessionTest(TlsTestBase):
    def test_mutual_tls_signed_device_survives_a_killed_broker(self):
        broker = self.broker(require_certificate=True)
        rx_cert, rx_key = self.pki.issue("receiver", client=True)
        gw_cert, gw_key = self.pki.issue(GATEWAY, client=True)
        keyring = reference_receiver.KeyRing()
        keyring.add(GATEWAY, DEVICE, DEVICE_KEY)
        # The receiver needs TLS and its own certificate on this listener too.
        core = reference_receiver.ReferenceReceiver(keyring)
        sub = reference_receiver.Subscriber(core, "localhost", broker.port, "receiver", "rx-pw",
                                            ca_file=self.pki.cert, cert_file=rx_cert,
                                            key_file=rx_key)
        try:
            harness.wait_for(sub.subscribed.is_set, 10, what="receiver subscription")
            self.start_agent(broker.port,
                             extra_uplink=f'cert_file = "{gw_cert}"\nkey_file = "{gw_key}"',
                             extra_device=f'api_key_file = "{self.device_key}"')
            harness.wait_for(lambda: len(core.seqs(GATEWAY, DEVICE)) >= 50, 20,
                             what="50 readings")

            broker.stop(signal.SIGKILL)  # mid-stream, without a clean shutdown
            time.sleep(1.0)
            # A killed mosquitto may lose what it acknowledged but had not yet
            # passed on or saved: that is the broker's loss. The gateway's part
            # is that whatever was not acknowledged is still in its store.
            acked_before_kill = store_peek.seqs(self.db, DEVICE, delivered=True)
            unacked_at_kill = store_peek.seqs(self.db, DEVICE, delivered=False)
            with sqlite3.connect(self.db) as db:
                last = db.execute("SELECT next_seq - 1 FROM devices").fetchone()[0]
            # The receiver must be back before the gateway: a broker killed with
            # -9 may come back without the receiver's session, and then drops
            # what the gateway replays (and it acknowledges) until the receiver
            # subscribes again. The gateway waits, stopped, meanwhile.
            subscriptions = sub.subscriptions
            self.agent.proc.send_signal(signal.SIGSTOP)
            try:
                time.sleep(0.5)
                broker.start()
                harness.wait_for(lambda: sub.subscriptions > subscriptions, 30,
                                 what="the receiver subscribed again")
            finally:
                self.agent.proc.send_signal(signal.SIGCONT)

            def caught_up():
                seqs = set(core.seqs(GATEWAY, DEVICE))
                return unacked_at_kill <= seqs and set(range(last + 1, last + 31)) <= seqs
            try:
                harness.wait_for(caught_up, 90, what="every unacknowledged reading after the outage")
            except TimeoutError:
                seqs = set(core.seqs(GATEWAY, DEVICE))
                missing = unacked_at_kill - seqs
                acked = missing & store_peek.seqs(self.db, DEVICE, delivered=True)
                print(f"\nof those not received, acknowledged by the broker: {len(acked)}/"
                      f"{len(missing)}", file=sys.stderr)
                print(f"\nnot received: {sorted(unacked_at_kill - seqs)[:20]}; newest received "
                      f"{max(seqs)}, stored up to {last}\n{core.summary()}\n--- agent log:\n"
                      f"{self._read(self.agent.log)[-4000:]}", file=sys.stderr)
                raise
            self.assertEqual(self.agent.stop(signal.SIGTERM), 0)
            time.sleep(0.5)
        finally:
            sub.close()

        received = set(core.seqs(GATEWAY, DEVICE))
        missing = set(range(1, max(received) + 1)) - received
        self.assertTrue(missing <= acked_before_kill,
                        f"only what the broker had acknowledged may be missing: {sorted(missing)}")
        self.assertTrue(unacked_at_kill, "the outage left a backlog to replay")
        self.assertEqual(core.rejected, [], core.summary())
        self.assertIn((GATEWAY, DEVICE), core.births)
        birth_tags = {t["name"]: t for t in core.births[(GATEWAY, DEVICE)]["tags"]}
        self.assertEqual(birth_tags["temperature"], {"name": "temperature", "type": "int16",
                                                     "unit": "degC"})
        self.assertEqual(birth_tags["voltage"], {"name": "voltage", "type": "float32",
                                                 "unit": "V",
                                                 "description": "the simulator's input voltage"})
        states = [s["state"] for s in core.status]
        self.assertIn("online", states)
        self.assertEqual(states[-1], "offline")
        # Everything marked delivered reached the receiver, signed and verified.
        delivered = store_peek.seqs(self.db, DEVICE, delivered=True)
        self.assertTrue(delivered)
        self.assertTrue(delivered <= set(core.seqs(GATEWAY, DEVICE)))
        log = self._read(self.agent.log)
        self.assertNotIn(GATEWAY_KEY, log)
        self.assertNotIn(DEVICE_KEY, log)
        self.assertIn("signing with key id " + reference_receiver.key_id(DEVICE_KEY), log)

    def test_a_publish_the_acl_denies_leaves_the_rows_undelivered(self):
        broker = self.broker()
        self.start_agent(broker.port, extra_uplink='topic_prefix = "elsewhere/v1"')
        self.wait_log("connected to mqtts://localhost")
        self.wait_log("with reason 0x87")
        time.sleep(0.5)
        self.assertEqual(self.delivered_count(), 0)


class TlsRefusalTest(TlsTestBase):
    def test_unknown_ca(self):
        broker = self.broker()
        other = harness.Pki(self.work, name="other-ca")
        self.start_agent(broker.port, ca_file=other.cert)
        self.assert_refused("is not signed by a CA this gateway trusts")
        self.wait_log("TLS handshake with localhost:")

    def test_wrong_host_name(self):
        broker = self.broker(cert_hosts=("broker.invalid",))
        self.start_agent(broker.port)
        self.assert_refused("is not issued for 'localhost' (host name verification)")

    def test_wrong_ip_address(self):
        broker = self.broker(cert_hosts=("localhost",))
        self.start_agent(broker.port, host="127.0.0.1")
        self.assert_refused("is not issued for '127.0.0.1'")

    def test_expired_certificate(self):
        broker = self.broker(expired=True)
        self.start_agent(broker.port)
        self.assert_refused("the broker's certificate has expired (not after Jan  1 00:00:00 2021")

    def test_server_with_only_tls_1_1(self):
        cert, key = self.pki.issue("old-server", ("localhost",))
        port = harness.free_port()
        server = subprocess.Popen(
            ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", cert, "-key", key,
             "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", "-quiet"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            harness.wait_port(port)
            # The server really speaks TLS 1.1: a client that allows it gets through.
            probe = subprocess.run(
                ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_1", "-cipher",
                 "DEFAULT@SECLEVEL=0", "-CAfile", self.pki.cert],
                input="", capture_output=True, text=True, timeout=10)
            self.assertIn("Protocol  : TLSv1.1", probe.stdout)
            self.start_agent(port)
            self.assert_refused("the broker offers no TLS 1.2 or newer")
        finally:
            harness.stop_process(server)

    def test_wrong_api_key(self):
        broker = self.broker(users={GATEWAY: "the-key-the-broker-expects", "receiver": "rx-pw"})
        self.start_agent(broker.port)
        self.assert_refused("broker refused the connection")
        self.wait_log("check api_key_file")


if __name__ == "__main__":
    unittest.main(verbosity=2)
