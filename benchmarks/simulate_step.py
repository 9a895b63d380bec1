"""Benchmark: the program ``simulate`` compiles against the same training written by hand.

What a user gets from ``decjax.make_run`` (the core of ``simulate``: two steps
per loop iteration, the per-step training loss averaged over the workers, and
at every record the consensus distance and the traffic totals), jitted with its
parameters donated, against a hand-written ``lax.scan`` of the same maths with
the same records, also donated: ``vmap(value_and_grad)``, ``p - lr g``, then the
topology's average (a ring by rolls, the complete graph and local SGD's periodic
average as the workers' mean), and at each record the mean loss and
:math:`\\frac1n \\sum_i \\lVert x_i - \\bar x \\rVert^2`. The hand-written
program sums over the workers as a dot with ones, the fastest form on XLA:CPU.

decjax is timed twice, compiled with ``Execution(lowering="cpu")`` (its CPU
default: sums over the workers as a dot with ones) and ``lowering="plain"``
(``jnp.sum(x, axis=0)``, XLA's reduction, which XLA:CPU wraps in a slow
fusion): the before and after of that choice, in one run. The three programs
are timed alternately, ``rounds`` times, and the median of the per-round
ratios is reported. MLP 784-256-256-10, batch 32 per worker.

    python -m benchmarks.simulate_step          # n = 16, 64, 256 on the CPU
    python -m benchmarks.simulate_step --quick  # seconds, a smoke test
"""

from __future__ import annotations

import contextlib
import functools
import json
import statistics
import time

import jax
import jax.numpy as jnp
from jax.experimental.compilation_cache import compilation_cache

import decjax
from benchmarks import dpsgd_step
from benchmarks._report import arguments, header, write
from benchmarks.hlo import step_census
from decjax.simulate._lowering import PAYBACK_FLOAT_STEPS

LAYERS = [784, 256, 256, 10]
LR = 0.05
PERIOD = 8  # local SGD's steps between averages
LONG_RUN = 1_000  # steps of the long run whose program "auto" chooses in the compile section
ALGORITHMS = ("dpsgd ring", "dpsgd complete", f"local SGD (H = {PERIOD})")


def _transformation(name: str, n: int):
    if name == "dpsgd ring":
        return decjax.dpsgd(LR, decjax.ring(n))
    if name == "dpsgd complete":
        return decjax.dpsgd(LR, decjax.complete(n))
    return decjax.local_sgd(LR, n, every=PERIOD)


def _workload(n: int):
    model = decjax.problems.mlp(LAYERS)
    x = jax.random.normal(jax.random.key(1), (n, 32, LAYERS[0]))
    y = jax.random.randint(jax.random.key(2), (n, 32), 0, LAYERS[-1])
    params = decjax.replicate(model.init(jax.random.key(3)), n)
    # distinct workers, so the consensus distance and the averages are not trivially zero
    noise = jax.random.split(jax.random.key(4), len(jax.tree.leaves(params)))
    leaves, treedef = jax.tree.flatten(params)
    leaves = [a + 0.01 * jax.random.normal(k, a.shape) for a, k in zip(leaves, noise, strict=True)]
    return model, jax.tree.unflatten(treedef, leaves), (x, y)


def decjax_program(
    name: str, n: int, model, data, *, steps: int, every: int, lowering: str, unroll: int | str = 2
):
    """``make_run``'s program with ``unroll`` steps per loop iteration (two: what ``"auto"``
    runs for a long run of this MLP), params donated; returns the new params and the
    records."""
    run = decjax.make_run(
        model.loss,
        _transformation(name, n),
        steps=steps,
        eval_every=every,
        execution=decjax.Execution(lowering=lowering, steps_per_iteration=unroll),
    )
    return _donated(run, jax.random.key(0), data)


def _donated(run, *args):
    """``run(params, *args)`` jitted with the params donated: ``params -> (new params,
    records)``."""

    def program(params):
        state, metrics = run(params, *args)
        return state.params, metrics

    return jax.jit(program, donate_argnums=0)


def hand_program(name: str, n: int, model, data, *, steps: int, every: int):
    """The same training as a hand-written ``lax.scan``, params donated."""
    value_and_grad = jax.vmap(jax.value_and_grad(model.loss))
    ones = jnp.ones(n)

    def mean(a):  # the workers' mean, as a dot with ones (fast on XLA:CPU)
        return jnp.tensordot(ones, a, axes=1, precision=jax.lax.Precision.HIGHEST) / n

    def average(p):
        return jax.tree.map(lambda a: jnp.broadcast_to(mean(a), a.shape), p)

    def mix(p, t):
        if name == "dpsgd ring":
            return jax.tree.map(lambda a: (jnp.roll(a, 1, 0) + a + jnp.roll(a, -1, 0)) / 3, p)
        if name == "dpsgd complete":
            return average(p)
        return jax.lax.cond((t + 1) % PERIOD == 0, average, lambda p: p, p)

    def step(carry, _):
        p, t = carry
        losses, g = value_and_grad(p, data)
        p = mix(jax.tree.map(lambda a, b: a - LR * b, p, g), t)
        return (p, t + 1), mean(losses)

    def block(carry, _):
        carry, losses = jax.lax.scan(step, carry, None, length=every)
        distance = sum(jnp.sum((a - mean(a)[None]) ** 2) for a in jax.tree.leaves(carry[0])) / n
        return carry, {"train_loss": jnp.mean(losses), "consensus_distance": distance}

    def program(params):
        (params, _), records = jax.lax.scan(block, (params, 0), None, length=steps // every)
        return params, records

    return jax.jit(program, donate_argnums=0)


def _alternate(programs: dict, states: dict, *, rounds: int, calls: int, baseline: str):
    """Each program's per-round seconds (timed in turn, ``rounds`` times, from ``states``) and
    the median over rounds of its time over ``baseline``'s."""
    times = {k: [] for k in programs}
    for _ in range(rounds):
        for k, program in programs.items():
            t, states[k], _ = dpsgd_step.timed_chain(program, states[k], calls=calls)
            times[k].append(t)
    ratios = {
        k: statistics.median(a / b for a, b in zip(v, times[baseline], strict=True))
        for k, v in times.items()
    }
    return times, ratios


def measure(name: str, n: int, *, steps: int, every: int, rounds: int, calls: int) -> dict:
    model, params, data = _workload(n)
    programs = {
        "now": decjax_program(name, n, model, data, steps=steps, every=every, lowering="cpu"),
        "one": decjax_program(
            name, n, model, data, steps=steps, every=every, lowering="cpu", unroll=1
        ),
        "xla_reduction": decjax_program(
            name, n, model, data, steps=steps, every=every, lowering="plain"
        ),
        "hand": hand_program(name, n, model, data, steps=steps, every=every),
    }
    # the same maths: final params agree to float32 rounding
    copy = lambda: jax.tree.map(jnp.copy, params)  # noqa: E731
    finals = {k: jax.tree.leaves(p(copy())[0]) for k, p in programs.items()}
    diff = max(
        float(jnp.max(jnp.abs(a - b)))
        for other in ("now", "one", "xla_reduction")
        for a, b in zip(finals[other], finals["hand"], strict=True)
    )
    states = {k: copy() for k in programs}
    times, ratio = _alternate(programs, states, rounds=rounds, calls=calls, baseline="hand")
    row = {
        "algorithm": name,
        "n": n,
        "steps": steps,
        "record_every": every,
        **{f"{k}_ms": 1e3 * statistics.median(v) / steps for k, v in times.items()},
        "ratio": ratio["now"],
        "ratio_one": ratio["one"],
        "ratio_xla_reduction": ratio["xla_reduction"],
        # what the second step per iteration saves: the median over rounds of one's time
        # over two's, and the saving per parameter and step (all workers)
        "one_over_two": statistics.median(
            a / b for a, b in zip(times["one"], times["now"], strict=True)
        ),
        "saving_ps_per_float": 1e12
        * (statistics.median(times["one"]) - statistics.median(times["now"]))
        / steps
        / sum(x.size for x in jax.tree.leaves(params)),
        "max_abs_diff": diff,
    }
    print(
        f"{name:20s} n={n:4d} record every {every:3d}: decjax {row['now_ms']:8.2f} ms/step, "
        f"x{row['ratio']:.3f} the hand-written step (one step per iteration "
        f"x{row['ratio_one']:.3f}, with XLA's reduction x{row['ratio_xla_reduction']:.3f}); "
        f"max |diff| {diff:.1e}",
        flush=True,
    )
    return row


def evaluation_cost(n: int, *, examples: int, every: int, rounds: int) -> dict:
    """A run recording every ``every`` steps without evaluation, with the averaged model's
    evaluation on ``examples`` test examples, and with every worker's evaluation too."""
    model, params, data = _workload(n)
    test = (
        jax.random.normal(jax.random.key(5), (examples, LAYERS[0])),
        jax.random.randint(jax.random.key(6), (examples,), 0, LAYERS[-1]),
    )
    tx = _transformation("dpsgd ring", n)
    key = jax.random.key(0)

    def program(evaluation):
        run = decjax.make_run(model.loss, tx, steps=2 * every, evaluation=evaluation)
        return _donated(run, key, data, test)

    programs = {
        "none": program(decjax.Evaluation(every=every)),
        "averaged": program(decjax.Evaluation(every=every, fn=model.eval_fn)),
        "workers": program(decjax.Evaluation(every=every, fn=model.eval_fn, workers=True)),
    }
    state = {k: jax.tree.map(jnp.copy, params) for k in programs}
    for k, program_ in programs.items():  # compile and warm up
        state[k] = jax.block_until_ready(program_(state[k])[0])
    times, ratio = _alternate(programs, state, rounds=rounds, calls=1, baseline="none")
    row = {
        "n": n,
        "examples": examples,
        "record_every": every,
        **{f"{k}_ms": 1e3 * statistics.median(v) / (2 * every) for k, v in times.items()},
        "averaged_ratio": ratio["averaged"],
        "workers_ratio": ratio["workers"],
    }
    print(
        f"evaluation n={n} on {examples} examples every {every} steps: averaged model "
        f"x{row['averaged_ratio']:.3f}, every worker too x{row['workers_ratio']:.3f}",
        flush=True,
    )
    return row


def worker_sums(sizes, d: int, *, repeats: int) -> list[dict]:
    """One sum over the workers of ``(n, d)`` floats: ``jnp.sum(x, axis=0)`` against a dot
    with ones (what decjax's CPU lowering computes)."""
    rows = []
    for n in sizes:
        x = jax.random.normal(jax.random.key(0), (n, d))
        reduction = jax.jit(lambda x: jnp.sum(x, axis=0))
        dot = jax.jit(
            lambda x: jnp.tensordot(
                jnp.ones(x.shape[0], x.dtype), x, axes=1, precision=jax.lax.Precision.HIGHEST
            )
        )
        t_reduction = dpsgd_step._timed(reduction, x, repeats=repeats)
        t_dot = dpsgd_step._timed(dot, x, repeats=repeats)
        diff = float(jnp.max(jnp.abs(reduction(x) - dot(x))))
        rows.append(
            {
                "n": n,
                "d": d,
                "reduction_ms": 1e3 * t_reduction,
                "dot_ms": 1e3 * t_dot,
                "reduction_over_dot": t_reduction / t_dot,
                "max_abs_diff": diff,
            }
        )
        print(f"sum over {n} workers x {d} floats: reduction x{t_reduction / t_dot:.1f} the dot")
    return rows


def compile_times(quick: bool, repeats: int) -> list[dict]:
    """Seconds to compile ``make_run``'s program (``steps_per_iteration`` as chosen by
    ``"auto"`` and as given) against the hand-written program, without the compilation
    cache: what a user waits for before the first step. Each program is compiled ``repeats``
    times in rotation and the least time is kept."""
    from benchmarks import convnets

    rows = []
    with _no_compilation_cache():
        plans = [("mlp", 4), ("lenet5", 2)] if quick else [("mlp", n) for n in (16, 64, 256)]
        plans += [] if quick else [("lenet5", 16)]
        plans += [] if quick else [("resnet20", 4)]
        for name, n in plans:
            if name == "mlp":
                model, params, data = _workload(n)
                stateful, state = False, None
            else:
                model, stateful, params, state, data = convnets._setup(name, n, 32)
            tx = decjax.dpsgd(LR, decjax.ring(n), momentum=0.9)
            key = jax.random.key(3)

            def seconds(fn):
                start = time.perf_counter()
                jax.jit(fn).lower(params, key, data, state).compile()
                return time.perf_counter() - start

            def decjax_program(spi, chunks="auto", steps=4, model=model, tx=tx, stateful=stateful):
                run = decjax.make_run(
                    model.loss,
                    tx,
                    steps=steps,
                    eval_every=4,
                    stateful=stateful,
                    steps_per_iteration=spi,
                    worker_chunks=chunks,
                )
                return lambda p, k, d, s: run(p, k, d, None, None, s)[0].params

            def hand_program(model=model, stateful=stateful):
                hand = convnets._hand_run(model, stateful, 4, LR, 0.9)
                return lambda p, k, d, s: hand(p, s, d, k)

            # factories: every compile traces a new function, so no in-memory cache answers
            programs = {
                "decjax_auto_s": lambda: decjax_program("auto"),
                # the same loop body, "auto" choosing for a long run (two steps per
                # iteration for the MLP: it pays back, see resolve_steps_per_iteration)
                "decjax_auto_long_s": lambda: decjax_program("auto", steps=LONG_RUN),
                "decjax_one_s": lambda: decjax_program(1),
                "decjax_two_s": lambda: decjax_program(2),
                # vmapped like the hand-written program (the CPU default scans convnets)
                "decjax_vmapped_s": lambda: decjax_program("auto", chunks=1),
                "hand_written_s": hand_program,
            }
            seconds(hand_program())  # the first compile of the process: not counted
            times = {label: [] for label in programs}
            for _ in range(repeats):  # in rotation, the least of each
                for label, make in programs.items():
                    times[label].append(seconds(make()))
            row = {"model": name, "n": n, **{k: min(v) for k, v in times.items()}}
            for label in ("auto", "auto_long", "one", "two", "vmapped"):
                row[f"ratio_{label}"] = row[f"decjax_{label}_s"] / row["hand_written_s"]
            print(
                f"compile {name} n={n}: decjax x{row['ratio_auto']:.2f} the hand-written "
                f"program, x{row['ratio_auto_long']:.2f} for a run of {LONG_RUN} steps "
                f"(one step per iteration x{row['ratio_one']:.2f}, two "
                f"x{row['ratio_two']:.2f})",
                flush=True,
            )
            rows.append(row)
    return rows


@contextlib.contextmanager
def _no_compilation_cache():
    """Every compile inside the block is fresh: the persistent compilation cache off and reset (a
    cache already in use in the process ignores the switch), then restored."""
    cached = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    compilation_cache.reset_cache()
    try:
        yield
    finally:
        jax.config.update("jax_enable_compilation_cache", cached)
        compilation_cache.reset_cache()


def time_to_result(n: int, runs: tuple[int, ...], *, every: int, rounds: int) -> list[dict]:
    """Seconds from a fresh trace to the final params (trace, compile without the compilation
    cache, and every step) of D-PSGD on a ring, for runs of ``runs`` steps: decjax with
    ``"auto"``, with one and with two steps per iteration, ``decjax.simulate`` itself (its
    checks, its chunks and records to NumPy, ``"auto"``), and the hand-written program.
    The medians over ``rounds`` rounds, the programs in rotation."""
    model, params, data = _workload(n)
    name = ALGORITHMS[0]
    floats = sum(x.size for x in jax.tree.leaves(params))
    factories = {
        **{
            label: functools.partial(
                decjax_program, name, n, model, data, every=every, lowering="cpu", unroll=unroll
            )
            for label, unroll in (("auto", "auto"), ("one", 1), ("two", 2))
        },
        "simulate": functools.partial(_simulate_program, name, n, model, data, every=every),
        "hand": functools.partial(hand_program, name, n, model, data, every=every),
    }
    rows = []
    with _no_compilation_cache():
        for steps in runs:
            times = {label: [] for label in factories}
            for _ in range(rounds):
                for label, make in factories.items():
                    start = time.perf_counter()
                    jax.block_until_ready(make(steps=steps)(jax.tree.map(jnp.copy, params)))
                    times[label].append(time.perf_counter() - start)
            row = {"algorithm": name, "n": n, "steps": steps, "record_every": every}
            row["parameter_steps"] = steps * floats
            row["auto_unroll"] = _auto_unroll(factories, params, steps)
            row.update({f"{k}_s": statistics.median(v) for k, v in times.items()})
            row.update({f"{k}_over_hand": row[f"{k}_s"] / row["hand_s"] for k in factories})
            print(
                f"time to result, {steps} steps: auto ({row['auto_unroll']} per iteration) "
                f"{row['auto_s']:.2f} s, one {row['one_s']:.2f}, two {row['two_s']:.2f}, "
                f"simulate {row['simulate_s']:.2f}, hand-written {row['hand_s']:.2f}",
                flush=True,
            )
            rows.append(row)
    return rows


def _simulate_program(name: str, n: int, model, data, *, steps: int, every: int):
    """``params -> final params`` by ``decjax.simulate`` (no progress bar)."""

    def program(params):
        result = decjax.simulate(
            model.loss,
            params,
            _transformation(name, n),
            data,
            steps=steps,
            key=jax.random.key(0),
            eval_every=every,
            progress=False,
        )
        return result.params, result.metrics

    return program


def _auto_unroll(factories: dict, params, steps: int) -> int:
    """The steps per iteration ``"auto"`` compiled for a run of ``steps`` steps: the
    explicit choice whose program is the same as auto's."""
    text = {k: factories[k](steps=steps).lower(params).as_text() for k in ("auto", "one", "two")}
    matches = [u for u, k in ((1, "one"), (2, "two")) if text[k] == text["auto"]]
    assert len(matches) == 1, f"auto's program is {len(matches)} of one and two"
    return matches[0]


SECTIONS = ("steps", "evaluation", "sums", "compile", "time_to_result", "census")


def census(n: int, *, steps: int) -> list[dict]:
    """Per step, what each ring program does to the first weight ``(n, 784, 256)``, read
    from the compiled programs (:func:`benchmarks.hlo.step_census`): passes (reads and
    writes), copies and kernels, for a record every step and every 16."""
    model, params, data = _workload(n)
    shape = (n, LAYERS[0], LAYERS[1])
    rows = []

    def build(unroll, every):  # unroll None: the hand-written program
        if unroll is None:
            return hand_program("dpsgd ring", n, model, data, steps=steps, every=every)
        return decjax_program(
            "dpsgd ring", n, model, data, steps=steps, every=every, lowering="auto", unroll=unroll
        )

    programs = {
        "decjax, two steps per iteration": 2,
        "decjax, one step per iteration": 1,
        "hand-written": None,
    }
    for every in (1, 16):
        for name, unroll in programs.items():
            program = build(unroll, every)
            counted = step_census(program.lower(params).compile(), [shape])
            weight = counted["shapes"][",".join(map(str, shape))]
            per_loop = min(unroll or 1, every)  # a record of one step: one per iteration
            rows.append(
                {
                    "n": n,
                    "record_every": every,
                    "program": name,
                    "passes_per_step": (weight["reads"] + weight["writes"]) / per_loop,
                    "copies_per_step": weight["copies"] / per_loop,
                    "kernels_per_step": counted["kernels"] / per_loop,
                }
            )
    return rows


def main(argv=None) -> int:
    args = arguments(
        __doc__,
        argv,
        lambda p: p.add_argument(
            "--only",
            nargs="+",
            choices=SECTIONS,
            help="measure these parts and merge them into the report already in --out",
        ),
    )
    device = jax.devices()[0]
    stem = f"simulate_step_{'quick' if args.quick else device.platform}"
    if args.quick:
        plan, steps, everies, rounds = [(4, a) for a in ALGORITHMS], 4, (2,), 1
    else:
        plan = [(n, a) for n in (16, 64, 256) for a in ALGORITHMS]
        steps, everies, rounds = 16, (1, 16), 3
    n, examples, every = (4, 100, 2) if args.quick else (64, 10_000, 35)
    parts = {
        "steps": lambda: [
            measure(name, n, steps=steps, every=every, rounds=rounds, calls=1)
            for n, name in plan
            for every in everies
        ],
        "evaluation": lambda: evaluation_cost(n, examples=examples, every=every, rounds=rounds),
        "sums": lambda: worker_sums(
            (4,) if args.quick else (16, 64, 256),
            1024 if args.quick else 200_704,
            repeats=1 if args.quick else 7,
        ),
        "compile": lambda: compile_times(args.quick, repeats=1 if args.quick else 3),
        "census": lambda: census(4 if args.quick else 64, steps=32),
        "time_to_result": lambda: time_to_result(
            4 if args.quick else 16,
            (4, 1_000) if args.quick else (100, 2_000),  # below and above the payback
            every=2 if args.quick else 50,
            rounds=1 if args.quick else 3,
        ),
    }
    if args.only:
        report = json.loads((args.out / f"{stem}.json").read_text())
    else:
        report = header(
            args.quick, model="MLP " + "-".join(map(str, LAYERS)) + ", batch 32 per worker"
        )
    for part in args.only or SECTIONS:
        report["rows" if part == "steps" else part] = parts[part]()
    write(args.out, stem, report, to_markdown(report))
    return 0


def to_markdown(report: dict) -> str:
    lines = [
        f"Measured on {report['device']}, jax {report['jax']}, {report['date']}"
        + (" (quick mode: not a measurement)" if report["quick"] else "")
        + f". {report['model']}. Per-step time of make_run's program (params donated) against "
        "a hand-written lax.scan with the same records (one step per loop iteration); ratios: "
        "medians over alternating rounds. decjax runs two steps per loop iteration (what "
        '`"auto"` chooses for a long run of this MLP) unless the column says one.',
        "",
        "| algorithm | n | record every | decjax ms | hand-written ms | ratio | one step per "
        "iteration ms | ratio | one / two | saved ps per parameter-step | decjax with XLA's "
        "reduction ms | ratio | max abs diff |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['algorithm']} | {r['n']} | {r['record_every']} | {r['now_ms']:.2f} | "
            f"{r['hand_ms']:.2f} | {r['ratio']:.3f} | {r['one_ms']:.2f} | {r['ratio_one']:.3f} | "
            f"{r['one_over_two']:.3f} | {r['saving_ps_per_float']:.0f} | "
            f"{r['xla_reduction_ms']:.2f} | {r['ratio_xla_reduction']:.3f} | "
            f"{r['max_abs_diff']:.1e} |"
        )
    e = report["evaluation"]
    lines += [
        "",
        f"Evaluation, D-PSGD on a ring, n = {e['n']}, {e['examples']:,} test examples, a record "
        f"every {e['record_every']} steps: per-step time without evaluation {e['none_ms']:.2f} ms; "
        f"evaluating the averaged model {e['averaged_ms']:.2f} ms (x{e['averaged_ratio']:.3f}); "
        f"every worker too (`eval_workers=True`) {e['workers_ms']:.2f} ms "
        f"(x{e['workers_ratio']:.3f}).",
    ]
    if "compile" in report:
        lines += _compile_markdown(report["compile"]) + _payback_markdown(report)
    if "time_to_result" in report:
        lines += _time_to_result_markdown(report["time_to_result"])
    if "census" in report:
        lines += [
            "",
            "D-PSGD on a ring: per step, passes over the first weight (reads and writes of "
            "arrays of its shape), copies and kernels in each compiled program "
            "(`benchmarks.hlo.step_census`):",
            "",
            "| n | record every | program | passes | copies | kernels |",
            "|---:|---:|---|---:|---:|---:|",
        ]
        for r in report["census"]:
            lines.append(
                f"| {r['n']} | {r['record_every']} | {r['program']} | {r['passes_per_step']:g} "
                f"| {r['copies_per_step']:g} | {r['kernels_per_step']:g} |"
            )
    if "sums" in report:
        lines += [
            "",
            "One sum over the workers, `jnp.sum(x, axis=0)` (XLA's reduction) against a dot "
            "with ones (decjax's CPU lowering):",
            "",
            "| n | floats per worker | reduction ms | dot ms | reduction / dot | max abs diff |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for r in report["sums"]:
            lines.append(
                f"| {r['n']} | {r['d']:,} | {r['reduction_ms']:.3f} | {r['dot_ms']:.3f} | "
                f"{r['reduction_over_dot']:.1f} | {r['max_abs_diff']:.1e} |"
            )
    return "\n".join(lines) + "\n"


def _compile_markdown(rows: list[dict]) -> list[str]:
    lines = [
        "",
        "Compile time (seconds, no compilation cache) of make_run's program, 4 steps, against "
        f'the hand-written program; "auto, long": the same program for a run of {LONG_RUN:,} '
        'steps (what `"auto"` chooses depends on the run\'s length):',
        "",
        "| model | n | decjax, auto | auto, long | one step per iteration | two | vmapped | "
        "hand-written | ratio, auto | ratio, auto, long | ratio, one | ratio, two | "
        "ratio, vmapped |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['n']} | {r['decjax_auto_s']:.2f} | "
            f"{r['decjax_auto_long_s']:.2f} | {r['decjax_one_s']:.2f} | "
            f"{r['decjax_two_s']:.2f} | {r['decjax_vmapped_s']:.2f} | "
            f"{r['hand_written_s']:.2f} | {r['ratio_auto']:.2f} | {r['ratio_auto_long']:.2f} | "
            f"{r['ratio_one']:.2f} | {r['ratio_two']:.2f} | {r['ratio_vmapped']:.2f} |"
        )
    return lines


def payback(report: dict) -> list[dict]:
    """Where two steps per iteration pay back their longer compile: for each step row
    recording every 16 steps, the MLP's extra compile at that n (two steps against one)
    over the saving per step, in steps and in parameter-steps (all workers)."""
    extra = {
        r["n"]: r["decjax_two_s"] - r["decjax_one_s"]
        for r in report["compile"]
        if r["model"] == "mlp"
    }
    rows = []
    for r in report["rows"]:
        if r["n"] not in extra or r["record_every"] == 1:
            continue
        saved_s = 1e-3 * (r["one_ms"] - r["now_ms"])
        per_float = 1e-12 * r["saving_ps_per_float"]
        rows.append(
            {
                "algorithm": r["algorithm"],
                "n": r["n"],
                "extra_compile_s": extra[r["n"]],
                "saved_ms": 1e3 * saved_s,
                "payback_steps": extra[r["n"]] / saved_s if saved_s > 0 else float("inf"),
                "payback_float_steps": (
                    extra[r["n"]] / per_float if per_float > 0 else float("inf")
                ),
            }
        )
    return rows


def _payback_markdown(report: dict) -> list[str]:
    lines = [
        "",
        "Payback of two steps per iteration (MLP, a record every 16 steps): the extra compile "
        "(two steps against one, table above) over what the second step saves per step "
        f'(first table). decjax\'s `"auto"` runs two steps per iteration from '
        f"{PAYBACK_FLOAT_STEPS:.0e} parameter-steps (`PAYBACK_FLOAT_STEPS`); inf: no saving "
        "measured.",
        "",
        "| algorithm | n | extra compile s | saved ms per step | payback steps | "
        "payback parameter-steps |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in payback(report):
        lines.append(
            f"| {r['algorithm']} | {r['n']} | {r['extra_compile_s']:.3f} | {r['saved_ms']:.3f} | "
            f"{r['payback_steps']:,.0f} | {r['payback_float_steps']:.1e} |"
        )
    return lines


def _time_to_result_markdown(rows: list[dict]) -> list[str]:
    lines = [
        "",
        "Time to result (seconds from a fresh trace to the final parameters: trace, compile "
        "without the compilation cache, every step), D-PSGD on a ring, a record every "
        f'{rows[0]["record_every"]} steps; medians over rounds. "auto" runs two steps per '
        f"iteration from {PAYBACK_FLOAT_STEPS:.0e} parameter-steps; simulate's own run "
        '(its checks, chunks and records) is "auto":',
        "",
        "| n | steps | parameter-steps | auto's steps per iteration | auto s | one s | two s | "
        "simulate s | hand-written s | auto / hand | one / hand | two / hand | simulate / hand |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']} | {r['steps']:,} | {r['parameter_steps']:.1e} | {r['auto_unroll']} | "
            f"{r['auto_s']:.2f} | {r['one_s']:.2f} | {r['two_s']:.2f} | {r['simulate_s']:.2f} | "
            f"{r['hand_s']:.2f} | {r['auto_over_hand']:.3f} | {r['one_over_hand']:.3f} | "
            f"{r['two_over_hand']:.3f} | {r['simulate_over_hand']:.3f} |"
        )
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
