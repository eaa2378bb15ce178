"""The Account tab of the Gradio UI, driven as the page drives it (queue/join, then the session's event stream) on
a real server with two accounts: Alice makes a key, shown once, that works on the API until she revokes it; Bob
never sees her keys, cannot revoke them, and cannot stop her jobs."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from services.api_keys import ApiKeyService
from tests.ui.test_admin_tab import GRADIO, Site, page, site  # noqa: F401 - `site` is the module's server fixture

SESSIONS: dict[str, str] = {}  # one page per user: a dropdown takes only the choices its own session was given


def run(site: Site, user: str, api_name: str, data: list[Any]) -> dict[str, Any]:  # noqa: F811
    """The event `api_name` of the Account tab, run as `user` in the user's page session; its process_completed."""
    event = page(site, user).event(api_name)
    session = SESSIONS.setdefault(user, uuid.uuid4().hex)
    http = site.http(user)
    joined = http.post(f"{GRADIO}/queue/join", json={"data": data, "fn_index": event["id"], "session_hash": session,
                                                     "trigger_id": event["targets"][0][0], "event_data": None})
    assert joined.status_code == 200, joined.text
    with http.stream("GET", f"{GRADIO}/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            message = json.loads(line[5:]) if line.startswith("data:") else {}
            if message.get("msg") == "process_completed" and message.get("event_id") == joined.json()["event_id"]:
                return message
    raise AssertionError("the event never completed")


def key_names(site: Site, user: str) -> list[str]:  # noqa: F811
    done = run(site, user, "list_keys", [])
    assert done["success"], done
    return [row[0] for row in done["output"]["data"][0]["data"] if row and row[0]]


def test_a_key_is_shown_once_works_and_stops_working_once_revoked(site: Site) -> None:  # noqa: F811
    made = run(site, "alice", "create_key", ["tab-laptop"])
    assert made["success"], made
    key = made["output"]["data"][0]["value"]
    assert key.startswith("atl_")
    assert "tab-laptop" in key_names(site, "alice")
    bearer = {"Authorization": f"Bearer {key}"}
    assert httpx.get(site.url + "/v1/models", headers=bearer).status_code == 200
    # The list shows the key's first characters only, never the key.
    listed = run(site, "alice", "list_keys", [])["output"]["data"][0]["data"]
    assert all(key not in str(row) for row in listed)

    # Bob sees none of Alice's keys, and revoking one by its name touches only his own (he has none).
    assert "tab-laptop" not in key_names(site, "bob")
    refused = run(site, "bob", "revoke_key", ["tab-laptop"])  # his page lists no such key: refused before it runs
    assert not refused["success"]
    assert "tab-laptop" in refused["output"]["error"]
    assert httpx.get(site.url + "/v1/models", headers=bearer).status_code == 200

    revoked = run(site, "alice", "revoke_key", ["tab-laptop"])
    assert revoked["success"], revoked
    assert "tab-laptop" not in key_names(site, "alice")
    assert httpx.get(site.url + "/v1/models", headers=bearer).status_code == 401
    assert not [k for k in ApiKeyService().list("alice") if k["name"] == "tab-laptop"]


def test_bad_input_gets_a_clear_message(site: Site) -> None:  # noqa: F811
    missing = run(site, "alice", "revoke_key", [None])
    assert "Choose a key to revoke." in missing["output"]["error"]
    nothing = run(site, "bob", "stop_job", [None])
    assert "That job is not running (or not yours)" in nothing["output"]["error"]
