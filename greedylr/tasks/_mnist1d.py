"""``mnist1d-cnn``: a small 1-D CNN on MNIST-1D (Greydanus 2020), 40-sample signals of the 10
digits' templates, shifted, scaled, sheared and noised; the package ``mnist1d`` generates them.

The data set (10,000 signals, the package's generation seed 42) is generated once and cached
in the user's cache folder (``$XDG_CACHE_HOME/greedylr`` or ``~/.cache/greedylr``): generating
it takes about 3 s and imports matplotlib; reading the cache takes milliseconds. The package's
own split gives 8,000 training and 2,000 test signals; a data seed takes 2,000 of the 8,000 for
validation; a trial trains on the other 6,000 (or their first ``train_size``).
"""

from __future__ import annotations

import os
import random
import tempfile
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from greedylr._imports import require
from greedylr.tasks import builtin_task
from greedylr.tasks._classifier import Split
from greedylr.tasks._classifier import cache_folder
from greedylr.tasks._classifier import size_param
from greedylr.tasks._classifier import train_classifier
from greedylr.tasks._training import RunSettings
from greedylr.tasks._training import training_device


_TASK = builtin_task("mnist1d-cnn")
SAMPLES = 10_000  # generated; the package keeps 80 % for training
GENERATION_SEED = 42  # the package's default
VALIDATION_SIZE = 2_000
TRAIN_POOL = 6_000
_DATA_SEED = 0  # the split is the same for every trial; `seed` drives init and shuffling
_ARRAYS = ("x", "y", "x_test", "y_test")


def cache_file() -> Path:
    """Where the generated data set is cached."""
    return cache_folder() / f"mnist1d-{SAMPLES}-seed{GENERATION_SEED}.npz"


def _generate() -> dict[str, np.ndarray]:
    """The data set from ``mnist1d.make_dataset``, leaving the global RNGs it seeds as they were.

    Raises:
        greedylr._imports.MissingDependencyError: ``mnist1d`` is not installed.
    """
    data_module = require("mnist1d", extra="suite", feature="The mnist1d-cnn task").data
    arguments = data_module.get_dataset_args()
    arguments.num_samples, arguments.seed = SAMPLES, GENERATION_SEED
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        data = data_module.make_dataset(arguments)
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    return {
        "x": data["x"].astype(np.float32),
        "y": data["y"].astype(np.int64),
        "x_test": data["x_test"].astype(np.float32),
        "y_test": data["y_test"].astype(np.int64),
    }


def load_mnist1d() -> dict[str, np.ndarray]:
    """The data set: ``x`` (8,000 x 40), ``y``, ``x_test`` (2,000 x 40), ``y_test``.

    Read from the cache file when there is one; else generated and written there atomically
    (to a temporary file in the same folder, then renamed), so that trials starting together
    never read half a file: each either reads a whole file or generates its own.

    Raises:
        greedylr._imports.MissingDependencyError: There is no cache and ``mnist1d`` is not
            installed.
    """
    path = cache_file()
    try:
        with np.load(path) as cached:
            return {name: cached[name] for name in _ARRAYS}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):  # none, or broken
        pass
    data = _generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz.tmp", delete=False) as file:
        try:
            np.savez(file, x=data["x"], y=data["y"], x_test=data["x_test"], y_test=data["y_test"])
        except BaseException:
            os.unlink(file.name)
            raise
    os.replace(file.name, path)
    return data


@lru_cache(maxsize=1)
def _pool() -> dict[str, Split]:
    """The training pool (in its fixed order), validation and test splits. Loaded once per
    process.
    """
    data = load_mnist1d()
    x, y = torch.from_numpy(data["x"]), torch.from_numpy(data["y"])
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(_DATA_SEED))
    x, y = x[order].unsqueeze(1), y[order]
    return {
        "train": (x[VALIDATION_SIZE:], y[VALIDATION_SIZE:]),
        "val": (x[:VALIDATION_SIZE], y[:VALIDATION_SIZE]),
        "test": (torch.from_numpy(data["x_test"]).unsqueeze(1), torch.from_numpy(data["y_test"])),
    }


def train(config: dict[str, Any], reporter: Any) -> None:
    """Train a 1-D CNN with cross-entropy, batch 64, on 6,000 signals.

    The CNN: three convolutions (kernel 5, stride 2, padding 2; ``channels`` maps each), each
    followed by a ReLU, then a linear layer from the ``channels`` maps of length 5 to the 10
    classes (about 11k parameters with 32 channels). The package's README reports 94 % test
    accuracy for a CNN of this kind.

    Config keys besides the schedule's and the optimizer's: ``channels`` (32), ``batch_size``
    (64), ``train_size`` (the training signals, all 6,000; the validation and test sets are
    2,000 each). Default optimizer: SGD with momentum 0.9. Reports the validation loss and
    accuracy; the last epoch adds ``test_loss`` and ``test_accuracy``. Trains on the GPU when
    there is one; checkpoints every epoch.

    An epoch takes about 0.1 s on one torch thread of a 2-core CPU (measured with the
    defaults, validation included; GPU time not measured: no GPU was at hand).

    Raises:
        greedylr._imports.MissingDependencyError: The data set is not cached yet and
            ``mnist1d`` is not installed (``pip install greedylr[suite]``).
        ValueError: A size is out of range.
    """
    settings = RunSettings.from_config(
        config, task=_TASK, default_optimizer_params={"momentum": 0.9}
    )
    channels = size_param(settings, "channels", 32, maximum=1024)
    batch_size = size_param(settings, "batch_size", 64, maximum=TRAIN_POOL)
    train_size = size_param(settings, "train_size", TRAIN_POOL, maximum=TRAIN_POOL)
    device = training_device()
    pool = _pool()
    subset = {**pool, "train": (pool["train"][0][:train_size], pool["train"][1][:train_size])}
    splits = {split: (x.to(device), y.to(device)) for split, (x, y) in subset.items()}
    torch.manual_seed(settings.seed)
    layers: list[torch.nn.Module] = []
    for inputs in (1, channels, channels):
        layers += [torch.nn.Conv1d(inputs, channels, 5, stride=2, padding=2), torch.nn.ReLU()]
    layers += [torch.nn.Flatten(), torch.nn.Linear(channels * 5, 10)]
    model = torch.nn.Sequential(*layers).to(device)
    train_classifier(settings, reporter, model=model, splits=splits, batch_size=batch_size)
