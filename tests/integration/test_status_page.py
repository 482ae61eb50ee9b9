"""The local status page in a real browser: headless Chromium (Debian's)
loads it from a running agent, its DOM must show the device rows with their
link state and counters, the uplink and the (empty) alarm list, and a
screenshot of it must be a PNG of the window's size with real content.

Environment: TAGRELAY_BIN and TAGRELAY_SIM name the built binaries (ctest
sets them); TAGRELAY_SCREENSHOT_DIR, if set, keeps the screenshot there.
"""

import html.parser
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

AGENT = os.environ.get("TAGRELAY_BIN", "build/agent/tagrelay")
SIM = os.environ.get("TAGRELAY_SIM", "build/tests/tagrelay-modbus-sim")
CHROMIUM = "/usr/bin/chromium"
WIDTH, HEIGHT = 1280, 800


def chromium(url, *args):
    profile = tempfile.mkdtemp(prefix="tagrelay-chromium-")
    try:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}",
             f"--window-size={WIDTH},{HEIGHT}", *args, url],
            capture_output=True, text=True, timeout=90)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


class DeviceRows(html.parser.HTMLParser):
    """The rows of the devices table, as {device: {"link": ..., "cells": [...]}},
    and the text of elements by id."""

    def __init__(self):
        super().__init__()
        self.rows = {}
        self.text_by_id = {}
        self._row = None
        self._cell = None
        self._ids = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and a.get("class") == "device":
            self._row = {"link": a.get("data-link"), "cells": []}
            self.rows[a["data-device"]] = self._row
        if tag == "td" and self._row is not None:
            self._cell = ""
        if "id" in a:
            self._ids.append([a["id"], tag, ""])

    def handle_endtag(self, tag):
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row["cells"].append(self._cell.strip())
            self._cell = None
        if tag == "tr":
            self._row = None
        if self._ids and self._ids[-1][1] == tag:
            ident, _, text = self._ids.pop()
            self.text_by_id[ident] = " ".join(text.split())
            if self._ids:
                self._ids[-1][2] += text

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        if self._ids:
            self._ids[-1][2] += data


def decode_png(data):
    """(width, height, rows of (r, g, b) tuples) of an 8-bit RGB or RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0, header
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev, i = [], bytearray(stride), 0
    for _ in range(height):
        f = raw[i]
        line = bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 0xFF
            elif f == 2:
                line[x] = (line[x] + b) & 0xFF
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append([tuple(line[x:x + 3]) for x in range(0, stride, bpp)])
        prev = line
    return width, height, rows


class StatusPageTest(unittest.TestCase):
    def setUp(self):
        if not os.path.exists(CHROMIUM):
            self.fail(f"{CHROMIUM} is missing: run scripts/setup")
        self.work = harness.Workdir()
        self.broker = harness.Broker(self.work, {"gw-page": "pw"})
        self.broker.start()
        self.sim = harness.Simulator(SIM)
        key = self.work.file("gateway.key", "pw\n", mode=0o600)
        self.port = harness.free_port()
        self.socket = os.path.join(self.work.path, "status.sock")
        config = harness.write_agent_config(self.work, "gw-page", self.broker.port, self.sim.port,
                                            key)
        with open(config, "a") as f:
            f.write(f'\n[status]\nlisten = "127.0.0.1:{self.port}"\nsocket = "{self.socket}"\n')
        self.agent = harness.Agent(AGENT, config, self.work)
        self.agent.start()

    def tearDown(self):
        self.agent.stop()
        self.sim.stop()
        self.broker.stop()
        if not getattr(self._outcome, "success", True):
            print(f"\n--- agent log ---\n{self.agent.log_text()}", file=sys.stderr)
        self.work.close()

    def status(self):
        r = subprocess.run([AGENT, "status", "--json", "--socket", self.socket],
                           capture_output=True, text=True, timeout=10)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def test_the_page_in_chromium(self):
        def ready():
            s = self.status()
            return s and s["uplink"]["connected"] and s["devices"][0]["polls"] >= 10 and \
                s["devices"][0]["link"] == "ok"
        harness.wait_for(ready, 20, what="the agent polling and connected")
        url = f"http://127.0.0.1:{self.port}/"

        dom = chromium(url, "--dump-dom")
        self.assertEqual(dom.returncode, 0, dom.stderr[-2000:])
        page = DeviceRows()
        page.feed(dom.stdout)
        self.assertIn("tagrelay", dom.stdout)
        self.assertEqual(list(page.rows), ["sim-1"])
        row = page.rows["sim-1"]
        self.assertEqual(row["link"], "ok")
        # device, bus, link, last good, polls/s, polls, errors, timeouts, CRC, exceptions, unsent, lost
        self.assertEqual(len(row["cells"]), 12, row)
        self.assertEqual(row["cells"][:3], ["sim-1", "sim", "ok"])
        self.assertRegex(row["cells"][3], r"^\d+\.\ds$")
        self.assertGreater(float(row["cells"][4]), 1.0)
        self.assertGreaterEqual(int(row["cells"][5]), 10)
        self.assertEqual(row["cells"][6:10], ["0", "0", "0", "0"])
        self.assertIn("connected", page.text_by_id["uplink-state"])
        self.assertIn("No active alarms.", page.text_by_id["alarms"])
        self.assertIn("Devices (1 of 1 ok)", page.text_by_id["devices"])

        shot = os.path.join(self.work.path, "status-page.png")
        r = chromium(url, f"--screenshot={shot}")
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        with open(shot, "rb") as f:
            width, height, pixels = decode_png(f.read())
        self.assertEqual((width, height), (WIDTH, HEIGHT))
        colors = {p for row in pixels[::4] for p in row[::4]}
        self.assertGreater(len(colors), 20, "text and colours, not a blank page")
        self.assertEqual(pixels[5][WIDTH // 2], (0x1d, 0x27, 0x33), "the dark header band")
        self.assertEqual(pixels[HEIGHT - 5][5], (0xf4, 0xf6, 0xf8), "the page background")
        # The green "ok" pill of the device row is drawn somewhere on the page.
        self.assertIn((0xd8, 0xf3, 0xdc), colors | {p for row in pixels for p in row})
        keep = os.environ.get("TAGRELAY_SCREENSHOT_DIR")
        if keep:
            os.makedirs(keep, exist_ok=True)
            shutil.copy(shot, os.path.join(keep, "status-page.png"))


if __name__ == "__main__":
    unittest.main()
