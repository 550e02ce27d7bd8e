#!/usr/bin/env python3
"""Helpers for bench/quiet.sh (standard library, plus matplotlib for the plot).

  quiet.py row DIR
      prints the Markdown row of the variant run in DIR (its meta.json,
      stops.csv, loadgen.json, events.csv and backend logs).
  quiet.py notes OUT
      prints, below the table, what each variant's loadgen and proxy did
      (how late loadgen sent, how late the proxy acted on its news).
  quiet.py plot OUT PNG
      draws every variant of the run in OUT, per stop: the time the old
      backend exited against the time the proxy stopped routing to it, and
      the requests that failed. Without matplotlib it says so and draws
      nothing.

A stop's failed requests are those loadgen sent from its SIGTERM until the
next stop's SIGTERM (the run's end for the last one).
"""

import csv
import json
import os
import re
import statistics
import sys

# drainit's log line at the end of a drain wait (DRAINIT_LOG=info), e.g.
# "drain wait over (quiet: no new connection ...)" or "(drain delay of 5s)".
WAIT_OVER = re.compile(r"drain wait over \((quiet|checks|drain delay|drain timeout)")
ENDED = {"quiet": "quiet", "checks": "checks", "drain delay": "delay", "drain timeout": "timeout"}


def load(directory):
    meta = json.load(open(os.path.join(directory, "meta.json")))
    summary = json.load(open(os.path.join(directory, "loadgen.json")))
    stops = []
    for s in csv.DictReader(open(os.path.join(directory, "stops.csv"))):
        t_term = float(s["t_term"])
        stop = {
            "backend": s["backend"],
            "delay": float(s["propagation_s"]),
            "t_term": t_term,
            "exit": float(s["t_exit"]) - t_term,
            "removed": float(s["t_removed"]) - t_term,
            "ended": "?",
        }
        try:
            for line in open(os.path.join(directory, s["backend"] + ".log"), errors="replace"):
                m = WAIT_OVER.search(line)
                if m:
                    stop["ended"] = ENDED[m.group(1)]
        except OSError:
            pass
        stops.append(stop)
    events = []
    with open(os.path.join(directory, "events.csv")) as f:
        for e in csv.DictReader(f):
            events.append({
                "start": summary["start_unix"] + float(e["start_ms"]) / 1000,
                "start_ms": float(e["start_ms"]),
                "ok": e["outcome"] == "ok",
                "conn": int(e["conn"]),
            })
    bounds = [s["t_term"] for s in stops] + [float("inf")]
    for k, s in enumerate(stops):
        s["failed"] = sum(1 for e in events if not e["ok"] and bounds[k] <= e["start"] < bounds[k + 1])
    return meta, summary, stops, events


def lateness(summary, events):
    """How late loadgen sent each request after it was due, in ms: request j
    of connection k is due at (j * conns + k) / rate s (examples/loadgen.rs).
    A machine too busy for the load shows here first."""
    conns, rate = summary["conns"], summary["rate_target"]
    late = []
    by_conn = {}
    for e in events:
        by_conn.setdefault(e["conn"], []).append(e["start_ms"])
    for k, starts in by_conn.items():
        for j, start in enumerate(sorted(starts)):
            late.append(start - (j * conns + k) / rate * 1000)
    late.sort()
    return late


def pct(sorted_values, p):
    return sorted_values[round((len(sorted_values) - 1) * p)]


def row(directory):
    meta, summary, stops, events = load(directory)
    stop = sorted(s["exit"] for s in stops)
    past_delay = [s["exit"] - s["delay"] for s in stops]
    past_removal = [s["exit"] - s["removed"] for s in stops]
    delay = [s["delay"] for s in stops]
    ended = {}
    for s in stops:
        ended[s["ended"]] = ended.get(s["ended"], 0) + 1
    late = lateness(summary, events)
    print(
        f"| {meta['label']} | `{meta['options']}` | {len(stops)} "
        f"| **{summary['failed']:,}** / {summary['requests']:,} "
        f"| {statistics.mean(stop):.2f} / {statistics.median(stop):.2f} / {max(stop):.2f} s "
        f"| {statistics.mean(past_delay):+.2f} s "
        f"| {statistics.mean(past_removal):+.2f} s ({min(past_removal):+.2f} to {max(past_removal):+.2f}) "
        f"| {', '.join(f'{n} {why}' for why, n in sorted(ended.items()))} "
        f"| {statistics.mean(delay):.2f} s ({min(delay):.2f}-{max(delay):.2f}) "
        f"| {pct(late, 0.99):.0f} / {late[-1]:.0f} ms |"
    )


def variants(out):
    dirs = sorted((d for d in os.listdir(out) if d.startswith("variant-")),
                  key=lambda d: int(d.split("-")[1]))
    found = []
    for d in dirs:
        path = os.path.join(out, d)
        if os.path.exists(os.path.join(path, "loadgen.json")):
            found.append(load(path))
    return found


def notes(out):
    for meta, summary, stops, events in variants(out):
        late = lateness(summary, events)
        lag = [s["removed"] - s["delay"] for s in stops]
        print(
            f"- {meta['label']}: loadgen {summary['rate_achieved']:.1f} requests/s of "
            f"{summary['rate_target']}, sent {sum(1 for x in late if x > 100)} requests more "
            f"than 100 ms late; the proxy removed backends {statistics.mean(lag) * 1000:.0f} ms "
            f"(max {max(lag) * 1000:.0f}) after the delay it drew; latency p50/p99/max "
            f"{summary['latency_ms']['p50']:.1f} / {summary['latency_ms']['p99']:.1f} / "
            f"{summary['latency_ms']['max']:.0f} ms."
        )


# One style per kind of variant, so the picture reads the same from run to run.
def style(meta, n):
    options = meta["options"]
    if "--drain-until-quiet" in options:
        return {"color": "#2e8b57", "marker": "o"}
    palette = [("#d62728", "x"), ("#1f77b4", "s"), ("#9467bd", "^"), ("#ff7f0e", "v")]
    color, marker = palette[n % len(palette)]
    return {"color": color, "marker": marker}


def plot(out, png):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("quiet.py: matplotlib missing; no plot (apt-get install python3-matplotlib)",
              file=sys.stderr)
        return
    runs = variants(out)
    if not runs:
        sys.exit(f"quiet.py: no variant with results in {out}")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 6.6), dpi=100,
                                      gridspec_kw={"width_ratios": [3, 2]})
    top = max(max(s["exit"], s["removed"]) for _, _, stops, _ in runs for s in stops)
    hi = max(5.5, top) + 0.3
    left.fill_between([0, hi], [0, hi], 0, color="#d62728", alpha=0.07, linewidth=0)
    left.plot([0, hi], [0, hi], color="black", linewidth=1,
              label="exit at the moment the proxy stops routing")
    window = [float(w) for meta, *_ in runs for w in
              re.findall(r"--drain-until-quiet\s+([0-9.]+)", meta["options"])]
    if window:
        left.plot([0, hi], [window[0], hi + window[0]], color="#2e8b57", linewidth=1,
                  linestyle="--", label=f"the same + the quiet window ({window[0]:g} s)")
    left.text(hi * 0.97, hi * 0.3, "below the line: the proxy still\nsends to a backend that is gone",
              ha="right", va="center", fontsize=9, color="#a01010")
    fixed = 0
    for meta, summary, stops, _ in runs:
        st = style(meta, fixed)
        if "--drain-until-quiet" not in meta["options"]:
            fixed += 1
        hollow = {"facecolors": "none"} if st["marker"] in "os^v" else {}
        x = [s["removed"] for s in stops]
        y = [s["exit"] for s in stops]
        label = (f"{meta['label']}: {summary['failed']:,} of {summary['requests']:,} "
                 f"requests failed, stop {statistics.mean(y):.2f} s mean, {max(y):.2f} s max")
        left.scatter(x, y, s=30, color=st["color"], marker=st["marker"], label=label, zorder=3,
                     **hollow)
        right.scatter(x, [s["failed"] for s in stops], s=30, color=st["color"],
                      marker=st["marker"], zorder=3, **hollow)
    left.set_xlim(0, hi)
    left.set_ylim(0, hi + 0.3)
    left.set_xlabel("proxy stops routing to the old backend, s after SIGTERM\n"
                    "(the endpoint update's propagation delay, drawn from 1-5 s)")
    left.set_ylabel("old backend exits, s after SIGTERM")
    left.set_title("When each stop ended", fontsize=11)
    left.grid(alpha=0.3)
    right.set_xlim(0, hi)
    right.set_xlabel("proxy stops routing to the old backend, s after SIGTERM")
    right.set_ylabel("requests failed during the stop")
    right.set_title("What each stop cost the clients", fontsize=11)
    right.grid(alpha=0.3)
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=1, fontsize=9, frameon=False)
    rate = runs[0][1]["rate_target"]
    fig.suptitle(f"Rolling stops behind a proxy that follows endpoint updates and never probes "
                 f"drainit: {len(runs[0][2])} stops per variant, {rate:g} requests/s", fontsize=11)
    fig.tight_layout(rect=(0, 0.19, 1, 1))
    fig.savefig(png)
    print(f"plot: {png} ({os.path.getsize(png)} bytes)", file=sys.stderr)


def main(argv):
    match argv[1:]:
        case ["row", directory]:
            row(directory)
        case ["notes", out]:
            notes(out)
        case ["plot", out, png]:
            plot(out, png)
        case _:
            sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
