"""The results table from the shipped models, regenerated in minutes (issue 39).

Scores every model shipped in the package (``grouping pretrained``) on freshly generated test data
(``--samples``, 1,000 images or sequences each; 100 with ``--quick``; the data, noise and gamma^(0)
come from each model's own seed, so a rerun gives the same figures), on its own test and on the
paper's transfer tests where its experiment has them (a 3-shape model with K = 5, three digits with
K = 3, static digits over 50 steps, Figure 6's 50-step unroll), and writes the table that
docs/results.md and the README show: the paper's figure, ours under both of the original code's
names and the model's training budget. Experiments with no shipped model have a row that says so.

* **Last AMI** (the original code's name): the AMI of the last EM step.
* **AMI** (the original code's name): the AMI of steps 1..T averaged with the loss step weights,
  gamma^(0) never scored: every step on sequences, only the last on static images.
* **mean over steps**: steps 1..T with equal weights (on sequences the same as "AMI").

    python benchmarks/results.py                           # the markdown table to stdout
    python benchmarks/results.py --quick --out table.md --json table.json

A finished run becomes a shipped model, after the stored-precision check
(:func:`grouping.evaluation.stored.ship_checked`), with one command; then rerun the table:

    python benchmarks/results.py --ship RUN flying-shapes-3 --command "grouping run ..."
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

#: What ``--quick`` scores per test instead of 1,000 samples.
QUICK_SAMPLES = 100
#: The steps at which the Figure 6 row gives the AMI (where the unroll reaches them).
CURVE_STEPS = (1, 10, 20, 50)


@dataclass(frozen=True)
class Test:
    """One row of a shipped model: its own test (no overrides) or a transfer test."""

    title: str
    paper: float | str | None
    components: int | None = None
    steps: int | None = None
    sets: tuple[str, ...] = ()
    curve: bool = False  # Figure 6: the AMI per step


MNIST_TRANSFERS = {
    # paper's figure for the direct and the stage-wise model
    "3 digits, K = 3, no retraining": ((0.729, 0.838), 3, None, ("dataset.digits=3",)),
    "2 static digits, 50 steps": ((0.619, 0.772), None, 50, ("dataset.static=true",)),
}


def tests(experiment: str) -> list[Test]:
    """The rows of an experiment: its own test first, then the paper's transfer tests."""
    from grouping.rundir.pretrained import EXPERIMENTS

    title, paper = EXPERIMENTS[experiment]
    rows = [Test(title, paper)]
    if experiment == "flying-shapes-3":
        rows.append(Test("the same model on 3 shapes with K = 5", 0.972, components=5))
    if experiment == "flying-shapes-5":
        rows.append(Test("the same model on 3 shapes, K = 5", 0.981, sets=("dataset.objects=3",)))
    if experiment.startswith("flying-mnist"):
        staged = experiment.endswith("stagewise")
        for name, (papers, k, steps, sets) in MNIST_TRANSFERS.items():
            rows.append(Test(f"the same model, {name}", papers[staged], k, steps, sets))
        rows.append(Test("Figure 6: 2 moving digits, 50 steps", "rises, then flat", None, 50,
                         curve=True))  # fmt: skip
    return rows


def score(folder: Path, test: Test, samples: int, device: str) -> dict[str, Any]:
    """One test of a shipped model on ``samples`` freshly generated samples."""
    from grouping.config.schema import ModelConfig
    from grouping.evaluation.api import evaluate
    from grouping.rundir.pretrained import original_ami

    sets = [f"dataset.test_size={samples}", f"eval.samples={samples}", *test.sets]
    r = evaluate(folder, components=test.components, steps=test.steps, assignments=sets,
                 device=device)  # fmt: skip
    weights = ModelConfig.model_validate(r["config"]["model"]).step_weights()
    out = {
        "last_step": r["ami"],
        "last_step_std": r["ami_std"],
        "original_ami": original_ami(r["ami_per_step"], weights),
        "mean_over_steps": r["ami_mean_over_steps"],
        "samples": r["images"],
    }
    if test.curve:
        per_step = r["ami_per_step"]
        out["curve"] = {s: per_step[s - 1] for s in CURVE_STEPS if s <= len(per_step)}
    return out


def model_rows(name: str, root: Path, samples: int, device: str) -> list[dict[str, Any]]:
    """Every row of one shipped model, scored."""
    from grouping.rundir.folder import IN_PROGRESS
    from grouping.rundir.pretrained import shipped_record

    record = shipped_record(name, root)
    experiment = record["experiment"]
    todo = tests(experiment) if experiment else [Test(f"{name} (no paper experiment)", None)]
    rows = []
    for test in todo:
        t0 = time.perf_counter()
        scores = score(root / name, test, samples, device)
        rows.append(
            {"experiment": test.title, "paper": test.paper, "model": record["name"],
             **scores, "budget": record["budget"], "command": record["command"],
             "in_progress": record.get("status") == IN_PROGRESS,
             "scored_s": round(time.perf_counter() - t0, 1)}
        )  # fmt: skip
    return rows


def build(root: Path | None, samples: int, device: str) -> dict[str, Any]:
    """The whole table: every experiment's rows, scored where a model is shipped."""
    from grouping.rundir.pretrained import EXPERIMENTS, PRETRAINED_ROOT, pretrained_models

    root = root or PRETRAINED_ROOT
    names = pretrained_models(root)
    claimed: dict[str, list[str]] = {}
    for name in names:
        experiment = json_or_empty(root / name / "shipped.json").get("experiment") or name
        claimed.setdefault(experiment if experiment in EXPERIMENTS else name, []).append(name)
    rows: list[dict[str, Any]] = []
    for experiment in [*EXPERIMENTS, *(k for k in claimed if k not in EXPERIMENTS)]:
        if experiment not in claimed:
            own, *transfers = tests(experiment)
            also = f", nor for its transfer tests ({len(transfers)})" if transfers else ""
            rows.append({"experiment": own.title, "paper": own.paper, "model": None,
                         "note": f"no shipped model yet (pretrained:{experiment}){also}"})  # fmt: skip
        for name in claimed.get(experiment, []):
            rows += model_rows(name, root, samples, device)
    return {"samples": samples, "device": device, "models": names, "rows": rows}


def json_or_empty(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _ami(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def budget_cell(budget: dict[str, Any]) -> str:
    """A training budget in a few words: minutes (and stages) and samples seen."""
    stages = f" in {budget['stages']} stages" if budget.get("stages") else ""
    return f"{budget['train_minutes']:g} min{stages}, {budget['samples_seen'] / 1000:,.0f}k samples"


def budget_text(budget: dict[str, Any]) -> str:
    """The whole budget: minutes, epochs, samples seen, device and how it was spent."""
    stages = f" in {budget['stages']} stages" if budget.get("stages") else ""
    text = (
        f"{budget['train_minutes']:g} min{stages}, {budget['epochs']} epochs, "
        f"{budget['samples_seen']:,} samples seen ({budget.get('device') or '?'})"
    )
    return f"{text}; {budget['note']}" if budget.get("note") else text


def markdown(table: dict[str, Any]) -> str:
    """The table as the README and docs/results.md show it (between ``<!-- results.py -->``
    and ``<!-- /results.py -->``)."""
    lines = [
        '| experiment | paper | model | ours, last step ("Last AMI") | ours, the original\'s '
        '"AMI" | ours, mean over steps | training |',
        "|---|---|---|---|---|---|---|",
    ]
    for r in table["rows"]:
        paper = r["paper"] if isinstance(r["paper"], str) else _ami(r["paper"])
        if r["model"] is None:
            lines.append(f"| {r['experiment']} | {paper} | {r['note']} | | | | |")
            continue
        last = _ami(r["last_step"])
        if "curve" in r:
            last = ", ".join(f"{v:.2f} at step {s}" for s, v in r["curve"].items())
        lines.append(
            f"| {r['experiment']} | {paper} | `{r['model']}` | {last} | "
            f"{_ami(r['original_ami'])} | {_ami(r['mean_over_steps'])} | "
            f"{budget_cell(r['budget'])} |"
        )
    lines.append("")
    lines.append(
        f"Scored on {table['samples']:,} freshly generated test samples per row "
        f"(`python benchmarks/results.py`). The paper's figures are means over 5 runs."
    )
    return "\n".join(lines)


def models_markdown(table: dict[str, Any]) -> str:
    """Each shipped model's training: budget, how it was spent and the command (docs/results.md,
    between ``<!-- results.py models -->`` and ``<!-- /results.py models -->``)."""
    lines, seen = [], set()
    for r in table["rows"]:
        if r["model"] is None or r["model"] in seen:
            continue
        seen.add(r["model"])
        status = (
            " Still training when shipped: its best model so far." if r.get("in_progress") else ""
        )
        lines.append(
            f"- `{r['model']}`: {budget_text(r['budget'])}.{status} Command: {r['command']}"
        )
    return "\n".join(lines)


#: The blocks ``--update`` rewrites: marker name -> what goes between the markers.
BLOCKS = {"results.py": markdown, "results.py models": models_markdown}


def blocks_in(path: Path) -> list[str]:
    """The blocks of :data:`BLOCKS` a file has; one line (exit 2) where it has none or cannot
    be read, checked before anything is scored."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    names = [n for n in BLOCKS if f"<!-- {n} -->\n" in text and f"<!-- /{n} -->" in text]
    if not names:
        fail(f"{path} has no <!-- results.py --> ... <!-- /results.py --> block to update")
    return names


def update(path: Path, table: dict[str, Any]) -> list[str]:
    """Rewrite the blocks of :data:`BLOCKS` that ``path`` has, keeping the rest of the file."""
    text, names = path.read_text(encoding="utf-8"), blocks_in(path)
    for name in names:
        start, end = f"<!-- {name} -->\n", f"<!-- /{name} -->"
        head, rest = text.split(start, 1)
        text = head + start + BLOCKS[name](table) + "\n" + end + rest.split(end, 1)[1]
    path.write_text(text, encoding="utf-8")
    return names


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def block(text: str, name: str = "results.py") -> str:
    """What a file shows between ``<!-- name -->`` and ``<!-- /name -->``."""
    return text.split(f"<!-- {name} -->\n", 1)[1].split(f"<!-- /{name} -->", 1)[0].rstrip("\n")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=1000, help="test samples per row")
    p.add_argument("--quick", action="store_true", help=f"{QUICK_SAMPLES} samples per row")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="CPU threads")
    p.add_argument("--out", default=None, help="write the markdown here (default: stdout)")
    p.add_argument("--json", default=None, help="write every figure here as JSON ('-': stdout)")
    p.add_argument("--update", nargs="+", default=[], metavar="FILE",
                   help="rewrite the <!-- results.py --> blocks of these files (README.md ...)")  # fmt: skip
    p.add_argument("--root", default=None, help="the shipped models' folder (default: package)")
    p.add_argument("--ship", nargs=2, metavar=("RUN", "NAME"), help="ship RUN as NAME first")
    p.add_argument("--experiment", default=None, help="with --ship: the paper's experiment")
    p.add_argument("--command", default=None, help="with --ship: the command that trained RUN")
    p.add_argument("--budget-note", default=None, help="with --ship: how the budget was spent")
    p.add_argument("--check-samples", type=int, default=1000, help="with --ship: check samples")
    args = p.parse_args(argv)
    if args.quick:
        args.samples = QUICK_SAMPLES
    return args


def ship(args: argparse.Namespace, root: Path | None) -> None:
    """``--ship RUN NAME``: the run into the package (or ``--root``) in the checked precision."""
    from grouping.evaluation.stored import ship_checked
    from grouping.rundir.pretrained import PRETRAINED_ROOT

    run, name = args.ship
    record = {k: v for k, v in (("experiment", args.experiment), ("command", args.command),
                                ("budget_note", args.budget_note)) if v}  # fmt: skip
    target = ship_checked(run, name, samples=args.check_samples, record=record,
                          root=root or PRETRAINED_ROOT, device=args.device)  # fmt: skip
    check = json_or_empty(target / "shipped.json")["precision_check"]
    print(f"shipped {target} in {check['chosen']}: {json.dumps(check)}", file=sys.stderr)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    args = parse(argv)
    torch.set_num_threads(args.threads)
    root = Path(args.root) if args.root else None
    if args.ship:
        from grouping.errors import GroupingError

        try:
            ship(args, root)
        except GroupingError as exc:
            fail(str(exc))
    for path in args.update:
        blocks_in(Path(path))
    t0 = time.perf_counter()
    table = build(root, args.samples, args.device)
    table["wall_s"] = round(time.perf_counter() - t0, 1)
    text = markdown(table)
    for path in args.update:
        print(f"{path}: {', '.join(update(Path(path), table))} rewritten", file=sys.stderr)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    elif args.json != "-" and not args.update:
        print(text)
    if args.json:
        dump = json.dumps(table, indent=2)
        if args.json == "-":
            print(dump)
        else:
            Path(args.json).write_text(dump + "\n", encoding="utf-8")
    return table


if __name__ == "__main__":
    main()
