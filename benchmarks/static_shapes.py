"""Static shapes: RNN-EM against N-EM under one training budget, beside the paper's figures.

    python benchmarks/static_shapes.py --minutes 20 --seeds 5 --json static_shapes.json

Each (updater, seed) run trains through the public API (``grouping.build_config`` with the presets
``static-shapes-rnn-em`` / ``static-shapes-nem``, then ``grouping.train``) for at most ``--minutes``
of training, with the same seeds, data and settings for both updaters, and is scored on the test
split with its best checkpoint. By default the runs go to ``--jobs`` worker processes (one per
core) with one torch thread each; the jobs are ordered so that the two updaters of one seed run
side by side and see the same machine load. ``--serial`` runs them one after the other in this
process instead.

The table has one row per updater: seeds, epochs reached (mean over seeds), test AMI at the last
EM step (mean +- std over seeds, as the paper reports), the paper's figure and the mean wall time
per run (training and testing).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

#: The paper's static-shapes AMI (mean +- std over 5 runs, K=3, 15 EM steps; spec 9).
PAPER_AMI = {"rnn-em": 0.826, "n-em": 0.475}
PAPER_STD = {"rnn-em": 0.005, "n-em": 0.043}
PRESETS = {"rnn-em": "static-shapes-rnn-em", "n-em": "static-shapes-nem"}
JSON_KEYS = ("updater", "seeds", "epochs", "ami_mean", "ami_std", "paper_ami", "wall_s")


def run_assignments(args: argparse.Namespace, seed: int, updater: str) -> list[str]:
    """The ``--set`` style overrides of one run: the same for both updaters but the eta init."""
    items = [
        f"seed={seed}",
        f"train.max_minutes={args.minutes}",
        f"train.threads={args.threads}",
        f"train.device={args.device}",
    ]
    if args.gradient_gamma != "preset":
        items.append(f"model.gradient_gamma={args.gradient_gamma}")
    for key in ("train_size", "valid_size", "test_size"):
        value = getattr(args, key)
        if value is not None:
            items.append(f"dataset.{key}={value}")
    if updater == "n-em" and args.eta_init is not None:
        items.append(f"updater.eta_init={args.eta_init}")
    return items


def one_run(updater: str, seed: int, assignments: list[str], out: str) -> dict[str, Any]:
    """Train and test one model through the public API; returns the parts of its summary we need.

    Runs in a worker process; ``train.threads`` in the assignments sets its torch thread count.
    """
    import grouping

    config = grouping.build_config(PRESETS[updater], assignments=assignments)
    run = grouping.train(config, Path(out) / f"{updater}-seed{seed}")
    s = run.summary
    return {
        "updater": updater,
        "seed": seed,
        "ami": float(s["test"]["ami"]),
        "epochs": int(s["epochs"]),
        "best_epoch": int(s["best_epoch"]),
        "wall_s": float(s["wall_s"]),
        "images_per_s": float(s["train_images_per_s"]),
        "path": str(run.path),
    }


def aggregate(runs: list[dict[str, Any]], updaters: list[str]) -> list[dict[str, Any]]:
    """One row per updater with exactly the keys of ``JSON_KEYS``."""
    rows = []
    for updater in updaters:
        mine = [r for r in runs if r["updater"] == updater]
        amis = [r["ami"] for r in mine]
        rows.append(
            {
                "updater": updater,
                "seeds": len(mine),
                "epochs": statistics.fmean(r["epochs"] for r in mine),
                "ami_mean": statistics.fmean(amis),
                "ami_std": statistics.pstdev(amis) if len(amis) > 1 else 0.0,
                "paper_ami": PAPER_AMI[updater],
                "wall_s": statistics.fmean(r["wall_s"] for r in mine),
            }
        )
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    head = f"{'updater':<8} {'seeds':>5} {'epochs':>6}  {'test AMI':<15} {'paper AMI':<15} {'wall/run':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        paper = f"{r['paper_ami']:.3f} ± {PAPER_STD[r['updater']]:.3f}"
        lines.append(
            f"{r['updater']:<8} {r['seeds']:>5} {r['epochs']:>6.1f}  "
            f"{r['ami_mean']:.3f} ± {r['ami_std']:.3f}   {paper:<15} {r['wall_s']:>8.0f}s"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=float, required=True, help="training budget per run")
    p.add_argument("--seeds", type=int, default=5, help="number of seeds per updater")
    p.add_argument("--first-seed", type=int, default=0, help="seeds are F, F+1, ..., F+S-1")
    p.add_argument("--json", type=Path, help="write the table rows to this JSON file")
    p.add_argument("--updaters", default="rnn-em,n-em", help="comma-separated, default both")
    p.add_argument(
        "--gradient-gamma",
        choices=["preset", "true", "false"],
        default="preset",
        help="gradient through gamma for BOTH updaters; 'preset' keeps the paper's static "
        "setting (true)",
    )
    p.add_argument("--eta-init", help="N-EM's initial step size: glorot (the preset) or a number")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel runs")
    p.add_argument("--serial", action="store_true", help="run in this process, one at a time")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--device", default="cpu", help="cpu (default), auto, cuda or cuda:N")
    p.add_argument("--train-size", type=int, help="override the paper's 50,000 training images")
    p.add_argument("--valid-size", type=int, help="override the 10,000 validation images")
    p.add_argument("--test-size", type=int, help="override the 10,000 test images")
    p.add_argument("--out", type=Path, help="folder for the run folders (default: a temp dir)")
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.seeds < 1 or args.jobs < 1 or args.first_seed < 0:
        p.error("--minutes must be > 0, --seeds and --jobs >= 1, --first-seed >= 0")
    args.updater_list = [u.strip() for u in args.updaters.split(",") if u.strip()]
    unknown = [u for u in args.updater_list if u not in PRESETS]
    if unknown:
        p.error(f"unknown updater(s) {unknown}; valid: {', '.join(PRESETS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="static-shapes-"))
    out.mkdir(parents=True, exist_ok=True)
    # seed-major order: the two updaters of one seed run side by side under the same load
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    jobs = [(u, s) for s in seeds for u in args.updater_list]
    print(
        f"{len(jobs)} runs of at most {args.minutes} min training each, "
        f"{'serial' if args.serial else f'{args.jobs} at a time'}, runs in {out}",
        flush=True,
    )
    start = time.perf_counter()
    runs: list[dict[str, Any]] = []

    def report(r: dict[str, Any]) -> None:
        runs.append(r)
        print(
            f"  {r['updater']:<7} seed {r['seed']}: test AMI {r['ami']:.3f}, "
            f"{r['epochs']} epochs (best {r['best_epoch']}), {r['images_per_s']:.0f} img/s, "
            f"{r['wall_s']:.0f} s",
            flush=True,
        )

    if args.serial:
        for u, s in jobs:
            report(one_run(u, s, run_assignments(args, s, u), str(out)))
    else:
        os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            futures = [
                pool.submit(one_run, u, s, run_assignments(args, s, u), str(out)) for u, s in jobs
            ]
            for f in futures:
                report(f.result())

    rows = aggregate(runs, args.updater_list)
    print()
    print(format_table(rows))
    print(f"total wall time {time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
