"""A probe of bad input across the public API and the command lines: every case gets one clear
error, raised by decjax itself, naming what is wrong, before anything is compiled.

"Clear" is checked, not assumed: the exception is a ``TypeError``/``ValueError``
(or argparse's exit 2 with one ``error:`` line for the command lines), its
message contains the expected words (the argument's name or the rule), and
the frame that raised it lives in ``decjax/`` (not in JAX, numpy or
argparse internals reached by accident). A case that raises nothing is a
failure too. ``test_the_probe_is_large`` keeps the table at 670+ cases, and
``test_every_public_callable_has_a_case`` fails when a public function or class
of decjax has none.
"""

from __future__ import annotations

import importlib
import math
import pathlib
import tempfile
import traceback
import types

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import optax
import pytest

import decjax
from decjax.algorithms import ALGORITHMS, uniform_delay
from decjax.cli import main as cli
from decjax.gossip import qsgd, random_k, top_k
from decjax.multihost import main as multihost

KEY = jax.random.key(0)
N = 8


def _quad(n=N):
    return decjax.problems.quadratics(n, 3, key=KEY)


def _sim(**overrides):
    """``simulate`` on quadratics with one argument replaced."""
    q = _quad()
    args = {
        "loss_fn": q.loss,
        "params": q.init_params(),
        "tx": decjax.dpsgd(0.1, decjax.ring(N)),
        "data": q.data,
        "steps": 10,
        "key": KEY,
        "progress": False,
    }
    args.update(overrides)
    return decjax.simulate(**args)


def _digits_sim(**overrides):
    ds = decjax.data.load_digits()
    model = decjax.problems.logistic_regression(64, 10)
    args = {
        "loss_fn": model.loss,
        "params": decjax.replicate(model.init(KEY), N),
        "tx": decjax.dpsgd(0.1, decjax.ring(N)),
        "data": decjax.data.distribute(ds, N, "iid", key=0),
        "steps": 10,
        "batch_size": 4,
        "key": KEY,
        "progress": False,
    }
    args.update(overrides)
    return decjax.simulate(**args)


def _sweep(grid=None, make_tx=None, **overrides):
    q = _quad()
    return decjax.sweep(
        q.loss,
        q.init_params(),
        make_tx or (lambda learning_rate: decjax.dpsgd(learning_rate, decjax.ring(N))),
        q.data,
        {"learning_rate": [0.1]} if grid is None else grid,
        steps=10,
        key=KEY,
        progress=False,
        **overrides,
    )


def _eval_list(params, data):
    return [jnp.sum(params)]


BAD_LEARNING_RATES = {
    "negative": (-0.1, "learning_rate"),
    "zero": (0.0, "learning_rate"),
    "nan": (math.nan, "learning_rate"),
    "inf": (math.inf, "learning_rate"),
    "string": ("0.1", "learning_rate"),
    "complex": (0.1 + 1j, "learning_rate"),
    "none": (None, "learning_rate"),
    "bool": (True, "learning_rate"),
}

CASES: dict[str, tuple] = {}

# -- every algorithm: bad learning rates and a topology that is not one ---------------
for _name, _factory in ALGORITHMS.items():
    for _what, (_lr, _words) in BAD_LEARNING_RATES.items():
        CASES[f"{_name}-lr-{_what}"] = (lambda f=_factory, lr=_lr: f(lr, decjax.ring(N)), _words)
    CASES[f"{_name}-topology-string"] = (lambda f=_factory: f(0.1, "ring"), "topology")

CASES.update(
    {
        # -- topologies ------------------------------------------------------------------
        "ring-zero": (lambda: decjax.ring(0), "n must be >= 1"),
        "ring-negative": (lambda: decjax.ring(-3), "n must be >= 1"),
        "ring-float": (lambda: decjax.ring(2.5), "n must be an int"),
        "ring-string": (lambda: decjax.ring("8"), "n must be an int"),
        "ring-none": (lambda: decjax.ring(None), "n must be an int"),
        "ring-bool": (lambda: decjax.ring(True), "n must be an int"),
        "exponential-zero": (lambda: decjax.exponential(0), "n"),
        "one-peer-zero": (lambda: decjax.one_peer_exponential(0), "n"),
        "complete-zero": (lambda: decjax.complete(0), "n"),
        "solo-string": (lambda: decjax.solo("4"), "n"),
        "star-zero": (lambda: decjax.star(0), "n"),
        "hypercube-12": (lambda: decjax.hypercube(12), "power of two"),
        "hypercube-zero": (lambda: decjax.hypercube(0), "n"),
        "torus-zero-rows": (lambda: decjax.torus(0, 4), "rows"),
        "torus-string-cols": (lambda: decjax.torus(4, "4"), "cols"),
        "grid-negative": (lambda: decjax.grid(-1, 2), "rows"),
        "torus-by-name-prime": (lambda: decjax.topology.by_name("torus", 13), "factorization"),
        "by-name-unknown": (lambda: decjax.topology.by_name("moebius", 8), "name"),
        "by-name-zero": (lambda: decjax.topology.by_name("ring", 0), "n"),
        "periodic-average-zero": (lambda: decjax.topology.periodic_average(8, 0), "every"),
        "erdos-renyi-p0": (lambda: decjax.erdos_renyi(8, 0.0, key=KEY), "p must be"),
        "erdos-renyi-p-big": (lambda: decjax.erdos_renyi(8, 1.5, key=KEY), "p must be"),
        "erdos-renyi-p-nan": (lambda: decjax.erdos_renyi(8, math.nan, key=KEY), "p must be"),
        "erdos-renyi-p-string": (lambda: decjax.erdos_renyi(8, "0.5", key=KEY), "p must be"),
        "erdos-renyi-key-string": (lambda: decjax.erdos_renyi(8, 0.5, key="k"), "key"),
        "erdos-renyi-key-negative": (lambda: decjax.erdos_renyi(8, 0.5, key=-1), "key"),
        "erdos-renyi-tries": (
            lambda: decjax.erdos_renyi(8, 0.5, key=KEY, max_tries=0),
            "max_tries",
        ),
        "random-matching-key": (lambda: decjax.random_matching(8, key="k"), "key"),
        "random-matching-zero": (lambda: decjax.random_matching(0, key=KEY), "n"),
        "from-matrix-strings": (lambda: decjax.from_matrix([["a", "b"], ["c", "d"]]), "matrix"),
        "from-matrix-ragged": (lambda: decjax.from_matrix([[1.0, 0.0], [1.0]]), "matrix"),
        "from-matrix-not-square": (lambda: decjax.from_matrix(np.ones((2, 3)) / 3), "shape"),
        "from-matrix-nan": (lambda: decjax.from_matrix(np.full((2, 2), math.nan)), "finite"),
        "from-matrix-negative": (
            lambda: decjax.from_matrix([[1.5, -0.5], [-0.5, 1.5]]),
            "non-negative",
        ),
        "from-matrix-rows": (lambda: decjax.from_matrix(np.full((3, 3), 0.5)), "sum to 1"),
        "from-matrix-complex": (lambda: decjax.from_matrix(np.eye(2) * (1 + 1j)), "matrix"),
        "from-matrix-disconnected": (lambda: decjax.from_matrix(np.eye(3)), "connected"),
        "from-matrix-scalar": (lambda: decjax.from_matrix(0.5), "shape"),
        "from-networkx-string": (lambda: decjax.from_networkx("graph"), "graph"),
        "from-networkx-empty": (lambda: decjax.from_networkx(nx.Graph()), "graph"),
        "from-networkx-disconnected": (
            lambda: decjax.from_networkx(nx.empty_graph(3)),
            "connected",
        ),
        "from-networkx-weights": (
            lambda: decjax.from_networkx(nx.cycle_graph(4), weights="x"),
            "weights",
        ),
        "from-offsets-flat": (
            lambda: decjax.topology.from_offsets(4, [-1, 0, 1], [0.25, 0.5, 0.25]),
            "nested",
        ),
        "from-offsets-float-offset": (
            lambda: decjax.topology.from_offsets(4, [[0.5, 0.0]], [[0.5, 0.5]]),
            "integers",
        ),
        "from-offsets-nan": (
            lambda: decjax.topology.from_offsets(4, [[-1, 0, 1]], [[0.25, math.nan, 0.25]]),
            "finite",
        ),
        "from-offsets-string-weights": (
            lambda: decjax.topology.from_offsets(4, [[-1, 0, 1]], [["a", "b", "c"]]),
            "real numbers",
        ),
        "from-offsets-sum": (
            lambda: decjax.topology.from_offsets(4, [[-1, 1]], [[0.25, 0.25]]),
            "sum to 1",
        ),
        "from-offsets-n": (lambda: decjax.topology.from_offsets(0, [[0]], [[1.0]]), "n"),
        "lazy-kappa-zero": (lambda: decjax.topology.lazy(decjax.ring(4), 0.0), "kappa"),
        "lazy-kappa-big": (lambda: decjax.topology.lazy(decjax.ring(4), 1.5), "kappa"),
        "lazy-not-topology": (lambda: decjax.topology.lazy("ring", 0.5), "topology"),
        "stack-empty": (lambda: decjax.topology.stack([]), "non-empty"),
        "stack-mixed-n": (
            lambda: decjax.topology.stack([decjax.ring(4), decjax.ring(5)]),
            "same n",
        ),
        "stack-not-topologies": (lambda: decjax.topology.stack([1, 2]), "Topology"),
        "stack-faults": (
            lambda: decjax.topology.stack(
                [decjax.topology.with_faults(decjax.ring(4), key=KEY, link_failure=0.1)]
            ),
            "faults",
        ),
        "spectral-gap-string": (lambda: decjax.spectral_gap("ring"), "topology"),
        "spectral-gap-stack": (
            lambda: decjax.spectral_gap(decjax.topology.stack([decjax.ring(4)] * 2)),
            "stack",
        ),
        "n-w-gamma-one": (lambda: decjax.effective_neighbors(decjax.ring(4), 1.0), "gamma"),
        "n-w-gamma-negative": (lambda: decjax.effective_neighbors(decjax.ring(4), -0.1), "gamma"),
        "n-w-gamma-nan": (lambda: decjax.effective_neighbors(decjax.ring(4), math.nan), "gamma"),
        "n-w-gamma-string": (lambda: decjax.effective_neighbors(decjax.ring(4), "0.5"), "gamma"),
        "n-w-mode": (
            lambda: decjax.effective_neighbors(decjax.ring(4), 0.5, mode="median"),
            "mode",
        ),
        "period-product-string": (lambda: decjax.topology.period_product("x"), "topology"),
        # -- faults ----------------------------------------------------------------------
        "faults-link-negative": (
            lambda: decjax.topology.with_faults(decjax.ring(4), key=KEY, link_failure=-0.1),
            "link_failure",
        ),
        "faults-link-big": (
            lambda: decjax.topology.with_faults(decjax.ring(4), key=KEY, link_failure=1.5),
            "link_failure",
        ),
        "faults-link-nan": (
            lambda: decjax.topology.with_faults(decjax.ring(4), key=KEY, link_failure=math.nan),
            "link_failure",
        ),
        "faults-link-string": (
            lambda: decjax.topology.with_faults(decjax.ring(4), key=KEY, link_failure="0.1"),
            "link_failure",
        ),
        "faults-link-schedule-nan": (
            lambda: decjax.topology.with_faults(
                decjax.ring(4), key=KEY, link_failure=[0.1, math.nan]
            ),
            "link_failure",
        ),
        "faults-link-2d": (
            lambda: decjax.topology.with_faults(decjax.ring(4), key=KEY, link_failure=[[0.1]]),
            "link_failure",
        ),
        "faults-node-one": (
            lambda: decjax.topology.with_faults(decjax.ring(4), key=KEY, node_failure=1.0),
            "node_failure",
        ),
        "faults-node-string": (
            lambda: decjax.topology.with_faults(decjax.ring(4), key=KEY, node_failure="0.1"),
            "node_failure",
        ),
        "faults-node-nan": (
            lambda: decjax.topology.with_faults(decjax.ring(4), key=KEY, node_failure=math.nan),
            "node_failure",
        ),
        "faults-down-steps": (
            lambda: decjax.topology.with_faults(decjax.ring(4), key=KEY, down_steps=0),
            "down_steps",
        ),
        "faults-down-steps-float": (
            lambda: decjax.topology.with_faults(decjax.ring(4), key=KEY, down_steps=1.5),
            "down_steps",
        ),
        "faults-reweight": (
            lambda: decjax.topology.with_faults(decjax.ring(4), key=KEY, reweight="x"),
            "reweight",
        ),
        "faults-key-string": (
            lambda: decjax.topology.with_faults(decjax.ring(4), key="k"),
            "key",
        ),
        "faults-key-none": (lambda: decjax.topology.with_faults(decjax.ring(4), key=None), "key"),
        "faults-key-batch": (
            lambda: decjax.topology.with_faults(
                decjax.ring(4), key=jax.random.split(KEY, 3), link_failure=0.1
            ),
            "one key",
        ),
        "faults-twice": (
            lambda: decjax.topology.with_faults(
                decjax.topology.with_faults(decjax.ring(4), key=KEY), key=KEY
            ),
            "already has faults",
        ),
        "faults-directed": (
            lambda: decjax.topology.with_faults(decjax.exponential(8), key=KEY),
            "symmetric",
        ),
        "faults-not-topology": (lambda: decjax.topology.with_faults("ring", key=KEY), "topology"),
        "stragglers-speed-zero": (
            lambda: decjax.algorithms.stragglers(
                decjax.dpsgd(0.1, decjax.ring(4)), [1.0, 0.0], key=KEY
            ),
            "speeds",
        ),
        "stragglers-key": (
            lambda: decjax.algorithms.stragglers(decjax.dpsgd(0.1, decjax.ring(4)), [1.0], key="k"),
            "key",
        ),
        "stragglers-mode": (
            lambda: decjax.algorithms.stragglers(
                decjax.dpsgd(0.1, decjax.ring(4)), [1.0], key=KEY, mode="skip"
            ),
            "mode",
        ),
        "stragglers-tx": (lambda: decjax.algorithms.stragglers("sgd", [1.0], key=KEY), "tx"),
        "low-precision-tx": (lambda: decjax.algorithms.low_precision("sgd", key=KEY), "tx"),
        "low-precision-dtype": (
            lambda: decjax.algorithms.low_precision(optax.sgd(0.1), "float8", key=KEY),
            "dtype",
        ),
        "low-precision-rounding": (
            lambda: decjax.algorithms.low_precision(optax.sgd(0.1), rounding="up", key=KEY),
            "rounding",
        ),
        "low-precision-stochastic-float16": (
            lambda: decjax.algorithms.low_precision(optax.sgd(0.1), "float16", key=KEY),
            "rounding='nearest'",
        ),
        "low-precision-no-key": (
            lambda: decjax.algorithms.low_precision(optax.sgd(0.1)),
            "key",
        ),
        "low-precision-float32-params": (
            lambda: decjax.algorithms.low_precision(optax.sgd(0.1), key=KEY).init(jnp.ones((4, 3))),
            "astype(jnp.bfloat16)",
        ),
        "stochastic-round-float16": (
            lambda: decjax.algorithms.stochastic_round(
                jnp.ones(3, jnp.float16), jnp.zeros(3, jnp.uint32)
            ),
            "float32",
        ),
        "stochastic-round-bits-shape": (
            lambda: decjax.algorithms.stochastic_round(jnp.ones(3), jnp.zeros(2, jnp.uint32)),
            "bits",
        ),
        "churn-no-faults": (
            lambda: decjax.algorithms.node_churn(decjax.dpsgd(0.1, decjax.ring(4)), decjax.ring(4)),
            "with_faults",
        ),
        # -- gossip and compressors ------------------------------------------------------
        "mix-string-topology": (lambda: decjax.mix("ring", jnp.zeros((4, 2))), "topology"),
        "mix-wrong-n": (lambda: decjax.mix(decjax.ring(4), jnp.zeros((5, 2))), "n=4"),
        "mix-int-leaf": (
            lambda: decjax.mix(decjax.ring(4), jnp.zeros((4, 2), jnp.int32)),
            "floating",
        ),
        "mix-rounds-zero": (
            lambda: decjax.mix(decjax.ring(4), jnp.zeros((4, 2)), rounds=0),
            "rounds",
        ),
        "mix-rounds-float": (
            lambda: decjax.mix(decjax.ring(4), jnp.zeros((4, 2)), rounds=1.5),
            "rounds",
        ),
        "mix-backend-unknown": (
            lambda: decjax.mix(decjax.ring(4), jnp.zeros((4, 2)), backend="gpu"),
            "backend",
        ),
        "mix-backend-not-applicable": (
            lambda: decjax.mix(decjax.torus(2, 2), jnp.zeros((4, 2)), backend="shift"),
            "backend",
        ),
        "mix-delta-wrong-n": (
            lambda: decjax.gossip.mix_delta(decjax.ring(4), jnp.zeros((3,))),
            "n=4",
        ),
        "top-k-neither": (lambda: top_k(), "exactly one"),
        "top-k-both": (lambda: top_k(2, fraction=0.5), "exactly one"),
        "top-k-zero": (lambda: top_k(0), "k"),
        "top-k-fraction-zero": (lambda: top_k(fraction=0.0), "fraction"),
        "top-k-fraction-big": (lambda: top_k(fraction=1.5), "fraction"),
        "random-k-negative": (lambda: random_k(-1), "k"),
        "qsgd-zero": (lambda: qsgd(0), "levels"),
        "qsgd-string": (lambda: qsgd("4"), "levels"),
        # -- algorithm options -----------------------------------------------------------
        "dpsgd-momentum-big": (lambda: decjax.dpsgd(0.1, decjax.ring(4), momentum=1.5), "momentum"),
        "dpsgd-momentum-negative": (
            lambda: decjax.dpsgd(0.1, decjax.ring(4), momentum=-0.1),
            "momentum",
        ),
        "dpsgd-nesterov": (
            lambda: decjax.dpsgd(0.1, decjax.ring(4), momentum=0.9, nesterov=1),
            "nesterov must be a bool",
        ),
        "qg-dsgdm-nesterov": (
            lambda: decjax.qg_dsgdm(0.1, decjax.ring(4), nesterov="yes"),
            "nesterov must be a bool",
        ),
        "dpsgd-order": (lambda: decjax.dpsgd(0.1, decjax.ring(4), order="x"), "order"),
        "dpsgd-rounds": (lambda: decjax.dpsgd(0.1, decjax.ring(4), rounds=0), "rounds"),
        "dpsgd-backend": (lambda: decjax.dpsgd(0.1, decjax.ring(4), backend="x"), "backend"),
        "gt-order": (lambda: decjax.gradient_tracking(0.1, decjax.ring(4), order="x"), "order"),
        "gt-rounds": (lambda: decjax.gradient_tracking(0.1, decjax.ring(4), rounds=-1), "rounds"),
        "d2-even-ring": (lambda: decjax.d2(0.1, decjax.ring(8)), "lambda_min"),
        "d2-directed": (lambda: decjax.d2(0.1, decjax.exponential(8)), "symmetric"),
        "detag-phase": (lambda: decjax.detag(0.1, decjax.ring(4), phase_length=0), "phase_length"),
        "detag-momentum": (
            lambda: decjax.detag(0.1, decjax.ring(4), gossip_momentum=1.5),
            "gossip_momentum",
        ),
        "detag-momentum-string": (
            lambda: decjax.detag(0.1, decjax.ring(4), gossip_momentum="fast"),
            "gossip_momentum",
        ),
        "qgm-momentum": (lambda: decjax.qg_dsgdm(0.1, decjax.ring(4), momentum=1.5), "momentum"),
        "choco-compressor": (
            lambda: decjax.choco_sgd(0.1, decjax.ring(4), compressor="top_k"),
            "compressor",
        ),
        "choco-step-zero": (
            lambda: decjax.choco_sgd(0.1, decjax.ring(4), compressor=top_k(1), consensus_step=0.0),
            "consensus_step",
        ),
        "choco-step-big": (
            lambda: decjax.choco_sgd(0.1, decjax.ring(4), compressor=top_k(1), consensus_step=1.5),
            "consensus_step",
        ),
        "choco-key": (
            lambda: decjax.choco_sgd(0.1, decjax.ring(4), compressor=top_k(1), key="k"),
            "key",
        ),
        "local-sgd-every": (lambda: decjax.local_sgd(0.1, 8, every=0), "every"),
        "local-sgd-n": (lambda: decjax.local_sgd(0.1, 0, every=2), "n"),
        "gossip-pga-every": (lambda: decjax.gossip_pga(0.1, decjax.ring(4), every=0), "every"),
        "cc-tx": (
            lambda: decjax.consensus_control("sgd", decjax.ring(4), target=1e-3),
            "tx",
        ),
        "cc-target": (
            lambda: decjax.consensus_control(optax.sgd(0.1), decjax.ring(4), target=-1.0),
            "target",
        ),
        "cc-rounds": (
            lambda: decjax.consensus_control(
                optax.sgd(0.1), decjax.ring(4), target=1e-3, max_rounds=0
            ),
            "max_rounds",
        ),
        "cc-estimator": (
            lambda: decjax.consensus_control(
                optax.sgd(0.1), decjax.ring(4), target=1e-3, estimator="x"
            ),
            "estimator",
        ),
        "cc-gap": (
            lambda: decjax.consensus_control(
                optax.sgd(0.1), decjax.ring(4), target=1e-3, spectral_gap_value=1.5
            ),
            "spectral_gap_value",
        ),
        "dasgd-n-zero": (lambda: decjax.dasgd(0.1, delays=uniform_delay(2), n=0), "n"),
        "dasgd-n-negative": (lambda: decjax.dasgd(0.1, delays=uniform_delay(2), n=-2), "n"),
        "dasgd-n-string": (lambda: decjax.dasgd(0.1, delays=uniform_delay(2), n="4"), "n"),
        "dasgd-no-n": (lambda: decjax.dasgd(0.1, delays=uniform_delay(2)), "n"),
        "dasgd-delays": (lambda: decjax.dasgd(0.1, delays=4, n=4), "delays"),
        "dasgd-huge": (lambda: decjax.dasgd(0.1, delays=uniform_delay(10**9), n=8), "GiB"),
        "dasgd-speeds": (
            lambda: decjax.dasgd(0.1, delays=uniform_delay(2), n=4, speeds=[1.0]),
            "speeds",
        ),
        "dasgd-profile": (
            lambda: decjax.dasgd(0.1, delays=uniform_delay(2), n=4, profile="x"),
            "profile",
        ),
        "dasgd-key": (lambda: decjax.dasgd(0.1, delays=uniform_delay(2), n=4, key="k"), "key"),
        "uniform-delay-negative": (lambda: uniform_delay(-1), "max_delay"),
        "per-worker-string": (lambda: decjax.per_worker("sgd"), "tx"),
        "chain-empty": (lambda: decjax.chain(), "at least one transformation"),
        "chain-string": (lambda: decjax.chain("sgd", decjax.dpsgd(0.1, decjax.ring(4))), "0"),
        "chain-algorithm-first": (
            lambda: decjax.chain(decjax.dpsgd(0.1, decjax.ring(4)), optax.sgd(0.1)),
            "transformation 0 of the chain communicates",
        ),
        "chain-of-optax-chain-holding-one": (
            lambda: decjax.chain(optax.chain(optax.sgd(0.1), decjax.dpsgd(0.1, decjax.ring(4)))),
            "optax.chain holding one",
        ),
        "inject-hyperparams": (
            lambda: optax.inject_hyperparams(decjax.dpsgd)(
                learning_rate=0.1, topology=decjax.ring(4)
            ).init(jnp.zeros((4, 3))),
            "give the learning rate as a schedule",
        ),
        "simulate-raw-optax-chain": (
            lambda: _sim(
                tx=optax.chain(optax.clip_by_global_norm(1.0), decjax.dpsgd(0.1, decjax.ring(N)))
            ),
            "use decjax.chain",
        ),
        "simulate-timing-without-traffic": (
            lambda: _sim(tx=decjax.per_worker(optax.sgd(0.1)), timing=_T.TimeModel()),
            "tx reports none",
        ),
        "decentralize-string": (lambda: decjax.decentralize("sgd", decjax.ring(4)), "tx"),
        "combine-order": (lambda: decjax.combine(decjax.ring(4), order="x"), "order"),
        # -- data and problems -----------------------------------------------------------
        "digits-test-fraction": (
            lambda: decjax.data.load_digits(test_fraction=1.5),
            "test_fraction",
        ),
        "partition-n-zero": (
            lambda: decjax.data.partition(np.arange(10) % 2, 0, "iid", key=0),
            "n",
        ),
        "partition-scheme": (
            lambda: decjax.data.partition(np.arange(10) % 2, 2, "x", key=0),
            "scheme",
        ),
        "partition-key-negative": (
            lambda: decjax.data.partition(np.arange(10) % 2, 2, "iid", key=-1),
            "key",
        ),
        "partition-key-string": (
            lambda: decjax.data.partition(np.arange(10) % 2, 2, "iid", key="k"),
            "key",
        ),
        "partition-too-many": (lambda: decjax.data.partition(np.arange(3), 5, "iid", key=0), "n"),
        "partition-alpha": (
            lambda: decjax.data.partition(np.arange(10) % 2, 2, "dirichlet", key=0, alpha=0.0),
            "alpha",
        ),
        "partition-balanced-no-alpha": (
            lambda: decjax.data.partition(np.arange(10) % 2, 2, "balanced_dirichlet", key=0),
            "alpha must be given",
        ),
        "partition-balanced-nan-alpha": (
            lambda: decjax.data.partition(
                np.arange(10) % 2, 2, "balanced_dirichlet", key=0, alpha=math.nan
            ),
            "alpha",
        ),
        "distribute-n": (lambda: decjax.data.distribute(decjax.data.load_digits(), 0, key=0), "n"),
        "from-arrays-mismatch": (
            lambda: decjax.data.from_arrays(np.zeros((4, 2)), np.zeros(3, int)),
            "x",
        ),
        "quadratics-n": (lambda: decjax.problems.quadratics(0, 3, key=KEY), "n"),
        "quadratics-dim": (lambda: decjax.problems.quadratics(4, 0, key=KEY), "dim"),
        "quadratics-key-none": (lambda: decjax.problems.quadratics(4, 3, key=None), "key"),
        "quadratics-key-string": (lambda: decjax.problems.quadratics(4, 3, key="0"), "key"),
        "quadratics-curvature": (
            lambda: decjax.problems.quadratics(4, 3, key=KEY, curvature=(2.0, 1.0)),
            "curvature",
        ),
        "quadratics-curvature-negative": (
            lambda: decjax.problems.quadratics(4, 3, key=KEY, curvature=(-1.0, 1.0)),
            "curvature",
        ),
        "mlp-empty": (lambda: decjax.problems.mlp([]), "layer_sizes"),
        "mlp-zero-width": (lambda: decjax.problems.mlp([64, 0, 10]), "layer_sizes"),
        "logreg-classes": (lambda: decjax.problems.logistic_regression(64, 1), "num_classes"),
        "replicate-zero": (lambda: decjax.replicate(jnp.zeros(3), 0), "n"),
        "replicate-string": (lambda: decjax.replicate(jnp.zeros(3), "4"), "n"),
        # -- simulate ------------------------------------------------------------------
        "sim-loss-string": (lambda: _sim(loss_fn="loss"), "loss_fn"),
        "sim-tx-string": (lambda: _sim(tx="sgd"), "tx"),
        "sim-params-empty": (lambda: _sim(params={}), "params"),
        "sim-params-scalar": (lambda: _sim(params=jnp.zeros(())), "params"),
        "sim-params-int": (lambda: _sim(params=jnp.zeros((N, 3), jnp.int32)), "floating"),
        "sim-params-complex": (lambda: _sim(params=jnp.zeros((N, 3), jnp.complex64)), "floating"),
        "sim-params-nan": (lambda: _sim(params=jnp.full((N, 3), jnp.nan)), "NaN"),
        "sim-params-other-n": (lambda: _sim(params=jnp.zeros((4, 3))), "n="),
        "sim-data-nan": (
            lambda: _sim(data=(_quad().a, jnp.full((N, 3), jnp.nan))),
            "NaN",
        ),
        "sim-steps-zero": (lambda: _sim(steps=0), "steps"),
        "sim-steps-float": (lambda: _sim(steps=1.5), "steps"),
        "sim-steps-string": (lambda: _sim(steps="10"), "steps"),
        "sim-key-none": (lambda: _sim(key=None), "key"),
        "sim-key-string": (lambda: _sim(key="0"), "key"),
        "sim-key-negative": (lambda: _sim(key=-1), "key"),
        "sim-key-float-array": (lambda: _sim(key=jnp.zeros(2)), "key"),
        "sim-key-batch": (lambda: _sim(key=jax.random.split(KEY, 2)), "one key"),
        "sim-batch-size-full-batch": (lambda: _sim(batch_size=4), "batch_size"),
        "sim-batch-size-missing": (lambda: _digits_sim(batch_size=None), "batch_size"),
        "sim-batch-size-zero": (lambda: _digits_sim(batch_size=0), "batch_size"),
        "sim-worker-data-other-n": (
            lambda: _digits_sim(
                data=decjax.data.distribute(decjax.data.load_digits(), 4, "iid", key=0)
            ),
            "partitioned over 4",
        ),
        "sim-eval-every-zero": (lambda: _sim(eval_every=0), "eval_every"),
        "sim-eval-every-checkpoint": (
            lambda: _sim(eval_every=3, checkpoint_dir=tempfile.mkdtemp()),
            "with checkpoint_dir, steps (10) must be a multiple of eval_every (3)",
        ),
        "make-run-eval-every-divides": (
            lambda: decjax.make_run(
                _quad().loss, lambda: decjax.dpsgd(0.1, decjax.ring(N)), steps=10, eval_every=3
            ),
            "make_run: steps (10) must be a multiple of eval_every (3)",
        ),
        "sim-eval-fn-string": (lambda: _sim(eval_fn="accuracy"), "eval_fn"),
        "sim-eval-fn-list": (lambda: _sim(eval_fn=_eval_list), "eval_fn"),
        "sim-eval-fn-without-data": (
            lambda: _digits_sim(eval_fn=decjax.problems.logistic_regression(64, 10).eval_fn),
            "eval_data",
        ),
        "sim-loss-vector": (lambda: _sim(loss_fn=lambda p, b: p * b[0]), "loss_fn"),
        "sim-chunks-zero": (lambda: _sim(chunks=0), "chunks"),
        "sim-chunks-divide": (lambda: _sim(chunks=3, eval_every=1), "chunks"),
        "sim-divergence": (lambda: _sim(on_divergence="warn"), "on_divergence"),
        "sim-checkpoint-int": (lambda: _sim(checkpoint_dir=123), "checkpoint_dir"),
        "sim-checkpoint-every": (
            lambda: _sim(checkpoint_dir="/tmp/decjax-probe", checkpoint_every=0),
            "checkpoint_every",
        ),
        "sim-run-id-int": (lambda: _sim(checkpoint_dir="/tmp/decjax-probe", run_id=5), "run_id"),
        "sim-callback": (lambda: _sim(callback="print"), "callback"),
        "sim-mesh-string": (lambda: _sim(mesh="cpu"), "mesh"),
        "sim-mesh-multiple": (
            lambda: _sim(
                params=jnp.zeros((6, 3)),
                data=decjax.problems.quadratics(6, 3, key=KEY).data,
                tx=decjax.dpsgd(0.1, decjax.ring(6)),
                mesh=decjax.distributed.worker_mesh(),
            ),
            "multiple of the number of devices",
        ),
        "sim-worker-chunks-zero": (lambda: _sim(worker_chunks=0), "worker_chunks"),
        "sim-worker-chunks-divide": (lambda: _sim(worker_chunks=3), "worker_chunks"),
        "sim-steps-per-iteration": (lambda: _sim(steps_per_iteration=0), "steps_per_iteration"),
        "sim-tx-other-n": (lambda: _sim(tx=decjax.dpsgd(0.1, decjax.ring(4))), "n"),
        # -- sweep -----------------------------------------------------------------------
        "sweep-make-tx-string": (lambda: _sweep(make_tx="dpsgd"), "make_tx"),
        "sweep-grid-empty": (lambda: _sweep(grid={}), "grid"),
        "sweep-grid-list": (lambda: _sweep(grid=[0.1]), "grid"),
        "sweep-grid-empty-values": (lambda: _sweep(grid={"learning_rate": []}), "grid"),
        "sweep-grid-string-values": (lambda: _sweep(grid={"learning_rate": "0.1"}), "grid"),
        "sweep-grid-mixed": (lambda: _sweep(grid={"learning_rate": [0.1, "a"]}), "grid"),
        "sweep-grid-topology-n": (
            lambda: _sweep(
                grid={"topology": [decjax.ring(N), decjax.ring(4)]},
                make_tx=lambda topology: decjax.dpsgd(0.1, topology),
            ),
            "n=8",
        ),
        "sweep-seed-negative": (lambda: _sweep(grid={"seed": [-1]}), "seed"),
        "sweep-seed-float": (lambda: _sweep(grid={"seed": [0.5]}), "seed"),
        "sweep-unknown-name": (lambda: _sweep(grid={"lr": [0.1]}), "make_tx"),
        "sweep-bad-value": (lambda: _sweep(grid={"learning_rate": [-0.1]}), "learning_rate"),
        "sweep-key": (lambda: _sweep_key(), "key"),
        "make-run-steps": (lambda: decjax.make_run(_quad().loss, lambda: None, steps=0), "steps"),
        "make-run-loss": (
            lambda: decjax.make_run("loss", lambda: decjax.dpsgd(0.1, decjax.ring(N)), steps=5),
            "loss_fn",
        ),
        # -- distributed -----------------------------------------------------------------
        "mesh-empty": (lambda: decjax.distributed.worker_mesh([]), "devices"),
        "shard-workers-multiple": (
            lambda: decjax.distributed.shard_workers(
                jnp.zeros((6, 2)), decjax.distributed.worker_mesh()
            ),
            "multiple",
        ),
        "initialize-rank": (
            lambda: decjax.distributed.initialize("localhost:1", num_processes=2, process_id=2),
            "process_id",
        ),
        "spectrum-not-topology": (
            lambda: decjax.topology.spectrum.circulant_eigenvalues("ring"),
            "topology",
        ),
        "spectrum-stack": (
            lambda: decjax.topology.spectrum.is_symmetric(
                decjax.topology.stack([decjax.ring(4)] * 2)
            ),
            "stack",
        ),
        "place-mesh": (
            lambda: decjax.distributed.place(jnp.zeros(2), "cpu", jax.sharding.PartitionSpec()),
            "mesh",
        ),
        "worker-specs-mesh": (
            lambda: decjax.distributed.worker_specs(jnp.zeros((8, 2)), 8, "workers"),
            "mesh",
        ),
    }
)

# -- simulated time and the DiLoCo family -------------------------------------------------
_T = decjax.timing
CASES.update(
    {
        "network-bandwidth-zero": (lambda: _T.Network(bandwidth=0.0), "bandwidth must be > 0"),
        "network-bandwidth-text": (lambda: _T.Network(bandwidth="fast"), "bandwidth must be a"),
        "network-latency-nan": (lambda: _T.Network(latency=math.nan), "latency must be >= 0"),
        "network-latency-inf": (lambda: _T.Network(latency=math.inf), "and finite"),
        "network-latency-shape": (lambda: _T.Network(latency=np.zeros((2, 3))), "(n, n)"),
        "network-port-matrix": (
            lambda: _T.Network(port_bandwidth=np.ones((2, 2))),
            "port_bandwidth must be a scalar",
        ),
        "compute-negative": (lambda: _T.Compute(-1.0), "Compute.seconds"),
        "compute-law": (lambda: _T.Compute(0.1, law="gauss"), "Compute.law"),
        "compute-spread": (lambda: _T.Compute(0.1, law="uniform", spread=1.5), "spread"),
        "compute-key": (lambda: _T.Compute(0.1, law="exponential", key="k"), "key"),
        "time-model-network": (lambda: _T.TimeModel(network=1e9), "network must be"),
        "time-model-overlap": (lambda: _T.TimeModel(overlap="yes"), "overlap"),
        "time-model-scale": (lambda: _T.TimeModel(message_scale=0), "message_scale"),
        "cluster-zero": (lambda: _T.cluster(0), "nodes must be >= 1"),
        "gbps-negative": (lambda: _T.gbps(-1.0), "gigabits_per_second must be > 0"),
        "gbps-text": (lambda: _T.gbps("fast"), "gigabits_per_second"),
        "message-pattern-topology": (lambda: _T.message_pattern("ring"), "topology must be"),
        "backends-for-unknown": (
            lambda: decjax.topology.backends_for("ring"),
            "unknown kind 'ring'",
        ),
        "traffic-plus-unlike": (
            lambda: decjax.gossip.Traffic(allreduce=1.0).plus(decjax.gossip.Traffic()),
            "cannot add a Traffic with allreduce to one without",
        ),
        "step-time-a-dict": (
            lambda: _T.TimeModel().step_time({"link_bytes": 1.0}, 0, 4),
            "step_time reads a decjax.gossip.Traffic",
        ),
        "event-schedule-model": (
            lambda: _T.event_schedule("x", np.ones((4, 4)), 100.0, 10),
            "model must be",
        ),
        "event-schedule-updates": (
            lambda: _T.event_schedule(_T.TimeModel(), np.ones((4, 4)), 100.0, 0),
            "updates",
        ),
        "event-schedule-bytes": (
            lambda: _T.event_schedule(_T.TimeModel(), np.ones((4, 4)), -1.0, 10),
            "message_bytes",
        ),
        "event-schedule-pattern": (
            lambda: _T.event_schedule(_T.TimeModel(), np.ones((4, 3)), 100.0, 10),
            "pattern must be an (n, n) matrix",
        ),
        "simulate-timing-type": (lambda: _sim(timing="fast"), "timing must be"),
        "simulate-timing-size": (
            lambda: _sim(timing=_T.TimeModel(_T.Network(latency=np.zeros(3)))),
            "has 3 entries",
        ),
        "simulate-timing-compute-size": (
            lambda: _sim(timing=_T.TimeModel(compute=np.ones(5))),
            "Compute.seconds has 5 workers",
        ),
        "simulate-timing-label": (lambda: _sim(timing={"a b": _T.TimeModel()}), "timing labels"),
        "simulate-timing-value": (lambda: _sim(timing={"a": 1.0}), "timing['a'] must be"),
        "network-delays-model": (
            lambda: decjax.timing.network_delays("x", 1000, decjax.ring(N)),
            "model must be",
        ),
        "network-delays-tick": (
            lambda: decjax.timing.network_delays(_T.TimeModel(), 1000, decjax.ring(N)),
            "tick must be > 0",
        ),
        "diloco-every-zero": (lambda: decjax.diloco(optax.sgd(0.1), every=0), "every"),
        "diloco-inner": (lambda: decjax.diloco("sgd", every=4), "inner must be"),
        "diloco-outer": (lambda: decjax.diloco(optax.sgd(0.1), 4, outer=0.7), "outer must be"),
        "diloco-compressor": (
            lambda: decjax.diloco(optax.sgd(0.1), 4, compressor="qsgd"),
            "compressor must be",
        ),
        "gossip-diloco-topology": (
            lambda: decjax.gossip_diloco(optax.sgd(0.1), "ring", every=4),
            "topology must be",
        ),
        "streaming-overlap": (
            lambda: decjax.streaming_diloco(optax.sgd(0.1), 4, overlap=4),
            "overlap (4) must be less than every (4)",
        ),
        "streaming-fragments": (
            lambda: decjax.streaming_diloco(optax.sgd(0.1), 4, fragments=8),
            "fragments (8) must be at most every (4)",
        ),
        "streaming-alpha": (
            lambda: decjax.streaming_diloco(optax.sgd(0.1), 4, alpha=-0.5),
            "alpha",
        ),
        "result-reaches-x": (
            lambda: decjax.SimulationResult(
                steps=np.arange(1, 3), metrics={"a": np.zeros(2)}, state=None
            ).reaches("a", 1.0, x="epoch"),
            "x must be",
        ),
        "result-plot-time": (
            lambda: decjax.SimulationResult(
                steps=np.arange(1, 3), metrics={"a": np.zeros(2)}, state=None
            ).reaches("a", 1.0),
            "needs simulated time",
        ),
    }
)


# -- the surfaces the integrity review probed (issue 24) ------------------------------------
_FILES = pathlib.Path(tempfile.mkdtemp(prefix="decjax-probe-"))


def _cifar(classes=10, label=200, damage=None):
    """A CIFAR binary folder with one bad label byte (or an empty/truncated first file)."""
    folder = _FILES / f"cifar{classes}-{label}-{damage}"
    folder.mkdir(exist_ok=True)
    names = ["train.bin", "test.bin"]
    if classes == 10:
        names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    label_bytes = 1 if classes == 10 else 2
    for name in names:
        records = np.zeros((4, label_bytes + 3072), np.uint8)
        records[2, label_bytes - 1] = label if name == names[0] else 0
        data = records.tobytes()
        if name == names[0] and damage == "empty":
            data = b""
        elif name == names[0] and damage == "truncated":
            data = data[:-100]
        (folder / name).write_bytes(data)
    return folder


def _mnist(label=200):
    folder = _FILES / f"mnist-{label}"
    folder.mkdir(exist_ok=True)
    for prefix, count in (("train", 6), ("t10k", 3)):
        images = bytes([0, 0, 8, 3]) + np.array([count, 28, 28], ">u4").tobytes()
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(images + bytes(count * 784))
        labels = np.zeros(count, np.uint8)
        labels[1] = label
        header = bytes([0, 0, 8, 1]) + np.array([count], ">u4").tobytes()
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(header + labels.tobytes())
    return folder


def _npz(name="ok", **arrays):
    path = _FILES / f"{name}.npz"
    base = {"x_train": np.zeros((20, 2)), "y_train": np.arange(20) % 2}
    base |= {"x_test": np.zeros((4, 2)), "y_test": np.arange(4) % 2}
    np.savez(path, **{**base, **arrays})
    return path


def _text(name, data: bytes):
    path = _FILES / name
    path.write_bytes(data)
    return path


def _push_digraph(n=N):
    """A directed ring with one extra edge: out-degrees differ, so column-stochastic only."""
    edges = [(i, (i + 1) % n) for i in range(n)] + [(0, 2)]
    return decjax.topology.from_digraph(nx.DiGraph(edges))


def _row_only(n=N):
    """Rows sum to one, columns do not (epidemic learning's receivers average)."""
    return decjax.topology.epidemic(n, 2, key=KEY)


def _neither(n=N):
    w = np.eye(n) * 0.5 + np.roll(np.eye(n), 1, axis=1) * 0.3
    return decjax.from_matrix(w, require_doubly_stochastic=False)


def _classifier_sim(model, data, **kwargs):
    return decjax.simulate(
        model.loss,
        decjax.replicate(model.init(KEY), N),
        decjax.dpsgd(0.1, decjax.ring(N)),
        data,
        steps=4,
        key=KEY,
        progress=False,
        **kwargs,
    )


def _text_data(ids, context):
    """Token windows (x: ids, y: the next ones) stacked per worker as a full batch."""
    x = jnp.asarray(ids, jnp.int32).reshape(N, 1, context)
    return x, x


def _digits_data():
    return decjax.data.distribute(decjax.data.load_digits(), N, "iid", key=0)


_TINY_LM = {"context": 8, "layers": 1, "width": 8, "heads": 1}

CASES.update(
    {
        # labels out of range, at load time (file and index named) and before training
        "cifar-label-200": (lambda: decjax.data.load_cifar(_cifar()), "label"),
        "cifar100-fine-150": (
            lambda: decjax.data.load_cifar(_cifar(100, 150), classes=100),
            "is 150: labels must be in [0, 100)",
        ),
        "cifar-empty-file": (
            lambda: decjax.data.load_cifar(_cifar(damage="empty")),
            "empty or truncated",
        ),
        "cifar-truncated": (
            lambda: decjax.data.load_cifar(_cifar(damage="truncated")),
            "not a whole number of 3073-byte records",
        ),
        "mnist-label-200": (lambda: decjax.data.load_mnist(_mnist()), "labels must be in [0, 10)"),
        "npz-label-huge": (
            lambda: decjax.data.load_npz(_npz("huge", y_train=np.r_[np.arange(19) % 2, 10**6])),
            "y_train[19] is 1000000",
        ),
        "npz-nan-features": (
            lambda: decjax.data.load_npz(_npz("nan", x_train=np.full((20, 2), np.nan))),
            "inputs must be finite",
        ),
        "npz-inf-features": (
            lambda: decjax.data.load_npz(_npz("inf", x_test=np.full((4, 2), np.inf))),
            "x_test holds inf",
        ),
        "npz-complex-features": (
            lambda: decjax.data.load_npz(_npz("complex", x_train=np.zeros((20, 2)) + 1j)),
            "must hold real numbers",
        ),
        "npz-not-a-zip": (
            lambda: decjax.data.load_npz(_text("fake.npz", b"not a zip")),
            "not a readable .npz",
        ),
        "from-arrays-negative-label": (
            lambda: decjax.data.from_arrays(np.zeros((10, 2)), np.r_[np.zeros(9, int), -1]),
            "labels must be >= 0",
        ),
        "from-arrays-label-above-classes": (
            lambda: decjax.data.from_arrays(
                np.zeros((10, 2)),
                np.arange(10) % 3,
                x_test=np.zeros((2, 2)),
                y_test=[0, 1],
                num_classes=2,
            ),
            "y[2] is 2: labels must be in [0, 2)",
        ),
        "from-arrays-empty": (
            lambda: decjax.data.from_arrays(np.zeros((0, 2)), np.zeros(0, int)),
            "at least one example",
        ),
        "distribute-label-above-classes": (
            lambda: decjax.data.distribute(
                decjax.data.Dataset(
                    jnp.zeros((16, 2)),
                    jnp.arange(16) % 12,
                    jnp.zeros((2, 2)),
                    jnp.zeros(2, jnp.int32),
                    10,
                ),
                4,
                key=0,
            ),
            "labels must be in [0, 10)",
        ),
        "text-binary": (
            lambda: decjax.data.load_text(_text("binary.txt", bytes([0xFF, 0xFE, 0x00] * 50))),
            "is not UTF-8 text",
        ),
        "text-one-character": (
            lambda: decjax.data.load_text(_text("one.txt", b"a" * 500), context=4),
            "at least 2",
        ),
        "synthetic-empty-shape": (
            lambda: decjax.data.synthetic_images(shape=(0, 4, 3)),
            "shape must be >= 1",
        ),
        "synthetic-nan-noise": (lambda: decjax.data.synthetic_images(noise=math.nan), "noise"),
        "synthetic-negative-noise": (lambda: decjax.data.synthetic_images(noise=-1.0), "noise"),
        "synthetic-shape-text": (lambda: decjax.data.synthetic_images(shape="32x32"), "shape"),
        # the model and the data do not fit: refused before compiling
        "sim-model-fewer-classes": (
            lambda: _classifier_sim(decjax.problems.mlp([64, 8, 5]), _digits_data(), batch_size=4),
            "the labels go up to 9 but the model has 5 outputs",
        ),
        "sim-lenet5-five-classes": (
            lambda: _classifier_sim(
                decjax.problems.lenet5(5),
                (jnp.zeros((N, 2, 28, 28, 1)), jnp.tile(jnp.arange(2) + 8, (N, 1))),
            ),
            "the model has 5 outputs",
        ),
        "sim-transformer-beyond-context": (
            lambda: _classifier_sim(
                decjax.problems.transformer_lm(16, **_TINY_LM), _text_data(np.zeros(N * 9), 9)
            ),
            "longer than the transformer's context (8)",
        ),
        "sim-transformer-beyond-vocabulary": (
            lambda: _classifier_sim(
                decjax.problems.transformer_lm(16, **_TINY_LM),
                _text_data(np.arange(N * 8) % 20, 8),
            ),
            "the labels go up to 19 but the model has 16 outputs",
        ),
        "sim-nan-eval-data": (
            lambda: _digits_sim(
                eval_fn=lambda p, d: {"x": jnp.sum(d)}, eval_data=jnp.full(3, jnp.nan)
            ),
            "eval_data contains NaN",
        ),
        # NaN, negative and too-long hyperparameters
        "decentralize-sgd-nan": (
            lambda: decjax.decentralize(optax.sgd(math.nan), decjax.ring(N)),
            "step_size=nan",
        ),
        "decentralize-adam-nan": (
            lambda: decjax.decentralize(optax.adam(math.nan), decjax.ring(N)),
            "a NaN or infinite hyperparameter",
        ),
        "local-then-inf": (
            lambda: decjax.algorithms.local_then(
                optax.sgd(math.inf), decjax.combine(decjax.ring(N))
            ),
            "the local optimizer holds",
        ),
        "diloco-inner-nan": (
            lambda: decjax.diloco(optax.sgd(math.nan), every=4),
            "a NaN or infinite hyperparameter",
        ),
        "sim-schedule-negative": (
            lambda: _sim(tx=decjax.dpsgd(lambda c: 0.1 - 0.02 * c, decjax.ring(N))),
            "schedule returns -0.0",
        ),
        "sim-schedule-nan": (
            lambda: _sim(
                tx=decjax.decentralize(
                    optax.sgd(lambda c: jnp.where(c > 3, jnp.nan, 0.1)), decjax.ring(N)
                )
            ),
            "schedule returns nan at count 4",
        ),
        "sim-diloco-never-syncs": (
            lambda: _sim(tx=decjax.diloco(optax.sgd(0.1), every=10**9)),
            "never synchronises",
        ),
        "sim-local-sgd-never-averages": (
            lambda: _sim(tx=decjax.local_sgd(0.1, N, every=100)),
            "local_sgd(every=100) never synchronises in a run of 10 steps",
        ),
        "sweep-schedule-negative": (
            lambda: _sweep(
                make_tx=lambda learning_rate: decjax.dpsgd(
                    lambda c: learning_rate - 0.05 * c, decjax.ring(N)
                )
            ),
            "a step size must be finite and >= 0",
        ),
        # algorithms on the wrong matrix
        "sgp-row-only": (lambda: decjax.sgp(0.1, _row_only()), "needs a column-stochastic W"),
        "sgp-neither": (lambda: decjax.sgp(0.1, _neither()), "neither row- nor column"),
        "push-diging-row-only": (
            lambda: decjax.push_diging(0.1, _row_only()),
            "row- but not column-stochastic",
        ),
        "osgp-row-only": (lambda: decjax.osgp(0.1, _row_only()), "needs a column-stochastic W"),
        "dpsgd-neither": (lambda: decjax.dpsgd(0.1, _neither()), "needs a row-stochastic W"),
        "gradient-tracking-row-only": (
            lambda: decjax.gradient_tracking(0.1, _row_only()),
            "needs a doubly-stochastic W",
        ),
        "gradient-tracking-epidemic": (
            lambda: decjax.gradient_tracking(0.1, decjax.topology.epidemic(N, 2, key=KEY)),
            "does not conserve the workers' sum",
        ),
        "dasgd-push-digraph": (
            lambda: decjax.dasgd(0.1, _push_digraph(), delays=uniform_delay(2)),
            "column- but not row-stochastic",
        ),
        "stack-ring-and-push": (
            lambda: decjax.topology.stack([decjax.ring(N), _push_digraph()]),
            "different stochasticity cannot be stacked",
        ),
        "mix-state-push": (
            lambda: _sim(mix_model_state=_push_digraph(), model_state={}),
            "mix_model_state must average",
        ),
        "mix-step-float": (
            lambda: decjax.mix(decjax.one_peer_exponential(N), jnp.zeros(N), 1.7),
            "step must be an int",
        ),
        "mix-step-negative": (
            lambda: decjax.mix(decjax.one_peer_exponential(N), jnp.zeros(N), -1),
            "step must be in [0, 2**31)",
        ),
        "mix-step-text": (
            lambda: decjax.mix(decjax.one_peer_exponential(N), jnp.zeros(N), "3"),
            "step must be an int",
        ),
        "mix-step-float-array": (
            lambda: decjax.gossip.mix_delta(decjax.ring(N), jnp.zeros(N), jnp.float32(2)),
            "step must be an integer scalar",
        ),
        "ou-equi-dyn-eta": (lambda: decjax.topology.ou_equi_dyn(8, eta=0.0), "eta"),
        "ou-equi-dyn-one": (lambda: decjax.topology.ou_equi_dyn(1), "n must be >= 2"),
        # learned topologies
        "edge-weights-disconnected": (
            lambda: decjax.learn.EdgeWeights(nx.Graph([(0, 1), (2, 3)])),
            "graph must be connected",
        ),
        "edge-weights-from-matrix": (
            lambda: decjax.learn.EdgeWeights(nx.cycle_graph(4)).from_matrix(np.full((4, 4), 0.3)),
            "symmetric and doubly stochastic",
        ),
        "learn-nan-objective": (
            lambda: decjax.learn.learn_weights(nx.cycle_graph(4), lambda w: jnp.nan * w.sum()),
            "objective is nan",
        ),
        "consensus-objective-constant": (
            lambda: decjax.learn.consensus_objective(jnp.ones((4, 3)), 2),
            "not already at consensus",
        ),
        "label-proportions-empty": (
            lambda: decjax.learn.label_proportions(np.zeros((4, 0), int), 3),
            "at least one label",
        ),
        "label-proportions-range": (
            lambda: decjax.learn.label_proportions(np.full((4, 2), 5), 3),
            "labels must be in [0, 3)",
        ),
        # the clock: float32's range, types, ignored options, the schedule's size
        "network-bandwidth-tiny": (lambda: _T.Network(bandwidth=1e-300), "outside float32's range"),
        "network-latency-huge": (lambda: _T.Network(latency=1e300), "outside float32's range"),
        "compute-seconds-huge": (lambda: _T.Compute(1e300), "outside float32's range"),
        "compute-seconds-text": (lambda: _T.Compute("0.1"), "must be a number"),
        "compute-spread-ignored": (
            lambda: _T.Compute(0.1, law="exponential", spread=0.5),
            "would ignore it",
        ),
        "compute-spread-without-law": (lambda: _T.Compute(0.1, spread=0.5), "would ignore it"),
        "time-model-scale-huge": (
            lambda: _T.TimeModel(message_scale=1e40),
            "outside float32's range",
        ),
        "time-model-scale-bool": (lambda: _T.TimeModel(message_scale=True), "message_scale"),
        "cluster-bool": (lambda: _T.cluster(nodes=True), "nodes must be an int"),
        "event-schedule-nan": (
            lambda: _T.event_schedule(_T.TimeModel(), np.full((4, 4), np.nan), 100.0, 10),
            "pattern must be finite",
        ),
        "event-schedule-huge": (
            lambda: _T.event_schedule(_T.TimeModel(), np.ones((64, 64)), 100.0, 10**7),
            "ask for fewer updates",
        ),
        # options: booleans are booleans, a callback is checked before compiling
        "sim-overwrite-text": (lambda: _sim(overwrite="no"), "overwrite must be a bool"),
        "sim-progress-text": (lambda: _sim(progress="no"), "progress must be a bool"),
        "sim-eval-workers-text": (lambda: _sim(eval_workers="no"), "eval_workers must be a bool"),
        "sim-callback-arity": (
            lambda: _sim(callback=lambda step: None),
            "callback must accept (step, metrics)",
        ),
        "sweep-grid-overflow": (
            lambda: _sweep(grid={"learning_rate": [1e300]}),
            "outside float32's range",
        ),
        "sim-checkpoint-under-file": (
            lambda: _sim(checkpoint_dir=_text("a-file", b"x") / "sub" / "dir"),
            "cannot be created",
        ),
        "seed-too-large": (lambda: _sim(key=2**70), "as an int seed must be in [0, 2**63)"),
        "from-digraph-multigraph": (
            lambda: decjax.topology.from_digraph(nx.MultiDiGraph([(0, 1), (1, 0), (0, 1)])),
            "must be a simple graph",
        ),
        "from-networkx-multigraph": (
            lambda: decjax.from_networkx(nx.MultiGraph([(0, 1), (1, 2), (2, 0), (0, 1)])),
            "must be a simple graph",
        ),
        "realized-matrices-topology": (
            lambda: decjax.topology.realized_matrices("ring", range(3)),
            "topology must be",
        ),
        # the zoo
        "quadratics-infinite-curvature": (
            lambda: decjax.problems.quadratics(N, 2, curvature=(1, math.inf), key=KEY),
            "curvature[1] must be > 0",
        ),
        "quadratics-curvature-scalar": (
            lambda: decjax.problems.quadratics(N, 2, curvature=1.0, key=KEY),
            "curvature must be",
        ),
        "from-nnx-negative-l2": (
            lambda: decjax.problems.from_nnx(lambda rngs: None, l2=-1.0),
            "l2 must be >= 0",
        ),
        "from-nnx-array": (
            lambda: decjax.problems.from_nnx(lambda rngs: jnp.zeros(3)),
            "must return a flax nnx.Module",
        ),
        "parameter-count-none": (
            lambda: decjax.problems.parameter_count(None),
            "params must be a non-empty pytree",
        ),
        "from-nnx-loss-text": (
            lambda: decjax.problems.from_nnx(lambda rngs: None, loss="mse"),
            "loss must be callable",
        ),
        "to-nnx-worker-text": (
            lambda: decjax.problems.to_nnx(
                lambda rngs: __import__("flax").nnx.Linear(2, 2, rngs=rngs),
                {"kernel": jnp.zeros((3, 2, 2)), "bias": jnp.zeros((3, 2))},
                worker="first",
            ),
            'worker must be None, a worker index or "mean"',
        ),
        "compare-empty": (lambda: decjax.compare({}), "non-empty"),
        "compare-not-a-result": (lambda: decjax.compare({"a": 1.0}), "is a float, not a result"),
        "per-record-eval-every-zero": (
            lambda: decjax.monitor.per_record(print, eval_every=0),
            "eval_every must be",
        ),
        "tensorboard-eval-every-text": (
            lambda: decjax.monitor.TensorBoard("runs/x", eval_every="50"),
            "eval_every must be",
        ),
    }
)


# -- every public callable has a case (test_every_public_callable_has_a_case) -----------
def _mesh():
    return decjax.distributed.worker_mesh()


# -- decjax.privacy ------------------------------------------------------------------------
_P = decjax.privacy


def _digits_data():
    return decjax.data.distribute(decjax.data.load_digits(), N, key=0)


def _sim_private(clip, **overrides):
    return _sim(privacy=clip, **overrides)


CASES.update(
    {
        "dpsgd-gossip-momentum": (
            lambda: decjax.dpsgd(0.1, decjax.ring(N), rounds=3, gossip_momentum=1.5),
            "gossip_momentum must be in",
        ),
        "heterogeneity-loss": (
            lambda: decjax.data.heterogeneity("loss", jnp.zeros(2), jnp.zeros((N, 3, 2))),
            "loss_fn",
        ),
        "heterogeneity-sample": (
            lambda: decjax.data.heterogeneity(
                lambda p, b: jnp.sum(p), jnp.zeros(2), _digits_data(), sample=0
            ),
            "sample must be >= 1",
        ),
        "neighbourhood-heterogeneity-rows": (
            lambda: decjax.learn.neighbourhood_heterogeneity(decjax.ring(N), np.eye(3)),
            "proportions has 3 rows",
        ),
        "clip-zero": (lambda: _P.Clip(0.0), "clip_norm must be > 0"),
        "clip-noise-negative": (lambda: _P.Clip(1.0, noise_multiplier=-1), "noise_multiplier"),
        "clip-delta-one": (lambda: _P.Clip(1.0, delta=1.0), "delta must be in"),
        "clip-budget-spent": (
            lambda: _sim_private(
                _P.Clip(1.0, noise_multiplier=0.1, epsilon_budget=0.01, accountant="rdp")
            ),
            "spent by the first step",
        ),
        "clip-not-a-clip": (lambda: _sim_private(0.5), "privacy must be a decjax.privacy.Clip"),
        "clip-zero-sum-size": (
            lambda: _sim_private(_P.Clip(1.0, zero_sum=_P.ZeroSum.on(decjax.ring(4), 1.0))),
            "pairs 4 workers",
        ),
        "zero-sum-topology": (lambda: _P.ZeroSum.on("ring", 1.0), "topology must be"),
        "zero-sum-noise-pairs": (
            lambda: _P.zero_sum_noise("ring", jnp.zeros((N, 2)), KEY, 1.0),
            "pairs must be",
        ),
        "epsilon-steps": (lambda: _P.epsilon(-1, 1.0, delta=1e-5), "steps must be >= 0"),
        "epsilon-curve-order": (
            lambda: _P.epsilon_curve([3, 1], 1.0, delta=1e-5),
            "non-decreasing",
        ),
        "steps-within-budget": (lambda: _P.steps_within(0.0, 10, 1.0, delta=1e-5), "budget"),
        "per-example-loss": (
            lambda: _P.per_example_gradients("loss", jnp.zeros(2), jnp.zeros((3, 2))),
            "loss_fn",
        ),
        "clip-per-example-zero": (lambda: _P.clip_per_example(jnp.ones((2, 3)), 0.0), "clip"),
        "private-gradient-noise": (
            lambda: _P.private_gradient(
                lambda w, b: jnp.sum(w),
                jnp.zeros(2),
                jnp.zeros((3, 2)),
                KEY,
                clip_norm=1.0,
                noise_multiplier=-1.0,
            ),
            "noise_multiplier",
        ),
        "pairwise-directed": (
            lambda: _P.pairwise_epsilon(decjax.exponential(N), 3, 1.0, 2.0),
            "not symmetric",
        ),
        "gd-pairwise-noise": (
            lambda: _P.gd_pairwise_epsilon(decjax.ring(N), 3, 10, 0.0, 1e-5),
            "noise_multiplier must be > 0",
        ),
        "by-distance-shape": (lambda: _P.by_distance(np.zeros((3, 3)), decjax.ring(N)), "matrix"),
        "local-epsilon-alpha": (lambda: _P.local_epsilon(1.0, 1.0), "alpha must be in"),
        "rdp-to-dp-delta": (lambda: _P.rdp_to_dp(1.0, 2.0, 0.0), "delta must be in"),
        "decor-variance-epsilon": (
            lambda: _P.decor_variance(0.0, 1e-5, 10, 1.0),
            "epsilon must be > 0",
        ),
        "encode-overflow": (lambda: _P.encode(np.array([1e9])), "overflow"),
        "decode-floats": (lambda: _P.decode(np.array([1.5])), "words must be uint32"),
        "secure-sums-shape": (
            lambda: _P.secure_neighbour_sums(np.zeros((3, 2)), decjax.ring(N), 0),
            "values must be",
        ),
        "knowledge-view": (
            lambda: _P.knowledge_matrix(decjax.ring(N), [0], 2, view="all"),
            "view",
        ),
        "reconstructed-attackers": (
            lambda: _P.reconstructed(decjax.ring(N), [N + 3], 2),
            "attackers must be",
        ),
    }
)


CASES.update(
    {
        "evaluation-every": (lambda: decjax.Evaluation(every=0), "Evaluation.every"),
        "evaluation-workers": (lambda: decjax.Evaluation(workers="yes"), "Evaluation.workers"),
        "checkpointing-dir": (lambda: decjax.Checkpointing(dir=3), "Checkpointing.dir"),
        "checkpointing-overwrite": (
            lambda: decjax.Checkpointing(overwrite="no"),
            "Checkpointing.overwrite",
        ),
        "execution-chunks": (lambda: decjax.Execution(chunks=0), "Execution.chunks"),
        "execution-worker-chunks": (
            lambda: decjax.Execution(worker_chunks="many"),
            "Execution.worker_chunks",
        ),
        "fixed-delay-negative": (lambda: decjax.algorithms.fixed_delay(-1), "delay"),
        "geometric-delay-p": (lambda: decjax.algorithms.geometric_delay(1.5, 4), "p"),
        "per-link-delay-shape": (
            lambda: decjax.algorithms.per_link_delay(np.zeros((3, 4), int)),
            "delays",
        ),
        "per-link-delay-negative": (
            lambda: decjax.algorithms.per_link_delay(-np.ones((4, 4), int)),
            "delays",
        ),
        "nesterov-outer-lr": (lambda: decjax.algorithms.nesterov_outer(-0.7), "learning_rate"),
        "reference-target-empty": (
            lambda: decjax.algorithms.reference_target([], []),
            "steps and values",
        ),
        "apply-step-tx": (
            lambda: decjax.algorithms.apply_step("sgd", jnp.zeros(N), None, jnp.zeros(N)),
            "tx must be",
        ),
        "from-step-init": (lambda: decjax.algorithms.from_step(None, None), "init"),
        "consensus-distance-empty": (lambda: decjax.consensus_distance({}), "at least one leaf"),
        "worker-mean-scalar": (lambda: decjax.worker_mean(jnp.float32(1.0)), "leading"),
        "augmented-loss": (lambda: decjax.data.augmented("loss"), "loss_fn must be callable"),
        "random-crop-flip-shape": (
            lambda: decjax.data.random_crop_flip(jnp.zeros((4, 8)), KEY),
            "images",
        ),
        "random-crop-flip-padding": (
            lambda: decjax.data.random_crop_flip(jnp.zeros((4, 8, 8, 3)), KEY, padding=-1),
            "padding",
        ),
        "sample-batch-size": (
            lambda: decjax.data.sample_batch(_digits_data(), KEY, 0),
            "batch_size must be >= 1",
        ),
        "sample-batch-data": (
            lambda: decjax.data.sample_batch((1, 2), KEY, 4),
            "data must be a decjax.data.WorkerData",
        ),
        "gather-batch-data": (
            lambda: decjax.data.gather_batch("data", None, None, None, 4),
            "data must be a decjax.data.WorkerData",
        ),
        "worker-keys-n": (lambda: decjax.data.worker_keys(KEY, 0), "n must be >= 1"),
        "label-histogram-classes": (
            lambda: decjax.data.label_histogram(
                np.arange(16) % 4, decjax.data.partition(np.arange(16) % 4, 4, key=0), 2
            ),
            "labels must be in [0, 2)",
        ),
        "load-mnist1d-samples": (lambda: decjax.data.load_mnist1d(5), "num_samples"),
        "check-workers-n": (
            lambda: decjax.distributed.check_workers(12, _mesh()),
            "must be a multiple of the number of devices",
        ),
        "data-specs-n": (
            lambda: decjax.distributed.data_specs(jnp.zeros((4, 2)), 8, _mesh()),
            "leading axis n=8",
        ),
        "mesh-size-mesh": (lambda: decjax.distributed.mesh_size("mesh"), "mesh"),
        "place-replicated-mesh": (
            lambda: decjax.distributed.place_replicated(jnp.zeros(3), "mesh"),
            "mesh",
        ),
        "sharded-fn": (
            lambda: decjax.distributed.sharded("f", _mesh(), 8, (), ()),
            "fn must be callable",
        ),
        "state-specs-state": (
            lambda: decjax.distributed.state_specs({"params": 1}, 8, _mesh()),
            "RunState",
        ),
        "links-of-topology": (lambda: decjax.gossip.Links.of("ring", 0, 1.0), "topology must be"),
        "links-plus-phases": (
            lambda: decjax.gossip.Links.of(decjax.ring(N), 0, 1.0).plus(
                decjax.gossip.Links.of(decjax.ring(N), 0, 1.0, phases=2)
            ),
            "cannot add 2 phases to 1",
        ),
        "accelerated-mix-momentum": (
            lambda: decjax.gossip.accelerated_mix(
                decjax.ring(N), jnp.zeros(N), rounds=2, momentum=2.0
            ),
            "momentum",
        ),
        "accelerated-step-topology": (
            lambda: decjax.gossip.accelerated_step("ring", jnp.zeros(N), jnp.zeros(N), 0, 0.1),
            "topology must be",
        ),
        "bytes-per-round-vectors": (
            lambda: decjax.gossip.bytes_per_round(decjax.ring(N), jnp.zeros(N), vectors=0),
            "vectors must be >= 1",
        ),
        "link-bytes-rounds": (
            lambda: decjax.gossip.link_bytes(decjax.ring(N), jnp.zeros(N), rounds=0),
            "rounds must be >= 1",
        ),
        "debias-weights": (
            lambda: decjax.gossip.debias(jnp.zeros((N, 2)), jnp.zeros(3)),
            "weights",
        ),
        "messages-per-worker-topology": (
            lambda: decjax.gossip.messages_per_worker("ring"),
            "topology must be",
        ),
        "optimal-momentum-topology": (
            lambda: decjax.gossip.optimal_momentum("ring"),
            "topology must be",
        ),
        "push-sum-average-rounds": (
            lambda: decjax.gossip.push_sum_average(decjax.ring(N), jnp.zeros(N), -1),
            "rounds must be >= 0",
        ),
        "relay-average-ring": (
            lambda: decjax.gossip.relay_average(decjax.ring(N), jnp.zeros(N)),
            "spanning tree",
        ),
        "relay-average-rounds": (
            lambda: decjax.gossip.relay_average(decjax.topology.chain(N), jnp.zeros(N), 0),
            "rounds must be >= 1",
        ),
        "relay-average-workers": (
            lambda: decjax.gossip.relay_average(decjax.topology.chain(N), jnp.zeros(N + 1)),
            "n=8 workers",
        ),
        "relay-routes-string": (lambda: decjax.gossip.relay_routes("chain"), "Topology"),
        "relay-init-ints": (
            lambda: decjax.gossip.relay_init(
                decjax.gossip.relay_routes(decjax.topology.chain(N)), jnp.zeros(N, jnp.int32)
            ),
            "floating",
        ),
        "relay-init-routes": (lambda: decjax.gossip.relay_init("routes", jnp.zeros(N)), "Routes"),
        "relay-round-state": (
            lambda: decjax.gossip.relay_round(
                decjax.gossip.relay_routes(decjax.topology.chain(N)), jnp.zeros(N), "inbox"
            ),
            "RelayState",
        ),
        "least-squares-mu": (
            lambda: decjax.problems.least_squares(8, 3, key=0, zeta2=1.0, mu=2.0),
            "mu must be below",
        ),
        "least-squares-zeta2": (
            lambda: decjax.problems.least_squares(8, 3, key=0, zeta2=-1.0),
            "zeta2",
        ),
        "least-squares-n": (lambda: decjax.problems.least_squares(1, 3, key=0, zeta2=1.0), "n"),
        "relaysum-ring": (lambda: decjax.algorithms.relaysum(decjax.ring(N)), "spanning tree"),
        "relaysgd-faulty": (
            lambda: decjax.algorithms.relaysgd(
                0.1, decjax.topology.with_faults(decjax.topology.chain(N), key=0, link_failure=0.1)
            ),
            "fixed graphs",
        ),
        "chain-zero": (lambda: decjax.topology.chain(0), "n must be >= 1"),
        "binary-tree-string": (lambda: decjax.topology.binary_tree("8"), "n must be an int"),
        "double-binary-trees-one": (
            lambda: decjax.topology.double_binary_trees(1),
            "n must be >= 2",
        ),
        "spanning-tree-string": (lambda: decjax.topology.spanning_tree("ring"), "graph must be"),
        "spanning-tree-root": (
            lambda: decjax.topology.spanning_tree(decjax.ring(N), root=N),
            "root must be",
        ),
        "tree-edges-ring": (lambda: decjax.topology.tree_edges(decjax.ring(N)), "spanning tree"),
        "resolve-backend-name": (
            lambda: decjax.gossip.resolve_backend(decjax.ring(N), "gpu"),
            "backend must be",
        ),
        "worker-bytes-scalar": (lambda: decjax.gossip.worker_bytes(jnp.float32(1.0)), "leading"),
        "heterogeneity-objective-shape": (
            lambda: decjax.learn.heterogeneity_objective(np.ones(4)),
            "proportions",
        ),
        "neighbors-objective-gamma": (lambda: decjax.learn.neighbors_objective(1.0), "gamma"),
        "traced-topology-shape": (
            lambda: decjax.learn.traced_topology(jnp.zeros((3, 4))),
            "(n, n) matrix",
        ),
        "training-objective-steps": (
            lambda: decjax.learn.training_objective(
                _quad().loss,
                _quad().init_params(),
                _quad().data,
                steps=0,
                learning_rate=0.1,
                key=KEY,
            ),
            "steps must be >= 1",
        ),
        "metrics-accumulate-keys": (
            lambda: decjax.metrics.accumulate({"a": jnp.zeros(2)}, {"b": 1.0}),
            "record lacks 'a'",
        ),
        "metrics-evaluate-fn": (
            lambda: decjax.metrics.evaluate("fn", jnp.zeros((N, 2)), None),
            "eval_fn must be callable",
        ),
        "metrics-sum-of-squares-empty": (
            lambda: decjax.metrics.sum_of_squares({}),
            "at least one leaf",
        ),
        "metrics-total-shape": (
            lambda: decjax.metrics.total(jnp.zeros(3)),
            "running total is a scalar",
        ),
        "metrics-traffic-metrics-type": (
            lambda: decjax.metrics.traffic_metrics([1.0]),
            "totals must be a dict",
        ),
        "metrics-zero-totals-type": (
            lambda: decjax.metrics.zero_totals(["bytes_sent"]),
            "info must be a dict",
        ),
        "cnn1d-classes": (lambda: decjax.problems.cnn1d(1), "num_classes"),
        "resnet20-norm": (lambda: decjax.problems.resnet20(norm="layer"), "norm"),
        "vgg11-norm": (lambda: decjax.problems.vgg11(norm="layer"), "norm"),
        "vgg11-classifier": (lambda: decjax.problems.vgg11(classifier="mlp"), "classifier"),
        "conv-strides": (
            lambda: decjax.problems.conv_general_dilated(
                jnp.zeros((1, 1, 4, 4)), jnp.zeros((1, 1, 2, 2)), (0, 1), "VALID"
            ),
            "window_strides",
        ),
        "to-networkx-topology": (lambda: decjax.to_networkx("ring"), "topology must be"),
        "fault-model-reweight": (
            lambda: decjax.topology.FaultModel(KEY, jnp.zeros(1), 0.0, down_steps=1, reweight="x"),
            "reweight",
        ),
        "faulty-base": (
            lambda: decjax.topology.Faulty(
                base=decjax.ring(N),
                model=decjax.topology.with_faults(decjax.ring(N), key=KEY).model,
                **decjax.ring(N).common_fields(),
            ),
            "Faulty wraps a sparse or dense topology",
        ),
        "complete-exchange": (
            lambda: decjax.complete(N, exchange="ring"),
            "exchange must be one of",
        ),
        "periodic-average-exchange": (
            lambda: decjax.topology.periodic_average(N, 2, exchange=None),
            "exchange must be one of",
        ),
        "base-graph-k": (lambda: decjax.topology.base_graph(8, 0), "k must be >= 1"),
        "fastest-mixing-graph": (lambda: decjax.topology.fastest_mixing("ring"), "graph must be"),
        "fault-statistics-steps": (
            lambda: decjax.topology.fault_statistics(
                decjax.topology.with_faults(decjax.ring(N), key=KEY, link_failure=0.1), []
            ),
            "steps must not be empty",
        ),
        "from-edges-node": (lambda: decjax.topology.from_edges(4, [(0, 7)]), "edges"),
        "from-neighbor-lists-shape": (
            lambda: decjax.topology.from_neighbor_lists(np.zeros((4, 2), int), np.ones((4, 3))),
            "weights",
        ),
        "directed-ring-n": (lambda: decjax.topology.directed_ring(0), "n must be >= 1"),
        "directed-exponential-n": (
            lambda: decjax.topology.directed_exponential(0),
            "n must be >= 1",
        ),
        "one-peer-directed-n": (
            lambda: decjax.topology.one_peer_directed_exponential(0),
            "n must be >= 1",
        ),
        "equi-static-degree": (lambda: decjax.topology.equi_static(8, 0), "degree must be >= 1"),
        "equi-dyn-eta": (lambda: decjax.topology.equi_dyn(8, eta=1.5), "eta"),
        "random-out-peers": (lambda: decjax.topology.random_out(8, 8, key=KEY), "s"),
        "exact-diffusion-rounds": (
            lambda: decjax.exact_diffusion(0.1, decjax.ring(N), rounds=0),
            "rounds must be >= 1",
        ),
    }
)

# Public names that take no input to get wrong: records, states and protocols (their
# constructors are NamedTuple/dataclass fields filled by decjax itself).
from decjax import byzantine as byz  # noqa: E402

CASES.update(
    {
        "byz-alie-z-nan": (lambda: byz.ALIE(math.nan), "z must be"),
        "byz-alie-z-max": (lambda: byz.alie_z(5, 5), "fewer than n"),
        "byz-ipm-eps": (lambda: byz.IPM(-1.0), "epsilon must be"),
        "byz-dissensus-eps": (lambda: byz.Dissensus(0.0), "epsilon must be"),
        "byz-gaussian-std": (lambda: byz.Gaussian(-1.0), "std must be"),
        "byz-clipping-tau": (lambda: byz.Clipping(0.0), "tau must be"),
        "byz-trimmed-b": (lambda: byz.TrimmedMean(-1), "b must be"),
        "byz-krum-f": (lambda: byz.Krum(1.5), "f must be"),
        "byz-gm-iterations": (lambda: byz.GeometricMedian(iterations=0), "iterations"),
        "byz-byzantine-attack": (lambda: byz.Byzantine((1,), "alie"), "attack must be"),
        "byz-robust-rule": (lambda: byz.Robust("median"), "rule must be"),
        "byz-place-count": (lambda: byz.place(N, N), "count must be"),
        "byz-place-by-degree-count": (
            lambda: byz.place_by_degree(decjax.ring(N), N),
            "count must be",
        ),
        "byz-csplus-b": (lambda: byz.CSPlus(-1), "b must be"),
        "byz-paper-clipping-b": (lambda: byz.PaperClipping(0.5), "b must be"),
        "privacy-clip-norm": (
            lambda: decjax.privacy.clip_per_example({"w": jnp.ones((2, 3))}, 0.0),
            "clip_norm must be",
        ),
        "privacy-noise": (
            lambda: decjax.privacy.private_gradient(
                lambda p, b: jnp.sum(p),
                jnp.ones(2),
                jnp.ones((2, 1)),
                jax.random.key(0),
                clip_norm=1.0,
                noise_multiplier=-1.0,
            ),
            "noise_multiplier must be",
        ),
        "privacy-loss-fn": (
            lambda: decjax.privacy.per_example_gradients("loss", jnp.ones(2), jnp.ones((2, 1))),
            "loss_fn",
        ),
        "privacy-delta": (lambda: decjax.privacy.epsilon(10, 1.0, delta=1.0), "delta must be"),
        "privacy-accountant": (
            lambda: decjax.privacy.epsilon(10, 1.0, delta=1e-5, accountant="moments"),
            "accountant must be",
        ),
        "byz-ios-f": (lambda: byz.IOS(1.5), "f must be"),
        "byz-label-flip-classes": (lambda: byz.LabelFlip(1), "classes must be"),
        "byz-spectral-factor": (lambda: byz.Spectral(math.nan), "factor must be"),
        "byz-fiedler-type": (
            lambda: byz.honest_fiedler(decjax.ring(N), np.ones(N, bool)),
            "honest_fiedler takes",
        ),
        "data-flip-labels-float": (
            lambda: decjax.data.flip_labels((jnp.zeros((N, 2, 3)), jnp.zeros((N, 2))), (1,), 10),
            "integer class labels",
        ),
        "data-flip-labels-range": (
            lambda: decjax.data.flip_labels(
                (jnp.zeros((N, 2, 3)), jnp.full((N, 2), 12, jnp.int32)), (1,), 10
            ),
            "labels in",
        ),
        "byz-lists-needs": (
            lambda: byz.neighbour_lists(decjax.ring(N), byz.TrimmedMean(2)),
            "at least 4",
        ),
        "byz-mix-types": (
            lambda: byz.robust_mix("robust", decjax.ring(N), jnp.zeros((N, 2)), 0),
            "robust_mix takes",
        ),
        "byz-honest-mean-type": (lambda: byz.honest_mean(jnp.zeros((N, 2)), (1,)), "byzantine"),
        "byz-honest-distance-range": (
            lambda: byz.honest_consensus_distance(
                jnp.zeros((N, 2)), byz.Byzantine((N + 1,), byz.IPM())
            ),
            "indices in",
        ),
        "metrics-masked-mean-mask": (
            lambda: decjax.metrics.masked_mean(jnp.zeros((N, 2)), np.ones(N - 1, bool)),
            "one entry per worker",
        ),
    }
)

NO_INPUT = set(
    # records, states and protocols: NamedTuple/dataclass fields that decjax itself fills
    "RunState CombineState ChocoState ChurnState ConsensusControlState DASGDState DeTAGState "
    "DiLoCoState DiffusionState GradientTrackingState OverlapState PushDIGingState "
    "PushSumState QuasiGlobalMomentumState StragglerState LowPrecisionState Info "
    "StepTransformation "
    "DecentralizedTransformation PerWorker Delays Partition WorkerData Dataset Compressor Learned "
    "SecureSums RelayState Routes RelaySumState LeastSquares "
    "Schedule Classifier StatefulClassifier Quadratics SimulationResult Topology Objective "
    # no arguments at all
    "sign identity representations SignFlip Gossip Median Attack Rule Echo NoAttack "
    # any pytree is valid: replicated specs of any leaves, host copies of any leaves
    "replicated_specs to_host".split()
)


def _sweep_key():
    q = _quad()
    return decjax.sweep(
        q.loss,
        q.init_params(),
        lambda learning_rate: decjax.dpsgd(learning_rate, decjax.ring(N)),
        q.data,
        {"learning_rate": [0.1]},
        steps=10,
        key="0",
        progress=False,
    )


CLI_CASES = {
    "cli-workers-zero": (["--workers", "0"], "positive integer"),
    "cli-workers-float": (["--workers", "2.5"], "positive integer"),
    "cli-workers-text": (["--workers", "many"], "positive integer"),
    "cli-topology-unknown": (["--topologies", "ring,moebius,x"], "unknown topology moebius, x; "),
    "cli-topology-empty": (["--topologies", ","], "unknown topology"),
    "cli-hypercube-12": (["--topologies", "hypercube", "--workers", "12"], "power of two"),
    "cli-torus-prime": (["--topologies", "torus", "--workers", "13"], "factorization"),
    "cli-algorithm": (["--algorithm", "sgd2"], "invalid choice"),
    "cli-relaysgd-ring": (
        ["--algorithm", "relaysgd", "--topologies", "chain,ring"],
        "--topologies ring is not one",
    ),
    "cli-partition": (["--partition", "random"], "invalid choice"),
    "cli-alpha-zero": (["--alpha", "0"], "finite number > 0"),
    "cli-alpha-nan": (["--alpha", "nan"], "finite number > 0"),
    "cli-model": (["--model", "resnet"], "invalid choice"),
    "cli-steps-zero": (["--steps", "0"], "positive integer"),
    "cli-steps-multiple-checkpoint": (
        ["--steps", "100", "--eval-every", "30", "--checkpoint-dir", "/tmp/decjax-never-made"],
        "must be a multiple of --eval-every",
    ),
    "cli-batch-zero": (["--batch-size", "0"], "positive integer"),
    "cli-lr-negative": (["--lr", "-1"], "finite number > 0"),
    "cli-lr-nan": (["--lr", "nan"], "finite number > 0"),
    "cli-lr-inf": (["--lr", "inf"], "finite number > 0"),
    "cli-lr-text": (["--lr", "fast"], "finite number > 0"),
    "cli-eval-every-zero": (["--eval-every", "0"], "positive integer"),
    "cli-seed-negative": (["--seed", "-1"], "integer in [0, 2**63)"),
    "cli-seed-text": (["--seed", "x"], "integer in [0, 2**63)"),
    "cli-out-file": (["--out", "__FILE__"], "--out"),
    "cli-out-under-devnull": (["--out", "/dev/null/x"], "--out"),
    "cli-max-delay-negative": (["--max-delay", "-1", "--algorithm", "dasgd"], "non-negative"),
    "cli-max-delay-other": (["--max-delay", "4"], "--max-delay applies to --algorithm dasgd"),
    "cli-max-delay-huge": (["--max-delay", "100000000", "--algorithm", "dasgd"], "GiB"),
    "cli-drop-big": (["--drop-prob", "1.5"], "in [0, 1)"),
    "cli-drop-nan": (["--drop-prob", "nan"], "in [0, 1)"),
    "cli-drop-directed": (["--drop-prob", "0.1", "--topologies", "exponential"], "symmetric"),
    "cli-drop-dasgd": (["--drop-prob", "0.1", "--algorithm", "dasgd"], "DASGD models"),
    "cli-node-failure-one": (["--node-failure", "1"], "in [0, 1)"),
    "cli-stragglers-negative": (["--stragglers", "-0.5"], "in [0, 1)"),
    "cli-d2-only-directed": (["--algorithm", "d2", "--topologies", "exponential"], "none of"),
    "cli-checkpoint-file": (["--checkpoint-dir", "__FILE__"], "checkpoint_dir"),
    "cli-unknown-flag": (["--learning-rate", "0.1"], "unrecognized arguments"),
    "cli-bandwidth-zero": (["--bandwidth", "0"], "finite number > 0"),
    "cli-latency-negative": (["--latency", "-1"], "finite number >= 0"),
    "cli-compute-nan": (["--compute-time", "nan"], "finite number >= 0"),
    "cli-cluster-unknown": (["--cluster", "wifi"], "invalid choice"),
    "cli-cluster-and-bandwidth": (["--cluster", "ethernet-10g", "--latency", "1e-5"], "--cluster"),
    "cli-cluster-workers": (["--cluster", "nvlink-nodes", "--workers", "12"], "multiple of 8"),
    "cli-target-zero": (["--target-accuracy", "0"], "in (0, 1]"),
    "cli-seed-huge": (["--seed", str(2**70)], "integer in [0, 2**63)"),
    "cli-data-file-digits": (["--data-file", "x.npz"], "--data-file applies to --dataset npz"),
    "cli-data-dir-digits": (["--data-dir", "/tmp"], "--data-dir applies to --dataset cifar10"),
    "cli-alpha-sorted": (["--alpha", "0.5"], "--alpha applies to --partition dirichlet"),
    "cli-overwrite-alone": (["--overwrite"], "--overwrite applies with --checkpoint-dir"),
    "cli-target-without-clock": (["--target-accuracy", "0.5"], "give a time flag too"),
    "cli-faults-diloco": (
        ["--algorithm", "diloco", "--drop-prob", "0.1"],
        "which --algorithm diloco ignores",
    ),
    "cli-every-dpsgd": (["--every", "4"], "--every applies to local_sgd, gossip_pga, diloco"),
    "cli-every-zero": (["--every", "0", "--algorithm", "diloco"], "positive integer"),
    "cli-message-scale-alone": (["--message-scale", "10"], "give --bandwidth or --cluster too"),
    "cli-message-scale-zero": (["--message-scale", "0"], "finite number > 0"),
    "cli-batch-huge": (["--batch-size", str(10**9)], "GiB"),
    "cli-classes-huge": (["--dataset", "npz", "--data-file", "__HUGE_NPZ__"], "GiB"),
    "cli-npz-stray-label": (["--dataset", "npz", "--data-file", "__STRAY_NPZ__"], "is 1000000"),
    "mh-workers-zero": (["--workers", "0"], "positive integer"),
    "mh-lr-nan": (["--lr", "nan"], "finite number > 0"),
    "mh-coordinator": (["--coordinator", "nohost"], "HOST:PORT"),
    "mh-rank": (["--process-id", "3", "--num-processes", "2"], "must be < --num-processes"),
    "mh-steps": (["--steps", "15"], "multiple of 10"),
    "mh-topology": (["--topology", "moebius"], "invalid choice"),
    "mh-algorithm": (["--algorithm", "not_an_algorithm"], "invalid choice"),
    "mh-launch": (["--launch", "-1"], "non-negative"),
    "mh-workers-devices": (["--workers", "10"], "multiple of the devices"),
    "mh-stop-at": (["--stop-at", "10"], "needs --checkpoint-dir"),
    "mh-bind": (["--coordinator-bind", "x:99999"], "HOST:PORT"),
    "mh-devices": (["--devices-per-process", "0"], "positive integer"),
    "mh-out-file": (["--out", "__FILE__"], "--out"),
    "mh-launch-and-rank": (["--launch", "2", "--num-processes", "2"], "--launch"),
}


def _raised_by_decjax(err: BaseException) -> bool:
    """The innermost frame that raised is decjax's own code (or argparse's exit)."""
    frames = traceback.extract_tb(err.__traceback__)
    return bool(frames) and "/decjax/" in frames[-1].filename


@pytest.mark.parametrize("name", CASES)
def test_bad_api_input_gets_a_clear_error(name):
    build, words = CASES[name]
    with pytest.raises((TypeError, ValueError)) as info:
        build()
    assert words in str(info.value), f"{name}: {type(info.value).__name__}: {info.value}"
    assert _raised_by_decjax(info.value), f"{name}: raised outside decjax: {info.value!r}"
    assert "\n" not in str(info.value).strip(), f"{name}: more than one line"


@pytest.mark.parametrize("name", CLI_CASES)
def test_bad_command_line_gets_one_line_and_exit_2(name, tmp_path, capsys):
    argv, words = CLI_CASES[name]
    afile = tmp_path / "a-file"
    afile.write_text("x")
    stand_in = {
        "__FILE__": str(afile),
        "__HUGE_NPZ__": str(_npz("classes", num_classes=10**6, y_train=np.arange(20) % 2)),
        "__STRAY_NPZ__": str(_npz("stray", y_train=np.r_[np.arange(19) % 2, 10**6])),
    }
    argv = [stand_in.get(a, a) for a in argv]
    entry = multihost if name.startswith("mh-") else cli
    extra = [] if name.startswith("mh-") else ["--no-progress", "--out", str(tmp_path / "out")]
    if name in ("cli-out-file", "cli-out-under-devnull"):
        extra = ["--no-progress"]
    with pytest.raises(SystemExit) as info:
        entry([*extra, *argv])
    assert info.value.code == 2, name
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and words in lines[0], f"{name}: {err}"
    assert "Traceback" not in err


def test_the_probe_is_large():
    """The probe held 200 bad inputs, then 516; the integrity review's cases and a case for
    every public callable took it past 670: keep it that size."""
    assert len(CASES) + len(CLI_CASES) >= 670


PUBLIC_MODULES = (
    "decjax",
    "decjax.monitor",
    "decjax.topology",
    "decjax.gossip",
    "decjax.algorithms",
    "decjax.data",
    "decjax.problems",
    "decjax.timing",
    "decjax.metrics",
    "decjax.learn",
    "decjax.distributed",
    "decjax.byzantine",
    "decjax.privacy",
)


def _public_callables() -> dict[str, str]:
    """Every public callable by its name: a module's ``__all__``, or the public functions and
    classes it defines when it has none."""
    found = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        names = getattr(module, "__all__", None)
        if names is None:
            names = [
                name
                for name, obj in vars(module).items()
                if not name.startswith("_") and getattr(obj, "__module__", None) == module_name
            ]
        for name in names:
            if callable(getattr(module, name)):
                found.setdefault(name, f"{module_name}.{name}")
    return found


def _names_used(fn, seen: set) -> set[str]:
    """The global and attribute names a case's code uses, following this module's helpers,
    the functions it binds as defaults and those it closes over (catalog factories)."""
    names, codes = set(), [fn.__code__]
    while codes:
        code = codes.pop()
        names |= set(code.co_names)
        codes += [c for c in code.co_consts if isinstance(c, types.CodeType)]
    inner = list(fn.__defaults__ or ())
    inner += [cell.cell_contents for cell in fn.__closure__ or ()]
    inner += [globals()[name] for name in names if name in globals()]
    for obj in inner:
        if isinstance(obj, types.FunctionType) and id(obj) not in seen:
            seen.add(id(obj))
            names |= _names_used(obj, seen)
    return names


def test_every_public_callable_has_a_case():
    """A public function or class added without a bad-input case fails here: give it one (or,
    for a record with no input to get wrong, list it in NO_INPUT)."""
    used = set()
    for build, _ in CASES.values():
        used |= _names_used(build, set())
    missing = sorted(
        qualified
        for name, qualified in _public_callables().items()
        if name not in used and name not in NO_INPUT
    )
    assert missing == []
    assert not NO_INPUT - set(_public_callables()), "NO_INPUT names a callable that is gone"
