"""End-to-end smoke run of a cross-built agent under qemu-user (scripts/cross-test):
the simulated Modbus TCP device (a native build), a local mosquitto with TLS as
the integration tests set it up, the agent run through `--emulator`, and the
reference receiver. Passes when readings polled by the emulated agent arrive,
decoded to the values the simulator serves, and the agent stops cleanly on
SIGTERM.

    /usr/bin/python3 tests/cross/smoke.py --agent build-armhf/agent/tagrelay \\
        --sim build/tests/tagrelay-modbus-sim \\
        --emulator "qemu-arm-static -L /"
"""

import argparse
import os
import shlex
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402

GATEWAY = "gw-cross"
GATEWAY_KEY = "gw-cross-key-0c51e7"
DEVICE = "sim-1"
WANTED = 30  # readings: six polls of the five tags


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", required=True, help="the cross-built tagrelay")
    ap.add_argument("--sim", required=True, help="tagrelay-modbus-sim of this machine")
    ap.add_argument("--emulator", required=True, help="command that runs the agent")
    ap.add_argument("--timeout", type=float, default=120, help="seconds to wait for readings")
    args = ap.parse_args()

    work = harness.Workdir(prefix="tagrelay-cross-")
    broker = sim = receiver = agent = None
    ok = False
    try:
        # The agent is started as the harness starts it, through a wrapper that
        # execs the emulator: signals reach qemu, which passes them on.
        wrapper = work.file("tagrelay", "#!/bin/sh\nexec "
                            f"{' '.join(shlex.quote(a) for a in shlex.split(args.emulator))} "
                            f"{shlex.quote(os.path.abspath(args.agent))} \"$@\"\n", mode=0o755)
        pki = harness.Pki(work)
        cert, key = pki.issue("broker", ("localhost", "127.0.0.1"))
        broker = harness.Broker(work, {GATEWAY: GATEWAY_KEY, "receiver": "rx-pw"},
                                tls={"cafile": pki.cert, "certfile": cert, "keyfile": key})
        broker.start()
        sim = harness.Simulator(args.sim)
        receiver = harness.Receiver(broker.port, "receiver", "rx-pw", ca_file=pki.cert,
                                    gateway=GATEWAY)
        harness.wait_for(receiver.subscribed.is_set, 20, what="the subscriber")
        key_file = work.file("gateway.key", GATEWAY_KEY + "\n", mode=0o600)
        config = harness.write_agent_config(
            work, GATEWAY, broker.port, sim.port, key_file, poll="200ms", linger="200ms",
            url=f"mqtts://localhost:{broker.port}", insecure=False,
            extra_uplink=f'ca_file = "{pki.cert}"\nreconnect_min = "200ms"\nreconnect_max = "1s"\n')
        agent = harness.Agent(wrapper, config, work)
        agent.start()
        harness.wait_for(lambda: len(receiver.seqs(DEVICE)) >= WANTED, args.timeout,
                         what=f"{WANTED} readings at the subscriber")

        _, readings = receiver.snapshot()
        values = {}
        for r in readings.values():
            if r["q"] == "good":
                values.setdefault(r["tag"], []).append(r["v"])
        problems = []
        if receiver.errors:
            problems.append(f"the receiver rejected messages: {receiver.errors[:3]}")
        if set(v for v in values.get("negative", [])) != {-1234}:
            problems.append(f"negative: {values.get('negative')}, expected -1234")
        if any(abs(v - 230.5) > 1e-3 for v in values.get("reference", [None])):
            problems.append(f"reference: {values.get('reference')}, expected 230.5")
        counters = values.get("counter", [])
        if len(counters) < 2 or counters != sorted(counters):
            problems.append(f"counter: {counters}, expected a rising count")
        code = agent.stop(signal.SIGTERM, timeout=60)
        if code != 0:
            problems.append(f"the agent exited with {code} on SIGTERM")
        if problems:
            for p in problems:
                print(f"smoke: {p}", file=sys.stderr)
        else:
            ok = True
            print(f"smoke: {len(readings)} readings of {DEVICE} arrived over TLS from the "
                  f"emulated agent; counter {counters[0]}..{counters[-1]}, agent stopped with 0")
    finally:
        if agent:
            agent.stop(signal.SIGKILL)
        if not ok and agent:
            with open(agent.log) as f:
                print("--- agent log ---\n" + f.read()[-4000:], file=sys.stderr)
        if receiver:
            receiver.close()
        if sim:
            sim.stop()
        if broker:
            broker.stop()
        work.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
