"""Share links: signed tokens that let someone else watch (or drive) one process.

A share token is the share's grant (id, proc, owner, mode, expiry,
single use) signed with itsdangerous under a server secret, so any worker
of any host can check it without asking anyone.  What a signature cannot
say, whether the share was revoked or its single use spent, is kept where
every worker that checks it can see it: in Redis in cluster mode, else in
files of ``STATE_DIR`` (every worker of one server shares that directory).
The secret is kept the same way: ``procwire:share-secret`` in Redis (the
first node sets it), else ``STATE_DIR/share-secret-<BIND>`` (0600).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import gevent
import orjson
from itsdangerous import BadSignature, URLSafeSerializer
from redis import Redis, RedisError

from app.cluster import keys
from config import Settings
from config.devtoken import load_or_create
from config.state import StateError, private_directory, server_file

SALT = "procwire-share"
VIEW, CONTROL = "view", "control"
ID_BYTES = 9  # 72 bits: 12 characters
CLOSE_SHARE_ENDED = 4003  # the close code of a connection whose share was revoked or expired
WATCH_SECONDS = 1.0  # how often a worker asks whether the shares of its connections were revoked elsewhere
Close = Callable[[int, str], None]
# Why the store may not answer: its files (or an unsafe secret file), or Redis.
UNAVAILABLE: tuple[type[Exception], ...] = (OSError, StateError, RedisError)


@dataclass(frozen=True)
class Grant:
    """What a share token allows: ``mode`` on process ``proc`` of ``owner``, until ``expires_at``."""

    id: str
    proc: int
    owner: str
    mode: str
    expires_at: float
    single_use: bool = False

    def public(self) -> dict[str, Any]:
        """As ``hello`` shows it to the share's holder."""
        return {"id": self.id, "proc": self.proc, "mode": self.mode}

    def ttl(self) -> int:
        """Whole seconds until it expires (at least 1): how long its records must last."""
        return max(1, int(self.expires_at - time.time()) + 1)


class Refused(Exception):
    """A share token that grants nothing; the message says why (for the audit line and the 401)."""


class Store(Protocol):
    """Where revocations and spent single-use shares are kept, for every worker to see."""

    def secret(self) -> str: ...

    def record(self, grant: Grant) -> None: ...

    def grant(self, share_id: str) -> Grant | None: ...

    def revoke(self, grant: Grant) -> None: ...

    def revoked(self, share_id: str) -> bool: ...

    def spend(self, grant: Grant) -> bool:
        """Mark a single-use share used; False if it already was."""
        ...


class FileStore:
    """One server's workers: files in ``STATE_DIR/shares-<BIND>/``, named by share id."""

    def __init__(self, state_dir: str, bind: str) -> None:
        self._secret_file = server_file(state_dir, bind, "share-secret")
        self._dir = server_file(state_dir, bind, "shares")

    def secret(self) -> str:
        return load_or_create(self._secret_file)[0]

    def _path(self, share_id: str, kind: str) -> Path:
        return self._dir / f"{share_id}.{kind}"

    def record(self, grant: Grant) -> None:
        private_directory(self._dir)
        self._prune()
        self._path(grant.id, "json").write_bytes(orjson.dumps(asdict(grant)))

    def _prune(self) -> None:
        """Forget shares expired an hour ago (their tokens are refused anyway)."""
        stale = time.time() - 3600
        for path in self._dir.iterdir():
            try:
                if path.stat().st_mtime < stale and _expired_record(path):
                    for kind in ("json", "revoked", "used"):
                        self._path(path.stem, kind).unlink(missing_ok=True)
            except (OSError, ValueError):
                continue

    def grant(self, share_id: str) -> Grant | None:
        try:
            return Grant(**orjson.loads(self._path(share_id, "json").read_bytes()))
        except (OSError, ValueError, TypeError):
            return None

    def revoke(self, grant: Grant) -> None:
        self._path(grant.id, "revoked").touch()

    def revoked(self, share_id: str) -> bool:
        return self._path(share_id, "revoked").exists()

    def spend(self, grant: Grant) -> bool:
        private_directory(self._dir)
        try:
            os.close(os.open(self._path(grant.id, "used"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            return False
        return True


def _expired_record(path: Path) -> bool:
    if path.suffix != ".json":
        return False
    return float(orjson.loads(path.read_bytes())["expires_at"]) < time.time() - 3600


class RedisStore:
    """Every node of a cluster: keys that expire with the share."""

    def __init__(self, url: str, timeout: float) -> None:
        self._redis = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)

    def secret(self) -> str:
        stored = self._redis.get(keys.SHARE_SECRET)
        if stored is None:  # the first use in this cluster (or Redis lost its data): one node's wins
            self._redis.set(keys.SHARE_SECRET, secrets.token_urlsafe(32), nx=True)
            stored = self._redis.get(keys.SHARE_SECRET)
        return stored.decode("ascii")  # type: ignore[union-attr]

    def record(self, grant: Grant) -> None:
        self._redis.set(keys.share(grant.id), orjson.dumps(asdict(grant)), ex=grant.ttl())

    def grant(self, share_id: str) -> Grant | None:
        stored = self._redis.get(keys.share(share_id))
        return Grant(**orjson.loads(stored)) if stored else None

    def revoke(self, grant: Grant) -> None:
        self._redis.set(keys.share(grant.id, "revoked"), b"1", ex=grant.ttl())

    def revoked(self, share_id: str) -> bool:
        return bool(self._redis.exists(keys.share(share_id, "revoked")))

    def spend(self, grant: Grant) -> bool:
        return bool(self._redis.set(keys.share(grant.id, "used"), b"1", ex=grant.ttl(), nx=True))


class Shares:
    """Makes, checks and revokes share tokens for this worker."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._signing: tuple[str, URLSafeSerializer] | None = None
        self.watch = Watch(self)

    @classmethod
    def from_settings(cls, settings: Settings) -> Shares:
        if settings.REDIS_URL:
            return cls(RedisStore(settings.REDIS_URL, settings.CLUSTER_TIMEOUT))
        return cls(FileStore(settings.STATE_DIR, settings.BIND))

    @property
    def serializer(self) -> URLSafeSerializer:
        """Signing with the stored secret, read at each use (a share is rare): every worker and host
        follows when it is replaced, and a server starts without Redis."""
        secret = self.store.secret()
        if self._signing is None or self._signing[0] != secret:
            signing = {"digest_method": hashlib.sha256}
            self._signing = (secret, URLSafeSerializer(secret, salt=SALT, signer_kwargs=signing))
        return self._signing[1]

    def issue(self, proc: int, owner: str, mode: str, expires_in: float, single_use: bool) -> tuple[Grant, str]:
        grant = Grant(secrets.token_urlsafe(ID_BYTES), proc, owner, mode, time.time() + expires_in, single_use)
        self.store.record(grant)
        return grant, self.serializer.dumps(asdict(grant))

    def check(self, token: str) -> Grant:
        """The grant of a valid token, not expired nor revoked; else :class:`Refused`."""
        try:
            grant = Grant(**self.serializer.loads(token))
        except BadSignature:
            raise Refused("share link not valid (bad signature)") from None
        except (TypeError, ValueError):
            raise Refused("share link not valid") from None
        except UNAVAILABLE:
            raise Refused("share links cannot be checked now") from None
        try:
            if grant.expires_at <= time.time():
                raise Refused(f"share link {grant.id} expired")
            if self.store.revoked(grant.id):
                raise Refused(f"share link {grant.id} was revoked")
        except UNAVAILABLE:
            raise Refused("share links cannot be checked now") from None
        return grant

    def spend(self, grant: Grant) -> None:
        """A single-use share's one connection: refused (:class:`Refused`) if it was made before."""
        try:
            if grant.single_use and not self.store.spend(grant):
                raise Refused(f"share link {grant.id} was already used")
        except UNAVAILABLE:
            raise Refused("share links cannot be checked now") from None


def looks_like_share(token: str) -> bool:
    """A signed share token is ``<payload>.<signature>``; tokens procwire-token makes have no dot."""
    return "." in token


class Watch:
    """This worker's connections made with share links, closed (4003) once their share is revoked
    or expired: revoked here at once, revoked by another worker or host within ``WATCH_SECONDS``."""

    def __init__(self, shares: Shares) -> None:
        self._shares = shares
        self._followed: dict[str, dict[str, tuple[Grant, Close]]] = {}
        self._loop: gevent.Greenlet | None = None

    def follow(self, grant: Grant, client_id: str, close: Close) -> None:
        self._followed.setdefault(grant.id, {})[client_id] = (grant, close)
        if self._loop is None or self._loop.dead:
            self._loop = gevent.spawn(self._watch)

    def forget(self, grant: Grant, client_id: str) -> None:
        connections = self._followed.get(grant.id, {})
        connections.pop(client_id, None)
        if not connections:
            self._followed.pop(grant.id, None)

    def end(self, share_id: str, reason: str) -> None:
        """Close every connection of this share on this worker."""
        for _grant, close in list(self._followed.pop(share_id, {}).values()):
            close(CLOSE_SHARE_ENDED, reason)

    def _watch(self) -> None:
        while self._followed:
            gevent.sleep(WATCH_SECONDS)
            for share_id, connections in list(self._followed.items()):
                grant = next(iter(connections.values()))[0]
                if grant.expires_at <= time.time():
                    self.end(share_id, "share expired")
                elif self._revoked(share_id):
                    self.end(share_id, "share revoked")

    def _revoked(self, share_id: str) -> bool:
        """Revoked as far as the store can tell now (unreachable: asked again at the next round)."""
        try:
            return self._shares.store.revoked(share_id)
        except UNAVAILABLE:
            return False
