"""core.auth: the users file (bcrypt hashes, 0600, atomic writes), the cookie key, roles, the
sign-in throttle, and the `users` CLI commands.

bcrypt is real everywhere; most tests lower its cost factor (``fast_bcrypt``) to keep the file
fast, and one test checks the hashes the app really writes (default cost).
"""

from __future__ import annotations

import functools
import io
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import bcrypt
import pytest
import yaml

from core.auth import (
    COOKIE_KEY_FILE,
    MIN_PASSWORD_LENGTH,
    USERS_FILE,
    LoginThrottle,
    UserError,
    UserStore,
    cookie_key,
    ensure_admin,
)
from core.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery"
OTHER_PASSWORD = "staple-and-tr0mbone"


@pytest.fixture
def fast_bcrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real bcrypt at the lowest cost factor (4 instead of 12: ~1 ms instead of ~300 ms a hash)."""
    monkeypatch.setattr(bcrypt, "gensalt", functools.partial(bcrypt.gensalt, rounds=4))


@pytest.fixture
def store(tmp_path: Path, fast_bcrypt: None) -> UserStore:
    return UserStore(tmp_path)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_private_and_clean(directory: Path, expected: set[str]) -> None:
    """Exactly the expected files (no temp files left behind), each readable by the owner only."""
    assert {p.name for p in directory.iterdir()} == expected
    for name in expected:
        assert mode(directory / name) == 0o600, f"{name} has mode {oct(mode(directory / name))}"


def read_file(directory: Path) -> dict:
    return yaml.safe_load((directory / USERS_FILE).read_text())


# --- adding and verifying users -----------------------------------------------------------------


def test_add_writes_a_bcrypt_hash_never_the_password(tmp_path: Path) -> None:
    """Default cost factor, as the app runs it."""
    users = UserStore(tmp_path)
    users.add("alice", PASSWORD, email="alice@example.org")

    text = (tmp_path / USERS_FILE).read_text()
    assert PASSWORD not in text
    entry = yaml.safe_load(text)["usernames"]["alice"]
    assert entry["password"].startswith("$2b$12$")
    assert bcrypt.checkpw(PASSWORD.encode(), entry["password"].encode())
    assert entry["roles"] == ["user"]
    assert entry["name"] == "alice"  # defaults to the user name
    assert entry["email"] == "alice@example.org"
    assert_private_and_clean(tmp_path, {USERS_FILE})

    assert users.verify("alice", PASSWORD)
    assert not users.verify("alice", PASSWORD + "!")
    assert not users.verify("nobody", PASSWORD)


def test_a_second_store_reads_what_the_first_wrote(store: UserStore, tmp_path: Path) -> None:
    store.add("alice", PASSWORD, admin=True, name="Alice A.")
    again = UserStore(tmp_path)
    assert again.exists("alice")
    assert again.is_admin("alice")
    assert again.verify("alice", PASSWORD)
    assert again.users["alice"]["name"] == "Alice A."


def test_duplicate_user_is_refused(store: UserStore, tmp_path: Path) -> None:
    store.add("alice", PASSWORD)
    with pytest.raises(UserError, match="exists"):
        store.add("alice", OTHER_PASSWORD, admin=True)
    assert store.verify("alice", PASSWORD)
    assert not store.verify("alice", OTHER_PASSWORD)
    assert not UserStore(tmp_path).is_admin("alice")


def test_user_names_differing_only_in_case_cannot_both_exist(store: UserStore) -> None:
    from streamlit_authenticator.models.authentication_model import AuthenticationModel

    store.add("Alice", PASSWORD)
    try:
        store.add("alice", OTHER_PASSWORD)
    except UserError:
        return  # refused: what the sign-in library needs
    # Both were accepted: what the app's authenticator makes of them.
    AuthenticationModel(credentials=store.credentials, auto_hash=False)
    assert len(store.users) == 2, f"one account was lost: {sorted(store.users)}"


@pytest.mark.parametrize("password", ["", "short", "x" * (MIN_PASSWORD_LENGTH - 1)])
def test_weak_password_is_refused(store: UserStore, tmp_path: Path, password: str) -> None:
    with pytest.raises(UserError, match=str(MIN_PASSWORD_LENGTH)):
        store.add("alice", password)
    assert not store.exists("alice")
    assert not (tmp_path / USERS_FILE).exists()


def test_password_of_exactly_the_minimum_length_is_accepted(store: UserStore) -> None:
    password = "p" * MIN_PASSWORD_LENGTH
    store.add("alice", password)
    assert store.verify("alice", password)


TRAILING_NEWLINE = pytest.param("alice\n", id="trailing-newline")


@pytest.mark.parametrize(
    "name", ["", " ", "-alice", ".alice", "al ice", "a/b", "../etc", "élodie", "a" * 65, "a\tb", TRAILING_NEWLINE]
)
def test_invalid_user_names_are_refused(store: UserStore, tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="invalid user name"):
        store.add(name, PASSWORD)
    assert store.users == {}
    assert not (tmp_path / USERS_FILE).exists()


def test_valid_unusual_user_names_are_accepted(store: UserStore) -> None:
    for name in ("a", "j.doe", "jane_doe-2", "jane@example.org", "a" * 64):
        store.add(name, PASSWORD)
    assert len(store.list_users()) == 5


def test_invalid_email_is_refused(store: UserStore) -> None:
    with pytest.raises(UserError, match="e-mail"):
        store.add("alice", PASSWORD, email="not-an-address")
    assert not store.exists("alice")


# --- changing users -----------------------------------------------------------------------------


def test_set_password(store: UserStore, tmp_path: Path) -> None:
    store.add("alice", PASSWORD)
    store.set_password("alice", OTHER_PASSWORD)
    assert store.verify("alice", OTHER_PASSWORD)
    assert not store.verify("alice", PASSWORD)
    assert UserStore(tmp_path).verify("alice", OTHER_PASSWORD)
    assert OTHER_PASSWORD not in (tmp_path / USERS_FILE).read_text()

    with pytest.raises(UserError, match=str(MIN_PASSWORD_LENGTH)):
        store.set_password("alice", "short")
    assert store.verify("alice", OTHER_PASSWORD)
    with pytest.raises(UserError, match="no user"):
        store.set_password("bob", OTHER_PASSWORD)
    assert_private_and_clean(tmp_path, {USERS_FILE})


def test_the_last_admin_cannot_be_demoted_or_removed(store: UserStore, tmp_path: Path) -> None:
    store.add("root", PASSWORD, admin=True)
    store.add("bob", PASSWORD)
    with pytest.raises(UserError, match="last admin"):
        store.set_admin("root", False)
    with pytest.raises(UserError, match="last admin"):
        store.remove("root")
    assert read_file(tmp_path)["usernames"]["root"]["roles"] == ["admin"]

    store.set_admin("bob", False)  # not an admin: nothing to refuse
    store.set_admin("bob", True)
    store.set_admin("root", False)  # bob is an admin now
    assert not store.is_admin("root")
    with pytest.raises(UserError, match="last admin"):
        store.remove("bob")
    with pytest.raises(UserError, match="last admin"):
        store.set_admin("bob", False)
    store.remove("root")
    assert not store.exists("root")

    on_disk = UserStore(tmp_path)
    assert sorted(on_disk.users) == ["bob"]
    assert on_disk.is_admin("bob")
    with pytest.raises(UserError, match="no user"):
        store.remove("root")
    with pytest.raises(UserError, match="no user"):
        store.set_admin("nobody", True)
    assert_private_and_clean(tmp_path, {USERS_FILE})


def test_list_users(store: UserStore) -> None:
    assert store.list_users() == []
    store.add("zoe", PASSWORD, email="zoe@example.org")
    store.add("adam", PASSWORD, admin=True, name="Adam A.")
    listing = store.list_users()
    assert listing == [
        {"username": "adam", "name": "Adam A.", "email": "", "roles": ["admin"]},
        {"username": "zoe", "name": "zoe", "email": "zoe@example.org", "roles": ["user"]},
    ]
    listing[0]["roles"].append("hacker")  # a copy: changing it changes nothing stored
    assert store.users["adam"]["roles"] == ["admin"]


# --- the cookie key -----------------------------------------------------------------------------


def test_cookie_key_is_generated_once_private_and_stable(tmp_path: Path) -> None:
    first = cookie_key(tmp_path)
    assert len(first) >= 32
    assert_private_and_clean(tmp_path, {COOKIE_KEY_FILE})
    assert cookie_key(tmp_path) == first
    assert cookie_key(tmp_path / ".") == first
    assert (tmp_path / COOKIE_KEY_FILE).read_text().strip() == first
    assert cookie_key(tmp_path / "elsewhere") != first  # random, not derived from anything


def test_configured_cookie_key_wins(tmp_path: Path) -> None:
    assert cookie_key(tmp_path, "configured-secret") == "configured-secret"
    assert not (tmp_path / COOKIE_KEY_FILE).exists()
    generated = cookie_key(tmp_path)
    assert cookie_key(tmp_path, "configured-secret") == "configured-secret"
    assert cookie_key(tmp_path) == generated  # the kept key is left alone


# --- refresh: changes from another process (the CLI) -------------------------------------------


def test_refresh_picks_up_another_writer_and_keeps_the_same_dict(store: UserStore, tmp_path: Path) -> None:
    store.add("root", PASSWORD, admin=True)
    held = store.credentials  # what streamlit-authenticator keeps a reference to

    cli = UserStore(tmp_path)
    cli.add("bob", PASSWORD)
    cli.set_password("root", OTHER_PASSWORD)
    assert not store.exists("bob")  # not re-read yet

    store.refresh()
    assert store.credentials is held
    assert held["usernames"]["bob"]["roles"] == ["user"]
    assert store.verify("root", OTHER_PASSWORD)

    cli.remove("bob")
    store.refresh()
    assert store.credentials is held
    assert not store.exists("bob")


def test_refresh_without_changes_keeps_in_memory_state(store: UserStore) -> None:
    store.add("root", PASSWORD, admin=True)
    store.users["root"]["failed_login_attempts"] = 2  # changed in place, as the authenticator does
    store.refresh()
    assert store.users["root"]["failed_login_attempts"] == 2


def test_in_place_changes_are_saved_for_other_readers(store: UserStore, tmp_path: Path) -> None:
    store.add("root", PASSWORD, admin=True)
    other = UserStore(tmp_path)
    store.credentials["usernames"]["root"]["logged_in"] = True
    store.save()
    other.refresh()
    assert other.users["root"]["logged_in"] is True
    assert_private_and_clean(tmp_path, {USERS_FILE})


def test_refresh_after_the_file_is_deleted(store: UserStore, tmp_path: Path) -> None:
    store.add("root", PASSWORD, admin=True)
    held = store.credentials
    (tmp_path / USERS_FILE).unlink()
    store.refresh()
    assert store.credentials is held
    assert store.users == {}


def test_refresh_sees_a_rewrite_within_the_same_timestamp_tick(store: UserStore, tmp_path: Path) -> None:
    store.add("root", PASSWORD, admin=True)
    path = tmp_path / USERS_FILE
    seen = path.stat().st_mtime_ns
    UserStore(tmp_path).add("bob", PASSWORD)
    os.utime(path, ns=(seen, seen))
    store.refresh()
    assert store.exists("bob")


# --- the first admin from settings --------------------------------------------------------------


def test_ensure_admin_creates_the_admin_once(store: UserStore, tmp_path: Path) -> None:
    assert ensure_admin(store, "root", PASSWORD) is True
    assert store.is_admin("root")
    assert store.verify("root", PASSWORD)
    assert UserStore(tmp_path).is_admin("root")
    before = (tmp_path / USERS_FILE).read_bytes()

    # Already there (e.g. the admin changed the password since): nothing happens.
    assert ensure_admin(store, "root", OTHER_PASSWORD) is False
    assert store.verify("root", PASSWORD)
    assert (tmp_path / USERS_FILE).read_bytes() == before


@pytest.mark.parametrize(("name", "password"), [(None, PASSWORD), ("root", None), ("", PASSWORD), ("root", "")])
def test_ensure_admin_needs_both_settings(store: UserStore, tmp_path: Path, name, password) -> None:
    assert ensure_admin(store, name, password) is False
    assert store.users == {}
    assert not (tmp_path / USERS_FILE).exists()


def test_ensure_admin_leaves_an_existing_user_as_is(store: UserStore) -> None:
    store.add("root", PASSWORD)
    assert ensure_admin(store, "root", OTHER_PASSWORD) is False
    assert not store.is_admin("root")
    assert store.verify("root", PASSWORD)


# --- the sign-in throttle -----------------------------------------------------------------------


class Sleeps(list):
    """A ``sleep`` that records the delays instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_throttle_is_free_at_first_then_doubles_up_to_the_cap() -> None:
    sleeps = Sleeps()
    throttle = LoginThrottle(free_attempts=3, base_delay=1.0, max_delay=5.0, sleep=sleeps)
    waited = []
    for _ in range(8):
        waited.append(throttle.wait("mallory"))
        throttle.record("mallory", False)
    assert waited == [0.0, 0.0, 0.0, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert sleeps == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_throttle_counts_per_name_case_insensitively_and_resets_on_success() -> None:
    sleeps = Sleeps()
    throttle = LoginThrottle(free_attempts=1, base_delay=0.5, max_delay=30.0, sleep=sleeps)
    for name in ("Alice", "ALICE", "alice"):
        throttle.record(name, False)
    assert throttle.delay_for("alice") == 2.0  # 3 failures, 1 free: 0.5 * 2**(3 - 1)
    assert throttle.delay_for("aLiCe") == 2.0
    assert throttle.delay_for("bob") == 0.0
    assert throttle.wait("bob") == 0.0
    assert sleeps == []

    throttle.record("ALICE", True)
    assert throttle.delay_for("alice") == 0.0
    assert throttle.wait("Alice") == 0.0
    assert sleeps == []


def test_throttle_forgets_failures_older_than_the_window() -> None:
    sleeps = Sleeps()
    throttle = LoginThrottle(free_attempts=1, base_delay=1.0, window=0.05, sleep=sleeps)
    for _ in range(4):
        throttle.record("mallory", False)
    assert throttle.delay_for("mallory") == 8.0
    time.sleep(0.06)
    assert throttle.delay_for("mallory") == 0.0
    throttle.record("mallory", False)
    assert throttle.wait("mallory") == 1.0  # only the fresh failure counts
    assert sleeps == [1.0]


# --- the `users` CLI ----------------------------------------------------------------------------


def run_cli(*args: str, data_dir: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VAD_")}
    environment["VAD_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "core", *args],
        cwd=ROOT,
        env=environment,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_users_add_and_list(tmp_path: Path, fast_bcrypt: None) -> None:
    added = run_cli("users", "add", "root", "--admin", "--password-stdin", data_dir=tmp_path, stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert "created admin root" in added.stdout
    assert PASSWORD not in added.stdout + added.stderr
    users = UserStore(tmp_path)
    assert users.is_admin("root")
    assert users.verify("root", PASSWORD)  # the newline that ends the line is not part of it
    assert_private_and_clean(tmp_path, {USERS_FILE})

    users.add("bob", OTHER_PASSWORD, email="bob@example.org")
    listed = run_cli("users", "list", data_dir=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split()[1:] for line in listed.stdout.splitlines()}
    assert rows == {"root": ["admin"], "bob": ["user", "bob@example.org"]}


def test_cli_users_add_with_a_weak_password_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In-process (the subprocess path is covered above): same parser, handler and exit codes."""
    monkeypatch.setenv("VAD_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert cli_main(["users", "add", "bob", "--password-stdin"]) == 2
    out, err = capsys.readouterr()
    assert f"at least {MIN_PASSWORD_LENGTH} characters" in err
    assert err.startswith("error:")
    assert out == ""
    assert not (tmp_path / USERS_FILE).exists()
