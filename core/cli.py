"""Command-line interface: ``python -m core ingest|info ...``.

Commands: ingest, info, doctor, repair, duplicates, anomalies, project, users.
Exit codes: 0 success, 1 some files were rejected (the others were stored), a doctor check
failed or repair left something, 2 usage or configuration error (also: the data disk is full).
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from core.embed import ModelLoadError
from core.index import VectorIndexError
from core.logs import configure_logging
from core.settings import SettingsError, load_settings, mask_url_credentials
from core.storage import StorageError, check_user
from core.telemetry import track

if TYPE_CHECKING:
    from core.ingest import Ingestor, IngestResult
    from core.services import Services

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments or configuration: reported in one line, exit code 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _configure_logging()
    action = " ".join(filter(None, [args.command, getattr(args, "users_command", None)]))
    user = getattr(args, "user", None) or getattr(args, "name", None)
    with track(action, page="cli", user=user) as event:
        try:
            code = int(args.handler(args))
        except (UsageError, SettingsError, ModelLoadError, VectorIndexError, StorageError, ValueError) as exc:
            print(f"error: {mask_url_credentials(str(exc))}", file=sys.stderr)
            code = EXIT_USAGE
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            code = 130
        event["exit_code"] = code
        if code:
            event["outcome"] = {EXIT_REJECTED: "partial", EXIT_USAGE: "refused"}.get(code, "interrupted")
    return code


def _configure_logging() -> None:
    """JSON (or text) logs on stderr; the CLI shows warnings and up unless VAD_LOG_LEVEL asks for more."""
    try:
        settings = load_settings()
    except SettingsError:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        return
    if "VAD_LOG_LEVEL" not in os.environ:
        settings = settings.model_copy(update={"log_level": "WARNING"})
    configure_logging(settings)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="Visual anomaly detection dashboard CLI.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ingest = commands.add_parser("ingest", help="store images (files, folders, .zip archives) for a user")
    ingest.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    ingest.add_argument("--user", required=True, help="owner of the images")
    ingest.add_argument("--json", action="store_true", help="print one JSON object per file as it is done (JSON Lines)")
    ingest.add_argument("--batch-size", type=_positive_int, default=None, help="images embedded per batch")
    ingest.add_argument(
        "--engine", choices=["local", "ray"], default="local", help="local: this machine's cores; ray: a Ray cluster"
    )
    ingest.add_argument("--ray-address", default=None, help="Ray cluster (default VAD_RAY_ADDRESS; none: start one)")
    ingest.set_defaults(handler=_ingest)

    info = commands.add_parser("info", help="configuration, model, backends and image counts per user")
    info.set_defaults(handler=_info)

    doctor = commands.add_parser("doctor", help="check settings, model, store, index and disk; exit 1 if any fails")
    doctor.add_argument("--format", choices=["text", "json"], default="text")
    doctor.add_argument("--versions", action="store_true", help="also list component versions")
    doctor.set_defaults(handler=_doctor)

    repair = commands.add_parser("repair", help="remove objects without a point, complete or remove broken points")
    repair.add_argument("--user", default=None, help="only this user's images (default: everyone's)")
    repair.add_argument("--dry-run", action="store_true", help="only list what would change; exit 1 if anything")
    repair.set_defaults(handler=_repair)

    duplicates = commands.add_parser("duplicates", help="duplicate clusters of a user's images")
    duplicates.add_argument("--user", required=True)
    duplicates.add_argument("--level", choices=["exact", "near", "semantic", "all"], default="all")
    duplicates.add_argument("--near-threshold", type=int, default=None, help="pHash bits (default VAD_PHASH_THRESHOLD)")
    duplicates.add_argument("--semantic-threshold", type=float, default=None, help="cosine (default: per model)")
    duplicates.add_argument("--format", choices=["json", "csv"], default="json")
    duplicates.set_defaults(handler=_duplicates)

    anomalies = commands.add_parser("anomalies", help="anomaly scores and quality issues of a user's images")
    anomalies.add_argument("--user", required=True)
    anomalies.add_argument("--method", choices=["multiscale", "knn", "lof", "iforest"], default="multiscale")
    anomalies.add_argument("--k", type=_positive_int, default=10, help="neighbours for knn and lof")
    anomalies.add_argument("--checks", action="store_true", help="include the image-quality checks")
    anomalies.add_argument("--top", type=_positive_int, default=None, help="only the N most anomalous")
    anomalies.add_argument("--groups", action="store_true", help="the rare groups (as the Anomalies page lists them)")
    anomalies.add_argument("--format", choices=["json", "csv"], default="json")
    anomalies.set_defaults(handler=_anomalies)

    project = commands.add_parser("project", help="write the Explorer's UMAP coordinates to a CSV file")
    project.add_argument("--user", required=True)
    project.add_argument("--dims", type=int, choices=[2, 3], default=2)
    project.add_argument("--out", required=True, type=Path, metavar="FILE.csv")
    project.add_argument("--neighbors", type=int, default=15, help="UMAP n_neighbors")
    project.add_argument("--min-dist", type=float, default=0.1, help="UMAP min_dist")
    project.add_argument("--seed", type=int, default=42)
    project.add_argument("--max-points", type=int, default=20_000, help="stratified sample above this")
    project.set_defaults(handler=_project)

    users = commands.add_parser("users", help="manage the app's users")
    user_commands = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = user_commands.add_parser("add", help="create a user (asks for the password)")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="give the admin role")
    add.add_argument("--email", default="")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add.set_defaults(handler=_users_add)
    passwd = user_commands.add_parser("passwd", help="set a user's password")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true")
    passwd.set_defaults(handler=_users_passwd)
    remove = user_commands.add_parser("remove", help="delete a user account (their images stay)")
    remove.add_argument("name")
    remove.set_defaults(handler=_users_remove)
    listing = user_commands.add_parser("list", help="list users and roles")
    listing.set_defaults(handler=_users_list)
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _open(**overrides: object):
    from core.services import open_services

    settings = load_settings(**overrides)
    services = open_services(settings)
    if services.embedder.notice:
        print(f"note: {services.embedder.notice}", file=sys.stderr)
    if services.embedder.random_weights:
        print(f"note: {services.embedder.name} has random weights: for tests and timing only", file=sys.stderr)
    return services


def _open_for_analysis():
    """Store and index for commands that embed nothing: the model is not loaded (see
    ``core.services.open_analysis_services``)."""
    from core.services import open_analysis_services

    return open_analysis_services(load_settings())


def _ingest(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from core.names import display_name
    from core.sources import items_from_paths

    check_user(args.user)
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}")
    items = list(items_from_paths(args.paths))
    overrides = {"batch_size": args.batch_size} if args.batch_size else {}
    services = _open(**overrides)

    def report(result: IngestResult) -> None:
        """One line per file as soon as its fate is known, so that a killed run leaves its report so far."""
        if args.json:
            print(json.dumps(result.to_dict()), flush=True)
        elif result.status == "rejected":
            print(f"rejected  {display_name(result.path)}: {result.reason}", flush=True)

    try:
        with ExitStack() as engine:
            ingestor = _ingestor(services, args, engine)
            with tqdm(total=len(items), unit="img", desc="ingest", file=sys.stderr, disable=None) as bar:

                def progress(done: int, total: int) -> None:
                    bar.update(done - bar.n)

                results = ingestor.ingest(items, args.user, progress=progress, on_result=report)
    finally:
        services.close()
    counts = Counter(r.status for r in results)
    summary = (
        f"{len(results)} files: {counts['stored']} stored, {counts['present']} already present, "
        f"{counts['rejected']} rejected"
    )
    if counts["skipped"]:
        summary += f", {counts['skipped']} skipped (hidden or system files)"
    if ingestor.stopped:
        unattempted = sum(1 for r in results if (r.reason or "").startswith("not attempted: "))
        summary += f" ({unattempted} not attempted)"
        print(f"stopped: {ingestor.stopped}", file=sys.stderr)
    print(summary, file=sys.stderr if args.json else sys.stdout)
    return EXIT_REJECTED if counts["rejected"] else EXIT_OK


def _ingestor(services: Services, args: argparse.Namespace, engine: ExitStack) -> Ingestor:
    """The ingestor of the chosen engine; a Ray connection is closed with ``engine``."""
    if args.engine == "local":
        return services.ingestor()
    from core.ray_engine import RayIngestor, connect

    try:
        cluster = engine.enter_context(connect(services.settings, args.ray_address))
    except ConnectionError as exc:
        raise UsageError(f"could not join the Ray cluster: {exc}") from None
    return RayIngestor.for_services(services, cluster)


def _repair(args: argparse.Namespace) -> int:
    from core.journal import recover, repair_orphans, scan_orphans

    if args.user:
        check_user(args.user)
    services = _open()
    try:
        if not args.dry_run:
            settled = recover(services.journal_dir, services.store, services.index)
            if settled.completed or settled.removed:
                print(f"journal: {settled.completed} interrupted images kept, {settled.removed} removed")
        scan = scan_orphans(services.store, services.index, services.journal_dir, args.user)
        print(
            f"{scan.objects} objects, {scan.points} points: {len(scan.orphan_keys)} objects without a point, "
            f"{len(scan.broken_points)} points with a missing object"
        )
        for key in scan.orphan_keys:
            print(f"orphan    {key}")
        for user, image_id, _ in scan.broken_points:
            print(f"broken    {user}/{image_id}")
        if args.dry_run:
            return EXIT_OK if scan.clean else EXIT_REJECTED
        fixed = repair_orphans(services.store, services.index, scan)
    finally:
        services.close()
    print(
        f"repair: removed {fixed.removed_objects} objects; {fixed.completed_points} points completed, "
        f"{fixed.removed_points} removed"
    )
    for problem in fixed.failed:
        print(f"failed    {problem}", file=sys.stderr)
    return EXIT_REJECTED if fixed.failed else EXIT_OK


def _duplicates(args: argparse.Namespace) -> int:
    from core.duplicates import LEVELS, clusters_frame, duplicate_report

    check_user(args.user)
    levels = LEVELS if args.level == "all" else (args.level,)
    services = _open_for_analysis()
    try:
        clusters = duplicate_report(services, args.user, levels, args.near_threshold, args.semantic_threshold)
        if args.format == "csv":
            from core.collection import load_collection

            frame = clusters_frame(clusters, load_collection(services, args.user).images)
            sys.stdout.write(frame.to_csv(index=False))
        else:
            print(json.dumps([c.to_dict() for c in clusters], indent=2))
    finally:
        services.close()
    return EXIT_OK


def _anomalies(args: argparse.Namespace) -> int:
    from core.anomalies import anomaly_report
    from core.cache import ResultCache

    check_user(args.user)
    services = _open_for_analysis()
    try:
        cache = ResultCache(services.settings.data_dir / "cache")
        report = anomaly_report(services, args.user, args.method, args.k, args.checks, cache=cache)
    finally:
        services.close()
    if args.groups:
        from core.anomaly_groups import rare_groups

        report = rare_groups(report).drop(columns=["thumbnail_keys"])
        if args.format == "csv":
            report = report.assign(**{c: report[c].map(";".join) for c in ("ids", "filenames", "reviews")})
    report = report.drop(columns=["thumbnail_key"], errors="ignore")
    if args.top:
        report = report.head(args.top)
    if args.format == "csv":
        sys.stdout.write(report.to_csv(index=False))
    else:
        sys.stdout.write(report.to_json(orient="records", indent=2) + "\n")
    return EXIT_OK


def _project(args: argparse.Namespace) -> int:
    from core.explorer import ProjectionParams, write_projection

    check_user(args.user)
    params = ProjectionParams(
        dims=args.dims, n_neighbors=args.neighbors, min_dist=args.min_dist, seed=args.seed, max_points=args.max_points
    )
    services = _open_for_analysis()
    try:
        rows = write_projection(services, args.user, str(args.out), params)
    finally:
        services.close()
    print(f"wrote {rows} rows to {args.out}")
    return EXIT_OK


def _user_store():
    from core.auth import UserStore

    return UserStore(load_settings().data_dir)


def _read_password(from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != first:
        raise UsageError("the passwords do not match")
    return first


def _users_add(args: argparse.Namespace) -> int:
    store = _user_store()
    store.add(args.name, _read_password(args.password_stdin), admin=args.admin, email=args.email)
    print(f"created {'admin' if args.admin else 'user'} {args.name}")
    return EXIT_OK


def _users_passwd(args: argparse.Namespace) -> int:
    _user_store().set_password(args.name, _read_password(args.password_stdin))
    print(f"password of {args.name} changed")
    return EXIT_OK


def _users_remove(args: argparse.Namespace) -> int:
    _user_store().remove(args.name)
    print(f"removed user {args.name}; their images stay until deleted")
    return EXIT_OK


def _users_list(args: argparse.Namespace) -> int:
    for user in _user_store().list_users():
        print(f"{user['username']:<24} {','.join(user['roles']):<8} {user['email']}")
    return EXIT_OK


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


def _doctor(args: argparse.Namespace) -> int:
    from core.doctor import failed, results_frame, run_checks
    from core.status import versions

    results = run_checks()
    bad = failed(results)
    if args.format == "json":
        report = {
            "ok": not bad,
            "failed": bad,
            "checks": [{**vars(r), "seconds": round(r.seconds, 3)} for r in results],
        }
        if args.versions:
            report["versions"] = dict(versions().itertuples(index=False, name=None))
        print(json.dumps(report, indent=2))
    else:
        for row in results_frame(results).itertuples(index=False):
            print(f"{row.status.upper():<5} {row.check:<9} {row.summary}")
        if args.versions:
            print()
            for component, version in versions().itertuples(index=False, name=None):
                print(f"  {component:<24} {version}")
        print()
        print(f"doctor: {len(bad)} failed: {', '.join(bad)}" if bad else "doctor: all checks passed")
    return EXIT_REJECTED if bad else EXIT_OK
