"""Small helpers shared by the tabs: who is asking, the per-user queue quota, and the checks that tell a script
which field is wrong and what it allows."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Collection, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import gradio as gr

from services import log_context

if TYPE_CHECKING:
    from services.container import Services

# Internal UI events: not part of the public API and not callable by client libraries.
PRIVATE: dict[str, Any] = {"api_visibility": "private"}


def error_toast(message: str) -> gr.Error:
    """gr.Error for a plain-text message. Gradio renders a gr.Error's (and gr.Warning's, gr.Info's) message as HTML
    in the toast, and messages carry what users sent (a sampler name read from a PNG, a model name): escaped, they
    show as the words they are, never as markup. Validator messages are shown as text and need no escaping."""
    return gr.Error(html_text(message))


def info_toast(message: str) -> None:
    """gr.Info for a plain-text message, escaped as error_toast() escapes."""
    gr.Info(html_text(message))


def html_text(message: str) -> str:
    """A plain-text message made safe for a place that renders HTML (a toast, a chat bubble): <, > and & escaped."""
    return html.escape(message, quote=False)


def is_number(value: Any) -> bool:
    """A finite int or float (a bool is not a number here, though Python says it is)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# Gradio checks a Slider's or Number's minimum and maximum in preprocess, which runs before an event's validator:
# an out-of-range or non-numeric value then ends as a bare "400 Bad Request" in gradio_client and @gradio/client.
# The public events skip preprocess (the values of these simple components arrive as sent), so that the validator
# sees every value and names the field and what it allows. The widgets keep their ranges. Component subclasses with
# their own preprocess would do as well, but Gradio writes a .pyi file beside any module that subclasses one.
RAW_INPUTS: dict[str, Any] = {"preprocess": False}
# Events that decode uploaded pictures in full run this many at a time: each may hold a few images at the pixel limit.
DECODE_CONCURRENCY = 1
# What such an event passes to .click(): its raw values (our handler decodes through the upload checks), one at a time.
DECODING: dict[str, Any] = {**RAW_INPUTS, "concurrency_limit": DECODE_CONCURRENCY, "concurrency_id": "decode"}
# Components whose raw value is a file Gradio received: {"path": ..., "orig_name": ..., ...}, or None.
FILE_COMPONENTS = (gr.Image, gr.File)


def is_file(value: Any) -> bool:
    """A raw file value as Gradio hands it on (its path lies in Gradio's upload or cache folder)."""
    return isinstance(value, dict) and isinstance(value.get("path"), str)


def whole(value: Any) -> Any:
    """A whole number as int (JSON may send 5.0); anything else as it came, for a validator to name."""
    return int(value) if is_number(value) and float(value).is_integer() else value


def _whole_only(component: gr.Slider | gr.Number) -> bool:
    """Does the component hold whole numbers only (precision 0, or a slider stepping by whole numbers)?"""
    if component.precision == 0:
        return True
    return isinstance(component, gr.Slider) and all(float(x).is_integer() for x in (component.step, component.minimum))


def allowed(component: gr.components.Component) -> str:
    """What a field allows, in words, from its component: "a whole number between 1 and 500", "text"."""
    if isinstance(component, gr.Slider | gr.Number):
        kind = "a whole number" if _whole_only(component) else "a number"
        low, high = (_plain(x) for x in (component.minimum, component.maximum))
        if low and high:
            return f"{kind} between {low} and {high}"
        if low:
            return f"{kind} of at least {low}"
        return f"{kind} of at most {high}" if high else kind
    if isinstance(component, gr.Dropdown):
        return "one of: " + ", ".join(str(value) for _, value in component.choices)
    if isinstance(component, gr.Radio):
        return "one of: " + ", ".join(f"{json.dumps(value)} ({label})" for label, value in component.choices)
    if isinstance(component, gr.Checkbox):
        return "true or false"
    if isinstance(component, FILE_COMPONENTS):
        return "an uploaded image file (in gradio_client: handle_file(path))"
    return "text"


def _plain(bound: float | None) -> str:
    """A bound as people write it: 2048, not 2048.0; 4294967295, not 4.29497e+09; '' for none."""
    if bound is None:
        return ""
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def type_errors(fields: Mapping[str, gr.components.Component], values: Mapping[str, Any],
                optional: Collection[str] = ()) -> dict[str, str]:
    """{field: message} for each value of the wrong type (None only where `optional`), saying what it allows."""
    errors: dict[str, str] = {}
    for name, component in fields.items():
        value = values.get(name)
        if value is None and name in optional:
            continue
        if isinstance(component, gr.Slider | gr.Number):
            if is_number(value) and (not _whole_only(component) or float(value).is_integer()):
                continue
        elif isinstance(component, gr.Radio):
            # Exactly one of the choices: 1.0 is 1 (JSON), but true is not 1 (Python says it is).
            if any(type(whole(value)) is type(choice) and whole(value) == choice for _, choice in component.choices):
                continue
        elif isinstance(component, gr.Checkbox):
            if isinstance(value, bool):
                continue
        elif isinstance(component, FILE_COMPONENTS):
            if is_file(value):
                continue
        elif isinstance(component, gr.JSON):
            continue  # structured values (ControlNet units): the service checks them, naming each field
        elif isinstance(value, str):
            continue
        empty = ", or empty" if name in optional else ""
        errors[name] = f"{name} must be {allowed(component)}{empty}, got {_shown(value)}."
    return errors


def range_errors(fields: Mapping[str, gr.components.Component], values: Mapping[str, Any]) -> dict[str, str]:
    """{field: message} for each number outside its component's minimum and maximum."""
    errors: dict[str, str] = {}
    for name, component in fields.items():
        value = values.get(name)
        if not isinstance(component, gr.Slider | gr.Number) or not is_number(value):
            continue
        low, high = component.minimum, component.maximum
        if (low is not None and value < low) or (high is not None and value > high):
            errors[name] = f"{name} must be {allowed(component)}, got {_shown(value)}."
    return errors


def verdicts(names: Collection[str], errors: Mapping[str, str]) -> Any:
    """What a validator returns: one gr.validate per input, in order; for one input, that one alone (Gradio reads
    a list of one as a single value, and a list is no verdict: the request would pass)."""
    found = [gr.validate(name not in errors, errors.get(name, "")) for name in names]
    return found[0] if len(found) == 1 else found


def read_api(fn: Callable[..., Any], api_name: str, fields: Mapping[str, gr.components.Component],
             optional: Collection[str] = (), decodes: bool = False) -> None:
    """A public read-only endpoint on hidden `fields` (made by the caller inside a hidden Row), refused with a
    message per field before it is queued when a value has the wrong type or lies outside its component's range.

    An event rather than gr.api, whose endpoints take no validator. `decodes`: it decodes an uploaded picture, so it
    takes its turn with the other events that do (DECODING).
    """
    names = list(fields)

    def validate(*values: Any) -> Any:
        given = dict(zip(names, values, strict=False))
        return verdicts(names, {**range_errors(fields, given), **type_errors(fields, given, optional)})

    gr.Button(visible=False).click(fn, inputs=list(fields.values()), outputs=[gr.JSON(visible=False)],
                                   api_name=api_name, validator=validate if names else None,
                                   **(DECODING if decodes else {**RAW_INPUTS, "concurrency_limit": None}))


def user_of(request: gr.Request | None) -> str:
    """The logged-in user's name, or '' in single-user mode: the owner of what the request creates."""
    return (getattr(request, "username", None) or "") if request is not None else ""


def job_context(request: gr.Request | None) -> AbstractContextManager[None]:
    """The request's context (its id, user, client address, route, when it joined the queue), bound around a job's
    start: the job's thread inherits it, so its log lines and its request log row carry them
    (services/log_context.py)."""
    # The gateway's context names the user too: the handler's own word (gr.Request's) is the one bound.
    return log_context.bound(**{**log_context.of_request(request), "user": user_of(request)})


def scope_of(services: Services, request: gr.Request | None) -> str | None:
    """Whose work the request may read: its user's, or everyone's (None) for an admin."""
    return services.accounts.viewer(user_of(request)).scope


# Where a validator leaves the request it checked, for its event's handler (Starlette's request.state).
CHECKED_STATE_KEY = "atelier_checked_request"


def hand_to_handler(request: gr.Request | None, checked: Any) -> None:
    """Leave what a validator checked (a contracts request, images decoded) for the handler of the same event.

    Gradio calls an event's validator and then its handler with the same raw values over the same HTTP request
    (queue/join, or /call), so the handler takes the checked request from there instead of checking and decoding
    the values a second time."""
    http = getattr(request, "request", None)
    if http is not None:
        http.scope.setdefault("state", {})[CHECKED_STATE_KEY] = checked


def checked_by_validator(request: gr.Request | None) -> Any:
    """The request the event's validator checked (see hand_to_handler); an error toast when there is none, which only a
    handler run without its validator would meet."""
    http = getattr(request, "request", None)
    checked = http.scope.get("state", {}).pop(CHECKED_STATE_KEY, None) if http is not None else None
    if checked is None:
        raise error_toast("This request was not checked before it ran; send it again.")
    return checked
