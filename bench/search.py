"""Search page server time: 10k images of one user among several, embedded backends.

    python -m bench.search [--per-user 10000] [--users 5] [--queries 40]

Times (1) the core search calls the page makes and (2) whole reruns of the Search page through
Streamlit's AppTest (sidebar, query, result grid with thumbnails), by stored image and by text.
The model (ViT-B-32, random weights: same compute as the real one) is loaded before timing.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import tempfile
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

from bench.common import peak_rss_mb, percentiles_ms, synthetic_payload, timer
from core import search
from core.auth import UserStore
from core.index import ImageRecord
from core.services import Services, open_services
from core.settings import load_settings

MODEL = "ViT-B-32:random"
WORDS = ["a dog on a beach", "red car", "mountain lake at dawn", "a bowl of fruit", "city street at night"]


def _thumbnails(count: int) -> list[bytes]:
    rng = np.random.default_rng(1)
    out = []
    for _ in range(count):
        image = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((256, 192))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=80)
        out.append(buffer.getvalue())
    return out


def populate(services: Services, users: list[str], per_user: int, dim: int) -> list[str]:
    """Synthetic clustered vectors for every user; thumbnails for the first (measured) user."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(100, dim)).astype(np.float32)
    thumbs = _thumbnails(16)
    target_ids: list[str] = []
    for u, user in enumerate(users):
        for start in range(0, per_user, 1000):
            size = min(1000, per_user - start)
            vectors = centres[rng.integers(0, len(centres), size)] + 0.6 * rng.normal(size=(size, dim))
            records = []
            for i in range(size):
                point = str(uuid.uuid4())
                payload = synthetic_payload(user, start + i, point, rng)
                records.append(ImageRecord(point, payload, vectors[i].astype(np.float32)))
                if u == 0:
                    services.store.put(payload["thumbnail_key"], thumbs[i % len(thumbs)], "image/jpeg")
                    target_ids.append(point)
            services.index.upsert(records)
    return target_ids


def core_timings(services: Services, user: str, ids: list[str], queries: int) -> None:
    rng = np.random.default_rng(2)
    by_image, by_text = [], []
    for q in range(queries):
        with timer() as t:
            search.by_image_id(services, user, ids[int(rng.integers(0, len(ids)))], limit=24)
        by_image.append(t[0])
        with timer() as t:
            search.by_text(services, user, f"{WORDS[q % len(WORDS)]} {q}", limit=24)
        by_text.append(t[0])
    for label, samples in (("stored image", by_image), ("text", by_text)):
        stats = percentiles_ms(samples)
        print(f"core search by {label}: p50 {stats['p50_ms']:.0f} ms, p95 {stats['p95_ms']:.0f} ms")


def page_timings(data_dir: Path, user: str, ids: list[str], queries: int) -> None:
    from streamlit.testing.v1 import AppTest

    logging.getLogger("streamlit").setLevel(logging.ERROR)

    UserStore(data_dir).add(user, "bench-password-1")
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app" / "main.py"), default_timeout=300)
    at.run()
    at.text_input[0].input(user)
    at.text_input[1].input("bench-password-1")
    next(b for b in at.button if b.label == "Sign in").click()
    at.run()
    at.switch_page("../pages/search.py")
    at.run()
    texts, images = [], []
    rng = np.random.default_rng(3)
    at.segmented_control(key="search_mode").set_value("Text")
    at.run()
    for q in range(queries):
        at.text_input(key="search_text").input(f"{WORDS[q % len(WORDS)]} {q}")
        with timer() as t:
            at.run()
        texts.append(t[0])
    at.segmented_control(key="search_mode").set_value("Stored image")
    at.run()
    for _ in range(queries):
        at.session_state["search_image_id"] = ids[int(rng.integers(0, len(ids)))]
        with timer() as t:
            at.run()
        images.append(t[0])
    assert "result(s)" in " ".join(m.value for m in at.markdown)
    for label, samples in (("stored image", images), ("text", texts)):
        stats = percentiles_ms(samples)
        print(f"search page rerun by {label}: p50 {stats['p50_ms']:.0f} ms, p95 {stats['p95_ms']:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-user", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=5)
    parser.add_argument("--queries", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        os.environ.update({"VAD_DATA_DIR": str(data_dir), "VAD_MODEL": MODEL, "VAD_DEVICE": "cpu"})
        services = open_services(load_settings())
        users = [f"user{i}" for i in range(args.users)]
        with timer() as t:
            ids = populate(services, users, args.per_user, services.embedder.dimension)
        print(f"{args.users} users x {args.per_user:,} images ({services.embedder.name}) loaded in {t[0]:.0f} s")
        core_timings(services, users[0], ids, args.queries)
        services.close()  # the app opens its own (cached) services on the same data dir
        page_timings(data_dir, users[0], ids, args.queries)
    print(f"peak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
