"""Shared plumbing for the paper reproductions: arguments, output files, markdown tables."""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # after choosing the backend


def parse(doc: str, argv=None, name: str = "") -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="a small run for CI (minutes on a CPU)"
    )
    parser.add_argument("--out", type=Path, default=Path("experiments/results"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    args.name = name
    return args


def markdown_table(df, floatfmt: str = ".4g") -> str:
    """A pandas DataFrame as a GitHub markdown table (no extra dependency)."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        cells = [format(v, floatfmt) if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write(args, tables: dict, figures: dict) -> None:
    """Write ``name_table.csv``/``.md`` for every table and ``name_fig.png`` for every figure."""
    for key, df in tables.items():
        df.to_csv(args.out / f"{args.name}_{key}.csv", index=False)
        (args.out / f"{args.name}_{key}.md").write_text(markdown_table(df))
        print(f"\n{key}:\n{markdown_table(df)}")
    for key, fig in figures.items():
        fig.savefig(args.out / f"{args.name}_{key}.png", dpi=110)
        plt.close(fig)
