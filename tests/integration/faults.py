"""Fault makers for the reliability tests and the soak: a TCP server that
accepts and then says nothing, a TCP proxy that throttles, delays or cuts the
line to a real broker, a small tmpfs (a disk that fills up), samples of a process's memory, descriptors and threads, and a
way to freeze one thread of a process (ptrace) as a hung worker would be.

Runs under Debian's /usr/bin/python3."""

import ctypes
import os
import socket
import subprocess
import threading
import time

import harness


class SilentServer:
    """Accepts TCP connections, reads whatever comes, and never answers: a
    broker that is up at the TCP level and hung above it."""

    def __init__(self):
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self.accepted = 0
        self._conns = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop:
            try:
                conn, _ = self._server.accept()
            except socket.timeout:
                continue
            conn.settimeout(0.2)
            self.accepted += 1
            self._conns.append(conn)
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn):
        while not self._stop:
            try:
                if not conn.recv(65536):
                    return
            except socket.timeout:
                continue
            except OSError:
                return

    def close(self):
        self._stop = True
        self._thread.join(5)
        self._server.close()
        for c in self._conns:
            c.close()


class ThrottledProxy:
    """A TCP proxy from 127.0.0.1:port to 127.0.0.1:upstream_port. `rate`
    (bytes/s, each direction, None = unlimited) and `delay` (seconds added to
    each chunk) make a slow broker; cut() drops every connection, and while
    `refuse` is set new connections are closed at once: a link that flaps."""

    CHUNK = 4096

    def __init__(self, upstream_port, rate=None, delay=0.0):
        self.upstream_port = upstream_port
        self.rate = rate
        self.delay = delay
        self.refuse = False
        self.connections = 0
        self.bytes_up = 0    # client -> upstream
        self.bytes_down = 0  # upstream -> client
        self._lock = threading.Lock()
        self._pairs = []
        self._stop = False
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop:
            try:
                client, _ = self._server.accept()
            except socket.timeout:
                continue
            if self.refuse:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self.connections += 1
                self._pairs.append((client, upstream))
            for src, dst, up in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(src, dst, up), daemon=True).start()

    def _pump(self, src, dst, up):
        try:
            while not self._stop:
                rate = self.rate
                data = src.recv(min(self.CHUNK, max(256, int(rate / 10))) if rate else 65536)
                if not data:
                    break
                if self.delay:
                    time.sleep(self.delay)
                if rate:
                    time.sleep(len(data) / rate)
                dst.sendall(data)
                with self._lock:
                    if up:
                        self.bytes_up += len(data)
                    else:
                        self.bytes_down += len(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self):
        """Drops every open connection, as a link that goes down would."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self):
        self._stop = True
        self.cut()
        self._thread.join(5)
        self._server.close()


def sample(pid):
    """{'rss_kib', 'fds', 'threads'} of a running process, from /proc."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                out["rss_kib"] = int(line.split()[1])
            elif line.startswith("Threads:"):
                out["threads"] = int(line.split()[1])
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


def thread_ids(pid):
    """{thread name: [tid, ...]} of a running process."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                out.setdefault(f.read().strip(), []).append(int(tid))
        except OSError:
            pass
    return out


class FrozenThread:
    """Stops one thread of another process while the rest of it runs on, as
    a debugger does (PTRACE_SEIZE + PTRACE_INTERRUPT: no SIGSTOP, which would
    stop every thread). The thread is stuck until release(); from outside it
    is what a worker hung in a call that never returns looks like. Needs
    CAP_SYS_PTRACE or a permissive Yama ptrace scope; raises OSError otherwise.
    Call every method from the same thread (the tracer)."""

    PTRACE_DETACH = 17
    PTRACE_SEIZE = 0x4206
    PTRACE_INTERRUPT = 0x4207
    WALL = 0x40000000

    def __init__(self, tid):
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.ptrace.restype = ctypes.c_long
        self._libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p,
                                      ctypes.c_void_p]
        self.tid = tid
        self._ptrace(self.PTRACE_SEIZE, "seize")
        self.attached = True
        self._ptrace(self.PTRACE_INTERRUPT, "interrupt")
        os.waitpid(tid, self.WALL)  # until the thread is stopped

    def _ptrace(self, request, what):
        if self._libc.ptrace(request, self.tid, None, None) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"ptrace {what} of thread {self.tid}: {os.strerror(err)}")

    def release(self):
        if self.attached:
            self.attached = False
            self._ptrace(self.PTRACE_DETACH, "detach")


class SmallDisk:
    """A tmpfs of `size` mounted on `path` (made if missing): a small disk that
    the test can fill. Needs root; raises RuntimeError if it cannot be
    mounted. close() unmounts it (lazily: the agent may still hold files)."""

    def __init__(self, path, size):
        self.path = path
        os.makedirs(path, exist_ok=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0750",
                            "tagrelay-test", path], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"cannot mount a tmpfs on {path}: {r.stderr.strip()}")
        self.mounted = True

    def fill(self, name="filler"):
        """Writes a file on the disk until it is full; returns its size."""
        written = 0
        with open(os.path.join(self.path, name), "wb", buffering=0) as f:
            for size in (65536, 4096, 512, 1):  # then smaller writes until not one byte fits
                block = b"\0" * size
                while True:
                    try:
                        n = f.write(block)
                    except OSError:
                        break
                    written += n
                    if n < size:
                        break
        return written

    def free(self, name="filler"):
        os.unlink(os.path.join(self.path, name))

    def close(self):
        if self.mounted:
            self.mounted = False
            subprocess.run(["umount", "--lazy", self.path], check=False)


def next_seqs(db_path):
    """{device: next sequence number} from the store (read-only; the agent may run)."""
    import sqlite3
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        return dict(db.execute("SELECT name, next_seq FROM devices"))


def losses(receiver, db_path, devices=None):
    """What the store handed out and is neither at the receiver nor kept
    undelivered in the store, and what the store marks delivered that the
    receiver never got: {device: (lost seqs, delivered-not-received seqs)},
    only for devices with something wrong. Read after the agent stopped."""
    import store_peek
    out = {}
    for name, next_seq in next_seqs(db_path).items():
        if devices is not None and name not in devices:
            continue
        got = set(receiver.seqs(name))
        kept = store_peek.seqs(db_path, name, delivered=False)
        lost = set(range(1, next_seq)) - got - kept
        phantom = store_peek.seqs(db_path, name, delivered=True) - got
        if lost or phantom:
            out[name] = (sorted(lost), sorted(phantom))
    return out


def received_up_to(receiver, marks):
    """True once the receiver holds every sequence number below each device's mark."""
    for name, next_seq in marks.items():
        seqs = receiver.seqs(name)
        if len(seqs) < next_seq - 1 or seqs[:next_seq - 1] != list(range(1, next_seq)):
            return False
    return True


def write_load_config(workdir, gateway, urls, sim_port, key_file, devices=5, poll="50ms",
                      extra_uplink="", extra="", data_dir=None, name="tagrelay.toml"):
    """A config with `devices` devices of five tags each on one simulator,
    polled every `poll`, sending to the broker URL(s) `urls` without TLS.
    Returns its path."""
    if isinstance(urls, str):
        urls = [urls]
    url_list = ", ".join(f'"{u}"' for u in urls)
    device_text = harness.sim_devices(devices, poll)
    return workdir.file(name, f"""
[gateway]
id = "{gateway}"
data_dir = "{data_dir or workdir.path + '/data'}"

[store]
commit_interval = "100ms"

[uplink]
url = [{url_list}]
insecure = true
api_key_file = "{key_file}"
batch_linger = "100ms"
reconnect_min = "100ms"
reconnect_max = "1s"
{extra_uplink}

[[bus]]
name = "sim"
type = "tcp"
host = "127.0.0.1"
port = {sim_port}
{device_text}
{extra}
""", mode=0o644)
