"""Argument types shared by the command lines (``python -m decjax``, ``decjax.multihost``).

Each type converts a flag's text and checks it, so a bad value ends in one
argparse line (``error: argument --lr: must be a finite number > 0, got nan``)
and exit code 2, never a traceback. No JAX here: the multi-process launcher
parses its flags before JAX may start.
"""

from __future__ import annotations

import argparse
import math


def checked(convert, ok, rule: str):
    """An argparse ``type`` that converts with ``convert`` and requires ``ok(value)``."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value

    parse.__name__ = rule  # argparse names the type in some messages
    return parse


positive_int = checked(int, lambda v: v >= 1, "a positive integer")
nonnegative_int = checked(int, lambda v: v >= 0, "a non-negative integer")
seed = checked(int, lambda v: 0 <= v < 2**63, "an integer in [0, 2**63)")
positive_float = checked(float, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")
probability = checked(float, lambda v: 0 <= v < 1, "in [0, 1)")
nonnegative_float = checked(float, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")
fraction = checked(float, lambda v: 0 < v <= 1, "in (0, 1]")


def _address(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(text)
    return text


address = checked(_address, lambda v: True, "HOST:PORT with a port in 1..65535")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` once, and not for options without a default."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)
