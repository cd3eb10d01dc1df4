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
import jwt
import pytest
import yaml
from apptest_helpers import PASSWORD as APP_PASSWORD
from apptest_helpers import add_user, button, new_app, open_page, sign_in, signed_in_app, texts

from core import sessions
from core.auth import (
    COOKIE_KEY_FILE,
    MIN_PASSWORD_LENGTH,
    USERS_FILE,
    LoginThrottle,
    UserError,
    UserStore,
    cookie_key,
    ensure_admin,
    is_valid_username,
    sign_in_key,
    validate_username,
)
from core.cli import main as cli_main
from core.storage import check_user

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
    """Sign-in lower-cases names (sign_in_key), so "Alice" and "alice" are one account."""
    store.add("Alice", PASSWORD)
    assert list(store.users) == ["alice"]
    with pytest.raises(UserError, match="exists"):
        store.add("ALICE", OTHER_PASSWORD)
    assert store.verify(sign_in_key("ALICE"), PASSWORD)


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


def test_cli_users_add_refuses_a_name_the_storage_refuses(tmp_path: Path, fast_bcrypt: None) -> None:
    for name in ("_lead", "-lead", "x+y@example.com"):
        # "--": "-lead" is a name here, not an option
        result = run_cli("users", "add", "--password-stdin", "--", name, data_dir=tmp_path, stdin=PASSWORD + "\n")
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error: invalid user name"), result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / USERS_FILE).exists()


def test_cli_passwd_and_remove_revoke_sessions(tmp_path: Path, fast_bcrypt: None) -> None:
    store = UserStore(tmp_path)
    store.add("root", PASSWORD, admin=True)
    store.add("bob", PASSWORD)
    key = "k" * 32
    root_token = sessions.encode(sessions.start(store, "root", 3600), key)
    bob_token = sessions.encode(sessions.start(store, "bob", 3600), key)
    assert sessions.decode(root_token, key, store) is not None

    assert (
        run_cli("users", "passwd", "root", "--password-stdin", data_dir=tmp_path, stdin=OTHER_PASSWORD).returncode == 0
    )
    assert run_cli("users", "remove", "bob", data_dir=tmp_path).returncode == 0
    store.refresh()
    assert sessions.decode(root_token, key, store) is None
    assert sessions.decode(bob_token, key, store) is None


# --- one rule for user names ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["_lead", "-lead", ".lead", "x+y@example.com", "alice ", " alice", "al\tice", ""])
def test_validate_username_refuses_what_storage_refuses(name: str) -> None:
    with pytest.raises(UserError, match="invalid user name"):
        validate_username(name)
    with pytest.raises(ValueError):
        check_user(name)  # the storage rule says the same
    assert not is_valid_username(name)


def test_validate_username_gives_the_stored_form() -> None:
    assert validate_username("Alice.B@example.org") == "alice.b@example.org"
    assert validate_username("a" * 64) == "a" * 64
    assert is_valid_username("Alice.B@example.org")


# --- the throttle keys on the name the library looks up -----------------------------------------


def test_throttle_keys_on_exactly_the_name_that_signs_in() -> None:
    sleeps = Sleeps()
    throttle = LoginThrottle(free_attempts=1, base_delay=1.0, sleep=sleeps)
    for padded in ("alice ", "\talice", " ALICE\t", "alice"):
        throttle.record(padded, False)
    assert sign_in_key(" ALICE\t") == "alice"
    assert throttle.delay_for("alice") == 8.0  # 4 failures in one bucket, 1 free: 1 * 2**3
    assert throttle.delay_for("alice  ") == 8.0  # padding gives no fresh, undelayed guesses
    assert throttle.wait("  Alice") == 8.0
    assert sleeps == [8.0]


def test_throttle_tracks_a_bounded_number_of_names_and_keeps_the_one_under_attack() -> None:
    throttle = LoginThrottle(free_attempts=0, base_delay=1.0, max_delay=100.0, max_names=3, sleep=Sleeps())
    throttle.record("victim", False)
    for junk in ("junk1", "junk2", "junk3", "junk4"):
        throttle.record(junk, False)
        throttle.record("victim", False)  # attacked again: the most recently failed, kept
    assert throttle.delay_for("victim") == 32.0  # 5 failures, none free: 1 * 2**5
    assert [throttle.delay_for(name) > 0 for name in ("junk1", "junk2", "junk3", "junk4")] == [
        False,
        False,
        True,
        True,
    ]  # only the 3 most recent names are kept


# --- session tokens -----------------------------------------------------------------------------

KEY = "a-cookie-key-" + "x" * 24


def test_a_session_token_round_trips_and_names_user_stamp_and_expiry(store: UserStore) -> None:
    store.add("alice", PASSWORD)
    session = sessions.start(store, "alice", 3600, now=1_000_000)
    assert session.expires == 1_003_600
    assert session.stamp == store.users["alice"]["session_stamp"]
    token = sessions.encode(session, KEY)
    assert "alice" not in token.split(".")[2]  # the signature part
    assert sessions.decode(token, KEY, store, now=1_000_001) == session
    assert sessions.decode(token, KEY, store, now=1_003_600) is None  # expired


def test_forged_and_tampered_tokens_are_refused(store: UserStore) -> None:
    store.add("alice", PASSWORD)
    store.add("mallory", PASSWORD)
    token = sessions.encode(sessions.start(store, "mallory", 3600), KEY)
    assert sessions.decode(token, "another-key-" + "y" * 24, store) is None  # signed with another key
    header, payload, signature = token.split(".")
    forged_payload = payload.replace(payload[:8], payload[:8][::-1])
    assert sessions.decode(f"{header}.{forged_payload}.{signature}", KEY, store) is None
    alice = sessions.Session("alice", store.session_stamp("alice"), 10**10)
    unsigned = sessions.encode(alice, KEY).rsplit(".", 1)[0] + "."
    assert sessions.decode(unsigned, KEY, store) is None
    assert sessions.decode("not a token", KEY, store) is None
    # The sign-in library's own cookie format (no stamp) is not a session.
    legacy = jwt.encode({"username": "alice", "exp_date": 10**10}, KEY, algorithm="HS256")
    assert sessions.decode(legacy, KEY, store) is None


@pytest.mark.parametrize("revoke", ["sign_out", "set_password", "remove", "remove_and_add_again"])
def test_revocation_ends_every_earlier_session_of_the_user(store: UserStore, tmp_path: Path, revoke: str) -> None:
    store.add("root", PASSWORD, admin=True)
    store.add("alice", PASSWORD)
    tokens = [sessions.encode(sessions.start(store, "alice", 3600), KEY) for _ in range(2)]
    bystander = sessions.encode(sessions.start(store, "root", 3600), KEY)
    other_process = UserStore(tmp_path)  # the CLI or another app replica
    if revoke == "sign_out":
        other_process.revoke_sessions("alice")
    elif revoke == "set_password":
        other_process.set_password("alice", OTHER_PASSWORD)
    else:
        other_process.remove("alice")
        if revoke == "remove_and_add_again":
            other_process.add("alice", PASSWORD)
    store.refresh()
    assert [sessions.decode(t, KEY, store) for t in tokens] == [None, None]
    assert sessions.decode(bystander, KEY, store) is not None
    if revoke != "remove":
        assert sessions.decode(sessions.encode(sessions.start(store, "alice", 3600), KEY), KEY, store)


def test_a_users_file_from_before_stamps_gets_one_on_first_sign_in(store: UserStore, tmp_path: Path) -> None:
    store.add("alice", PASSWORD)
    del store.users["alice"]["session_stamp"]
    store.save()
    old = UserStore(tmp_path)
    stamp = old.session_stamp("alice")
    assert stamp and UserStore(tmp_path).users["alice"]["session_stamp"] == stamp


# --- the app's sign-in gate (AppTest) -----------------------------------------------------------


@pytest.fixture
def app_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VAD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("VAD_MODEL", "tiny:random")
    for name in ("VAD_QDRANT_URL", "VAD_S3_ENDPOINT", "VAD_ADMIN_USER", "VAD_ADMIN_PASSWORD", "VAD_COOKIE_KEY"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "data"


def register(at, username: str, password: str = "Secret-pass-1"):
    fields = {t.label: t for t in at.text_input[2:]}
    fields["First name"].input("New")
    fields["Last name"].input("Comer")
    fields["Email"].input("new@example.com")
    fields["Username"].input(username)
    at.text_input[6].input(password)
    at.text_input[7].input(password)
    button(at, "Create account").click()
    return at.run()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("name", ["_lead", "-lead", "x+y@example.com"])
def test_registration_refuses_names_the_rest_of_the_system_refuses(app_env: Path, name: str) -> None:
    at = register(new_app(), name)
    assert not at.exception
    assert any("invalid user name" in e.value for e in at.error), [e.value for e in at.error]
    assert not UserStore(app_env).users


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_padded_name_does_not_sign_in(app_env: Path, fast_bcrypt: None) -> None:
    add_user(app_env, "alice")
    at = sign_in(new_app(), "alice ", APP_PASSWORD)
    assert at.session_state["authentication_status"] is False
    assert "Wrong user name or password" in texts(at)
    assert sign_in(at, "alice", APP_PASSWORD).session_state["authentication_status"] is True


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_an_invalid_name_already_in_the_users_file_gets_a_message_not_a_crash(app_env: Path, fast_bcrypt: None) -> None:
    store = UserStore(app_env)
    store.add("placeholder", APP_PASSWORD)
    store.users["_lead"] = store.users.pop("placeholder")  # as an older version could register it
    store.save()
    at = sign_in(new_app(), "_lead", APP_PASSWORD)
    assert not at.exception
    assert at.session_state["authentication_status"] is not True
    assert "This account cannot be used: invalid user name '_lead'" in texts(at)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_password_change_elsewhere_ends_a_running_session(app_env: Path) -> None:
    at = signed_in_app(app_env, "olga")
    open_page(at, "gallery")
    assert "Gallery" in [t.value for t in at.title]
    UserStore(app_env).set_password("olga", OTHER_PASSWORD)  # the CLI or an admin, another process
    at.run()
    assert at.session_state["authentication_status"] is not True
    assert "Your session has ended" in texts(at)
    assert "Gallery" not in [t.value for t in at.title]
    assert sign_in(at, "olga", OTHER_PASSWORD).session_state["authentication_status"] is True


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_sign_out_ends_the_users_other_sessions(app_env: Path) -> None:
    first = signed_in_app(app_env, "pia")
    second = sign_in(new_app(), "pia", APP_PASSWORD)
    assert second.session_state["authentication_status"] is True
    button(first, "Sign out").click()
    first.run()
    assert first.session_state["authentication_status"] is not True
    second.run()
    assert second.session_state["authentication_status"] is not True
    assert "Your session has ended" in texts(second)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_users_page_refuses_an_invalid_name_and_a_reset_ends_that_users_session(app_env: Path) -> None:
    admin = open_page(signed_in_app(app_env, "root", admin=True), "users")
    form_fields = {t.label: t for t in admin.text_input}
    form_fields["User name"].input("_lead")
    form_fields["Password"].input(PASSWORD)
    button(admin, "Add user").click()
    admin.run()
    assert not admin.exception
    assert any("invalid user name '_lead'" in e.value for e in admin.error), [e.value for e in admin.error]
    assert not UserStore(app_env).exists("_lead")

    user = signed_in_app(app_env, "quinn")
    admin.run()  # the admin's page lists the new account
    admin.selectbox(key="users_target").set_value("quinn")
    admin.text_input(key="users_password").input(OTHER_PASSWORD)
    admin.run()  # the button is enabled once a password is typed
    button(admin, "Set password").click()
    admin.run()
    assert "Password changed" in texts(admin)
    user.run()
    assert user.session_state["authentication_status"] is not True
    assert "Your session has ended" in texts(user)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_password_change_needs_the_current_password(app_env: Path) -> None:
    at = open_page(signed_in_app(app_env, "rita"), "account")
    fields = {t.label: t for t in at.text_input}
    fields["Current password"].input("not-the-password")
    fields["New password"].input(OTHER_PASSWORD)
    fields["Repeat password"].input(OTHER_PASSWORD)
    button(at, "Change password").click()
    at.run()
    assert "Password not changed: the current password is wrong" in texts(at)
    assert UserStore(app_env).verify("rita", APP_PASSWORD)
    assert at.session_state["authentication_status"] is True  # still signed in here
