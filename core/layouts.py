"""Datasets, splits and labels for files being ingested: from their folder layout or a manifest.

Layouts name the folders above each file, counted from the file up, inside the folder or archive
being ingested:

- ``label``:        ``LABEL/file.jpg``, or ``DATASET/LABEL/file.jpg``
- ``split/label``:  ``SPLIT/LABEL/file.jpg``, or ``DATASET/SPLIT/LABEL/file.jpg``
- ``none``:         nothing is read from the folders (the default)

A file inside the folder or archive at another depth is rejected, naming the layout it should
follow. Files given on their own follow no layout. A manifest (CSV with a header, or a JSON list
of objects) has one row per file: ``path`` (inside the folder or archive), and any of ``split``,
``label``, ``dataset``. Every row is checked before anything is stored: one bad row (a missing
path, a path no input has, a repeated path, a bad name) refuses the whole ingest with a message per
row, so a manifest is never half-imported. ``dataset`` given with the options wins over the one
found in the folders or the manifest.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from core.records import InvalidName, clean_name
from core.sources import IngestItem, rejected_item

#: Layout name -> the folders it names above the file, outermost first.
LAYOUTS: dict[str, tuple[str, ...]] = {"none": (), "label": ("label",), "split/label": ("split", "label")}
MANIFEST_COLUMNS = ("path", "split", "label", "dataset")
#: Largest manifest read (bytes): a million rows of paths and names.
MAX_MANIFEST_BYTES = 256 * 1024 * 1024
#: Problems listed one by one in a ManifestError; the rest are counted.
MAX_LISTED = 50


class ManifestError(ValueError):
    """A manifest with bad rows (or that cannot be read): nothing is ingested. ``problems`` has one
    line per bad row."""

    def __init__(self, name: str, problems: Sequence[str]) -> None:
        self.name = name
        self.problems = list(problems)
        lines = [f"  {p}" for p in self.problems[:MAX_LISTED]]
        if len(self.problems) > MAX_LISTED:
            lines.append(f"  … and {len(self.problems) - MAX_LISTED} more")
        rows = "problem" if len(self.problems) == 1 else "problems"
        super().__init__(f"manifest {name}: {len(self.problems)} {rows}, nothing imported:\n" + "\n".join(lines))


@dataclass(frozen=True)
class ManifestRow:
    path: str
    where: str  # "line 3" or "entry 3", for messages
    dataset: str | None = None
    split: str | None = None
    label: str | None = None


@dataclass(frozen=True)
class Manifest:
    """A checked manifest: its rows by normalised path."""

    name: str
    rows: dict[str, ManifestRow]


@dataclass(frozen=True)
class IngestOptions:
    """Where the dataset, split and label of ingested files come from."""

    layout: str = "none"
    dataset: str | None = None
    manifest: Manifest | None = None

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown layout {self.layout!r}: one of {', '.join(LAYOUTS)}")
        if self.manifest is not None and self.layout != "none":
            raise ValueError("give either a layout or a manifest, not both")
        object.__setattr__(self, "dataset", clean_name(self.dataset, "dataset"))

    @property
    def changes_nothing(self) -> bool:
        return self.layout == "none" and self.manifest is None and self.dataset is None


def normalised(path: str) -> str:
    """A path as manifests and layouts compare it: ``/``-separated, without ``./`` parts."""
    return PurePosixPath(path.replace("\\", "/")).as_posix()


def layout_fields(relative: str, layout: str) -> dict[str, str | None] | str:
    """The dataset, split and label that ``layout`` reads from a path inside a folder or archive,
    or why the path does not follow it."""
    names = LAYOUTS[layout]
    folders = PurePosixPath(normalised(relative)).parts[:-1]
    if not names:
        return {}
    if len(folders) not in (len(names), len(names) + 1):
        shape = "/".join(n.upper() for n in names)
        return f"not in the {layout} layout: expected {shape}/FILE or DATASET/{shape}/FILE inside the folder or archive"
    found: dict[str, str | None] = dict(zip(("dataset", *names)[-len(folders) :], folders, strict=True))
    try:
        return {key: clean_name(value, f"{key} folder") for key, value in found.items()}
    except InvalidName as exc:
        return str(exc)


def apply_options(items: Iterable[IngestItem], options: IngestOptions | None) -> list[IngestItem]:
    """``items`` with the dataset, split and label the options give them; a file that does not
    follow the layout becomes a rejected item. ManifestError when a manifest row matches no item."""
    items = list(items)
    if options is None or options.changes_nothing:
        return items
    if options.manifest is not None:
        return _from_manifest(items, options.manifest, options.dataset)
    labelled = []
    for item in items:
        fields: dict[str, str | None] | str = {}
        if item.relative is not None:
            fields = layout_fields(item.relative, options.layout)
        if isinstance(fields, str):
            labelled.append(rejected_item(item.path, fields))
            continue
        if options.dataset:
            fields["dataset"] = options.dataset
        labelled.append(dataclasses.replace(item, **fields))
    return labelled


def _from_manifest(items: list[IngestItem], manifest: Manifest, dataset: str | None) -> list[IngestItem]:
    matched: set[str] = set()
    labelled = []
    for item in items:
        row = None
        for key in (item.relative, item.path):
            if key is not None and (row := manifest.rows.get(normalised(key))):
                break
        if row is None:
            labelled.append(dataclasses.replace(item, dataset=dataset) if dataset else item)
            continue
        matched.add(row.path)
        fields = {"dataset": dataset or row.dataset, "split": row.split, "label": row.label}
        labelled.append(dataclasses.replace(item, **fields))
    missing = [row for path, row in manifest.rows.items() if path not in matched]
    if missing:
        raise ManifestError(manifest.name, [f"{row.where}: no file at {row.path!r} in the input" for row in missing])
    return labelled


# --- reading manifests --------------------------------------------------------------------------


def read_manifest(name: str, data: bytes) -> Manifest:
    """A manifest from a CSV or JSON file's bytes (by extension; else JSON when it starts with
    ``[``); ManifestError naming every bad row."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(name, [f"larger than {MAX_MANIFEST_BYTES // 2**20} MB"])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(name, [f"not UTF-8 text ({exc})"]) from None
    is_json = name.lower().endswith(".json") or (not name.lower().endswith(".csv") and text.lstrip()[:1] == "[")
    entries = _json_entries(name, text) if is_json else _csv_entries(name, text)
    return _checked(name, entries)


def _csv_entries(name: str, text: str) -> list[tuple[str, Any]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [(column or "").strip().lower() for column in reader.fieldnames or []]
    if "path" not in header:
        raise ManifestError(name, ["no 'path' column in the header (expected path,split,label)"])
    reader.fieldnames = header
    entries = []
    try:
        for row in reader:
            if None in row:
                entries.append((f"line {reader.line_num}", "more values than columns in the header"))
            else:
                entries.append((f"line {reader.line_num}", row))
    except csv.Error as exc:
        raise ManifestError(name, [f"line {reader.line_num}: not valid CSV ({exc})"]) from None
    return entries


def _json_entries(name: str, text: str) -> list[tuple[str, Any]]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(name, [f"not valid JSON ({exc})"]) from None
    if not isinstance(value, list):
        raise ManifestError(name, ['expected a JSON list of objects: [{"path": ..., "split": ..., "label": ...}]'])
    return [(f"entry {number}", entry) for number, entry in enumerate(value, 1)]


def _checked(name: str, entries: list[tuple[str, Any]]) -> Manifest:
    rows: dict[str, ManifestRow] = {}
    problems: list[str] = []
    for where, entry in entries:
        row = _row(where, entry)
        if isinstance(row, str):
            problems.append(f"{where}: {row}")
        elif row.path in rows:
            problems.append(f"{where}: {row.path!r} is already on {rows[row.path].where}")
        else:
            rows[row.path] = row
    if problems:
        raise ManifestError(name, problems)
    if not rows:
        raise ManifestError(name, ["no rows"])
    return Manifest(name, rows)


def _row(where: str, entry: Any) -> ManifestRow | str:
    """One checked row, or why it is bad."""
    if isinstance(entry, str):
        return entry
    if not isinstance(entry, dict):
        return "not an object with a 'path'"
    raw = entry.get("path")
    if not isinstance(raw, str) or not raw.strip():
        return "no path"
    path = normalised(raw.strip())
    if path.startswith("/") or ".." in PurePosixPath(path).parts:
        return f"path {raw!r} must be relative, inside the folder or archive, without '..'"
    try:
        values = {key: clean_name(_scalar(entry.get(key), key), key) for key in MANIFEST_COLUMNS[1:]}
    except InvalidName as exc:
        return str(exc)
    return ManifestRow(path, where, **values)


def _scalar(value: Any, key: str) -> Any:
    if isinstance(value, dict | list):
        raise InvalidName(f"{key} must be a name, not {type(value).__name__}")
    return value
