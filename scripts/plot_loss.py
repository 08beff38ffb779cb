#!/usr/bin/env python3
"""Plot the demo model's training and validation loss from train_log.csv (written by `qins train`).

Usage: python3 scripts/plot_loss.py [--log models/demo/train_log.csv] [--out docs/images/demo-loss.png]
Needs matplotlib (Debian: python3-matplotlib).
"""
import argparse
import csv
import math
import os
import sys


def read_log(path):
    steps, train, vsteps, val, tokens = [], [], [], [], {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        need = {"step", "lr", "train_loss", "val_loss", "tokens", "seconds"}
        if not reader.fieldnames or not need.issubset(reader.fieldnames):
            sys.exit(f"{path}: not a train_log.csv (expected columns {sorted(need)})")
        for n, row in enumerate(reader, start=2):
            try:
                step = int(row["step"])
                tokens[step] = int(row["tokens"])
                if row["train_loss"]:
                    steps.append(step)
                    train.append(float(row["train_loss"]))
                if row["val_loss"]:
                    vsteps.append(step)
                    val.append(float(row["val_loss"]))
            except ValueError as e:
                sys.exit(f"{path}:{n}: bad row ({e})")
    if not steps:
        sys.exit(f"{path}: no training rows")
    return steps, train, vsteps, val, tokens


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--log", default="models/demo/train_log.csv")
    ap.add_argument("--out", default="docs/images/demo-loss.png")
    args = ap.parse_args()
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("matplotlib is missing: apt-get install python3-matplotlib (then run it with /usr/bin/python3)")

    steps, train, vsteps, val, tokens = read_log(args.log)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    ax.plot(steps, train, label="train (assistant tokens, mean per log interval)", linewidth=1)
    if val:
        ax.plot(vsteps, val, "o-", label="validation, held-out words (first 24 rows; last point: 400 rows)", markersize=3)
        ax.annotate(f"final val {val[-1]:.3f} (ppl {math.exp(val[-1]):.1f})", (vsteps[-1], val[-1]),
                    textcoords="offset points", xytext=(-150, 25))
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats / token)")
    ax.set_title("QINS demo model: Phi-3 architecture on WordNet chat turns")
    ax.grid(True, alpha=0.3)
    ax.legend()
    if tokens:
        top = ax.secondary_xaxis("top", functions=(
            lambda s: s * (tokens[max(tokens)] / max(tokens)) / 1e6,
            lambda m: m * 1e6 / (tokens[max(tokens)] / max(tokens))))
        top.set_xlabel("tokens seen (millions)")
    fig.tight_layout()
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    tmp = args.out + ".tmp.png"
    fig.savefig(tmp)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
