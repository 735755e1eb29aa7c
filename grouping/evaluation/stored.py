"""Shipping a model in half precision only where that does not change its scores.

A shipped model's weights are stored in float16 or bfloat16 to keep the package small and cast
back to float32 on load (:mod:`grouping.rundir.pretrained`). :func:`precision_check` scores the
float32 model and each stored precision on the same generated test samples with the same noise and
gamma^(0) (the draws of :func:`grouping.evaluation.scoring.score_split` are per sample), and
:func:`ship_checked` ships with the precision that moves the test AMI least, refusing to ship where
even that moves it by :data:`MAX_AMI_CHANGE` or more.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from grouping.accel.device import make_generator
from grouping.errors import RunDirError
from grouping.evaluation.running import is_finished, snapshot
from grouping.evaluation.scoring import score_split
from grouping.rundir.checkpoint import HALF_DTYPES
from grouping.rundir.loading import LoadedRun, load_trained
from grouping.rundir.pretrained import PRETRAINED_ROOT, resolve_run, ship

#: The most the stored precision may change the test AMI (last step or mean over steps).
MAX_AMI_CHANGE = 0.002
#: Generated test samples the check scores by default.
CHECK_SAMPLES = 1000


def loaded(run_dir: Path | str, samples: int, device: str = "cpu") -> LoadedRun:
    """A run's tested model with a test split of ``samples`` generated samples, all scored."""
    sizes = {"dataset": {"test_size": samples}, "eval": {"samples": samples}}
    return load_trained(run_dir, "auto", device, sizes)


def scored(run: LoadedRun) -> dict[str, float]:
    """Last-step and mean-over-steps test AMI of the run's model as it is now; the data, noise
    and gamma^(0) depend only on the run's seed, so two calls see the same samples and draws."""
    device = next(run.model.parameters()).device
    scores = score_split(
        run.model,
        run.noise,
        run.dataset.split("test"),
        samples=run.config.eval.samples,
        batch_size=run.config.eval.batch_size,
        device=device,
        generator=make_generator(device, run.config.seed + 1),
    )
    return {"ami": float(scores.ami[:, -1].mean()), "ami_mean_over_steps": float(scores.ami.mean())}


def precision_check(run: LoadedRun, dtypes: Sequence[str]) -> dict[str, Any]:
    """The float32 model's scores and each stored precision's, with their change from float32;
    the model is left in float32."""
    original = {k: v.clone() for k, v in run.model.state_dict().items()}
    out: dict[str, Any] = {"samples": run.config.eval.samples, "float32": scored(run)}
    try:
        for dtype in dtypes:
            half = HALF_DTYPES[dtype]
            run.model.load_state_dict(
                {k: v.to(half).float() if v.is_floating_point() else v for k, v in original.items()}
            )
            scores = scored(run)
            change = max(abs(scores[k] - out["float32"][k]) for k in scores)
            out[dtype] = scores | {"change": change}
    finally:
        run.model.load_state_dict(original)
    return out


def ship_checked(
    run_dir: Path | str,
    name: str,
    *,
    samples: int = CHECK_SAMPLES,
    dtypes: Sequence[str] = ("float16", "bfloat16"),
    record: dict[str, Any] | None = None,
    root: Path = PRETRAINED_ROOT,
    device: str = "cpu",
) -> Path:
    """Ship a run as ``pretrained:NAME`` (:func:`grouping.rundir.pretrained.ship`) in the
    precision of ``dtypes`` that changes its test AMI least (the first on a tie), then score the
    shipped folder as loaded to confirm it; one line and nothing shipped where every precision
    changes the AMI by :data:`MAX_AMI_CHANGE` or more. A run still training ships its best model
    so far (:func:`grouping.evaluation.running.snapshot`) and is left to go on."""
    unknown = [d for d in dtypes if d not in HALF_DTYPES]
    if unknown or not dtypes:
        raise RunDirError(f"unknown weight dtype {unknown}; valid: {', '.join(HALF_DTYPES)}")
    source = resolve_run(run_dir)
    with finished_form(source, name, device) as folder:
        check = precision_check(loaded(folder, samples, device), dtypes)
        best = min(dtypes, key=lambda d: check[d]["change"])
        if check[best]["change"] >= MAX_AMI_CHANGE:
            raise RunDirError(
                f"not shipped: storing {source} in {best} changes its test AMI by "
                f"{check[best]['change']:.4f}, at least {MAX_AMI_CHANGE}; keep it in float32"
            )
        check["chosen"] = best
        meta = {**(record or {}), "precision_check": check}
        target = ship(folder, name, dtype=best, record=meta, root=root)
    shipped = scored(loaded(target, samples, device))
    if max(abs(shipped[k] - check[best][k]) for k in shipped) > 1e-9:
        raise RunDirError(f"{target} scores {shipped} as loaded, not {check[best]}: ship again")
    return target


@contextmanager
def finished_form(run_dir: Path, name: str, device: str) -> Iterator[Path]:
    """A finished run as it is; a run still training as a snapshot in a temporary folder."""
    if is_finished(run_dir):
        yield run_dir
        return
    with tempfile.TemporaryDirectory(prefix="grouping-snapshot-") as tmp:
        yield snapshot(run_dir, Path(tmp) / name, device)
