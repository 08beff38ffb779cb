#!/usr/bin/env python3
"""Decode tokens/s vs model size from `qins bench --json` outputs, with the memory roofline.

usage: scripts/plot_bench.py OUT.png BENCH1.json [BENCH2.json ...]

Each file is one model. For every variant that ran (qins, naive, bf16, fp32) a point is drawn at
(streamed weight bytes per token, decode tokens/s); the roofline is bandwidth / bytes, with the
plain-read bandwidth the runs measured (the highest: the machine is shared, and the least
disturbed measurement is the closest to what the memory system can do).
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    out, files = argv[1], argv[2:]
    runs = []
    bws = []
    for path in files:
        with open(path) as f:
            j = json.load(f)
        # The start-of-run measurement and the one taken before each variant's decode.
        bws.append(max([j["bandwidth_gbs"]] + [r.get("bandwidth_gbs", 0.0) for r in j["runs"]]))
        for r in j.get("runs", []):
            if r.get("ran"):
                runs.append((j.get("name") or path, r["variant"], r["bytes_per_token"], r["decode_tps"]))
    if not runs:
        print("no runs in the given files", file=sys.stderr)
        return 1
    bw = max(bws) * 1e9
    fig, ax = plt.subplots(figsize=(7.5, 5))
    sizes = [r[2] for r in runs]
    lo, hi = min(sizes) / 2, max(sizes) * 2
    xs = [lo * (hi / lo) ** (i / 99) for i in range(100)]
    ax.plot([x / 1e9 for x in xs], [bw / x for x in xs], "k--", label=f"roofline ({bw / 1e9:.0f} GB/s, best plain read measured)")
    ax.plot([x / 1e9 for x in xs], [0.7 * bw / x for x in xs], "k:", alpha=0.6, label="70 % of roofline")
    markers = {"qins": "o", "naive": "x", "bf16": "s", "fp32": "^"}
    for variant in ["qins", "naive", "bf16", "fp32"]:
        pts = [r for r in runs if r[1] == variant]
        if not pts:
            continue
        ax.plot([p[2] / 1e9 for p in pts], [p[3] for p in pts], markers[variant], ms=8, label=variant)
        for p in pts:
            ax.annotate(p[0], (p[2] / 1e9, p[3]), textcoords="offset points", xytext=(6, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("weight bytes streamed per decoded token (GB)")
    ax.set_ylabel("decode tokens / s")
    ax.set_title("qins bench: decode speed vs model size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
