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


def test_the_carried_wheels_are_named_as_installed_here() -> None:
    # wheels.sh takes each version from this environment (the one CI tests): every name it lists must be an
    # installed distribution, or the script stops; the pipelines' own imports must be among them.
    text = (DEVICE / "wheels.sh").read_text()
    lists = re.findall(r"^(?:BINARY|SOURCE)_NAMES=\(((?:[^()#]|#[^\n]*)*)\)", text, re.M)  # comments may hold ()
    names = {word for block in lists for line in block.splitlines() for word in line.split("#")[0].split()}
    assert {"diffusers", "transformers", "pydantic", "torchao", "datasets", "pypcre", "tokenicer"} <= names
    for name in sorted(names | {"gptqmodel"}):
        assert version(name), name  # PackageNotFoundError when it is not installed


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
    assert {mode for mode, _ in modes} == {"smoke", "image", "sdxl", "text"}
    for mode, body in modes:
        assert sum(int(s) for s in re.findall(r"^\s+check \S+ (\d+) ", body, re.M)) <= 540, mode
