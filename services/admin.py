"""The admin panel's use cases (issue 26), shared by its REST routes (api/rest/admin.py) and both UIs: users (create,
disable, reset a password, grant the admin role, delete with their data), their API keys, their usage, their limits,
the live queue, the models and the request log.

What needs the web server (the jobs in Gradio's queue, stopping one, ending a user's login sessions) comes through
`ServerControl`, which the server attaches once Gradio is mounted (api/server_control.py). A change to an account
reaches every replica within a second: disabling, deleting or changing limits bumps the generation counter that
every replica's cache of per-user limits watches (services/user_limits.py), and the gateway refuses a disabled
account's requests whatever login it still holds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from services import usage
from services.accounts import NAME_PATTERN, AccountError, AccountService, LastAdminError
from services.chat import ChatService
from services.history import HistoryService
from services.model_slots import ModelSlot, ModelState
from services.request_log import RequestLog, RequestRecord
from services.user_limits import LimitsError, UserLimits

T = TypeVar("T")
MODEL_ACTIONS = ("load", "offload", "unload")
DELETE_PAGE = 200


class AdminError(ValueError):
    """An admin request that cannot be done: `status` says how (404 no such thing, 409 not now, 422 bad value)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


class ServerControl(Protocol):
    """What the admin panel needs of the web server: its live queue and the users' login sessions."""

    def jobs(self) -> list[dict[str, Any]]:
        """The jobs waiting in the queue and running now, oldest first (id, user, route, kind, status, seconds)."""
        ...

    async def stop(self, job_id: str) -> bool:
        """Stop one job, waiting or running; False when there is no such job."""
        ...

    async def end_sessions(self, user: str) -> int:
        """Log the user out everywhere and stop their jobs; how many jobs were stopped."""
        ...


class KeyStore(Protocol):
    """Users' API keys, as the API key service offers them (issue 21): listed and revoked, never shown."""

    def list(self, user: str) -> list[dict[str, Any]]:
        """A user's keys: name, the key's first characters, created and last used."""
        ...

    def revoke(self, user: str, name: str) -> bool:
        """Delete one key of the user's; False when there is none by that name."""
        ...

    def revoke_all(self, user: str) -> int:
        """Delete every key of the user's; how many."""
        ...


class AdminService:
    """The admin panel's actions; each one an admin takes is also recorded in the request log (`audit`)."""

    def __init__(self, accounts: AccountService, limits: UserLimits, history: HistoryService, chat: ChatService,
                 slots: Sequence[ModelSlot[Any]], request_log: RequestLog | None = None,
                 keys: KeyStore | None = None) -> None:
        self.accounts = accounts
        self.limits = limits
        self.history = history
        self.chat = chat
        self.slots = {slot.kind: slot for slot in slots}
        self.request_log = request_log
        self.keys = keys  # None until the API key service is part of this build
        self.control: ServerControl | None = None  # set by the server once Gradio is mounted

    # --- the audit trail ------------------------------------------------------------------------
    def audit(self, what: str, status: str = "done", route: str = "") -> None:
        """Record an admin action (by the user of the current log context) in the request log."""
        if self.request_log is not None:
            fields = {"route": route} if route else {}
            self.request_log.record(RequestRecord.here("admin", status, reason=what[:2000], **fields))

    # --- users ----------------------------------------------------------------------------------
    def users(self) -> list[dict[str, Any]]:
        """Every account: name, admin, disabled, created, whether an admin overrode its limits, its API keys."""
        overridden = {row["user"] for row in self.limits.overrides()}
        found = []
        for account in self.accounts.list():
            name = str(account["name"])
            keys = len(self.keys.list(name)) if self.keys is not None else None
            found.append({**account, "limits_overridden": name in overridden, "keys": keys})
        return found

    def user(self, name: str) -> dict[str, Any]:
        """One account as users() lists it; AdminError (404) when there is none."""
        found = next((u for u in self.users() if u["name"] == name), None)
        if found is None:
            raise AdminError(f"There is no user {name!r}.", 404)
        return found

    def create_user(self, name: str, password: str, admin: bool = False) -> dict[str, Any]:
        """A new account; AdminError for a bad or taken name (409) or a short password."""
        try:
            self.accounts.add(name, password, admin=admin)
        except AccountError as err:
            raise AdminError(_sentence(err), 409 if "already exists" in str(err) else 422) from None
        return self.user(name)

    async def update_user(self, name: str, by: str, *, disabled: bool | None = None, admin: bool | None = None,
                          password: str | None = None) -> list[str]:
        """Disable or enable an account (disabling ends its sessions and stops its jobs), grant or take back the admin
        role, or set a new password; what changed, in words. An admin cannot disable or demote themselves."""
        self._known(name)
        if name == by and (disabled or admin is False):
            raise AdminError("You cannot disable your own account or take back your own admin role; ask another "
                             "admin.", 409)
        if disabled or admin is False:  # refused before any change; each change below checks again, atomically
            await asyncio.to_thread(self._keep_an_admin, name, "disabled" if disabled else "demoted")
        done: list[str] = []
        if password is not None:
            await asyncio.to_thread(self._set_password, name, password)
            done.append(f"reset the password of {name}")
        if admin is not None and await asyncio.to_thread(_guarded, self.accounts.set_admin, name, admin, True):
            done.append(f"{'granted' if admin else 'took back'} the admin role {'to' if admin else 'from'} {name}")
        if disabled is not None and await asyncio.to_thread(_guarded, self.accounts.set_disabled, name, disabled, True):
            self.limits.changed()  # every replica's gateway hears of it within a second
            done.append(f"{'disabled' if disabled else 'enabled'} {name}")
            if disabled and self.control is not None:
                stopped = await self.control.end_sessions(name)
                done.append(f"ended the sessions of {name} and stopped {stopped} job(s)")
        return done or [f"nothing to change for {name}"]

    def _set_password(self, name: str, password: str) -> None:
        try:
            self.accounts.set_password(name, password)
        except AccountError as err:
            raise AdminError(_sentence(err)) from None

    async def delete_user(self, name: str, by: str) -> dict[str, Any]:
        """Delete an account with its data: its sessions end, its jobs stop, its image jobs (and their files),
        conversations, limits and API keys go. Its request log rows stay (the audit trail) until retention."""
        self._known(name)
        if name == by:
            raise AdminError("You cannot delete your own account; ask another admin.", 409)
        await asyncio.to_thread(self._keep_an_admin, name, "deleted")
        # No new work while its data goes; disabling checks again, atomically, that an admin stays.
        await asyncio.to_thread(_guarded, self.accounts.set_disabled, name, True, True)
        self.limits.changed()
        stopped = await self.control.end_sessions(name) if self.control is not None else 0
        removed = await asyncio.to_thread(self._delete_data, name)
        self.limits.changed()
        return {"user": name, "stopped_jobs": stopped, **removed}

    def _delete_data(self, name: str) -> dict[str, Any]:
        images = conversations = 0
        while page := self.history.list_jobs(name, limit=DELETE_PAGE)["jobs"]:
            images += sum(self.history.delete_job(job["job_id"], name) for job in page)
        while page := self.chat.list_conversations(name, limit=DELETE_PAGE)["conversations"]:
            conversations += sum(self.chat.delete_conversation(c["conversation_id"], name) for c in page)
        keys = self.keys.revoke_all(name) if self.keys is not None else 0
        self.limits.clear(name)
        self.accounts.remove(name)
        return {"image_jobs": images, "conversations": conversations, "keys": keys}

    def _keep_an_admin(self, name: str, what: str) -> None:
        """AdminError (409) when `name` is the last enabled admin: the server would have no one left to run it (the
        self-checks above cover the usual case; this one, callers other than the REST routes)."""
        _guarded(self.accounts.keep_an_admin, name, what)

    def _known(self, name: str) -> None:
        if not NAME_PATTERN.match(name) or not self.accounts.exists(name):
            raise AdminError(f"There is no user {name!r}.", 404)

    # --- keys -----------------------------------------------------------------------------------
    def user_keys(self, name: str) -> list[dict[str, Any]]:
        """A user's API keys (never the keys themselves); AdminError (404) for no such user."""
        self._known(name)
        return self._key_store().list(name)

    def revoke_key(self, name: str, key: str) -> None:
        """Revoke one of a user's keys by its name; AdminError (404) when there is none."""
        self._known(name)
        if not self._key_store().revoke(name, key):
            raise AdminError(f"{name} has no API key named {key!r}.", 404)

    def _key_store(self) -> KeyStore:
        if self.keys is None:
            raise AdminError("API keys are not part of this server yet: there are no keys to list or revoke.", 404)
        return self.keys

    # --- usage, limits, requests ----------------------------------------------------------------
    @staticmethod
    def usage(since: dt.datetime | None = None, until: dt.datetime | None = None, days: float | None = None,
              user: str | None = None) -> dict[str, Any]:
        """Every user's usage over a period (or one user's), with the total; AdminError for a bad period."""
        try:
            start, end = usage.period(since, until, days)
            if user is not None:
                return {"since": start.isoformat(), "until": end.isoformat(),
                        "users": [usage.usage_of(user, start, end).as_dict()]}
            return usage.usage_by_user(start, end)
        except usage.UsageError as err:
            raise AdminError(_sentence(err)) from None

    def user_limits(self, name: str) -> dict[str, Any]:
        """A user's effective limits, the overridden fields named."""
        self._known(name)
        return {"user": name, **self.limits.effective(name).as_dict()}

    def all_limits(self) -> dict[str, Any]:
        """The defaults (the settings') and every user an admin gave limits of their own."""
        return {"defaults": self.limits.defaults.as_dict(), "users": self.limits.overrides()}

    def set_limits(self, name: str, by: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Override some of a user's limits (None: back to the default); applied on every replica within a second."""
        self._known(name)
        try:
            limits = self.limits.set(name, by, **changes)
        except LimitsError as err:
            raise AdminError(_sentence(err), 404 if str(err).startswith("no user") else 422) from None
        return {"user": name, **limits.as_dict()}

    def clear_limits(self, name: str) -> dict[str, Any]:
        """Return a user to the default limits."""
        self._known(name)
        self.limits.clear(name)
        return {"user": name, **self.limits.effective(name).as_dict()}

    @staticmethod
    def requests(**filters: Any) -> dict[str, Any]:
        """The request log, filtered and paged (services/usage.find_requests); AdminError for a bad filter."""
        try:
            return usage.find_requests(**filters)
        except usage.UsageError as err:
            raise AdminError(_sentence(err)) from None

    # --- the queue and the models ---------------------------------------------------------------
    def queue(self) -> list[dict[str, Any]]:
        """The jobs waiting and running on this replica."""
        return self.control.jobs() if self.control is not None else []

    async def stop_job(self, job_id: str) -> None:
        """Stop any user's job on this replica; AdminError (404) when there is no such job."""
        if self.control is None or not await self.control.stop(job_id):
            raise AdminError(f"There is no job {job_id!r} waiting or running on this replica.", 404)

    def models(self) -> list[dict[str, Any]]:
        """The model slots of this replica: kind, state, model, backend, what they hold."""
        return [{"kind": kind, **slot.status().as_dict()} for kind, slot in self.slots.items()]

    def model_action(self, kind: str, action: str) -> dict[str, Any]:
        """Load (in the background), offload or unload a model of this replica now; AdminError (409) when it is in
        use or not in a state the action applies to."""
        slot = self.slots.get(kind)
        if slot is None:
            raise AdminError(f"kind must be one of {', '.join(self.slots)}, got {kind!r}.", 404)
        if action not in MODEL_ACTIONS:
            raise AdminError(f"action must be one of {', '.join(MODEL_ACTIONS)}, got {action!r}.")
        if action == "load":
            if slot.status().state is not ModelState.LOADING:
                slot.warm_up()
        elif not slot.release(action):
            state = slot.status().state.value
            raise AdminError(f"The {kind} model cannot be {action}ed now: it is {state}"
                             f"{' and in use' if state == 'ready' else ''}. Try again when it is idle and loaded.",
                             409)
        return slot.status().as_dict()


def _guarded(change: Callable[..., T], *args: Any) -> T:
    """An account change that keeps an enabled admin (checked and made in one transaction, services/accounts.py:
    of two admins demoting each other at once, the second is refused), its LastAdminError as AdminError (409)."""
    try:
        return change(*args)
    except LastAdminError as err:
        raise AdminError(str(err), 409) from None  # it starts with a name: kept as written


def _sentence(err: Exception) -> str:
    """A service's message ("no user 'x'.") as a sentence."""
    text = str(err)
    return text[:1].upper() + text[1:]
