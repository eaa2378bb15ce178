"""The documentation stays true to the code: every setting is described and listed in the generated reference, and
the README's test command is the one CI runs (mkdocs build --strict itself is part of that command)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from settings import Settings

ROOT = Path(__file__).resolve().parents[1]
HOOK = ROOT / "docs" / "hooks" / "settings_reference.py"


@pytest.fixture(scope="module")
def hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("settings_reference_hook", HOOK)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_setting_has_a_description() -> None:
    undescribed = [name for name, field in Settings.model_fields.items() if not (field.description or "").strip()]
    assert not undescribed, f"add Field(description=…) to these settings: {undescribed}"


def test_the_generated_reference_lists_every_setting_with_its_flag_type_and_default(hook: ModuleType) -> None:
    table = hook.render()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"(?m)^\| `ATELIER_([A-Z0-9_]+)`.*$", table)}
    assert set(rows) == {name.upper() for name in Settings.model_fields}
    for name, field in Settings.model_fields.items():
        row = rows[name.upper()]
        assert row.count(" | ") == 3, row  # setting, type, default, meaning: no cell broke the table
        assert hook._cell(field.description).split(";")[0] in row
    assert "`--memory-mode`" in rows["MEMORY_MODE"]
    assert "`--no-warmup`" in rows["WARMUP"]
    assert "one of `none`, `model-offload`, `sequential-offload`" in rows["MEMORY_MODE"]
    assert "| `7860` |" in rows["PORT"]
    assert "| `./data` |" in rows["DATA_DIR"]
    assert "| unset |" in rows["IMAGE_MODEL"]
    assert "JSON list of strings" in rows["TRUSTED_PROXIES"]
    assert re.search(r"integer, or unset \(≥ 1, ≤ 64\)", rows["MAX_BATCH_IMAGES"])
    # The first field of each section opens it, so no setting falls outside a table.
    assert table.lstrip().startswith("## ")
    assert table.count("| setting | type | default | meaning |") == len(hook.SECTIONS)
    assert set(hook.SECTIONS) <= set(Settings.model_fields)


def test_the_settings_page_and_the_site_use_the_hook(hook: ModuleType) -> None:
    page = (ROOT / "docs" / hook.PAGE).read_text()
    assert page.count(hook.MARKER) == 1
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert "docs/hooks/settings_reference.py" in config["hooks"]
    assert config["strict"] is True


def test_the_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(ruff check \..*)\n```", readme)
    assert len(commands) == 1, "the README shows its test command once, in a bash block"
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == commands[0]
    assert "mkdocs build --strict" in ci
