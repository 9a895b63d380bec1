"""Datasets from local files in their standard formats (never ``pickle``), and synthetic ones.

decjax downloads nothing: put the files in a directory and point a loader at
it. A missing file is reported in one line naming what to put where.
"""

from __future__ import annotations

import gzip
import os
import zipfile
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from decjax._validation import check_in_range, check_int, check_nonnegative
from decjax.data.datasets import Dataset, check_features, check_labels, from_arrays

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
MNIST_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


def _directory(directory, what: str, expected: list[str]) -> Path:
    path = Path(os.fspath(directory)).expanduser()
    missing = [name for name in expected if not _find(path, name)]
    if missing:
        raise FileNotFoundError(
            f"{what} files not found in {path}: missing {', '.join(missing)} "
            f"(put the extracted files there)"
        )
    return path


def _find(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read(path: Path) -> bytes:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        return f.read()


def load_npz(path, *, num_classes: int | None = None) -> Dataset:
    """A dataset from a ``.npz`` holding ``x_train``, ``y_train``, ``x_test``, ``y_test``.

    Read with ``allow_pickle=False``. Inputs keep their shape (images stay images)
    and must be real and finite; labels must be integers in ``[0, num_classes)``.
    ``num_classes`` is the argument, else the file's ``num_classes`` entry if it
    has one, else the largest label plus one (refused when fewer than half of
    those classes occur: a stray label, named with its index).

    Examples:
      >>> import numpy as np, tempfile, os, decjax
      >>> path = os.path.join(tempfile.mkdtemp(), "toy.npz")
      >>> np.savez(path, x_train=np.zeros((4, 2)), y_train=[0, 1, 0, 1],
      ...          x_test=np.zeros((2, 2)), y_test=[1, 0])
      >>> decjax.data.load_npz(path).num_classes
      2
    """
    path = Path(os.fspath(path)).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no .npz file at {path}")
    try:
        contents = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is not a readable .npz file ({err})") from None
    if not isinstance(contents, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} holds one array, not an .npz archive of x_train, y_train, ...")
    with contents as f:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(f.files)
        if missing:
            raise ValueError(f"{path} lacks the arrays {sorted(missing)}")
        arrays = [f[k] for k in ("x_train", "y_train", "x_test", "y_test")]
        if num_classes is None and "num_classes" in f.files:
            num_classes = int(f["num_classes"])
    x_train, y_train, x_test, y_test = arrays
    for name, y in (("y_train", y_train), ("y_test", y_test)):
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{path}: {name} must hold integer class labels, got {y.dtype}")
    for name, x in (("x_train", x_train), ("x_test", x_test)):
        check_features(name, x, source=str(path))
    num_classes = check_labels({"y_train": y_train, "y_test": y_test}, num_classes, str(path))
    return from_arrays(x_train, y_train, x_test=x_test, y_test=y_test, num_classes=num_classes)


def load_cifar(directory, *, classes: int = 10) -> Dataset:
    """CIFAR-10 or CIFAR-100 from the extracted *binary version*
    (https://www.cs.toronto.edu/~kriz/cifar.html).

    CIFAR-10: ``data_batch_1.bin`` … ``data_batch_5.bin`` and ``test_batch.bin``
    (records of 1 label byte and 3,072 pixel bytes); CIFAR-100: ``train.bin``
    and ``test.bin`` (coarse and fine label bytes; the fine labels are used).
    Images come out as ``(N, 32, 32, 3)`` float32 in ``[0, 1]``.
    """
    _check_classes(classes)
    if classes == 10:
        train = [f"data_batch_{i}.bin" for i in range(1, 6)]
        test, label_bytes = ["test_batch.bin"], 1
    else:
        train, test, label_bytes = ["train.bin"], ["test.bin"], 2
    path = _directory(directory, f"CIFAR-{classes} binary ({CIFAR_URL})", train + test)

    def records(name):
        """One file's records, its label bytes checked (the file and record named)."""
        file = _find(path, name)
        data = np.frombuffer(_read(file), np.uint8)
        size = label_bytes + 3072
        if data.size == 0 or data.size % size:
            raise ValueError(
                f"{file} holds {data.size} bytes, not a whole number of {size}-byte records "
                "(an empty or truncated file): extract it again"
            )
        raw = data.reshape(-1, size)
        check_labels({"record label": raw[:, label_bytes - 1]}, classes, str(file))
        return raw

    def read(names):
        raw = np.concatenate([records(n) for n in names])
        images = raw[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return images / 255.0, raw[:, label_bytes - 1]

    (x_train, y_train), (x_test, y_test) = read(train), read(test)
    return from_arrays(x_train, y_train, x_test=x_test, y_test=y_test, num_classes=classes)


def _check_classes(classes) -> None:
    if classes not in (10, 100):
        raise ValueError(f"classes must be 10 (CIFAR-10) or 100 (CIFAR-100), got {classes!r}")


def _idx(path: Path) -> np.ndarray:
    """An IDX array (MNIST's format): a magic number, the dimensions, then unsigned bytes."""
    data = _read(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = np.frombuffer(data, ">u4", count=ndim, offset=4).astype(int)
    array = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {array.size} values for the dimensions {tuple(dims)}")
    return array.reshape(dims)


def load_mnist(directory) -> Dataset:
    """MNIST or Fashion-MNIST from their four IDX files (gzipped or not).

    ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each optionally
    ``.gz``). Images come out as ``(N, 28, 28, 1)`` float32 in ``[0, 1]``.
    """
    path = _directory(directory, "MNIST IDX", list(MNIST_FILES.values()))
    files = {k: _find(path, name) for k, name in MNIST_FILES.items()}
    arrays = {k: _idx(file) for k, file in files.items() if file is not None}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_x"], arrays[f"{part}_y"]
        if labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"{files[part + '_y']}: {labels.shape} labels for the {images.shape} images of "
                f"{files[part + '_x']}"
            )
        check_labels({"label": labels}, 10, str(files[f"{part}_y"]))
    x_train, x_test = (arrays[k][..., None] / 255.0 for k in ("train_x", "test_x"))
    y_train, y_test = arrays["train_y"], arrays["test_y"]
    return from_arrays(x_train, y_train, x_test=x_test, y_test=y_test, num_classes=10)


def load_text(path, *, context: int = 64, test_fraction: float = 0.1) -> tuple[Dataset, str]:
    """A character-level language-modelling dataset from any UTF-8 text file.

    The text is cut into non-overlapping windows of ``context + 1`` characters:
    inputs are the first ``context`` character ids, labels the ``context`` next
    ones (``y[t] = x[t + 1]``). The last ``test_fraction`` of the windows is the
    test set. Returns the dataset (``num_classes`` the vocabulary size) and the
    vocabulary (``vocabulary[i]`` is the character of id ``i``).

    Examples:
      >>> import tempfile, os, decjax
      >>> path = os.path.join(tempfile.mkdtemp(), "text.txt")
      >>> with open(path, "w") as f:
      ...     _ = f.write("hello world " * 50)
      >>> ds, vocabulary = decjax.data.load_text(path, context=8)
      >>> ds.x_train.shape[1:], ds.y_train.shape[1:], vocabulary
      ((8,), (8,), ' dehlorw')
    """
    context = check_int("context", context, minimum=1)
    check_in_range("test_fraction", test_fraction, 0.0, 1.0, closed="neither")
    path = Path(os.fspath(path)).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no text file at {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a leading byte-order mark is not text
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path} is not UTF-8 text (byte {err.object[err.start]:#04x} at position "
            f"{err.start}): load_text reads text files"
        ) from None
    vocabulary = "".join(sorted(set(text)))
    if len(vocabulary) < 2:
        raise ValueError(
            f"{path} uses {len(vocabulary)} distinct character(s): a language model needs at "
            "least 2 to predict anything"
        )
    windows = len(text) // (context + 1)
    if windows < 2:
        raise ValueError(f"{path} has {len(text)} characters: too few for context={context}")
    lookup = {c: i for i, c in enumerate(vocabulary)}
    ids = np.fromiter((lookup[c] for c in text[: windows * (context + 1)]), np.int32)
    ids = ids.reshape(windows, context + 1)
    cut = max(1, min(windows - 1, round(windows * (1 - test_fraction))))
    x, y = ids[:, :-1], ids[:, 1:]
    dataset = Dataset(
        jnp.asarray(x[:cut]),
        jnp.asarray(y[:cut]),
        jnp.asarray(x[cut:]),
        jnp.asarray(y[cut:]),
        len(vocabulary),
    )
    return dataset, vocabulary


def synthetic_images(
    num_train: int = 1000,
    num_test: int = 200,
    *,
    shape: tuple[int, ...] = (32, 32, 3),
    num_classes: int = 10,
    noise: float = 1.0,
    seed: int = 0,
) -> Dataset:
    """Learnable random images: a fixed template per class plus Gaussian noise.

    CIFAR-shaped by default (``shape=(28, 28, 1)`` for MNIST-shaped), for
    benchmarks and tests that need image tensors without files.

    Examples:
      >>> import decjax
      >>> ds = decjax.data.synthetic_images(100, 20, shape=(28, 28, 1))
      >>> ds.x_train.shape, ds.num_classes
      ((100, 28, 28, 1), 10)
    """
    num_train = check_int("num_train", num_train, minimum=1)
    num_test = check_int("num_test", num_test, minimum=1)
    num_classes = check_int("num_classes", num_classes, minimum=2)
    if not isinstance(shape, tuple | list) or not shape:
        raise TypeError(f"shape must be a tuple of positive ints, e.g. (32, 32, 3), got {shape!r}")
    shape = tuple(check_int("shape", d, minimum=1) for d in shape)
    check_nonnegative("noise", noise)
    seed = check_int("seed", seed, minimum=0)
    rng = np.random.default_rng(seed)
    templates = rng.normal(size=(num_classes, *shape))

    def draw(count):
        y = rng.integers(0, num_classes, count)
        return templates[y] + noise * rng.normal(size=(count, *shape)), y

    (x_train, y_train), (x_test, y_test) = draw(num_train), draw(num_test)
    return from_arrays(x_train, y_train, x_test=x_test, y_test=y_test, num_classes=num_classes)


def load_mnist1d(num_samples: int = 5000, *, seed: int = 42) -> Dataset:
    """MNIST-1D (Greydanus, 2020): 1-D signals of 40 points, 10 classes, generated locally.

    Made by the ``mnist1d`` package's ``make_dataset`` (no download; extra
    ``decjax[mnist1d]``) with its default arguments but ``num_samples`` and
    ``seed``; its own 80/20 train/test split. The dataset's card reports
    logistic regression at about 32 % test accuracy, an MLP 68 % and a CNN
    94 %, so model and topology effects stay visible. Inputs are ``(N, 40)``.
    """
    num_samples = check_int("num_samples", num_samples, minimum=10)
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as err:  # pragma: no cover - exercised only without mnist1d
        raise ImportError("load_mnist1d needs mnist1d: pip install 'decjax[mnist1d]'") from err
    args = get_dataset_args()
    args.num_samples, args.seed = num_samples, seed
    saved = np.random.get_state()  # noqa: NPY002 (make_dataset seeds numpy's global generator)
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(saved)  # noqa: NPY002
    return from_arrays(
        data["x"], data["y"], x_test=data["x_test"], y_test=data["y_test"], num_classes=10
    )
