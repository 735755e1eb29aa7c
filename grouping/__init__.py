"""grouping: unsupervised perceptual grouping with Neural Expectation Maximization.

The Python API mirrors the command line::

    import grouping
    config = grouping.build_config("quickstart", assignments=["train.epochs=2"])
    run = grouping.train(config, "runs/demo")
    print(run.test["ami"])
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("grouping")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

from grouping.config import RunConfig, build_config
from grouping.hookspecs import hookimpl
from grouping.resume import resume
from grouping.train import RunResult, train

__all__ = ["RunConfig", "RunResult", "__version__", "build_config", "hookimpl", "resume", "train"]
