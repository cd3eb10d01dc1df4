"""Users, roles and credentials for the app's sign-in (streamlit-authenticator's YAML format).

Passwords are bcrypt hashes; the file is written atomically with 0600 permissions. The cookie key
is generated at first start and kept in the data directory, never hard-coded.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from core.storage.base import check_user

USERS_FILE = "users.yaml"
COOKIE_KEY_FILE = "cookie_key"
ROLES = ("user", "admin")
MIN_PASSWORD_LENGTH = 8
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class UserError(ValueError):
    """A user operation was refused; the message says why."""


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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
                # streamlit-authenticator keeps a reference to this dict: update it in place.
                self.credentials.clear()
                self.credentials.update(fresh)

    def save(self) -> None:
        """Persist the credentials (also after streamlit-authenticator changed them in place)."""
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
        username = check_user(username).lower()
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
            }
            self.save()

    def set_password(self, username: str, password: str) -> None:
        check_password_strength(password)
        with self._lock:
            self._require(username)["password"] = hash_password(password)
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
        user = self.users.get(username)
        if not user:
            return False
        return bcrypt.checkpw(password.encode(), str(user.get("password", "")).encode())

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
    """Slows down repeated failed sign-ins for one name: no delay for the first few, then doubling."""

    def __init__(
        self,
        free_attempts: int = 3,
        base_delay: float = 1.0,
        max_delay: float = 30.0,
        window: float = 900.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.free_attempts = free_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.window = window
        self._sleep = sleep
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def delay_for(self, username: str) -> float:
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._failures.get(username.lower(), []) if now - t < self.window]
            self._failures[username.lower()] = recent
        extra = len(recent) - self.free_attempts
        return 0.0 if extra < 0 else min(self.max_delay, self.base_delay * 2**extra)

    def wait(self, username: str) -> float:
        delay = self.delay_for(username)
        if delay:
            self._sleep(delay)
        return delay

    def record(self, username: str, success: bool) -> None:
        with self._lock:
            if success:
                self._failures.pop(username.lower(), None)
            else:
                self._failures.setdefault(username.lower(), []).append(time.monotonic())
