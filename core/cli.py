"""Command-line interface: ``python -m core ingest|info ...``.

Exit codes: 0 success, 1 some files were rejected (the others were stored), 2 usage or
configuration error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from core.embed import ModelLoadError
from core.index import VectorIndexError
from core.settings import SettingsError, load_settings
from core.storage import StorageError, check_user

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments or configuration: reported in one line, exit code 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args))
    except (UsageError, SettingsError, ModelLoadError, VectorIndexError, StorageError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="Visual anomaly detection dashboard CLI.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ingest = commands.add_parser("ingest", help="store images (files, folders, .zip archives) for a user")
    ingest.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    ingest.add_argument("--user", required=True, help="owner of the images")
    ingest.add_argument("--json", action="store_true", help="print the per-file report as JSON")
    ingest.add_argument("--batch-size", type=int, default=None, help="images embedded per batch")
    ingest.set_defaults(handler=_ingest)

    info = commands.add_parser("info", help="configuration, model, backends and image counts per user")
    info.set_defaults(handler=_info)
    return parser


def _open(**overrides: object):
    from core.services import open_services

    settings = load_settings(**overrides)
    services = open_services(settings)
    if services.embedder.notice:
        print(f"note: {services.embedder.notice}", file=sys.stderr)
    if services.embedder.random_weights:
        print(f"note: {services.embedder.name} has random weights: for tests and timing only", file=sys.stderr)
    return services


def _ingest(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from core.sources import items_from_paths

    check_user(args.user)
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}")
    items = list(items_from_paths(args.paths))
    overrides = {"batch_size": args.batch_size} if args.batch_size else {}
    services = _open(**overrides)
    try:
        with tqdm(total=len(items), unit="img", desc="ingest", file=sys.stderr, disable=None) as bar:

            def progress(done: int, total: int) -> None:
                bar.update(done - bar.n)

            results = services.ingestor().ingest(items, args.user, progress=progress)
    finally:
        services.close()
    counts = Counter(r.status for r in results)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        for r in results:
            if r.status == "rejected":
                print(f"rejected  {r.path}: {r.reason}")
    print(
        f"{len(results)} files: {counts['stored']} stored, {counts['present']} already present, "
        f"{counts['rejected']} rejected",
        file=sys.stderr if args.json else sys.stdout,
    )
    return EXIT_REJECTED if counts["rejected"] else EXIT_OK


def _info(args: argparse.Namespace) -> int:
    services = _open()
    try:
        rows = [
            ("Model", services.embedder.describe()),
            ("Storage", services.store.describe()),
            ("Index", services.index.describe()),
        ]
        counts = services.index.counts_by_user()
    finally:
        services.close()
    print("Configuration")
    for name, value in services.settings.describe().items():
        print(f"  {name:<22} {value}")
    print()
    for label, value in rows:
        print(f"{label:<9} {value}")
    if services.embedder.notice:
        print(f"{'':<9} note: {services.embedder.notice}")
    print()
    print(f"Images per user ({sum(counts.values())} in all)")
    for user, count in sorted(counts.items()):
        print(f"  {user:<22} {count}")
    if not counts:
        print("  (none yet: python -m core ingest PATH --user NAME)")
    return EXIT_OK
