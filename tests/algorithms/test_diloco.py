"""The DiLoCo family: reductions between its members and to all-reduce SGD, and per-worker
message-level references (float64, a Python loop over workers and messages) for 20 steps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import decjax

N, D, STEPS = 8, 5, 20
SCALE = np.linspace(0.5, 1.5, N)[:, None]  # worker i's gradient: SCALE_i * x - SHIFT_i
SHIFT = np.arange(N * D, dtype=np.float64).reshape(N, D) % 7 / 7


def _grad(x):
    return SCALE * x - SHIFT


def _grads(params):
    return jax.tree.map(lambda x: jnp.asarray(_grad(x[:, : SHIFT.shape[1]]), x.dtype), params)


def _x0():
    return jnp.broadcast_to(jnp.linspace(-1.0, 1.0, D), (N, D))


def _run(tx, params, steps=STEPS, grads=None):
    grads = grads or (lambda p: jax.tree.map(lambda x: (SCALE * x - 0.3).astype(x.dtype), p))
    state, step = tx.init(params), jax.jit(tx.step)
    for _ in range(steps):
        params, state, _ = step(grads(params), state, params)
    return params


def test_diloco_with_one_inner_step_and_a_plain_outer_step_is_all_reduce_sgd_bit_for_bit():
    lr = 0.1
    tx = decjax.diloco(optax.sgd(lr), every=1, outer=optax.sgd(1.0))
    grads = lambda x: (jnp.asarray(SCALE, jnp.float32) * x - 0.3).astype(x.dtype)  # noqa: E731

    @jax.jit
    def all_reduce_sgd(x):  # every worker's SGD update, averaged by an all-reduce
        return x + jnp.broadcast_to(jnp.sum(-lr * grads(x), axis=0) / N, x.shape)

    x = y = _x0()
    state, step = tx.init(x), jax.jit(tx.step)
    for _ in range(STEPS):
        x, state, _ = step(grads(x), state, x)
        y = all_reduce_sgd(y)
    np.testing.assert_array_equal(x, y)
    assert float(jnp.std(x[:, 0])) == 0.0  # every worker holds the same model


def test_streaming_with_one_fragment_no_overlap_and_no_blending_is_diloco():
    inner, x = optax.adam(0.05), _x0()
    plain = _run(decjax.diloco(inner, every=4), x)
    streaming = _run(decjax.streaming_diloco(inner, 4, fragments=1, overlap=0, alpha=0.0), x)
    np.testing.assert_array_equal(plain, streaming)


def test_gossip_diloco_on_the_complete_graph_is_diloco():
    inner, x = optax.sgd(0.05, momentum=0.9), _x0()
    plain = _run(decjax.diloco(inner, every=4), x)
    gossip = _run(decjax.gossip_diloco(inner, decjax.complete(N), every=4), x)
    np.testing.assert_allclose(gossip, plain, rtol=2e-6, atol=1e-6)


def _nesterov(delta, momentum, lr=0.7, mu=0.9):
    """optax.sgd(lr, momentum=mu, nesterov=True) on one vector."""
    momentum = delta + mu * momentum
    return -lr * (delta + mu * momentum), momentum


def test_diloco_matches_a_per_worker_reference():
    lr, every = 0.05, 4
    theta = np.asarray(_x0(), np.float64)
    theta_o, inner_m, outer_m = theta[0].copy(), np.zeros((N, D)), np.zeros(D)
    for t in range(STEPS):
        for i in range(N):  # each worker: SGD with momentum 0.9 on its own gradient
            inner_m[i] = _grad(theta)[i] + 0.9 * inner_m[i]
            theta[i] = theta[i] - lr * inner_m[i]
        if (t + 1) % every == 0:  # all-reduce of the pseudo-gradients, then the outer step
            delta = theta_o - sum(theta[i] for i in range(N)) / N
            step, outer_m = _nesterov(delta, outer_m)
            theta_o = theta_o + step
            theta[:] = theta_o
    tx = decjax.diloco(optax.sgd(lr, momentum=0.9), every=every)
    got = _run(tx, _x0(), grads=_grads)
    np.testing.assert_allclose(got, theta, rtol=1e-5, atol=1e-5)


def test_gossip_diloco_matches_a_per_worker_message_reference():
    lr, every = 0.05, 3
    tx = decjax.gossip_diloco(optax.sgd(lr), decjax.ring(N), every=every)
    params = _x0() + 0.1 * jax.random.normal(jax.random.key(0), (N, D))  # different starts
    reference = _gossip_reference(np.asarray(params, np.float64), lr, every)
    np.testing.assert_allclose(_run(tx, params, grads=_grads), reference, rtol=1e-5, atol=1e-5)


def _gossip_reference(theta, lr, every):
    """Ring, weights 1/3: at an outer step worker j sends (theta^o_j, u_j) to j - 1 and j + 1;
    each worker mixes what it holds with its inbox and takes its own outer step."""
    theta_o, outer_m = theta.copy(), np.zeros_like(theta)
    for t in range(STEPS):
        theta = theta - lr * _grad(theta)
        if (t + 1) % every == 0:
            inbox = {i: [] for i in range(N)}
            for j in range(N):
                for i in ((j - 1) % N, (j + 1) % N):
                    inbox[i].append((theta_o[j].copy(), theta[j] - theta_o[j]))
            new_o = np.empty_like(theta_o)
            for i in range(N):
                held = [(theta_o[i], theta[i] - theta_o[i]), *inbox[i]]
                mixed_o = sum(m[0] for m in held) / 3
                mixed_u = sum(m[1] for m in held) / 3
                step, outer_m[i] = _nesterov(-mixed_u, outer_m[i])
                new_o[i] = mixed_o + step
            theta_o, theta = new_o, new_o.copy()
    return theta


def test_streaming_diloco_matches_a_per_fragment_reference():
    """Two fragments (leaves a and b), synchronised at offsets 0 and H/2, applied one step
    after sending, blended with alpha = 0.5."""
    lr, every, alpha, tau = 0.05, 4, 0.5, 1
    params = {"a": _x0()[:, :3], "b": _x0()[:, 3:]}
    theta = {k: np.asarray(v, np.float64) for k, v in params.items()}
    theta_o = {k: v[0].copy() for k, v in theta.items()}
    outer_m = {k: np.zeros_like(v) for k, v in theta_o.items()}
    pending = {}
    offsets = {"a": 0, "b": every // 2}
    for t in range(STEPS):
        full = _grad(np.concatenate([theta["a"], theta["b"]], axis=1))
        theta = {"a": theta["a"] - lr * full[:, :3], "b": theta["b"] - lr * full[:, 3:]}
        for k, off in offsets.items():
            if (t + 1 + off) % every == 0:
                pending[k] = theta_o[k] - theta[k].mean(axis=0)
            sent = t - tau
            if sent >= 0 and (sent + 1 + off) % every == 0:
                step, outer_m[k] = _nesterov(pending[k], outer_m[k])
                theta_o[k] = theta_o[k] + step
                theta[k] = alpha * theta[k] + (1 - alpha) * theta_o[k]
    tx = decjax.streaming_diloco(optax.sgd(lr), every, fragments=2, overlap=tau, alpha=alpha)

    def grads(p):
        full = _grad(np.concatenate([np.asarray(p["a"]), np.asarray(p["b"])], axis=1))
        return {
            "a": jnp.asarray(full[:, :3], jnp.float32),
            "b": jnp.asarray(full[:, 3:], jnp.float32),
        }

    got = _run(tx, params, grads=grads)
    for k in theta:
        np.testing.assert_allclose(got[k], theta[k], rtol=1e-5, atol=1e-5)


def test_compressed_pseudo_gradients_send_the_compressed_bytes():
    compressor = decjax.gossip.qsgd(16)
    tx = decjax.diloco(optax.sgd(0.05), every=2, compressor=compressor)
    x = _x0()
    state, step = tx.init(x), jax.jit(tx.step)
    records = []
    for _ in range(4):
        x, state, info = step(_grads(x), state, x)
        records.append(float(info["traffic"].allreduce))
    assert records == [0.0, compressor.bytes(D, 4), 0.0, compressor.bytes(D, 4)]
    assert bool(jnp.all(jnp.isfinite(x)))


def test_bad_arguments_are_refused_in_one_line():
    inner = optax.sgd(0.1)
    with pytest.raises(ValueError, match=r"overlap \(4\) must be less than every \(4\)"):
        decjax.streaming_diloco(inner, 4, overlap=4)
    with pytest.raises(ValueError, match=r"fragments \(5\) must be at most every \(4\)"):
        decjax.streaming_diloco(inner, 4, fragments=5)
    with pytest.raises(ValueError, match="alpha"):
        decjax.streaming_diloco(inner, 4, alpha=1.5)
    with pytest.raises(TypeError, match=r"inner must be an optax\.GradientTransformation"):
        decjax.diloco(0.1, every=4)
    with pytest.raises(ValueError, match="every"):
        decjax.diloco(inner, every=0)
    with pytest.raises(ValueError, match=r"fragments \(2\) must be at most the number of"):
        decjax.streaming_diloco(inner, 4, fragments=2).init(_x0())
