"""Wire settings into the parts: embedder, object store, vector index and ingestor."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.diskspace import DiskGuard
from core.embed import Embedder, default_batch_size, load_embedder
from core.images import ImageLimits
from core.index import VectorIndex, collection_name, open_index
from core.ingest import Ingestor
from core.prepare import PreparePool
from core.settings import Settings, SettingsError, check_data_dir, check_device, load_settings, mask_url_credentials
from core.storage import ObjectStore, StorageError, open_store

#: Seconds the start-up probes of S3 and Qdrant may take, so a wrong address fails before the model loads.
PROBE_TIMEOUT_S = 3


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
    def model_name(self) -> str:
        """The name of the model whose collection is open."""
        return self.embedder.name

    @property
    def limits(self) -> ImageLimits:
        return ImageLimits(max_pixels=self.settings.max_pixels, max_bytes=self.settings.max_file_bytes)

    @property
    def batch_size(self) -> int:
        return self.settings.batch_size or default_batch_size(self.embedder.device)

    @property
    def journal_dir(self) -> Path:
        """Where ingests journal what they are about to write (see core.journal)."""
        return self.settings.data_dir / "journal"

    def disk_guard(self) -> DiskGuard | None:
        """The free-space guard of the data folder, when objects or the index live there."""
        if self.store.kind == "local" or self.index.kind == "embedded":
            return DiskGuard(self.settings.data_dir, self.settings.min_free_bytes)
        return None

    def ingest_parts(self) -> dict[str, Any]:
        """What every ingest engine is built from: store, index, model, limits, batch, journal, disk."""
        return {
            "store": self.store,
            "index": self.index,
            "embedder": self.embedder,
            "limits": self.limits,
            "batch_size": self.batch_size,
            "journal_dir": self.journal_dir,
            "disk_guard": self.disk_guard(),
        }

    def ingestor(self) -> Ingestor:
        return Ingestor(**self.ingest_parts(), pool=self.prepare_pool)

    def close(self) -> None:
        self.prepare_pool.close()
        self.index.close()


def check_backends(settings: Settings, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Reach the S3 store and the Qdrant server with short limits; SettingsError naming the variable."""
    if settings.uses_s3:
        try:
            open_store(settings, timeout=timeout, retries=0)
        except StorageError as exc:
            raise SettingsError(f"VAD_S3_ENDPOINT={settings.s3_endpoint}: {exc}") from exc
    if settings.qdrant_url and settings.qdrant_url != ":memory:":
        _probe_qdrant(settings, timeout)


def _probe_qdrant(settings: Settings, timeout: float) -> None:
    from qdrant_client import QdrantClient
    from qdrant_client.http.exceptions import UnexpectedResponse

    assert settings.qdrant_url
    shown = mask_url_credentials(settings.qdrant_url)
    api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Api key is used with an insecure connection")
            client = QdrantClient(
                url=settings.qdrant_url, api_key=api_key, timeout=max(1, round(timeout)), check_compatibility=False
            )
        try:
            client.get_collections()
        finally:
            client.close()
    except UnexpectedResponse as exc:
        if exc.status_code in (401, 403):
            refused = f"VAD_QDRANT_URL={shown}: the server refused the API key (check VAD_QDRANT_API_KEY)"
            raise SettingsError(refused) from None
        raise SettingsError(f"VAD_QDRANT_URL={shown}: unexpected answer {exc.status_code}") from None
    except Exception as exc:  # connection refused, timeouts, TLS: all mean "not reachable"
        reason = mask_url_credentials(f"{type(exc).__name__}: {exc}")
        raise SettingsError(f"VAD_QDRANT_URL={shown}: could not reach Qdrant ({reason})") from None


def open_services(settings: Settings | None = None) -> Services:
    """Check the data folder, the device and the servers, then load the model and open the parts.

    The cheap checks come first, so a configuration error is reported in seconds, not after the
    model has loaded.
    """
    settings = settings or load_settings()
    check_data_dir(settings.data_dir)
    check_device(settings.device)
    check_backends(settings)
    embedder = load_embedder(settings.model, settings.model_weights, settings.device, settings.precision)
    store = open_store(settings)
    index = open_index(settings, embedder.name, embedder.dimension)
    pool = PreparePool(settings.ingest_workers)
    return Services(settings=settings, embedder=embedder, store=store, index=index, prepare_pool=pool)


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
    check_data_dir(settings.data_dir)
    check_backends(settings)
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
