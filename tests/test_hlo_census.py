"""The census of a compiled step loop (``benchmarks.hlo.step_census``): counts checked on
programs whose passes over memory are known, on the CPU and on a GPU-shaped HLO text."""

import jax
import jax.numpy as jnp
import pytest

import decjax
from benchmarks.hlo import step_census


def test_an_in_place_loop_reads_and_writes_its_array_once_per_iteration():
    n, d = 8, 1024
    one = jnp.ones(())
    program = jax.jit(lambda a, one: jax.lax.fori_loop(0, 5, lambda _, b: b * one + 1.0, a))
    census = step_census(program.lower(jnp.zeros((n, d)), one).compile(), [(n, d)])
    assert census["shapes"][f"{n},{d}"] == {"reads": 1, "writes": 1, "copies": 0}
    assert census["bytes"] == 2 * n * d * 4 and census["kernels"] >= 1


@pytest.mark.parametrize("unroll, passes, copies", [(2, 5, 0), (1, 7, 1)])
def test_the_dpsgd_step_makes_five_passes_over_its_first_weight(unroll, passes, copies):
    """D-PSGD on a ring reads the first weight in the forward pass, writes its gradient,
    and reads both and writes the result in one fused update-and-gossip kernel: five
    passes, the least a step can make. One step per loop iteration adds a copy (two
    passes) back into the loop carry."""
    n, layers = 8, [48, 32, 10]
    net = decjax.problems.mlp(layers)
    params = decjax.replicate(net.init(jax.random.key(0)), n)
    x = jax.random.normal(jax.random.key(1), (n, 16, layers[0]))
    y = jax.random.randint(jax.random.key(2), (n, 16), 0, layers[-1])
    run = decjax.make_run(
        net.loss,
        decjax.dpsgd(0.1, decjax.ring(n)),
        steps=8,
        eval_every=8,  # one record: the step loop runs 8 steps
        steps_per_iteration=unroll,
    )
    program = jax.jit(lambda p: run(p, jax.random.key(0), (x, y))[0].params)
    census = step_census(program.lower(params).compile(), [(n, 48, 32)])
    weight = census["shapes"]["8,48,32"]
    assert (weight["reads"] + weight["writes"]) / unroll == passes
    assert weight["copies"] / unroll == copies


def test_a_loop_compiled_away_is_refused():
    program = jax.jit(lambda a: jax.lax.fori_loop(0, 1, lambda _, b: b * 2.0, a))
    with pytest.raises(ValueError, match="at least two"):
        step_census(program.lower(jnp.zeros((4, 4))).compile(), [(4, 4)])


GPU_LIKE = """HloModule jit_program

%fused_update (param_0: f32[8,16,4], param_1: f32[8,4,16]) -> f32[8,16,4] {
  %param_0 = f32[8,16,4]{2,1,0} parameter(0)
  %param_1 = f32[8,4,16]{2,1,0} parameter(1)
  %transpose.1 = f32[8,16,4]{2,1,0} transpose(%param_1), dimensions={0,2,1}
  ROOT %add.1 = f32[8,16,4]{2,1,0} add(%param_0, %transpose.1)
}

%command_buffer (p0: f32[8,16,4], p1: bf16[8,3,16]) -> f32[8,16,4] {
  %p0 = f32[8,16,4]{2,1,0} parameter(0)
  %p1 = bf16[8,3,16]{2,1,0} parameter(1)
  %custom-call.1 = (f32[8,4,16]{2,1,0}, s8[1024]{0}) custom-call(%p1, %p0), custom_call_target="__cublas$gemm"
  %get-tuple-element.1 = f32[8,4,16]{2,1,0} get-tuple-element(%custom-call.1), index=0
  ROOT %loop_add_fusion = f32[8,16,4]{2,1,0} fusion(%p0, %get-tuple-element.1), kind=kLoop, calls=%fused_update
}

%body (arg: (s32[], f32[8,16,4], bf16[8,3,16])) -> (s32[], f32[8,16,4], bf16[8,3,16]) {
  %arg = (s32[], f32[8,16,4]{2,1,0}, bf16[8,3,16]{2,1,0}) parameter(0)
  %gte.0 = s32[] get-tuple-element(%arg), index=0
  %gte.1 = f32[8,16,4]{2,1,0} get-tuple-element(%arg), index=1
  %gte.2 = bf16[8,3,16]{2,1,0} get-tuple-element(%arg), index=2
  %call.1 = f32[8,16,4]{2,1,0} call(%gte.1, %gte.2), to_apply=%command_buffer
  %copy.1 = bf16[8,3,16]{2,1,0} copy(%gte.2)
  %constant.2 = s32[] constant(1)
  %add.2 = s32[] add(%gte.0, %constant.2)
  ROOT %tuple.1 = (s32[], f32[8,16,4]{2,1,0}, bf16[8,3,16]{2,1,0}) tuple(%add.2, %call.1, %copy.1)
}

%cond (arg.1: (s32[], f32[8,16,4], bf16[8,3,16])) -> pred[] {
  %arg.1 = (s32[], f32[8,16,4]{2,1,0}, bf16[8,3,16]{2,1,0}) parameter(0)
  ROOT %constant.1 = pred[] constant(true)
}

ENTRY %main (p: f32[8,16,4], q: bf16[8,3,16]) -> f32[8,16,4] {
  %p = f32[8,16,4]{2,1,0} parameter(0)
  %q = bf16[8,3,16]{2,1,0} parameter(1)
  %c = s32[] constant(0)
  %tuple.0 = (s32[], f32[8,16,4]{2,1,0}, bf16[8,3,16]{2,1,0}) tuple(%c, %p, %q)
  %while.1 = (s32[], f32[8,16,4]{2,1,0}, bf16[8,3,16]{2,1,0}) while(%tuple.0), condition=%cond, body=%body
  ROOT %out = f32[8,16,4]{2,1,0} get-tuple-element(%while.1), index=1
}
"""  # noqa: E501 (XLA's lines, as it prints them)


class _Text:
    def as_text(self):
        return GPU_LIKE


def test_a_gpu_program_counts_gemms_command_buffers_and_transposed_arrays():
    """A cuBLAS gemm's result sits in a tuple with its workspace, kernels run inside a
    command buffer's ``call``, and a transposed gradient is the weight's bytes."""
    census = step_census(_Text(), [(8, 16, 4), (8, 3, 16)])
    # the gemm reads the weight and writes its (transposed) gradient; the fusion reads both
    # and writes the weight
    assert census["shapes"]["8,16,4"] == {"reads": 3, "writes": 2, "copies": 0}
    assert census["shapes"]["8,3,16"] == {"reads": 2, "writes": 1, "copies": 1}
    assert census["kernels"] == 4  # gemm, fusion, copy, the counter's add
    assert census["integer_kernels"] == 1
    assert census["bytes"] == 5 * 8 * 16 * 4 * 4 + 3 * 8 * 3 * 16 * 2
