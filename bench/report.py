#!/usr/bin/env python3
"""The figures of make bench (bench/run.sh) from the JSON of its bench runs.

    report.py addcalls FILE N        add "operator_calls": N to a run's JSON
    report.py line FILE              one line about a run, for the log
    report.py report WORK OUT LAST REPLICA_RUNS LOAD KNOBS
                                     the table, printed and written to
                                     OUT/bench.json and OUT/bench.md

WORK holds SIDE.RUN.KIND.json (SIDE baseline or bridge, RUN 1..LAST or rN
for the two-replica runs, KIND tput or rate) and bridge.RUN.conflicts.
"""
import json
import os
import statistics
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def addcalls(path, n):
    d = load(path)
    if d is None:
        try:
            with open(path) as f:
                err = f.read()[-2000:]
        except OSError:
            err = "no output"
        d = {"ok": False, "error": err}
    d["operator_calls"] = int(n)
    with open(path, "w") as f:
        json.dump(d, f)


def line(path):
    d = load(path) or {}
    if "results_per_s" not in d:
        return "FAILED: " + d.get("error", "no summary").strip()
    procs = d.get("processes") or []
    cpu = sum(p["cpu_per_request_us"] for p in procs[:-1]) if len(procs) > 1 else 0
    sup = d.get("outcomes", {}).get("superseded", 0)
    return (f"{d['results_per_s']:8.0f}/s  p99 {d['latency_ms']['p99']:6.1f} ms  "
            f"CPU {cpu:5.0f} us/req  calls {d.get('operator_calls', '?'):>6}  superseded {sup:>5}  ok {d['ok']}")


def cpu_us(d, server):
    """CPU per request of the side's processes (all but the last pid, which
    is its nats-server), with the server's when asked."""
    procs = d.get("processes") or []
    if len(procs) < 2:
        return None
    return sum(p["cpu_per_request_us"] for p in (procs if server else procs[:-1]))


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ratio(a, b):
    return a / b if a is not None and b else None


def report(work, out, last, replica_runs, load_note, knobs):
    last, replica_runs = int(last), int(replica_runs)
    steady = range(2, last + 1)
    runs = {}
    for side in ("baseline", "bridge"):
        for r in range(1, last + 1):
            for kind in ("tput", "rate"):
                runs[side, r, kind] = load(f"{work}/{side}.{r}.{kind}.json") or {}
    reps = [load(f"{work}/bridge.r{r}.tput.json") or {} for r in range(1, replica_runs + 1)]

    def conflicts(run):
        try:
            with open(f"{work}/bridge.{run}.conflicts") as f:
                a, b = f.read().split()
            return float(b) - float(a)
        except (OSError, ValueError):
            return None

    def val(side, r, kind, f):
        d = runs[side, r, kind]
        try:
            return f(d)
        except (KeyError, TypeError, IndexError):
            return None

    tput = lambda d: d["results_per_s"]
    p99 = lambda d: d["latency_ms"]["p99"]
    p50 = lambda d: d["latency_ms"]["p50"]
    cpu_p = lambda d: cpu_us(d, False)
    cpu_s = lambda d: cpu_us(d, True)
    rss = lambda d: d["processes"][0]["peak_rss_mib"]

    rows = []

    def row(label, unit, kind, f, target=None, check=None, lower_is_better=False):
        b = med(val("baseline", r, kind, f) for r in steady)
        s = med(val("bridge", r, kind, f) for r in steady)
        rt = med(ratio(val("bridge", r, kind, f), val("baseline", r, kind, f)) for r in steady)
        rows.append(dict(metric=label, unit=unit, baseline=b, bridge=s, ratio=rt, target=target,
                         verdict=None if check is None or rt is None else ("PASS" if check(rt) else "FAIL")))

    row("throughput, %d at %d in flight" % (runs["bridge", last, "tput"].get("requests", 0),
                                            runs["bridge", last, "tput"].get("in_flight", 0)),
        "req/s", "tput", tput, ">= 0.85", lambda x: x >= 0.85)
    rate = runs["bridge", last, "rate"].get("rate", 0)
    row("p99 latency at a steady %g/s" % rate, "ms", "rate", p99, "<= 1.5", lambda x: x <= 1.5)
    row("p50 latency at a steady %g/s" % rate, "ms", "rate", p50)
    row("CPU per request, process", "µs", "tput", cpu_p, "<= 1.3", lambda x: x <= 1.3)
    row("CPU per request, process + nats-server", "µs", "tput", cpu_s, "<= 1.5", lambda x: x <= 1.5)

    # The first run on a fresh server, and the last on the same server.
    first = {s: val(s, 1, "tput", tput) for s in ("baseline", "bridge")}
    lastv = {s: val(s, last, "tput", tput) for s in ("baseline", "bridge")}
    rows.append(dict(metric="throughput, run 1 (fresh server)", unit="req/s", baseline=first["baseline"],
                     bridge=first["bridge"], ratio=ratio(first["bridge"], first["baseline"]), target=None, verdict=None))
    growth = {s: ratio(lastv[s], first[s]) for s in ("baseline", "bridge")}
    rows.append(dict(metric="throughput, run %d ÷ run 1 (same server)" % last, unit="×", baseline=growth["baseline"],
                     bridge=growth["bridge"], ratio=growth["bridge"], target=">= 0.90 (bridge)",
                     verdict=None if growth["bridge"] is None else ("PASS" if growth["bridge"] >= 0.9 else "FAIL")))
    peak = {s: max([v for v in (val(s, r, k, rss) for r in range(1, last + 1) for k in ("tput", "rate")) if v is not None],
                   default=None) for s in ("baseline", "bridge")}
    rows.append(dict(metric="peak RSS (%d in flight)" % runs["bridge", last, "tput"].get("in_flight", 0), unit="MiB",
                     baseline=peak["baseline"], bridge=peak["bridge"], ratio=ratio(peak["bridge"], peak["baseline"]),
                     target="< 100 MiB (bridge)",
                     verdict=None if peak["bridge"] is None else ("PASS" if peak["bridge"] < 100 else "FAIL")))

    one = med(val("bridge", r, "tput", cpu_p) for r in steady)
    two = med(cpu_us(d, False) for d in reps)
    rr = ratio(two, one)
    rows.append(dict(metric="CPU per request, one replica | two together", unit="µs", baseline=one, bridge=two,
                     ratio=rr, target="<= 1.15 (vs one replica)",
                     verdict=None if rr is None else ("PASS" if rr <= 1.15 else "FAIL")))
    conf = [conflicts(f"r{r}") for r in range(1, replica_runs + 1)]
    per_req = med(c / d["results"] for c, d in zip(conf, reps) if c is not None and d.get("results"))
    rows.append(dict(metric="two replicas: lease conflicts per request", unit="", baseline=None, bridge=per_req,
                     ratio=per_req, target="<= 0.05",
                     verdict=None if per_req is None else ("PASS" if per_req <= 0.05 else "FAIL"),
                     note=None if per_req is not None else "n/a: no operator_bridge_lease_conflicts_total in /metrics"))

    def per_request(side, key):
        num = den = 0
        for r in steady:
            for k in ("tput", "rate"):
                d = runs[side, r, k]
                if key == "calls":
                    num += d.get("operator_calls", 0)
                else:
                    num += d.get("outcomes", {}).get(key, 0)
                den += d.get("results", 0)
        return num / den if den else None

    calls = {s: per_request(s, "calls") for s in ("baseline", "bridge")}
    rows.append(dict(metric="operator calls per request", unit="", baseline=calls["baseline"], bridge=calls["bridge"],
                     ratio=ratio(calls["bridge"], calls["baseline"]), target=None, verdict=None))
    sup = {s: per_request(s, "superseded") for s in ("baseline", "bridge")}
    rows.append(dict(metric="superseded, per 1,000 requests", unit="", baseline=sup["baseline"] * 1000,
                     bridge=sup["bridge"] * 1000, ratio=None, target=None, verdict=None,
                     note="newer versions of the same app overtook them before their turn, so they were not sent: expected"))
    rsup = med(d.get("outcomes", {}).get("superseded", 0) / d["results"] * 1000 for d in reps if d.get("results"))
    rows.append(dict(metric="superseded per 1,000, one replica | two", unit="", baseline=sup["bridge"] * 1000,
                     bridge=rsup, ratio=None, target=None, verdict=None))

    all_runs = list(runs.values()) + reps
    bad = [d for d in all_runs if not d.get("ok")]
    dups = sum(d.get("duplicates", 0) for d in all_runs)
    missing = sum(d.get("missing", 0) for d in all_runs if "missing" in d)
    dup_wait = max((d.get("dup_wait_s", 0) for d in all_runs), default=0)
    exact = not bad
    summary = dict(knobs=knobs, machine=load_note, steady_runs=list(steady), replica_runs=replica_runs,
                   rows=rows, exactly_one_result=exact, missing=missing, duplicates=dups, dup_wait_s=dup_wait,
                   runs={f"{s}.{r}.{k}": d for (s, r, k), d in runs.items()} | {f"bridge.r{i + 1}.tput": d for i, d in enumerate(reps)})

    def fmt(v, unit=""):
        if v is None:
            return "n/a"
        if unit in ("req/s",):
            return f"{v:,.0f}"
        if unit in ("µs", "MiB", "ms"):
            return f"{v:.1f}"
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"

    head = ["", "bare loop", "bridge", "ratio", "target", ""]
    table = [[f"{r['metric']}" + (f" ({r['unit']})" if r["unit"] and r["unit"] != "×" else ""),
              fmt(r["baseline"], r["unit"]), fmt(r["bridge"], r["unit"]), fmt(r["ratio"]) if r["ratio"] is not None else "n/a",
              r["target"] or "", r["verdict"] or ""] for r in rows]
    widths = [max(len(x[i]) for x in table + [head]) for i in range(len(head))]
    text = ["  ".join(c.ljust(w) if i == 0 or i >= 4 else c.rjust(w) for i, (c, w) in enumerate(zip(x, widths))).rstrip()
            for x in [head] + table]
    text.append("")
    text.append(f"medians of runs {steady.start}–{steady.stop - 1} on one server kept up (run 1 on a fresh one); "
                f"ratio = median of the per-run ratios bridge ÷ bare loop; {knobs}")
    for r in rows:
        if r.get("note"):
            text.append(f"{r['metric']}: {r['note']}")
    if exact:
        text.append(f"every request of every run got exactly one result (and no second one within {dup_wait:g}s of the last)")
    else:
        text.append(f"NOT every request got exactly one result: {len(bad)} runs failed, {missing} missing, {dups} duplicates")
    text.append(load_note)
    print("\n".join(text))

    os.makedirs(out, exist_ok=True)
    with open(f"{out}/bench.json", "w") as f:
        json.dump(summary, f, indent=2)
    md = ["| " + " | ".join(h or " " for h in head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(c.replace("|", "\\|") for c in x) + " |" for x in table]
    md += [""] + [t for t in text[len(table) + 2:]]
    md += ["", "Per run (throughput run: req/s, CPU µs per request of the process / with nats-server; latency run: p99 ms):", "",
           "| run | bare loop req/s | bridge req/s | bare loop CPU | bridge CPU | bare loop p99 | bridge p99 | bridge superseded |",
           "|---|---|---|---|---|---|---|---|"]
    for r in range(1, last + 1):
        g = lambda s, k, f: fmt(val(s, r, k, f), "req/s" if f is tput else "µs")
        md.append(f"| {r}{' (fresh)' if r == 1 else ''} | {g('baseline', 'tput', tput)} | {g('bridge', 'tput', tput)} | "
                  f"{g('baseline', 'tput', cpu_p)} / {g('baseline', 'tput', cpu_s)} | {g('bridge', 'tput', cpu_p)} / {g('bridge', 'tput', cpu_s)} | "
                  f"{g('baseline', 'rate', p99)} | {g('bridge', 'rate', p99)} | "
                  f"{runs['bridge', r, 'tput'].get('outcomes', {}).get('superseded', 0) + runs['bridge', r, 'rate'].get('outcomes', {}).get('superseded', 0)} |")
    with open(f"{out}/bench.md", "w") as f:
        f.write("\n".join(md) + "\n")
    print(f"written to {out}/bench.json and {out}/bench.md")
    failed = [r["metric"] for r in rows if r["verdict"] == "FAIL"]
    if not exact:
        return 1
    if failed and os.environ.get("BENCH_STRICT") == "1":
        return 1
    return 0


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "addcalls":
        addcalls(*args)
    elif cmd == "line":
        print(line(*args))
    elif cmd == "report":
        sys.exit(report(*args))
    else:
        sys.exit(f"report.py: unknown command {cmd}")
