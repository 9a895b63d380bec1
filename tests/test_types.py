"""decjax/ is type-checked clean (``mypy``, configured in pyproject.toml; CI runs it too)."""

import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # 25 s on 2 cores: CI's own step covers the inner loop


@pytest.mark.skipif(shutil.which("mypy") is None, reason="mypy is not installed")
def test_mypy_is_clean_over_decjax():
    out = subprocess.run(
        [sys.executable, "-m", "mypy"], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout[-3000:]
