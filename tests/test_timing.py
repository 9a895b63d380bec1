"""Simulated wall-clock time: the model's closed forms, its records, an event-loop oracle."""

import heapq

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import decjax
from decjax import timing
from decjax.gossip import TRAFFIC

N, D = 8, 250  # a model of 250 float32 values: 1,000-byte messages
MODEL_BYTES = 4 * D
LATENCY, BANDWIDTH, COMPUTE = 1e-3, 1e6, 0.02


def _params():
    return jax.random.normal(jax.random.key(0), (N, D))


def _step_times(tx, model, steps=3):
    """Seconds of each of ``steps`` steps of ``tx`` (jitted ``step`` on random gradients)."""
    params = _params()
    state = tx.init(params)

    @jax.jit
    def one(params, state, t):
        grads = jax.random.normal(jax.random.fold_in(jax.random.key(1), t), params.shape)
        params, state, info = tx.step(grads, state, params)
        return params, state, model.step_time(info[TRAFFIC], t, N)

    out = []
    for t in range(steps):
        params, state, seconds = one(params, state, t)
        out.append(float(seconds))
    return np.array(out)


def _model(**network):
    net = timing.Network(**{"latency": LATENCY, "bandwidth": BANDWIDTH, **network})
    return timing.TimeModel(net, compute=COMPUTE)


def test_a_ring_step_takes_compute_plus_latency_plus_message_over_bandwidth():
    seconds = _step_times(decjax.dpsgd(0.1, decjax.ring(N)), _model())
    np.testing.assert_allclose(seconds, COMPUTE + LATENCY + MODEL_BYTES / BANDWIDTH, rtol=1e-6)


def test_the_complete_graph_behind_star_ports_sends_n_minus_1_messages_through_each_port():
    """All-to-all sends, links without limit, each port at ``b``: ``c + l + (n - 1) B / b``."""
    model = _model(bandwidth=np.inf, port_bandwidth=BANDWIDTH)
    complete = decjax.complete(N, exchange="all_to_all")
    seconds = _step_times(decjax.dpsgd(0.1, complete), model)
    expected = COMPUTE + LATENCY + (N - 1) * MODEL_BYTES / BANDWIDTH
    np.testing.assert_allclose(seconds, expected, rtol=1e-6)
    ring = _step_times(decjax.dpsgd(0.1, decjax.ring(N)), model)  # two messages per port
    np.testing.assert_allclose(ring, COMPUTE + LATENCY + 2 * MODEL_BYTES / BANDWIDTH, rtol=1e-6)


def test_relaysgd_sends_a_message_and_its_count_over_each_tree_link():
    """A chain behind ports: inner workers send two messages of ``B + 4`` bytes (the model
    and the count) through their port; with links of bandwidth ``b`` and no ports, one."""
    model = _model(bandwidth=np.inf, port_bandwidth=BANDWIDTH)
    chain = _step_times(decjax.algorithms.relaysgd(0.1, decjax.topology.chain(N)), model)
    expected = COMPUTE + LATENCY + 2 * (MODEL_BYTES + 4) / BANDWIDTH
    np.testing.assert_allclose(chain, expected, rtol=1e-6)
    links = _step_times(decjax.algorithms.relaysgd(0.1, decjax.topology.chain(N)), _model())
    np.testing.assert_allclose(links, COMPUTE + LATENCY + (MODEL_BYTES + 4) / BANDWIDTH, rtol=1e-6)


@pytest.mark.parametrize("network", [{}, {"bandwidth": np.inf, "port_bandwidth": BANDWIDTH}])
def test_the_complete_graph_is_a_ring_all_reduce_by_default(network):
    """``2 (n - 1)`` phases of ``B / n`` bytes: ``c + 2 (n - 1) (l + B / (n b))``, the
    same behind ports of ``b`` (each sends and receives one chunk per phase); every
    ``every``-th step of periodic averaging pays it, the others only compute."""
    model = _model(**network)
    allreduce = 2 * (N - 1) * (LATENCY + MODEL_BYTES / (N * BANDWIDTH))
    seconds = _step_times(decjax.dpsgd(0.1, decjax.complete(N)), model)
    np.testing.assert_allclose(seconds, COMPUTE + allreduce, rtol=1e-6)
    every = decjax.dpsgd(0.1, decjax.topology.periodic_average(N, 3))
    np.testing.assert_allclose(
        _step_times(every, model, steps=6), [COMPUTE, COMPUTE, COMPUTE + allreduce] * 2, rtol=1e-6
    )


def test_heterogeneous_compute_gives_the_slowest_worker():
    compute = np.linspace(0.01, 0.05, N)
    model = timing.TimeModel(timing.Network(LATENCY, BANDWIDTH), compute=compute)
    seconds = _step_times(decjax.dpsgd(0.1, decjax.ring(N)), model)
    np.testing.assert_allclose(seconds, 0.05 + LATENCY + MODEL_BYTES / BANDWIDTH, rtol=1e-6)


def test_a_slow_link_delays_only_the_workers_that_wait_for_it_and_so_the_step():
    bandwidth = np.full((N, N), BANDWIDTH)
    bandwidth[3, 2] = BANDWIDTH / 10  # the message 2 -> 3
    model = _model(bandwidth=bandwidth)
    seconds = _step_times(decjax.dpsgd(0.1, decjax.ring(N)), model)
    np.testing.assert_allclose(seconds, COMPUTE + LATENCY + 10 * MODEL_BYTES / BANDWIDTH, rtol=1e-6)


def test_compressed_messages_take_the_compressed_bytes():
    compressor = decjax.gossip.top_k(25)  # 25 values and 25 int32 indices: 200 bytes
    tx = decjax.choco_sgd(0.1, decjax.ring(N), compressor=compressor, consensus_step=0.5)
    seconds = _step_times(tx, _model())
    assert compressor.bytes(D, 4) == 200
    np.testing.assert_allclose(seconds, COMPUTE + LATENCY + 200 / BANDWIDTH, rtol=1e-6)


def test_gossip_rounds_are_sequential_phases():
    tx = decjax.decentralize(optax.sgd(0.1), decjax.ring(N), rounds=3)
    seconds = _step_times(tx, _model())
    np.testing.assert_allclose(
        seconds, COMPUTE + 3 * (LATENCY + MODEL_BYTES / BANDWIDTH), rtol=1e-6
    )


def test_an_exact_average_is_a_ring_all_reduce():
    """Local SGD every 2 steps: a local step, then ``2 (n - 1)`` phases of ``B / n`` bytes."""
    seconds = _step_times(decjax.local_sgd(0.1, N, every=2), _model(), steps=4)
    allreduce = 2 * (N - 1) * (LATENCY + MODEL_BYTES / N / BANDWIDTH)
    np.testing.assert_allclose(seconds, [COMPUTE, COMPUTE + allreduce] * 2, rtol=1e-6)


def test_overlap_takes_the_longer_of_compute_and_communication():
    fast = timing.TimeModel(timing.Network(LATENCY, BANDWIDTH), compute=COMPUTE, overlap=True)
    slow = timing.TimeModel(timing.Network(LATENCY, BANDWIDTH), compute=1e-4, overlap=True)
    tx = decjax.dpsgd(0.1, decjax.ring(N))
    np.testing.assert_allclose(_step_times(tx, fast), COMPUTE, rtol=1e-6)
    np.testing.assert_allclose(_step_times(tx, slow), LATENCY + MODEL_BYTES / BANDWIDTH, rtol=1e-6)


def test_streaming_diloco_hides_its_all_reduce_behind_the_overlapped_steps():
    allreduce = 2 * (N - 1) * (LATENCY + MODEL_BYTES / N / BANDWIDTH)  # 0.0161 s
    inner = optax.sgd(0.1)
    plain = _step_times(decjax.diloco(inner, every=4), _model(), steps=4)
    hidden = _step_times(decjax.streaming_diloco(inner, 4, overlap=1), _model(), steps=4)
    np.testing.assert_allclose(plain, [COMPUTE] * 3 + [COMPUTE + allreduce], rtol=1e-6)
    np.testing.assert_allclose(hidden, COMPUTE, rtol=1e-6)  # 0.0161 s < one 0.02 s step


def test_messages_in_flight_add_no_time_to_a_tick():
    tx = decjax.dasgd(0.1, decjax.ring(N), delays=decjax.algorithms.fixed_delay(2))
    np.testing.assert_allclose(_step_times(tx, _model()), COMPUTE, rtol=1e-6)


def test_compute_traces_and_random_draws():
    trace = np.array([[0.01] * N, [0.03] * N])
    model = timing.TimeModel(compute=timing.Compute(trace))
    np.testing.assert_allclose(
        _step_times(decjax.dpsgd(0.1, decjax.ring(N)), model, 4), [0.01, 0.03] * 2
    )
    draws = timing.Compute(0.02, law="lognormal", spread=0.5, key=jax.random.key(3))
    samples = np.stack([np.asarray(draws.at(t, N)) for t in range(400)])
    assert samples.std() > 0.005 and abs(samples.mean() - 0.02) < 4 * 0.02 * 0.55 / np.sqrt(
        samples.size
    )
    np.testing.assert_array_equal(draws.at(7, N), draws.at(7, N))  # a draw per step, reproducible


def test_simulate_records_cumulative_time_and_a_sweep_has_one_clock_per_configuration():
    q = decjax.problems.quadratics(N, D, key=jax.random.key(0))
    model = _model()
    common = {"steps": 20, "eval_every": 5, "key": jax.random.key(1), "progress": False}
    res = decjax.simulate(
        q.loss, q.init_params(), decjax.dpsgd(0.05, decjax.ring(N)), q.data, timing=model, **common
    )
    one = COMPUTE + LATENCY + MODEL_BYTES / BANDWIDTH
    np.testing.assert_allclose(res.metrics["time"], one * np.array([5, 10, 15, 20]), rtol=1e-5)
    assert "time" in res.to_dataframe().columns
    clocks = {"big": timing.TimeModel(model.network, compute=COMPUTE, message_scale=10.0)}
    clocks["fast"] = timing.TimeModel(timing.Network(LATENCY), compute=COMPUTE)
    tx = decjax.dpsgd(0.05, decjax.ring(N))
    two = decjax.simulate(q.loss, q.init_params(), tx, q.data, timing=clocks, **common)
    big = COMPUTE + LATENCY + 10 * MODEL_BYTES / BANDWIDTH
    np.testing.assert_allclose(two.metrics["time_big"][-1], 20 * big, rtol=1e-5)
    np.testing.assert_allclose(two.metrics["time_fast"][-1], 20 * (COMPUTE + LATENCY), rtol=1e-5)
    assert two.reaches("time_fast", 0.0, x="time_big") == pytest.approx(5 * big, rel=1e-5)
    sweep = decjax.sweep(
        q.loss,
        q.init_params(),
        lambda topology: decjax.dpsgd(0.05, topology),
        q.data,
        {"topology": [decjax.ring(N), decjax.complete(N)]},
        timing=timing.TimeModel(timing.Network(LATENCY, np.inf, BANDWIDTH), compute=COMPUTE),
        **common,
    )
    ring = COMPUTE + LATENCY + 2 * MODEL_BYTES / BANDWIDTH  # two messages through each port
    allreduce = COMPUTE + 2 * (N - 1) * (LATENCY + MODEL_BYTES / (N * BANDWIDTH))
    per_step = [ring, allreduce]
    np.testing.assert_allclose(sweep.metrics["time"][:, -1], 20 * np.array(per_step), rtol=1e-5)
    # the time axis itself: interpolated, 0.2 s exactly (the first record is earlier)
    assert sweep.metrics["time"][0, 0] < 0.2 < sweep.metrics["time"][0, -1]
    assert sweep.reaches("time", 0.2)[0] == pytest.approx(0.2)
    fig = sweep.plot(["train_loss"], x="time")
    assert fig.axes[0].get_xlabel() == "simulated seconds (time)"
    np.testing.assert_allclose(fig.axes[0].lines[1].get_xdata(), sweep.metrics["time"][1])


def test_event_driven_arrivals_match_a_heapq_event_loop_for_100_updates():
    """Free-running workers (heterogeneous random compute, a heterogeneous network): the
    vectorised schedule orders every arrival as a Python event loop does."""
    n, updates, message = 6, 100, 4000.0
    rng = np.random.default_rng(0)
    net = timing.Network(
        latency=rng.uniform(1e-4, 5e-3, (n, n)), bandwidth=rng.uniform(1e5, 1e6, n)
    )
    compute = timing.Compute(rng.uniform(0.005, 0.02, n), law="exponential", key=jax.random.key(5))
    model = timing.TimeModel(net, compute=compute)
    topology = decjax.exponential(n)
    pattern = np.asarray(timing.message_pattern(topology))
    schedule = timing.event_schedule(model, pattern, message, updates)

    transfer = np.asarray(net.transfer(jnp.asarray(pattern * message, jnp.float32)), np.float64)
    draws = compute.draws(updates, n)
    # events: (time, 0, k, worker, -1) a finished update; (time, 1, k, receiver, sender) an arrival
    events = [(draws[0][j], 0, 0, j, -1) for j in range(n)]
    heapq.heapify(events)
    order, finished = [], np.zeros((updates, n))
    while events:
        now, kind, k, i, j = heapq.heappop(events)
        if kind == 1:
            order.append((k, i, j))
            continue
        finished[k, i] = now
        for receiver in np.nonzero(pattern[:, i])[0]:
            heapq.heappush(events, (now + transfer[receiver, i], 1, k, receiver, i))
        if k + 1 < updates:
            heapq.heappush(events, (now + draws[k + 1][i], 0, k + 1, i, -1))
    np.testing.assert_array_equal(schedule.finish, finished)
    np.testing.assert_array_equal(schedule.order, np.array(order))
    assert len(order) == updates * int(pattern.sum())
    # staleness: the receiver had finished `applied` updates when the message arrived
    k, i, j = schedule.order[-1]
    assert schedule.applied[k, i, j] == np.searchsorted(
        finished[:, i], schedule.arrival[k, i, j], "right"
    )


def test_network_delays_follow_the_transfer_times():
    model = timing.TimeModel(timing.Network(0.005, 1e6), compute=0.01)
    delays = decjax.timing.network_delays(model, 20_000, decjax.ring(N))  # 25 ms: 3 ticks
    d = np.asarray(delays.sample(jax.random.key(0), N))
    ring = np.asarray(timing.message_pattern(decjax.ring(N))) > 0
    assert set(np.unique(d[ring])) == {3} and set(np.unique(d[~ring])) == {0}
    exact = decjax.timing.network_delays(model, 15_000, decjax.ring(N))  # 20 ms: 2 ticks
    assert exact.max_delay == 2


def test_bad_time_models_are_refused_in_one_line():
    with pytest.raises(ValueError, match="bandwidth must be > 0"):
        timing.Network(bandwidth=0.0)
    with pytest.raises(ValueError, match="latency must be >= 0 and finite"):
        timing.Network(latency=-1.0)
    with pytest.raises(ValueError, match=r"latency must be a scalar, one value per worker"):
        timing.Network(latency=np.zeros((2, 3)))
    with pytest.raises(TypeError, match=r"network must be a decjax\.timing\.Network"):
        timing.TimeModel(network=1e9)
    with pytest.raises(ValueError, match=r"Compute\.law must be one of"):
        timing.Compute(0.1, law="normal")
    q = decjax.problems.quadratics(N, 4, key=jax.random.key(0))
    tx = decjax.dpsgd(0.1, decjax.ring(N))
    wrong = timing.TimeModel(timing.Network(latency=np.zeros(N + 1)))
    with pytest.raises(
        ValueError, match=r"Network.latency has 9 entries per axis but the run has n=8"
    ):
        decjax.simulate(
            q.loss, q.init_params(), tx, q.data, steps=2, key=jax.random.key(0), timing=wrong
        )
    with pytest.raises(TypeError, match=r"timing must be a decjax\.timing\.TimeModel"):
        decjax.simulate(
            q.loss, q.init_params(), tx, q.data, steps=2, key=jax.random.key(0), timing=1
        )
    res = decjax.simulate(
        q.loss, q.init_params(), tx, q.data, steps=2, key=jax.random.key(0), progress=False
    )
    with pytest.raises(ValueError, match="x='time' needs simulated time"):
        res.plot(x="time")


def test_running_totals_do_not_drift_over_a_million_steps():
    """``metrics.accumulate`` keeps each sum with its rounding error: a million steps of
    0.1 s, of 10 ms and of lognormal seconds (sigma 3) add up to their float64 sums within
    float32 rounding (5e-8), where a plain float32 running sum drifts by 1e-3 and more."""
    from decjax.metrics import accumulate, total, zero_totals

    draws = np.random.default_rng(0).lognormal(0.0, 3.0, 10**6).astype(np.float32)
    plain_drift = {0.1: 0.0096, 0.01: -0.0135}  # what metrics.accumulate's docstring says
    for seconds in (np.full(10**6, 0.1, np.float32), np.full(10**6, 0.01, np.float32), draws):

        def add(carry, s):
            totals, plain = carry
            return (accumulate(totals, {"time": s}), plain + s), None

        start = (zero_totals({"time": 0.0}), jnp.float32(0.0))
        (totals, plain), _ = jax.jit(lambda x, start=start: jax.lax.scan(add, start, x))(seconds)
        exact = np.sum(seconds.astype(np.float64))
        assert abs(float(total(totals["time"])) - exact) / exact < 5e-8
        assert abs(float(plain) - exact) / exact > 1e-3  # what the compensation corrects
        step = round(float(seconds[0]), 6)
        if step in plain_drift and seconds[1] == seconds[0]:
            assert (float(plain) - exact) / exact == pytest.approx(plain_drift[step], abs=5e-5)


@pytest.mark.slow  # the million-step sum itself is checked in the inner loop above
def test_a_million_step_run_keeps_time_and_bytes_exact():
    """simulate's ``time`` and ``bytes_sent`` after 10**6 steps of 10 ms (2 workers)."""
    q = decjax.problems.quadratics(2, 1, key=jax.random.key(0))
    res = decjax.simulate(
        q.loss,
        q.init_params(),
        decjax.dpsgd(0.01, decjax.ring(2)),
        q.data,
        steps=10**6,
        eval_every=10**5,
        key=jax.random.key(1),
        progress=False,
        timing=timing.TimeModel(compute=0.01),
    )
    exact = 10**6 * np.float64(np.float32(0.01))
    assert abs(res.metrics["time"][-1] - exact) / exact < 5e-8
    assert res.metrics["bytes_sent"][-1] == 4 * 10**6  # one 4-byte message per step


@pytest.mark.slow  # in-flight messages add no time: tested in the inner loop above
def test_the_network_decides_dasgd_staleness_and_its_ticks_set_the_clock():
    """Delays from the network (1 kB messages): a 10x slower network gives staler updates,
    and the clock counts ticks of the computation (nobody waits for a message)."""
    q = decjax.problems.quadratics(N, D, key=jax.random.key(0))
    common = {"steps": 40, "eval_every": 40, "key": jax.random.key(1), "progress": False}
    staleness = {}
    for name, bandwidth in (("fast", 1e6), ("slow", 1e5)):
        model = timing.TimeModel(timing.Network(0.002, bandwidth), compute=0.005)
        delays = decjax.timing.network_delays(model, MODEL_BYTES, decjax.ring(N))
        assert delays.max_delay == {"fast": 1, "slow": 3}[name]  # 3 ms and 12 ms per 5 ms tick
        tx = decjax.dasgd(0.01, decjax.ring(N), delays=delays)
        res = decjax.simulate(q.loss, q.init_params(), tx, q.data, timing=model, **common)
        np.testing.assert_allclose(res.metrics["time"][-1], 40 * 0.005, rtol=1e-5)
        staleness[name] = float(res.metrics["staleness_avg"][-1])
    assert 0 < staleness["fast"] < staleness["slow"]
    osgp = decjax.osgp(0.01, decjax.ring(N), delays=delays)  # the same delays drive OSGP
    res = decjax.simulate(q.loss, q.init_params(), osgp, q.data, timing=model, **common)
    np.testing.assert_allclose(res.metrics["time"][-1], 40 * 0.005, rtol=1e-5)


def test_a_checkpoint_knows_the_time_model_of_the_run_that_wrote_it():
    from decjax.simulate.identity import FIELDS, _timing_text

    assert "timing" in FIELDS
    a = timing.TimeModel(timing.Network(1e-3, 1e6), compute=0.01)
    same = timing.TimeModel(timing.Network(1e-3, 1e6), compute=0.01)
    other = timing.TimeModel(timing.Network(1e-3, 2e6), compute=0.01)
    assert _timing_text(a) == _timing_text(same) != _timing_text(other)
    assert _timing_text(None) == "None" != _timing_text({"x": a})


def test_without_a_time_model_the_compiled_run_holds_no_message_matrix():
    """The traffic records cost nothing unless a clock reads them, and the clock reads them
    as edge lists (the ring's 2 n messages), never as an (n, n) matrix."""
    q = decjax.problems.quadratics(N, 5, key=jax.random.key(0))
    texts = []
    for clock in (None, _model()):
        tx = decjax.dpsgd(0.1, decjax.ring(N))
        run = decjax.make_run(q.loss, tx, steps=4, eval_every=4, timing=clock)
        lowered = jax.jit(lambda p, run=run: run(p, jax.random.key(0), q.data)).lower(
            q.init_params()
        )
        texts.append(lowered.compile().as_text())
    assert f"[{N},{N}]" not in texts[0] and f"[{N},{N}]" not in texts[1]
    assert len(texts[1]) > len(texts[0])  # the clock's arithmetic, and nothing n x n


def test_numbers_of_numpy_types_are_numbers():
    """np.float32(2) as message_scale (refused before), numpy arrays as seconds."""
    model = timing.TimeModel(message_scale=np.float32(2), compute=np.float64(0.5))
    assert model.message_scale == 2.0 and isinstance(model.message_scale, float)
    assert timing.Compute(np.array([0.1, 0.2])).at(0, 2).shape == (2,)
