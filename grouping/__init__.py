"""grouping: unsupervised perceptual grouping with Neural Expectation Maximization.

The Python API mirrors the command line::

    import grouping
    config = grouping.build_config("quickstart", assignments=["train.epochs=2"])
    run = grouping.train(config, "runs/demo")
    print(run.test["ami"])
    grouping.visualize(run.path, samples=6)        # -> runs/demo/figure.png
    grouping.plot([run.path], out="curves.png")
    for info in grouping.runs("runs"):
        print(info.name, info.test_ami)
    scores = grouping.evaluate(run.path, components=5)  # the same weights with K = 5
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("grouping")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

from grouping.config import RunConfig, build_config
from grouping.evaluation import evaluate
from grouping.hookspecs import hookimpl
from grouping.inspection import LoadedRun, RunInfo, load_run, plot, runs, visualize
from grouping.resume import resume
from grouping.stages import train_stages
from grouping.train import RunResult, train

__all__ = [
    "LoadedRun",
    "RunConfig",
    "RunInfo",
    "RunResult",
    "__version__",
    "build_config",
    "evaluate",
    "hookimpl",
    "load_run",
    "plot",
    "resume",
    "runs",
    "train",
    "train_stages",
    "visualize",
]
