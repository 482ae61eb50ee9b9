"""Smoke test of the end-to-end benchmark harness (bench/e2e), not of
performance: the receiver's accounting finds lost, duplicated and forged
values, and a tiny run of the harness (3 devices x 10 tags, seconds long)
completes every scenario but the component benchmarks and reports what it
measured. No figure is compared with a bound: timings are never asserted.

Needs the release build's bench targets (TAGRELAY_BUILD: the build directory).
Node-RED is left out (bench/run installs it); collectd runs if installed."""

import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bench", "e2e"))
sys.path.insert(0, HERE)
import receiver as rx  # noqa: E402
import reference_receiver as rr  # noqa: E402


def tagrelay_batch(device, first_seq, values, ts=1763800000000, historical=False):
    return json.dumps({
        "schema": "tagrelay.telemetry.v1", "gateway": "gw-bench", "device": device,
        "seq_first": first_seq, "seq_last": first_seq + len(values) - 1,
        "historical": historical,
        "readings": [{"tag": f"t{reg:03d}", "ts": ts, "v": v, "q": "good"}
                     for reg, v in values]}).encode()


class ReceiverAccountingTest(unittest.TestCase):
    def test_value_track_merges_and_counts_what_is_missing(self):
        t = rx.ValueTrack()
        for v in (5, 6, 9, 7, 12, 8):
            self.assertTrue(t.add(v))
        self.assertFalse(t.add(6))
        self.assertEqual(list(zip(t.starts, t.ends)), [(5, 9), (12, 12)])
        self.assertEqual(t.missing_upto(12), 2)   # 10, 11
        self.assertEqual(t.missing_upto(15), 5)   # and 13..15 never arrived
        self.assertEqual(t.highest(), 12)

    def test_loss_duplicates_and_forgery_are_reported(self):
        ring = rr.KeyRing()
        ring.add("gw-bench", "dev-000", "k0")
        r = rx.BenchReceiver(ring, schema_every=1)
        topic = "tagrelay/v1/gw-bench/dev-000/telemetry"

        def send(payload, key="k0"):
            r.on_message(topic, payload, [("kid", rr.key_id(key)),
                                          ("sig", rr.signature(key, topic, payload))])

        send(tagrelay_batch("dev-000", 1, [(0, 1), (1, 1)]))
        send(tagrelay_batch("dev-000", 3, [(0, 2), (1, 2)]))
        send(tagrelay_batch("dev-000", 3, [(0, 2), (1, 2)]))       # a duplicate
        send(tagrelay_batch("dev-000", 7, [(0, 4), (1, 4)]))       # seq 5, 6 and value 3 lost
        send(tagrelay_batch("dev-000", 9, [(0, 5), (1, 5)]), key="other")  # forged
        self.assertEqual(r.duplicates, 2)
        self.assertEqual(r.seq_gaps(), 2)
        self.assertEqual(len(r.rejected), 1)
        self.assertEqual(r.loss({"dev-000": 4}), (2, []))
        self.assertEqual(r.loss_split({"dev-000": 5}), (2, 2))
        self.assertFalse(r.caught_up({"dev-000": 5}))
        self.assertTrue(r.caught_up({"dev-000": 4}))
        # caught up (the newest value passed) but not complete: value 3 is missing
        self.assertFalse(r.complete({"dev-000": 4}))
        send(tagrelay_batch("dev-000", 5, [(0, 3), (1, 3)], historical=True))  # the backlog
        self.assertTrue(r.complete({"dev-000": 4}))
        self.assertFalse(r.complete({"dev-000": 5}))
        self.assertFalse(r.complete({"dev-000": 4, "dev-001": 1}))  # nothing from dev-001
        self.assertEqual(r.loss({"dev-000": 4, "dev-001": 3}), (0, ["dev-001"]))

    def test_peer_formats(self):
        r = rx.BenchReceiver()
        r.on_message("bench/collectd/dev-000/modbus-1/gauge-t007", b"1763800000.250:41\0", [])
        r.on_message("bench/collectd/dev-000/modbus-1/gauge-t007", b"1763800001.250:43\0", [])
        r.on_message("bench/nodered/dev-001", b'{"ts": 1763800000250, "v": [7, 8]}', [])
        self.assertEqual(r.values, 4)
        self.assertEqual(r.loss({"dev-000": 43, "dev-001": 7}), (1, []))
        self.assertEqual(r.rejected, [])


class HarnessSmokeTest(unittest.TestCase):
    def test_tiny_run_of_every_scenario(self):
        build = os.environ.get("TAGRELAY_BUILD", os.path.join(ROOT, "build"))
        with tempfile.TemporaryDirectory(prefix="tagrelay-bench-smoke-") as tmp:
            out, js = os.path.join(tmp, "benchmarks.md"), os.path.join(tmp, "results.json")
            p = subprocess.run(
                ["/usr/bin/python3", os.path.join(ROOT, "bench", "e2e", "run.py"),
                 "--build", build, "--node-red-dir", os.path.join(tmp, "none"),
                 "--scenarios", "1,2,3", "--subjects", "tagrelay,collectd", "--runs", "1",
                 "--ports", "3", "--registers", "10", "--warmup", "2", "--window", "2",
                 "--settle", "30", "--ramp", "500", "--ramp-warmup", "2",
                 "--ramp-window", "2", "--max-p99-ms", "100000", "--outage", "3",
                 "--peer-outage", "2", "--bpr-window", "2", "--out", out, "--json", js],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
            self.assertEqual(p.returncode, 0, p.stdout[-3000:])
            with open(js) as f:
                res = json.load(f)
            with open(out) as f:
                text = f.read()
        t = res["steady"]["tagrelay"]
        self.assertGreater(t["tags_s"], 0)
        self.assertGreater(t["values"], 0)
        self.assertIsNotNone(t["cpu_pct"])
        self.assertIsNotNone(t["rss_peak_mb"])
        self.assertEqual((t["lost"], t["silent_devices"], t["rejected"], t["seq_gaps"]),
                         (0, 0, 0, 0), p.stdout[-3000:])
        o = res["outage"]["tagrelay"]
        self.assertGreater(o["backlog_readings"], 0)
        self.assertIsNotNone(o["drain_s"], p.stdout[-3000:])
        self.assertEqual((o["lost"], o["rejected"]), (0, 0), p.stdout[-3000:])
        self.assertEqual(o["agent_counters"]["evicted"], 0, p.stdout[-3000:])
        self.assertEqual(o["agent_counters"]["dropped_batches"], 0, p.stdout[-3000:])
        self.assertGreater(res["outage"]["bytes_per_reading"], 0)
        self.assertIsNotNone(res["max"]["max_tags_s"], p.stdout[-3000:])
        for heading in ("## 1. Steady load", "## 2. Highest sustainable", "## 3. Broker outage",
                        "## Method"):
            self.assertIn(heading, text)
        if "collectd" in res["steady"]:
            self.assertGreater(res["steady"]["collectd"]["values"], 0)
            self.assertIn("| collectd |", text)


if __name__ == "__main__":
    unittest.main(verbosity=2)
