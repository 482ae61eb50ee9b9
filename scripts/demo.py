"""The demo behind scripts/demo: a simulated Modbus TCP device, a local
mosquitto and tagrelay, with the telemetry printed as a subscriber receives it.
Halfway through, the broker goes away for a few seconds and comes back: the
readings polled meanwhile arrive afterwards, flagged historical, none lost.
Everything started here is stopped at the end."""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import harness  # noqa: E402


def describe(batch):
    tags = {}
    for r in batch["readings"]:
        if r["q"] != "good":
            tags[r["tag"]] = f"bad({r.get('err', '?')})"
        else:
            v = r["v"]
            tags[r["tag"]] = f"{v:.2f}" if isinstance(v, float) else str(v)
    kind = "historical" if batch["historical"] else "live"
    shown = ", ".join(f"{k}={v}" for k, v in sorted(tags.items()))
    return (f"  {batch['device']}  seq {batch['seq_first']:>4}..{batch['seq_last']:<4} "
            f"{kind:<10} {len(batch['readings']):>3} readings  last: {shown}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", required=True)
    ap.add_argument("--sim", required=True)
    ap.add_argument("--seconds", type=float, default=15)
    args = ap.parse_args()

    work = harness.Workdir(prefix="tagrelay-demo-")
    broker = sim = receiver = agent = None
    try:
        broker = harness.Broker(work, {"gw-demo": "demo-gateway-key", "viewer": "viewer"})
        broker.start()
        sim = harness.Simulator(args.sim)
        receiver = harness.Receiver(broker.port, "viewer", "viewer")
        harness.wait_for(receiver.subscribed.is_set, 10, what="subscriber")
        key = work.file("gateway.key", "demo-gateway-key\n", mode=0o600)
        config = harness.write_agent_config(work, "gw-demo", broker.port, sim.port, key,
                                            poll="500ms", linger="1s")
        print(f"simulated Modbus TCP device on 127.0.0.1:{sim.port}")
        print(f"mosquitto on 127.0.0.1:{broker.port}")
        print(f"tagrelay config: {config}")
        agent = harness.Agent(args.agent, config, work)
        agent.start()
        print("tagrelay is polling 5 tags every 500 ms; telemetry as the subscriber receives it:\n")

        start = time.monotonic()
        outage_at, outage_s, outage_done = args.seconds * 0.35, 3.0, False
        shown = 0
        while time.monotonic() - start < args.seconds:
            time.sleep(0.1)
            batches, _ = receiver.snapshot()
            for b in batches[shown:]:
                print(describe(b))
            shown = len(batches)
            elapsed = time.monotonic() - start
            if not outage_done and elapsed >= outage_at:
                print(f"\n  -- broker stopped for {outage_s:.0f} s: tagrelay keeps polling into its store --\n")
                broker.stop()
                time.sleep(outage_s)
                broker.start()
                print("  -- broker back: the backlog is replayed, flagged historical --\n")
                outage_done = True

        rc = agent.stop()
        agent = None
        time.sleep(0.5)
        batches, readings = receiver.snapshot()
        for b in batches[shown:]:
            print(describe(b))
        seqs = sorted(s for (_, s) in readings)
        unbroken = seqs == list(range(1, seqs[-1] + 1)) if seqs else False
        print(f"\nreceived {len(readings)} readings in {len(batches)} batches, "
              f"sequence 1..{seqs[-1] if seqs else 0} {'unbroken' if unbroken else 'WITH GAPS'}, "
              f"{receiver.duplicates} duplicate(s) dropped; tagrelay exited with {rc}")
        return 0 if unbroken and rc == 0 else 1
    finally:
        if agent:
            agent.stop()
        if receiver:
            receiver.close()
        if sim:
            sim.stop()
        if broker:
            broker.stop()
        work.close()


if __name__ == "__main__":
    sys.exit(main())
