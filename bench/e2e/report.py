"""Renders the results of bench/e2e/run.py as docs/benchmarks.md."""


def fmt(v, digits=1, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        v = f"{v:,.{digits}f}"
    else:
        v = f"{v:,}"
    return f"{v}{unit}"


def pct(v):
    return fmt(v * 100 if v is not None else None, 0, " %")


def lost(r):
    """Lost values; with the split, those still missing after the settle time
    behind the last value received are shown as late (lag), not as lost."""
    if "lost_tail" in r:
        text = fmt(r["lost_interior"])
        if r["lost_tail"]:
            text += f" (+{r['lost_tail']:,} late)"
    else:
        text = fmt(r["lost"])
    if r.get("silent_devices"):
        text += f" ({r['silent_devices']} device(s) delivered nothing)"
    return text


def verdict(ok):
    if ok is None:
        return "not measured"
    return "met" if ok else "**missed**"


def ratio(a, b):
    return a / b if a is not None and b else None


def cpu_floor(res):
    """The raw components' CPU per tag (each raw loop's own thread CPU time, scaled to one tag):
    (SQLite insert, libmodbus client, libmosquitto publish, their sum), or None."""
    c = res.get("ceilings", {})
    if not all(k in c for k in ("store_raw_cpu", "tcp_raw_cpu", "raw_mqtt_cpu")):
        return None
    parts = (c["store_raw_cpu"][0], c["tcp_raw_cpu"][2], c["raw_mqtt_cpu"][2])
    return parts + (sum(parts),)


def nodered_goal_us(res):
    """0.1 x Node-RED's CPU per tag at the steady load of the same run, or None."""
    p = res.get("steady", {}).get("nodered")
    return 0.1 * p["cpu_us_per_tag"] if p and p.get("cpu_us_per_tag") else None


def goals(res):
    rows = []
    st = res.get("steady", {})
    t = st.get("tagrelay")
    if t:
        rows.append(("CPU at the steady load (TLS, signing)", "<= 5 % of one core",
                     fmt(t["cpu_pct"], 2, " %"),
                     verdict(t["cpu_pct"] <= 5 if t["cpu_pct"] is not None else None)))
        v = verdict(t["rss_peak_mb"] <= 20 if t["rss_peak_mb"] else None)
        if t["rss_peak_mb"] and t["rss_peak_mb"] > 20 and t.get("rss_file_mb"):
            v += (f" ({fmt(t['rss_file_mb'], 1, ' MB')} of it are mapped files, mostly shared "
                  f"libraries; {fmt(t.get('rss_anon_mb'), 1, ' MB')} the agent's own: see 1.)")
        rows.append(("peak RSS at the steady load", "<= 20 MB", fmt(t["rss_peak_mb"], 1, " MB"), v))
        rows.append(("loss at the steady load", "0", lost(t),
                     verdict(t["lost"] == 0 and not t["silent_devices"])))
        for peer, label, bound in (("collectd", "collectd", 0.5), ("nodered", "Node-RED", 0.1)):
            p = st.get(peer)
            r = ratio(t["cpu_us_per_tag"], p["cpu_us_per_tag"]) if p else None
            v = verdict(r <= bound if r is not None else None)
            if r is not None and r > bound and peer == "nodered":
                v += (" (Node-RED reads each device's block and publishes it as one unsigned "
                      "message with no store; tagrelay also writes every reading to its store "
                      "and signs every batch)")
            rows.append((f"CPU per tag vs {label}", f"<= {bound:g} x", fmt(r, 3, " x"), v))
        floor, goal = cpu_floor(res), nodered_goal_us(res)
        if floor and goal:
            rows.append(("floor: raw SQLite + libmodbus + libmosquitto CPU per tag vs 0.1 x "
                         "Node-RED", f"<= {goal:.3f} us", fmt(floor[3], 3, " us"),
                         "below the goal: see 4." if floor[3] <= goal else
                         f"above the goal ({floor[3] / goal:.2f} x): the raw libraries alone, "
                         "with none of the agent's own work, cost more than it allows (see 4.)"))
    c = res.get("ceilings", {})
    if "store_ring" in c:
        r = ratio(*c["store_ring"])
        rows.append(("store write vs raw SQLite batch insert (100 tags/device)", ">= 70 %", pct(r),
                     verdict(r >= 0.7)))
    if "drain" in c and "raw_mqtt" in c:
        r = ratio(c["drain"][0], c["raw_mqtt"][0])
        v = verdict(r >= 0.6)
        if r < 0.6:
            v += (" (the raw loop publishes ready payloads; in the drain the uplink thread also "
                  "reads the stored chunks and encodes the JSON, and the store writer marks the "
                  "acks, on the two cores the broker runs on too: bench/uplink_drain_bench "
                  "prints where the time goes)")
        rows.append(("backlog drain vs raw libmosquitto QoS 1 (MB/s)", ">= 60 %", pct(r), v))
    if "tcp" in c:
        r = ratio(c["tcp"][1], c["tcp"][2])
        rows.append(("TCP polling vs raw libmodbus loop", ">= 90 %", pct(r), verdict(r >= 0.9)))
    for baud in ("19200", "115200"):
        k = f"rtu{baud}"
        if k in c:
            r = ratio(c[k][1], c[k][2])
            rows.append((f"RTU {baud} baud vs line rate", ">= 90 %", pct(r), verdict(r >= 0.9)))
    if not rows:
        return []
    out = ["| goal | bound | measured | |", "| --- | --- | --- | --- |"]
    out += [f"| {a} | {b} | {m} | {v} |" for a, b, m, v in rows]
    return out


NAMES = {"tagrelay": "tagrelay", "collectd": "collectd", "nodered": "Node-RED"}
SENDS = {"tagrelay": "signed batches per device", "collectd": "one message per value",
         "nodered": "one message per device poll"}


def steady(res, args):
    st = res.get("steady")
    if not st:
        return []
    devices = args["ports"] * args["units"]
    out = [f"## 1. Steady load: {devices} devices x {args['registers']} tags every "
           f"{args['poll_ms']} ms",
           "",
           f"Medians of {args['runs']} runs; each run measures a {args['window']:.0f} s window "
           f"after {args['warmup']:.0f} s of warm-up. CPU is % of one core; lost values are "
           "summed over the runs: a value is lost when a later value of its register arrived "
           "and it did not, and late when it had still not arrived "
           f"{args['settle']:.0f} s after the window (the subject lags).",
           "",
           "| subject | tags/s acquired | CPU | CPU per tag | peak RSS | threads | latency p50 "
           "| latency p99 | lost | broker CPU | receiver CPU | other load | MQTT messages "
           "| sends |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for k, r in st.items():
        if k == "failed":
            continue
        msgs = (r["messages"] or 0)
        out.append(
            f"| {NAMES[k]} | {fmt(r['tags_s'], 0)} | {fmt(r['cpu_pct'], 2, ' %')} | "
            f"{fmt(r['cpu_us_per_tag'], 2, ' us')} | {fmt(r['rss_peak_mb'], 1, ' MB')} | "
            f"{fmt(r['threads'])} | {fmt(r['p50_ms'], 0, ' ms')} | {fmt(r['p99_ms'], 0, ' ms')} | "
            f"{lost(r)} | {fmt(r['broker_cpu_pct'], 1, ' %')} | "
            f"{fmt(r['receiver_cpu_pct'], 1, ' %')} | {fmt(r.get('other_load_pct'), 0, ' %')} | "
            f"{fmt(msgs)} | "
            f"{SENDS[k]} |")
    for k, why in st.get("failed", {}).items():
        out.append(f"| {NAMES[k]} | failed: {why} |" + " |" * 12)
    t = st.get("tagrelay")
    if t:
        out.append("")
        for k in ("collectd", "nodered"):
            if k in st and st[k]["cpu_us_per_tag"] and t["cpu_us_per_tag"]:
                out.append(f"- tagrelay uses {t['cpu_us_per_tag'] / st[k]['cpu_us_per_tag']:.3f} x "
                           f"the CPU per tag of {NAMES[k]}, and "
                           f"{t['rss_peak_mb'] / st[k]['rss_peak_mb']:.2f} x its peak RSS.")
        if t["rejected"] or t["seq_gaps"] or t["duplicates"]:
            out.append(f"- tagrelay: {t['rejected']} message(s) rejected by the receiver, "
                       f"{t['seq_gaps']} sequence gap(s), {t['duplicates']} duplicate(s).")
        else:
            out.append("- tagrelay: every signature verified, no sequence gap, no duplicate, no "
                       "message rejected.")
        if t.get("rss_anon_mb") is not None and t.get("rss_file_mb") is not None:
            out.append(f"- tagrelay's resident memory at the end of the window: "
                       f"{fmt(t['rss_anon_mb'], 1, ' MB')} of its own (heap, thread stacks) and "
                       f"{fmt(t['rss_file_mb'], 1, ' MB')} of mapped files, mostly the shared "
                       f"libraries' code (libcrypto, libc, libstdc++, libsqlite3), which other "
                       f"processes share; peak RSS counts both.")
        parts = t.get("rss_parts")
        if parts:
            own = ", ".join(f"{k} {fmt(parts[k], 1, ' MB')}" for k in
                            ("heap", "malloc arenas", "thread stacks", "other anonymous")
                            if k in parts)
            files = ", ".join(f"{k} {fmt(v, 1, ' MB')}" for k, v in parts["files"].items())
            out.append(f"- Where it goes (/proc/PID/smaps, first run): {own}; files: {files}.")
    return out + [""]


def maximum(res, args):
    m = res.get("max")
    if not m:
        return []
    out = ["## 2. Highest sustainable rate (tagrelay)", "",
           f"The poll interval of all {args['ports'] * args['units']} devices steps down "
           f"({', '.join(str(x) for x in args['ramp'])} ms); a step fails at the first lost "
           f"value, when less than 95 % of the target is acquired, when the receiver has not "
           f"caught up {args['settle']:.0f} s after the window, or when p99 latency exceeds "
           f"{args['max_p99_ms']:.0f} ms. {args['ramp_window']:.0f} s per step; "
           f"{m['runs']} run(s).", "",
           f"**Highest sustained: {fmt(m['max_tags_s'], 0)} tags/s** (median), at "
           f"{fmt(m['cpu_pct_at_max'], 1, ' %')} CPU and {fmt(m['rss_at_max'], 1, ' MB')} peak "
           f"RSS; the fleet simulator used {fmt(m['sim_cpu_at_max'], 1, ' %')} of a core.", "",
           "| run | poll | target tags/s | acquired tags/s | CPU | peak RSS | sim CPU "
           "| receiver CPU | broker CPU | other load | p50 | p99 | lost | limited by |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    run, previous = 0, None
    for s in m["steps"]:
        if previous is None or s["poll_ms"] >= previous:  # the ramp starts again: a new run
            run += 1
        previous = s["poll_ms"]
        out.append(f"| {s.get('run', run)} | {s['poll_ms']} ms | {fmt(s['target_tags_s'], 0)} | "
                   f"{fmt(s['tags_s'], 0)} | "
                   f"{fmt(s['cpu_pct'], 1, ' %')} | {fmt(s['rss_peak_mb'], 1, ' MB')} | "
                   f"{fmt(s['sim_cpu_pct'], 1, ' %')} | {fmt(s['receiver_cpu_pct'], 1, ' %')} | "
                   f"{fmt(s['broker_cpu_pct'], 1, ' %')} | "
                   f"{fmt(s.get('other_load_pct'), 0, ' %')} | "
                   f"{fmt(s['p50_ms'], 0, ' ms')} | "
                   f"{fmt(s['p99_ms'], 0, ' ms')} | {lost(s)} | "
                   f"{s.get('limited_by') or 'sustained'} |")
    failed = [s for s in m["steps"] if s.get("limited_by")]
    if failed and all(not s.get("subject_says") and (s.get("receiver_cpu_pct") or 0) >= 65
                      and not s.get("lost_interior") for s in failed):
        out += ["", "At every failed step tagrelay's log reports no dropped or evicted data and "
                "no value is missing between values received: the values came late, while the "
                "bench's receiver (Python, one thread checking every signature and value) used "
                f"{fmt(min(s['receiver_cpu_pct'] for s in failed), 0, ' %')} to "
                f"{fmt(max(s['receiver_cpu_pct'] for s in failed), 0, ' %')} of a core. The "
                "limit found here is the receiver's as much as the agent's."]
    return out + ["", "collectd and Node-RED: not measured in this scenario.", ""]


def outage(res, args):
    o = res.get("outage")
    if not o:
        return []
    if o.get("skipped"):
        return ["## 3. Broker outage and drain", "", f"Not run: {o['skipped']}.", ""]
    out = ["## 3. Broker outage and drain", "",
           f"The broker is stopped for {args['outage']:.0f} s at the steady load, then started "
           f"again; the drain is the time from the broker's return until the receiver holds "
           f"every value acquired during the outage (of which the reconnect is the time to the "
           f"first message, set by the subject's own reconnect backoff; MB/s and readings/s "
           f"are over the rest). Live p50 and p99 are the latency (arrival minus acquisition "
           f"timestamp) of the values acquired since the broker's return that arrived during "
           f"the drain and were not flagged historical: how long fresh data waits while the "
           f"backlog goes out; the backlog's own latency is not in them. The store's bound is "
           f"sized from a measured "
           f"{fmt(o.get('bytes_per_reading'), 1)} bytes per reading on disk: max_bytes = "
           f"{o.get('max_bytes_mib')}MiB. The peers get a "
           f"{min(args['outage'], args['peer_outage']):.0f} s outage "
           f"(they are not sized for longer ones).", "",
           "| subject | outage | readings acquired in the outage | drain time | of which "
           "reconnect | drain MB/s | drain readings/s | live p50 during drain | live p99 during "
           "drain | lost | CPU in outage | CPU in drain | receiver CPU in drain | other load "
           "in drain | peak RSS | store size |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- "
           "| --- | --- |"]
    for k in ("tagrelay", "collectd", "nodered"):
        r = o.get(k)
        if not r:
            continue
        store = (fmt(r.get("store_mb_at_end_of_outage"), 1, " MB") if k == "tagrelay"
                 else "no store")
        if r["lost"] or r["silent_devices"]:
            drained = "n/a: values lost"
        elif r["drain_s"] is None:
            drained = "not within the timeout"
        else:
            drained = fmt(r["drain_s"], 1, " s")
        out.append(
            f"| {NAMES[k]} | {fmt(r['outage_s'], 0, ' s')} | {fmt(r['backlog_readings'])} | "
            f"{drained} | {fmt(r.get('reconnect_s'), 1, ' s')} | {fmt(r['drain_mb_s'], 2)} | "
            f"{fmt(r['drain_readings_s'], 0)} | "
            f"{fmt(r['live_p50_ms_during_drain'], 0, ' ms')} | "
            f"{fmt(r['live_p99_ms_during_drain'], 0, ' ms')} | {lost(r)} | "
            f"{fmt(r['cpu_pct_outage'], 2, ' %')} | {fmt(r['cpu_pct_drain'], 2, ' %')} | "
            f"{fmt(r.get('receiver_cpu_pct_drain'), 1, ' %')} | "
            f"{fmt(r.get('other_load_pct_drain'), 0, ' %')} | "
            f"{fmt(r['rss_peak_mb'], 1, ' MB')} | "
            f"{store} |")
    out.append("")
    t = o.get("tagrelay", {})
    c = t.get("agent_counters")
    if c:
        out.append(f"- tagrelay's own account at the end of the drain (`tagrelay status --json`): "
                   f"{fmt(c['evicted'])} readings evicted unsent, {fmt(c['lost_in_memory'])} "
                   f"dropped from memory, {fmt(c['devices_lost'])} lost in loss records, "
                   f"{fmt(c['dropped_batches'])} poll batches dropped on a full store queue; "
                   f"{fmt(c['backlog_readings'])} readings not yet acknowledged (read 6 s after "
                   f"the drain: the live batches of the moment).")
    if t.get("receiver_cpu_pct_transfer") is not None:
        busy = t["receiver_cpu_pct_transfer"]
        out.append(f"- During the transfer tagrelay used "
                   f"{fmt(t.get('subject_cpu_pct_transfer'), 1, ' %')} of a core and the receiver "
                   f"{fmt(busy, 0, ' %')}"
                   + (": the receiver (Python, one thread checking every signature and value) "
                      "sets this end-to-end rate, not the agent. Section 4 measures the agent's "
                      "own drain against raw libmosquitto." if busy >= 70 else "."))
    raw = res.get("ceilings", {}).get("raw_mqtt")
    if t.get("drain_mb_s") is not None and raw:
        out.append(f"- End to end, the drain's {fmt(t['drain_mb_s'], 2, ' MB/s')} are "
                   f"{pct(ratio(t['drain_mb_s'], raw[0]))} of the raw libmosquitto QoS 1 "
                   f"ceiling of section 4 ({fmt(raw[0], 1, ' MB/s')}). This is information, not "
                   f"the drain goal: the goal compares the agent's backlog drain to the broker "
                   f"with that ceiling (section 4); this rate also counts the broker's delivery "
                   f"to the receiver and the receiver's checks.")
    if t.get("lost") and t.get("subject_says"):
        out.append(f"- tagrelay's log on its loss: {t['subject_says']}")
    for k in ("tagrelay", "collectd", "nodered"):
        r = o.get(k)
        if not r or "unflagged_before_return" not in r:
            continue
        n = r["unflagged_before_return"]
        if n:
            out.append(f"- {NAMES[k]}: {n:,} values acquired before the broker's return came "
                       f"in during the drain not flagged historical (latency up to "
                       f"{fmt(r.get('unflagged_before_return_max_ms'), 0, ' ms')}); they are not "
                       f"in the live figures.")
        elif k == "tagrelay":
            out.append(f"- tagrelay: every value acquired before the broker's return that came in "
                       f"during the drain was flagged historical; the live figures are over "
                       f"{fmt(r.get('live_values_during_drain'))} values sent live.")
    stray = sum(o[k].get("stray_messages") or 0 for k in NAMES if k in o)
    if stray:
        out.append(f"- The receiver set aside {stray:,} messages of earlier runs' devices that the "
                   f"broker still delivered during these runs; no figure counts them.")
    for k in ("collectd", "nodered"):
        r = o.get(k)
        if r and r["lost"]:
            out.append(f"- {NAMES[k]} has no offline buffer that carries it through this "
                       f"outage: {r['lost']:,} values never arrived ({r['backlog_readings']:,} "
                       f"were acquired during the outage; the rest of the loss falls in its "
                       f"reconnect).")
        elif r:
            out.append(f"- {NAMES[k]} lost nothing in this outage.")
    return out + [""]


def ceilings(res, args):
    c = res.get("ceilings")
    if not c:
        return []
    out = ["## 4. Components against same-run ceilings, and the RTU line", "",
           f"Each figure is the median of {c['runs']} run(s) of the component benchmarks in "
           "bench/ (each of which already takes the best or median of several rounds).", "",
           "| component | tagrelay | ceiling | ratio |", "| --- | --- | --- | --- |"]
    if "store_ring" in c:
        a, b = c["store_ring"]
        out.append(f"| store group write, 100 tags/device | {fmt(a, 0)} readings/s | raw SQLite "
                   f"batch insert {fmt(b, 0)} readings/s | {pct(a / b)} |")
    if "store_ring10" in c:
        a, b = c["store_ring10"]
        out.append(f"| store group write, 10 tags/device | {fmt(a, 0)} readings/s | raw SQLite "
                   f"batch insert {fmt(b, 0)} readings/s | {pct(a / b)} |")
    if "drain" in c and "raw_mqtt" in c:
        a, b = c["drain"][0], c["raw_mqtt"][0]
        out.append(f"| backlog drain, TLS, batches of 500 | {fmt(a, 1)} MB/s | raw libmosquitto "
                   f"QoS 1, same payloads {fmt(b, 1)} MB/s | {pct(a / b)} |")
    if "tcp" in c:
        n, a, b = c["tcp"]
        out.append(f"| Modbus TCP poller, {n:.0f} registers per poll | {fmt(a, 0)} polls/s | raw "
                   f"libmodbus read loop {fmt(b, 0)} req/s | {pct(a / b)} |")
    for baud in ("19200", "115200"):
        k = f"rtu{baud}"
        if k in c:
            n, a, b = c[k]
            out.append(f"| RTU {baud} baud (socat pty pair, wire-timed slave), {n:.0f} registers "
                       f"| {fmt(a, 1)} tx/s | line rate {fmt(b, 1)} tx/s | {pct(a / b)} |")
    if "wire" in c:
        out.append(f"\nBytes per reading in a telemetry batch: {c['wire'][0]:.1f}.")
    floor, goal = cpu_floor(res), nodered_goal_us(res)
    if floor:
        store, modbus, mqtt, total = floor
        n, size = c["raw_mqtt_cpu"][0], c["raw_mqtt_cpu"][1]
        against = (f", against 0.1 x Node-RED's {fmt(goal * 10, 2, ' us')} = "
                   f"{fmt(goal, 3, ' us')} in this run" if goal else "")
        out.append(f"\nCPU floor per tag (each raw loop's own thread CPU time, scaled to one tag): "
                   f"SQLite batch insert {fmt(store, 3, ' us')} + libmodbus client "
                   f"{fmt(modbus, 3, ' us')} ({c['tcp_raw_cpu'][0]:.0f} registers per request) + "
                   f"libmosquitto QoS 1 over TLS {fmt(mqtt, 3, ' us')} (messages of {n:.0f} "
                   f"readings, {fmt(size, 0)} bytes, PUBACKs included) = "
                   f"**{fmt(total, 3, ' us')}**{against}. It leaves out all of the agent's own "
                   "work (decoding, batching, JSON encoding, signing, thread hand-offs, timers), "
                   "so the agent can approach it but not go below it without doing the same work "
                   "in fewer operations (larger chunks, commits or messages).")
    if c.get("micro"):
        out += ["", "Micro benchmarks (bench/micro_bench.cpp, Google Benchmark, median of 3):", "",
                "| benchmark | time | items/s |", "| --- | --- | --- |"]
        for b in c["micro"]:
            out.append(f"| {b['name']} | {fmt(b['ns'], 0, ' ns')} | {fmt(b['items_s'], 0)} |")
        rules = [b for b in c["micro"] if b["name"].startswith("BM_AlarmRules1000")]
        if rules:
            b = rules[0]
            polls = b["ns"] / 1e9  # one iteration: one poll of each of 100 devices
            out.append(f"\nRule evaluation (BM_AlarmRules1000): 1,000 alarm rules (100 devices x "
                       f"10 tags, a high limit with a deadband on each, a tenth with an on_delay) "
                       f"take {fmt(b['ns'] / 1000.0, 1, ' us')} for one poll of every device, "
                       f"{fmt(b['items_s'], 0)} rule evaluations/s on one core"
                       + (f": at one poll a second, {fmt(100.0 * polls, 3, ' %')} of a core."
                          if polls else "."))
        else:
            out.append("\nRule evaluation: no result (BM_AlarmRules1000 did not run).")
    return out + [""]


FOOTPRINT = """## Footprint

Stripped binary size and installed size of the amd64, armhf and arm64 packages,
peak RSS at 100 devices x 100 tags at 1 s with and without a 64 MiB memory limit,
and idle wake-ups per second: [footprint.md](footprint.md), measured by
`scripts/footprint` (not part of this run).
"""

METHOD = """## Method

- **Fleet simulator** (bench/e2e/fleet_sim.cpp): one process, one thread (epoll),
  one listening port per device on 127.0.0.1, as a plant's PLCs each have their own
  IP endpoint. Every read of a register advances its value by one, so values change
  on every poll and each value identifies one read. tagrelay runs one poller thread
  per endpoint; collectd runs its read threads over the hosts; Node-RED runs one
  client per endpoint on its event loop. All three poll the same registers of the
  same endpoints at the same interval. (`--units U` puts U devices behind each port
  instead, as behind a Modbus gateway.)
- **Broker**: a local mosquitto with TLS (a private CA), a password file and an ACL;
  each subject publishes over TLS with QoS 1 as its own user. The receiver reads
  from a second, plain listener on loopback so that its own cost stays small.
- **tagrelay** runs with its defaults (batch_linger 1s, batch_max_readings 500,
  max_inflight 20, sync normal), TLS, a gateway API key and a signing key per
  device. **collectd** (Debian's collectd-core): the modbus plugin with one `<Data>`
  block per register (it reads one register per request) and the mqtt plugin with
  QoS 1 and TLS (one message per value, payload `time:value`). **Node-RED**:
  node-red-contrib-modbus `modbus-read` of the whole block per device, a function
  node adding the timestamp, one `mqtt out` node with QoS 1 and TLS. Their configs
  are generated by bench/e2e/subjects.py. Node-RED is pinned by
  bench/e2e/node-red/package-lock.json; node-red-contrib-modbus 5.23.3 is the newest
  release that installs from the npm registry alone on Node.js 18/20 (later ones
  fetch a dependency from elsewhere, and 5.60 needs Node.js 22).
- **Receiver** (bench/e2e/receiver.py): verifies every signature of tagrelay's
  messages, validates one in `--schema-every` against the JSON Schema (with the
  reference receiver's own functions), counts duplicates and sequence gaps, and for
  every subject accounts for each value: the values of a register must be
  consecutive, from the first one received up to the simulator's counter at the
  end of the window; whatever is missing is lost. Latency is the arrival time
  minus the value's acquisition timestamp (tagrelay: `ts`; collectd: its value
  time; Node-RED: the time its function node ran). Every run's fleet has device
  names of its own, and the receiver counts only the devices of the run measured.
  Before each run it publishes a marker to itself and waits for it, so that
  nothing the broker still held for it (a lagging subject's tail) is left over:
  the broker keeps its queue across a restart, and such a tail would otherwise
  come in during a later outage's drain.
- **CPU** is utime + stime of the subject's process (all threads) from
  /proc/PID/stat over the window, as % of one core; **CPU per tag** divides it by
  the tags the simulator served in the window. **Peak RSS** is VmHWM at the end of
  the window. The broker's and the simulator's CPU are reported apart.
- **Outage**: the store's bytes per reading are measured first (the store's growth
  on disk over `--bpr-window` s with the broker down), and max_bytes is set to 2.5 x
  what the outage needs. The broker is stopped with SIGTERM and started again on
  the same port. For tagrelay the drain ends when the receiver holds every value
  acquired up to the broker's return with no gap: the backlog arrives (flagged
  historical) while live values already flow, so a register's newest value says
  nothing about its backlog. A peer without a store cannot deliver its outage: its
  drain ends when its live values pass the outage. Lost values are counted after
  that, once the values acquired since have had `--settle` s to arrive. The
  agent's own account (`tagrelay status --json`: evicted, dropped, loss records)
  is read at the end.
- **Ceilings**: bench/store_bench.cpp (raw SQLite inserting the same chunks into
  the same schema with the same settings, page cache included; the ring also
  encodes the chunks, assigns sequence numbers and evicts), bench/modbus_bench.cpp
  (a raw libmodbus read loop of the same register count; the RTU line's
  theoretical rate), bench/uplink_drain_bench.cpp via bench/uplink_bench.py (a raw
  libmosquitto QoS 1 publish loop of the same payload sizes and inflight window over
  TLS; both timed from the connection on, over `--drain-readings` readings, 5,000,000 by
  default (1,000,000 before 2026-11-22); the drain also
  reads the store, decodes its chunks and encodes the JSON batches).
- **CPU floor**: the CPU time of each raw loop's own thread
  (clock_gettime(CLOCK_THREAD_CPUTIME_ID) around its timed loop), not wall time,
  scaled to one tag: raw SQLite's inserting thread per reading inserted (chunks of
  100 readings, 1,000 readings a commit, its checkpoints and the deletes of the
  oldest at its bound included); the libmodbus client thread alone (not the
  server's) per request of `--registers` registers, divided by them (lowest of 3
  rounds); libmosquitto's publishing thread, which also runs its network loop (TLS,
  reading the PUBACKs), per QoS 1 message of 100 readings at the drain's payload
  bytes per reading, inflight window 20, divided by 100 (median of 3 rounds). Their
  sum is set against 0.1 x Node-RED's CPU per tag of section 1. The loops run back
  to back on one connection each, so the cost of waking once a poll on 100
  connections is not in the floor.
- **Memory**: peak RSS is VmHWM, which counts the pages of shared libraries the
  process touched as well as its own; the split and where the agent's own memory
  goes are read from /proc/PID/smaps at the end of the window.
- Everything runs on the same machine at the same time as the subject: the
  simulator, the broker and the receiver share its cores. "Other load" is the
  machine's busy time (/proc/stat) minus that of the bench's own processes, in % of
  one core: work of other programs that ran meanwhile. Figures taken with a high
  other load are less reliable (latency and the highest rate suffer first; a
  process's own CPU time much less).
"""


def render(res):
    args = res["args"]
    m = res["machine"]
    lines = ["# Benchmarks", "",
             "Generated by `bench/run` (bench/e2e/run.py); do not edit by hand: rerun it.", ""]
    if args.get("note"):
        lines += [f"> {args['note']}", ""]
    lines += [f"Run {res['started']} .. {res['finished']} on {m['cpu']}, {m['cores']} cores, "
              f"{m['memory_mib']:,} MiB, {m['os']}, Linux {m['kernel']}.", "",
              "Versions: " + ", ".join(f"{k} {v}" for k, v in res["versions"].items()) + ".", "",
              "Rerun: `bench/run` (everything, about two hours with the one-hour outage; the "
              "outage's store goes to $TMPDIR); `bench/run --help` lists the knobs, e.g. "
              "`bench/run --outage 300 --runs 3`. This run: `" + res.get("command", "bench/run")
              + "`.", ""]
    g = goals(res)
    if g:
        lines += ["## Goals (ratios from the same run)", ""] + g + [""]
    lines += steady(res, args) + maximum(res, args) + outage(res, args) + ceilings(res, args)
    lines += [FOOTPRINT, METHOD]
    return "\n".join(lines)
