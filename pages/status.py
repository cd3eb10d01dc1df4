"""Status page (admins only): the doctor's checks on the running app, versions, counts, settings."""

from __future__ import annotations

import streamlit as st

from app import ui
from core.doctor import CHECKS, failed
from core.status import status_report

ICONS = {
    "ok": ":green[:material/check_circle:]",
    "warn": ":orange[:material/warning:]",
    "fail": ":red[:material/cancel:]",
    "skip": ":gray[:material/block:]",
}

ui.require_admin("see the service status")

settings = ui.settings()
services = ui.services()
users = ui.user_store(str(settings.data_dir))

st.title("Status")
st.caption(
    "The same checks as `python -m core doctor`, run on this app's own model, store and index. "
    "Operators: see the README's deployment section."
)
if st.button("Run the checks again", icon=":material/refresh:"):
    st.rerun()
with st.spinner("Checking the model, the store, the index and the disks…"):
    report = status_report(services, users)

bad = failed(report.checks)
warnings = [r.name for r in report.checks if r.status == "warn"]
if bad:
    st.error(f"{len(bad)} check(s) failed: {', '.join(bad)}. Details below.", icon=":material/error:")
elif warnings:
    st.warning(f"Running, with warnings: {', '.join(warnings)}.", icon=":material/warning:")
else:
    st.success("All checks passed.", icon=":material/check_circle:")

for result in report.checks:
    with st.container(border=True):
        head, took = st.columns([6, 1], vertical_alignment="center")
        title = CHECKS[result.name].title if result.name in CHECKS else result.name
        head.markdown(f"{ICONS[result.status]} **{title}** · {ui.escape(result.summary)}")
        took.caption(f"{result.seconds * 1000:,.0f} ms")
        if result.details:
            with st.expander("Details"):
                st.table({"": list(result.details), "value": list(result.details.values())})

images = int(report.counts["images"].sum()) if not report.counts.empty else 0
accounts = int((report.counts["role"] != "(no account)").sum()) if not report.counts.empty else 0
metric_cols = st.columns(4)
metric_cols[0].metric("Accounts", f"{accounts:,}")
metric_cols[1].metric("Images", f"{images:,}")
metric_cols[2].metric(
    "Metrics endpoint",
    f":{settings.metrics_port}/metrics" if settings.metrics_port else "off",
    help="Prometheus metrics on a side port: set VAD_METRICS_PORT to turn them on.",
)
metric_cols[3].metric(
    "Logs", f"{settings.log_format}, {settings.log_level.lower()}", help="VAD_LOG_FORMAT and VAD_LOG_LEVEL"
)

left, right = st.columns(2, gap="large")
with left:
    st.markdown("##### Images per user")
    if report.counts.empty:
        st.caption("No accounts or images yet.")
    else:
        st.dataframe(report.counts, hide_index=True, width="stretch")
with right:
    st.markdown("##### Versions")
    st.dataframe(report.versions, hide_index=True, width="stretch")

with st.expander("Configuration (secrets masked)", icon=":material/settings:"):
    described = settings.describe()
    st.dataframe({"variable": list(described), "value": list(described.values())}, hide_index=True, width="stretch")
