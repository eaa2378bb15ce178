"""A server starts with what serving needs: no torch before a model is asked for, no type stubs rewritten."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Run in a fresh interpreter: this test process has long imported torch and gradio.
START = """
import sys, tempfile
from pathlib import Path
import gradio_internals_probe
from settings import Settings
from api.server import create_app

# The profile a plain `python app.py` gets (auto: GPU if torch sees one), which asks torch's build, not torch.
settings = Settings(data_dir=Path(tempfile.mkdtemp()) / "data", warmup=False)
app = create_app(settings)
assert settings.resolved_profile.value in ("gpu", "cpu")
assert "torch" not in sys.modules, "torch was imported before any model was asked for"
assert "diffusers" not in sys.modules and "transformers" not in sys.modules
assert gradio_internals_probe.stubs_written == [], f"Gradio wrote type stubs: {gradio_internals_probe.stubs_written}"
services = app.state.services
assert services.health()["torch_threads"]["intra_op"] >= 1 and "torch" not in sys.modules
assert not services.image_slot.built and not services.text_slot.built
"""

# Records every call of Gradio's stub writer, through whichever name the components reach it by.
PROBE = """
import pathlib
stubs_written = []
_write_text = pathlib.Path.write_text
_read_text = pathlib.Path.read_text
def read_text(self, *args, **kwargs):
    if self.suffix == ".pyi" and "gradio" in self.parts:
        stubs_written.append(self.name)
    return _read_text(self, *args, **kwargs)
pathlib.Path.read_text = read_text
"""


def test_a_server_starts_without_torch_and_without_rewriting_gradios_stubs(tmp_path: Path) -> None:
    (tmp_path / "gradio_internals_probe.py").write_text(PROBE)
    env_path = f"{tmp_path}:{ROOT}"
    done = subprocess.run([sys.executable, "-c", START], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**_env(), "PYTHONPATH": env_path, "GRADIO_TEMP_DIR": str(tmp_path / "gradio")})
    assert done.returncode == 0, done.stderr[-3000:]


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
