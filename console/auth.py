"""Console users, roles, password hashing and signed session cookies.

Passwords: ``hashlib.scrypt`` (n=2**14, r=8, p=1), a 16-byte salt per user,
compared with ``hmac.compare_digest``. The users file is JSON, mode 0600, and
holds no password in clear. Sessions: an itsdangerous-signed cookie carrying the
user name, role and a CSRF token, re-signed on each request; one idle for more
than ``SESSION_IDLE_S`` is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from sigbus.transport.errors import SigbusError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SESSION_IDLE_S = 30 * 60
SESSION_COOKIE = "sigbus_console"
MIN_PASSWORD = 10


class ConsoleError(SigbusError):
    """A console users file or secret that cannot be used."""


class Role(StrEnum):
    COORDINATOR = "coordinator"  # samordnare: cases and case pages
    COMPLIANCE = "compliance"  # granskare: the log, its verification, case pages
    AUDITOR = "auditor"  # read-only revisor: verification and the unfiltered log only


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    salt: bytes
    hash: bytes

    def check(self, password: str) -> bool:
        return hmac.compare_digest(hash_password(password, self.salt), self.hash)


def new_user(name: str, role: Role, password: str) -> User:
    if len(password) < MIN_PASSWORD:
        raise ConsoleError(f"a password needs at least {MIN_PASSWORD} characters")
    if not name.isidentifier() and not name.replace("-", "_").replace(".", "_").isidentifier():
        raise ConsoleError("a user name is letters, digits, '.', '-' and '_'")
    salt = os.urandom(16)
    return User(name=name, role=role, salt=salt, hash=hash_password(password, salt))


class UsersFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, User]:
        try:
            raw = json.loads(self.path.read_text()) if self.path.exists() else {"users": {}}
            return {
                name: User(
                    name=name,
                    role=Role(u["role"]),
                    salt=base64.b64decode(u["salt"]),
                    hash=base64.b64decode(u["scrypt"]),
                )
                for name, u in raw["users"].items()
            }
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConsoleError(f"console users file {self.path} is not readable") from e

    def add(self, user: User) -> None:
        users = self.load()
        users[user.name] = user
        doc = {
            "users": {
                u.name: {"role": u.role.value, "salt": _b64(u.salt), "scrypt": _b64(u.hash)}
                for u in users.values()
            }
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".partial")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=2)
        os.replace(tmp, self.path)


def load_secret(path: Path) -> bytes:
    """The session signing secret, made (0600) on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
    secret = path.read_bytes()
    if len(secret) < 32:
        raise ConsoleError(f"console secret {path} is too short")
    return secret


class Throttle:
    """At most ``limit`` failed logins per user name in ``window_s``; then refused until
    the oldest failure leaves the window (a password guesser gets a handful of tries)."""

    def __init__(self, limit: int = 5, window_s: float = 15 * 60) -> None:
        self.limit = limit
        self.window_s = window_s
        self._failures: dict[str, list[float]] = {}

    def _recent(self, name: str, now: float) -> list[float]:
        kept = [t for t in self._failures.get(name, []) if now - t < self.window_s]
        self._failures[name] = kept
        return kept

    def blocked(self, name: str, now: float) -> bool:
        return len(self._recent(name, now)) >= self.limit

    def failed(self, name: str, now: float) -> None:
        self._recent(name, now).append(now)

    def succeeded(self, name: str) -> None:
        self._failures.pop(name, None)


@dataclass(frozen=True)
class Session:
    user: str
    role: Role
    csrf: str


class Sessions:
    def __init__(self, secret: bytes, idle_s: int = SESSION_IDLE_S) -> None:
        self._s = URLSafeTimedSerializer(secret, salt="sigbus-console-session")
        self.idle_s = idle_s

    def issue(self, session: Session) -> str:
        return self._s.dumps([session.user, session.role.value, session.csrf])

    def new(self, user: User) -> Session:
        return Session(user=user.name, role=user.role, csrf=secrets.token_urlsafe(24))

    def read(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        try:
            user, role, csrf = self._s.loads(cookie, max_age=self.idle_s)
            return Session(user=str(user), role=Role(role), csrf=str(csrf))
        except (SignatureExpired, BadSignature, ValueError, TypeError):
            return None
