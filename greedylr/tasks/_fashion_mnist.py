"""``fashion-mnist-mlp`` and ``fashion-mnist-cnn``: Zalando's Fashion-MNIST (28x28 grey images
of 10 kinds of clothing), read from the IDX files of the Debian package ``dataset-fashion-mnist``.

The splits are fixed by a data seed: ``val`` is 10,000 images of the 60,000 of the training
file, ``test`` the 10,000 of the test file, and a trial trains on the first ``train_size`` of the
other 50,000 (a fixed subset, the same for every trial). Pixels are scaled to ``[0, 1]``, then
standardized with the mean and standard deviation of those 50,000.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from greedylr.tasks import builtin_task
from greedylr.tasks._classifier import Split
from greedylr.tasks._classifier import size_param
from greedylr.tasks._classifier import train_classifier
from greedylr.tasks._training import RunSettings
from greedylr.tasks._training import training_device


FOLDER_ENV = "GREEDYLR_FASHION_MNIST"
"""The environment variable that names another folder of the IDX files."""
DEBIAN_FOLDER = Path("/usr/share/datasets/fashion-mnist")
"""Where ``apt-get install dataset-fashion-mnist`` puts them."""

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_DATA_SEED = 0  # the splits are the same for every trial; `seed` drives init and shuffling
VALIDATION_SIZE = 10_000
TRAIN_POOL = 50_000  # the training file's images that are not in `val`
_MLP_TASK = builtin_task("fashion-mnist-mlp")
_CNN_TASK = builtin_task("fashion-mnist-cnn")


def data_folder() -> Path:
    """The folder of the IDX files: ``$GREEDYLR_FASHION_MNIST``, else the Debian package's."""
    return Path(os.environ.get(FOLDER_ENV) or DEBIAN_FOLDER)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (gzipped when its name ends in ``.gz``) as an array.

    Raises:
        ValueError: The file is not an IDX file of unsigned bytes.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as file:
        data = file.read()
    dimensions = data[3] if len(data) >= 4 else 0
    header = 4 + 4 * dimensions
    if data[:3] != b"\x00\x00\x08" or dimensions == 0 or len(data) < header:
        raise ValueError(f"{str(path)!r} is not an IDX file of unsigned bytes.")
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dimensions)]
    if len(data) - header != int(np.prod(shape)):
        raise ValueError(f"{str(path)!r} holds {len(data) - header} values, not {shape}.")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _find(folder: Path, name: str) -> Path:
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    raise ValueError(
        f"The Fashion-MNIST tasks read {name}.gz from {str(folder)!r}, but it is not there; "
        "install the Debian package dataset-fashion-mnist (`apt-get install "
        f"dataset-fashion-mnist`) or set {FOLDER_ENV} to a folder that holds the IDX files."
    )


def load_fashion_mnist(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``"train"`` (60,000) and ``"test"`` (10,000): uint8 images ``(n, 28, 28)`` and labels.

    Raises:
        ValueError: A file is missing (the message names the Debian package) or malformed.
    """
    data = {}
    for split, (images_name, labels_name) in _FILES.items():
        images, labels = read_idx(_find(folder, images_name)), read_idx(_find(folder, labels_name))
        if images.ndim != 3 or labels.shape != images.shape[:1]:
            raise ValueError(
                f"The Fashion-MNIST {split} files in {str(folder)!r} do not match: images "
                f"{images.shape}, labels {labels.shape}."
            )
        data[split] = (images, labels)
    if len(data["train"][1]) != VALIDATION_SIZE + TRAIN_POOL:
        raise ValueError(
            f"The Fashion-MNIST training file in {str(folder)!r} must hold "
            f"{VALIDATION_SIZE + TRAIN_POOL} images, but holds {len(data['train'][1])}."
        )
    return data


@lru_cache(maxsize=1)
def _pool(folder: Path) -> tuple[dict[str, Split], float, float]:
    """The uint8 pool (in its fixed order), validation and test splits; the pool's mean and
    standard deviation of the pixels scaled to ``[0, 1]``. Read once per process.
    """
    data = load_fashion_mnist(folder)
    images, labels = data["train"]
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(_DATA_SEED))
    x = torch.from_numpy(images.copy())[order].unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))[order]
    test_x = torch.from_numpy(data["test"][0].copy()).unsqueeze(1)
    test_y = torch.from_numpy(data["test"][1].astype(np.int64))
    pool = x[VALIDATION_SIZE:].float().div_(255)
    splits = {
        "train": (x[VALIDATION_SIZE:], y[VALIDATION_SIZE:]),
        "val": (x[:VALIDATION_SIZE], y[:VALIDATION_SIZE]),
        "test": (test_x, test_y),
    }
    return splits, float(pool.mean()), float(pool.std())


def fashion_mnist_splits(train_size: int, device: torch.device) -> dict[str, Split]:
    """The splits on ``device``, with the first ``train_size`` of the pool as ``train``.

    Images are standardized ``(n, 1, 28, 28)`` float32, labels int64.

    Raises:
        ValueError: The IDX files are missing (the message names the Debian package).
    """
    pool, mean, std = _pool(data_folder())
    subset = {**pool, "train": (pool["train"][0][:train_size], pool["train"][1][:train_size])}
    return {
        split: (((x.float() / 255 - mean) / std).to(device), y.to(device))
        for split, (x, y) in subset.items()
    }


def train_mlp(config: dict[str, Any], reporter: Any) -> None:
    """Train a 784-256-10 ReLU MLP with cross-entropy, batch 128, on 20,000 training images.

    Config keys besides the schedule's and the optimizer's: ``hidden`` (256), ``batch_size``
    (128), ``train_size`` (the training images, 20,000 of the 50,000; the validation and test
    sets are 10,000 each). Default optimizer: SGD with momentum 0.9. Reports the validation
    loss and accuracy; the last epoch adds ``test_loss`` and ``test_accuracy``. Trains on the
    GPU when there is one; checkpoints every epoch.

    An epoch takes about 0.25 s on one torch thread of a 2-core CPU (measured with the
    defaults, validation included; GPU time not measured: no GPU was at hand).

    Raises:
        ValueError: The IDX files are missing (the message says how to install them), or a
            size is out of range.
    """
    settings = RunSettings.from_config(
        config, task=_MLP_TASK, default_optimizer_params={"momentum": 0.9}
    )
    hidden = size_param(settings, "hidden", 256, maximum=65536)
    _train(
        settings,
        reporter,
        default_train_size=20_000,
        build_model=lambda: torch.nn.Sequential(
            torch.nn.Flatten(),
            torch.nn.Linear(28 * 28, hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden, 10),
        ),
    )


def train_cnn(config: dict[str, Any], reporter: Any) -> None:
    """Train a small CNN with cross-entropy, batch 128, on 10,000 training images.

    The CNN: 3x3 convolution to ``channels`` maps, ReLU, 2x2 max-pooling; 3x3 convolution to
    ``2 * channels``, ReLU, 2x2 max-pooling; a linear layer from the ``2 * channels`` 7x7 maps
    to the 10 classes (about 21k parameters with 16 channels).

    Config keys besides the schedule's and the optimizer's: ``channels`` (16), ``batch_size``
    (128), ``train_size`` (the training images, 10,000 of the 50,000; the validation and test
    sets are 10,000 each). Default optimizer: SGD with momentum 0.9. Reports the validation
    loss and accuracy; the last epoch adds ``test_loss`` and ``test_accuracy``. Trains on the
    GPU when there is one; checkpoints every epoch.

    An epoch takes about 2 s on one torch thread of a 2-core CPU, 0.7 s of it measuring the
    validation set (measured with the defaults; GPU time not measured: no GPU was at hand).

    Raises:
        ValueError: The IDX files are missing (the message says how to install them), or a
            size is out of range.
    """
    settings = RunSettings.from_config(
        config, task=_CNN_TASK, default_optimizer_params={"momentum": 0.9}
    )
    channels = size_param(settings, "channels", 16, maximum=1024)
    _train(
        settings,
        reporter,
        default_train_size=10_000,
        build_model=lambda: torch.nn.Sequential(
            torch.nn.Conv2d(1, channels, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(channels, 2 * channels, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Flatten(),
            torch.nn.Linear(2 * channels * 7 * 7, 10),
        ),
    )


def _train(
    settings: RunSettings,
    reporter: Any,
    *,
    default_train_size: int,
    build_model: Callable[[], torch.nn.Module],
) -> None:
    """What both tasks do once their model's size is read: the batch size and training subset,
    the splits on the trial's device, the model built after seeding torch, and training."""
    batch_size = size_param(settings, "batch_size", 128, maximum=TRAIN_POOL)
    train_size = size_param(settings, "train_size", default_train_size, maximum=TRAIN_POOL)
    device = training_device()
    splits = fashion_mnist_splits(train_size, device)
    torch.manual_seed(settings.seed)
    model = build_model().to(device)
    train_classifier(settings, reporter, model=model, splits=splits, batch_size=batch_size)
