"""The DiLoCo family's shared core: the inner steps and each fragment's outer rounds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from decjax import _axis
from decjax.algorithms._common import (
    Gossip,
    also_sent,
    zeros_count,
)
from decjax.gossip import TRAFFIC, Compressor, Links, Traffic, worker_bytes
from decjax.gossip.compression import compress_rows


class DiLoCoState(NamedTuple):
    """State of the DiLoCo family; the model trees are tuples over the ``P`` fragments,
    each a list of that fragment's stacked ``(n, ...)`` leaves."""

    count: jax.Array  # type: ignore[assignment]  # optax's name; shadows tuple.count
    inner: Any  # the per-worker inner optimizer's state
    outer_params: Any  # theta^o per worker (equal on every worker with the all-reduce)
    outer: Any  # per-worker outer optimizer state, one per fragment
    drift: Any  # u = theta_i - theta^o, the sum of the inner updates since the outer step
    pending: Any  # pseudo-gradients sent and not yet applied (overlap > 0), else None
    key: jax.Array  # the compressor's randomness


@dataclass(frozen=True)
class Rounds:
    """The inner steps and each fragment's outer rounds (the shared core of the family)."""

    inner: Any
    outer: Any
    every: int
    fragments: int
    overlap: int
    alpha: float
    gossip: Gossip | None
    compressor: Compressor | None

    def split(self, tree) -> tuple[list, ...]:
        """A tree's leaves as ``P`` lists, leaf ``l`` in fragment ``l mod P``."""
        leaves = jax.tree.leaves(tree)
        return tuple(leaves[p :: self.fragments] for p in range(self.fragments))

    def join(self, parts: tuple[list, ...], like) -> Any:
        leaves = list(jax.tree.leaves(like))
        for p, part in enumerate(parts):
            leaves[p :: self.fragments] = part
        return jax.tree.unflatten(jax.tree.structure(like), leaves)

    def init(self, params, key) -> DiLoCoState:
        count = len(jax.tree.leaves(params))
        if count < self.fragments:
            raise ValueError(
                f"fragments ({self.fragments}) must be at most the number of parameter "
                f"leaves ({count})"
            )
        if self.gossip is not None:
            n = _axis.total_workers(jax.tree.leaves(params)[0].shape[0])
            if n != self.gossip.topology.n:
                raise ValueError(f"params have {n} workers, the topology {self.gossip.topology.n}")
        parts = self.split(params)
        if self.compressor is not None:
            for part in parts:
                self.compressor.check(sum(x[0].size for x in part))
        outer_params = parts
        if self.gossip is None:  # one outer model: worker 0's (all start from the same model)
            outer_params = tuple(
                [jnp.broadcast_to(_axis.gather_rows(x)[:1], x.shape) for x in part]
                for part in parts
            )
        zeros = tuple(optax.tree.zeros_like(part) for part in parts)
        return DiLoCoState(
            count=zeros_count(),
            inner=self.inner.init(params),
            outer_params=outer_params,
            outer=tuple(self.outer.init(part) for part in outer_params),
            drift=tuple(map(optax.tree.sub, parts, outer_params)),
            pending=zeros if self.overlap else None,
            key=key,
        )

    def step(self, grads, state: DiLoCoState, params, **extra_args):
        t, like = state.count, params
        updates, inner = self.inner.update(grads, state.inner, params, **extra_args)
        params = list(self.split(optax.apply_updates(params, updates)))
        drift = list(map(optax.tree.add, state.drift, self.split(updates)))
        keys = jax.random.split(state.key, self.fragments + 1)
        outer_params, outer, pending = list(state.outer_params), list(state.outer), []
        traffic = self._silent()
        for p in range(self.fragments):
            offset = p * self.every // self.fragments
            sent_at = t - self.overlap  # the step whose pseudo-gradient is applied now
            launch = (t + 1 + offset) % self.every == 0
            apply = ((sent_at + 1 + offset) % self.every == 0) & (sent_at >= 0)
            waiting = state.pending[p] if self.overlap else optax.tree.zeros_like(drift[p])
            theta_o, u, delta, sent = jax.lax.cond(
                launch,
                lambda theta_o, u, waiting, key: self._send(theta_o, u, key, t // self.every),
                lambda theta_o, u, waiting, key: (theta_o, u, waiting, self._silent()),
                outer_params[p],
                drift[p],
                waiting,
                keys[p],
            )
            traffic = also_sent(traffic, sent)
            if self.overlap:  # send now, apply what was sent overlap steps ago
                pending.append(delta)
                delta = state.pending[p]
            outer_params[p], outer[p], drift[p], params[p] = jax.lax.cond(
                apply,
                self._apply,
                lambda theta_o, outer_state, u, x, delta: (theta_o, outer_state, u, x),
                theta_o,
                outer[p],
                u,
                params[p],
                delta,
            )
        if self.overlap:
            overlap = jnp.float32(self.overlap)
            traffic[TRAFFIC] = traffic[TRAFFIC].replace(overlap_steps=overlap)
        new_state = DiLoCoState(
            t + 1,
            inner,
            tuple(outer_params),
            tuple(outer),
            tuple(drift),
            tuple(pending) if self.overlap else None,
            keys[-1],
        )
        return self.join(tuple(params), like), new_state, traffic

    def _silent(self) -> dict:
        """The record of a step that sends nothing (the same keys as one that sends)."""
        if self.gossip is None:
            return {"bytes_sent": jnp.float32(0.0), TRAFFIC: Traffic(allreduce=jnp.float32(0.0))}
        return {
            "bytes_sent": jnp.float32(0.0),
            TRAFFIC: Traffic(links=Links.silent(self.gossip.topology, self.gossip.rounds)),
        }

    def _send(self, theta_o, u, key, outer_step):
        """Send one fragment's pseudo-gradient: ``(theta_o, u, delta, traffic)`` after it."""
        message = u if self.compressor is None else self._compress(u, key)
        size = jnp.float32(self._message_bytes(u))
        n = _axis.total_workers(jax.tree.leaves(u)[0].shape[0])
        if self.gossip is None:  # an all-reduce of the pseudo-gradients
            delta = [-jnp.broadcast_to(_axis.mean_workers(q), q.shape) for q in message]
            traffic = {"bytes_sent": 2 * (n - 1) / n * size, TRAFFIC: Traffic(allreduce=size)}
            return theta_o, u, delta, traffic
        moved_o, moved_q = self.gossip.delta((theta_o, message), outer_step)
        theta_o = optax.tree.add(theta_o, moved_o)  # the mixed outer model
        delta = [-(q + m) for q, m in zip(message, moved_q, strict=True)]
        u = optax.tree.sub(u, moved_o)  # so that theta_i = theta_o + u is unchanged
        grown = (worker_bytes(theta_o) + size) / worker_bytes(theta_o)  # outer model and drift
        links = self.gossip.links(theta_o, outer_step).scaled(grown)
        sent = self.gossip.bytes(theta_o, outer_step) * grown
        return theta_o, u, delta, {"bytes_sent": sent, TRAFFIC: Traffic(links=links)}

    def _apply(self, theta_o, outer_state, u, x, delta):
        """The outer step of one fragment, merged into the workers' models."""
        step, outer_state = self.outer.update(delta, outer_state, theta_o)
        theta_o = optax.apply_updates(theta_o, step)
        u = jax.tree.map(lambda d, s: (self.alpha * (d - s)).astype(d.dtype), u, step)
        return theta_o, outer_state, u, optax.tree.add(theta_o, u)

    def _compress(self, u, key):
        """Each worker's drift of one fragment (a list of leaves), compressed as one vector."""
        flat, unravel = _axis.flatten_rows(u)
        return unravel(compress_rows(self.compressor, key, flat))

    def _message_bytes(self, u) -> int:
        if self.compressor is None:
            return worker_bytes(u)
        d = sum(x[0].size for x in u)
        return self.compressor.bytes(d, jnp.dtype(u[0].dtype).itemsize)
