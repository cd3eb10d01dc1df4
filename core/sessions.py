"""Signed, revocable session tokens: what the app's sign-in cookie holds.

A token is an HS256 JWT signed with the cookie key, naming the user, the user's session stamp
(kept in users.yaml, see core.auth) and an expiry. It is accepted only while the signature holds,
the expiry is ahead and the stamp is still the user's: replacing the stamp (sign-out, password
change, admin reset, removal) revokes every token issued before, in every app process.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

import jwt

from core.auth import UserStore

COOKIE_NAME = "vad_session"
_ALGORITHM = "HS256"


@dataclass(frozen=True)
class Session:
    """A signed-in session: who, under which stamp, until when (Unix time)."""

    user: str
    stamp: str
    expires: float

    def is_current(self, store: UserStore, now: float | None = None) -> bool:
        """Not expired, and the user still exists with the same stamp."""
        if (time.time() if now is None else now) >= self.expires:
            return False
        stored = str(store.users.get(self.user, {}).get("session_stamp") or "")
        return bool(stored) and hmac.compare_digest(stored, self.stamp)


def start(store: UserStore, user: str, lifetime_s: float, now: float | None = None) -> Session:
    """A new session for ``user`` under the user's current stamp."""
    issued = time.time() if now is None else now
    return Session(user=user, stamp=store.session_stamp(user), expires=int(issued + lifetime_s))


def encode(session: Session, key: str) -> str:
    """The session as a signed token (the cookie's value)."""
    claims = {"sub": session.user, "stamp": session.stamp, "exp": int(session.expires)}
    return jwt.encode(claims, key, algorithm=_ALGORITHM)


def decode(token: str, key: str, store: UserStore, now: float | None = None) -> Session | None:
    """The session ``token`` stands for, or None if it is forged, expired or revoked."""
    try:
        # The expiry is checked by is_current (one clock for tokens and live sessions).
        options = {"require": ["sub", "stamp", "exp"], "verify_exp": False}
        claims = jwt.decode(token, key, algorithms=[_ALGORITHM], options=options)
        session = Session(user=str(claims["sub"]), stamp=str(claims["stamp"]), expires=float(claims["exp"]))
    except (jwt.InvalidTokenError, TypeError, ValueError):
        return None
    return session if session.is_current(store, now) else None
