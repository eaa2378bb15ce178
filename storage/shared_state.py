"""State that several replicas must share: rate-limit counters, the per-user queue quota, login sessions, and who
owns each Gradio session, event and upload (Claims).

One replica keeps it all in process memory, as Atelier always did. With `ATELIER_REDIS_URL` it lives on Redis,
so that a burst spread over replicas is limited as on one, a user's quota counts their jobs on every replica,
and a user who logged in on one replica is logged in on all. The rest of the code asks this module, never
Redis directly.

The quota ledger: per user, a Redis sorted set of the user's jobs on every replica, each member
`replica|job` scored with the moment its lease ends. A replica admits a job with one Lua script (drop lapsed
leases, count the other replicas' jobs, add a ticket for this one if under the limit), so two replicas
admitting at once cannot both take the last place. Every `SYNC_EVERY_S` each replica renews the leases of
the jobs it holds and removes those that ended; a replica that dies stops renewing, and its jobs stop
counting after `LEASE_S`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from redis import Redis

    from settings import Settings

log = logging.getLogger("atelier.shared_state")

PREFIX = "atelier:"
# A replica renews its jobs' leases this often; a lease outlives a few missed renewals (a busy event loop),
# and a dead replica's jobs stop counting after it.
SYNC_EVERY_S = 2.0
LEASE_S = 30.0
# A ticket admitted by a validator counts until its job shows in Gradio's queue, which happens milliseconds
# later, on the event loop, once the validator's thread returns. A ticket this old that a sync does not find in
# the queue has left it already (a job stopped at once), or never joined (another input was refused): it goes.
PENDING_S = 1.0
# Login sessions on Redis end after this long (Gradio's own end when the process does).
SESSION_TTL_S = 7 * 86400.0
# A Redis that does not answer within this long is down: the request is refused rather than left hanging.
REDIS_TIMEOUT_S = 2.0
# Claims held in process memory at most (one replica): past that, a new session is refused until old ones lapse,
# since dropping a live claim would hand its session to whoever names it next.
MAX_CLAIMS = 200_000


def _redis_errors() -> tuple[type[Exception], ...]:
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError
    except ImportError:  # pragma: no cover - redis is in requirements.txt
        return ()
    return RedisConnectionError, RedisTimeoutError


# What a request meets when Redis is unreachable, and the 503's message (refused, never let through unlimited).
UNAVAILABLE: tuple[type[Exception], ...] = _redis_errors()
UNAVAILABLE_MESSAGE = "Atelier cannot reach its shared state (Redis) to check limits. Try again shortly."

# Drop lapsed leases, count other replicas' jobs, and admit this one when under the limit: atomically.
# KEYS[1] the user's set; ARGV: this replica's member prefix, its own job count, the limit, the ticket, lease ms.
_ADMIT = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
local others = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if string.sub(member, 1, #ARGV[1]) ~= ARGV[1] then others = others + 1 end
end
local total = others + tonumber(ARGV[2])
if total >= tonumber(ARGV[3]) then return {0, total} end
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[5]), ARGV[1] .. ARGV[4])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]))
return {1, total}
"""
# This replica's jobs of one user: remove the ended ones, renew the leases of the others.
# KEYS[1] the user's set; ARGV: lease ms, the number of members to remove, then those, then the ones to renew.
_SYNC = """
local now = redis.call('TIME')
local until_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[1])
local removed = tonumber(ARGV[2])
for i = 3, 2 + removed do redis.call('ZREM', KEYS[1], ARGV[i]) end
for i = 3 + removed, #ARGV do redis.call('ZADD', KEYS[1], until_ms, ARGV[i]) end
if #ARGV > 2 + removed then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1])) end
return 0
"""


class JobLedger:
    """Counts a user's queued and running jobs for the quota: this replica's (from Gradio's queue, handed in as
    job ids) plus, on Redis, every other replica's."""

    def __init__(self, redis: Redis | None = None, *, lease_s: float = LEASE_S, pending_s: float = PENDING_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.redis = redis
        self.prefix = f"{secrets.token_hex(8)}|"  # this replica's members
        self.lease_ms = int(lease_s * 1000)
        self.pending_s = pending_s
        self.clock = clock
        self._lock = threading.Lock()  # validators run in worker threads; the sync in another
        self._pending: dict[str, tuple[str, float]] = {}  # ticket -> (user, when admitted), not yet in the queue
        self._published: dict[str, set[str]] = {}  # user -> job ids this replica has on Redis
        if redis is not None:
            self._admit = redis.register_script(_ADMIT)
            self._sync = redis.register_script(_SYNC)

    @property
    def shared(self) -> bool:
        """Whether other replicas' jobs count too."""
        return self.redis is not None

    def admit(self, user: str, local: set[str], limit: int) -> tuple[bool, int, str | None]:
        """Whether one more job of `user` fits under `limit`, given the ids of the user's jobs in this replica's
        queue: (admitted, jobs counted before it, the ticket to tag the request with when it was counted)."""
        if self.redis is None:  # one replica: Gradio's queue is the whole truth, as it always was
            return len(local) < limit, len(local), None
        with self._lock:
            now = self.clock()
            mine = local | self._waiting(user, local, now)
            ticket = secrets.token_hex(12)
            admitted, total = self._admit(keys=[self._key(user)],
                                          args=[self.prefix, len(mine), limit, ticket, self.lease_ms])
            if admitted:
                self._pending[ticket] = (user, now)
                self._published.setdefault(user, set()).add(ticket)
            return bool(admitted), int(total), ticket if admitted else None

    def sync(self, jobs: dict[str, set[str]]) -> None:
        """Publish this replica's jobs (user -> job ids, a tagged job's id being its ticket): renew their
        leases, remove the ones that ended."""
        if self.redis is None:
            return
        with self._lock:
            now = self.clock()
            for ticket in [t for t, _ in self._pending.items() if any(t in ids for ids in jobs.values())]:
                del self._pending[ticket]  # its job is in the queue now, and counted as such
            current = {user: set(ids) for user, ids in jobs.items() if ids}
            for user in {u for u, _ in self._pending.values()}:
                current.setdefault(user, set()).update(self._waiting(user, set(), now))
            pipe = self.redis.pipeline(transaction=False)
            for user in set(current) | set(self._published):
                keep = current.get(user, set())
                gone = self._published.get(user, set()) - keep
                members = [self.prefix + job for job in (*gone, *keep)]
                self._sync(keys=[self._key(user)], args=[self.lease_ms, len(gone), *members], client=pipe)
            pipe.execute()
            self._published = current

    def withdraw(self) -> None:
        """Remove every job of this replica from the count, tickets still joining included (it is stopping)."""
        with self._lock:
            self._pending.clear()
        self.sync({})

    async def run(self, jobs: Callable[[], dict[str, set[str]]], every_s: float = SYNC_EVERY_S) -> None:
        """Sync every `every_s` seconds until cancelled: `jobs()` is read on the event loop (Gradio's queue lives
        there), Redis is written from a worker thread; a failed round is logged and the next one runs. In process
        memory there is nobody to tell: it returns at once."""
        while self.redis is not None:
            try:
                snapshot = jobs()
                await anyio.to_thread.run_sync(self.sync, snapshot)
            except Exception:
                log.exception("publishing this replica's jobs for the quota failed; retrying in %.0f s", every_s)
            await asyncio.sleep(every_s)

    def _waiting(self, user: str, local: set[str], now: float) -> set[str]:
        """The user's tickets admitted here whose jobs are not in the queue yet (lapsed ones are dropped)."""
        for ticket in [t for t, (_, when) in self._pending.items() if now - when > self.pending_s]:
            del self._pending[ticket]
        return {t for t, (u, _) in self._pending.items() if u == user and t not in local}

    @staticmethod
    def _key(user: str) -> str:
        return f"{PREFIX}jobs:{user}"


class HashedToken(str):
    """A session token's key as stored (a hash): what iterating the shared tokens yields, so that looking it
    up or deleting it again (as Gradio's logout does) finds the same entry."""


class SharedTokens(MutableMapping[str, str]):
    """Gradio's login tokens (token -> user name) on Redis, for every replica. Tokens are stored by hash, so
    that reading Redis gives no one a session; they end after SESSION_TTL_S. A Redis that does not answer
    makes a token unknown (a login page), never a wrong user."""

    def __init__(self, redis: Redis, ttl_s: float = SESSION_TTL_S) -> None:
        self.redis = redis
        self.ttl_ms = int(ttl_s * 1000)

    def __getitem__(self, token: str) -> str:
        try:
            user = self.redis.get(self._key(token))
        except UNAVAILABLE:
            log.warning("Redis is unreachable: a login session cannot be checked")
            user = None
        if user is None:
            raise KeyError(token)
        return user

    def __setitem__(self, token: str, user: str) -> None:
        self.redis.set(self._key(token), user, px=self.ttl_ms)

    def __delitem__(self, token: str) -> None:
        if not self.redis.delete(self._key(token)):
            raise KeyError(token)

    def __iter__(self) -> Iterator[str]:
        start = len(f"{PREFIX}token:")
        return (HashedToken(key[start:]) for key in self.redis.scan_iter(match=f"{PREFIX}token:*", count=500))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    @staticmethod
    def _key(token: str) -> str:
        digest = token if isinstance(token, HashedToken) else hashlib.sha256(str(token).encode()).hexdigest()
        return f"{PREFIX}token:{digest}"


# First use wins: the owner of KEYS[1], set to ARGV[1] when it has none (and ARGV[3] is "1"; else nil); a claim used
# by its owner lives on. ARGV: the user, the claim's lifetime in ms, whether to create it.
_CLAIM = """
local owner = redis.call('GET', KEYS[1])
if not owner then
  if ARGV[3] ~= '1' then return false end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
  return ARGV[1]
end
if owner == ARGV[1] then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2])) end
return owner
"""


class ClaimsFull(Exception):
    """Process memory holds MAX_CLAIMS live claims: no new session until some lapse."""


class Claims:
    """Who first used each Gradio session hash, event id and upload id: that user owns it for as long as it is
    used or renewed (the janitor renews every session its replica still holds), `ttl_s` after that it lapses.

    On Redis every replica sees the same owners, so a session or event named on another replica is judged alike.
    A key is `kind:id` (kind: `session` for session hashes and event ids, which Gradio mixes: an event started
    without a session has its own id as session hash; `upload` for upload ids)."""

    def __init__(self, redis: Redis | None = None, *, ttl_s: float = SESSION_TTL_S, max_entries: int = MAX_CLAIMS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self._lock = threading.Lock()
        self._owners: dict[str, tuple[str, float]] = {}  # in memory: key -> (owner, when the claim lapses)
        if redis is not None:
            self._claim = redis.register_script(_CLAIM)

    def claim(self, key: str, user: str, create: bool = True) -> str | None:
        """The owner of `key`: `user` when it had none (now theirs; None instead when not `create`) or was theirs
        already, else the other user. ClaimsFull when a new claim does not fit in memory; Redis errors
        (UNAVAILABLE) pass on."""
        if self.redis is not None:
            owner = self._claim(keys=[self._key(key)], args=[user, int(self.ttl_s * 1000), "1" if create else "0"])
            return None if owner is None else str(owner)
        with self._lock:
            now = self.clock()
            owner, until = self._owners.get(key, ("", 0.0))
            if until > now and owner != user:
                return owner
            if until <= now and not create:
                return None
            if until <= now and len(self._owners) >= self.max_entries:
                self._purge(now)
                if len(self._owners) >= self.max_entries:
                    raise ClaimsFull(key)
            self._owners[key] = (user, now + self.ttl_s)
            return user

    def owner(self, key: str) -> str | None:
        """Who holds `key` now, or None."""
        if self.redis is not None:
            return self.redis.get(self._key(key))
        with self._lock:
            owner, until = self._owners.get(key, ("", 0.0))
            return owner if until > self.clock() else None

    def renew(self, keys: set[str]) -> None:
        """Keep the claims on `keys` (the sessions and events this replica still holds) for another `ttl_s`;
        in memory, lapsed claims go."""
        if self.redis is not None:
            pipe = self.redis.pipeline(transaction=False)
            for key in keys:
                pipe.pexpire(self._key(key), int(self.ttl_s * 1000))
            pipe.execute()
            return
        with self._lock:
            now = self.clock()
            for key in keys & self._owners.keys():
                owner, until = self._owners[key]
                if until > now:
                    self._owners[key] = (owner, now + self.ttl_s)
            self._purge(now)

    def _purge(self, now: float) -> None:
        for key in [k for k, (_, until) in self._owners.items() if until <= now]:
            del self._owners[key]

    @staticmethod
    def _key(key: str) -> str:
        return f"{PREFIX}claim:{key}"


class Generations:
    """Named counters that tell every replica "this changed, drop what you cached" (an admin's per-user limits):
    bumped by the replica that changes the thing, read by the others now and then. On Redis every replica reads
    the same counter; in process memory only this process's caches hear of a change."""

    def __init__(self, redis: Redis | None = None) -> None:
        self.redis = redis
        self._local: dict[str, int] = {}
        self._lock = threading.Lock()

    def bump(self, name: str) -> int:
        """Count one change of `name`; the new value."""
        if self.redis is not None:
            return int(self.redis.incr(self._key(name)))
        with self._lock:
            self._local[name] = self._local.get(name, 0) + 1
            return self._local[name]

    def read(self, name: str) -> int:
        """The count of changes of `name` so far (0 before the first)."""
        if self.redis is not None:
            return int(self.redis.get(self._key(name)) or 0)
        with self._lock:
            return self._local.get(name, 0)

    @staticmethod
    def _key(name: str) -> str:
        return f"{PREFIX}generation:{name}"


class SharedState:
    """Where this replica's shared state lives: process memory (`redis` None) or one Redis."""

    def __init__(self, redis: Redis | None = None, ratelimit_storage: str = "memory://", redis_url: str = "",
                 claim_ttl_s: float = SESSION_TTL_S) -> None:
        self.redis = redis
        self.redis_url = redis_url
        self.ratelimit_storage = ratelimit_storage
        self.jobs = JobLedger(redis)
        self.claims = Claims(redis, ttl_s=claim_ttl_s)
        self.generations = Generations(redis)

    @property
    def shared(self) -> bool:
        """Whether the state is shared with other replicas."""
        return self.redis is not None

    def limits_storage(self) -> tuple[str, dict[str, Any]]:
        """The `limits` storage URI for slowapi, and its options: an explicit ATELIER_RATELIMIT_STORAGE wins,
        else the shared Redis, else process memory."""
        if self.redis is not None and self.ratelimit_storage == "memory://":
            return self.redis_url, {"socket_timeout": REDIS_TIMEOUT_S, "socket_connect_timeout": REDIS_TIMEOUT_S}
        return self.ratelimit_storage, {}

    def login_tokens(self) -> SharedTokens | None:
        """The login tokens every replica shares, or None to keep Gradio's own per-process dict."""
        return SharedTokens(self.redis) if self.redis is not None else None

    def agree_cookie_id(self, own: str) -> str:
        """The suffix of the login cookie's name: Gradio draws one per process, so replicas must agree on one
        (the first replica's), else a cookie set by one is not even read by another."""
        if self.redis is None:
            return own
        self.redis.set(f"{PREFIX}cookie-id", own, nx=True)
        return self.redis.get(f"{PREFIX}cookie-id") or own

    def close(self) -> None:
        """Withdraw this replica's jobs from the quota (a replica that stops cleanly leaves no counts behind for
        LEASE_S) and close the Redis connections."""
        if self.redis is None:
            return
        try:
            self.jobs.withdraw()
        except UNAVAILABLE:
            log.warning("Redis is unreachable: this replica's jobs stop counting when their leases end")
        self.redis.close()


def open_shared_state(settings: Settings) -> SharedState:
    """Process memory when ATELIER_REDIS_URL is empty; else a Redis client, checked now so that a wrong URL
    stops the start with a clear message rather than failing the first request."""
    ttl_s = claim_ttl_s(settings)
    if not settings.redis_url:
        return SharedState(ratelimit_storage=settings.ratelimit_storage, claim_ttl_s=ttl_s)
    import redis

    client = redis.Redis.from_url(settings.redis_url, decode_responses=True, socket_timeout=REDIS_TIMEOUT_S,
                                  socket_connect_timeout=REDIS_TIMEOUT_S, health_check_interval=30)
    try:
        client.ping()
    except (redis.exceptions.RedisError, ValueError) as err:
        raise SystemExit(f"ATELIER_REDIS_URL: cannot reach Redis at {_safe(settings.redis_url)} ({err}).") from None
    return SharedState(client, settings.ratelimit_storage, settings.redis_url, ttl_s)


def claim_ttl_s(settings: Settings) -> float:
    """How long a claim outlives its last use: past the grace after which the janitor forgets a quiet session,
    with two sweeps to spare (each sweep renews the claims of the sessions its replica still holds)."""
    return settings.session_grace_s + 2 * settings.temp_sweep_every_s


def _safe(url: str) -> str:
    """The URL without a password, for messages."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()
