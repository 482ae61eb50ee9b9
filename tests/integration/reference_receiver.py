#!/usr/bin/python3
"""Reference receiver of the tagrelay wire contract v1 (docs/protocol.md).

What a cloud consumer must do with a fleet's messages, in one small program:
- validate every message against its JSON Schema (docs/schema/),
- check that topic and payload agree (gateway, device, kind of message),
- verify device signatures (MQTT 5 user properties kid and sig) with the
  devices' keys, and reject unsigned messages of a device that has a key,
- drop duplicates by (gateway, device, stream, seq),
- report gaps, duplicates and rejected messages.

Used by the integration tests (harness.Receiver) and useful as a starting point
for a cloud team. Runs under Debian's /usr/bin/python3 with python3-paho-mqtt
and python3-jsonschema.

    reference_receiver.py --host broker.example.com --port 8883 --ca-file ca.pem \\
        --user cloud --password-file cloud.pw \\
        --device-key gw-plant1-01/meter-3=meter-3.key --device-key ...
        [--shared-group cloud] [--duration 60]

A device may have several keys at once (a rotation): give --device-key once per key.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import signal
import sys
import threading
import time

SCHEMA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "schema")
KINDS = ("telemetry", "alarms", "counters", "events", "birth", "status")
STREAMS = ("telemetry", "alarms", "counters")  # the kinds that carry sequence numbers
ITEMS = {"telemetry": "readings", "alarms": "events", "counters": "snapshots", "events": "events"}


def key_id(key):
    """The `kid` of a key: the first 16 hex digits of SHA-256 of the key."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def signature(key, topic, payload):
    """base64(HMAC-SHA256(key, topic + "\\n" + payload))."""
    mac = hmac.new(key.encode(), topic.encode() + b"\n" + payload, hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def read_key_file(path):
    """One line, surrounding whitespace ignored, like the gateway reads it."""
    with open(path) as f:
        key = f.read().strip()
    if not key or "\n" in key:
        raise ValueError(f"key file {path}: expected one line")
    return key


class KeyRing:
    """The devices' signing keys: (gateway, device) -> {kid: key}."""

    def __init__(self):
        self._keys = {}

    def add(self, gateway, device, key):
        self._keys.setdefault((gateway, device), {})[key_id(key)] = key

    def remove(self, gateway, device, kid):
        self._keys.get((gateway, device), {}).pop(kid, None)

    def keys_of(self, gateway, device):
        return self._keys.get((gateway, device))


def load_validators(schema_dir=SCHEMA_DIR):
    import jsonschema  # python3-jsonschema
    validators = {}
    for kind in KINDS:
        with open(os.path.join(schema_dir, f"tagrelay.{kind}.v1.json")) as f:
            schema = json.load(f)
        jsonschema.Draft202012Validator.check_schema(schema)
        validators[kind] = jsonschema.Draft202012Validator(schema)
    return validators


def _subtract(rng, ranges):
    """The parts of the closed range `rng` that none of `ranges` covers."""
    parts = [rng]
    for a, b, *_ in ranges:
        rest = []
        for x, y in parts:
            if b < x or a > y:
                rest.append((x, y))
                continue
            if x < a:
                rest.append((x, a - 1))
            if y > b:
                rest.append((b + 1, y))
        parts = rest
    return parts


class ReferenceReceiver:
    """The transport-independent part: feed it every message with handle()."""

    def __init__(self, keyring=None, prefix="tagrelay/v1", schema_dir=SCHEMA_DIR):
        self.keyring = keyring or KeyRing()
        self.prefix = prefix.rstrip("/")
        self.validators = load_validators(schema_dir)
        self.lock = threading.Lock()
        self.seen = {}        # (gateway, device, stream) -> set of seq
        self.records = {}     # (gateway, device, stream, seq) -> item dict with "historical"
        self.batches = []     # accepted batches, (stream, payload dict), in arrival order
        self.births = {}      # (gateway, device) -> payload
        self.status = []      # accepted status payloads in arrival order
        self.duplicates = 0   # records received again
        self.rejected = []    # (topic, reason)
        self.lost = {}        # (gateway, device) -> [(first, last, reason)] from readings_lost events
        self.accepted = 0

    # --- one message -------------------------------------------------------

    def handle(self, topic, payload, user_properties=(), retained=False):
        """Checks one message; returns None if accepted, else the reason it was rejected."""
        reason = self._check(topic, payload, dict(user_properties))
        with self.lock:
            if reason is not None:
                self.rejected.append((topic, reason))
            else:
                self.accepted += 1
        return reason

    def _check(self, topic, payload, props):
        if not topic.startswith(self.prefix + "/"):
            return "topic outside the prefix"
        parts = topic[len(self.prefix) + 1:].split("/")
        if len(parts) == 2 and parts[1] in ("status", "events"):
            gateway, device, kind = parts[0], None, parts[1]
        elif len(parts) == 3 and parts[2] in KINDS and parts[2] != "status":
            gateway, device, kind = parts
        else:
            return "unknown topic"
        try:
            doc = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            return f"not UTF-8 JSON: {e}"
        errors = sorted(self.validators[kind].iter_errors(doc), key=lambda e: list(e.path))
        if errors:
            e = errors[0]
            where = "/".join(str(p) for p in e.path) or "(top)"
            return f"schema {kind}: {where}: {e.message}"
        if doc["gateway"] != gateway:
            return f"payload gateway {doc['gateway']!r} does not match the topic"
        if device is not None and doc.get("device") != device:
            return f"payload device {doc['device']!r} does not match the topic"
        if device is not None:
            reason = self._verify(gateway, device, topic, payload, props)
            if reason:
                return reason
        if kind == "status":
            with self.lock:
                self.status.append(doc)
            return None
        if kind == "birth":
            with self.lock:
                self.births[(gateway, device)] = doc
            return None
        items = doc[ITEMS[kind]]
        if doc["seq_last"] - doc["seq_first"] + 1 != len(items):
            return (f"seq {doc['seq_first']}..{doc['seq_last']} does not match "
                    f"{len(items)} records")
        with self.lock:
            self.batches.append((kind, doc))
            # The gateway's own events have one sequence per gateway: device "".
            seen = self.seen.setdefault((gateway, device or "", kind), set())
            for i, item in enumerate(items):
                seq = doc["seq_first"] + i
                if seq in seen:
                    self.duplicates += 1
                    continue
                seen.add(seq)
                self.records[(gateway, device or "", kind, seq)] = dict(
                    item, historical=doc["historical"], arrived_ms=int(time.time() * 1000))
                if kind == "events" and item["kind"] == "readings_lost":
                    self.lost.setdefault((gateway, item["device"]), []).append(
                        (item["seq_first"], item["seq_last"], item["reason"]))
        return None

    def _verify(self, gateway, device, topic, payload, props):
        keys = self.keyring.keys_of(gateway, device)
        kid, sig = props.get("kid"), props.get("sig")
        if not keys:
            return None  # a device without a registered key sends unsigned messages
        if kid is None or sig is None:
            return "unsigned, but the device has a key"
        key = keys.get(kid)
        if key is None:
            return f"signed with key id {kid}, which is not a key of {gateway}/{device}"
        if not hmac.compare_digest(signature(key, topic, payload), sig):
            return "bad signature (tampered, or signed with another key)"
        return None

    # --- reports -----------------------------------------------------------

    def seqs(self, gateway, device, stream="telemetry"):
        with self.lock:
            return sorted(self.seen.get((gateway, device, stream), ()))

    def gaps(self):
        """(gateway, device, stream) -> [(first, last), ...] missing below the highest seen
        that the gateway has not reported lost (see lost_ranges())."""
        out = {}
        with self.lock:
            for key, seen in self.seen.items():
                gateway, device, stream = key
                reported = self.lost.get((gateway, device), []) if stream == "telemetry" else []
                missing, expect = [], 1
                for s in sorted(seen):
                    if s > expect:
                        for a, b in _subtract((expect, s - 1), reported):
                            missing.append((a, b))
                    expect = s + 1
                if missing:
                    out[key] = missing
        return out

    def lost_ranges(self, gateway, device):
        """The telemetry the gateway reported it gave up: [(first, last, reason)]."""
        with self.lock:
            return list(self.lost.get((gateway, device), []))

    def summary(self):
        gaps = self.gaps()
        with self.lock:
            lines = [f"accepted {self.accepted} message(s), {len(self.records)} record(s); "
                     f"{self.duplicates} duplicate(s) dropped; {len(self.rejected)} rejected"]
            for (gw, dev, stream), seen in sorted(self.seen.items()):
                lines.append(f"  {gw}/{dev}/{stream}: seq {min(seen)}..{max(seen)}, "
                             f"{len(seen)} distinct")
        for (gw, dev, stream), ranges in sorted(gaps.items()):
            text = ", ".join(f"{a}..{b}" if a != b else str(a) for a, b in ranges)
            lines.append(f"  GAP {gw}/{dev}/{stream}: {text}")
        with self.lock:
            lost = sorted(self.lost.items())
        for (gw, dev), ranges in lost:
            text = ", ".join(f"{a}..{b} ({why})" for a, b, why in ranges)
            lines.append(f"  LOST (reported by the gateway) {gw}/{dev}/telemetry: {text}")
        for topic, reason in self.rejected:
            lines.append(f"  REJECTED {topic}: {reason}")
        return "\n".join(lines)


class Subscriber:
    """Feeds a ReferenceReceiver from an MQTT 5 subscription (paho-mqtt 1.6)."""

    def __init__(self, receiver, host, port, user=None, password=None, ca_file=None,
                 cert_file=None, key_file=None, topic=None, shared_group=None,
                 client_id=None, session_expiry=3600, on_reject=None):
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.receiver = receiver
        self.on_reject = on_reject
        topic = topic or receiver.prefix + "/#"
        # A shared subscription spreads a fleet over several consumers; each
        # message goes to one of them (MQTT 5, docs/protocol.md).
        self.topic = f"$share/{shared_group}/{topic}" if shared_group else topic
        self.subscribed = threading.Event()
        self.subscriptions = 0  # SUBACKs received: one per (re)connection
        self.client = mqtt.Client(client_id=client_id or f"tagrelay-receiver-{os.getpid()}-{port}",
                                  protocol=mqtt.MQTTv5)
        if user:
            self.client.username_pw_set(user, password)
        if ca_file:
            self.client.tls_set(ca_certs=ca_file, certfile=cert_file, keyfile=key_file)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = session_expiry
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)
        self.client.connect(host, port, clean_start=False, properties=props)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        if rc == 0:
            client.subscribe(self.topic, qos=1)
            self.subscribed.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties=None):
        self.subscriptions += 1

    def _on_message(self, client, userdata, msg):
        props = getattr(msg.properties, "UserProperty", None) or []
        reason = self.receiver.handle(msg.topic, msg.payload, props, msg.retain)
        if reason is not None and self.on_reject:
            self.on_reject(msg.topic, reason)

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8883)
    p.add_argument("--user")
    p.add_argument("--password-file", help="file holding the password (not on the command line)")
    p.add_argument("--ca-file", help="CA of the broker's certificate; without it: no TLS")
    p.add_argument("--cert-file")
    p.add_argument("--key-file")
    p.add_argument("--prefix", default="tagrelay/v1")
    p.add_argument("--shared-group", help="subscribe as a member of this MQTT 5 shared group")
    p.add_argument("--device-key", action="append", default=[],
                   metavar="GATEWAY/DEVICE=KEYFILE", help="a device's signing key (repeatable)")
    p.add_argument("--schema-dir", default=SCHEMA_DIR)
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    args = p.parse_args(argv)

    keyring = KeyRing()
    for spec in args.device_key:
        name, _, path = spec.partition("=")
        gateway, _, device = name.partition("/")
        if not (gateway and device and path):
            p.error(f"--device-key {spec!r}: expected GATEWAY/DEVICE=KEYFILE")
        keyring.add(gateway, device, read_key_file(path))
    password = read_key_file(args.password_file) if args.password_file else None
    receiver = ReferenceReceiver(keyring, args.prefix, args.schema_dir)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    sub = Subscriber(receiver, args.host, args.port, args.user, password, args.ca_file,
                     args.cert_file, args.key_file, shared_group=args.shared_group,
                     on_reject=lambda t, r: print(f"REJECTED {t}: {r}", flush=True))
    done.wait(args.duration)
    sub.close()
    print(receiver.summary())
    return 1 if receiver.rejected or receiver.gaps() else 0


if __name__ == "__main__":
    sys.exit(main())
