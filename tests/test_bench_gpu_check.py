"""bench/gpu_check.py refuses to run its full-size model without CUDA, with a message saying what to do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(torch.cuda.is_available(), reason="the guard only speaks on a machine without CUDA")
def test_gpu_check_without_cuda_exits_with_a_clear_message(tmp_path: Path) -> None:
    out = tmp_path / "never.json"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--out", str(out)],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path,
                            env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 1
    assert "needs a CUDA GPU" in result.stderr
    assert "--tiny" in result.stderr
    assert not out.exists()
