"""The runtime part of scripts/footprint: memory of the agent at the nominal
workload and its wake-ups when idle, measured on this machine's build.

Nominal workload: 100 devices x 100 tags polled every second (10,000 readings/s),
served by tagrelay-modbus-sim, forwarded over TLS (mosquitto with a private CA, as
the integration tests set it up), every device's batches signed with its own key,
to a subscriber that counts what arrives.

  1. a run without limit: peak RSS (VmHWM) of the agent;
  2. the same run inside a memory cgroup of 64 MiB (cgroup v2 memory.max, else
     cgroup v1 memory.limit_in_bytes, else systemd-run --scope -p MemoryMax):
     peak RSS, the cgroup's peak and failures, OOM kills, readings per second;
  3. an idle agent (one device, one tag every 10 s, uplink connected and idle):
     voluntary + involuntary context switches of all its threads per second.

Prints the figures; exit 1 if the agent died, was OOM-killed, or readings stopped
arriving under the limit."""

import argparse
import glob
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import harness  # noqa: E402

GATEWAY = "gw-footprint"
GATEWAY_KEY = "gw-footprint-key-93e1"
LIMIT = 64 << 20


class Counter:
    """Counts the readings of telemetry batches that arrive (TLS, QoS 1)."""

    def __init__(self, port, ca_file):
        self.readings = 0
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(client_id="footprint-counter", protocol=mqtt.MQTTv311)
        self.client.username_pw_set("receiver", "rx-pw")
        self.client.tls_set(ca_certs=ca_file)
        self.client.on_connect = lambda c, u, f, rc: c.subscribe("tagrelay/v1/+/+/telemetry", qos=1)
        self.client.on_subscribe = lambda c, u, m, q: self.subscribed.set()
        self.client.on_message = self.on_message
        self.client.connect("localhost", port)
        self.client.loop_start()

    def on_message(self, client, userdata, msg):
        try:
            n = len(json.loads(msg.payload)["readings"])
        except (ValueError, KeyError, TypeError):
            return
        with self.lock:
            self.readings += n

    def count(self):
        with self.lock:
            return self.readings

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def nominal_config(work, broker_port, sim_port, key_file, ca_file, buses, devices, tags, poll):
    """Every device signs its batches with a key of its own (api_key_file)."""
    lines = [f"""
[gateway]
id = "{GATEWAY}"
data_dir = "{work.path}/data"

[uplink]
url = "mqtts://localhost:{broker_port}"
ca_file = "{ca_file}"
api_key_file = "{key_file}"

[status]
listen = ""
socket = "{work.path}/status.sock"
"""]
    per_bus = devices // buses
    for b in range(buses):
        lines.append(f'[[bus]]\nname = "bus{b}"\ntype = "tcp"\nhost = "127.0.0.1"\n'
                     f'port = {sim_port}\n')
        for u in range(per_bus):
            dev = f"dev{b}-{u}"
            dev_key = work.file(f"{dev}.key", secrets.token_hex(24) + "\n", mode=0o600)
            lines.append(f'[[device]]\nid = "{dev}"\nbus = "bus{b}"\nunit = {u + 1}\n'
                         f'poll = "{poll}"\napi_key_file = "{dev_key}"\n')
            for t in range(tags):
                lines.append(f'  [[device.tag]]\n  name = "t{t}"\n  address = {t}\n')
    return work.file("nominal.toml", "\n".join(lines), mode=0o644)


def idle_config(work, broker_port, sim_port, key_file, ca_file):
    return work.file("idle.toml", f"""
[gateway]
id = "{GATEWAY}"
data_dir = "{work.path}/idle-data"

[uplink]
url = "mqtts://localhost:{broker_port}"
ca_file = "{ca_file}"
api_key_file = "{key_file}"

[status]
listen = ""
socket = "{work.path}/idle-status.sock"

[[bus]]
name = "sim"
type = "tcp"
host = "127.0.0.1"
port = {sim_port}

[[device]]
id = "dev"
bus = "sim"
poll = "10s"

  [[device.tag]]
  name = "counter"
  address = 0
""", mode=0o644)


def proc_status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def context_switches(pid):
    """{thread name: voluntary + involuntary switches} of every thread of pid."""
    out = {}
    for task in glob.glob(f"/proc/{pid}/task/*"):
        try:
            with open(f"{task}/comm") as f:
                name = f.read().strip()
            v = proc_status(pid=task.replace("/proc/", ""), key="voluntary_ctxt_switches")
            n = proc_status(pid=task.replace("/proc/", ""), key="nonvoluntary_ctxt_switches")
        except (OSError, KeyError):
            continue
        key = name
        i = 2
        while key in out:
            key = f"{name}#{i}"
            i += 1
        out[key] = v + n
    return out


class Cgroup:
    """A memory cgroup of `limit` bytes below this process's own, v2 or v1; None if
    neither can be made here."""

    @staticmethod
    def make(limit):
        with open("/proc/self/cgroup") as f:
            entries = [line.rstrip("\n").split(":", 2) for line in f]
        for _, controllers, path in entries:
            if controllers == "" and os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
                base = "/sys/fs/cgroup" + path
                try:
                    with open(os.path.join(base, "cgroup.controllers")) as f:
                        if "memory" not in f.read().split():
                            continue
                    return Cgroup(base, 2, limit)
                except OSError:
                    continue
        for _, controllers, path in entries:
            if "memory" in controllers.split(","):
                base = "/sys/fs/cgroup/memory" + path
                try:
                    return Cgroup(base, 1, limit)
                except OSError:
                    return None
        return None

    def __init__(self, parent, version, limit):
        self.version = version
        self.path = os.path.join(parent, f"tagrelay-footprint-{os.getpid()}")
        os.mkdir(self.path)
        try:
            self._write("memory.max" if version == 2 else "memory.limit_in_bytes", str(limit))
            if version == 1:
                try:
                    self._write("memory.memsw.limit_in_bytes", str(limit))  # no swap either
                except OSError:
                    pass
        except OSError:
            os.rmdir(self.path)
            raise

    def _write(self, name, value):
        with open(os.path.join(self.path, name), "w") as f:
            f.write(value)

    def _read(self, name):
        try:
            with open(os.path.join(self.path, name)) as f:
                return f.read()
        except OSError:
            return None

    def describe(self):
        return f"cgroup v{self.version} {self.path}"

    def enter_command(self, argv):
        """argv, made to move itself into the cgroup before it execs."""
        procs = os.path.join(self.path, "cgroup.procs")
        return ["/bin/sh", "-c", f'echo $$ > "{procs}" && exec "$@"', "sh", *argv]

    def figures(self):
        if self.version == 2:
            events = dict(line.split() for line in (self._read("memory.events") or "").splitlines())
            peak = self._read("memory.peak")
            return {"peak": int(peak) if peak else None, "oom_kill": int(events.get("oom_kill", 0)),
                    "limit_hits": int(events.get("max", 0))}
        oom = dict(line.split() for line in (self._read("memory.oom_control") or "").splitlines())
        return {"peak": int(self._read("memory.max_usage_in_bytes")),
                "oom_kill": int(oom.get("oom_kill", 0)),
                "limit_hits": int(self._read("memory.failcnt"))}

    def remove(self):
        for _ in range(50):
            try:
                os.rmdir(self.path)
                return
            except OSError:
                time.sleep(0.1)


def run_nominal(args, work, broker, sim, pki, key_file, cgroup):
    """One run at the nominal workload; returns its figures."""
    data = os.path.join(work.path, "data")
    shutil.rmtree(data, ignore_errors=True)
    config = nominal_config(work, broker.port, sim.port, key_file, pki.cert, args.buses,
                            args.devices, args.tags, args.poll)
    counter = Counter(broker.port, pki.cert)
    harness.wait_for(counter.subscribed.is_set, 20, what="the subscriber")
    argv = [args.agent, "run", "--config", config]
    if cgroup == "systemd-run":
        argv = ["systemd-run", "--scope", "--quiet", "-p", f"MemoryMax={LIMIT}", *argv]
    elif cgroup is not None:
        argv = cgroup.enter_command(argv)
    log = open(os.path.join(work.path, "nominal.log"), "w")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
    figures = {"died": None}
    try:
        # The agent's pid: the command itself (sh and systemd-run exec it).
        pid = proc.pid
        harness.wait_for(lambda: counter.count() > 0, 60, what="the first readings")
        start, start_count = time.monotonic(), counter.count()
        windows = []
        last = start_count
        while time.monotonic() - start < args.seconds:
            time.sleep(10)
            if proc.poll() is not None:
                figures["died"] = proc.returncode
                break
            now = counter.count()
            windows.append(now - last)
            last = now
        elapsed = time.monotonic() - start
        if figures["died"] is None:
            figures["vmhwm_kib"] = proc_status(pid, "VmHWM")
            figures["vmrss_kib"] = proc_status(pid, "VmRSS")
            figures["threads"] = proc_status(pid, "Threads")
            figures["anon_kib"] = proc_status(pid, "RssAnon")
            figures["file_kib"] = proc_status(pid, "RssFile")
        figures["rate"] = (counter.count() - start_count) / elapsed
        figures["min_window_rate"] = min(windows) / 10 if windows else 0
        if cgroup not in (None, "systemd-run"):
            figures.update(cgroup.figures())
        return figures
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        counter.close()


def run_idle(args, work, broker, sim, pki, key_file):
    config = idle_config(work, broker.port, sim.port, key_file, pki.cert)
    log = open(os.path.join(work.path, "idle.log"), "w")
    proc = subprocess.Popen([args.agent, "run", "--config", config], stdout=subprocess.DEVNULL,
                            stderr=log)
    try:
        harness.wait_for(lambda: "connected to" in open(log.name).read(), 60,
                         what="the idle agent to connect")
        time.sleep(5)  # let start-up settle: the first poll, the birth message
        before, t0 = context_switches(proc.pid), time.monotonic()
        time.sleep(args.idle_seconds)
        after, t1 = context_switches(proc.pid), time.monotonic()
        if proc.poll() is not None:
            raise RuntimeError(f"the idle agent exited with {proc.returncode}")
        per_thread = {k: (after[k] - before.get(k, 0)) / (t1 - t0) for k in after}
        return sum(per_thread.values()), per_thread, t1 - t0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        log.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", required=True)
    ap.add_argument("--sim", required=True)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--tags", type=int, default=100)
    ap.add_argument("--buses", type=int, default=10, help="the devices are spread over them")
    ap.add_argument("--poll", default="1s")
    ap.add_argument("--seconds", type=float, default=60, help="of each nominal run")
    ap.add_argument("--idle-seconds", type=float, default=60)
    args = ap.parse_args()

    work = harness.Workdir(prefix="tagrelay-footprint-")
    broker = sim = cgroup = None
    failed = []
    try:
        pki = harness.Pki(work)
        cert, key = pki.issue("broker", ("localhost", "127.0.0.1"))
        broker = harness.Broker(work, {GATEWAY: GATEWAY_KEY, "receiver": "rx-pw"},
                                tls={"cafile": pki.cert, "certfile": cert, "keyfile": key})
        broker.start()
        sim = subprocess.Popen([args.sim, "--port", "0", "--registers", str(max(16, args.tags))],
                               stdout=subprocess.PIPE, text=True)
        line = sim.stdout.readline()
        sim_port = int(line.split()[2])
        sim_handle = type("Sim", (), {"port": sim_port})
        key_file = work.file("gateway.key", GATEWAY_KEY + "\n", mode=0o600)
        nominal = args.devices * args.tags
        print(f"workload: {args.devices} devices x {args.tags} tags every {args.poll} "
              f"({args.buses} Modbus TCP buses), TLS uplink, signed per device; "
              f"{args.seconds:.0f} s per run")

        free = run_nominal(args, work, broker, sim_handle, pki, key_file, None)
        if free["died"] is not None:
            failed.append(f"the agent exited with {free['died']} without a limit")
        else:
            print(f"no limit:      peak RSS (VmHWM) {free['vmhwm_kib'] / 1024:.1f} MiB, "
                  f"RSS at the end {free['vmrss_kib'] / 1024:.1f} MiB (anonymous "
                  f"{free['anon_kib'] / 1024:.1f}, files {free['file_kib'] / 1024:.1f}), "
                  f"{free['threads']} threads, "
                  f"{free['rate']:.0f} readings/s arrived (nominal {nominal}/s for 1s polls)")

        try:
            cgroup = Cgroup.make(LIMIT)
        except OSError:
            cgroup = None
        if cgroup is None and shutil.which("systemd-run") and \
                subprocess.run(["systemctl", "is-system-running"], capture_output=True,
                               text=True).stdout.strip() in ("running", "degraded"):
            cgroup = "systemd-run"
        if cgroup is None:
            print("64 MiB limit: no memory cgroup can be made here; not measured")
        else:
            where = "systemd-run --scope -p MemoryMax=64M" if cgroup == "systemd-run" \
                else cgroup.describe()
            lim = run_nominal(args, work, broker, sim_handle, pki, key_file, cgroup)
            if lim["died"] is not None:
                failed.append(f"the agent exited with {lim['died']} under the 64 MiB limit")
            if lim.get("oom_kill"):
                failed.append(f"{lim['oom_kill']} OOM kill(s) under the 64 MiB limit")
            if lim["min_window_rate"] <= 0:
                failed.append("readings stopped arriving under the 64 MiB limit")
            if lim["died"] is None:
                peak = f", cgroup peak {lim['peak'] / 2**20:.1f} MiB" if lim.get("peak") else ""
                print(f"64 MiB limit:  ({where}) peak RSS {lim['vmhwm_kib'] / 1024:.1f} MiB{peak}, "
                      f"limit reached {lim.get('limit_hits', '?')} times, "
                      f"OOM kills {lim.get('oom_kill', '?')}, {lim['rate']:.0f} readings/s arrived, "
                      f"slowest 10 s window {lim['min_window_rate']:.0f}/s")

        total, per_thread, span = run_idle(args, work, broker, sim_handle, pki, key_file)
        busiest = ", ".join(f"{k} {v:.2f}" for k, v in
                            sorted(per_thread.items(), key=lambda kv: -kv[1]) if v > 0)
        print(f"idle:          {total:.2f} wake-ups/s over {span:.0f} s (context switches of "
              f"{len(per_thread)} threads; one tag every 10 s, uplink idle): {busiest}")
    finally:
        if sim:
            harness.stop_process(sim)
            sim.stdout.close()
        if broker:
            broker.stop()
        if cgroup not in (None, "systemd-run"):
            cgroup.remove()
        work.close()
    for f in failed:
        print(f"footprint: {f}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
