"""A scripted MQTT 5 broker for tests: it speaks just what the gateway needs
(CONNECT/CONNACK, PUBLISH/PUBACK with reason codes, PINGREQ/PINGRESP,
DISCONNECT) over plain TCP, one client at a time, and lets the test decide
what happens to each QoS 1 PUBLISH: acknowledge it (with any reason code),
withhold the acknowledgement, hold it back to send later in another order,
cut the connection before acknowledging it, or fall silent on the connection
(no acknowledgement, no PINGRESP, the connection left open).

Every PUBLISH is recorded with the session it came in and what became of it,
so that a test can compare the gateway's store with what was really
acknowledged."""

import json
import socket
import struct
import threading
import time

ACK = "ack"            # ("ack", reason): send PUBACK with this reason code now
WITHHOLD = "withhold"  # never acknowledge
HOLD = "hold"          # keep; the policy releases held ones with release_held()
CUT = "cut"            # close the connection without acknowledging
SILENT = "silent"      # from this publish on, answer nothing on this connection (no PUBACK,
                       # no PINGRESP), keep it open and keep reading: a broker hung above TCP


def _varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def _read_packet(sock):
    head = _read_exact(sock, 1)[0]
    mult, length = 1, 0
    while True:
        b = _read_exact(sock, 1)[0]
        length += (b & 0x7F) * mult
        if not b & 0x80:
            break
        mult *= 128
    return head, _read_exact(sock, length) if length else b""


def _read_varint(data, i):
    mult, value = 1, 0
    while True:
        b = data[i]
        i += 1
        value += (b & 0x7F) * mult
        if not b & 0x80:
            return value, i
        mult *= 128


def _utf8(data, i):
    n = struct.unpack_from(">H", data, i)[0]
    return data[i + 2:i + 2 + n].decode(), i + 2 + n


def _user_properties(props):
    out, i = [], 0
    while i < len(props):
        ident = props[i]
        i += 1
        if ident == 0x26:  # user property: two strings
            k, i = _utf8(props, i)
            v, i = _utf8(props, i)
            out.append((k, v))
        elif ident in (0x01,):  # payload format indicator: one byte
            i += 1
        elif ident in (0x02,):  # message expiry: four bytes
            i += 4
        elif ident in (0x03, 0x08):  # content type, response topic: string
            _, i = _utf8(props, i)
        elif ident == 0x09:  # correlation data: binary
            n = struct.unpack_from(">H", props, i)[0]
            i += 2 + n
        elif ident == 0x23:  # topic alias: two bytes
            i += 2
        elif ident == 0x0B:  # subscription identifier: varint
            _, i = _read_varint(props, i)
        else:
            raise ValueError(f"unexpected PUBLISH property 0x{ident:02x}")
    return out


class Publish:
    def __init__(self, session, mid, topic, payload, retain, properties):
        self.session = session
        self.mid = mid
        self.topic = topic
        self.payload = payload
        self.retain = retain
        self.properties = properties
        self.outcome = None  # None: no answer (yet); ("ack", reason); "withheld"; "cut"

    def json(self):
        return json.loads(self.payload)

    @property
    def telemetry(self):
        return self.topic.endswith("/telemetry")


class ScriptedBroker:
    """policy(publish, broker) -> ACK tuple, WITHHOLD, HOLD, CUT or SILENT. The default
    acknowledges everything with reason 0."""

    def __init__(self, policy=None):
        self.policy = policy or (lambda p, b: (ACK, 0))
        self.lock = threading.Lock()
        self.publishes = []
        self.sessions = 0
        self.connects = []       # (client id, user name) per CONNECT
        self._held = []
        self._conn = None
        self._silent_session = None
        self.silent_since = None  # time.monotonic() when a session went silent
        self._send_lock = threading.Lock()  # the server thread and the test both send
        self._stop = False
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self):
        self._stop = True
        self._thread.join(5)
        self._server.close()

    # --- for the policy and the test ---------------------------------------

    def ack(self, publish, reason=0):
        """Sends the PUBACK of `publish` now (if its connection is still up)."""
        with self.lock:
            conn = self._conn if publish.session == self.sessions else None
            publish.outcome = (ACK, reason)
        if conn is None:
            return
        body = struct.pack(">H", publish.mid) + (bytes([reason, 0]) if reason else b"")
        try:
            self._send(conn, bytes([0x40]) + _varint(len(body)) + body)
        except OSError:
            pass

    def _send(self, conn, data):
        with self._send_lock:
            conn.sendall(data)

    def drop_connection(self):
        """Closes the current connection, as a broker restart would."""
        with self.lock:
            conn = self._conn
        if conn is not None:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def release_held(self, order=reversed, reason=0):
        """Acknowledges the held publishes, by default in reverse order."""
        with self.lock:
            held, self._held = self._held, []
        for p in order(held):
            self.ack(p, reason)

    def held(self):
        with self.lock:
            return len(self._held)

    def telemetry(self):
        with self.lock:
            return [p for p in self.publishes if p.telemetry]

    def acked_seqs(self, device):
        """Every telemetry sequence number of `device` acknowledged with a reason below 0x80."""
        out = set()
        for p in self.telemetry():
            if isinstance(p.outcome, tuple) and p.outcome[1] < 0x80:
                b = p.json()
                if b["device"] == device:
                    out.update(range(b["seq_first"], b["seq_last"] + 1))
        return out

    def published_seqs(self, device):
        out = set()
        for p in self.telemetry():
            b = p.json()
            if b["device"] == device:
                out.update(range(b["seq_first"], b["seq_last"] + 1))
        return out

    # --- the server ----------------------------------------------------------

    def _serve(self):
        while not self._stop:
            try:
                conn, _ = self._server.accept()
            except socket.timeout:
                continue
            conn.settimeout(0.2)
            try:
                self._session(conn)
            except (ConnectionError, OSError):
                pass
            finally:
                with self.lock:
                    self._conn = None
                conn.close()

    def _session(self, conn):
        while not self._stop:
            try:
                head, body = _read_packet(conn)
            except socket.timeout:
                continue
            kind = head >> 4
            if kind == 1:
                self._on_connect(conn, body)
            elif kind == 3:
                if self._on_publish(conn, head, body) == CUT:
                    return
            elif kind == 12:
                if self._silent_session != self.sessions:
                    self._send(conn, b"\xd0\x00")
            elif kind == 14:
                return

    def _on_connect(self, conn, body):
        _, i = _utf8(body, 0)  # "MQTT"
        level, flags = body[i], body[i + 1]
        i += 4  # level, flags, keepalive
        if level == 5:
            n, i = _read_varint(body, i)
            i += n
        client_id, i = _utf8(body, i)
        if flags & 0x04:  # will: properties, topic, payload
            if level == 5:
                n, i = _read_varint(body, i)
                i += n
            _, i = _utf8(body, i)
            n = struct.unpack_from(">H", body, i)[0]
            i += 2 + n
        user = None
        if flags & 0x80:
            user, i = _utf8(body, i)
        with self.lock:
            self.sessions += 1
            self._conn = conn
            self._held = []
            self.connects.append((client_id, user))
        self._send(conn, b"\x20\x03\x00\x00\x00" if level == 5 else b"\x20\x02\x00\x00")

    def _on_publish(self, conn, head, body):
        qos = (head >> 1) & 3
        topic, i = _utf8(body, 0)
        mid = 0
        if qos:
            mid = struct.unpack_from(">H", body, i)[0]
            i += 2
        n, i = _read_varint(body, i)
        props = _user_properties(body[i:i + n])
        with self.lock:
            p = Publish(self.sessions, mid, topic, body[i + n:], bool(head & 1), props)
            self.publishes.append(p)
        if not qos:
            return None
        if self._silent_session == p.session:
            p.outcome = "withheld"
            return None
        action = self.policy(p, self)
        if action == SILENT:
            p.outcome = "withheld"
            with self.lock:
                self._silent_session = p.session
                self.silent_since = time.monotonic()
            return None
        if action == CUT:
            p.outcome = "cut"
            conn.shutdown(socket.SHUT_RDWR)
            return CUT
        if action == WITHHOLD:
            p.outcome = "withheld"
        elif action == HOLD:
            with self.lock:
                self._held.append(p)
        else:
            self.ack(p, action[1])
        return None
