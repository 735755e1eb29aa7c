"""R-NEM against RNN-EM on bouncing balls at the same budget (van Steenkiste et al., ICLR 2018).

    python benchmarks/rnem.py [--minutes 20] [--jobs 2] [--threads 1] [--test-size 1000]
                              [--out DIR] [--json FILE] [--quick]

Trains R-NEM (with and without attention) and RNN-EM with the ``bouncing-balls-rnem-cpu`` /
``bouncing-balls-rnn-em-cpu`` presets, each for ``--minutes`` of training, and scores each model on
three test sets: 4 balls with K = 5 (as trained), 6-8 balls with K = 8 (extrapolation) and 4 balls
behind a curtain. Per set it reports, at the last step and averaged over steps:

* ``bce``: the next-step loss L_t of the paper's equation (5) (the gamma-weighted binary
  cross-entropy plus the inter-cluster term), per sequence;
* ``ub_bce``: the upper bound, the loss of max_k psi_k (no information through gamma);
* ``rel_bce``: L_t restricted to the pixels near a collision (``split.collision_mask``; step t is
  weighted by frame t's mask, as the original's ``collisions[t]``), per sequence;
* ``ami`` and ``ari``, and both averaged over the last 10 steps, as the original reports them.

The paper gives these only as plots (Figures 3-5 of the R-NEM paper): the table has no paper column.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grouping import build_config, train
from grouping.data.batches import iterate_batches
from grouping.engine.em import per_step_loss
from grouping.evaluation.scoring import per_sample_draws, score_groupings
from grouping.rundir.loading import load_trained

#: The models: name -> (preset, extra --set items).
MODELS = {
    "r-nem": ("bouncing-balls-rnem-cpu", []),
    "r-nem, no attention": ("bouncing-balls-rnem-cpu", ["updater.attention=false"]),
    "rnn-em": ("bouncing-balls-rnn-em-cpu", []),
}
#: The test sets: name -> (overrides of the trained config).
TEST_SETS = {
    "4 balls, K = 5": {},
    "6-8 balls, K = 8": {"dataset": {"balls": 6, "max_balls": 8}, "model": {"components": 8}},
    "curtain, K = 5": {"dataset": {"curtain": 0.44}},
}
#: The original also averages the scores over the last this many steps.
LAST_STEPS = 10


def train_one(name: str, args: argparse.Namespace) -> str:
    """Train one model for ``--minutes`` into ``OUT/<name>``; its run folder."""
    torch.set_num_threads(args.threads)
    preset, extra = MODELS[name]
    sets = [*extra, f"train.max_minutes={args.minutes}", f"train.threads={args.threads}"]
    if args.quick:
        sets += ["dataset.train_size=64", "dataset.valid_size=16", "dataset.test_size=16"]
        sets += ["train.valid_samples=16", "train.epochs=1", "model.steps=4"]
    out = args.out / name.replace(", ", "-").replace(" ", "-")
    train(build_config(preset, assignments=sets), out)
    return str(out)


def score_set(run: str, overrides: dict[str, Any], samples: int, seed: int) -> dict[str, Any]:
    """The scores of one trained model on one test set (the run's own test split, as changed)."""
    loaded = load_trained(run, "auto", "cpu", overrides=overrides)
    model, split = loaded.model, loaded.dataset.split("test")
    n = min(samples, len(split))
    steps = model.steps
    rows: dict[str, list[np.ndarray]] = {k: [] for k in ("bce", "ub", "rel", "ami", "ari")}
    start = 0
    for x, groups in iterate_batches(split, np.arange(n), 50, steps + 1, torch.device("cpu")):
        index = np.arange(start, start + x.shape[0])
        inputs, gamma0 = per_sample_draws(model, loaded.noise, x, seed, start)
        start += x.shape[0]
        with torch.no_grad():
            out = model(inputs, x, gamma=gamma0)
        for key, value in zip(rows, batch_scores(model, out, x, groups, split, index)):
            rows[key].append(value)
    return summarize({k: np.concatenate(v) for k, v in rows.items()})


def batch_scores(
    model: Any, out: Any, x: torch.Tensor, groups: torch.Tensor, split: Any, index: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Per sequence and step (B, T): the loss, its upper bound, the relational loss, AMI, ARI."""
    steps = out.psi.shape[1]
    target = x[:, 1 : steps + 1].unsqueeze(2)  # (B, T, 1, H, W, C)
    like = model.likelihood
    pixel = per_step_loss(like, target, out.psi, out.gamma[:, 1:], model.inter_weight)
    pixel = pixel.sum(dim=(2, -1))  # (B, T, H, W)
    best = out.psi.max(dim=2, keepdim=True).values
    ub = like.intra(target, best).sum(dim=(2, 3, 4, 5))  # (B, T)
    mask = split.collision_mask(index)[:, :steps].to(pixel.dtype)  # step t: frame t's mask
    rel = (pixel * mask).sum(dim=(2, 3))
    ami, ari = score_groupings(out.gamma, groups[:, : steps + 1])
    return pixel.sum(dim=(2, 3)).numpy(), ub.numpy(), rel.numpy(), ami, ari


def summarize(rows: dict[str, np.ndarray]) -> dict[str, Any]:
    """Last step, mean over steps and mean over the last steps of each score."""
    out: dict[str, Any] = {"sequences": int(rows["ami"].shape[0])}
    names = {"bce": "bce", "ub": "ub_bce", "rel": "rel_bce", "ami": "ami", "ari": "ari"}
    for key, name in names.items():
        per_step = rows[key].mean(axis=0)
        out[name] = float(per_step[-1])
        out[f"{name}_mean"] = float(per_step.mean())
        out[f"{name}_last{LAST_STEPS}"] = float(per_step[-LAST_STEPS:].mean())
        out[f"{name}_per_step"] = [float(v) for v in per_step]
    return out


def table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The markdown table: one row per model and test set."""
    head = (
        "| model | test set | BCE | upper-bound BCE | relational BCE | AMI | ARI | AMI, last 10 |"
    )
    lines = [head, "|" + "---|" * 8]
    for model, sets in results.items():
        for name, s in sets.items():
            lines.append(
                f"| {model} | {name} | {s['bce']:.1f} ({s['bce_mean']:.1f}) | "
                f"{s['ub_bce']:.1f} | {s['rel_bce']:.1f} ({s['rel_bce_mean']:.1f}) | "
                f"{s['ami']:.3f} ({s['ami_mean']:.3f}) | {s['ari']:.3f} ({s['ari_mean']:.3f}) | "
                f"{s['ami_last10']:.3f} |"
            )
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=20.0, help="training minutes per model")
    ap.add_argument("--jobs", type=int, default=1, help="models trained at once")
    ap.add_argument("--threads", type=int, default=1, help="threads per job")
    ap.add_argument("--test-size", type=int, default=1000, help="test sequences per set")
    ap.add_argument("--out", type=Path, default=Path("runs/rnem-benchmark"))
    ap.add_argument("--json", type=Path, help="write the scores here")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of minutes")
    ap.add_argument("--runs", nargs="*", help="score these run folders (name=RUN) instead")
    ap.add_argument("--models", help=f"comma-separated subset of: {', '.join(MODELS)}")
    args = ap.parse_args(argv)
    if args.quick:
        args.minutes, args.test_size = min(args.minutes, 0.2), min(args.test_size, 16)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.runs:
        runs = dict(item.split("=", 1) for item in args.runs)
    else:
        names = [m.strip() for m in args.models.split(",")] if args.models else list(MODELS)
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futures = {name: pool.submit(train_one, name, args) for name in names}
            runs = {name: f.result() for name, f in futures.items()}
    torch.set_num_threads(args.threads)
    results = {
        name: {s: score_set(run, o, args.test_size, seed=0) for s, o in TEST_SETS.items()}
        for name, run in runs.items()
    }
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "scores": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
