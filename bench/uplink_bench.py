#!/usr/bin/python3
"""Runs the backlog drain benchmark (uplink_drain_bench.cpp): a local mosquitto
with TLS and a password file, a store filled with an outage's worth of readings,
drained by the uplink and compared with a raw libmosquitto QoS 1 publish loop of
the same payload size and inflight window, in the same run. The raw loop also
runs at the steady load's message size (--steady-batch readings), and its
publishing thread's CPU time per reading is printed for both sizes.

    bench/uplink_bench.py [--bin build/bench/tagrelay_uplink_bench] [--readings N] [--rounds R]
                          [--steady-batch N]

Exit code 0 when the drain reaches at least 60% of the raw ceiling in MB/s."""

import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import harness  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", default=os.path.join(HERE, "..", "build", "bench", "tagrelay_uplink_bench"))
    p.add_argument("--readings", type=int, default=200000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--inflight", type=int, default=20)
    p.add_argument("--steady-batch", type=int, default=100,
                   help="readings a message at the steady load (100 tags a device a second)")
    args = p.parse_args()

    work = harness.Workdir(prefix="tagrelay-bench-")
    broker = None
    try:
        pki = harness.Pki(work)
        cert, key = pki.issue("broker", ("localhost",))
        broker = harness.Broker(work, {"gw-bench": "bench-key-0123456789"},
                                tls={"cafile": pki.cert, "certfile": cert, "keyfile": key})
        with open(broker.conf, "a") as f:
            f.write(f"max_inflight_messages {args.inflight}\nmax_queued_messages 100000\n")
        broker.start()
        key_file = work.file("gw.key", "bench-key-0123456789\n", mode=0o600)
        return subprocess.run([args.bin, "--host", "localhost", "--port", str(broker.port),
                               "--ca-file", pki.cert, "--user", "gw-bench", "--key-file", key_file,
                               "--dir", work.path, "--readings", str(args.readings),
                               "--rounds", str(args.rounds), "--inflight", str(args.inflight),
                               "--steady-batch", str(args.steady_batch)]
                              ).returncode
    finally:
        if broker:
            broker.stop()
        work.close()


if __name__ == "__main__":
    sys.exit(main())
