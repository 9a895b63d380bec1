"""What ``import decjax`` loads: not the heavy modules only a few functions use."""

import json
import subprocess
import sys

# scipy.stats alone was about half of `import decjax`; scipy.optimize half a second,
# networkx and scipy.sparse 0.15 s each; tqdm is chosen (text or notebook bar) when a run
# starts. What import decjax costs beside import jax: python -m benchmarks.import_time
LAZY = (
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


def test_import_decjax_leaves_the_heavy_modules_for_later():
    code = f"import json, sys, decjax; print(json.dumps([m for m in {LAZY!r} if m in sys.modules]))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
