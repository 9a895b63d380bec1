r"""Simulated wall-clock time: a network and compute model evaluated inside ``jit``.

Every step of a decentralized run reports what it sent (the one channel of
:class:`~decjax.algorithms.StepTransformation` records): a
:class:`decjax.gossip.Traffic` under the key ``"traffic"``, written by the
algorithm and only read here. Its ``links`` (a :class:`decjax.gossip.Links`) are
the messages :math:`j \to i` in each communication phase the workers wait for
(its edges come from the topology kind, ``O(edges)``: no ``(n, n)`` matrix),
its ``allreduce`` the size of a vector averaged over all workers. A
:class:`TimeModel` turns that record into seconds:

- **compute**: worker :math:`i` spends :math:`c_i(t)` seconds on its gradient
  (:class:`Compute`: constant, per worker, a measured trace, or random draws);
- **a message** :math:`j \to i` of :math:`B_{ij}` bytes takes
  :math:`\ell_{ij} + \max(B_{ij} / b_{ij},\ O_j / p_j,\ I_i / p_i)`: the
  link's latency, then the slowest of the link's bandwidth and the sender's
  and receiver's ports (:class:`Network`), which every message of the phase
  shares (:math:`O_j` and :math:`I_i` are all the bytes :math:`j` sends and
  :math:`i` receives in the phase);
- **a phase** ends for worker :math:`i` when its own previous phase has ended
  and every message to it has arrived; a message leaves when its sender's
  previous phase ended (compute, for the first phase);
- **a synchronous step** ends when the last worker is done:

  .. math::

     t_{\text{step}} = \max_i r_i^{(P)}, \quad r^{(0)}_i = c_i, \quad
     r^{(p+1)}_i = \max\Bigl(r^{(p)}_i,\ \max_{j:\,B^{(p)}_{ij} > 0}
       r^{(p)}_j + \ell_{ij} + \tau^{(p)}_{ij}\Bigr),

  which on a homogeneous network is
  :math:`\max_i c_i + \sum_p \max_{ij} (\ell + \tau^{(p)}_{ij})`; an all-reduce is then
  a ring all-reduce, :math:`2 (n - 1)` phases of :math:`B / n` bytes on the
  ring :math:`0 \to 1 \to \dots \to n - 1 \to 0`;
- with ``overlap=True`` communication runs while the gradient is computed
  (an implementation that sends the previous step's model, as OSGP does): the
  step takes :math:`\max(\max_i c_i, \text{communication})`;
- messages nobody waits for (``Traffic.inflight``: DASGD, OSGP with delays) add
  no time; the step (a *tick*) lasts as long as the slowest computation, and
  :func:`network_delays` gives the tick delays the network
  implies; :func:`event_schedule` orders the arrivals of free-running workers.

What the model ignores: contention inside the switch fabric (only the ports
and links are limits), jitter other than the compute draws, protocol overhead
and packetisation. Bandwidths are in **bytes** per second; :func:`gbps`
converts from gigabits per second.
"""

from decjax.gossip.traffic import TRAFFIC, Traffic
from decjax.timing._events import Schedule, event_schedule, network_delays
from decjax.timing._model import LAWS, Compute, TimeModel
from decjax.timing._network import BYTES_PER_GIGABIT, Network, cluster, gbps, message_pattern

__all__ = [
    "BYTES_PER_GIGABIT",
    "LAWS",
    "TRAFFIC",
    "Compute",
    "Network",
    "Schedule",
    "TimeModel",
    "Traffic",
    "cluster",
    "event_schedule",
    "gbps",
    "message_pattern",
    "network_delays",
]
