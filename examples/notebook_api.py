"""The Python API in one short script: train, draw the groupings, plot the curves, list the runs.

    python examples/notebook_api.py                 # a 1-minute quickstart run into runs/api-demo
    python examples/notebook_api.py --tiny OUTDIR   # seconds; what the tests run

Every step is what a notebook cell would do; each function is the API behind a `grouping` command.
"""

from __future__ import annotations

import sys
from pathlib import Path

import grouping

TINY = [
    "dataset.train_size=128",
    "dataset.valid_size=32",
    "dataset.test_size=32",
    "train.batch_size=32",
    "train.epochs=1",
    "train.valid_samples=32",
    "model.steps=3",
    "network.hidden=16",
    "train.max_minutes=null",
]


def main(argv: list[str]) -> None:
    tiny = argv[:1] == ["--tiny"]
    root = Path(argv[1]) if tiny and len(argv) > 1 else Path("runs")
    settings = TINY if tiny else ["train.max_minutes=1.0", "train.threads=1"]

    # grouping run: train, test, and write the run folder (with figure.png)
    config = grouping.build_config("quickstart", assignments=settings)
    run = grouping.train(config, root / "api-demo")
    print(f"test AMI {run.test['ami']:.3f} after {run.summary['epochs']} epoch(s) -> {run.path}")

    # grouping visualize: the groupings of 3 validation samples, 5 EM steps
    figure = grouping.visualize(run.path, split="valid", samples=3, steps=5, out=root / "valid.png")
    print(f"groupings: {figure}")

    # grouping plot: training curves and the test AMI per EM step
    print(f"curves: {grouping.plot([run.path], out=root / 'curves.png')}")

    # grouping runs: what the folder holds
    for info in grouping.runs(root):
        print(f"{info.name}: {info.status}, {info.epochs} epochs, test AMI {info.test_ami}")


if __name__ == "__main__":
    main(sys.argv[1:])
