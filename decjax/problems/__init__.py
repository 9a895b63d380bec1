"""Small problems with known answers: quadratics, logistic regression, an MLP, NNX models."""

from decjax.problems.classifiers import (
    Classifier,
    StatefulClassifier,
    logistic_regression,
    mlp,
)
from decjax.problems.conv import conv_general_dilated
from decjax.problems.nnx import from_nnx, to_nnx
from decjax.problems.quadratic import Quadratics, quadratics
from decjax.problems.random_quadratics import LeastSquares, least_squares
from decjax.problems.zoo import cnn1d, lenet5, parameter_count, resnet20, transformer_lm, vgg11

__all__ = [
    "Classifier",
    "LeastSquares",
    "Quadratics",
    "StatefulClassifier",
    "cnn1d",
    "conv_general_dilated",
    "from_nnx",
    "least_squares",
    "lenet5",
    "logistic_regression",
    "mlp",
    "parameter_count",
    "quadratics",
    "resnet20",
    "to_nnx",
    "transformer_lm",
    "vgg11",
]
