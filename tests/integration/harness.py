"""Process harness for the integration tests and the demo: a real mosquitto on a
free loopback port, the Modbus simulator, the tagrelay binary, and an MQTT 5
subscriber that records every telemetry batch.

Runs under Debian's /usr/bin/python3 (python3-paho-mqtt 1.6)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def stop_process(proc, sig=signal.SIGTERM, timeout=10):
    """Signals `proc` and waits; kills it if it does not exit in time. Returns its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    return proc.returncode


def wait_port(port, timeout=10):
    def is_open():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False
    wait_for(is_open, timeout, what=f"port {port}")


class Workdir:
    """A private temporary directory, removed at close unless KEEP_TEST_DIRS=1."""

    def __init__(self, prefix="tagrelay-test-"):
        self.path = tempfile.mkdtemp(prefix=prefix)

    def file(self, name, text, mode=0o600):
        path = os.path.join(self.path, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def close(self):
        if os.environ.get("KEEP_TEST_DIRS") != "1":
            shutil.rmtree(self.path, ignore_errors=True)


class Broker:
    """mosquitto on 127.0.0.1:port with password auth and persistence, so that a
    subscriber's session (and its queued QoS 1 messages) survives a restart."""

    def __init__(self, workdir, users):
        self.workdir = workdir
        self.port = free_port()
        self.proc = None
        pwfile = os.path.join(workdir.path, "passwd")
        open(pwfile, "w").close()
        os.chmod(pwfile, 0o600)
        for user, password in users.items():
            subprocess.run(["mosquitto_passwd", "-b", pwfile, user, password], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.conf = workdir.file("mosquitto.conf", "\n".join([
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous false",
            f"password_file {pwfile}",
            "persistence true",
            f"persistence_location {workdir.path}/",
            "autosave_interval 1",
            "user root",  # as root, mosquitto would otherwise drop to 'mosquitto' and lose access
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "",
        ]))
        self.log = os.path.join(workdir.path, "mosquitto.log")

    def start(self):
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(["mosquitto", "-c", self.conf], stdout=subprocess.DEVNULL,
                                         stderr=log)
        wait_port(self.port)

    def stop(self):
        if self.proc:
            stop_process(self.proc)
        self.proc = None


class Simulator:
    """tagrelay-modbus-sim on a kernel-chosen port."""

    def __init__(self, binary):
        self.proc = subprocess.Popen([binary, "--port", "0"], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError(f"simulator did not start: {line!r}")
        self.port = int(line.split()[2])

    def stop(self):
        try:
            stop_process(self.proc)
        finally:
            self.proc.stdout.close()


class Agent:
    def __init__(self, binary, config, workdir):
        self.binary = binary
        self.config = config
        self.log = os.path.join(workdir.path, "agent.log")
        self.proc = None

    def start(self):
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen([self.binary, "run", "--config", self.config],
                                         stdout=subprocess.DEVNULL, stderr=log)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc is None:
            return None
        try:
            return stop_process(self.proc, sig, timeout)
        finally:
            self.proc = None

    def log_text(self):
        with open(self.log) as f:
            return f.read()


class Receiver:
    """An MQTT 5 subscriber with a persistent session that records telemetry
    batches, dropping duplicates by (device, seq) like a real consumer would."""

    def __init__(self, port, user, password, topic="tagrelay/v1/#"):
        self.lock = threading.Lock()
        self.batches = []          # every telemetry batch, in arrival order, duplicates included
        self.readings = {}         # (device, seq) -> reading dict, with batch flags
        self.duplicates = 0
        self.status = []
        self.errors = []
        self.topic = topic
        self.subscribed = threading.Event()
        self.client = mqtt.Client(client_id=f"receiver-{os.getpid()}-{port}",
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(user, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        if rc == 0:
            client.subscribe(self.topic, qos=1)
            self.subscribed.set()

    def _on_message(self, client, userdata, msg):
        try:
            payload = json.loads(msg.payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            with self.lock:
                self.errors.append(f"{msg.topic}: not JSON: {e}")
            return
        with self.lock:
            if msg.topic.endswith("/status"):
                self.status.append(payload)
            elif msg.topic.endswith("/telemetry"):
                self._record_batch(msg.topic, payload)

    def _record_batch(self, topic, b):
        self.batches.append(b)
        n = b["seq_last"] - b["seq_first"] + 1
        if n != len(b["readings"]):
            self.errors.append(f"{topic}: seq {b['seq_first']}..{b['seq_last']} "
                               f"but {len(b['readings'])} readings")
        for i, r in enumerate(b["readings"]):
            key = (b["device"], b["seq_first"] + i)
            if key in self.readings:
                self.duplicates += 1
                continue
            self.readings[key] = dict(r, seq=key[1], historical=b["historical"])

    def seqs(self, device):
        with self.lock:
            return sorted(s for (d, s) in self.readings if d == device)

    def snapshot(self):
        with self.lock:
            return list(self.batches), dict(self.readings)

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def write_agent_config(workdir, gateway, broker_port, sim_port, key_file, poll="100ms",
                       linger="200ms", extra_uplink=""):
    return workdir.file("tagrelay.toml", f"""
[gateway]
id = "{gateway}"
data_dir = "{workdir.path}/data"

[store]
commit_interval = "50ms"

[uplink]
url = "mqtt://127.0.0.1:{broker_port}"
insecure = true
api_key_file = "{key_file}"
batch_linger = "{linger}"
{extra_uplink}

[[bus]]
name = "sim"
type = "tcp"
host = "127.0.0.1"
port = {sim_port}
timeout = "500ms"

[[device]]
id = "sim-1"
bus = "sim"
poll = "{poll}"

  [[device.tag]]
  name = "counter"
  table = "holding"
  address = 0
  type = "uint16"

  [[device.tag]]
  name = "negative"
  address = 1
  type = "int16"

  [[device.tag]]
  name = "temperature"
  address = 2
  type = "int16"
  scale = 0.1
  unit = "degC"

  [[device.tag]]
  name = "reference"
  table = "input"
  address = 0
  type = "float32"
  unit = "V"

  [[device.tag]]
  name = "voltage"
  table = "input"
  address = 2
  type = "float32"
  unit = "V"
""", mode=0o644)
