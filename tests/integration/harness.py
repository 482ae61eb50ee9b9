"""Process harness for the integration tests and the demo: a real mosquitto on a
free loopback port, the Modbus simulator, the tagrelay binary, and an MQTT 5
subscriber that records every telemetry batch.

Runs under Debian's /usr/bin/python3 (python3-paho-mqtt 1.6)."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import reference_receiver


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


class Pki:
    """A private CA made with the openssl command, and certificates it signs
    (EC P-256, so that generating them is quick)."""

    def __init__(self, workdir, name="ca"):
        self.dir = os.path.join(workdir.path, name)
        os.makedirs(os.path.join(self.dir, "newcerts"))
        open(os.path.join(self.dir, "index.txt"), "w").close()
        with open(os.path.join(self.dir, "serial"), "w") as f:
            f.write("1000\n")
        self.cnf = os.path.join(self.dir, "ca.cnf")
        with open(self.cnf, "w") as f:
            f.write(f"""[ca]
default_ca = tr
[tr]
dir = {self.dir}
database = {self.dir}/index.txt
new_certs_dir = {self.dir}/newcerts
serial = {self.dir}/serial
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
""")
        self.key = os.path.join(self.dir, "ca.key")
        self.cert = os.path.join(self.dir, "ca.pem")
        self._run("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-nodes", "-keyout", self.key, "-out", self.cert, "-subj", f"/CN=tagrelay test {name}",
                  "-days", "30", "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def _run(self, *args):
        subprocess.run(["openssl", *args], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)

    def issue(self, name, hosts=(), client=False, expired=False):
        """Signs a certificate for `name`; returns (cert path, key path)."""
        key = os.path.join(self.dir, f"{name}.key")
        csr = os.path.join(self.dir, f"{name}.csr")
        cert = os.path.join(self.dir, f"{name}.pem")
        ext = os.path.join(self.dir, f"{name}.ext")
        san = ",".join(("IP:" if h.replace(".", "").isdigit() else "DNS:") + h for h in hosts)
        with open(ext, "w") as f:
            f.write("[ext]\nbasicConstraints=CA:FALSE\n")
            f.write(f"extendedKeyUsage={'clientAuth' if client else 'serverAuth'}\n")
            if san:
                f.write(f"subjectAltName={san}\n")
        self._run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
        dates = (["-startdate", "20200101000000Z", "-enddate", "20210101000000Z"] if expired
                 else ["-days", "30"])
        self._run("ca", "-batch", "-config", self.cnf, "-cert", self.cert, "-keyfile", self.key,
                  "-in", csr, "-out", cert, "-notext", "-extfile", ext, "-extensions", "ext", *dates)
        os.chmod(key, 0o600)
        return cert, key


class Broker:
    """mosquitto on 127.0.0.1:port with password auth and persistence, so that a
    subscriber's session (and its queued QoS 1 messages) survives a restart.
    With `tls` (dict: cafile, certfile, keyfile, require_certificate) the
    listener speaks TLS only; with `acl` (the text of an ACL file) each user
    may only use the topics it grants."""

    def __init__(self, workdir, users, tls=None, acl=None, name="mosquitto"):
        self.workdir = workdir
        self.port = free_port()
        self.proc = None
        pwfile = os.path.join(workdir.path, f"{name}.passwd")
        open(pwfile, "w").close()
        os.chmod(pwfile, 0o600)
        for user, password in users.items():
            subprocess.run(["mosquitto_passwd", "-b", pwfile, user, password], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous false",
            f"password_file {pwfile}",
            "persistence true",
            f"persistence_location {workdir.path}/",
            f"persistence_file {name}.db",
            "autosave_interval 1",
            "user root",  # as root, mosquitto would otherwise drop to 'mosquitto' and lose access
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if tls:
            lines += [f"cafile {tls['cafile']}", f"certfile {tls['certfile']}",
                      f"keyfile {tls['keyfile']}", "tls_version tlsv1.2"]
            if tls.get("require_certificate"):
                lines.append("require_certificate true")
        if acl is not None:
            lines.append(f"acl_file {workdir.file(f'{name}.acl', acl)}")
        self.conf = workdir.file(f"{name}.conf", "\n".join(lines) + "\n")
        self.log = os.path.join(workdir.path, f"{name}.log")

    def start(self):
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(["mosquitto", "-c", self.conf], stdout=subprocess.DEVNULL,
                                         stderr=log)
        wait_port(self.port)

    def stop(self, sig=signal.SIGTERM):
        if self.proc:
            stop_process(self.proc, sig)
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
    """The agent, run on `config`. A config without a [status] section gets
    one that keeps the status of this agent to itself: the socket in the
    work dir (`status_socket`) and no web page, so that tests running side by
    side do not meet on the default port and socket. `prefix` is a command
    that runs the agent (as another user, say); `env` adds to its environment."""

    def __init__(self, binary, config, workdir, prefix=(), env=None):
        self.binary = binary
        self.config = config
        self.prefix = list(prefix)
        self.env = dict(os.environ, **env) if env else None
        self.log = os.path.join(workdir.path, "agent.log")
        self.status_socket = os.path.join(workdir.path, "status.sock")
        with open(config) as f:
            text = f.read()
        if not re.search(r"^\[status\]", text, re.M):
            with open(config, "a") as f:
                f.write(f'\n[status]\nlisten = ""\nsocket = "{self.status_socket}"\n')
        self.proc = None

    def status(self):
        """`tagrelay status --json` of the running agent, parsed."""
        out = subprocess.run([self.binary, "status", "--json", "--socket", self.status_socket],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        return json.loads(out)

    def start(self):
        self._runs_before = self.log_text().count(" running: ") if os.path.exists(self.log) else 0
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen([*self.prefix, self.binary, "run", "--config", self.config],
                                         stdout=subprocess.DEVNULL, stderr=log, env=self.env)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc is None:
            return None
        try:
            return stop_process(self.proc, sig, timeout)
        finally:
            self.proc = None

    def wait_running(self, timeout=30):
        """Waits until the agent started last has opened its store and started its workers."""
        wait_for(lambda: self.log_text().count(" running: ") > self._runs_before, timeout,
                 what="the agent to start")

    def log_text(self):
        with open(self.log) as f:
            return f.read()


class Receiver:
    """The reference receiver (reference_receiver.py) on an MQTT 5 subscription
    with a persistent session, with the views the tests read: telemetry batches,
    readings by (device, seq) after dropping duplicates, status messages, and the
    reasons of rejected messages as `errors`."""

    def __init__(self, port, user, password, topic="tagrelay/v1/#", ca_file=None, keyring=None,
                 gateway=None):
        self.core = reference_receiver.ReferenceReceiver(keyring)
        self.gateway = gateway
        self.sub = reference_receiver.Subscriber(self.core, "127.0.0.1", port, user, password,
                                                 ca_file=ca_file, topic=topic)
        self.subscribed = self.sub.subscribed

    @property
    def errors(self):
        with self.core.lock:
            return [f"{t}: {r}" for t, r in self.core.rejected]

    @property
    def status(self):
        with self.core.lock:
            return list(self.core.status)

    @property
    def duplicates(self):
        with self.core.lock:
            return self.core.duplicates

    def births(self):
        with self.core.lock:
            return dict(self.core.births)

    def seqs(self, device, stream="telemetry"):
        with self.core.lock:
            return sorted(s for (g, d, k, s) in self.core.records
                          if d == device and k == stream and self.gateway in (None, g))

    def snapshot(self):
        """(telemetry batches in arrival order, {(device, seq): reading with its batch's flags})."""
        with self.core.lock:
            batches = [b for kind, b in self.core.batches if kind == "telemetry"]
            readings = {(d, s): dict(r, seq=s) for (g, d, k, s), r in self.core.records.items()
                        if k == "telemetry" and self.gateway in (None, g)}
        return batches, readings

    def close(self):
        self.sub.close()


def sim_devices(count, poll):
    """[[device]] blocks dev-1..dev-`count` (units 1..count) on bus "sim", each
    with the five tags of the simulator's register map, polled every `poll`."""
    return "".join(f"""
[[device]]
id = "dev-{i}"
bus = "sim"
unit = {i}
poll = "{poll}"
  [[device.tag]]
  name = "counter"
  address = 0
  [[device.tag]]
  name = "negative"
  address = 1
  type = "int16"
  [[device.tag]]
  name = "temperature"
  address = 2
  type = "int16"
  scale = 0.1
  [[device.tag]]
  name = "reference"
  table = "input"
  address = 0
  type = "float32"
  [[device.tag]]
  name = "voltage"
  table = "input"
  address = 2
  type = "float32"
""" for i in range(1, count + 1))


def write_agent_config(workdir, gateway, broker_port, sim_port, key_file, poll="100ms",
                       linger="200ms", extra_uplink="", url=None, extra_device="",
                       insecure=True):
    return workdir.file("tagrelay.toml", f"""
[gateway]
id = "{gateway}"
data_dir = "{workdir.path}/data"

[store]
commit_interval = "50ms"

[uplink]
url = "{url or f'mqtt://127.0.0.1:{broker_port}'}"
insecure = {'true' if insecure else 'false'}
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
{extra_device}

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
  description = "the simulator's input voltage"
""", mode=0o644)
