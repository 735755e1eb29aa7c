"""Table 1 and Figure 5 of the N-EM paper (flying shapes), under a stated time budget.

Trains the four Table 1 configurations (#objects in {3, 5} x K in {3, 5}) and the two K = 1
recurrent-autoencoder baselines of Figure 5 (3 and 5 objects), each for at most ``--minutes`` of
training, then scores every trained model

* on a part of its own training split ("train AMI"),
* on its own test split ("test AMI"), and
* in the generalisation setting of Table 1 (the same weights with another K and/or 3 objects),

and prints our table beside the paper's (spec 9), with Figure 5's comparison: the last-step
upper-bound BCE on the test split of K = 1 against K = 5 for 3 and 5 objects. AMI is the last-step
AMI and, in brackets, the mean over the 20 steps (the paper does not say which it reports).

    python benchmarks/table1.py --minutes 30 --jobs 2 --json table1.json
    python benchmarks/table1.py --recipe cpu --minutes 20 --jobs 2 --train-size 10000

``--recipe cpu`` trains every run as ``flying-shapes-3-cpu`` with its objects and K: the T = 5
stage first (80k sequences, at most 10 minutes), then ``--minutes`` of T = 20.

``--jobs 2`` trains two runs at a time, each with one CPU thread. Scores are over ``--test-size``
sequences (the paper: 10,000, one run each; the paper's numbers are means over 5 runs).
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

#: Table 1 of the paper (spec 9): (train objects, K) -> (train AMI, test AMI, gen objects, gen K,
#: gen AMI), each AMI as (mean, std over 5 runs).
PAPER: dict[tuple[int, int], tuple[tuple[float, float], tuple[float, float], int, int, tuple]] = {
    (3, 3): ((0.969, 0.006), (0.970, 0.005), 3, 5, (0.972, 0.007)),
    (3, 5): ((0.997, 0.001), (0.997, 0.002), 3, 3, (0.914, 0.015)),
    (5, 3): ((0.614, 0.003), (0.614, 0.003), 3, 3, (0.886, 0.010)),
    (5, 5): ((0.878, 0.003), (0.878, 0.003), 3, 5, (0.981, 0.003)),
}
#: The K = 1 baselines of Figure 5 (trained on 3 and 5 objects).
BASELINES = (3, 5)


@dataclass(frozen=True)
class Job:
    """One training run and the evaluations it needs."""

    name: str
    preset: str
    objects: int
    components: int
    generalise: tuple[int, int] | None  # (objects, K) of Table 1's generalisation column


#: The CPU recipe: every row and baseline is ``flying-shapes-3-cpu`` with its objects and K.
CPU_PRESET = "flying-shapes-3-cpu"


def jobs(recipe: str = "paper") -> list[Job]:
    """Table 1's rows and Figure 5's baselines, with the paper's presets or the CPU recipe."""
    cpu = recipe == "cpu"
    out = [
        Job(
            f"{o}obj-K{k}",
            CPU_PRESET if cpu else f"flying-shapes-{o}",
            o,
            k,
            (PAPER[o, k][2], PAPER[o, k][3]),
        )
        for (o, k) in PAPER
    ]
    baseline = CPU_PRESET if cpu else "flying-shapes-autoencoder"
    out += [Job(f"{o}obj-K1", baseline, o, 1, None) for o in BASELINES]
    return out


def trained_sequences(summary: dict[str, Any]) -> int:
    """Sequences trained on, over every stage of a stage-wise run."""
    parts = summary.get("stages") or [summary]
    return round(sum(p["train_images_per_s"] * p["train_s"] for p in parts))


def run_job(job: Job, args: dict[str, Any]) -> dict[str, Any]:
    """Train one configuration and evaluate it; runs in a worker process with its own threads."""
    import torch

    import grouping

    torch.set_num_threads(args["threads"])
    sets = [
        f"dataset.objects={job.objects}",
        f"model.components={job.components}",
        f"dataset.train_size={args['train_size']}",
        f"dataset.valid_size={args['valid_size']}",
        f"dataset.test_size={args['test_size']}",
        f"train.valid_samples={min(args['valid_size'], 1000)}",
        # --minutes 0: no time limit, train.epochs decides (the tests use it)
        f"train.max_minutes={args['minutes'] if args['minutes'] > 0 else 'null'}",
        f"train.threads={args['threads']}",
        f"train.device={args['device']}",
        f"seed={args['seed']}",
        *args["set"],
    ]
    config = grouping.build_config(job.preset, assignments=sets)
    out = Path(args["out"]) / job.name
    t0 = time.perf_counter()
    run = grouping.train(config, out)
    s = run.summary
    row: dict[str, Any] = {
        "name": job.name,
        "objects": job.objects,
        "components": job.components,
        "run_dir": str(out),
        "epochs": s["epochs"],
        "train_s": s["train_s"],
        "sequences_per_s": s["train_images_per_s"],
        "trained_sequences": trained_sequences(s),
        "test": _scores(s["test"]),
    }
    if job.generalise is not None:
        row["train"] = _scores(
            grouping.evaluate(out, split="train", assignments=[f"eval.samples={args['test_size']}"])
        )
        objects, k = job.generalise
        gen = grouping.evaluate(out, components=k, assignments=[f"dataset.objects={objects}"])
        row["generalisation"] = {"objects": objects, "components": k, **_scores(gen)}
    row["wall_s"] = time.perf_counter() - t0
    return row


def _scores(summary: dict[str, Any]) -> dict[str, Any]:
    keys = ("ami", "ami_std", "ami_mean_over_steps", "ari", "upper_bound", "images")
    return {k: summary[k] for k in keys}


def run_all(args: dict[str, Any]) -> list[dict[str, Any]]:
    todo = [job for job in jobs(args["recipe"]) if not args["only"] or job.name in args["only"]]
    if args["jobs"] <= 1:
        return [run_job(job, args) for job in todo]
    with ProcessPoolExecutor(args["jobs"], mp_context=get_context("spawn")) as pool:
        return list(pool.map(run_job, todo, [args] * len(todo)))


def _ami(scores: dict[str, Any]) -> str:
    return f"{scores['ami']:.3f} ({scores['ami_mean_over_steps']:.3f})"


def _paper(v: tuple[float, float]) -> str:
    return f"{v[0]:.3f} ± {v[1]:.3f}"


def report(rows: list[dict[str, Any]], minutes: float) -> str:
    """Our Table 1 beside the paper's, and Figure 5's upper bounds."""
    by = {(r["objects"], r["components"]): r for r in rows}
    lines = [
        "Table 1, flying shapes: AMI last step (mean over steps); "
        + (f"budget {minutes} min per run" if minutes > 0 else "no time limit"),
        f"{'train':>8} {'K':>2} | {'ours train':>13} {'ours test':>13} {'gen':>6} "
        f"{'ours gen':>13} | {'paper train':>13} {'paper test':>13} {'paper gen':>13} "
        f"| {'epochs':>6} {'sequences':>9}",
    ]
    for (o, k), (p_train, p_test, go, gk, p_gen) in PAPER.items():
        r = by.get((o, k))
        if r is None:
            continue
        lines.append(
            f"{o:>8} {k:>2} | {_ami(r['train']):>13} {_ami(r['test']):>13} {f'{go}/K{gk}':>6} "
            f"{_ami(r['generalisation']):>13} | {_paper(p_train):>13} {_paper(p_test):>13} "
            f"{_paper(p_gen):>13} | {r['epochs']:>6} {r['trained_sequences']:>9}"
        )
    lines += [
        "",
        "Figure 5: upper-bound BCE (nats per frame, last step, test split); "
        "paper: K=5 clearly below K=1, more so with more objects",
        f"{'objects':>8} | {'K=1':>9} {'K=5':>9} {'K=1 - K=5':>10}",
    ]
    for o in BASELINES:
        one, five = by.get((o, 1)), by.get((o, 5))
        if one is None or five is None:
            continue
        a, b = one["test"]["upper_bound"], five["test"]["upper_bound"]
        lines.append(f"{o:>8} | {a:>9.2f} {b:>9.2f} {a - b:>10.2f}")
    return "\n".join(lines)


def figure5(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {(r["objects"], r["components"]): r for r in rows}
    return [
        {
            "objects": o,
            "upper_bound_k1": by[o, 1]["test"]["upper_bound"],
            "upper_bound_k5": by[o, 5]["test"]["upper_bound"],
        }
        for o in BASELINES
        if (o, 1) in by and (o, 5) in by
    ]


def parse(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, required=True,
                   help="training budget per run (0: no limit, train.epochs decides)")  # fmt: skip
    p.add_argument("--recipe", choices=("paper", "cpu"), default="paper",
                   help="the paper's presets, or flying-shapes-3-cpu for every run")  # fmt: skip
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help="train only this run, e.g. 5obj-K5 or 3obj-K1 (repeatable)")  # fmt: skip
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (each 1 thread if > 1)")
    p.add_argument("--threads", type=int, default=None, help="threads per run (default: 1 per job)")
    p.add_argument("--json", type=Path, default=None, help="write the rows to this file")
    p.add_argument("--out", type=Path, default=None, help="run folders (default runs/table1-STAMP)")
    p.add_argument("--train-size", type=int, default=50_000)
    p.add_argument("--valid-size", type=int, default=1_000)
    p.add_argument("--test-size", type=int, default=1_000, help="sequences scored (paper: 10k)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override for every run (repeatable)")  # fmt: skip
    ns = p.parse_args(argv)
    names = {job.name for job in jobs()}
    if unknown := sorted(set(ns.only) - names):
        p.error(f"unknown run {unknown[0]!r} for --only; valid: {', '.join(sorted(names))}")
    args = vars(ns)
    if args["threads"] is None:
        args["threads"] = 1 if ns.jobs > 1 else 2
    args["out"] = str(ns.out or Path("runs") / time.strftime("table1-%Y%m%d-%H%M%S"))
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    t0 = time.perf_counter()
    rows = run_all(args)
    print(report(rows, args["minutes"]))
    result = {
        "budget_minutes_per_run": args["minutes"],
        "recipe": args["recipe"],
        "jobs": args["jobs"],
        "threads_per_job": args["threads"],
        "train_size": args["train_size"],
        "test_size": args["test_size"],
        "wall_s": time.perf_counter() - t0,
        "rows": rows,
        "figure5": figure5(rows),
        "paper": {f"{o}obj-K{k}": v for (o, k), v in PAPER.items()},
        "jobs_run": [asdict(j) for j in jobs()],
    }
    if args["json"] is not None:
        args["json"].write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
