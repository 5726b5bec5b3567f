#!/usr/bin/env python3
"""Checks and plots a soak run (scripts/soak.sh): the CSV of samples
(minute, rss_kib, fds, p99_us, requests) in, a PNG of RSS, open descriptors
and p99 over time out. After warm-up (the first fifth of the windows, at
least one):

- RSS is flat: the median of the last third of the windows is within 10 %
  of the first third's (single samples may catch a snapshot rebuild, which
  holds two entity sets for a moment);
- open descriptors are flat: within 16 of each other;
- p99 is stable: at most one window's p99 is over twice the median
  window's (one window may catch a noisy neighbour on a shared 2-core
  machine: kernel reclaim, the resident services), and the median of the
  last third is within twice the first third's (a rising trend fails);
- every window answered requests.

Exit 1 when one fails. Needs matplotlib (scripts/install-deps.sh soak).
"""

import csv
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(samples_path, png_path):
    with open(samples_path) as f:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    if len(rows) < 2:
        print("soak: fewer than 2 windows; nothing to judge", file=sys.stderr)
        return 1
    warm = max(1, len(rows) // 5)
    steady = rows[warm:]
    rss = [r["rss_kib"] / 1024 for r in steady]
    fds = [r["fds"] for r in steady]
    p99 = [r["p99_us"] / 1000 for r in steady]
    median_p99 = statistics.median(p99)
    # The trend, not one sample: a snapshot rebuild that a sample happens to
    # catch holds two entity sets for a moment.
    third = max(1, len(rss) // 3)
    early, late = statistics.median(rss[:third]), statistics.median(rss[-third:])
    p99_early, p99_late = statistics.median(p99[:third]), statistics.median(p99[-third:])
    over = [x for x in p99 if x > 2 * median_p99]
    checks = [
        (f"RSS flat within 10% after warm-up: median {early:.1f} MiB in the first third, "
         f"{late:.1f} MiB in the last (samples {min(rss):.1f}..{max(rss):.1f})",
         late <= early * 1.10),
        (f"descriptors flat: {min(fds):.0f}..{max(fds):.0f}", max(fds) - min(fds) <= 16),
        (f"p99 within 2x of its median {median_p99:.2f} ms in all windows but at most one: "
         f"{len(over)} over (max {max(p99):.2f} ms)",
         len(over) <= 1),
        (f"p99 not rising: median {p99_early:.2f} ms in the first third, {p99_late:.2f} ms in the last",
         p99_late <= 2 * p99_early),
        ("every window answered requests", all(r["requests"] > 0 for r in rows)),
    ]

    minutes = [r["minute"] for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    series = [
        ("RSS (MiB)", [r["rss_kib"] / 1024 for r in rows]),
        ("open file descriptors", [r["fds"] for r in rows]),
        ("p99 latency (ms)", [r["p99_us"] / 1000 for r in rows]),
    ]
    for axis, (label, values) in zip(axes, series):
        axis.plot(minutes, values, marker="o")
        axis.axvspan(0, minutes[warm - 1], color="0.9", label="warm-up")
        axis.set_ylabel(label)
        axis.set_ylim(bottom=0)
        axis.grid(True, alpha=0.3)
    axes[0].legend(loc="lower right")
    axes[-1].set_xlabel("minute")
    fig.suptitle(f"Portcullis soak: {len(rows)} windows, policy and entity churn")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)

    print(f"soak: plot in {png_path}")
    failed = False
    for text, ok in checks:
        print(f"  [{'ok' if ok else 'FAIL'}] {text}")
        failed |= not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
