"""The benchmark's receiver: one MQTT subscription that takes what every
subject publishes and accounts for each value by the value itself.

The fleet simulator advances a register's value by one on every read, so the
values of one (device, register) that a subject delivers must be consecutive
integers. Whatever is missing between the first value delivered and the
simulator's counter at the end of a run was acquired (or should have been)
and not delivered: that is the loss, counted the same way for every subject.

For tagrelay's messages it also does what the reference receiver
(tests/integration/reference_receiver.py) does, with that module's own
functions: every signature is verified, one telemetry message in
`schema_every` is validated against the JSON Schema, and duplicates are
counted by (device, seq). It keeps no per-reading records, so that an
hour-long outage fits in memory.

Latency of a value = its arrival here minus its acquisition timestamp, in
milliseconds, kept as a histogram (live and historical values apart) that
the harness resets at the start of its measuring window; from a given time on
(the broker's return after an outage) live values acquired before it are
kept apart from the live sample.

Only the devices of the fleet the harness names in clear() are counted: a
previous subject's messages that the broker still delivers from its queue
(persisted across a broker restart) are counted as stray and nothing else.

Subjects and their topics (the harness configures them so):
  tagrelay   tagrelay/v1/{gateway}/{device}/telemetry   the wire contract v1
  collectd   bench/collectd/{device}/modbus-1/gauge-t{NNN}   "epoch.frac:value"
  Node-RED   bench/nodered/{device}   {"ts": ms, "v": [100 values]}
"""

import bisect
import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "integration"))
import reference_receiver  # noqa: E402

HIST_MS = 600_000  # latencies up to 10 minutes at 1 ms; longer ones go to the last bucket
SYNC_TOPIC = "bench/sync/"  # the receiver's own markers (Subscription.sync)
NO_TS = object()  # equal to no acquisition ts


class Histogram:
    def __init__(self):
        self.counts = {}
        self.n = 0

    def add(self, ms, count=1):
        b = min(max(int(ms), 0), HIST_MS)
        self.counts[b] = self.counts.get(b, 0) + count
        self.n += count

    def percentile(self, p):
        if self.n == 0:
            return None
        rank = p / 100.0 * self.n
        seen = 0
        for b in sorted(self.counts):
            seen += self.counts[b]
            if seen >= rank:
                return b
        return HIST_MS


class ValueTrack:
    """The values received of one (device, register): merged closed intervals."""

    __slots__ = ("starts", "ends")

    def __init__(self):
        self.starts = []
        self.ends = []

    def add(self, v):
        ends = self.ends
        if ends and ends[-1] == v - 1:  # the next value: the common case, no search
            ends[-1] = v
            return True
        i = bisect.bisect_right(self.starts, v) - 1
        if i >= 0 and self.starts[i] <= v <= self.ends[i]:
            return False  # seen before
        if i >= 0 and self.ends[i] == v - 1:
            self.ends[i] = v
            if i + 1 < len(self.starts) and self.starts[i + 1] == v + 1:
                self.ends[i] = self.ends[i + 1]
                del self.starts[i + 1], self.ends[i + 1]
            return True
        if i + 1 < len(self.starts) and self.starts[i + 1] == v + 1:
            self.starts[i + 1] = v
            return True
        self.starts.insert(i + 1, v)
        self.ends.insert(i + 1, v)
        return True

    def run_is_new(self, first, last):
        """True when none of first..last (first <= last) is here yet."""
        i = bisect.bisect_right(self.starts, last) - 1  # the last interval starting <= last
        return i < 0 or self.ends[i] < first

    def add_run(self, first, last):
        """Adds first..last at once, none of which is here yet (run_is_new)."""
        starts, ends = self.starts, self.ends
        i = bisect.bisect_right(starts, last) - 1
        left = i >= 0 and ends[i] == first - 1
        right = i + 1 < len(starts) and starts[i + 1] == last + 1
        if left and right:
            ends[i] = ends[i + 1]
            del starts[i + 1], ends[i + 1]
        elif left:
            ends[i] = last
        elif right:
            starts[i + 1] = first
        else:
            starts.insert(i + 1, first)
            ends.insert(i + 1, last)

    def missing_upto(self, last):
        """Values missing from the first one received up to `last` (inclusive)."""
        if not self.starts:
            return 0
        missing = 0
        for k in range(1, len(self.starts)):
            missing += self.starts[k] - self.ends[k - 1] - 1
        if last > self.ends[-1]:
            missing += last - self.ends[-1]
        return missing

    def highest(self):
        return self.ends[-1] if self.ends else -1


class BenchReceiver:
    def __init__(self, keyring=None, schema_every=50):
        self.lock = threading.Lock()
        self.keyring = keyring or reference_receiver.KeyRing()
        self.validators = reference_receiver.load_validators()
        self.schema_every = schema_every
        self.clear()

    def clear(self, devices=None):
        """Forgets everything received. With `devices`, only their messages
        count from now on; the others are counted in `stray` alone."""
        with self.lock:
            self.devices = set(devices) if devices is not None else None
            self.stray = 0
            self.tracks = {}  # (device, register) -> ValueTrack
            self._tag_tracks = {}  # device -> {tag name: its ValueTrack in tracks}
            self.live = Histogram()
            self.live_before = Histogram()
            self.live_since = None
            self.historical = Histogram()
            self.messages = 0
            self.values = 0
            self.duplicates = 0
            self.rejected = []
            self.bytes = 0
            self.historical_bytes = 0
            self.historical_values = 0
            self.window_first_arrival = None
            self._seqs = {}  # (device) -> ValueTrack of seq numbers
            self._telemetry = 0

    def reset_window(self, live_since_ms=None):
        """Starts the latency histograms afresh (the measuring window). With
        `live_since_ms` (epoch ms), a live value acquired before that time goes
        to `live_before` instead of `live`: after an outage, `live` then holds
        the values acquired since the broker's return and sent live, and
        `live_before` whatever else came unflagged (a subject without a store
        delivering what it held; for tagrelay, it should stay empty)."""
        with self.lock:
            self.live = Histogram()
            self.live_before = Histogram()
            self.live_since = live_since_ms
            self.historical = Histogram()
            self.window_first_arrival = None

    # --- the subscription -------------------------------------------------

    def on_message(self, topic, payload, props):
        now_ms = time.time() * 1000.0
        try:
            if topic.startswith("tagrelay/"):
                self._tagrelay(topic, payload, props, now_ms)
            elif topic.startswith("bench/collectd/"):
                self._collectd(topic, payload, now_ms)
            elif topic.startswith("bench/nodered/"):
                self._nodered(topic, payload, now_ms)
        except (ValueError, KeyError, IndexError, TypeError) as e:
            with self.lock:
                self.rejected.append((topic, f"unreadable: {e}"))

    def _add(self, device, register, value, now_ms, latency_ms, historical=False):
        track = self.tracks.get((device, register))
        if track is None:
            track = self.tracks[(device, register)] = ValueTrack()
        track.add(value)
        self.values += 1
        self._histogram(now_ms - latency_ms, historical).add(latency_ms)

    def _histogram(self, ts, historical):
        """Where the latency of a value acquired at `ts` goes (see reset_window)."""
        if historical:
            return self.historical
        if self.live_since is not None and ts < self.live_since:
            return self.live_before
        return self.live

    def _latencies(self, now_ms, counts, historical):
        """Adds {acquisition ts: values} of one message to the histograms."""
        for ts, n in counts.items():
            self._histogram(ts, historical).add(now_ms - ts, n)

    def _tag_track(self, device, r, now_ms, tag_tracks):
        """The ValueTrack of a reading's tag (named tNNN: register NNN), found
        or made on first sight; an unreadable reading makes none."""
        tag = r["tag"]
        key = (device, int(tag[1:]))
        int(r["v"]), now_ms - r["ts"]  # the checks the reading's value and ts go through
        track = self.tracks.get(key)
        if track is None:
            track = self.tracks[key] = ValueTrack()
        tag_tracks[tag] = track
        return track

    def _fresh(self, seqs, first, readings):
        """The readings whose seq (first + i) was not seen before, the others
        counted as duplicates, each seq added as its reading is taken."""
        for i, r in enumerate(readings):
            if seqs.add(first + i):
                yield r
            else:
                self.duplicates += 1

    def _stray(self, device):
        """True (and counted) for a message of a device not in the fleet measured."""
        if self.devices is None or device in self.devices:
            return False
        with self.lock:
            self.stray += 1
        return True

    def _tagrelay(self, topic, payload, props, now_ms):
        parts = topic.split("/")
        if len(parts) != 5 or parts[4] != "telemetry":
            return  # status and births: not counted
        gateway, device = parts[2], parts[3]
        if self._stray(device):
            return
        props = dict(props)
        keys = self.keyring.keys_of(gateway, device)
        if keys:
            key = keys.get(props.get("kid"))
            sig = props.get("sig")
            if (key is None or sig is None
                    or reference_receiver.signature(key, topic, payload) != sig):
                with self.lock:
                    self.rejected.append((topic, "bad or missing signature"))
                return
        doc = json.loads(payload)
        with self.lock:
            self._telemetry += 1
            check = (self._telemetry - 1) % self.schema_every == 0
        if check:
            errors = list(self.validators["telemetry"].iter_errors(doc))
            if errors:
                with self.lock:
                    self.rejected.append((topic, f"schema: {errors[0].message}"))
                return
        readings = doc["readings"]
        historical = bool(doc["historical"])
        with self.lock:
            self.messages += 1
            self.bytes += len(payload)
            if historical:
                self.historical_bytes += len(payload)
                self.historical_values += len(readings)
            seqs = self._seqs.get(device)
            if seqs is None:
                seqs = self._seqs[device] = ValueTrack()
            first = doc["seq_first"]
            # Reading i has seq first + i. When none of the message's seqs was
            # seen before (the common case) they are added as one run after its
            # readings; otherwise one by one as the readings are taken.
            last = first + len(readings) - 1
            run = bool(readings) and seqs.run_is_new(first, last)
            tag_tracks = self._tag_tracks.get(device)
            if tag_tracks is None:
                tag_tracks = self._tag_tracks[device] = {}
            # The values of one acquisition ts are counted together: a poll's
            # readings come one after the other with the same ts.
            counts = {}  # acquisition ts -> values
            prev, n = NO_TS, 0  # the ts of the readings just taken, and how many
            r = None
            try:
                for r in (readings if run else self._fresh(seqs, first, readings)):
                    if r.get("q", "good") != "good":
                        continue
                    track = tag_tracks.get(r["tag"]) or self._tag_track(device, r, now_ms,
                                                                        tag_tracks)
                    v = int(r["v"])
                    ts = r["ts"]
                    if ts != prev:
                        now_ms - ts  # a ts that is no number fails here, as its latency would
                        if n:
                            counts[prev] = counts.get(prev, 0) + n
                        prev, n = ts, 0
                    ends = track.ends
                    if ends and ends[-1] == v - 1:  # the register's next value: no call
                        ends[-1] = v
                    else:
                        track.add(v)
                    n += 1
            except Exception:
                if run:  # an unreadable reading: the seqs up to it were taken
                    seqs.add_run(first, first + next(i for i, x in enumerate(readings) if x is r))
                raise
            finally:
                if n:
                    counts[prev] = counts.get(prev, 0) + n
                self.values += sum(counts.values())
                self._latencies(now_ms, counts, historical)
            if run:
                seqs.add_run(first, last)
            if self.window_first_arrival is None:
                self.window_first_arrival = now_ms

    def _collectd(self, topic, payload, now_ms):
        # bench/collectd/{device}/modbus-1/gauge-t{NNN}
        parts = topic.split("/")
        if self._stray(parts[2]):
            return
        register = int(parts[4].rsplit("-t", 1)[1])
        ts, value = payload.rstrip(b"\0").decode().split(":")  # it sends the C string's NUL
        with self.lock:
            self.messages += 1
            self.bytes += len(payload)
            self._add(parts[2], register, int(float(value)), now_ms,
                      now_ms - float(ts) * 1000.0)
            if self.window_first_arrival is None:
                self.window_first_arrival = now_ms

    def _nodered(self, topic, payload, now_ms):
        device = topic.split("/")[2]
        if self._stray(device):
            return
        doc = json.loads(payload)
        latency = now_ms - doc["ts"]
        with self.lock:
            self.messages += 1
            self.bytes += len(payload)
            for register, value in enumerate(doc["v"]):
                self._add(device, register, int(value), now_ms, latency)
            if self.window_first_arrival is None:
                self.window_first_arrival = now_ms

    # --- reports ----------------------------------------------------------

    def loss(self, expected_last):
        """Missing values given {device: the last value every register must have}."""
        with self.lock:
            missing = 0
            for (device, _register), track in self.tracks.items():
                last = expected_last.get(device)
                if last is not None:
                    missing += track.missing_upto(last)
            # a device that delivered nothing at all
            have = {d for (d, _r) in self.tracks}
            return missing, sorted(set(expected_last) - have)

    def loss_split(self, expected_last):
        """(missing between values received, missing after the last value received)."""
        with self.lock:
            interior = tail = 0
            for (device, _register), track in self.tracks.items():
                last = expected_last.get(device)
                if last is None or not track.starts:
                    continue
                all_missing = track.missing_upto(last)
                t = max(last - track.ends[-1], 0)
                interior += all_missing - t
                tail += t
            return interior, tail

    def caught_up(self, expected_last):
        """True when every register of every device has reached its expected value."""
        with self.lock:
            devices = {}
            for (device, _register), track in self.tracks.items():
                h = track.highest()
                devices[device] = min(devices.get(device, h), h)
            return all(devices.get(d, -1) >= last for d, last in expected_last.items())

    def complete(self, expected_last):
        """True when every register of every device holds every value from its
        first one received up to the expected one, with no gap: a backlog that
        is still arriving behind newer values is not complete."""
        with self.lock:
            have = set()
            for (device, _register), track in self.tracks.items():
                last = expected_last.get(device)
                if last is None:
                    continue
                if track.missing_upto(last):
                    return False
                have.add(device)
            return have >= set(expected_last)

    def seq_gaps(self):
        with self.lock:
            return sum(t.missing_upto(t.highest()) for t in self._seqs.values())


class Subscription:
    """paho-mqtt (Debian's python3-paho-mqtt 1.6) feeding a BenchReceiver."""

    def __init__(self, receiver, port, user, password, topics):
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.receiver = receiver
        self.topics = topics
        self.subscribed = threading.Event()
        self.connected = threading.Event()
        self.synced = threading.Event()
        self.sync_topic = None
        self.syncs = 0
        self.client = mqtt.Client(client_id=f"bench-receiver-{os.getpid()}", protocol=mqtt.MQTTv5)
        self.client.username_pw_set(user, password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)
        self.client.max_inflight_messages_set(1000)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 7200
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        if rc == 0:
            client.subscribe([(t, 1) for t in self.topics])
            self.subscribed.set()
            self.connected.set()

    def _on_disconnect(self, client, userdata, rc, properties=None):
        self.connected.clear()

    def _on_message(self, client, userdata, msg):
        if msg.topic.startswith(SYNC_TOPIC):
            if msg.topic == self.sync_topic:
                self.synced.set()
            return
        props = getattr(msg.properties, "UserProperty", None) or []
        self.receiver.on_message(msg.topic, msg.payload, props)

    def sync(self, timeout):
        """Waits until the receiver has handled every message the broker held
        for it: a marker published now is queued behind them (one session,
        delivered in order). Returns False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.connected.wait(0.2):
                continue  # the broker is restarting: the marker goes on the next session
            self.syncs += 1
            self.sync_topic = f"{SYNC_TOPIC}{os.getpid()}/{self.syncs}"
            self.synced.clear()
            self.client.publish(self.sync_topic, b"sync", qos=1)
            while time.monotonic() < deadline and self.connected.is_set():
                if self.synced.wait(0.2):
                    return True
        return False

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()
