"""The first analysis of a collection stored before ``content_phash`` was recorded: the backfill.

    python -m bench.backfill [--images 3000]

Writes ``--images`` synthetic images (the latency bench's collection: WebP originals and
thumbnails, quality stats) whose payloads lack ``content_phash`` and ``content_size``, as an older
version stored them, then times ``load_collection`` twice: the first load measures each image's
picture inside any border from its original and writes the new fields to the index; the second
reads them from the vector cache.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import ui_latency
from bench.common import synthetic_payload
from core.collection import load_collection
from core.services import open_services
from core.settings import load_settings

USER = "older"


def older_payload(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """The benches' synthetic payload without the fields older versions did not record."""
    payload = synthetic_payload(*args, **kwargs)
    payload.pop("content_phash", None)
    payload.pop("content_size", None)
    return payload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=3000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
        services = open_services(load_settings(data_dir=Path(tmp), model=ui_latency.MODEL, device="cpu"))
        try:
            ui_latency.populate(services, USER, args.images, make_payload=older_payload)
            started = time.perf_counter()
            collection = load_collection(services, USER)
            first = time.perf_counter() - started
            started = time.perf_counter()
            load_collection(services, USER)
            second = time.perf_counter() - started
        finally:
            services.close()
    hashed = int(collection.images["content_phash"].notna().sum())
    print(f"{args.images:,} older images: first load {first:.1f} s ({hashed:,} with a content pHash)")
    print(f"next load {second:.2f} s")


if __name__ == "__main__":
    main()
