"""RelaySum's learning-rate tuners (paper-figures/tuning.py), transcribed to read an error
curve instead of running their PyTorch loop: the same test points, events and bisection,
so the rates they try are the rates tried here.

``run(lr) -> errors`` gives the averaged model's error after 0, 1, ..., max_steps steps
(their ``iterate.step`` is the number of updates made).
"""

from __future__ import annotations

import math

import numpy as np


def test_points(max_steps: int, num_test_points: int = 1000) -> np.ndarray:
    """``curve_events``' test iterates: log-spaced steps in [1, max_steps], rounded, unique."""
    points = np.logspace(0, math.log2(max_steps), num_test_points, base=2)
    return np.unique(np.round(points).astype(int))


def curve_events(errors, points, plateau_tolerance, num_plateau_points=3):
    """Their ``curve_events``: ``(event, step, error)`` along one curve."""
    seen: list[float] = []
    initial = None
    step, error = 0, math.nan
    for step in points:
        error = float(errors[step])
        seen.append(error)
        if initial is None:
            initial = error
        yield ("error", step, error)
        if math.isnan(error) or error > initial:
            yield ("diverged", step, error)
            return
        if len(seen) >= 2 and error > seen[-2]:
            yield ("going up", step, error)
        if len(seen) >= num_plateau_points:
            last = seen[-num_plateau_points:]
            mean = sum(last) / num_plateau_points
            if all(abs(p - mean) < plateau_tolerance for p in last):
                yield ("reached plateau", step, mean)
    yield ("reached max steps", step, error)


def tune_plateau(run, points, start_lr, desired_plateau):
    """Their ``tune_plateau``: bisect for the rate whose plateau lies just below the target;
    returns ``(best_step, best_lr, tried)``."""
    search_min, search_max = None, 2 * start_lr
    best_lr = best_step = None
    tried = []
    for _ in range(30):
        if search_min is not None and search_max - search_min <= 1e-6:
            break
        lr = search_max / 2 if search_min is None else (search_min + search_max) / 2
        tried.append(lr)
        for event, step, error in curve_events(run(lr), points, desired_plateau / 100):
            if event == "diverged" or (event == "going up" and error > desired_plateau):
                search_max = max(search_min, lr) if search_min is not None else lr
                break
            if event == "reached plateau":
                if error < desired_plateau and (best_step is None or step < best_step):
                    best_lr, best_step = lr, step
                if desired_plateau / 1.1 < error < desired_plateau:
                    return best_step, best_lr, tried
                if error > desired_plateau:
                    search_max = max(lr, search_min) if search_min is not None else lr
                else:
                    search_min = min(lr, search_max)
                break
            if event == "reached max steps" or (
                event == "error" and best_step is not None and step > best_step * 10
            ):
                search_min = min(lr, search_max)
                break
    return best_step, best_lr, tried


def tune_fastest(run, points, start_lr, target_quality):
    """Their ``tune_fastest``: the rate reaching the target at the earliest test point
    (rising above it or diverging disqualifies); returns ``(best_step, best_lr, tried)``.

    Their bookkeeping halves ``lr`` before storing it as ``best_lr`` when a rate reaches
    the target; the rate that achieved ``best_step`` is kept here instead."""
    search_min, search_max = None, 2 * start_lr
    best_lr = best_step = None
    tried = []
    lr = search_max
    for _ in range(30):
        if search_min is not None and search_max - search_min <= 1e-4:
            break
        lr = lr if search_min is None else (search_min + search_max) / 2
        tried.append(lr)
        for event, step, error in curve_events(run(lr), points, target_quality / 10):
            if event == "diverged" or (event == "going up" and error > target_quality):
                search_max = max(search_min, lr) if search_min is not None else lr
                lr /= 2
                break
            if error < target_quality:
                improved = best_step is None or step < best_step
                if improved:
                    best_step, best_lr = step, lr
                    lr /= 2
                else:
                    search_min = min(lr, search_max)
                    search_max = min(lr * 4, search_max)
                break
            if event == "reached plateau":
                if error > target_quality:
                    search_max = max(lr, search_min) if search_min is not None else lr
                    lr /= 2
                break
            if event == "reached max steps" or (
                event == "error" and best_step is not None and step > best_step * 10
            ):
                search_min = min(lr, search_max)
                break
    return best_step, best_lr, tried
