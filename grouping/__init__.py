"""grouping: unsupervised perceptual grouping with Neural Expectation Maximization.

The Python API mirrors the command line::

    import grouping
    config = grouping.build_config("quickstart", assignments=["train.epochs=2"])
    run = grouping.train(config, "runs/demo")
    print(run.test["ami"])
    grouping.visualize(run.path, samples=6)        # -> runs/demo/figure-visualize.png
    grouping.plot([run.path], out="curves.png", dpi=300)  # PNGs default to 200 dpi
    for info in grouping.runs("runs"):
        print(info.name, info.test_ami)
    scores = grouping.evaluate(run.path, components=5)  # the same weights with K = 5
    grouping.evaluate("pretrained:static-shapes", assignments=["eval.samples=200"])
    grouping.segment("pretrained:static-shapes", ["me.png"], "masks")  # your own pictures
"""

from __future__ import annotations

from grouping.config.loading import build_config
from grouping.config.schema import RunConfig
from grouping.evaluation.api import evaluate
from grouping.figures.curves import plot
from grouping.figures.groupings import visualize
from grouping.figures.segment import segment
from grouping.plugin_api.hookspecs import hookimpl
from grouping.rundir.listing import RunInfo, runs
from grouping.rundir.loading import LoadedRun, load_run
from grouping.training.api import train
from grouping.training.resume import resume
from grouping.training.run import RunResult
from grouping.training.stages import train_stages
from grouping.version import __version__

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
    "segment",
    "train",
    "train_stages",
    "visualize",
]
