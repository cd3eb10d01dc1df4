"""Users, roles and credentials for the app's sign-in (``users.yaml``).

Passwords are bcrypt hashes; the file is written atomically with 0600 permissions. The cookie key
is generated at first start and kept in the data directory, never hard-coded. Each user carries a
random ``session_stamp``: session tokens name it, and replacing it (sign-out, password change,
removal) revokes every session of that user, in every process that reads the file.
"""

from __future__ import annotations

import functools
import re
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from core.files import replace_file
from core.storage.base import check_user

USERS_FILE = "users.yaml"
COOKIE_KEY_FILE = "cookie_key"
ROLES = ("user", "admin")
MIN_PASSWORD_LENGTH = 8
MAX_THROTTLED_NAMES = 10_000
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class UserError(ValueError):
    """A user operation was refused; the message says why."""


def validate_username(name: str) -> str:
    """The account name ``name`` stands for (lower-case), or UserError saying why it is refused.

    The one rule for registration, the Users page and the CLI: the storage rule (``check_user``),
    so every accepted name can own images. Surrounding spaces are refused, not trimmed.
    """
    try:
        return check_user(name).lower()
    except ValueError as exc:
        raise UserError(str(exc)) from None


def is_valid_username(name: str) -> bool:
    """Whether ``name`` passes ``validate_username`` (a users.yaml entry may predate the rule)."""
    try:
        validate_username(name)
    except UserError:
        return False
    return True


def sign_in_key(name: str) -> str:
    """The account a name typed at sign-in stands for: lower-case, surrounding spaces dropped.

    The throttle keys on it, so case and padding never open a fresh bucket (the sign-in form
    also refuses padded names outright).
    """
    return name.lower().strip()


def new_session_stamp() -> str:
    return secrets.token_urlsafe(16)


@functools.cache
def _unknown_user_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()


def check_password_strength(password: str) -> None:
    if password != password.strip():
        raise UserError("the password cannot start or end with a space")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_file(path, text, private=True)


def cookie_key(data_dir: Path, configured: str | None = None) -> str:
    """The configured key, else the one kept in the data dir (created at first start, 0600)."""
    if configured:
        return configured
    path = Path(data_dir) / COOKIE_KEY_FILE
    if path.is_file():
        key = path.read_text().strip()
        if key:
            return key
    key = secrets.token_urlsafe(48)
    _write_private(path, key + "\n")
    return key


class UserStore:
    """The credentials file: ``{"usernames": {name: {name, email, password, roles, ...}}}``."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / USERS_FILE
        self._lock = threading.RLock()
        self._mtime: tuple[int, int, int] | None = None
        self.credentials: dict[str, Any] = self._read()

    def _stat(self) -> tuple[int, int, int] | None:
        """A fingerprint of the file: a rewrite (atomic rename) changes inode, size or mtime."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return None
        return info.st_ino, info.st_size, info.st_mtime_ns

    def _read(self) -> dict[str, Any]:
        self._mtime = self._stat()
        if self._mtime is None:
            return {"usernames": {}}
        data = yaml.safe_load(self.path.read_text()) or {}
        data.setdefault("usernames", {})
        return data

    def refresh(self) -> None:
        """Re-read the file if another process (the CLI, another replica) changed it."""
        with self._lock:
            if self._stat() != self._mtime:
                fresh = self._read()
                # Callers may hold a reference to this dict: update it in place.
                self.credentials.clear()
                self.credentials.update(fresh)

    def save(self) -> None:
        """Persist the credentials (also after a caller changed them in place)."""
        with self._lock:
            _write_private(self.path, yaml.safe_dump(self.credentials, sort_keys=True))
            self._mtime = self._stat()

    @property
    def users(self) -> dict[str, dict[str, Any]]:
        return self.credentials["usernames"]

    def exists(self, username: str) -> bool:
        return username in self.users

    def is_admin(self, username: str) -> bool:
        return "admin" in (self.users.get(username, {}).get("roles") or [])

    def list_users(self) -> list[dict[str, Any]]:
        return [
            {
                "username": name,
                "name": info.get("name", ""),
                "email": info.get("email", ""),
                "roles": list(info.get("roles") or ["user"]),
            }
            for name, info in sorted(self.users.items())
        ]

    def add(self, username: str, password: str, *, admin: bool = False, name: str = "", email: str = "") -> None:
        """Create an account; names are stored lower-case, as the sign-in form matches them."""
        username = validate_username(username)
        check_password_strength(password)
        if email and not _EMAIL_RE.match(email):
            raise UserError(f"{email!r} is not an e-mail address")
        with self._lock:
            # The sign-in library lower-cases names, so names differing only in case would merge.
            if username.lower() in {name.lower() for name in self.users}:
                raise UserError(f"user {username!r} exists already")
            self.users[username] = {
                "name": name or username,
                "email": email or "",
                "password": hash_password(password),
                "roles": ["admin"] if admin else ["user"],
                "failed_login_attempts": 0,
                "logged_in": False,
                "session_stamp": new_session_stamp(),
            }
            self.save()

    def set_password(self, username: str, password: str) -> None:
        """New password; every session of the user ends."""
        check_password_strength(password)
        with self._lock:
            user = self._require(username)
            user["password"] = hash_password(password)
            user["session_stamp"] = new_session_stamp()
            self.save()

    def session_stamp(self, username: str) -> str:
        """The user's current session stamp (given one if the file predates stamps)."""
        with self._lock:
            user = self._require(username)
            if not user.get("session_stamp"):
                user["session_stamp"] = new_session_stamp()
                self.save()
            return str(user["session_stamp"])

    def revoke_sessions(self, username: str) -> None:
        """End every session of ``username`` (tokens carry the old stamp); no-op for unknown users."""
        with self._lock:
            if username in self.users:
                self.users[username]["session_stamp"] = new_session_stamp()
                self.save()

    def set_admin(self, username: str, admin: bool) -> None:
        with self._lock:
            user = self._require(username)
            if not admin and self.is_admin(username) and sum(map(self.is_admin, self.users)) == 1:
                raise UserError("the last admin cannot lose the admin role")
            user["roles"] = ["admin"] if admin else ["user"]
            self.save()

    def remove(self, username: str) -> None:
        with self._lock:
            self._require(username)
            if self.is_admin(username) and sum(map(self.is_admin, self.users)) == 1:
                raise UserError("the last admin cannot be removed")
            del self.users[username]
            self.save()

    def verify(self, username: str, password: str) -> bool:
        """Whether ``password`` is the user's; an unknown name costs a bcrypt check too (no timing tell)."""
        user = self.users.get(username)
        stored = str(user.get("password", "")) if user else _unknown_user_hash()
        return bcrypt.checkpw(password.encode(), stored.encode()) and user is not None

    def _require(self, username: str) -> dict[str, Any]:
        if username not in self.users:
            raise UserError(f"no user {username!r}")
        return self.users[username]


def ensure_admin(store: UserStore, username: str | None, password: str | None) -> bool:
    """Create the first admin from settings (VAD_ADMIN_USER / VAD_ADMIN_PASSWORD) if missing."""
    if not username or not password or store.exists(username):
        return False
    store.add(username, password, admin=True)
    return True


class LoginThrottle:
    """Slows down repeated failed sign-ins for one name: no delay for the first few, then doubling.

    Names are keyed by ``sign_in_key``, exactly as the sign-in library looks them up, so case and
    padding do not open fresh buckets. At most ``max_names`` names are tracked: the one that
    failed least recently is dropped first, so a name under attack stays tracked.
    """

    def __init__(
        self,
        free_attempts: int = 3,
        base_delay: float = 1.0,
        max_delay: float = 30.0,
        window: float = 900.0,
        sleep: Callable[[float], None] = time.sleep,
        max_names: int = MAX_THROTTLED_NAMES,
    ) -> None:
        self.free_attempts = free_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.window = window
        self._sleep = sleep
        self.max_names = max_names
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def delay_for(self, username: str) -> float:
        key, now = sign_in_key(username), time.monotonic()
        with self._lock:
            recent = [t for t in self._failures.get(key, []) if now - t < self.window]
            if recent:
                self._failures[key] = recent
            else:
                self._failures.pop(key, None)
        extra = len(recent) - self.free_attempts
        return 0.0 if extra < 0 or not recent else min(self.max_delay, self.base_delay * 2**extra)

    def wait(self, username: str) -> float:
        delay = self.delay_for(username)
        if delay:
            self._sleep(delay)
        return delay

    def record(self, username: str, success: bool) -> None:
        key = sign_in_key(username)
        with self._lock:
            if success:
                self._failures.pop(key, None)
                return
            # Re-inserted at the end: the names least recently failed are the first to be dropped.
            self._failures[key] = [*self._failures.pop(key, []), time.monotonic()]
            while len(self._failures) > self.max_names:
                del self._failures[next(iter(self._failures))]
