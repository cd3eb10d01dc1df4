"""Wire settings into the parts: embedder, object store, vector index and ingestor."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.diskspace import DiskGuard
from core.embed import Embedder, load_embedder
from core.images import ImageLimits
from core.index import VectorIndex, open_index
from core.ingest import Ingestor
from core.settings import Settings, SettingsError, load_settings
from core.storage import ObjectStore, open_store


@dataclass
class Services:
    """Everything a page or a command needs, built once per process."""

    settings: Settings
    embedder: Embedder
    store: ObjectStore
    index: VectorIndex

    @property
    def limits(self) -> ImageLimits:
        return ImageLimits(max_pixels=self.settings.max_pixels, max_bytes=self.settings.max_file_bytes)

    @property
    def journal_dir(self) -> Path:
        """Where ingests journal what they are about to write (see core.journal)."""
        return self.settings.data_dir / "journal"

    def disk_guard(self) -> DiskGuard | None:
        """The free-space guard of the data folder, when objects or the index live there."""
        if self.store.kind == "local" or self.index.kind == "embedded":
            return DiskGuard(self.settings.data_dir, self.settings.min_free_bytes)
        return None

    def ingestor(self) -> Ingestor:
        return Ingestor(
            self.store,
            self.index,
            self.embedder,
            self.limits,
            batch_size=self.settings.batch_size,
            journal_dir=self.journal_dir,
            disk_guard=self.disk_guard(),
        )

    def close(self) -> None:
        self.index.close()


def open_services(settings: Settings | None = None) -> Services:
    """Load the model, then open the store and the model's collection in the index."""
    settings = settings or load_settings()
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingsError(f"VAD_DATA_DIR: cannot use {settings.data_dir} as the data folder ({exc})") from exc
    embedder = load_embedder(settings.model, settings.model_weights, settings.device)
    store = open_store(settings)
    index = open_index(settings, embedder.name, embedder.dimension)
    return Services(settings=settings, embedder=embedder, store=store, index=index)
