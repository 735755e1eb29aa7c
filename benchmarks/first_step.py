"""How well could the first EM step group? An oracle on gamma^(0), beside a trained model's step 1.

    python benchmarks/first_step.py --preset flying-shapes-3-cpu --run runs/A --json first.json

At step 1 each of the K copies has seen one thing that tells it apart from the others: its share
gamma^(0) of every pixel of the first noisy frame. The oracle gives each object of frame 0 to the
component with the largest mean gamma^(0) over that object's pixels, labels frame 1 (the frame
step 1 is scored against) with those owners, and scores it as evaluation does (AMI over the
labelled pixels). A copy could learn to do this: by predicting each object it sees with a
confidence that grows with its own mean share there, the E-step's argmax over K picks the owner.
So the oracle bounds what gamma^(0) allows, not what the network does. ``--run`` prints a
trained model's step 1 (``grouping.evaluate``) beside it, and how far the model reads gamma^(0):
for each object of frame 1, whether the copy that predicts it brightest (mean psi_1 over its
pixels) is the oracle's owner, how far apart the copies' means lie, and the largest component's
share of the object's pixels in gamma_1. Measured in docs/reproduction.md, session 14: an oracle
of 0.61 for 3 shapes and K = 3, against 0.25 for the trained model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

import grouping
from grouping.engine.assembly import build_dataset, build_model
from grouping.evaluation.metrics import adjusted_mutual_info
from grouping.rundir.loading import load_trained


def object_means(labels: np.ndarray, values: np.ndarray, objects: int) -> tuple[np.ndarray, ...]:
    """Per image, label 0..objects and component: the mean of ``values`` over the label's pixels.

    labels (N, P), values (N, K, P) -> means (N, objects + 1, K) and pixel counts (N, objects + 1).
    """
    onehot = (labels[:, None, :] == np.arange(objects + 1)[None, :, None]).astype(np.float64)
    counts = onehot.sum(axis=2)
    means = np.einsum("nop,nkp->nok", onehot, values) / np.maximum(counts, 1)[:, :, None]
    return means, counts


def owners(first: np.ndarray, gamma: np.ndarray, objects: int) -> np.ndarray:
    """Each object's owner: argmax over K of its mean gamma^(0) in frame 0.

    first (N, P) labels of frame 0, gamma (N, K, P) -> (N, objects + 1) component indices + 1,
    with 0 for label 0 (background and overlaps are not scored) and for absent objects.
    """
    means, counts = object_means(first, gamma, objects)
    out = means.argmax(axis=2) + 1
    out[:, 0] = 0
    out[counts == 0] = 0
    return out


def oracle_ami(first: np.ndarray, second: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """Per-image AMI of frame 1 (``second``, (N, P)) labelled by the owners of frame 0's objects."""
    objects = int(max(first.max(), second.max()))
    table = owners(first, gamma, objects)
    pred = np.take_along_axis(table, second, axis=1)
    return adjusted_mutual_info(second, pred)


def first_step_oracle(config: grouping.RunConfig, samples: int, seed: int) -> dict[str, float]:
    """The oracle over the first ``samples`` test sequences, gamma^(0) drawn as the model draws
    it (``model.gamma_init``), with a generator seeded by ``seed``."""
    dataset = build_dataset(config, frames=2)
    split = dataset.split("test")
    n = min(samples, len(split))
    features, groups = split.get(np.arange(n))
    model = build_model(config, tuple(dataset.image_shape))
    generator = torch.Generator().manual_seed(seed)
    _, gamma, _ = model.start(features, generator)
    flat = groups.reshape(n, groups.shape[1], -1).numpy()
    ami = oracle_ami(flat[:, 0], flat[:, 1], gamma.reshape(n, gamma.shape[1], -1).numpy())
    return {"oracle_step1_ami": float(ami.mean()), "std": float(ami.std()), "samples": n}


def reading(
    first: np.ndarray, second: np.ndarray, gamma0: np.ndarray, psi1: np.ndarray, gamma1: np.ndarray
) -> dict[str, float]:
    """How a model's step 1 relates to gamma^(0), over the objects of frame 1 (labels (N, P),
    gamma0, gamma1 (N, K, P), psi1 (N, K, P), one channel): ``owner_agreement`` (the brightest
    copy is the oracle's owner; chance is 1 / K), ``spread`` (largest minus smallest mean psi_1)
    and ``largest_share`` (of the object's pixels, the largest that one component wins)."""
    objects = int(max(first.max(), second.max()))
    table = owners(first, gamma0, objects)[:, 1:]
    means, counts = (part[:, 1:] for part in object_means(second, psi1, objects))
    wins = np.eye(gamma1.shape[1])[gamma1.argmax(axis=1)].transpose(0, 2, 1)  # (N, K, P)
    won = object_means(second, wins, objects)[0][:, 1:].max(axis=2)
    seen = (counts > 0) & (table > 0)  # objects in both frames
    agree = means.argmax(axis=2) + 1 == table
    spread = means.max(axis=2) - means.min(axis=2)
    return {
        "owner_agreement": float(agree[seen].mean()),
        "chance": 1.0 / gamma1.shape[1],
        "spread": float(spread[seen].mean()),
        "largest_share": float(won[seen].mean()),
    }


def model_step1(run_dir: Path, samples: int, seed: int) -> dict[str, float]:
    """A trained run's first EM step on its first ``samples`` test sequences, through
    :func:`reading`; noise and gamma^(0) from a generator seeded by ``seed``."""
    run = load_trained(run_dir, "auto", "cpu")
    split = run.dataset.split("test")
    n = min(samples, len(split))
    x, groups = split.get(np.arange(n))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        psi, gamma0, state = run.model.start(x, generator)
        noisy = run.noise(x[:, 0, None], generator)
        psi1, _, gamma1 = run.model.em_step(noisy, x[:, 1, None], psi, gamma0, state)
    flat = groups.reshape(n, groups.shape[1], -1).numpy()
    k = gamma0.shape[1]
    parts = (t[..., :1].reshape(n, k, -1).double().numpy() for t in (gamma0, psi1, gamma1))
    return reading(flat[:, 0], flat[:, 1], *parts)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="flying-shapes-3-cpu", help="preset name or TOML file")
    p.add_argument("--set", dest="assignments", action="append", default=[], help="key=value")
    p.add_argument("--test-size", type=int, default=1000, help="test sequences to score")
    p.add_argument("--seed", type=int, default=0, help="seed of the gamma^(0) draw")
    p.add_argument("--run", type=Path, help="a trained run folder: print its step 1 beside")
    p.add_argument("--json", type=Path, help="also write the figures here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    sets = [*args.assignments, f"dataset.test_size={args.test_size}"]
    config = grouping.build_config(args.preset, assignments=sets)
    result: dict[str, Any] = first_step_oracle(config, args.test_size, args.seed)
    result["preset"] = args.preset
    print(f"oracle on gamma^(0), step 1: AMI {result['oracle_step1_ami']:.3f}", end="")
    print(f" +- {result['std']:.3f} over {result['samples']} test sequences")
    if args.run is not None:
        scores = grouping.evaluate(args.run, assignments=[f"eval.samples={args.test_size}"])
        result["model_step1_ami"] = float(scores["ami_per_step"][0])
        result["model_reading"] = read = model_step1(args.run, args.test_size, args.seed)
        print(f"{args.run}, step 1: AMI {result['model_step1_ami']:.3f}; the brightest copy is the")
        print(
            f"  owner for {read['owner_agreement']:.3f} of the objects (chance {read['chance']:.3f}),"
        )
        print(f"  the copies' mean psi_1 over an object spread by {read['spread']:.3f}, and one")
        print(f"  component wins {read['largest_share']:.3f} of an object's pixels in gamma_1")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
