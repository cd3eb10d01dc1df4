"""Driving the Streamlit app with AppTest: start it on a data dir, sign in, open a page, upload."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image
from streamlit.testing.v1 import AppTest

from core.auth import UserStore
from core.jobs import JobFiles

ROOT = Path(__file__).resolve().parents[1]
MAIN = str(ROOT / "app" / "main.py")
PASSWORD = "correct-horse-9"


def png(seed: int, size: tuple[int, int] = (96, 72)) -> bytes:
    """A distinct, textured test image (random blocks), as PNG bytes."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(blocks).resize(size, Image.Resampling.NEAREST)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def jpeg_variant(data: bytes, scale: float = 0.8, quality: int = 70) -> bytes:
    """A resized, recompressed copy: a near-duplicate of ``data``."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    image = image.resize((int(image.width * scale), int(image.height * scale)), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def add_user(data_dir: Path, name: str, admin: bool = False) -> None:
    store = UserStore(data_dir)
    if not store.exists(name):
        store.add(name, PASSWORD, admin=admin)


def new_app() -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=180)
    at.run()
    return at


def sign_in(at: AppTest, name: str, password: str = PASSWORD) -> AppTest:
    at.text_input[0].input(name)
    at.text_input[1].input(password)
    next(b for b in at.button if b.label == "Sign in").click()
    at.run()
    return at


def signed_in_app(data_dir: Path, name: str, admin: bool = False) -> AppTest:
    add_user(data_dir, name, admin)
    at = sign_in(new_app(), name)
    assert at.session_state["authentication_status"] is True, [e.value for e in at.error]
    return at


def open_page(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"../pages/{page}.py")
    at.run()
    return settle(at)


def active_jobs(at: AppTest) -> list:
    """The background jobs (core.jobs) of the signed-in user and the user in scope still running."""
    files = JobFiles(Path(os.environ.get("VAD_DATA_DIR", "data")))
    users = {at.session_state[key] for key in ("username", "scope_user") if key in at.session_state}
    return [job for user in users if user for job in files.list(user) if job.active]


def settle(at: AppTest, timeout: float = 180) -> AppTest:
    """Rerun until the user's background jobs (uploads, the neighbour graph) are over, so the page
    shows their outcome, as the auto-refresh does in a browser."""
    deadline = time.monotonic() + timeout
    while active_jobs(at):
        assert time.monotonic() < deadline, f"background jobs still running after {timeout} s"
        time.sleep(0.2)
        if not active_jobs(at):
            at.run()  # shows the outcome; may start the next job (the graph, after an upload)
    return at


def upload(at: AppTest, files: list[tuple[str, bytes]]) -> AppTest:
    """Upload on the Upload page (which must be open) and submit."""
    at.file_uploader(key="uploads").set_value([(name, data, "application/octet-stream") for name, data in files])
    next(b for b in at.button if b.label == "Add to collection").click()
    at.run()
    return settle(at)


def button(at: AppTest, label: str, key: str | None = None):
    return next(b for b in at.button if b.label == label and (key is None or b.key == key))


def texts(at: AppTest) -> str:
    """All markdown, captions, alerts and titles of the current run, for assertions."""
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [t.value for t in at.title]
    parts += [e.value for e in at.error] + [w.value for w in at.warning] + [i.value for i in at.info]
    parts += [s.value for s in at.success]
    return "\n".join(str(p) for p in parts)
