"""Upload logic: ingest uploaded files, archives and imported folders, then warn about near-duplicates
of stored images.

In the app an upload runs as a background job (core.jobs): the files are first saved under the
data folder (streamed, so the job owes nothing to the page that received them), then ingested by
``ingest_job``, which reports each file's result to the job as soon as it is known. The same job
ingests an admin's import of a configured folder or S3 prefix, and paths handed over by
``python -m core ingest`` while the app holds the embedded index.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from core.ingest import IngestResult, ProgressCallback, ResultCallback, StageCallback, StageProgress
from core.inputs import items_from_inputs, missing_inputs
from core.jobs import JobContext, JobFunction
from core.layouts import IngestOptions, read_manifest
from core.names import name_problem
from core.services import Services
from core.settings import Settings
from core.sources import IngestItem, is_zip_name, items_from_paths, items_from_upload, rejected_item

#: Bytes copied at a time when an upload is saved to the data folder.
_COPY_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class NearDuplicate:
    """A newly stored image whose pHash is within the threshold of an image stored before."""

    new_id: str
    new_filename: str
    existing_id: str
    existing_filename: str
    distance: int


def ingest_items(
    services: Services,
    user: str,
    items: Sequence[IngestItem],
    progress: ProgressCallback | None = None,
    stages: StageCallback | None = None,
    on_result: ResultCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    options: IngestOptions | None = None,
) -> list[IngestResult]:
    """Ingest ``items`` through the services' pipeline (the same worker processes as the CLI);
    ``options``: their dataset, split and label (``core.layouts``)."""
    ingestor = services.ingestor()
    return ingestor.ingest(
        items, user, progress=progress, stages=stages, on_result=on_result, should_stop=should_stop, options=options
    )


def ingest_uploads(
    services: Services,
    user: str,
    files: Iterable[tuple[str, bytes]],
    progress: ProgressCallback | None = None,
    stages: StageCallback | None = None,
    options: IngestOptions | None = None,
) -> list[IngestResult]:
    """Ingest uploaded files (name, bytes) at once, in this thread; ``options``: their dataset,
    split and label (``core.layouts``)."""
    items: list[IngestItem] = [item for name, data in files for item in items_from_upload(name, data)]
    return ingest_items(services, user, items, progress=progress, stages=stages, options=options)


# --- uploads and imports as background jobs ----------------------------------------------------


@dataclass(frozen=True)
class SavedUpload:
    """An uploaded file saved under the data folder: the name it was uploaded with, where it is."""

    name: str
    path: Path


def save_uploads(folder: Path, files: Iterable[tuple[str, IO[bytes]]]) -> list[SavedUpload]:
    """Stream each (name, file object) to ``folder`` (a megabyte at a time); the name is kept aside,
    the file is saved under its number (and ``.zip`` for archives, which decides how it is read)."""
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    for number, (name, handle) in enumerate(files):
        path = folder / f"{number:06d}{'.zip' if is_zip_name(name) else '.upload'}"
        handle.seek(0)
        with path.open("wb") as out:
            shutil.copyfileobj(handle, out, _COPY_CHUNK)
        saved.append(SavedUpload(name, path))
    return saved


def items_from_saved(saved: Iterable[SavedUpload]) -> list[IngestItem]:
    """The items of saved uploads, named as uploaded (an archive's members as ``name/member``)."""
    items: list[IngestItem] = []
    for upload in saved:
        problem = name_problem(upload.name)
        if problem:
            items.append(rejected_item(upload.name, problem))
            continue
        prefix = str(upload.path)
        for item in items_from_paths([upload.path]):
            items.append(dataclasses.replace(item, path=upload.name + item.path[len(prefix) :]))
    return items


def ingest_job(
    services: Services,
    user: str,
    items: Callable[[], Sequence[IngestItem]],
    options: IngestOptions | None = None,
) -> JobFunction:
    """A job that ingests ``items()`` for ``user``: per-file results and progress go to the job as
    they are known, a cancel stops it after the current batch; then the near-duplicates of the new
    images are looked up (the summary's ``near``)."""

    def run(job: JobContext) -> dict[str, Any]:
        job.progress(0, None, "listing the files")
        listed = items()
        job.progress(0, len(listed), "reading")
        done = 0

        def on_result(result: IngestResult) -> None:
            nonlocal done
            done += 1
            job.result(result.to_dict(), result.status)
            job.progress(done)

        def stages(stage: StageProgress) -> None:
            job.progress(detail=f"{stage.read:,} read, {stage.prepared:,} decoded")

        results = ingest_items(
            services, user, listed, stages=stages, on_result=on_result, should_stop=job.cancelled, options=options
        )
        job.progress(len(results), detail="done")
        new_ids = [r.image_id for r in results if r.status == "stored" and r.image_id]
        near: list[NearDuplicate] = []
        if new_ids and not job.cancelled():
            job.progress(detail="looking for near-duplicates of your earlier images")
            near = near_duplicates_of_new(services, user, new_ids)
            job.progress(detail="done")
        return {"near": [dataclasses.asdict(n) for n in near]}

    return run


def import_source_problem(source: str, roots: Sequence[str]) -> str | None:
    """Why ``source`` (a folder or an ``s3://`` prefix) may not be imported, or None when it lies
    inside one of the configured ``roots`` (VAD_IMPORT_ROOTS)."""
    source = source.strip()
    if not roots:
        return "imports are off: no folders or S3 prefixes are configured (VAD_IMPORT_ROOTS)"
    if not source:
        return "enter a folder or an s3:// prefix"
    allowed = ", ".join(roots)
    if source.startswith("s3://"):
        if ".." in source.split("/"):
            return "an S3 prefix may not contain '..'"
        for root in roots:
            if root.startswith("s3://") and _under_prefix(source, root):
                return None
        return f"{source} is not inside an allowed import location ({allowed})"
    path = Path(source)
    if not path.is_absolute():
        return "give the folder's full path (starting with /)"
    resolved = path.resolve()
    for root in roots:
        if not root.startswith("s3://") and resolved.is_relative_to(Path(root).resolve()):
            if not resolved.exists():
                return f"no such file or folder: {source}"
            return None
    return f"{source} is not inside an allowed import location ({allowed})"


def _under_prefix(source: str, root: str) -> bool:
    root = root.rstrip("/")
    return source.rstrip("/") == root or source.startswith(root + "/")


def import_items(source: str, settings: Settings) -> list[IngestItem]:
    """Every item of an import source (a folder, a file, or an S3 prefix on the configured endpoint)."""
    return list(items_from_inputs([source], settings))


def _labelled_items(paths: Sequence[str], labels: Sequence[str], settings: Settings) -> list[IngestItem]:
    """The items of ``paths``, each named from its ``label`` (the path as the caller wrote it)."""
    items = []
    for path, label in zip(paths, labels, strict=True):
        for item in items_from_inputs([path], settings):
            shown = label + item.path[len(path) :] if item.path.startswith(path) else item.path
            items.append(dataclasses.replace(item, path=shown))
    return items


def request_options(request: Mapping[str, Any]) -> IngestOptions | None:
    """The layout, dataset and manifest (a file path) of an ingest request, as IngestOptions."""
    layout, dataset, manifest = request.get("layout") or "none", request.get("dataset"), request.get("manifest")
    if layout == "none" and not dataset and not manifest:
        return None
    parsed = None
    if manifest:
        path = Path(str(manifest))
        parsed = read_manifest(path.name, path.read_bytes())
    return IngestOptions(str(layout), dataset, parsed)


def ingest_request_handler(services: Services) -> Callable[[Mapping[str, Any]], tuple[str, JobFunction]]:
    """Builds the job of an ``ingest`` request from ``python -m core ingest`` (core.jobs inbox)."""

    def handle(request: Mapping[str, Any]) -> tuple[str, JobFunction]:
        paths = request.get("paths")
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            raise ValueError("an ingest request needs a list of paths")
        missing = missing_inputs(paths)
        if missing:
            raise ValueError(f"no such file or folder: {', '.join(missing)}")
        labels = request.get("labels")
        if not isinstance(labels, list) or len(labels) != len(paths) or not all(isinstance(x, str) for x in labels):
            labels = paths
        user = str(request["user"])
        title = f"Ingest of {len(paths)} path(s) from the command line"
        options = request_options(request)
        return title, ingest_job(services, user, lambda: _labelled_items(paths, labels, services.settings), options)

    return handle


def phash_matrix(hashes: Sequence[str]) -> np.ndarray:
    """Hex pHashes as uint64, for vectorised Hamming distances."""
    return np.array([int(h, 16) for h in hashes], dtype=np.uint64)


def near_duplicates_of_new(
    services: Services, user: str, new_ids: Sequence[str], threshold: int | None = None
) -> list[NearDuplicate]:
    """For each new image, the closest earlier image within ``threshold`` bits (one per new image)."""
    if not new_ids:
        return []
    threshold = services.settings.phash_threshold if threshold is None else threshold
    new_set = set(new_ids)
    new, old = [], []
    for record in services.index.scroll(user):
        (new if record.id in new_set else old).append(record)
    if not new or not old:
        return []
    old_hashes = phash_matrix([r.payload["phash"] for r in old])
    found = []
    for record in new:
        distances = np.bitwise_count(old_hashes ^ np.uint64(int(record.payload["phash"], 16)))
        best = int(np.argmin(distances))
        if distances[best] <= threshold:
            found.append(
                NearDuplicate(
                    record.id,
                    record.payload["filename"],
                    old[best].id,
                    old[best].payload["filename"],
                    int(distances[best]),
                )
            )
    return sorted(found, key=lambda d: (d.distance, d.new_filename))
