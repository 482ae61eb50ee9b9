"""Tests of the reference receiver itself (reference_receiver.py), without a
broker: the documented examples pass the schemas, and tampered, foreign-signed,
unsigned, malformed or misaddressed messages are rejected; duplicates and gaps
are reported. The agent's real output is checked by the same receiver in the
other integration tests."""

import glob
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_receiver as rr  # noqa: E402

EXAMPLES = os.path.join(rr.SCHEMA_DIR, "examples")
GW, DEV = "gw-plant1-01", "meter-3"


def batch(first, n, device=DEV, historical=False):
    return json.dumps({
        "schema": "tagrelay.telemetry.v1", "gateway": GW, "device": device,
        "seq_first": first, "seq_last": first + n - 1, "historical": historical,
        "readings": [{"tag": "v", "ts": 1763800000000 + i, "v": 230 + i, "q": "good"}
                     for i in range(n)]}, separators=(",", ":")).encode()


def topic(kind, device=DEV):
    return f"tagrelay/v1/{GW}/{device}/{kind}"


def signed(key, t, payload):
    return [("kid", rr.key_id(key)), ("sig", rr.signature(key, t, payload))]


class LossTest(unittest.TestCase):
    def test_a_reported_loss_is_not_a_gap(self):
        r = rr.ReferenceReceiver()
        self.assertIsNone(r.handle(topic("telemetry"), batch(1, 5)))
        self.assertIsNone(r.handle(topic("telemetry"), batch(21, 5)))
        self.assertEqual(r.gaps(), {(GW, DEV, "telemetry"): [(6, 20)]})
        events = json.dumps({"schema": "tagrelay.events.v1", "gateway": GW, "seq_first": 1,
                             "seq_last": 1, "historical": False,
                             "events": [{"kind": "readings_lost", "ts": 1, "device": DEV,
                                         "seq_first": 6, "seq_last": 17, "count": 12,
                                         "reason": "ring_full"}]}).encode()
        self.assertIsNone(r.handle(f"tagrelay/v1/{GW}/events", events))
        self.assertEqual(r.gaps(), {(GW, DEV, "telemetry"): [(18, 20)]},
                         "only what the gateway did not account for is a gap")
        self.assertEqual(r.lost_ranges(GW, DEV), [(6, 17, "ring_full")])
        self.assertIn("LOST (reported by the gateway)", r.summary())


class SchemaTest(unittest.TestCase):
    def test_every_example_is_valid_and_every_kind_has_one(self):
        r = rr.ReferenceReceiver()
        kinds = set()
        for path in sorted(glob.glob(os.path.join(EXAMPLES, "*.json"))):
            with open(path, "rb") as f:
                payload = f.read().strip()
            doc = json.loads(payload)
            kind = doc["schema"].split(".")[1]
            kinds.add(kind)
            t = (f"tagrelay/v1/{doc['gateway']}/{kind}" if kind in ("status", "events")
                 else f"tagrelay/v1/{doc['gateway']}/{doc['device']}/{kind}")
            self.assertIsNone(r.handle(t, payload), path)
        self.assertEqual(kinds, set(rr.KINDS))

    def test_schema_violations_are_rejected_with_the_place(self):
        r = rr.ReferenceReceiver()
        doc = json.loads(batch(1, 1))
        del doc["readings"][0]["v"]  # a good reading must carry a value
        reason = r.handle(topic("telemetry"), json.dumps(doc).encode())
        self.assertIsNotNone(reason)
        self.assertIn("readings/0", reason)
        doc = json.loads(batch(1, 1))
        doc["readings"][0].update(q="bad", err="timeout")  # a bad reading carries no value
        self.assertIn("schema telemetry", r.handle(topic("telemetry"), json.dumps(doc).encode()))
        doc["extra"] = 1
        self.assertIsNotNone(r.handle(topic("telemetry"), json.dumps(doc).encode()))
        self.assertIn("not UTF-8 JSON", r.handle(topic("telemetry"), b"\xff{"))

    def test_topic_and_payload_must_agree(self):
        r = rr.ReferenceReceiver()
        self.assertIn("device 'other'", r.handle(topic("telemetry"), batch(1, 1, device="other")))
        self.assertIn("schema alarms", r.handle(topic("alarms"), batch(1, 1)))
        self.assertEqual(r.handle("tagrelay/v1/x/y/z/telemetry", batch(1, 1)), "unknown topic")
        doc = json.loads(batch(1, 3))
        doc["seq_last"] = 5
        self.assertIn("does not match 3 records",
                      r.handle(topic("telemetry"), json.dumps(doc).encode()))


class SignatureTest(unittest.TestCase):
    def setUp(self):
        self.keys = rr.KeyRing()
        self.keys.add(GW, DEV, "meter-3-key")
        self.keys.add(GW, "meter-4", "meter-4-key")
        self.r = rr.ReferenceReceiver(self.keys)

    def test_the_signature_is_the_gateways(self):
        # The same known answer as the gateway's unit test (signing_test).
        self.assertEqual(rr.signature("Jefe", "tagrelay/v1/gw/d/telemetry", b'{"x":1}'),
                         "OXh1sp0fptWD7tekLA/Up2Rfj46z/xrqq6baCzzwkz0=")
        self.assertEqual(rr.key_id("Jefe"), "005725b48609c45e")

    def test_a_correctly_signed_batch_is_accepted(self):
        p = batch(1, 2)
        self.assertIsNone(self.r.handle(topic("telemetry"), p, signed("meter-3-key", topic("telemetry"), p)))
        self.assertEqual(self.r.seqs(GW, DEV), [1, 2])

    def test_a_tampered_batch_is_rejected(self):
        p = batch(1, 2)
        props = signed("meter-3-key", topic("telemetry"), p)
        tampered = p.replace(b'"v":230', b'"v":231')
        self.assertNotEqual(tampered, p)
        self.assertIn("bad signature", self.r.handle(topic("telemetry"), tampered, props))
        # Replayed under another device's topic with the same signature: rejected too.
        self.assertIn("is not a key of", self.r.handle(topic("telemetry", "meter-4"),
                                                       batch(1, 2, device="meter-4"), props))
        self.assertEqual(self.r.seqs(GW, DEV), [], "nothing of a rejected batch is recorded")

    def test_a_batch_signed_with_another_devices_key_is_rejected(self):
        p = batch(1, 2)
        reason = self.r.handle(topic("telemetry"), p, signed("meter-4-key", topic("telemetry"), p))
        self.assertIn("is not a key of gw-plant1-01/meter-3", reason)

    def test_an_unsigned_batch_of_a_device_with_a_key_is_rejected(self):
        self.assertEqual(self.r.handle(topic("telemetry"), batch(1, 1)),
                         "unsigned, but the device has a key")
        self.assertIsNone(self.r.handle(topic("telemetry", "meter-9"), batch(1, 1, "meter-9")),
                          "a device without a registered key may send unsigned")

    def test_two_keys_are_valid_during_a_rotation_and_a_revoked_one_is_not(self):
        self.keys.add(GW, DEV, "meter-3-new-key")
        p1, p2 = batch(1, 1), batch(2, 1)
        self.assertIsNone(self.r.handle(topic("telemetry"), p1,
                                        signed("meter-3-key", topic("telemetry"), p1)))
        self.assertIsNone(self.r.handle(topic("telemetry"), p2,
                                        signed("meter-3-new-key", topic("telemetry"), p2)))
        self.keys.remove(GW, DEV, rr.key_id("meter-3-key"))
        p3 = batch(3, 1)
        self.assertIn("not a key", self.r.handle(topic("telemetry"), p3,
                                                 signed("meter-3-key", topic("telemetry"), p3)))


class SequenceTest(unittest.TestCase):
    def test_duplicates_are_dropped_and_gaps_reported(self):
        r = rr.ReferenceReceiver()
        for first, n in ((1, 5), (4, 4), (12, 3), (1, 2)):
            self.assertIsNone(r.handle(topic("telemetry"), batch(first, n)))
        self.assertEqual(r.seqs(GW, DEV), [1, 2, 3, 4, 5, 6, 7, 12, 13, 14])
        self.assertEqual(r.duplicates, 4)
        self.assertEqual(r.gaps(), {(GW, DEV, "telemetry"): [(8, 11)]})
        self.assertIn("GAP gw-plant1-01/meter-3/telemetry: 8..11", r.summary())

    def test_streams_have_their_own_sequences(self):
        r = rr.ReferenceReceiver()
        with open(os.path.join(EXAMPLES, "alarms.json"), "rb") as f:
            alarms = f.read().strip()
        self.assertIsNone(r.handle(topic("alarms"), alarms))
        self.assertIsNone(r.handle(topic("telemetry"), batch(1, 1)))
        self.assertEqual(r.seqs(GW, DEV, "alarms"), [17, 18])
        self.assertEqual(r.seqs(GW, DEV, "telemetry"), [1])
        self.assertEqual(r.gaps(), {(GW, DEV, "alarms"): [(1, 16)]})


if __name__ == "__main__":
    unittest.main(verbosity=2)
