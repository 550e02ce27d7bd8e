#!/usr/bin/env python3
"""Helpers for bench/rolling.sh (standard library, plus matplotlib for the plot).

  rolling.py config EXAMPLE OUT FRONT_PORT SOCKET CHECK_PATH REDISPATCH NAME:APP_PORT:CHECK_PORT...
      writes an HAProxy config made from examples/haproxy.cfg: the frontend
      bound on 127.0.0.1:FRONT_PORT, the stats socket at SOCKET, the example
      servers replaced by local ones, checks sent to CHECK_PORT with GET
      CHECK_PATH (the example's /readyz for drainit, the app's own /ready
      for the baseline), REDISPATCH 1 uncomments `option redispatch`.
      Same substitutions as tests/haproxy_rolling.rs.
  rolling.py wait SOCKET SERVER up|down TIMEOUT_S
      polls `show stat` every 20 ms until HAProxy routes to SERVER (up) or
      no longer does (down); prints the Unix time it saw it, exit 1 on timeout.
  rolling.py stat SOCKET
      prints HAProxy's `show stat` (CSV).
  rolling.py free-ports N
      prints N distinct free TCP ports on 127.0.0.1.
  rolling.py report OUT_DIR
      reads the runs in OUT_DIR, prints the Markdown table, writes
      OUT_DIR/table.md and the timeline plot (OUT_DIR/rolling-restart.png).
"""

import csv
import json
import os
import socket
import sys
import time

BACKEND = "app"


def make_config(example, out, front, sock, check_path, redispatch, servers):
    text = open(example).read()
    lines = []
    seen = set()
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("server "):
            continue  # the example's placeholder servers
        if s == "bind :80":
            line = line.replace("bind :80", f"bind 127.0.0.1:{front}")
            seen.add("bind")
        if "/run/haproxy/admin.sock" in line:
            line = line.replace("/run/haproxy/admin.sock", sock)
            seen.add("sock")
        if s == "# option redispatch" and redispatch:
            line = line.replace("# option redispatch", "option redispatch")
            seen.add("redispatch")
        if s == "option httpchk GET /readyz":
            line = line.replace("/readyz", check_path)
            seen.add("httpchk")
        lines.append(line)
        if s.startswith("default-server "):
            seen.add("default-server")
            for name, app, check in servers:
                lines.append(f"    server {name} 127.0.0.1:{app} port {check}")
    missing = {"bind", "sock", "httpchk", "default-server"} | ({"redispatch"} if redispatch else set())
    missing -= seen
    if missing:
        sys.exit(f"rolling.py: {example} lacks the lines to substitute: {sorted(missing)}")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")


def raw_stat(sock):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(sock)
    s.sendall(b"show stat\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data.decode()


def parse_stat(text):
    rows = text.splitlines()
    header = rows[0].lstrip("# ").split(",")
    return [dict(zip(header, row.split(","))) for row in rows[1:] if row]


def show_stat(sock):
    rows = raw_stat(sock).splitlines()
    header = rows[0].lstrip("# ").split(",")
    out = {}
    for row in rows[1:]:
        if not row:
            continue
        fields = dict(zip(header, row.split(",")))
        if fields.get("pxname") == BACKEND:
            out[fields["svname"]] = fields.get("status", "")
    return out


def routed(status):
    """Whether HAProxy sends new requests to a server in this status."""
    return status.startswith("UP")


def wait(sock, server, want, timeout):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = show_stat(sock).get(server)
        except OSError:
            last = None
        if last is not None and routed(last) == (want == "up"):
            print(f"{time.time():.3f}")
            return 0
        time.sleep(0.02)
    print(f"rolling.py: {server} not {want} after {timeout}s (status {last})", file=sys.stderr)
    return 1


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    print(" ".join(map(str, ports)))


# ------------------------------------------------------------------ report

def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def load_variant(run_dir):
    meta = json.load(open(os.path.join(run_dir, "meta.json")))
    summary = json.loads(open(os.path.join(run_dir, "loadgen.json")).read().strip().splitlines()[-1])
    events = read_csv(os.path.join(run_dir, "events.csv"))
    for e in events:
        e["start"] = float(e["start_ms"]) / 1000 + summary["start_unix"]
        e["end"] = float(e["end_ms"]) / 1000 + summary["start_unix"]
        e["ok"] = e["outcome"] == "ok"
    stat = {}
    stat_path = os.path.join(run_dir, "haproxy-stat.csv")
    if os.path.exists(stat_path):
        for row in parse_stat(open(stat_path).read()):
            if row.get("pxname") == BACKEND and row.get("svname") == "BACKEND":
                stat = row
    meta["haproxy"] = stat
    restarts = read_csv(os.path.join(run_dir, "restarts.csv"))
    for r in restarts:
        for k in ("t_term", "t_down", "t_exit", "t_up"):
            r[k] = float(r[k]) if r[k] not in ("", "nan") else float("nan")
    return meta, summary, events, restarts


def worst_client_gap(events, lo, hi):
    """Longest time one keep-alive client (loadgen connection) went without a
    successful response, over successes completed in [lo, hi]."""
    worst = 0.0
    by_conn = {}
    for e in events:
        by_conn.setdefault(e["conn"], []).append(e)
    for conn_events in by_conn.values():
        oks = sorted(e["end"] for e in conn_events if e["ok"] and lo <= e["end"] <= hi)
        for a, b in zip(oks, oks[1:]):
            worst = max(worst, b - a)
    return worst


def any_gap(events, lo, hi):
    oks = sorted(e["end"] for e in events if e["ok"] and lo <= e["end"] <= hi)
    return max((b - a for a, b in zip(oks, oks[1:])), default=0.0)


def analyse(meta, summary, events, restarts):
    """Per restart: failures of requests sent from its SIGTERM until the next
    restart's SIGTERM (or the end)."""
    end_all = max(e["end"] for e in events)
    per = []
    for i, r in enumerate(restarts):
        lo = r["t_term"]
        hi = restarts[i + 1]["t_term"] if i + 1 < len(restarts) else end_all
        window = [e for e in events if lo <= e["start"] < hi]
        per.append({
            "server": r["server"],
            "failed": sum(1 for e in window if not e["ok"]),
            "slow": sum(1 for e in window if e["end"] - e["start"] > 1.0),
            "requests": len(window),
            "stop_s": r["t_exit"] - r["t_term"],
            "down_s": r["t_down"] - r["t_term"],
            "up_s": r["t_up"] - r["t_term"],
            "client_gap_s": worst_client_gap(events, lo, hi),
            "any_gap_s": any_gap(events, lo, hi),
        })
    return per


def fmt_s(x):
    return "n/a" if x != x else f"{x:.2f} s"


def report(out_dir):
    variants = []
    for name in sorted(os.listdir(out_dir)):
        path = os.path.join(out_dir, name)
        if os.path.isfile(os.path.join(path, "meta.json")):
            variants.append((name, *load_variant(path)))
    if not variants:
        sys.exit(f"rolling.py: no runs in {out_dir}")
    rows = []
    head = ("| variant | restarts | requests | failed | failed per restart (max) "
            "| slower than 1 s | longest wait for a success, one client | same, any client "
            "| HAProxy retried / redispatched | SIGTERM → HAProxy stops routing "
            "| SIGTERM → old process exits | SIGTERM → new backend routed |")
    rows.append(head)
    rows.append("|" + "|".join(["---"] * (head.count("|") - 1)) + "|")
    details = {}
    for name, meta, summary, events, restarts in variants:
        per = analyse(meta, summary, events, restarts)
        details[name] = per
        n = len(per)
        failed = summary["failed"]
        mean = lambda k: sum(p[k] for p in per) / n
        rows.append(
            f"| {meta['label']} | {n} | {summary['requests']} | {failed} "
            f"| {failed / n:.1f} ({max(p['failed'] for p in per)}) "
            f"| {sum(p['slow'] for p in per)} "
            f"| {max(p['client_gap_s'] for p in per):.2f} s "
            f"| {max(p['any_gap_s'] for p in per):.2f} s "
            f"| {meta['haproxy'].get('wretr', '?')} / {meta['haproxy'].get('wredis', '?')} "
            f"| {mean('down_s'):.2f} s "
            f"| {mean('stop_s'):.2f} s (max {max(p['stop_s'] for p in per):.2f}) "
            f"| {mean('up_s'):.2f} s (max {max(p['up_s'] for p in per):.2f}) |"
        )
    table = "\n".join(rows)
    # How much shorter --drain-checks makes the stop than the fixed delay.
    by_key = {meta["key"]: analyse(meta, s, e, r) for _, meta, s, e, r in variants}
    notes = []
    if "a-drainit-delay" in by_key and "b-drainit-checks" in by_key:
        a = sum(p["stop_s"] for p in by_key["a-drainit-delay"]) / len(by_key["a-drainit-delay"])
        b = sum(p["stop_s"] for p in by_key["b-drainit-checks"]) / len(by_key["b-drainit-checks"])
        notes.append(f"--drain-checks stop vs fixed --drain-delay: {b:.2f} s vs {a:.2f} s "
                     f"({a - b:+.2f} s, {100 * (a - b) / a:.0f}% shorter)")
    outcome_lines = []
    for name, meta, summary, events, restarts in variants:
        kinds = {k: summary[k] for k in ("status", "connect_error", "reset", "stale", "timeout") if summary[k]}
        if summary["statuses"]:
            kinds["statuses"] = summary["statuses"]
        outcome_lines.append(f"- {meta['label']}: failed {summary['failed']} of {summary['requests']}"
                             + (f" ({json.dumps(kinds)})" if kinds else "")
                             + f"; latency p99 {summary['latency_ms']['p99']:.1f} ms, "
                             f"max {summary['latency_ms']['max']:.0f} ms")
    text = table + "\n\n" + "\n".join(outcome_lines) + ("\n\n" + "\n".join(notes) if notes else "") + "\n"
    open(os.path.join(out_dir, "table.md"), "w").write(text)
    json.dump(details, open(os.path.join(out_dir, "per-restart.json"), "w"), indent=1)
    print(text)
    plot(out_dir, variants)


def plot(out_dir, variants):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("rolling.py: matplotlib missing; no plot (apt-get install python3-matplotlib)", file=sys.stderr)
        return
    # drainit (fixed delay) beside the baseline, one restart each: the one
    # with the most failed requests (the first if none failed).
    pick = [v for v in variants if v[1]["key"] in ("a-drainit-delay", "c-tini-baseline")]
    if len(pick) < 2:
        pick = variants[:2]
    fig, axes = plt.subplots(2, len(pick), figsize=(10, 6), sharex="col", sharey="row", dpi=80,
                             gridspec_kw={"height_ratios": [3, 2]}, squeeze=False)
    for col, (name, meta, summary, events, restarts) in enumerate(pick):
        per = analyse(meta, summary, events, restarts)
        i = max(range(len(per)), key=lambda k: (per[k]["failed"], -k))
        r = restarts[i]
        t0 = r["t_term"]
        lo, hi = t0 - 1.0, max(r["t_up"], r["t_exit"]) + 1.0
        nb = int((hi - lo) / 0.1) + 1
        ok = [0] * nb
        bad = [0] * nb
        for e in events:
            if lo <= e["end"] < hi:
                b = int((e["end"] - lo) / 0.1)
                (ok if e["ok"] else bad)[b] += 1
        xs = [lo - t0 + 0.1 * k for k in range(nb)]
        top, bottom = axes[0][col], axes[1][col]
        top.bar(xs, ok, width=0.1, align="edge", color="#2e8b57", label="successful")
        top.bar(xs, bad, width=0.1, align="edge", bottom=ok, color="#d62728", label="failed")
        window = [e for e in events if lo <= e["start"] < hi]
        for good, color in ((True, "#2e8b57"), (False, "#d62728")):
            pts = [e for e in window if e["ok"] == good]
            bottom.scatter([e["start"] - t0 for e in pts],
                           [max(e["end"] - e["start"], 1e-3) * 1000 for e in pts],
                           s=4, color=color, linewidths=0)
        bottom.set_yscale("log")
        for ax in (top, bottom):
            for key, label, style in (("t_term", "SIGTERM", "-"),
                                      ("t_down", "HAProxy stops routing", "--"),
                                      ("t_exit", "old process exits", ":"),
                                      ("t_up", "new one routed", "-.")):
                t = r[key]
                if t == t:
                    ax.axvline(t - t0, color="black", linestyle=style, linewidth=1, label=label)
            ax.grid(axis="y", alpha=0.3)
        top.set_title(f"{meta['label']}\nrestart of {r['server']}: {per[i]['failed']} failed, "
                      f"{per[i]['slow']} slower than 1 s", fontsize=10)
        bottom.set_xlabel("seconds since SIGTERM")
    axes[0][0].set_ylabel("responses per 100 ms")
    axes[1][0].set_ylabel("latency (ms) by send time")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=6, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    out = os.path.join(out_dir, "rolling-restart.png")
    fig.savefig(out)
    print(f"plot: {out} ({os.path.getsize(out)} bytes)")


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    cmd = argv[1]
    if cmd == "config":
        example, out, front, sock, check_path, redispatch = argv[2:8]
        servers = [tuple(s.split(":")) for s in argv[8:]]
        make_config(example, out, front, sock, check_path, redispatch == "1", servers)
    elif cmd == "wait":
        sock, server, want, timeout = argv[2:6]
        return wait(sock, server, want, float(timeout))
    elif cmd == "stat":
        sys.stdout.write(raw_stat(argv[2]))
    elif cmd == "free-ports":
        free_ports(int(argv[2]))
    elif cmd == "report":
        report(argv[2])
    else:
        sys.exit(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
