"""Wire settings into the parts: embedder, object store, vector index and ingestor."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.embed import Embedder, default_batch_size, load_embedder
from core.images import ImageLimits
from core.index import VectorIndex, open_index
from core.ingest import Ingestor
from core.prepare import PreparePool
from core.settings import Settings, SettingsError, load_settings
from core.storage import ObjectStore, open_store


@dataclass
class Services:
    """Everything a page or a command needs, built once per process."""

    settings: Settings
    embedder: Embedder
    store: ObjectStore
    index: VectorIndex
    #: Ingest's worker processes: they start on the first large ingest and live until close().
    prepare_pool: PreparePool = field(default_factory=PreparePool)

    @property
    def limits(self) -> ImageLimits:
        return ImageLimits(max_pixels=self.settings.max_pixels, max_bytes=self.settings.max_file_bytes)

    @property
    def batch_size(self) -> int:
        return self.settings.batch_size or default_batch_size(self.embedder.device)

    def ingestor(self) -> Ingestor:
        return Ingestor(
            self.store, self.index, self.embedder, self.limits, batch_size=self.batch_size, pool=self.prepare_pool
        )

    def close(self) -> None:
        self.prepare_pool.close()
        self.index.close()


def open_services(settings: Settings | None = None) -> Services:
    """Load the model, then open the store and the model's collection in the index."""
    settings = settings or load_settings()
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingsError(f"VAD_DATA_DIR: cannot use {settings.data_dir} as the data folder ({exc})") from exc
    embedder = load_embedder(settings.model, settings.model_weights, settings.device, settings.precision)
    store = open_store(settings)
    index = open_index(settings, embedder.name, embedder.dimension)
    pool = PreparePool(settings.ingest_workers)
    return Services(settings=settings, embedder=embedder, store=store, index=index, prepare_pool=pool)
