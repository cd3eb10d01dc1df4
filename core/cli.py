"""Command-line interface: ``python -m core ingest|info ...``.

Commands: ingest, info, doctor, repair, delete, trash, labels, occurrences, duplicates, anomalies, leaks, mislabels,
project, users.
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
from core.settings import Settings, SettingsError, load_settings, mask_url_credentials
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

    ingest = commands.add_parser(
        "ingest", help="store images (files, folders, .zip archives, s3://bucket/prefix) for a user"
    )
    ingest.add_argument("paths", nargs="+", metavar="PATH")
    ingest.add_argument("--user", required=True, help="owner of the images")
    ingest.add_argument("--json", action="store_true", help="print one JSON object per file as it is done (JSON Lines)")
    ingest.add_argument("--batch-size", type=_positive_int, default=None, help="images embedded per batch")
    ingest.add_argument(
        "--engine", choices=["local", "ray"], default="local", help="local: this machine's cores; ray: a Ray cluster"
    )
    ingest.add_argument("--ray-address", default=None, help="Ray cluster (default VAD_RAY_ADDRESS; none: start one)")
    _dataset_arguments(ingest)
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

    delete = commands.add_parser("delete", help="move a user's images to the trash (restorable for VAD_TRASH_DAYS)")
    delete.add_argument("ids", nargs="+", metavar="ID", help="image ids (as in duplicates, anomalies)")
    delete.add_argument("--user", required=True)
    delete.add_argument("--permanent", action="store_true", help="remove them for good instead (no undo)")
    delete.set_defaults(handler=_delete)

    trash = commands.add_parser("trash", help="list, restore or empty a user's trash")
    trash.add_argument("action", choices=["list", "restore", "empty", "purge"], help="purge: only what has expired")
    trash.add_argument("ids", nargs="*", metavar="ID", help="restore or empty only these (default: all)")
    trash.add_argument("--user", required=True)
    trash.add_argument("--batch", default=None, help="restore: only this delete (its batch id)")
    trash.set_defaults(handler=_trash)

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

    leaks = commands.add_parser("leaks", help="copies of images across splits (exact, near, semantic)")
    leaks.add_argument("--user", required=True)
    leaks.add_argument("--dataset", default=None, help="only this dataset (default: all)")
    leaks.add_argument("--splits", type=_split_names, default=None, help="only between these, e.g. train,test")
    leaks.add_argument("--format", choices=["json", "csv"], default="json")
    leaks.set_defaults(handler=_leaks)

    mislabels = commands.add_parser("mislabels", help="labelled images whose neighbours carry another label")
    mislabels.add_argument("--user", required=True)
    mislabels.add_argument("--dataset", default=None, help="only this dataset (default: all)")
    mislabels.add_argument("--k", type=_positive_int, default=20, help="labelled neighbours that vote")
    mislabels.add_argument("--all", action="store_true", help="every labelled image, not only the flagged ones")
    mislabels.add_argument("--format", choices=["json", "csv"], default="json")
    mislabels.set_defaults(handler=_mislabels)

    project = commands.add_parser("project", help="write the Explorer's UMAP coordinates to a CSV file")
    project.add_argument("--user", required=True)
    project.add_argument("--dims", type=int, choices=[2, 3], default=2)
    project.add_argument("--out", required=True, type=Path, metavar="FILE.csv")
    project.add_argument("--neighbors", type=int, default=15, help="UMAP n_neighbors")
    project.add_argument("--min-dist", type=float, default=0.1, help="UMAP min_dist")
    project.add_argument("--seed", type=int, default=42)
    project.add_argument("--max-points", type=int, default=20_000, help="stratified sample above this")
    project.set_defaults(handler=_project)

    _label_commands(commands)

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

    from core.inputs import S3InputError, items_from_inputs, missing_inputs

    check_user(args.user)
    missing = missing_inputs(args.paths)
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}")
    overrides = {"batch_size": args.batch_size} if args.batch_size else {}
    settings = load_settings(**overrides)
    try:
        items = _labelled(list(items_from_inputs(args.paths, settings)), args)  # a bad manifest stops here
    except S3InputError as exc:
        raise UsageError(str(exc)) from None
    handed = _hand_over_ingest(settings, args)
    if handed is not None:
        return handed
    services = _open(**overrides)

    def report(result: IngestResult) -> None:
        _print_result(result.to_dict(), args.json)

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


def _dataset_arguments(ingest: argparse.ArgumentParser) -> None:
    from core.layouts import LAYOUTS

    ingest.add_argument(
        "--layout",
        choices=list(LAYOUTS),
        default="none",
        help="read splits and labels from the folders: [DATASET/]SPLIT/LABEL/file or [DATASET/]LABEL/file",
    )
    ingest.add_argument("--manifest", type=Path, default=None, help="CSV or JSON with path,split,label per file")
    ingest.add_argument("--dataset", default=None, help="dataset of every file (default: its folder, else 'default')")


def _labelled(items: list, args: argparse.Namespace) -> list:
    """``items`` with the dataset, split and label of ``--layout``/``--manifest``/``--dataset``
    (checked before the model loads: a bad manifest stores nothing)."""
    from core.layouts import IngestOptions, apply_options, read_manifest

    if args.manifest is not None and args.layout != "none":
        raise UsageError("give either --layout or --manifest, not both")
    manifest = None
    if args.manifest is not None:
        try:
            manifest = read_manifest(args.manifest.name, args.manifest.read_bytes())
        except OSError as exc:
            raise UsageError(f"cannot read the manifest {args.manifest}: {exc.strerror}") from None
    return apply_options(items, IngestOptions(args.layout, args.dataset, manifest))


def _label_commands(commands: argparse._SubParsersAction) -> None:
    labels = commands.add_parser("labels", help="set the label, split or dataset of many images")
    actions = labels.add_subparsers(dest="labels_command", required=True, metavar="ACTION")
    setting = actions.add_parser("set", help="set the label, split or dataset of the chosen images")
    setting.add_argument("--user", required=True)
    chosen = setting.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--ids", nargs="+", metavar="ID", help="image ids")
    chosen.add_argument(
        "--filter",
        action="append",
        metavar="KEY=VALUE",
        help="images with dataset=, split= or label= (repeat to combine; split= alone: no split)",
    )
    setting.add_argument("--label", default=None, help="new label ('' clears it)")
    setting.add_argument("--split", default=None, help="new split of every occurrence ('' clears it)")
    setting.add_argument("--dataset", default=None, help="new dataset of every occurrence")
    setting.set_defaults(handler=_labels_set)

    found = commands.add_parser("occurrences", help="list or remove the files an image was stored under")
    found_actions = found.add_subparsers(dest="occurrences_command", required=True, metavar="ACTION")
    listing = found_actions.add_parser("list", help="every occurrence of one image")
    listing.add_argument("--user", required=True)
    listing.add_argument("--id", required=True, dest="image_id")
    listing.set_defaults(handler=_occurrences_list)
    removal = found_actions.add_parser("remove", help="remove occurrences; an image left without any is deleted")
    removal.add_argument("--user", required=True)
    removal.add_argument("--id", required=True, dest="image_id")
    which = removal.add_mutually_exclusive_group(required=True)
    which.add_argument("--path", help="the occurrence's path (with --dataset and --split when it has them)")
    which.add_argument("--all", action="store_true", help="every occurrence: deletes the image")
    removal.add_argument("--dataset", default=None)
    removal.add_argument("--split", default=None)
    removal.set_defaults(handler=_occurrences_remove)


def _labels_set(args: argparse.Namespace) -> int:
    from core import record_edits
    from core.index import vector_cache_root
    from core.record_filters import apply_filter, parse_filter
    from core.vectors import cache_of

    check_user(args.user)
    if args.label is None and args.split is None and args.dataset is None:
        raise UsageError("nothing to set: give --label, --split or --dataset")
    record_filter = parse_filter(args.filter) if args.filter else None
    services = _open_for_analysis()
    try:
        ids = list(args.ids or [])
        if record_filter is not None:
            rows = cache_of(services.index, vector_cache_root(services.settings)).load(args.user).rows
            ids = list(apply_filter(rows, record_filter)["id"]) if len(rows) else []
        found = len(services.index.retrieve(args.user, ids)) if ids else 0
        changes = []
        if found and args.label is not None:
            record_edits.set_label(services.index, args.user, ids, args.label or None)
            changes.append(f"label {args.label or '(none)'}")
        if found and args.split is not None:
            record_edits.set_split(services.index, args.user, ids, args.split or None)
            changes.append(f"split {args.split or '(none)'}")
        if found and args.dataset is not None:
            record_edits.set_dataset(services.index, args.user, ids, args.dataset or None)
            changes.append(f"dataset {args.dataset or 'default'}")
    finally:
        services.close()
    if not found:
        print("no image matches: nothing changed")
        return EXIT_REJECTED
    print(f"{found} images: {', '.join(changes)}")
    return EXIT_OK


def _occurrences_list(args: argparse.Namespace) -> int:
    from core.records import occurrences

    check_user(args.user)
    services = _open_for_analysis()
    try:
        records = services.index.retrieve(args.user, [args.image_id])
    finally:
        services.close()
    if not records:
        raise UsageError(f"no image {args.image_id} for {args.user}")
    print(json.dumps(occurrences(records[0].payload), indent=2))
    return EXIT_OK


def _occurrences_remove(args: argparse.Namespace) -> int:
    from core.record_edits import remove_occurrences
    from core.trash import open_trash

    check_user(args.user)
    keys = None if args.all else [(args.path, args.dataset, args.split or None)]
    services = _open_for_analysis()
    try:
        outcome = remove_occurrences(open_trash(services), args.user, args.image_id, keys)
    finally:
        services.close()
    if not outcome.removed:
        print("no such occurrence: nothing removed")
        return EXIT_REJECTED
    deleted = " and the image (its last occurrence)" if outcome.deleted_images else ""
    print(f"removed {outcome.removed} occurrence(s){deleted}")
    return EXIT_OK


def _print_result(row: dict, as_json: bool) -> None:
    """One line per file as soon as its fate is known, so that a killed run leaves its report so far."""
    from core.names import display_name

    if as_json:
        print(json.dumps(row), flush=True)
    elif row["status"] == "rejected":
        print(f"rejected  {display_name(row['path'])}: {row['reason']}", flush=True)


def _hand_over_ingest(settings: Settings, args: argparse.Namespace) -> int | None:
    """When a running app holds the embedded index, hand the ingest to its job runner through the
    data folder and follow it (same lines, summary and exit codes); None when the index is free.

    Decided before the model loads: a holder that takes no jobs is reported at once."""
    from core.index.lock import lock_holder
    from core.jobs import runner_pids

    if settings.qdrant_url:
        return None  # a server index is shared: this process ingests itself
    holder = lock_holder(settings.data_dir / "index")
    if holder is None:
        return None
    pid, command = holder.get("pid", "?"), holder.get("command") or "unknown command"
    if pid not in runner_pids(settings.data_dir):
        raise UsageError(
            f"the embedded vector index in {settings.data_dir / 'index'} is in use by process {pid} ({command}), "
            "which takes no jobs. Stop that process, or run against a Qdrant server (VAD_QDRANT_URL) so that "
            "several processes can share the index."
        )
    if args.engine != "local":
        raise UsageError(f"process {pid} ({command}) holds the embedded index: stop it to ingest with --engine ray")
    print(f"note: the running app (process {pid}) holds the index; the ingest runs there", file=sys.stderr)
    return _follow_ingest(settings, args, pid)


def _follow_ingest(settings: Settings, args: argparse.Namespace, pid: int) -> int:
    from tqdm import tqdm

    from core.jobs import follow, request_cancel, request_job
    from core.s3_source import is_s3_url

    paths = [p if is_s3_url(p) else str(Path(p).resolve()) for p in args.paths]
    labels = list(args.paths)  # results are named as this process would name them
    manifest = str(args.manifest.resolve()) if args.manifest is not None else None
    job_id = request_job(
        settings.data_dir,
        "ingest",
        args.user,
        paths=paths,
        labels=labels,
        layout=args.layout,
        dataset=args.dataset,
        manifest=manifest,
    )
    counts: Counter[str] = Counter()
    job = None
    try:
        with tqdm(unit="img", desc="ingest", file=sys.stderr, disable=None) as bar:
            for job, rows in follow(settings.data_dir, args.user, job_id):
                for row in rows:
                    counts[row["status"]] += 1
                    _print_result(row, args.json)
                if job is not None:
                    bar.total = job.total
                    bar.update(job.done - bar.n)
    except TimeoutError as exc:
        raise UsageError(f"process {pid} holds the embedded index but did not take the ingest: {exc}") from None
    except KeyboardInterrupt:
        request_cancel(settings.data_dir, args.user, job_id)
        print(f"asked the app to cancel the ingest (job {job_id})", file=sys.stderr)
        raise
    assert job is not None
    if job.status == "failed":
        raise UsageError(f"the app could not run the ingest: {job.error}")
    total = sum(counts.values())
    summary = (
        f"{total} files: {counts['stored']} stored, {counts['present']} already present, {counts['rejected']} rejected"
    )
    if counts["skipped"]:
        summary += f", {counts['skipped']} skipped (hidden or system files)"
    if job.status in ("cancelled", "interrupted"):
        print(f"stopped: the ingest was {job.status} in the app ({job.detail})", file=sys.stderr)
    print(summary, file=sys.stderr if args.json else sys.stdout)
    if job.status == "interrupted":
        return EXIT_REJECTED
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
    from core.trash import held_keys

    if args.user:
        check_user(args.user)
    services = _open()
    try:
        if not args.dry_run:
            settled = recover(services.journal_dir, services.store, services.index)
            if settled.completed or settled.removed:
                print(f"journal: {settled.completed} interrupted images kept, {settled.removed} removed")
        held = held_keys(services.settings.data_dir, args.user)
        scan = scan_orphans(services.store, services.index, services.journal_dir, args.user, held)
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


def _delete(args: argparse.Namespace) -> int:
    from core.trash import open_trash

    check_user(args.user)
    services = _open_for_analysis()
    try:
        trash = open_trash(services)
        batch = trash.move(args.user, args.ids)
        if batch is None:
            print(f"no image of {args.user} among the {len(args.ids)} id(s)", file=sys.stderr)
            return EXIT_REJECTED
        if args.permanent:
            removed = trash.purge(args.user, args.ids)
            print(f"deleted {removed} image(s) of {args.user} for good")
        else:
            print(f"moved {batch.count} image(s) of {args.user} to the trash (batch {batch.id})")
            print(f"undo: python -m core trash restore --user {args.user} --batch {batch.id}")
    finally:
        services.close()
    return EXIT_OK if batch.count == len(set(args.ids)) else EXIT_REJECTED


def _trash(args: argparse.Namespace) -> int:
    from core.trash import open_trash

    check_user(args.user)
    services = _open_for_analysis()
    try:
        trash = open_trash(services)
        ids = args.ids or None
        if args.action == "list":
            for item in trash.items(args.user):
                expires = item.expires_at(trash.days).isoformat(timespec="seconds")
                print(json.dumps({"id": item.id, "filename": item.filename, "batch": item.batch, "expires": expires}))
        elif args.action == "restore":
            done = trash.restore(args.user, ids, args.batch)
            print(f"restored {len(done.restored)} image(s) of {args.user}")
            for image_id, why in done.skipped.items():
                print(f"skipped   {image_id}: {why}", file=sys.stderr)
            return EXIT_REJECTED if done.skipped else EXIT_OK
        elif args.action == "empty":
            print(f"removed {trash.purge(args.user, ids)} image(s) of {args.user} for good")
        else:
            print(f"removed {trash.purge_expired(args.user)} expired image(s) of {args.user} for good")
    finally:
        services.close()
    return EXIT_OK


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


def _split_names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if len(names) < 2:
        raise argparse.ArgumentTypeError("name at least two splits, e.g. train,test")
    return names


def _leaks(args: argparse.Namespace) -> int:
    from core.leaks import leak_report

    check_user(args.user)
    services = _open_for_analysis()
    try:
        report = leak_report(services, args.user, args.dataset, args.splits)
    finally:
        services.close()
    sys.stdout.write(report.to_csv() if args.format == "csv" else report.to_json() + "\n")
    return EXIT_OK


def _mislabels(args: argparse.Namespace) -> int:
    from core.mislabels import mislabel_report

    check_user(args.user)
    services = _open_for_analysis()
    try:
        report = mislabel_report(services, args.user, args.k, args.dataset)
    finally:
        services.close()
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    sys.stdout.write(report.to_csv(flagged=not args.all) if args.format == "csv" else report.to_json(not args.all))
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
