"""Upload options: where the uploaded files' dataset, split and label come from (``core.layouts``).

Call ``ingest_options()`` inside the upload form; pass what it returns to the ingest, after
``accepts(options, files)`` said the manifest matches the files (else it shows each bad row).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

from core.layouts import IngestOptions, ManifestError, apply_options, read_manifest
from core.names import display_name
from core.records import InvalidName
from core.sources import items_from_upload

LAYOUT_LABELS = {
    "none": "No layout: keep the files as they are",
    "split/label": "SPLIT/LABEL/file (e.g. train/cat/1.jpg)",
    "label": "LABEL/file (e.g. cat/1.jpg)",
}


def ingest_options(key: str = "upload") -> IngestOptions | None:
    """The dataset, layout and manifest widgets; the options, or None (and the reason shown) when
    the dataset name or the manifest is not usable."""
    with st.expander("Dataset, splits and labels (for .zip archives)", icon=":material/folder_data:"):
        left, right = st.columns([1, 2])
        dataset = left.text_input(
            "Dataset", placeholder="default", key=f"{key}_dataset", help="Every uploaded file goes into this dataset."
        )
        layout = right.radio(
            "Folders inside the archive",
            list(LAYOUT_LABELS),
            format_func=LAYOUT_LABELS.__getitem__,
            key=f"{key}_layout",
            help="A folder above SPLIT (DATASET/SPLIT/LABEL/file) names the dataset.",
        )
        manifest_file = st.file_uploader(
            "…or a manifest (CSV or JSON: path,split,label per file)",
            type=["csv", "json"],
            key=f"{key}_manifest",
        )
    try:
        manifest = read_manifest(manifest_file.name, manifest_file.getvalue()) if manifest_file else None
        return IngestOptions(layout="none" if manifest else layout, dataset=dataset or None, manifest=manifest)
    except ManifestError as exc:
        _show(exc)
    except (InvalidName, ValueError) as exc:
        st.error(str(exc), icon=":material/error:")
    return None


def accepts(options: IngestOptions | None, files: Sequence[Any]) -> bool:
    """Whether the uploads can be ingested with ``options``: every manifest row names an uploaded
    file (else each bad row is shown and nothing is ingested)."""
    if options is None:
        return False
    if options.manifest is None:
        return True
    try:
        apply_options((i for f in files for i in items_from_upload(f.name, f.getvalue())), options)
    except ManifestError as exc:
        _show(exc)
        return False
    return True


def _show(error: ManifestError) -> None:
    st.error(
        f"The manifest {display_name(error.name)} has {len(error.problems)} problem(s); nothing was imported.",
        icon=":material/error:",
    )
    st.dataframe({"Problem": [display_name(p) for p in error.problems]}, hide_index=True, width="stretch")
