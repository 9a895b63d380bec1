"""Loaders read the files the tests write, in each standard format; missing files are named."""

import gzip
import struct

import numpy as np
import pytest

import decjax
from decjax.data import load_cifar, load_mnist, load_npz, load_text, synthetic_images


def _cifar_records(rng, count, label_bytes):
    labels = rng.integers(0, 10 if label_bytes == 1 else 100, (count, label_bytes), np.uint8)
    pixels = rng.integers(0, 256, (count, 3072), np.uint8)
    return labels, pixels, np.concatenate([labels, pixels], axis=1).tobytes()


def test_cifar10_binary_round_trips_labels_and_pixels(tmp_path):
    rng = np.random.default_rng(0)
    train = []
    for i in range(1, 6):
        labels, pixels, raw = _cifar_records(rng, 3, 1)
        (tmp_path / f"data_batch_{i}.bin").write_bytes(raw)
        train.append((labels, pixels))
    test_labels, _, raw = _cifar_records(rng, 2, 1)
    (tmp_path / "test_batch.bin").write_bytes(raw)
    ds = load_cifar(tmp_path)
    assert ds.x_train.shape == (15, 32, 32, 3) and ds.num_classes == 10
    labels = np.concatenate([lab for lab, _ in train])[:, 0]
    np.testing.assert_array_equal(ds.y_train, labels)
    first = train[0][1][0].reshape(3, 32, 32).transpose(1, 2, 0) / 255.0  # CHW -> HWC
    np.testing.assert_allclose(ds.x_train[0], first, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_test, test_labels[:, 0])


def test_cifar100_uses_the_fine_labels_and_reads_gzip(tmp_path):
    rng = np.random.default_rng(1)
    labels, _, raw = _cifar_records(rng, 4, 2)
    (tmp_path / "train.bin").write_bytes(raw)
    with gzip.open(tmp_path / "test.bin.gz", "wb") as f:
        f.write(_cifar_records(rng, 2, 2)[2])
    ds = load_cifar(tmp_path, classes=100)
    np.testing.assert_array_equal(ds.y_train, labels[:, 1])
    assert ds.num_classes == 100 and ds.x_test.shape == (2, 32, 32, 3)


def _idx(path, array, gz):
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(f"{path}.gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_mnist_idx_files_round_trip(tmp_path, gz):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (5, 28, 28))
    labels = rng.integers(0, 10, 5)
    _idx(tmp_path / "train-images-idx3-ubyte", images, gz)
    _idx(tmp_path / "train-labels-idx1-ubyte", labels, gz)
    _idx(tmp_path / "t10k-images-idx3-ubyte", images[:2], gz)
    _idx(tmp_path / "t10k-labels-idx1-ubyte", labels[:2], gz)
    ds = load_mnist(tmp_path)
    assert ds.x_train.shape == (5, 28, 28, 1)
    np.testing.assert_allclose(ds.x_train[..., 0], images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_train, labels)


def test_npz_round_trips_and_keeps_image_shapes(tmp_path):
    x = np.random.default_rng(3).random((6, 8, 8, 3))
    path = tmp_path / "images.npz"
    np.savez(path, x_train=x, y_train=np.arange(6) % 3, x_test=x[:2], y_test=[2, 0])
    ds = load_npz(path)
    assert ds.x_train.shape == (6, 8, 8, 3) and ds.num_classes == 3
    np.testing.assert_allclose(ds.x_train, x, rtol=1e-6)


def test_text_windows_predict_the_next_character(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("abcdefghij" * 30, encoding="utf-8")
    ds, vocabulary = load_text(path, context=9, test_fraction=0.2)
    assert vocabulary == "abcdefghij" and ds.num_classes == 10
    np.testing.assert_array_equal(ds.y_train[:, :-1], ds.x_train[:, 1:])
    text = "".join(vocabulary[i] for i in np.asarray(ds.x_train[0]))
    assert text == "abcdefghi" and vocabulary[int(ds.y_train[0, -1])] == "j"
    assert len(ds.x_train) == 24 and len(ds.x_test) == 6


def test_missing_files_are_named_in_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"CIFAR-10 binary .*missing data_batch_1\.bin"):
        load_cifar(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing train-images-idx3-ubyte"):
        load_mnist(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"no \.npz file at"):
        load_npz(tmp_path / "x.npz")
    with pytest.raises(ValueError, match="classes must be 10"):
        load_cifar(tmp_path, classes=20)


@pytest.mark.slow  # a training run; the loaders' shapes and values stay in the inner loop
def test_synthetic_images_are_learnable_by_a_linear_model():
    ds = synthetic_images(400, 100, shape=(8, 8, 1), noise=0.5)
    model = decjax.problems.logistic_regression(64, 10)
    import jax

    n = 4
    res = decjax.simulate(
        model.loss,
        decjax.replicate(model.init(jax.random.key(0)), n),
        decjax.dpsgd(0.5, decjax.complete(n)),
        decjax.data.distribute(ds, n, "iid", key=0),
        steps=100,
        batch_size=16,
        key=jax.random.key(1),
        eval_fn=model.eval_fn,
        eval_data=(ds.x_test, ds.y_test),
        progress=False,
    )
    assert res.final("test_accuracy") > 0.9


def test_mnist1d_is_generated_locally_and_reproducibly():
    pytest.importorskip("mnist1d")
    a = decjax.data.load_mnist1d(500, seed=3)
    b = decjax.data.load_mnist1d(500, seed=3)
    assert a.x_train.shape == (400, 40) and a.x_test.shape == (100, 40) and a.num_classes == 10
    np.testing.assert_array_equal(a.x_train, b.x_train)


def test_a_byte_order_mark_is_not_a_token(tmp_path):
    """A UTF-8 file saved with a BOM (\\ufeff) gives the same vocabulary as without."""
    plain, marked = tmp_path / "plain.txt", tmp_path / "marked.txt"
    plain.write_text("abcab" * 40, encoding="utf-8")
    marked.write_text("abcab" * 40, encoding="utf-8-sig")
    assert marked.read_bytes().startswith(b"\xef\xbb\xbf")
    (ds_plain, vocab_plain), (ds_marked, vocab_marked) = (
        load_text(p, context=4) for p in (plain, marked)
    )
    assert vocab_marked == vocab_plain == "abc"
    np.testing.assert_array_equal(ds_marked.x_train, ds_plain.x_train)
