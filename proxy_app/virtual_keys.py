"""Virtual keys on every call: the authenticate and model-access hooks, and the key cache.

Keys are `sk-` plus 32 random bytes. Only their SHA-256 is stored: with that much entropy a
fast hash is as strong as a slow one (there is no dictionary to try), and it keeps the cache
miss cheap. The hash is the lookup key, so timing reveals nothing about the plaintext; the
found hash is still compared in constant time.

A known key is answered from a per-worker cache, never the store. Entries are dropped when
this worker changes a key, when Redis says another worker or instance did, and when the store's
version counter moves (polled once a second in the background, which is how workers of one
instance agree without Redis). If the store cannot be reached, cached keys keep working and
unknown keys get a 503: a 401 would make a client throw away a key that may be good.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass

from dheera_ai import hookimpl
from dheera_ai.errors import AuthenticationError
from dheera_ai.router.wildcards import model_allowed
from dheera_ai.types import Principal
from proxy_app.store import StoreUnavailableError

log = logging.getLogger("dheera_ai.keys")

KEY_PREFIX = "sk-"
# LiteLLM's spellings of "no restriction of its own" ("all-team-models": whatever the team has).
ALL_MODELS = frozenset({"*", "all-proxy-models", "all-team-models"})
LIMITS = ("max_budget", "budget_duration", "rpm_limit", "tpm_limit", "max_parallel_requests")
POLL_SECONDS = 1.0
# Keys a worker keeps at most (~0.7 KB each): past it the longest-cached goes first, and its next
# call reads it from the store again (15-200 us). Without a bound, a million keys in use would
# take ~0.7 GB per worker.
CACHE_KEYS = 100_000
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w|mo)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "mo": 30 * 86400}
# Beyond this a duration is a typo, and `now + duration` would overflow a float or a timestamp.
MAX_DURATION_SECONDS = 100 * 365 * 86400


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def masked(key: str) -> str:
    """What lists and logs may show of a key: `sk-...` and its last four characters."""
    return f"{KEY_PREFIX}...{key[-4:]}"


def parse_duration(text: str) -> int:
    """"30d", "1h", "15m", "45s", "2w", "1mo" -> seconds; ValueError otherwise."""
    match = _DURATION.match(str(text))
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"'{text}' is not a duration like 30d, 12h, 15m, 45s, 2w or 1mo.")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"'{text}' is longer than 100 years.")
    return seconds


def model_set(models) -> frozenset | None:
    """A stored `models` list as a set; None means every model (empty list or a wildcard)."""
    if not models or ALL_MODELS.intersection(models):
        return None
    return frozenset(models)


def effective_models(key_models, team_models, access_groups: dict, user_models=None) -> frozenset | None:
    """What a key may call: its own models bounded by its team's and its user's, access groups expanded."""
    def expand(models):
        names = model_set(models)
        if names is None:
            return None
        return frozenset(n for name in names for n in (access_groups.get(name, set()) | {name}))

    allowed = None
    for bound in (expand(key_models), expand(team_models), expand(user_models)):
        if bound is not None:
            allowed = bound if allowed is None else allowed & bound
    return allowed


def access_groups(deployments) -> dict:
    """model_info.access_groups of every deployment: group name -> the model names in it."""
    groups: dict = {}
    for deployment in deployments:
        for group in deployment.model_info.get("access_groups") or ():
            groups.setdefault(group, set()).add(deployment.model_name)
    return groups


def _check_model(principal, model: str) -> None:
    """A 401 unless this caller may use `model` (its key's models, bounded by its team's); 401, as
    LiteLLM answers it (clients and its tests expect that status here)."""
    if principal is None or principal.kind != "virtual_key" or principal.models is None:
        return
    if not model_allowed(model, principal.models):
        allowed = ", ".join(sorted(principal.models)) or "(none)"
        raise AuthenticationError(f"This key may not use the model '{model}'. Allowed models: {allowed}.",
                                  param="model", code="model_not_allowed")


@dataclass(frozen=True)
class CachedKey:
    principal: Principal
    expires: float | None
    blocked: str | None  # why the key is refused ("blocked", "team blocked"), None if usable

    def admit(self) -> Principal:
        if self.blocked:
            raise AuthenticationError(f"This API key is {self.blocked}. Ask an admin to unblock it.",
                                      code="key_blocked")
        if self.expires is not None and self.expires <= time.time():
            raise AuthenticationError(
                f"This API key expired at {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(self.expires))}.",
                code="key_expired")
        return self.principal


class VirtualKeyAuth:
    """The plugin object `create_app` registers: virtual keys checked before the master key."""

    def __init__(self, store, config, invalidation=None, poll_seconds: float = POLL_SECONDS, ready=None,
                 cache_keys: int = CACHE_KEYS):
        self.store = store
        self.cache_keys = cache_keys
        # Called before a lookup: migrates a store that was down when the worker started.
        self.ready = ready or (lambda: None)
        self.invalidation = invalidation
        self.poll_seconds = poll_seconds
        self.groups = access_groups(config.deployments)
        self.cache: dict[str, CachedKey] = {}
        # Moves on every invalidation, so a lookup that raced one does not cache what it read.
        self._generation = 0
        self._version = None
        self._pid = None
        self._stop = threading.Event()

    # -- hooks -----------------------------------------------------------------------------------

    @hookimpl(tryfirst=True)
    def dheera_ai_authenticate(self, credentials, settings):
        key = credentials.api_key
        if not key:
            return None
        master = settings.master_key
        if master and hmac.compare_digest(key.encode(), master.encode()):
            return None  # the master-key plugin answers that one
        return self.principal_of(hash_key(key))

    def principal_of(self, key_hash: str) -> Principal | None:
        """Who the key with this hash is (None: no such key), refused as its callers would be
        (blocked, expired, revoked: an AuthenticationError). The admin UI checks sessions with it."""
        cached = self.cache.get(key_hash)
        if cached is None:
            cached = self._load(key_hash)
            if cached is None:
                return None  # not a key we know: the next plugin decides (deny by default)
        elif not hmac.compare_digest(cached.principal.key_hash, key_hash):
            return None
        return cached.admit()

    @hookimpl(tryfirst=True)
    def dheera_ai_pre_call(self, call, settings):
        _check_model(call.principal, call.model)

    @hookimpl(tryfirst=True)
    def dheera_ai_pre_attempt(self, call, deployment):
        # A retry or fallback may land in another model group: it must be one the key may use.
        _check_model(call.principal, deployment.model_name)

    # -- cache -----------------------------------------------------------------------------------

    def _load(self, key_hash: str) -> CachedKey | None:
        generation = self._generation
        try:
            self.ready()
            row, revoked = self.store.lookup_key(key_hash)
            if row is None:
                if revoked:
                    raise AuthenticationError(f"This API key was {revoked}; it can no longer be used.",
                                              code=f"key_{revoked}")
                return None
            team = self.store.get_team(row["team_id"]) if row["team_id"] else None
            user = self.store.get_user(row["user_id"]) if row["user_id"] else None
        except StoreUnavailableError as exc:
            log.error("%s; an unknown key was answered 503", exc.message)  # where it is: for us, not the caller
            raise StoreUnavailableError(
                "The key store is down, so this key cannot be checked right now; retry shortly.",
                code="store_unavailable") from None
        cached = self._entry(row, team, user)
        self._watch()
        if generation == self._generation:
            if len(self.cache) >= self.cache_keys:
                self.cache.pop(next(iter(self.cache)), None)  # dicts keep insertion order: the oldest
            self.cache[key_hash] = cached
        return cached

    def _entry(self, row: dict, team: dict | None, user: dict | None) -> CachedKey:
        limits = {name: row[name] for name in LIMITS if row[name] is not None}
        for name in LIMITS:  # the team's bound holds where the key sets none, or a looser one
            if team and team[name] is not None:
                if name not in limits or (name != "budget_duration" and team[name] < limits[name]):
                    limits[name] = team[name]
        principal = Principal(
            kind="virtual_key", key_hash=row["key_hash"], key_alias=row["key_alias"], user_id=row["user_id"],
            team_id=row["team_id"],
            models=effective_models(row["models"], team["models"] if team else None, self.groups,
                                    user["models"] if user else None),
            metadata=_with_team_cache(row["metadata"], team), team_metadata=dict(team["metadata"]) if team else {},
            tags=tuple(row["tags"]) + tuple(team["tags"] if team else ()),
            user_role=user["user_role"] if user else None, limits=limits,
            scoped_limits={scope: {name: owner[name] for name in LIMITS if owner[name] is not None}
                           for scope, owner in (("key", row), ("user", user), ("team", team)) if owner})
        blocked = "blocked" if row["blocked"] else ("blocked with its team" if team and team["blocked"] else None)
        return CachedKey(principal, row["expires"], blocked)

    def invalidate(self, key_hashes=None, broadcast: bool = True) -> None:
        """Forget these keys (or every key) here, and tell the other workers and instances."""
        self._forget(key_hashes)
        if broadcast and self.invalidation is not None:
            self.invalidation.publish(key_hashes)

    def _forget(self, key_hashes=None) -> None:
        self._generation += 1
        if key_hashes is None:
            self.cache.clear()
        else:
            for key_hash in key_hashes:
                self.cache.pop(key_hash, None)

    def _watch(self) -> None:
        """Once per worker, with something cached: start watching for changes made elsewhere."""
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._stop = threading.Event()
        try:
            self._version = self.store.state_version()
        except StoreUnavailableError:
            self._version = None
        threading.Thread(target=self._poll_forever, daemon=True, name="dheera_ai-key-version").start()
        if self.invalidation is not None:
            self.invalidation.listen(lambda key_hash: self._forget(None if key_hash is None else [key_hash]))

    def _poll_forever(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                version = self.store.state_version()
            except Exception as exc:  # noqa: BLE001 - an outage leaves the cache as it is
                log.debug("key version poll failed: %s", exc)
                continue
            if version != self._version:
                self._version = version
                self._forget()

    def close(self) -> None:
        self._stop.set()
        if self.invalidation is not None:
            self.invalidation.close()


def _with_team_cache(metadata: dict, team: dict | None) -> dict:
    """The key's metadata; a team's `cache` setting (the response cache) holds where the key has none."""
    metadata = dict(metadata)
    if team and "cache" in (team["metadata"] or {}) and "cache" not in metadata:
        metadata["cache"] = team["metadata"]["cache"]
    return metadata
