"""Data on device: datasets, partitions over workers, per-worker minibatches."""

from decjax.data._partition import SCHEMES, Partition, label_histogram, partition
from decjax.data.augment import augmented, random_crop_flip
from decjax.data.datasets import Dataset, from_arrays, load_digits
from decjax.data.files import (
    load_cifar,
    load_mnist,
    load_mnist1d,
    load_npz,
    load_text,
    synthetic_images,
)
from decjax.data.gradients import heterogeneity
from decjax.data.labels import flip_labels
from decjax.data.sampling import WorkerData, distribute, gather_batch, sample_batch, worker_keys

__all__ = [
    "SCHEMES",
    "Dataset",
    "Partition",
    "WorkerData",
    "augmented",
    "distribute",
    "flip_labels",
    "from_arrays",
    "gather_batch",
    "heterogeneity",
    "label_histogram",
    "load_cifar",
    "load_digits",
    "load_mnist",
    "load_mnist1d",
    "load_npz",
    "load_text",
    "partition",
    "random_crop_flip",
    "sample_batch",
    "synthetic_images",
    "worker_keys",
]
