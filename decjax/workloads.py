"""Models and datasets by name, with the checks that pair them (for the command line).

``dataset(name, ...)`` loads one of :data:`DATASETS`; ``model(name, data)``
builds one of :data:`MODELS` sized for it. A pair that cannot work (a
convnet on flat vectors, a language model on images) is refused in one line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import decjax
from decjax._validation import check_choice
from decjax.data import Dataset

DATASETS = (
    "digits",
    "mnist1d",
    "cifar10",
    "cifar100",
    "mnist",
    "fashion_mnist",
    "npz",
    "text",
    "synthetic",
)
FROM_DIRECTORY = ("cifar10", "cifar100", "mnist", "fashion_mnist")
FROM_FILE = ("npz", "text")
MODELS = ("mlp", "logistic", "logreg", "lenet5", "cnn1d", "resnet20", "transformer")
IMAGES = ("mnist", "fashion_mnist", "cifar10", "cifar100", "synthetic", "npz")

# Algorithms whose local optimizer takes a momentum, and how to build them with one:
# ``(lr, topology, momentum, every)`` (``every``, H, used by the periodic ones only).
MOMENTUM: dict[str, Callable[..., Any]] = {
    "dpsgd": lambda lr, t, m, h: decjax.dpsgd(lr, t, momentum=m),
    "dpsgd_parallel": lambda lr, t, m, h: decjax.dpsgd(lr, t, order="parallel", momentum=m),
    "dmsgd": lambda lr, t, m, h: decjax.dpsgd(lr, t, momentum=m),
    "qg_dsgdm": lambda lr, t, m, h: decjax.qg_dsgdm(lr, t, momentum=m),
    "local_sgd": lambda lr, t, m, h: decjax.local_sgd(lr, t.n, every=h, momentum=m),
    "gossip_pga": lambda lr, t, m, h: decjax.gossip_pga(lr, t, every=h, momentum=m),
    "sgp": lambda lr, t, m, h: decjax.sgp(lr, t, momentum=m, nesterov=True),
    "osgp": lambda lr, t, m, h: decjax.osgp(lr, t, overlap=1, momentum=m, nesterov=True),
}


def dataset(
    name: str,
    *,
    seed: int = 0,
    data_dir: Path | None = None,
    data_file: Path | None = None,
    context: int = 64,
) -> Dataset:
    """The dataset ``name``: bundled or generated ones need nothing; ``cifar10``,
    ``cifar100``, ``mnist`` and ``fashion_mnist`` read ``data_dir``; ``npz`` and
    ``text`` read ``data_file``."""
    check_choice("dataset", name, DATASETS)
    needs_dir = name in FROM_DIRECTORY
    if needs_dir and data_dir is None:
        raise ValueError(f"--dataset {name} reads local files: give --data-dir DIR")
    if name in FROM_FILE and data_file is None:
        raise ValueError(f"--dataset {name} reads a local file: give --data-file FILE")
    if data_dir is not None and not needs_dir:
        raise ValueError(
            f"--data-dir applies to --dataset {', '.join(FROM_DIRECTORY)}; --dataset {name} "
            "would ignore it"
        )
    if data_file is not None and name not in FROM_FILE:
        raise ValueError(
            f"--data-file applies to --dataset {', '.join(FROM_FILE)}; --dataset {name} would "
            "ignore it"
        )
    if name == "digits":
        return decjax.data.load_digits(seed=seed)
    if name == "mnist1d":
        return decjax.data.load_mnist1d(seed=seed)
    if name in ("cifar10", "cifar100"):
        return decjax.data.load_cifar(data_dir, classes=int(name[5:]))
    if name in ("mnist", "fashion_mnist"):
        return decjax.data.load_mnist(data_dir)
    if name == "npz":
        return decjax.data.load_npz(data_file)
    if name == "text":
        return decjax.data.load_text(data_file, context=context)[0]
    return decjax.data.synthetic_images(2000, 500, seed=seed)


def model(name: str, data: Dataset, *, dataset_name: str = "data") -> Any:
    """The model ``name`` sized for ``data`` (its input shape and number of classes)."""
    check_choice("model", name, MODELS)
    shape, classes = tuple(data.x_train.shape[1:]), data.num_classes
    text = data.y_train.ndim == 2
    if text != (name == "transformer"):
        raise ValueError(
            f"--model {name} does not fit --dataset {dataset_name}: the transformer is for "
            "--dataset text (character sequences), the other models for classification"
        )
    if name == "transformer":
        return decjax.problems.transformer_lm(classes, context=shape[0])
    if name in ("mlp", "logistic", "logreg"):
        features = int(data.num_features)
        if name == "mlp":
            return decjax.problems.mlp([features, 64, classes])
        return decjax.problems.logistic_regression(features, classes)
    if name == "cnn1d":
        if len(shape) != 1:
            raise ValueError(f"--model cnn1d needs 1-D signals (mnist1d), got inputs {shape}")
        return decjax.problems.cnn1d(classes, length=shape[0])
    if len(shape) != 3 or shape[0] != shape[1]:
        raise ValueError(
            f"--model {name} needs square images (B, H, W, C) ({', '.join(IMAGES)}); "
            f"--dataset {dataset_name} has inputs of shape {shape}"
        )
    if name == "lenet5":
        if shape[0] not in (28, 32):
            raise ValueError(f"--model lenet5 needs 28x28 or 32x32 images, got {shape}")
        return decjax.problems.lenet5(classes, channels=shape[2], size=shape[0])
    if shape != (32, 32, 3):
        raise ValueError(f"--model resnet20 needs 32x32x3 images (CIFAR), got {shape}")
    return decjax.problems.resnet20(classes)


def algorithm(name: str, momentum: float = 0.0, every: int | None = None):
    """``(lr, topology) -> tx`` for ``name``, with a local momentum where it has one and
    ``every`` local steps between averages for the periodic algorithms (default 8)."""
    periodic = decjax.algorithms.catalog.PERIODIC
    if every is not None and name not in periodic:
        raise ValueError(f"--every applies to {', '.join(periodic)}; not to {name}")
    if momentum and name not in MOMENTUM:
        raise ValueError(f"--momentum applies to {', '.join(MOMENTUM)}; not to {name}")
    if momentum:
        build, h = MOMENTUM[name], decjax.algorithms.catalog.EVERY if every is None else every
        return lambda lr, topology: build(lr, topology, momentum, h)
    if every is not None:
        return lambda lr, topology: periodic[name](lr, topology, every)
    return decjax.algorithms.by_name(name)


def is_stateful(built: Any) -> bool:
    return isinstance(built, decjax.problems.StatefulClassifier)


__all__ = ["DATASETS", "MODELS", "algorithm", "dataset", "is_stateful", "model"]
