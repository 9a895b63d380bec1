"""One command that measures decjax on a GPU within a time budget, and writes everything.

Made for a GPU lent for minutes, with jax preinstalled and no package index:
run from the checkout, nothing installed::

    PYTHONPATH=. python -m benchmarks.gpu --budget-s 480       # -> benchmarks/results/gpu.json, .md
    PYTHONPATH=. python -m benchmarks.gpu --only convnets memory  # resume: merged into gpu.json
    python -m benchmarks.gpu --quick --out /tmp/gpu    # the same code, tiny sizes, on the CPU

Sections (``benchmarks/gpu_sections.py``; each ratio has its baseline measured
in the same run): ``record`` (simulated worker-steps per second, after a check
against the dense-matrix reference), ``dpsgd`` (MLP step vs hand-written JAX,
torch.func eager and compiled, the per-worker torch loop), ``gossip`` (ring
bandwidth vs a device copy), ``overheads`` (the clock, push-sum, local SGD and
DiLoCo, BatchNorm's model state), ``convnets`` (LeNet-5, ResNet-20 with
BatchNorm and GroupNorm; vmapped vs one worker at a time), ``memory``
(ResNet-20's largest n, with and without remat).

The budget: no measurement starts once less than ``--reserve-s`` is left
(skipped ones are listed as such), and the JSON and Markdown are rewritten
after every measurement, so a run killed from outside keeps what it measured.
A measurement that fails is recorded with its error and the run goes on.
``--only`` runs some sections and merges them into the JSON already in
``--out`` (resuming a run that ran out of time). The report names the device,
the versions of jax, jaxlib and torch, the date and the commit (``git``, else
``$EXPERIMENT_COMMIT``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import time
import traceback
from pathlib import Path

import jax

from benchmarks.gpu_sections import SECTIONS, Plan


def _stem(quick: bool) -> str:
    return "gpu_quick" if quick else "gpu"


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("EXPERIMENT_COMMIT", "unknown")


def _versions() -> dict:
    import jaxlib

    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "torch": torch_version}


def _header(args) -> dict:
    device = jax.devices()[0]
    return {
        "device": device.device_kind,
        "platform": device.platform,
        **_versions(),
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
        "commit": _commit(),
        "budget_s": args.budget_s,
        "quick": args.quick,
        "sections": {},
    }


def _load(out: Path, header: dict) -> dict:
    """The report in ``out`` to merge into (``--only``), else a fresh one."""
    path = out / f"{_stem(header['quick'])}.json"
    if not path.exists():
        return header
    report = json.loads(path.read_text())
    report.update({k: v for k, v in header.items() if k != "sections"})
    return report


def _write(out: Path, report: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    stem = _stem(report["quick"])
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    (out / f"{stem}.md").write_text(to_markdown(report))


def run_sections(args) -> dict:
    plan = Plan.for_device(args.quick)
    report = _load(args.out, _header(args)) if args.only else _header(args)
    deadline = time.monotonic() + args.budget_s
    for name in args.only or SECTIONS:
        doc = (SECTIONS[name].__doc__ or name).split("\n\n")[0]
        section = {"doc": doc, "rows": [], "skipped": []}
        report["sections"][name] = section
        for label, measure in SECTIONS[name](plan):
            left = deadline - time.monotonic()
            if left < args.reserve_s:
                section["skipped"].append(label)
                print(f"[{name}] {label}: skipped ({left:.0f} s left)", flush=True)
                continue
            start = time.perf_counter()
            try:
                row = measure()
            except Exception as error:  # one failure must not lose the rest
                traceback.print_exc()
                row = {"error": f"{type(error).__name__}: {error}".splitlines()[0][:300]}
            row = {"label": label, **row, "seconds": time.perf_counter() - start}
            section["rows"].append(row)
            print(f"[{name}] {label}: {row['seconds']:.1f} s", flush=True)
            _write(args.out, report)
        _write(args.out, report)
    return report


def _cell(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "/")


def to_markdown(report: dict) -> str:
    lines = [
        f"Measured on {report['device']} ({report['platform']}), jax {report['jax']}, jaxlib "
        f"{report['jaxlib']}, torch {report['torch']}, {report['date']}, commit "
        f"{report['commit'][:10]}, budget {report['budget_s']} s"
        + (" (quick mode: not a measurement)" if report["quick"] else "")
        + ". Times in ms per step unless named otherwise; `a_over_b` and `a / b` are ratios.",
    ]
    for name, section in report["sections"].items():
        lines += ["", f"## {name}", "", section["doc"], ""]
        for row in section["rows"]:
            cells = [f"{k} = {_cell(v)}" for k, v in row.items() if k != "label"]
            lines.append(f"- **{row['label']}**: " + "; ".join(cells))
        if section["skipped"]:
            lines.append(f"- skipped (budget): {', '.join(section['skipped'])}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the CPU smoke test)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--budget-s", type=float, default=480.0, help="wall seconds in all")
    parser.add_argument(
        "--reserve-s", type=float, default=30.0, help="start nothing with less than this left"
    )
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), help="run these sections")
    args = parser.parse_args(argv)
    report = run_sections(args)
    errors = [
        f"{name}: {row['label']}"
        for name, section in report["sections"].items()
        for row in section["rows"]
        if "error" in row
    ]
    print(
        f"wrote {args.out / _stem(args.quick)}.json and .md"
        + (f"; errors in {errors}" if errors else "")
    )
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
