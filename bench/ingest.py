"""Ingest throughput: decode+hash, embedding, and end to end, with peak RSS.

    python -m bench.ingest ../shared/datasets/imagenet-sample/images [--model ViT-B-32:random] [--limit N]

Random weights are fine for timing (same compute as the real model).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.common import peak_rss_mb, timer
from core.embed import load_embedder
from core.hashing import phash_hex, sha256_hex
from core.images import decode, thumbnail_bytes
from core.services import open_services
from core.settings import load_settings
from core.sources import items_from_paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path)
    parser.add_argument("--model", default="ViT-B-32:random")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N files")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    items = list(items_from_paths([args.path]))[: args.limit]
    n = len(items)
    print(f"{n} files from {args.path}, model {args.model}")

    with tempfile.TemporaryDirectory() as data_dir:
        settings = load_settings(data_dir=data_dir, model=args.model, device="cpu", batch_size=args.batch_size)
        services = open_services(settings)
        with timer() as t_total:
            results = services.ingestor().ingest(items, "bench")
        stored = sum(r.status == "stored" for r in results)
        with timer() as t_again:
            again = services.ingestor().ingest(items, "bench")
        services.close()
    present = sum(r.status == "present" for r in again)
    print(f"end to end (store+embed+index): {n / t_total[0]:.1f} images/s ({stored} stored in {t_total[0]:.1f} s)")
    print(f"re-ingest of the same files: {n / t_again[0]:.1f} files/s ({present} reported present)")
    print(f"peak RSS after end to end: {peak_rss_mb():.0f} MB (model, index, pipeline)")

    with timer() as t_decode:
        decoded = []
        for item in items:
            data = item.read()
            sha256_hex(data)
            image = decode(data)
            phash_hex(image.image)
            thumbnail_bytes(image)
            decoded.append(image.image)
    print(f"decode+hash+thumbnail: {n / t_decode[0]:.1f} images/s (1 thread)")

    embedder = load_embedder(args.model, None, "cpu")  # cached: the one the pipeline used
    with timer() as t_embed:
        for start in range(0, n, args.batch_size):
            embedder.embed_images(decoded[start : start + args.batch_size])
    print(f"embedding ({embedder.name}): {n / t_embed[0]:.1f} images/s")
    del decoded
    print(f"peak RSS after the stage timings: {peak_rss_mb():.0f} MB (holds all decoded images)")


if __name__ == "__main__":
    main()
