"""The training data of a run with Byzantine workers whose attack alters their data."""

from __future__ import annotations

from typing import Any

from decjax.byzantine import Byzantine, LabelFlip
from decjax.data.labels import flip_labels


def poison(data: Any, byzantine: Byzantine | None) -> Any:
    """What a run with ``byzantine`` workers trains on: their labels flipped under
    :class:`~decjax.byzantine.LabelFlip`, ``data`` itself otherwise."""
    if byzantine is None or not byzantine.attack.poisons_data():
        return data
    attack = byzantine.attack
    if not isinstance(attack, LabelFlip):
        raise TypeError(f"no data poisoning is defined for {type(attack).__name__}")
    return flip_labels(data, byzantine.workers, attack.classes)
