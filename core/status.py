"""The admin Status page's logic: health checks on the live services, versions and counts."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from importlib import metadata

import pandas as pd

from core.auth import UserStore
from core.doctor import CheckResult, DoctorContext, run_checks, server_version
from core.services import Services

#: Distributions whose versions the Status page and ``doctor --versions`` show.
PACKAGES = (
    "torch",
    "torchvision",
    "open_clip_torch",
    "qdrant-client",
    "qdrant-edge-py",
    "minio",
    "streamlit",
    "PyJWT",
    "umap-learn",
    "scikit-learn",
    "faiss-cpu",
    "prometheus-client",
)


@dataclass(frozen=True)
class StatusReport:
    checks: list[CheckResult]
    versions: pd.DataFrame
    counts: pd.DataFrame


def versions(services: Services | None = None) -> pd.DataFrame:
    """Component and library versions, one row each."""
    rows = [("python", platform.python_version())]
    for name in PACKAGES:
        try:
            rows.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            rows.append((name, "not installed"))
    if services is not None:
        rows.append(("qdrant server", server_version(services.index) or "n/a (embedded)"))
    return pd.DataFrame(rows, columns=["component", "version"])


def counts(services: Services, users: UserStore) -> pd.DataFrame:
    """Per account: role and number of images (accounts without images and images without accounts too)."""
    by_user = services.index.counts_by_user()
    accounts = users.users
    names = sorted(set(accounts) | set(by_user))
    rows = [
        {
            "user": name,
            "role": ", ".join(accounts[name].get("roles") or ["user"]) if name in accounts else "(no account)",
            "images": by_user.get(name, 0),
        }
        for name in names
    ]
    return pd.DataFrame(rows, columns=["user", "role", "images"])


def status_report(services: Services, users: UserStore) -> StatusReport:
    """Everything the Status page shows, computed on the app's own (already open) services."""
    checks = run_checks(DoctorContext(services=services))
    return StatusReport(checks=checks, versions=versions(services), counts=counts(services, users))
