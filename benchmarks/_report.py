"""What every benchmark script shares: its command line and how it writes its results."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path


def arguments(doc: str, argv=None, extra: Callable | None = None) -> argparse.Namespace:
    """``--quick`` and ``--out`` (plus whatever ``extra(parser)`` adds), parsed from ``argv``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    if extra is not None:
        extra(parser)
    return parser.parse_args(argv)


def header(quick: bool, **fields) -> dict:
    """The start of every report: date, device, jax and python versions, quick mode, then
    ``fields``."""
    import datetime
    import platform

    import jax

    device = jax.devices()[0]
    return {
        "date": datetime.date.today().isoformat(),
        "device": f"{device.platform} ({device.device_kind})",
        "jax": jax.__version__,
        "python": platform.python_version(),
        "quick": quick,
        **fields,
    }


def measured_on(report: dict) -> str:
    """``Measured on <device>, jax <version>, <date>`` and the quick-mode warning."""
    return f"Measured on {report['device']}, jax {report['jax']}, {report['date']}" + (
        " (quick mode: not a measurement)" if report["quick"] else ""
    )


def write(out: Path, stem: str, report, markdown: str) -> None:
    """``out/stem.json`` (the report) and ``out/stem.md`` (its table)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"{stem}.md").write_text(markdown)
    print(f"wrote {out / stem}.json and .md")
