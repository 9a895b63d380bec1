"""Gossip operators: mixing stacked worker quantities along axis 0."""

from decjax.gossip._mix import mix, mix_delta, resolve_backend
from decjax.gossip.accelerated import accelerated_mix, accelerated_step, optimal_momentum
from decjax.gossip.communication import (
    bytes_per_round,
    link_bytes,
    messages_per_worker,
    worker_bytes,
)
from decjax.gossip.compression import Compressor, identity, qsgd, random_k, sign, top_k
from decjax.gossip.push_sum import debias, push_sum_average
from decjax.gossip.relay import (
    RelayState,
    Routes,
    relay_average,
    relay_init,
    relay_round,
    relay_routes,
)
from decjax.gossip.traffic import TRAFFIC, Links, Traffic

__all__ = [
    "TRAFFIC",
    "Compressor",
    "Links",
    "RelayState",
    "Routes",
    "Traffic",
    "accelerated_mix",
    "accelerated_step",
    "bytes_per_round",
    "debias",
    "identity",
    "link_bytes",
    "messages_per_worker",
    "mix",
    "mix_delta",
    "optimal_momentum",
    "push_sum_average",
    "qsgd",
    "random_k",
    "relay_average",
    "relay_init",
    "relay_round",
    "relay_routes",
    "resolve_backend",
    "sign",
    "top_k",
    "worker_bytes",
]
