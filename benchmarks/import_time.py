"""Benchmark: what ``import decjax`` costs beside ``import jax`` (a fresh interpreter each).

``python -c "import jax"`` and ``python -c "import decjax"`` are started
alternately, ``--rounds`` times each; the median of the per-round ratios is
reported (a shared 2-core machine drifts between minutes), with the modules
``import decjax`` leaves for later (scipy.sparse, networkx, scipy.stats, tqdm...:
imported by the functions that use them). The target is 1.2: decjax's own
modules and optax, nothing heavy. Written to ``--out`` as JSON and Markdown.

    python -m benchmarks.import_time            # 15 rounds
    python -m benchmarks.import_time --quick    # 2 rounds, a smoke test
"""

from __future__ import annotations

import datetime
import json
import platform
import statistics
import subprocess
import sys
import time

from benchmarks._report import arguments, write

# scipy.stats alone was about half of `import decjax`; scipy.optimize half a second,
# networkx and scipy.sparse 0.15 s each; tqdm is chosen (text or notebook bar) when a run
# starts. tests/test_import.py checks this list.
LEFT_FOR_LATER = (
    "scipy",
    "scipy.sparse",
    "scipy.stats",
    "scipy.optimize",
    "networkx",
    "tqdm",
    "pandas",
    "matplotlib",
    "flax",
    "sklearn",
)


def _seconds(module: str) -> float:
    """Wall seconds of a fresh interpreter importing ``module`` and exiting."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
    return time.perf_counter() - start


def loaded_by_decjax() -> list[str]:
    """Which of :data:`LEFT_FOR_LATER` ``import decjax`` loads (should be none)."""
    code = (
        "import json, sys, decjax; "
        f"print(json.dumps([m for m in {LEFT_FOR_LATER!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    args = arguments(__doc__, argv, lambda p: p.add_argument("--rounds", type=int, default=15))
    rounds = 2 if args.quick else args.rounds
    _seconds("decjax")  # warm the file system cache and the bytecode
    jax_s, decjax_s, ratios = [], [], []
    for r in range(rounds):
        a, b = _seconds("jax"), _seconds("decjax")
        jax_s.append(a)
        decjax_s.append(b)
        ratios.append(b / a)
        print(f"round {r + 1}/{rounds}: jax {a:.2f} s, decjax {b:.2f} s, ratio {b / a:.2f}")
    report = {
        "date": datetime.date.today().isoformat(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "rounds": rounds,
        "jax_s": statistics.median(jax_s),
        "decjax_s": statistics.median(decjax_s),
        "ratio": statistics.median(ratios),
        "target": 1.2,
        "loaded_by_import_decjax": loaded_by_decjax(),
    }
    markdown = (
        f"Measured on {report['date']} ({report['machine']}, Python {report['python']}), "
        f"{rounds} alternating rounds, medians:\n\n"
        "| import jax (s) | import decjax (s) | ratio | target |\n|---:|---:|---:|---:|\n"
        f"| {report['jax_s']:.2f} | {report['decjax_s']:.2f} | {report['ratio']:.2f} | 1.2 |\n\n"
        f"Heavy modules loaded by `import decjax`: {report['loaded_by_import_decjax'] or 'none'}.\n"
    )
    write(args.out, "import_time_quick" if args.quick else "import_time_cpu", report, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
