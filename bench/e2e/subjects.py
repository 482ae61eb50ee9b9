"""The programs under test, each configured by the harness for the same fleet
and the same broker: tagrelay, collectd (Debian's collectd-core: modbus and
mqtt plugins) and Node-RED (node-red-contrib-modbus and an MQTT out node).

Every subject polls every device's registers 0..R-1 as uint16 holding
registers at the same interval and publishes them over TLS, QoS 1, to the
same mosquitto, as its own MQTT user. What each one sends is the natural
form of that program:
  tagrelay   batches per device (the wire contract v1), signed per device
  collectd   one message per value (its mqtt plugin has no other form)
  Node-RED   one JSON message per device and poll: {"ts": ms, "v": [...]}
collectd's modbus plugin reads one register per request (a <Data> block is
one value); node-red-contrib-modbus and tagrelay read the block at once."""

import json
import os
import shutil
import signal
import subprocess

import harness

GATEWAY = "gw-bench"


def device_name(i, run=0):
    """Device i of fleet number `run`: every fleet of a bench gets new names, so
    that values a previous subject still delivers after its run (from the
    broker's queue) can never be counted for the next one."""
    return f"r{run:03d}-dev-{i:03d}"


class Subject:
    name = "?"
    store_and_forward = False

    def __init__(self, bench, label):
        self.bench = bench
        self.label = label
        self.proc = None
        self.dir = None
        self.log = None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _spawn(self, argv, env=None):
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, cwd=self.dir,
                                         env=env, start_new_session=True)

    def stop(self):
        if self.proc is None:
            return
        try:
            harness.stop_process(self.proc, signal.SIGTERM, timeout=20)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None

    def log_tail(self, lines=20):
        try:
            with open(self.log) as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def fresh_dir(self):
        self.dir = os.path.join(self.bench.work.path, self.label)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.log = os.path.join(self.dir, "log.txt")


class Tagrelay(Subject):
    name = "tagrelay"
    store_and_forward = True

    def __init__(self, bench, label="tagrelay", max_bytes="256MiB", keep_data=False):
        super().__init__(bench, label)
        self.max_bytes = max_bytes
        self.keep_data = keep_data

    def data_dir(self):
        return os.path.join(self.dir, "data")

    def config(self, fleet, poll_ms):
        b = self.bench
        out = [f"""[gateway]
id = "{GATEWAY}"
data_dir = "{self.data_dir()}"

[store]
max_bytes = "{self.max_bytes}"

[status]
listen = "127.0.0.1:{harness.free_port()}"
socket = "{self.status_socket()}"

[uplink]
url = "mqtts://localhost:{b.broker.port}"
ca_file = "{b.pki.cert}"
api_key_file = "{b.secret_file('tagrelay')}"
"""]
        for i, (port, unit) in enumerate(fleet.endpoints):
            dev = fleet.devices[i]
            bus = f"ep-{port}"
            if unit == 1 or fleet.units == 1:
                out.append(f"""[[bus]]
name = "{bus}"
type = "tcp"
host = "127.0.0.1"
port = {port}
timeout = "500ms"
""")
            out.append(f"""[[device]]
id = "{dev}"
bus = "{bus}"
unit = {unit}
poll = "{poll_ms}ms"
api_key_file = "{b.device_key_file(dev)}"
""")
            for r in range(fleet.registers):
                out.append(f'  [[device.tag]]\n  name = "t{r:03d}"\n  address = {r}\n'
                           f'  type = "uint16"\n')
        return "\n".join(out)

    def start(self, fleet, poll_ms=1000):
        if not (self.keep_data and self.dir):
            self.fresh_dir()
        path = os.path.join(self.dir, "tagrelay.toml")
        with open(path, "w") as f:
            f.write(self.config(fleet, poll_ms))
        self._spawn([self.bench.bins["tagrelay"], "run", "--config", path])

    def status_socket(self):
        return os.path.join(self.dir, "status.sock")

    def status(self):
        """The agent's own account (`tagrelay status --json`), or None."""
        try:
            p = subprocess.run([self.bench.bins["tagrelay"], "status", "--json", "--socket",
                                self.status_socket()], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, timeout=20)
            return json.loads(p.stdout) if p.returncode == 0 else None
        except (OSError, ValueError, subprocess.TimeoutExpired):
            return None

    def loss_counters(self):
        """What the agent says it lost: readings evicted unsent by the store's
        bound, dropped from memory, and poll batches dropped on a full store queue."""
        st = self.status()
        if st is None:
            return None
        return {"evicted": st["store"]["evicted"],
                "lost_in_memory": st["store"]["lost_in_memory"],
                "devices_lost": sum(d["lost"] for d in st["devices"]),
                "dropped_batches": sum(d["dropped_batches"] for d in st["devices"]),
                "backlog_readings": st["store"]["backlog_readings"]}

    def store_bytes(self):
        total = 0
        for root, _dirs, files in os.walk(self.data_dir()):
            for name in files:
                total += os.path.getsize(os.path.join(root, name))
        return total


class Collectd(Subject):
    name = "collectd"

    def config(self, fleet, poll_ms):
        b = self.bench
        interval = poll_ms / 1000.0
        out = [f"""Hostname "bench"
FQDNLookup false
Interval {interval}
BaseDir "{self.dir}"
PIDFile "{self.dir}/collectd.pid"
TypesDB "/usr/share/collectd/types.db"
LoadPlugin logfile
<Plugin logfile>
  LogLevel "warning"
  File "{self.dir}/collectd.log"
  Timestamp true
</Plugin>
LoadPlugin modbus
LoadPlugin mqtt
<Plugin modbus>"""]
        for r in range(fleet.registers):
            out.append(f"""  <Data "t{r:03d}">
    RegisterBase {r}
    RegisterType Uint16
    RegisterCmd ReadHolding
    Type "gauge"
    Instance "t{r:03d}"
  </Data>""")
        for i, (port, unit) in enumerate(fleet.endpoints):
            collects = "\n".join(f'      Collect "t{r:03d}"' for r in range(fleet.registers))
            out.append(f"""  <Host "{fleet.devices[i]}">
    Address "127.0.0.1"
    Port "{port}"
    Interval {interval}
    <Slave {unit}>
      Instance "1"
{collects}
    </Slave>
  </Host>""")
        out.append(f"""</Plugin>
<Plugin mqtt>
  <Publish "bench">
    Host "localhost"
    Port "{b.broker.port}"
    User "collectd"
    Password "{b.secret('collectd')}"
    ClientId "collectd-bench"
    QoS 1
    Prefix "bench/collectd"
    CACert "{b.pki.cert}"
    TLSProtocol "tlsv1.2"
  </Publish>
</Plugin>
""")
        return "\n".join(out)

    def start(self, fleet, poll_ms=1000):
        self.fresh_dir()
        path = os.path.join(self.dir, "collectd.conf")
        with open(path, "w") as f:
            f.write(self.config(fleet, poll_ms))
        os.chmod(path, 0o600)
        self._spawn([self.bench.bins["collectd"], "-f", "-C", path])


class NodeRed(Subject):
    name = "Node-RED"

    def flows(self, fleet, poll_ms):
        b = self.bench
        nodes = [
            {"id": "tab", "type": "tab", "label": "bench"},
            {"id": "tls", "type": "tls-config", "name": "bench-ca", "cert": "", "key": "",
             "ca": b.pki.cert, "certname": "", "keyname": "", "caname": "", "servername": "",
             "verifyservercert": True, "alpnprotocol": ""},
            {"id": "broker", "type": "mqtt-broker", "name": "bench", "broker": "localhost",
             "port": str(b.broker.port), "tls": "tls", "clientid": "nodered-bench",
             "autoConnect": True, "usetls": True, "protocolVersion": "4", "keepalive": "60",
             "cleansession": True, "autoUnsubscribe": True, "birthTopic": "", "closeTopic": "",
             "willTopic": "", "sessionExpiry": ""},
            {"id": "mqtt", "type": "mqtt out", "z": "tab", "name": "", "topic": "", "qos": "1",
             "retain": "false", "respTopic": "", "contentType": "", "userProps": "",
             "correl": "", "expiry": "", "broker": "broker", "x": 600, "y": 40, "wires": []},
        ]
        rate, unit = (str(poll_ms // 1000), "s") if poll_ms % 1000 == 0 else (str(poll_ms), "ms")
        for i, (port, slave) in enumerate(fleet.endpoints):
            dev = fleet.devices[i]
            nodes.append({
                "id": f"c{i}", "type": "modbus-client", "name": dev, "clienttype": "tcp",
                "bufferCommands": True, "stateLogEnabled": False, "queueLogEnabled": False,
                "failureLogEnabled": False, "tcpHost": "127.0.0.1", "tcpPort": str(port),
                "tcpType": "DEFAULT", "serialPort": "/dev/null", "serialType": "RTU-BUFFERD",
                "serialBaudrate": "9600", "serialDatabits": "8", "serialStopbits": "1",
                "serialParity": "none", "serialConnectionDelay": "100",
                "serialAsciiResponseStartDelimiter": "0x3A", "unit_id": str(slave),
                "commandDelay": "1", "clientTimeout": "1000", "reconnectOnTimeout": True,
                "reconnectTimeout": "2000", "parallelUnitIdsAllowed": True})
            nodes.append({
                "id": f"r{i}", "type": "modbus-read", "z": "tab", "name": dev, "topic": "",
                "showStatusActivities": False, "logIOActivities": False, "showErrors": False,
                "showWarnings": True, "unitid": str(slave), "dataType": "HoldingRegister",
                "adr": "0", "quantity": str(fleet.registers), "rate": rate, "rateUnit": unit,
                "delayOnStart": False, "startDelayTime": "", "server": f"c{i}",
                "useIOFile": False, "ioFile": "", "useIOForPayload": False,
                "emptyMsgOnFail": False, "x": 100, "y": 40 + 40 * i,
                "wires": [[f"f{i}"], []]})
            nodes.append({
                "id": f"f{i}", "type": "function", "z": "tab", "name": dev,
                "func": (f"msg.topic = 'bench/nodered/{dev}';\n"
                         "msg.payload = JSON.stringify({ts: Date.now(), v: msg.payload});\n"
                         "return msg;"),
                "outputs": 1, "timeout": 0, "noerr": 0, "initialize": "", "finalize": "",
                "libs": [], "x": 350, "y": 40 + 40 * i, "wires": [["mqtt"]]})
        return nodes

    def start(self, fleet, poll_ms=1000):
        self.fresh_dir()
        b = self.bench
        with open(os.path.join(self.dir, "flows.json"), "w") as f:
            json.dump(self.flows(fleet, poll_ms), f, indent=1)
        with open(os.path.join(self.dir, "flows_cred.json"), "w") as f:
            json.dump({"broker": {"user": "nodered", "password": b.secret("nodered")}}, f)
        os.chmod(os.path.join(self.dir, "flows_cred.json"), 0o600)
        settings = os.path.join(self.dir, "settings.js")
        with open(settings, "w") as f:
            f.write(f"""module.exports = {{
  uiHost: "127.0.0.1",
  uiPort: {harness.free_port()},
  httpAdminRoot: false,
  httpNodeRoot: false,
  flowFile: "flows.json",
  credentialSecret: false,
  userDir: {json.dumps(self.dir)},
  diagnostics: {{ enabled: false }},
  telemetry: {{ enabled: false }},
  logging: {{ console: {{ level: "warn", metrics: false, audit: false }} }}
}};
""")
        # The user directory's node_modules is where Node-RED looks for extra nodes.
        modules = os.path.join(b.node_red_dir, "node_modules")
        os.symlink(modules, os.path.join(self.dir, "node_modules"))
        red = os.path.join(modules, "node-red", "red.js")
        self._spawn([b.bins["node"], red, "--userDir", self.dir, "--settings", settings])
