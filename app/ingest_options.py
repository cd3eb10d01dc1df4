"""Upload options: where the uploaded files' dataset, split and label come from (``core.layouts``).

Call ``ingest_options()`` above the upload form (outside it, so that choosing a manifest shows its
uploader at once); pass what it returns to the ingest once ``accepts(options, files)`` said the
manifest matches the files (else it shows each bad row).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

from core.layouts import IngestOptions, ManifestError, apply_options, read_manifest
from core.names import display_name
from core.records import InvalidName
from core.sources import items_from_upload

MANIFEST = "manifest"
SOURCES = {
    "none": "Keep the files as they are",
    "split/label": "SPLIT/LABEL/file (e.g. train/cat/1.jpg)",
    "label": "LABEL/file (e.g. cat/1.jpg)",
    MANIFEST: "A manifest: path,split,label per file (CSV or JSON)",
}


def ingest_options(key: str = "upload") -> IngestOptions | None:
    """The dataset and layout widgets (and the manifest's, when chosen); the options, or None
    (with the reason shown) when the dataset name or the manifest is not usable, or a manifest
    was chosen but not given."""
    with st.expander("Dataset, splits and labels (for .zip archives)", icon=":material/folder_data:"):
        left, right = st.columns([1, 2])
        dataset = left.text_input(
            "Dataset", placeholder="default", key=f"{key}_dataset", help="Every uploaded file goes into this dataset."
        )
        source = right.radio(
            "Splits and labels from",
            list(SOURCES),
            format_func=SOURCES.__getitem__,
            key=f"{key}_layout",
            help="With a layout, a folder above SPLIT (or LABEL) names the dataset: DATASET/SPLIT/LABEL/file.",
        )
        manifest_file = None
        if source == MANIFEST:
            manifest_file = st.file_uploader("Manifest", type=["csv", "json"], key=f"{key}_manifest")
    try:
        if source == MANIFEST and manifest_file is None:
            st.info("Add the manifest file first, or choose another source.", icon=":material/info:")
            return None
        manifest = read_manifest(manifest_file.name, manifest_file.getvalue()) if manifest_file else None
        layout = "none" if source == MANIFEST else source
        return IngestOptions(layout=layout, dataset=dataset or None, manifest=manifest)
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
