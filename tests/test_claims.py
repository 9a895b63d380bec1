"""Every number the project publishes about its own runs is found in a committed file.

Reads ``experiments/README.md``, ``docs/experiments/*.md``, ``docs/benchmarks.md``,
the README's performance section and the faults page's worked example, and finds
each number in the files the page draws on: the experiment's or benchmark's
committed results (tables, ``*_run.json``), and for setup values (steps,
samples, grid bounds) the script that ran it. A number matches a file value
when it equals that value at the precision written (``0.0021`` matches
``0.002097``; ``36,214`` matches ``36214``), also read as a percentage, in
milliseconds or (seconds) in minutes; a ratio written ``×R``, ``R×`` or ``R
times`` matches the ratio of two values of the same
results. Citations (arXiv ids, years) are skipped. The rest is listed in
``SOURCES`` below, page by page, each with where it comes from: what a paper
reports (marked as the paper's), or an earlier run's committed file
(``commit <sha> <path>``, which the test reads from git history).

Low-precision numbers (one or two significant digits) match easily; the test
is a net for numbers with no source (a figure copied from an earlier run, a
hand calculation), not a proof that each is the right one.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

_NUMBER = re.compile(
    r"(?<![\w.⁰¹²³⁴⁵⁶⁷⁸⁹⁻])[−-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e[−-]?\d+)?(?![\w⁰¹²³⁴⁵⁶⁷⁸⁹])"
)
_RATIO_BEFORE = ("×", "x")
_RATIO_AFTER = re.compile(r"\s*(?:(?:to|–|-)\s*[\d.,]+\s*)?(?:×|times\b)")  # "1.7 to 11 times"
_SKIP = (
    re.compile(r"```.*?```", re.S),  # code blocks
    re.compile(r"`[^`]*`"),  # inline code: commands, file names, identifiers
    re.compile(r"\]\([^)]*\)"),  # link targets
    re.compile(r"!\[[^\]]*\]"),  # image alt text
    re.compile(r"arXiv:?\s*\d{4}\.\d{4,5}(v\d)?", re.I),
    re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2})?)?"),  # dates and times
    re.compile(r"\b(?:19|20)\d{2}\b(?![.,]\d)"),  # years
    re.compile(r"^#+ .*$", re.M),  # headings (section numbers)
    re.compile(r"^\s*\d+\.\s", re.M),  # numbered-list markers
    re.compile(r"\b[A-Za-z]+-?\d+[A-Za-z]*\b"),  # names: ResNet-20, H100, MNIST-1D, n16
    re.compile(r"\d+[-–]D\b"),  # 1-D, 4-D
    re.compile(r"[\w.]*\d+\.(?:py|json|csv|md|png)\b"),
)


def _numbers(text: str):
    for pattern in _SKIP:
        text = pattern.sub(" ", text)
    for match in _NUMBER.finditer(text):
        token = match.group(0)
        before = text[max(0, match.start() - 2) : match.start()].strip()
        ratio = before.endswith(_RATIO_BEFORE) or bool(_RATIO_AFTER.match(text, match.end()))
        yield token, _value(token), ratio


def _value(token: str) -> float:
    return float(token.replace(",", "").replace("−", "-"))


def _decimals(token: str) -> int:
    """Decimal places the token is written to (``1.3e-7`` -> 8)."""
    mantissa, _, exponent = token.replace(",", "").replace("−", "-").partition("e")
    places = len(mantissa.partition(".")[2])
    return places - int(exponent or 0)


def _file_values(paths) -> np.ndarray:
    values = set()
    for path in paths:
        text = path.read_text(errors="ignore")
        values.update(_value(m.group(0)) for m in _NUMBER.finditer(text))
    return np.array(sorted(values))


def _pages():
    """(page, section text, result files, setup files) for every page with claims."""
    experiments = ROOT / "experiments"
    every_result = sorted((experiments / "results").glob("*/*.[cjm]*"))
    every_script = sorted(experiments.glob("*.py"))
    yield "experiments/README.md", every_result, every_script
    yield "docs/experiments/index.md", every_result, every_script
    for page in sorted((ROOT / "docs/experiments").glob("*.md")):
        if page.stem != "index":
            results = sorted(  # the script's results and its variants' (``--n32``: ``_n32/``)
                [
                    *(experiments / "results" / page.stem).glob("*.[cjm]*"),
                    *(experiments / "results").glob(f"{page.stem}_*/*.[cjm]*"),
                ]
            )
            scripts = [experiments / f"{page.stem}.py", *experiments.glob("_*.py")]
            yield f"docs/experiments/{page.name}", results, scripts
    faults = experiments / "results/asynchrony_faults/asynchrony_faults"
    faults = [Path(f"{faults}_{name}") for name in ("final.md", "final.csv", "run.json")]
    yield "docs/faults.md#worked example", faults, [experiments / "asynchrony_faults.py"]
    benchmarks = sorted((ROOT / "benchmarks/results").glob("*.[jm]*"))
    scripts = sorted((ROOT / "benchmarks").glob("*.py"))
    yield "docs/benchmarks.md", benchmarks, scripts
    roofline = [ROOT / f"benchmarks/results/roofline_cpu.{e}" for e in ("md", "json")]
    yield "docs/low_precision.md", roofline, [ROOT / "benchmarks/roofline.py"]
    yield "README.md#performance", benchmarks, scripts


def _text(page: str) -> str:
    name, _, section = page.partition("#")
    text = (ROOT / name).read_text()
    if section:  # one "## Section" of the page
        start = re.search(rf"^## {section}\b.*$", text, re.M | re.I)
        assert start, f"{name} has no section {section!r}"
        end = re.search(r"^## ", text[start.end() :], re.M)
        text = text[start.end() : start.end() + end.start() if end else None]
    return text


# Numbers from elsewhere: page -> token -> where it comes from: "paper: ..." (the page marks
# it as the paper's), "review: ..." (a reviewer's measurement the page quotes as such), "closed
# form: ..." (the page shows the formula) or "commit <sha> <path>"
# (an earlier run's committed file, read from git history).
_YING_ORDER = "experiments/results/exponential_graphs/exponential_graphs_order.md"
_TORCH_CONVNETS = "benchmarks/results/torch_convnets_cpu.md"  # the 2026-11-30 run
SOURCES: dict[str, dict[str, str]] = {
    "docs/low_precision.md": {
        "65504": "closed form: float16's largest finite value, (2 - 2**-10) * 2**15",
        "4": "closed form: bfloat16's spacing is 2**-6 between 2 and 4 (8 significand bits)",
        "16": "closed form: lowbias32 is 8 integer operations (3 shifts, 3 xors, 2 "
        "multiplies), twice, plus the seeds' add and xor",
    },
    "docs/experiments/beyond_spectral_gap.md": {
        "0.0442": "paper: the authors' tuned learning rate for the complete graph (VGG-11)",
        "11.4": "paper: the authors' ring rate over their solo rate, 0.0625 / 0.0055",
    },
    "docs/experiments/byzantine.md": {
        "3,750": "closed form: MNIST's 60,000 training images over the paper's 16 workers",
        "60,000": "paper: MNIST's training set, as the authors use it",
    },
    "docs/experiments/detag.md": {
        "2.5e-4": "paper: DSGT's tuned rate at 0 % shuffled (LeNet, CIFAR-10)",
    },
    "docs/experiments/exponential_graphs.md": {
        "2.306": "closed form: the t quantile t(8), two samples of 5 seeds",
        "−0.36": f"commit df38ba7 {_YING_ORDER}",
        "−1.45": f"commit df38ba7 {_YING_ORDER}",
    },
    "docs/experiments/time_to_accuracy.md": {
        "1.875": "closed form: a ring all-reduce's 2(n - 1)/n copies per worker at n = 16",
    },
    "docs/benchmarks.md": {
        "8,752": "commit fca5c38 benchmarks/results/convnets_cpu.md",
        "2,454": "commit fca5c38 benchmarks/results/convnets_cpu.md",
        "2.9": "review: issue 28's complete / ring step ratios on the CPU, quoted as the review's",
        "3.3": "review: issue 28's complete / ring step ratios on the CPU, quoted as the review's",
        "101,770": "closed form: the MLP 784-128-10's parameters, 784 * 128 + 128 + 128 * 10 + 10",
        "119.1": f"commit 90b7d44 {_TORCH_CONVNETS}",
        "467.7": f"commit 90b7d44 {_TORCH_CONVNETS}",
        "1870.9": f"commit 90b7d44 {_TORCH_CONVNETS}",
        "32.8": f"commit 90b7d44 {_TORCH_CONVNETS}",
        "4.8": "closed form: 2,877 GB/s (dpsgd_step_gpu.md) / 5.96 MB per worker-step "
        "(roofline_cpu.md), shown on the page as that quotient",
        "3.5": "closed form: 4.3e5 worker-steps/s (the H100 record) x 8.12 MB per worker-step "
        "(roofline_cpu.md, one step per iteration)",
        "24": "closed form: 4,096 workers x 5.96 MB per worker-step (roofline_cpu.md)",
        "0.40": "closed form: 3.08 - 2.68 MB held per worker (roofline_cpu.md)",
        "37": "closed form: 0.40 MB / 1.077 MB of parameters per worker (roofline_cpu.md)",
    },
}


def _tolerance(token: str) -> float:
    """Half a unit in the last place the token is written to."""
    return 0.5 * 10.0 ** -_decimals(token) * (1 + 1e-9)


def _near(values: np.ndarray, token: str) -> bool:
    return bool(np.any(np.abs(np.abs(values) - abs(_value(token))) <= _tolerance(token)))


def _in_history(token: str, source: str) -> bool:
    _, commit, path = source.split()
    text = subprocess.run(
        ["git", "show", f"{commit}:{path}"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return _near(np.array([_value(m.group(0)) for m in _NUMBER.finditer(text)]), token)


# Above this many result values a page's pairwise ratios are so dense that any number would
# match one, so its ratio tokens must match a value itself (the stricter reading).
_RATIO_LIMIT = 3000


def _ratios(values: np.ndarray) -> np.ndarray:
    """Every ratio a / b of two different nonzero result values (none past the limit)."""
    values = values[values != 0]
    if len(values) >= _RATIO_LIMIT:
        return np.array([])
    ratios = (values[:, None] / values[None, :])[~np.eye(len(values), dtype=bool)]
    return np.unique(ratios[ratios > 0])  # a written ratio is positive


def _missing(page, results, scripts):
    found = _file_values([*results, *scripts])
    candidates = [found, 100 * found, 1000 * found, found / 60]  # %, ms, s -> min
    ratios = None
    allowed = SOURCES.get(page, {})
    missing = []
    for token, _, ratio in _numbers(_text(page)):
        if token in allowed:
            continue
        if ratio and ratios is None:
            ratios = _ratios(_file_values(results))
        if not any(_near(c, token) for c in [*candidates, *([ratios] if ratio else [])]):
            missing.append(token)
    return missing


@pytest.mark.parametrize(
    "page,results,scripts", list(_pages()), ids=lambda p: p if isinstance(p, str) else ""
)
def test_every_number_has_a_source(page, results, scripts):
    assert results, f"{page}: no committed results found"
    missing = _missing(page, results, scripts)
    assert not missing, (
        f"{page}: numbers found in no committed results file of the page (nor the script "
        f"that ran it): {missing}; re-run and commit, correct the number, or list its "
        "source in tests/test_claims.py SOURCES"
    )


def test_quoted_numbers_are_on_their_pages_and_in_their_sources():
    """Every listed number is still on its page (the list cannot go stale), and one taken
    from an earlier run is in that run's committed file."""
    for page, tokens in SOURCES.items():
        numbers = {token for token, _, _ in _numbers(_text(page))}
        stale = sorted(set(tokens) - numbers)
        assert not stale, f"{page}: SOURCES lists {stale}, no longer on the page"
        for token, source in tokens.items():
            if source.startswith("commit "):
                assert _in_history(token, source), f"{page}: {token} is not in {source}"
