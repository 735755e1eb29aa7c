"""The GPU check: one prepared script for a 10-minute window on one CUDA GPU.

    python benchmarks/gpu_check.py [--out DIR] [--sections a,b,...] [--dry-run]

Sections run in this order, each under its own time limit (seconds, :data:`SECTIONS`), and
``DIR/gpu_check.json`` (default ``gpu-check/``) is written again after every section, so a run cut
short still reports every section it finished; a section that fails or overruns is marked
``"error"`` or ``"cut"`` with what it had measured by then, and the next one starts.

* ``environment``: device, capability, memory, torch, CUDA, cuDNN, driver;
* ``correctness``: one step on the CPU and on the GPU from identical weights, inputs and
  gamma^(0), fp32 with TF32 off (loss and gradients within 1e-4 relative); the bf16 loss gap over
  20 steps; every host sync in a step (``torch.cuda.set_sync_debug_mode("warn")``);
* ``eager``: each family at batch 64, TF32 against bf16: ms per step (CUDA events), GPU busy share
  and kernels per step (a short profile); and what ``train.deterministic`` costs flying shapes;
* ``sweep``: flying shapes at batch 64, 256, 1024 (ms per step, sequences/s, peak memory);
* ``compile``: ``train.compile`` default and reduce-overhead at batch 64 (compile s, ms per step);
* ``data``: real flying-shapes batches, device-resident against rendered on the CPU (sequences/s);
* ``end_to_end``: ``flying-shapes-3`` trained for 4 minutes with real data, validated, tested,
  its best checkpoint reloaded and scored again: the AMI, and whether the reload reproduced it.

``--dry-run`` runs every section on the CPU with tiny sizes (two EM steps, batches of 2, a few
seconds of training), in under two minutes: it checks the script, not the machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, when imported
from gpu_sections import Check, compile_section, correctness, eager, sweep, sync

import grouping
from grouping.config.loading import build_config
from grouping.data.batches import Prefetcher, iterate_batches
from grouping.data.resident import ResidentSplit
from grouping.engine.assembly import assemble, resolve

Section = Callable[[Check, dict[str, Any]], None]


class Cut(Exception):
    """A section's time limit passed."""


def environment(check: Check, out: dict[str, Any]) -> None:
    """What the figures depend on."""
    out.update(
        device=str(check.device),
        torch=torch.__version__,
        cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        python=platform.python_version(),
        grouping=grouping.__version__,
        cpu_threads=torch.get_num_threads(),
        name=None,
        capability=None,
        memory_gb=None,
        bf16=None,
        driver=None,
    )
    if check.device.type == "cuda":
        props = torch.cuda.get_device_properties(check.device)
        out.update(
            name=props.name,
            capability=list(torch.cuda.get_device_capability(check.device)),
            memory_gb=props.total_memory / 2**30,
            bf16=torch.cuda.is_bf16_supported(),
            driver=_driver(),
        )


def _driver() -> str | None:
    try:
        query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
        done = subprocess.run(query, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def _split(check: Check, n: int) -> Any:
    """The real flying-shapes training split of ``n`` sequences (rendered on demand)."""
    sets = [f"dataset.train_size={n}", "dataset.valid_size=8", "dataset.test_size=8"]
    parts = assemble(resolve(build_config("flying-shapes-3", assignments=sets)))
    return parts.split("train")


def _rate(split: Any, batch: int, device: torch.device, prefetch: int) -> float:
    """Sequences/s of a pass over ``split`` through the trainer's loader."""
    order = np.arange(len(split) // batch * batch)
    t0 = time.perf_counter()
    for features, _ in Prefetcher(iterate_batches(split, order, batch, 21, device), prefetch):
        features.sum()  # the batch is used, as a step would
    sync(device)
    return len(order) / (time.perf_counter() - t0)


def data(check: Check, out: dict[str, Any]) -> None:
    """Real flying-shapes batches: rendered on the CPU (pinned, copied, 2 ahead on a thread, as the
    trainer gathers them) against resident in device memory (filled once, then gathered)."""
    batch = 8 if check.dry else 64
    split = _split(check, 64 if check.dry else 8192)
    prefetch = 2 if check.device.type == "cuda" else 0
    out["sequences"] = len(split)
    out["rendered_sequences_per_s"] = _rate(split, batch, check.device, prefetch)
    t0 = time.perf_counter()
    resident = ResidentSplit(split, check.device, groups=False).fill()
    sync(check.device)
    out["fill_s"] = time.perf_counter() - t0
    out["resident_mb"] = resident.features.numel() * resident.features.element_size() / 2**20
    out["resident_dtype"] = str(resident.features.dtype)
    out["resident_sequences_per_s"] = _rate(resident, batch, check.device, prefetch)
    index = np.arange(min(len(split), batch))[::-1].copy()
    same = torch.equal(resident.get(index)[0].cpu(), split.get(index)[0])
    out["identical_batches"] = bool(same)


def end_to_end(check: Check, out: dict[str, Any]) -> None:
    """``flying-shapes-3`` for 4 minutes (a few seconds in the dry run), tested, then its checkpoint
    reloaded and scored again by ``grouping.evaluate`` on the same samples."""
    minutes = 0.05 if check.dry else 4.0
    sets = [f"train.max_minutes={minutes}", f"train.device={check.device}", "eval.samples=2000"]
    if check.dry:
        sets += ["dataset.train_size=64", "dataset.valid_size=8", "dataset.test_size=8"]
        sets += ["train.batch_size=8", "train.valid_samples=8", "eval.samples=8", "model.steps=2"]
    config = build_config("flying-shapes-3", assignments=sets)
    folder = Path(tempfile.mkdtemp(prefix="gpu-check-")) / "run"
    run = grouping.train(config, folder)
    s = run.summary
    out.update(
        run=str(folder),
        epochs=s["epochs"],
        train_s=s["train_s"],
        train_sequences_per_s=s["train_images_per_s"],
        precision=s["machine"]["precision"],
        data_on_device=s["config"]["train"]["data_on_device"],
        test_ami=run.test["ami"],
        best_valid_loss=s["best_valid_loss"],
    )
    again = grouping.evaluate(folder)
    out["reloaded_ami"] = again["ami"]
    out["reload_matches"] = abs(again["ami"] - run.test["ami"]) < 1e-9


#: name, time limit (seconds), function.
SECTIONS: list[tuple[str, float, Section]] = [
    ("environment", 15, environment),
    ("correctness", 45, correctness),
    ("eager", 60, eager),
    ("sweep", 45, sweep),
    ("compile", 90, compile_section),
    ("data", 30, data),
    ("end_to_end", 285, end_to_end),
]


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`Cut` in the main thread once ``seconds`` have passed."""

    def alarm(signum: int, frame: Any) -> None:
        raise Cut(f"cut at its time limit of {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_section(check: Check, name: str, limit: float, fn: Section) -> dict[str, Any]:
    """One section under its limit: its keys, status (ok, cut, error) and seconds."""
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    check.deadline = t0 + limit
    try:
        with time_limit(limit):
            fn(check, out)
        status = "ok"
    except Cut as exc:
        status, out["error"] = "cut", str(exc)
    except Exception as exc:  # reported, and the next section runs
        status = "error"
        out["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        out["traceback"] = traceback.format_exc()[-3000:]
    return {"status": status, "seconds": time.perf_counter() - t0, "limit_s": limit, **out}


def write(path: Path, report: dict[str, Any]) -> None:
    """Write the report atomically: a reader never sees half a file."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def _line(name: str, row: dict[str, Any]) -> str:
    skip = {"status", "seconds", "limit_s", "traceback"}
    brief = {k: v for k, v in row.items() if k not in skip and not isinstance(v, dict | list)}
    return f"{name}: {row['status']} in {row['seconds']:.1f} s  {json.dumps(brief, default=str)}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("gpu-check"), help="folder of the JSON")
    ap.add_argument("--sections", help="comma-separated sections to run (default: all)")
    ap.add_argument("--dry-run", action="store_true", help="every section on the CPU, tiny")
    args = ap.parse_args(argv)
    names = [name for name, _, _ in SECTIONS]
    wanted = args.sections.split(",") if args.sections else names
    if set(wanted) - set(names):
        ap.error(f"unknown sections {sorted(set(wanted) - set(names))}; valid: {names}")
    if not args.dry_run and not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device visible to torch {torch.__version__}", file=sys.stderr)
        return 2
    check = Check(torch.device("cpu" if args.dry_run else "cuda"), args.dry_run)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "gpu_check.json"
    report: dict[str, Any] = {"dry_run": args.dry_run, "started": time.time(), "sections": {}}
    for name, limit, fn in SECTIONS:
        if name in wanted:
            row = run_section(check, name, limit, fn)
            report["sections"][name] = row
            write(path, report)
            print(_line(name, row), flush=True)
    failed = [n for n, r in report["sections"].items() if r["status"] != "ok"]
    print(f"wrote {path}" + (f"; not ok: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
