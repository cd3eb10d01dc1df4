"""Embedded vector index at scale: upserts/s, user-filtered top-10 latency, reopen time.

python -m bench.index [--points 100000] [--dim 512] [--users 5]
"""

from __future__ import annotations

import argparse
import tempfile
import uuid
from pathlib import Path

import numpy as np

from bench.common import peak_rss_mb, percentiles_ms, timer
from core.index.base import ImageRecord
from core.index.edge import EdgeIndex


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--users", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    # Clustered vectors look more like real embeddings than uniform noise.
    centres = rng.normal(size=(200, args.dim)).astype(np.float32)
    users = [f"user{i}" for i in range(args.users)]

    with tempfile.TemporaryDirectory() as root:
        index = EdgeIndex(Path(root), "bench", args.dim)
        with timer() as t_upsert:
            for start in range(0, args.points, args.batch):
                size = min(args.batch, args.points - start)
                vectors = centres[rng.integers(0, len(centres), size)] + 0.5 * rng.normal(size=(size, args.dim))
                records = [
                    ImageRecord(
                        str(uuid.uuid4()),
                        {"user": users[(start + i) % args.users], "filename": f"{start + i}.jpg", "tags": []},
                        vectors[i].astype(np.float32),
                    )
                    for i in range(size)
                ]
                index.upsert(records)
        print(f"upsert: {args.points / t_upsert[0]:,.0f} points/s ({args.points:,} x {args.dim}-d)")

        queries = rng.normal(size=(args.queries, args.dim)).astype(np.float32)
        latencies = []
        for i, query in enumerate(queries):
            with timer() as t:
                hits = index.search(users[i % args.users], query, limit=10)
            latencies.append(t[0])
        assert len(hits) == 10
        stats = percentiles_ms(latencies)
        print(f"user-filtered top-10 search: p50 {stats['p50_ms']:.1f} ms, p95 {stats['p95_ms']:.1f} ms")
        index.close()

        with timer() as t_reopen:
            index = EdgeIndex(Path(root), "bench", args.dim)
            index.search(users[0], queries[0], limit=10)
        print(f"reopen + first search: {t_reopen[0]:.2f} s ({index.count():,} points)")
        index.close()
    print(f"peak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
