"""Wire settings into the parts: embedder, object store, vector index and ingestor."""

from __future__ import annotations

from dataclasses import dataclass

from core.embed import Embedder, load_embedder
from core.images import ImageLimits
from core.index import VectorIndex, collection_name, open_index
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
    def model_name(self) -> str:
        """The name of the model whose collection is open."""
        return self.embedder.name

    @property
    def limits(self) -> ImageLimits:
        return ImageLimits(max_pixels=self.settings.max_pixels, max_bytes=self.settings.max_file_bytes)

    def ingestor(self) -> Ingestor:
        return Ingestor(self.store, self.index, self.embedder, self.limits, batch_size=self.settings.batch_size)

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


@dataclass
class AnalysisServices:
    """What the analyses need (store and the model's collection in the index), without the model.

    Duplicates, anomalies and projections embed nothing; opening this instead of ``Services``
    saves loading the embedding model (tens of seconds on a CPU).
    """

    settings: Settings
    store: ObjectStore
    index: VectorIndex
    model_name: str

    def close(self) -> None:
        self.index.close()


def open_analysis_services(settings: Settings | None = None) -> AnalysisServices | Services:
    """Open the store and the collection ``VAD_MODEL`` uses without loading the model.

    The collection is found by name in the index (names carry the model and dimension). When it
    can't be told without the model (a model named without its tag, or no collection yet), the
    model is loaded as usual.
    """
    settings = settings or load_settings()
    found = find_collection(settings)
    if found is None:
        return open_services(settings)
    model_name, dimension = found
    store = open_store(settings)
    index = open_index(settings, model_name, dimension)
    return AnalysisServices(settings=settings, store=store, index=index, model_name=model_name)


def find_collection(settings: Settings) -> tuple[str, int] | None:
    """(model name, dimension) of the existing collection ``settings.model`` stands for, if any."""
    spec = settings.model.strip()
    if spec.lower() == "auto":
        candidates = ["ViT-B-32:openai", "efficientnet-lite0"]  # what auto loads, in its order
    elif spec.lower() == "efficientnet-lite0" or ":" in spec:
        candidates = [spec.lower() if spec.lower() == "efficientnet-lite0" else spec]
    else:
        return None
    existing = _collection_names(settings)
    for name in candidates:
        prefix = collection_name(name, 0).removesuffix("0")
        for collection in existing:
            suffix = collection.removeprefix(prefix)
            if collection.startswith(prefix) and suffix.isdigit():
                return name, int(suffix)
    return None


def _collection_names(settings: Settings) -> list[str]:
    if settings.qdrant_url:
        if settings.qdrant_url == ":memory:":
            return []  # a fresh in-memory index each time: nothing to find
        from qdrant_client import QdrantClient

        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        client = QdrantClient(url=settings.qdrant_url, api_key=key, check_compatibility=False)
        try:
            return sorted(c.name for c in client.get_collections().collections)
        finally:
            client.close()
    root = settings.data_dir / "index"
    return sorted(p.name for p in root.glob("images_*") if (p / "edge_config.json").exists())
