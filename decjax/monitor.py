"""Watching a run while it trains: per-record callbacks and a TensorBoard writer.

``simulate`` and ``sweep`` call ``callback(step, metrics)`` after every
compiled chunk, with the chunk's records (arrays over its records, and over
the configurations of a sweep). :func:`per_record` turns that into one call
per record; :class:`TensorBoard` writes every record as a scalar to
TensorBoard event files, with no dependency (the file format is written
here: TFRecord framing, CRC-32C, the ``Event`` protocol buffer)::

    board = decjax.monitor.TensorBoard("runs/ring", eval_every=50)
    decjax.simulate(..., eval_every=50, callback=board)
    # tensorboard --logdir runs
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from decjax._validation import check_int

__all__ = ["TensorBoard", "per_record"]


def per_record(fn: Callable[[int, dict], None], *, eval_every: int):
    """A ``callback`` for ``simulate`` / ``sweep`` that calls ``fn(step, values)`` once per
    record, oldest first: ``values`` maps each metric to its value at that record (a
    float, or an array over a sweep's configurations). ``eval_every`` must be the run's."""
    eval_every = check_int("eval_every", eval_every, minimum=1)

    def callback(step: int, metrics: dict) -> None:
        records = np.shape(next(iter(metrics.values())))[-1]
        for i in range(records):
            at = step - (records - 1 - i) * eval_every
            values = {k: np.asarray(v)[..., i] for k, v in metrics.items()}
            fn(at, {k: float(v) if v.ndim == 0 else v for k, v in values.items()})

    return callback


class TensorBoard:
    """A ``callback`` writing every record of every metric as a TensorBoard scalar.

    Args:
      logdir: the folder of the event file (created); a sweep writes one
        subfolder per configuration, named by ``labels`` (in the sweep's
        configuration order: the product of the grid in its key order) or by
        its index.
      eval_every: the run's ``eval_every`` (to give each record its step).
      labels: names of a sweep's configurations.
    """

    def __init__(self, logdir, *, eval_every: int, labels: Sequence[str] | None = None):
        self.logdir = Path(logdir)
        self.labels = None if labels is None else [str(label) for label in labels]
        self._files: dict[str, Path] = {}
        self._callback = per_record(self._write, eval_every=eval_every)

    def __call__(self, step: int, metrics: dict) -> None:
        self._callback(step, metrics)

    def _write(self, step: int, values: dict) -> None:
        first = next(iter(values.values()))
        runs = int(np.size(first)) if np.ndim(first) else 0
        if self.labels is not None and runs and len(self.labels) != runs:
            raise ValueError(f"labels has {len(self.labels)} names for a sweep of {runs} runs")
        for run in range(runs) if runs else [None]:
            name = "" if run is None else (self.labels[run] if self.labels else f"run_{run}")
            scalars = {
                k: float(np.asarray(v)[run] if run is not None else v) for k, v in values.items()
            }
            self._append(name, step, scalars)

    def _append(self, name: str, step: int, scalars: dict[str, float]) -> None:
        path = self._files.get(name)
        if path is None:
            folder = self.logdir / name
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}"
            path.write_bytes(_record(_event(time.time(), 0, file_version="brain.Event:2")))
            self._files[name] = path
        with path.open("ab") as f:
            f.write(_record(_event(time.time(), step, scalars=scalars)))

    @property
    def files(self) -> list[Path]:
        """The event files written so far."""
        return list(self._files.values())


# ------------------------------------------------------------------ the file format


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_TABLE = _crc_table()


def _crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum of TFRecord framing."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _record(data: bytes) -> bytes:
    """TFRecord framing: length, its masked CRC, the data, its masked CRC."""
    length = struct.pack("<Q", len(data))
    return (
        length
        + struct.pack("<I", _masked(_crc32c(length)))
        + data
        + struct.pack("<I", _masked(_crc32c(data)))
    )


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1  # int64 as protobuf writes it
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    key = _varint(number << 3 | wire)
    return key + (_varint(len(payload)) + payload if wire == 2 else payload)


def _event(wall_time: float, step: int, *, file_version=None, scalars=None) -> bytes:
    """An ``Event`` message: wall_time (1, double), step (2, int64), file_version (3) or
    summary (5): ``Summary.value`` (1) of ``Value`` {tag (1), simple_value (2, float)}."""
    out = _field(1, 1, struct.pack("<d", wall_time)) + _field(2, 0, _varint(step))
    if file_version is not None:
        return out + _field(3, 2, file_version.encode())
    values = b"".join(
        _field(1, 2, _field(1, 2, tag.encode()) + _field(2, 5, struct.pack("<f", value)))
        for tag, value in scalars.items()
    )
    return out + _field(5, 2, values)
