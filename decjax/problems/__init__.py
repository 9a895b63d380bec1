"""Small problems with known answers: quadratics, logistic regression, an MLP, NNX models."""

from decjax.problems.classifiers import (
    Classifier,
    StatefulClassifier,
    logistic_regression,
    mlp,
)
from decjax.problems.nnx import from_nnx
from decjax.problems.quadratic import Quadratics, quadratics

__all__ = [
    "Classifier",
    "Quadratics",
    "StatefulClassifier",
    "from_nnx",
    "logistic_regression",
    "mlp",
    "quadratics",
]
