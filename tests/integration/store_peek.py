"""Reads a tagrelay store (tagrelay.db) from tests, independently of the agent's
own code: it decodes the chunk format (store/chunk_codec.h, format 1) itself,
so tests that look into the store also cross-check that format."""

import sqlite3
import struct

QUALITIES = {0: "good", 1: "bad", 2: "uncertain"}


class _Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def byte(self):
        b = self.data[self.pos]
        self.pos += 1
        return b

    def varint(self):
        result, shift = 0, 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift >= 70:
                raise ValueError("varint too long")

    def signed(self):
        u = self.varint()
        return (u >> 1) ^ -(u & 1)

    def text(self):
        n = self.varint()
        s = self.data[self.pos:self.pos + n]
        if len(s) != n:
            raise ValueError("truncated text")
        self.pos += n
        return s.decode("utf-8", errors="replace")


def decode_chunk(data, count):
    """[(tag_id, ts, quality, value, err)] of one chunk; ValueError if it is damaged."""
    r = _Reader(bytes(data))
    if r.byte() != 1:
        raise ValueError("unknown chunk format")
    if r.varint() != count:
        raise ValueError("wrong count")
    ts = r.signed()
    out = []
    for _ in range(count):
        tag = r.varint()
        ts += r.signed()
        kind = r.byte()
        vtype, quality = kind & 0x7, (kind >> 3) & 0x3
        value = None
        if vtype == 1:
            value = False
        elif vtype == 2:
            value = True
        elif vtype == 3:
            value = r.signed()
        elif vtype == 4:
            value = r.varint()
        elif vtype == 5:
            value = struct.unpack("<d", bytes(r.data[r.pos:r.pos + 8]))[0]
            r.pos += 8
        elif vtype == 6:
            value = r.text()
        elif vtype != 0:
            raise ValueError("bad value type")
        err = r.text() if kind & 0x80 else ""
        out.append((tag, ts, QUALITIES[quality], value, err))
    if r.pos != len(r.data):
        raise ValueError("trailing bytes")
    return out


def readings(db_path, device=None):
    """Every stored reading as a dict (device, seq, tag, ts, q, v, err, delivered),
    in device then sequence order."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        tags = dict(db.execute("SELECT id, name FROM tags"))
        rows = db.execute(
            "SELECT d.name, c.seq_first, c.count, c.data, o.chunk_id IS NULL FROM chunks c "
            "JOIN devices d ON d.id = c.device_id LEFT JOIN outbox o ON o.device_id = c.device_id "
            "AND o.seq_first = c.seq_first AND o.chunk_id = c.id "
            "WHERE ?1 IS NULL OR d.name = ?1 "
            "ORDER BY d.name, c.seq_first", (device,)).fetchall()
    out = []
    for name, first, count, data, delivered in rows:
        for i, (tag, ts, q, v, err) in enumerate(decode_chunk(data, count)):
            out.append({"device": name, "seq": first + i, "tag": tags[tag], "ts": ts, "q": q,
                        "v": v, "err": err, "delivered": bool(delivered)})
    return out


def seqs(db_path, device, delivered=None):
    """The sequence numbers of a device's stored readings (only the delivered or
    undelivered ones if `delivered` says so), as a set."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT c.seq_first, c.count, o.chunk_id IS NULL FROM chunks c JOIN devices d "
            "ON d.id = c.device_id LEFT JOIN outbox o ON o.device_id = c.device_id "
            "AND o.seq_first = c.seq_first AND o.chunk_id = c.id WHERE d.name = ?",
            (device,)).fetchall()
    return {first + i for first, count, d in rows for i in range(count)
            if delivered is None or bool(d) == delivered}
