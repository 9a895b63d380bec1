"""The measurements of ``python -m benchmarks.gpu``, one function per section.

Each section returns a list of ``(label, measure)`` pairs, smallest first, so
that a budget running out skips the largest; ``measure()`` returns one row (a
dict) whose ratios compare decjax with a baseline timed in the same process.
The sizes come from a :class:`Plan`: the GPU's, or tiny ones (``quick``) for
the CPU smoke test that keeps the suite from rotting.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

import decjax
from benchmarks import (
    conv_lowering,
    convnets,
    dpsgd_step,
    memory,
    push_sum,
    robust,
    roofline,
    timing,
    torch_compare,
    torch_convnets,
)

LAYERS, LR = roofline.LAYERS, roofline.LR  # the record's models and rate, everywhere


@dataclasses.dataclass(frozen=True)
class Plan:
    """The sizes a run measures."""

    quick: bool
    mlp_sizes: tuple = (256, 1024, 4096)
    loop_sizes: tuple = (256,)  # the per-worker torch loop (minutes per measurement beyond)
    lenet_sizes: tuple = (16, 64, 256)
    resnet_sizes: tuple = (16, 64)
    record_sizes: tuple = (256, 1024, 4096, 16384)
    limits_n: int = 4096  # the census and roofline of the record's program
    logistic_record: int = 262_144
    memory_sizes: tuple = (16, 32)
    overhead_n: int = 256
    gossip: tuple = (256, 1 << 20, 50)  # n, floats per worker, rounds
    steps: int = 20
    repeats: int = 5

    @classmethod
    def for_device(cls, quick: bool) -> Plan:
        if not quick:
            return cls(quick=False)
        return cls(
            quick=True,
            mlp_sizes=(4,),
            loop_sizes=(4,),
            lenet_sizes=(2,),
            resnet_sizes=(),  # minutes of CPU compilation: the model-state row has ResNet-20
            record_sizes=(8, 16),
            limits_n=4,
            logistic_record=32,
            memory_sizes=(2, 4),
            overhead_n=4,
            gossip=(8, 1024, 2),
            steps=2,
            repeats=1,
        )


def _torch():
    """``(device, version)`` of an importable PyTorch, else ``(None, None)``."""
    return torch_compare.torch_device()


def dpsgd(plan: Plan) -> list:
    """D-PSGD, MLP 784-256-256-10, ring: decjax vs hand-written JAX vs torch.func vs a loop."""
    device, _ = _torch()

    def one(n):
        row = dpsgd_step.step_benchmark(n, steps=plan.steps, repeats=plan.repeats)
        if device is not None:
            for name, compile_it in (("torch_func_eager", False), ("torch_func_compile", True)):
                seconds = torch_compare.torch_func_step(
                    n, device, compile_it=compile_it, steps=plan.steps, repeats=plan.repeats
                )
                row[f"{name}_ms"] = 1e3 * seconds
                row[f"{name}_over_decjax"] = row[f"{name}_ms"] / row["decjax_ms"]
            if n in plan.loop_sizes:
                seconds = torch_compare.per_worker_loop_step(
                    n, device, steps=min(plan.steps, 3), repeats=1
                )
                row["torch_loop_ms"] = 1e3 * seconds
                row["torch_loop_over_decjax"] = row["torch_loop_ms"] / row["decjax_ms"]
        return row

    return [(f"n={n}", lambda n=n: one(n)) for n in plan.mlp_sizes]


def convnets_section(plan: Plan) -> list:
    """LeNet-5 and ResNet-20 (BatchNorm, GroupNorm): decjax (vmapped and one worker at a time)
    vs hand-written JAX vs torch.func + compile vs the per-worker torch loop."""
    device, _ = _torch()
    steps = max(2, plan.steps // 4)

    def one(name, n):
        row = convnets.step_benchmark(name, n, steps=steps, repeats=plan.repeats)
        lowering = conv_lowering.step_benchmark(name, n, [1, n], steps=steps, repeats=1)
        row["one_worker_at_a_time_ms"] = lowering[f"chunks_{n}_ms"]
        row["vmap_over_one_at_a_time"] = lowering["chunks_1_ms"] / lowering[f"chunks_{n}_ms"]
        if device is not None and name in torch_convnets.SHAPES:
            seconds = torch_convnets.torch_func_step(
                name, n, device, compile_it=True, steps=steps, repeats=plan.repeats
            )
            row["torch_func_compile_ms"] = 1e3 * seconds
            row["torch_func_compile_over_decjax"] = row["torch_func_compile_ms"] / row["decjax_ms"]
            seconds = torch_convnets.per_worker_loop_step(name, n, device, steps=2, repeats=1)
            row["torch_loop_ms"] = 1e3 * seconds
            row["torch_loop_over_decjax"] = row["torch_loop_ms"] / row["decjax_ms"]
        return row

    plans = [("lenet5", n) for n in plan.lenet_sizes]
    plans += [(m, n) for n in plan.resnet_sizes for m in ("resnet20", "resnet20_gn")]
    return [(f"{m} n={n}", lambda m=m, n=n: one(m, n)) for m, n in plans]


def throughput(model: str, n: int, *, steps: int, repeats: int, precision: str = "float32") -> dict:
    """Simulated worker-steps per second: D-PSGD on a ring, batch 32 per worker gathered
    from each worker's shard on the device, the program ``make_run`` compiles; parameters
    stored as ``precision`` (``roofline.PRECISIONS``)."""
    jitted, params, unroll = roofline.record_program(model, n, steps=steps, precision=precision)
    first, seconds, metrics = roofline.timed_donated(jitted, params, repeats=repeats)
    return {
        "model": model,
        "n": n,
        "precision": precision,
        "steps_per_iteration": unroll,
        "step_ms": 1e3 * seconds / steps,
        "worker_steps_per_s": n * steps / seconds,
        "compile_and_first_call_s": first,
        "train_loss": float(metrics["train_loss"][-1]),
    }


def dense_reference(n: int, steps: int) -> dict:
    """decjax's D-PSGD on a ring against ``W @ (x - lr g)`` with the dense mixing matrix at
    ``precision=HIGHEST``, same full batches: the throughput rows compute the right thing."""
    net = decjax.problems.mlp(LAYERS["mlp"])
    params = decjax.replicate(net.init(jax.random.key(0)), n)
    x = jax.random.normal(jax.random.key(1), (n, 32, 784))
    y = jax.random.randint(jax.random.key(2), (n, 32), 0, 10)
    ring = decjax.ring(n)
    run = decjax.make_run(net.loss, decjax.dpsgd(LR, ring), steps=steps, eval_every=steps)
    mine = jax.jit(lambda p: run(p, jax.random.key(0), (x, y))[0].params)(params)
    w = jnp.asarray(ring.matrix(), jnp.float32)
    grad = jax.vmap(jax.grad(net.loss))

    def step(p, _):
        p = jax.tree.map(lambda a, g: a - LR * g, p, grad(p, (x, y)))
        mixed = jax.tree.map(
            lambda a: jnp.tensordot(w, a, axes=1, precision=jax.lax.Precision.HIGHEST), p
        )
        return mixed, None

    theirs = jax.jit(lambda p: jax.lax.scan(step, p, None, length=steps)[0])(params)
    diff = max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(jax.tree.leaves(mine), jax.tree.leaves(theirs), strict=True)
    )
    return {"model": "mlp", "n": n, "check": "dense W reference", "max_abs_diff": diff}


def record(plan: Plan) -> list:
    """Worker-steps per second (the throughput record), checked against a dense reference;
    the MLP also with bfloat16 parameters under low_precision at the largest n."""
    out = [("dense reference n=16", lambda: dense_reference(16, plan.steps))]
    for n in plan.record_sizes:
        out.append(
            (
                f"mlp n={n}",
                lambda n=n: throughput("mlp", n, steps=plan.steps, repeats=plan.repeats),
            )
        )
    n = plan.record_sizes[-1]  # half the parameters' bytes, at the largest float32 size
    out.append(
        (
            f"mlp bfloat16 stochastic n={n}",
            lambda: throughput(
                "mlp", n, steps=plan.steps, repeats=plan.repeats, precision="bfloat16 stochastic"
            ),
        )
    )
    n = plan.logistic_record
    out.append((f"logistic n={n}", lambda: throughput("logistic", n, steps=plan.steps, repeats=1)))
    return out


def limits(plan: Plan) -> list:
    """What limits the record (``benchmarks/roofline.py``): the compiled step's kernels and
    passes over memory, the device's memory rate, and the roofline they give, for two steps
    per loop iteration, one, and bfloat16 parameters (cast, and under low_precision)."""
    n = plan.limits_n
    steps = max(4, plan.steps)  # two loop iterations at least: one is compiled away

    def one():
        rows = roofline.measure("mlp", n, steps=steps, repeats=plan.repeats, rounds=plan.steps)
        out = {"n": n, "memory_GBps": rows["memory_GBps"]}
        for r in rows["variants"]:
            name = f"{r['precision']} x{r['steps_per_iteration']}"
            for key in (
                "worker_steps_per_s",
                "kernels_per_step",
                "integer_kernels_per_step",
                "largest_weight_passes_per_step",
                "bytes_per_worker_step",
                "roofline_worker_steps_per_s",
                "fraction_of_roofline",
                "memory_bytes_per_worker",
                "train_loss",
            ):
                out[f"{name} {key}"] = r[key]
        return out

    return [(f"mlp n={n}", one)]


def memory_section(plan: Plan) -> list:
    """ResNet-20 (BatchNorm), batch 32 per worker: bytes per worker from two compiled
    programs, and the largest n in the device's memory, with and without remat."""
    small, large = plan.memory_sizes

    def one(remat):
        a = memory.compiled_bytes(small, 1, remat, 2)
        b = memory.compiled_bytes(large, 1, remat, 2)
        per_worker = (b - a) / (large - small)
        fixed = a - small * per_worker
        budget, text = memory._budget(jax.devices()[0], 24.0)
        return {
            "model": "resnet20",
            "remat": remat,
            "bytes_per_worker": per_worker,
            "fixed_bytes": fixed,
            "memory": text,
            "largest_n": int((budget - fixed) // per_worker),
        }

    return [(f"remat={r}", lambda r=r: one(r)) for r in (False, True)]


def _step_ms(loss, tx, params, data, *, steps, repeats, stateful=False, state=None) -> float:
    run = decjax.make_run(loss, tx, steps=steps, eval_every=steps, stateful=stateful)
    jitted = jax.jit(lambda p, k, d, s: run(p, k, d, None, None, s)[0].params)
    seconds = dpsgd_step._timed(jitted, params, jax.random.key(3), data, state, repeats=repeats)
    return 1e3 * seconds / steps


def overheads(plan: Plan) -> list:
    """What the newer layers add to a D-PSGD step: the clock, push-sum, DiLoCo, model state,
    robust combines."""
    n, steps = plan.overhead_n, plan.steps
    rounds = 3 if not plan.quick else 1
    mlp = decjax.problems.mlp(LAYERS["mlp"])

    def clock():
        rows = timing.measure(
            n,
            mlp,
            "mlp",
            steps=steps,
            rounds=rounds,
            repeats=plan.repeats,
            only=("dpsgd ring", "diloco (H = 8)"),
        )
        return {"n": n, **{f"clock {r['algorithm']}": r["ratio"] for r in rows}}

    def push():
        rows = push_sum.measure(n, steps=steps, rounds=rounds, repeats=plan.repeats)
        return {"n": n, **{f"{r['graph']}: {r['pair']}": r["ratio"] for r in rows}}

    def periodic():
        params = decjax.replicate(mlp.init(jax.random.key(0)), n)
        x = jax.random.normal(jax.random.key(1), (n, 32, 784))
        data = (x, jax.random.randint(jax.random.key(2), (n, 32), 0, 10))
        times = {
            name: _step_ms(mlp.loss, tx, params, data, steps=steps, repeats=plan.repeats)
            for name, tx in (
                ("dpsgd ring", decjax.dpsgd(LR, decjax.ring(n))),
                ("local SGD (H = 8)", decjax.local_sgd(LR, n, every=8)),
                ("diloco (H = 8)", decjax.diloco(optax.sgd(LR), every=8)),
            )
        }
        base = times["dpsgd ring"]
        return {"n": n, **{f"{k} ms": v for k, v in times.items()}} | {
            f"{k} / dpsgd ring": v / base for k, v in times.items() if k != "dpsgd ring"
        }

    def robust_combine():
        rules = ("clipping", "median") if plan.quick else tuple(robust.RULES)  # quick: the code
        rows = robust.measure(
            n,
            steps=steps,
            rounds=rounds,
            repeats=plan.repeats,
            graphs=("exponential",),
            rules=rules,
        )
        return {"n": n, **{f"{r['rule']} / gossip": r["ratio"] for r in rows}}

    def model_state():
        size = min(n, 16)
        times = {}
        for name in ("resnet20", "resnet20_gn"):
            model, stateful, params, state, data = convnets._setup(name, size, 32)
            tx = decjax.dpsgd(LR, decjax.ring(size), momentum=0.9)
            times[name] = _step_ms(
                model.loss,
                tx,
                params,
                data,
                steps=max(2, steps // 4),
                repeats=plan.repeats,
                stateful=stateful,
                state=state,
            )
        return {
            "n": size,
            "batchnorm_ms": times["resnet20"],
            "groupnorm_ms": times["resnet20_gn"],
            "batchnorm / groupnorm": times["resnet20"] / times["resnet20_gn"],
        }

    return [
        ("the clock", clock),
        ("push-sum", push),
        ("local SGD and DiLoCo", periodic),
        ("model state (ResNet-20 BatchNorm vs GroupNorm)", model_state),
        ("robust combine (exponential graph)", robust_combine),
    ]


def gossip(plan: Plan) -> list:
    """Gossip bandwidth on a ring against a device copy of the same bytes."""
    n, d, rounds = plan.gossip

    def one():
        g = dpsgd_step.gossip_benchmark(n, d, rounds=rounds, repeats=plan.repeats)
        keep = ("n", "d", "copy_ms", "copy_GBps", "copy_double_buffered_ms")
        row = {k: g[k] for k in keep}
        for backend in dpsgd_step.BACKENDS:
            row[f"{backend}_ms"] = g[f"{backend}_ms"]
            row[f"{backend}_vs_double_buffered_copy"] = g[f"{backend}_vs_double_buffered_copy"]
        row["dense_default_precision_rel_error"] = g["dense_default_rel_error"]
        return row

    return [(f"ring n={n} d={d}", one)]


# in the order they run: the headline figures first, so a short budget still gets them
SECTIONS = {
    "record": record,
    "limits": limits,
    "dpsgd": dpsgd,
    "gossip": gossip,
    "overheads": overheads,
    "convnets": convnets_section,
    "memory": memory_section,
}
