"""``benchmarks/table1.py`` end to end with a tiny budget and a tiny network (a smoke test of the
script the lead runs for hours: every row, the generalisation column and Figure 5 are filled)."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from tests.scripts import load_benchmark

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "table1.py"
TINY = [
    "model.steps=2",
    "network.hidden=8",
    "network.encoder_fc=16",
    "network.decoder_fc=16",
    "network.encoder_channels=[4, 8]",
    "train.batch_size=32",
    "train.epochs=1",
    "eval.batch_size=16",
]


def load() -> ModuleType:
    return load_benchmark("table1")


def test_table1_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table1 = load()
    sizes = ["--train-size", "32", "--valid-size", "16", "--test-size", "16"]
    sets = [a for item in TINY for a in ("--set", item)]
    out, js = tmp_path / "runs", tmp_path / "t1.json"
    table1.main(["--minutes", "0", *sizes, *sets, "--out", str(out), "--json", str(js)])
    result = json.loads(js.read_text())
    rows = {r["name"]: r for r in result["rows"]}
    assert set(rows) == {"3obj-K3", "3obj-K5", "5obj-K3", "5obj-K5", "3obj-K1", "5obj-K1"}
    gen = rows["5obj-K3"]["generalisation"]
    assert (gen["objects"], gen["components"], gen["images"]) == (3, 3, 16)
    assert rows["3obj-K5"]["train"]["images"] == 16 and "generalisation" not in rows["3obj-K1"]
    assert [f["objects"] for f in result["figure5"]] == [3, 5]
    assert result["figure5"][1]["upper_bound_k1"] == rows["5obj-K1"]["test"]["upper_bound"]
    printed = capsys.readouterr().out
    assert "0.878 ± 0.003" in printed and "Figure 5" in printed
    assert (out / "5obj-K5" / "checkpoints" / "best.pt").is_file()


def test_the_cpu_recipe_trains_every_run_with_the_cpu_preset() -> None:
    table1 = load()
    jobs = table1.jobs("cpu")
    assert {job.preset for job in jobs} == {"flying-shapes-3-cpu"}
    assert [(job.objects, job.components) for job in jobs] == [
        (3, 3), (3, 5), (5, 3), (5, 5), (3, 1), (5, 1)
    ]  # fmt: skip
    assert {job.preset for job in table1.jobs()} >= {"flying-shapes-5", "flying-shapes-autoencoder"}
    stages = {"stages": [{"train_images_per_s": 200.0, "train_s": 10.0},
                         {"train_images_per_s": 50.0, "train_s": 20.0}]}  # fmt: skip
    assert table1.trained_sequences(stages) == 3000
    assert table1.trained_sequences({"train_images_per_s": 50.0, "train_s": 2.0}) == 100


def test_only_picks_runs_and_refuses_an_unknown_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    table1 = load()
    assert table1.parse(["--minutes", "1", "--only", "5obj-K5", "--only", "5obj-K1"])["only"] == [
        "5obj-K5",
        "5obj-K1",
    ]
    with pytest.raises(SystemExit) as exc:
        table1.parse(["--minutes", "1", "--only", "4obj-K4"])
    assert exc.value.code == 2 and "unknown run '4obj-K4'" in capsys.readouterr().err
