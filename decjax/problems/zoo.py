"""The papers' networks as Flax NNX models (needs the optional extra ``decjax[flax]``).

Each function returns a :func:`decjax.problems.from_nnx` model: a
:class:`~decjax.problems.Classifier`, or a
:class:`~decjax.problems.StatefulClassifier` when it has BatchNorm statistics
or dropout (pass ``model_state=`` to :func:`decjax.simulate`). Parameter counts
are checked by the tests.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from decjax._validation import check_bool, check_choice, check_in_range, check_int
from decjax.problems.classifiers import Classifier, StatefulClassifier
from decjax.problems.conv import conv_general_dilated
from decjax.problems.nnx import from_nnx

Model = Classifier | StatefulClassifier  # what from_nnx returns: stateful with BatchNorm


def _nnx():
    try:
        from flax import nnx
    except ImportError as err:  # pragma: no cover - exercised only without flax
        raise ImportError("the model zoo needs flax: pip install 'decjax[flax]'") from err
    return nnx


def _conv_layer(nnx, *args, **kwargs):
    """``nnx.Conv`` with decjax's convolution (fast gradients on the CPU)."""
    return nnx.Conv(*args, conv_general_dilated=conv_general_dilated, **kwargs)


def _call(module, *args):
    return module(*args)


def _maybe_remat(nnx, remat: bool):
    """``module(*args)``, rematerialised in the backward pass when ``remat``."""
    return nnx.remat(_call) if remat else _call


def lenet5(num_classes: int = 10, *, channels: int = 1, size: int = 28) -> Model:
    """LeNet-5 (LeCun et al., 1998), the network of DeTAG's image experiments.

    Two 5x5 convolutions (6 and 16 channels, ReLU, 2x2 max-pooling) and three
    dense layers (120, 84, ``num_classes``). A 28x28 input is padded by 2 in the
    first convolution, as in the original 32x32 design, so both sizes give the
    16x5x5 feature map: 61,706 parameters for one channel and 10 classes
    (62,006 for three channels). Inputs are ``(B, size, size, channels)``.

    Examples:
      >>> import jax, decjax
      >>> model = decjax.problems.lenet5()
      >>> params = model.init(jax.random.key(0))
      >>> model.apply(params, jax.numpy.zeros((2, 28, 28, 1))).shape
      (2, 10)
    """
    num_classes = check_int("num_classes", num_classes, minimum=2)
    channels = check_int("channels", channels, minimum=1)
    check_choice("size", size, (28, 32))
    nnx = _nnx()
    padding = 2 if size == 28 else 0

    class LeNet5(nnx.Module):  # type: ignore[name-defined]
        def __init__(self, rngs):
            self.conv1 = _conv_layer(nnx, channels, 6, (5, 5), padding=padding, rngs=rngs)
            self.conv2 = _conv_layer(nnx, 6, 16, (5, 5), padding="VALID", rngs=rngs)
            self.fc1 = nnx.Linear(16 * 5 * 5, 120, rngs=rngs)
            self.fc2 = nnx.Linear(120, 84, rngs=rngs)
            self.fc3 = nnx.Linear(84, num_classes, rngs=rngs)

        def __call__(self, x):
            pool = lambda h: nnx.max_pool(h, (2, 2), strides=(2, 2))  # noqa: E731
            h = pool(nnx.relu(self.conv1(x)))
            h = pool(nnx.relu(self.conv2(h)))
            h = h.reshape(h.shape[0], -1)
            return self.fc3(nnx.relu(self.fc2(nnx.relu(self.fc1(h)))))

    return from_nnx(LeNet5)


def cnn1d(num_classes: int = 10, *, length: int = 40, channels: int = 25) -> Model:
    """A 1-D CNN for MNIST-1D, after the dataset's reference convnet.

    Three convolutions of ``channels`` filters (kernel 5, then 3, 3; stride 2;
    ReLU) and a linear classifier: 5,210 parameters for length 40 and 10
    classes. Inputs are ``(B, length)`` signals.

    Examples:
      >>> import jax, decjax
      >>> model = decjax.problems.cnn1d()
      >>> model.apply(model.init(jax.random.key(0)), jax.numpy.zeros((3, 40))).shape
      (3, 10)
    """
    num_classes = check_int("num_classes", num_classes, minimum=2)
    length = check_int("length", length, minimum=8)
    channels = check_int("channels", channels, minimum=1)
    nnx = _nnx()
    out_length = length
    for _ in range(3):  # three stride-2 "SAME" convolutions
        out_length = (out_length + 1) // 2

    class CNN1D(nnx.Module):  # type: ignore[name-defined]
        def __init__(self, rngs):
            self.conv1 = _conv_layer(nnx, 1, channels, (5,), strides=2, rngs=rngs)
            self.conv2 = _conv_layer(nnx, channels, channels, (3,), strides=2, rngs=rngs)
            self.conv3 = _conv_layer(nnx, channels, channels, (3,), strides=2, rngs=rngs)
            self.out = nnx.Linear(channels * out_length, num_classes, rngs=rngs)

        def __call__(self, x):
            h = x[..., None]
            for conv in (self.conv1, self.conv2, self.conv3):
                h = nnx.relu(conv(h))
            return self.out(h.reshape(h.shape[0], -1))

    return from_nnx(CNN1D)


def resnet20(
    num_classes: int = 10, *, norm: str = "batch", width: int = 16, remat: bool = False
) -> StatefulClassifier | Classifier:
    """ResNet-20 for 32x32 images (He et al., 2016, Section 4.2), as used by Kong et al.
    and Lin et al.

    A 3x3 convolution, then three stages of three basic blocks (two 3x3
    convolutions each) with ``width``, ``2 width`` and ``4 width`` channels,
    the last two stages starting with stride 2; identity shortcuts, zero-padded
    on the channels where they widen (option A, no parameters); global average
    pooling and a linear classifier. With ``width=16`` and 10 classes:
    269,722 parameters (the paper's 0.27 M; projection shortcuts, option B,
    would add 2,752). ``norm="batch"`` uses
    BatchNorm (a stateful model: pass ``model_state=``); ``norm="group"``
    GroupNorm with 2 groups (stateless, the same parameter count). Inputs are
    ``(B, 32, 32, 3)``. ``remat=True`` rematerialises each residual block in
    the backward pass (``nnx.remat``, i.e. ``jax.checkpoint``): only the
    blocks' inputs are kept from the forward pass, for about one more forward
    pass of compute (the memory study in docs/benchmarks.md measures it).

    Examples:
      >>> import jax, decjax
      >>> model = decjax.problems.resnet20(norm="group")  # doctest: +SKIP
      >>> x = jax.numpy.zeros((2, 32, 32, 3))
      >>> model.apply(model.init(jax.random.key(0)), x).shape  # doctest: +SKIP
      (2, 10)
    """
    num_classes = check_int("num_classes", num_classes, minimum=2)
    check_choice("norm", norm, ("batch", "group"))
    width = check_int("width", width, minimum=2)
    check_bool("remat", remat)
    nnx = _nnx()

    def normalization(features, rngs):
        if norm == "batch":
            return nnx.BatchNorm(features, rngs=rngs)
        return nnx.GroupNorm(features, num_groups=2, rngs=rngs)

    class Block(nnx.Module):  # type: ignore[name-defined]
        def __init__(self, cin, cout, stride, rngs):
            def conv(i, o, s):
                kw = {"strides": s, "padding": 1, "use_bias": False, "rngs": rngs}
                return _conv_layer(nnx, i, o, (3, 3), **kw)

            self.conv1, self.norm1 = conv(cin, cout, stride), normalization(cout, rngs)
            self.conv2, self.norm2 = conv(cout, cout, 1), normalization(cout, rngs)
            self.stride, self.extra = stride, cout - cin

        def __call__(self, x):
            h = nnx.relu(self.norm1(self.conv1(x)))
            h = self.norm2(self.conv2(h))
            shortcut = x[:, :: self.stride, :: self.stride, :]
            if self.extra:
                pad = self.extra // 2
                shortcut = jnp.pad(shortcut, ((0, 0), (0, 0), (0, 0), (pad, self.extra - pad)))
            return nnx.relu(h + shortcut)

    class ResNet20(nnx.Module):  # type: ignore[name-defined]
        def __init__(self, rngs):
            self.stem = _conv_layer(nnx, 3, width, (3, 3), padding=1, use_bias=False, rngs=rngs)
            self.norm = normalization(width, rngs)
            blocks, cin = [], width
            for stage, cout in enumerate((width, 2 * width, 4 * width)):
                for i in range(3):
                    stride = 2 if stage > 0 and i == 0 else 1
                    blocks.append(Block(cin, cout, stride, rngs))
                    cin = cout
            self.blocks = nnx.List(blocks)
            self.head = nnx.Linear(cin, num_classes, rngs=rngs)

        def __call__(self, x):
            h = nnx.relu(self.norm(self.stem(x)))
            for block in self.blocks:
                h = _maybe_remat(nnx, remat)(block, h)
            return self.head(h.mean(axis=(1, 2)))

    return from_nnx(ResNet20)


VGG11_LAYERS = (64, "pool", 128, "pool", 256, 256, "pool", 512, 512, "pool", 512, 512, "pool")


def vgg11(
    num_classes: int = 10, *, norm: str = "batch", classifier: str = "linear"
) -> StatefulClassifier | Classifier:
    """VGG-11 for 32x32 images, the network of Vogels et al.'s CIFAR-10 experiments.

    Configuration A of Simonyan & Zisserman (2015) in its common CIFAR form:
    eight 3x3 convolutions (64, 128, 256, 256, 512, 512, 512, 512 channels,
    each followed by normalisation and ReLU, five 2x2 max-poolings), then the
    classifier on the 512 features that remain:

    * ``classifier="linear"``: one linear layer. With ``norm="batch"`` and 10
      classes: 9,231,114 parameters (9.23 M; a stateful model, pass
      ``model_state=``); ``norm="none"``: 9,225,610, stateless.
    * ``classifier="dropout"``: RelaySum's VGG-11 (their ``tasks/models/vgg.py``):
      dropout 0.5, 512-512 linear, ReLU, dropout 0.5, 512-512 linear, ReLU, linear;
      with ``norm="none"`` (theirs, no BatchNorm) 9,750,922 parameters, a model whose
      dropout draws a key per worker and step (stateful: pass ``model_state=``).

    Inputs are ``(B, 32, 32, 3)``.

    Examples:
      >>> import jax, decjax
      >>> model = decjax.problems.vgg11(norm="none")  # doctest: +SKIP
      >>> x = jax.numpy.zeros((2, 32, 32, 3))
      >>> model.apply(model.init(jax.random.key(0)), x).shape  # doctest: +SKIP
      (2, 10)
    """
    num_classes = check_int("num_classes", num_classes, minimum=2)
    check_choice("norm", norm, ("batch", "none"))
    check_choice("classifier", classifier, ("linear", "dropout"))
    nnx = _nnx()

    class VGG11(nnx.Module):  # type: ignore[name-defined]
        def __init__(self, rngs):
            convs, norms, cin = [], [], 3
            for cout in VGG11_LAYERS:
                if cout == "pool":
                    continue
                convs.append(_conv_layer(nnx, cin, cout, (3, 3), padding=1, rngs=rngs))
                if norm == "batch":
                    norms.append(nnx.BatchNorm(cout, rngs=rngs))
                cin = cout
            self.convs, self.norms = nnx.List(convs), nnx.List(norms)
            hidden = [nnx.Linear(cin, cin, rngs=rngs) for _ in range(2)]
            self.hidden = nnx.List(hidden if classifier == "dropout" else [])
            self.drop = nnx.Dropout(0.5, rngs=rngs if classifier == "dropout" else None)
            self.head = nnx.Linear(cin, num_classes, rngs=rngs)

        def __call__(self, x):
            i = 0
            for layer in VGG11_LAYERS:
                if layer == "pool":
                    x = nnx.max_pool(x, (2, 2), strides=(2, 2))
                    continue
                x = self.convs[i](x)
                x = nnx.relu(self.norms[i](x) if self.norms else x)
                i += 1
            x = x.reshape(x.shape[0], -1)
            for layer in self.hidden:
                x = nnx.relu(layer(self.drop(x)))
            return self.head(x)

    return from_nnx(VGG11)


def transformer_lm(
    vocab_size: int,
    *,
    context: int = 64,
    layers: int = 4,
    width: int = 128,
    heads: int = 4,
    dropout: float = 0.0,
    remat: bool = False,
) -> Model:
    """A small causal transformer language model (pre-LayerNorm GPT blocks).

    Token and learned position embeddings, ``layers`` blocks of causal
    multi-head self-attention and a 4x MLP (GELU), a final LayerNorm and a
    linear head. Inputs are token ids ``(B, T)`` with ``T <= context``; the
    output is ``(B, T, vocab_size)`` logits, so the classifier loss with
    labels ``(B, T)`` (the next tokens) is the mean next-token cross-entropy
    (see :func:`decjax.data.load_text`). With ``dropout > 0`` the model is
    stateful (a key per worker and step). ``remat=True`` rematerialises each
    block in the backward pass (``nnx.remat``), keeping only the blocks' inputs.

    Examples:
      >>> import jax, decjax
      >>> model = decjax.problems.transformer_lm(32, context=16, layers=1, width=32, heads=2)
      >>> tokens = jax.numpy.zeros((2, 16), jax.numpy.int32)
      >>> model.apply(model.init(jax.random.key(0)), tokens).shape
      (2, 16, 32)
    """
    vocab_size = check_int("vocab_size", vocab_size, minimum=2)
    context = check_int("context", context, minimum=1)
    layers = check_int("layers", layers, minimum=1)
    width = check_int("width", width, minimum=1)
    heads = check_int("heads", heads, minimum=1)
    if width % heads:
        raise ValueError(f"width ({width}) must be a multiple of heads ({heads})")
    check_in_range("dropout", dropout, 0.0, 1.0, closed="left")
    check_bool("remat", remat)
    nnx = _nnx()

    class Block(nnx.Module):  # type: ignore[name-defined]
        def __init__(self, rngs):
            self.ln1 = nnx.LayerNorm(width, rngs=rngs)
            self.attention = nnx.MultiHeadAttention(
                heads, width, dropout_rate=dropout, decode=False, rngs=rngs
            )
            self.ln2 = nnx.LayerNorm(width, rngs=rngs)
            self.up = nnx.Linear(width, 4 * width, rngs=rngs)
            self.down = nnx.Linear(4 * width, width, rngs=rngs)
            self.drop = nnx.Dropout(dropout, rngs=rngs if dropout else None)

        def __call__(self, x, mask):
            x = x + self.drop(self.attention(self.ln1(x), mask=mask))
            return x + self.drop(self.down(nnx.gelu(self.up(self.ln2(x)))))

    class TransformerLM(nnx.Module):  # type: ignore[name-defined]
        def __init__(self, rngs):
            self.tokens = nnx.Embed(vocab_size, width, rngs=rngs)
            self.positions = nnx.Embed(context, width, rngs=rngs)
            self.blocks = nnx.List([Block(rngs) for _ in range(layers)])
            self.ln = nnx.LayerNorm(width, rngs=rngs)
            self.head = nnx.Linear(width, vocab_size, rngs=rngs)

        def __call__(self, tokens: Any):
            length = tokens.shape[-1]
            if length > context:
                raise ValueError(
                    f"sequences of {length} tokens are longer than the transformer's context "
                    f"({context}): build it with context={length} or cut the sequences"
                )
            x = self.tokens(tokens) + self.positions(jnp.arange(length))[None]
            mask = nnx.make_causal_mask(tokens)
            for block in self.blocks:
                x = _maybe_remat(nnx, remat)(block, x, mask)
            return self.head(self.ln(x))

    return from_nnx(TransformerLM)


def parameter_count(params: Any) -> int:
    """Number of scalars in a (single worker's) parameter tree.

    Examples:
      >>> import jax, decjax
      >>> decjax.problems.parameter_count(decjax.problems.lenet5().init(jax.random.key(0)))
      61706
    """
    leaves = jax.tree.leaves(params)
    if not leaves or not all(hasattr(x, "shape") for x in leaves):
        raise TypeError(
            f"params must be a non-empty pytree of arrays (model.init(key)), got {params!r}"
        )
    return sum(int(jnp.size(x)) for x in leaves)
