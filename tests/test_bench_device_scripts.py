"""bench/device/: the scripts that prepare and run the GPU checks on a lent machine (they cannot run here)."""

from __future__ import annotations

import re
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEVICE = ROOT / "bench" / "device"


@pytest.mark.parametrize("script", ["wheels.sh", "gpu_checks.sh"])
def test_the_scripts_parse(script: str) -> None:
    subprocess.run(["bash", "-n", str(DEVICE / script)], check=True)


def test_the_carried_wheels_are_the_versions_the_tests_run_here() -> None:
    # The GPU machine must run what CI tested: every version wheels.sh names is the one installed here, and the
    # ones it takes from requirements.txt are pinned there.
    text = (DEVICE / "wheels.sh").read_text()
    named = dict(re.findall(r"\b([a-z][a-z0-9_-]+)==([0-9][0-9a-z.]*)", text))
    assert {"torchao", "datasets", "pydantic", "pydantic-core", "pypcre", "tokenicer"} <= named.keys()
    for name, pinned in named.items():
        assert version(name) == pinned, name
    requirements = (ROOT / "requirements.txt").read_text()
    for name in re.findall(r'"\$\(pin ([a-z0-9_-]+)\)"', text):
        assert re.search(rf"^{name}==", requirements, re.M), f"{name} is not pinned in requirements.txt"
    assert {"diffusers", "transformers", "gptqmodel"} <= set(re.findall(r'\$\(pin ([a-z0-9_-]+)\)', text))


def test_the_checks_script_runs_the_benchmarks_that_exist_with_their_options() -> None:
    text = (DEVICE / "gpu_checks.sh").read_text()
    calls = re.findall(r"^\s+check \S+ \d+ (bench/\S+\.py)(.*?)(?: ;;)?$", text, re.M)
    assert {script for script, _ in calls} == {"bench/gpu_check.py", "bench/text_gpu.py"}
    for script, args in calls:
        help_text = subprocess.run(["python", str(ROOT / script), "--help"], capture_output=True, text=True,
                                   check=True, cwd=ROOT).stdout
        for option in re.findall(r"(--[a-z-]+)", args):
            assert option in help_text, f"{script} has no {option}"
    # Each mode fits one call of the device tool (600 s at most), with a minute to install and start.
    modes = re.findall(r"^  (\w+)\)\n(.*?);;", text, re.M | re.S)
    assert {mode for mode, _ in modes} == {"smoke", "image", "text"}
    for mode, body in modes:
        assert sum(int(s) for s in re.findall(r"^\s+check \S+ (\d+) ", body, re.M)) <= 540, mode
