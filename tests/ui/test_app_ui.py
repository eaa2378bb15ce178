"""The assembled Gradio UI, read from its Blocks: the tabs' places, the widgets' names and labels."""

from __future__ import annotations

from collections.abc import Iterator

import gradio as gr
import pytest

from services.admission import QueueQuota
from services.container import Services, build_services
from settings import Settings
from ui.app_ui import build_ui


@pytest.fixture(scope="module")
def app_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[gr.Blocks, Services]]:
    """The UI of a tiny-profile server (nothing loaded: building the Blocks loads no model)."""
    services = build_services(Settings(profile="tiny", data_dir=tmp_path_factory.mktemp("data"), warmup=False))
    try:
        yield build_ui(services, QueueQuota(services.settings.user_queue_quota, lambda blocks: {})), services
    finally:
        services.shut_down()


def blocks_of(blocks: gr.Blocks, kind: type) -> list[gr.blocks.Block]:
    """Every block of `kind` in the Blocks."""
    return [block for block in blocks.blocks.values() if isinstance(block, kind)]


def test_a_tabs_holds_only_tabs(app_ui: tuple[gr.Blocks, Services]) -> None:
    # The browser places a tab by its index among its gr.Tabs' children: anything else there (a State, a Timer)
    # gives the tabs after it a second header when they are first shown.
    blocks, _ = app_ui
    tabs = blocks_of(blocks, gr.Tabs)
    assert tabs
    for container in tabs:
        strays = [type(child).__name__ for child in container.children if not isinstance(child, gr.Tab)]
        assert strays == [], f"a gr.Tabs holds {strays} beside its tabs"


def test_every_button_is_named_in_words(app_ui: tuple[gr.Blocks, Services]) -> None:
    # A label of emoji only (🔄) drew an empty box on a machine without an emoji font, and named nothing for a
    # screen reader; an emoji before the words did the former.
    blocks, _ = app_ui
    labels = [str(button.value) for button in blocks_of(blocks, gr.Button) if button.visible]
    assert labels
    for label in labels:
        assert label.isascii(), f"button {label!r} is not named in plain words"
        assert any(c.isalpha() for c in label), f"button {label!r} has no words"


def test_the_chat_message_box_has_a_name(app_ui: tuple[gr.Blocks, Services]) -> None:
    blocks, _ = app_ui
    box = next(b for b in blocks_of(blocks, gr.Textbox) if b.elem_id == "chat-message")
    assert box.label == "Message"


def test_the_image_to_image_forms_show_their_picture_before_generate(app_ui: tuple[gr.Blocks, Services]) -> None:
    blocks, _ = app_ui
    order = [block.elem_id for block in walk(blocks) if block.elem_id]
    for picture, generate in (("img2img-init-image", "img2img-generate"), ("inpaint-editor", "inpaint-generate")):
        assert order.index(picture) < order.index(generate)


def walk(block: gr.blocks.Block) -> list[gr.blocks.Block]:
    """The blocks under `block` in the order the page shows them."""
    found = [block]
    for child in getattr(block, "children", []):
        found.extend(walk(child))
    return found


def test_no_timer_sends_an_event_to_the_server(app_ui: tuple[gr.Blocks, Services]) -> None:
    # Each event the page sends to the server rewrites the loading status of the components earlier events updated,
    # wiping the validation messages on them: a status timer's Python tick erased a refused Checkpoint's message a
    # second after it showed. Whatever ticks by itself runs in the browser (ui/model_status.py).
    blocks, _ = app_ui
    ticking = [fn for fn in blocks.fns.values() if any(event == "tick" for _, event in fn.targets)]
    assert len(ticking) >= 2  # the image and chat status lines
    assert [fn.name for fn in ticking if fn.fn is not None] == []
    assert all(fn.js for fn in ticking)


def test_refresh_list_is_one_event_for_every_list_of_checkpoints(app_ui: tuple[gr.Blocks, Services]) -> None:
    # Each form's "Refresh list" ran two events (its own lists, then the Refiner's): the folder listed twice a click.
    blocks, _ = app_ui
    for prefix in ("image", "img2img"):
        (button,) = [b for b in blocks.blocks.values() if getattr(b, "elem_id", None) == f"{prefix}-refresh-models"]
        clicks = [fn for fn in blocks.fns.values() if (button._id, "click") in fn.targets]
        assert len(clicks) == 1, prefix
        outputs = {blocks.blocks[o._id].elem_id for o in clicks[0].outputs}
        assert outputs == {f"{prefix}-model", f"{prefix}-vae", f"{prefix}-refiner-checkpoint"}
