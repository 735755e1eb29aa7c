"""``benchmarks/gpu_check.py --dry-run``: every section runs on the CPU with tiny sizes and writes its
keys to ``gpu_check.json``, so the script a GPU session runs has run before it gets there.

Marked slow: about two minutes on the busy 2-core development machine (most of it torch.compile's
cold start in the compile section).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"

#: Every section's own keys (besides status, seconds and limit_s).
KEYS = {
    "environment": {"device", "torch", "cuda", "cudnn", "name", "capability", "memory_gb"},
    "correctness": {"conv-shapes_cpu_vs_device", "fc-static_cpu_vs_device", "bf16_loss_gap",
                    "syncs"},
    "eager": {f"{f}_{p}" for f in ("conv-shapes", "fc-static", "conv-mnist")
              for p in ("tf32", "bf16")} | {"conv-shapes_tf32_deterministic_ms"},
    "sweep": {f"{b}_{p}" for b in (2, 4, 8) for p in ("tf32", "bf16")},
    "compile": {"fc-static_default", "fc-static_reduce-overhead"},
    "data": {"rendered_sequences_per_s", "resident_sequences_per_s", "fill_s",
             "identical_batches"},
    "end_to_end": {"epochs", "train_sequences_per_s", "test_ami", "reloaded_ami",
                   "reload_matches"},
}  # fmt: skip


@pytest.mark.slow
def test_dry_run_writes_every_section(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--out", str(tmp_path)],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["dry_run"] is True
    sections = report["sections"]
    assert list(sections) == list(KEYS)
    for name, keys in KEYS.items():
        row = sections[name]
        assert row["status"] == "ok", (name, row.get("error"), row.get("traceback"))
        assert keys <= set(row), (name, keys - set(row))
        assert row["seconds"] <= row["limit_s"]
    correct = sections["correctness"]
    assert correct["conv-shapes_cpu_vs_device"]["ok"] and correct["syncs"]["counted"] == 0
    eager = sections["eager"]["conv-shapes_tf32"]
    assert eager["ms_per_step"] > 0 and eager["kernels_per_step"] > 0
    assert sections["data"]["identical_batches"] is True
    assert sections["end_to_end"]["reload_matches"] is True
    for name in sections:  # one line per section, as the device tool shows it
        assert f"{name}: ok" in done.stdout
