"""Click latency in a real browser (issue 15.2): p95 click-to-updated-content on the review pages,
and the first visit of each page after sign-in, with a 10,000-image collection.

    python -m bench.ui_latency [--images 10000] [--repeats 10] [--screenshots DIR] [--json PATH]

The collection is written directly through the project's store and index (no model run): small
WebP thumbnails (and the same bytes as originals) from a few textured and dark templates, their
quality stats, clustered random vectors with planted duplicate pairs (same pHash, cosine about
0.99) and planted outliers, so every page has work to show. The analyses are computed once in a
warm-up browser session (as an earlier visit would have cached them); a fresh session then signs
in and times each page's first visit, then each action several times.

A timing runs from the click (or key press) in the page, seen by a capturing listener, to the end
of the Streamlit run it caused (``data-test-script-state`` back to not running, no stale
element left), both read from the page's own clock. Elements are found by visible labels, keys
(Streamlit's ``st-key-*`` classes) or test ids, never by position; an action whose element a
page no longer has is reported as "not found", not as a failure of the bench.

Targets (issue 15): p95 <= 1 s for review buttons, a checkbox, next page and a filter change;
first visit of a page after sign-in <= 3 s; 50 flagged images reviewed by key in the viewer
(Anomalies, N: mark normal and show the next) in under a minute, each timed to the next image's
pixels on screen. Timings on a shared machine are upper bounds.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.common import synthetic_payload
from bench.projection import CHROMIUM, CHROMIUM_ARGS, load_note, streamlit_app

MODEL = "tiny:random"
USER = "latency"
PASSWORD = "bench-password-1"
CLICK_TARGET_S = 1.0
VISIT_TARGET_S = 3.0
ACTION_TIMEOUT_MS = 120_000
WARM_UP_TIMEOUT_MS = 300_000
DUPLICATE_PAIRS = 100
OUTLIERS = 40
DARK_SHARE = 0.01

# Records when the user acts (capturing listeners) and each change of the app's run state.
OBSERVER_JS = """
window.__vad = {actedAt: null, runs: []};
const acted = () => { window.__vad.actedAt = performance.now(); };
document.addEventListener('pointerdown', acted, true);
document.addEventListener('keydown', acted, true);
const watch = () => new MutationObserver(changes => {
  for (const change of changes) {
    window.__vad.runs.push({state: change.target.getAttribute('data-test-script-state'), at: performance.now()});
  }
}).observe(document.body, {subtree: true, attributes: true, attributeFilter: ['data-test-script-state']});
if (document.body) { watch(); } else { document.addEventListener('DOMContentLoaded', watch); }
"""
# No run in flight and no stale element left on the page.
_IDLE = """const app = document.querySelector('[data-testid="stApp"]');
  const idle = !!app && app.getAttribute('data-test-script-state') === 'notRunning';
  return idle && !document.querySelector('[data-stale="true"]');"""
IDLE_JS = "() => {\n  " + _IDLE + "\n}"
# A run started after the user acted, and the page is idle again.
RUN_DONE_JS = (
    """() => {
  const v = window.__vad;
  if (v.actedAt === null) return false;
  const runs = v.runs.filter(r => r.at >= v.actedAt);
  if (!runs.some(r => r.state === 'running')) return false;
  """
    + _IDLE
    + "\n}"
)
#: Runs the server reported finished, per page (``count_finished_runs``).
FINISHED_RUNS: dict[int, int] = {}
ELAPSED_JS = "() => (performance.now() - window.__vad.actedAt) / 1000"
RESET_JS = "() => { window.__vad.actedAt = null; window.__vad.runs = []; }"
# The viewer shows an image once its pixels are loaded (``data-loaded`` names the shown image); its
# stage lives in the component's shadow root.
_STAGE_JS = """const stage = () => {
  for (const host of document.querySelectorAll('[role="dialog"] *')) {
    const found = host.shadowRoot && host.shadowRoot.querySelector('.stage');
    if (found) return found;
  }
  return null;
};"""
SHOWN_JS = (
    "() => {" + _STAGE_JS + " const s = stage();"
    " return !!s && !!s.dataset.imageId && s.dataset.loaded === s.dataset.imageId; }"
)
NEXT_SHOWN_JS = (
    "(before) => {" + _STAGE_JS + " const s = stage();"
    " return !!s && !!s.dataset.imageId && s.dataset.imageId !== before && s.dataset.loaded === s.dataset.imageId; }"
)


# --- the collection ---------------------------------------------------------------------------


def templates() -> list[tuple[bytes, dict[str, float]]]:
    """Small WebP images and their quality stats: textured ones, and one dark (flagged) one."""
    from core.quality import image_stats

    rng = np.random.default_rng(3)
    made = []
    for number in range(12):
        pixels = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        if number == 0:
            pixels = (pixels * 0.05).astype(np.uint8)  # too dark
        image = Image.fromarray(pixels).resize((128, 96), Image.Resampling.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, format="WEBP", quality=80)
        made.append((buffer.getvalue(), image_stats(Image.open(io.BytesIO(buffer.getvalue())))))
    return made


def populate(
    services: Any,
    user: str,
    count: int,
    seed: int = 0,
    labelled: bool = False,
    make_payload: Callable[..., dict[str, Any]] = synthetic_payload,
) -> None:
    """``count`` images written through the store and the index, with planted problems;
    ``labelled``: each also gets a split (80 % train, 20 % test) and a label (its cluster's);
    ``make_payload``: as ``bench.common.synthetic_payload`` (e.g. one that leaves fields out)."""
    from core.embed import normalise
    from core.index import ImageRecord

    rng = np.random.default_rng(seed)
    dimension = services.index.dimension
    centres = rng.normal(size=(40, dimension)).astype(np.float32)
    groups = rng.integers(0, 40, count)
    vectors = normalise(centres[groups] + 0.8 * rng.normal(size=(count, dimension)))
    pairs = rng.choice(count, size=(DUPLICATE_PAIRS, 2), replace=False)
    vectors[pairs[:, 1]] = normalise(vectors[pairs[:, 0]] + 0.02 * rng.normal(size=(DUPLICATE_PAIRS, dimension)))
    outliers = rng.choice(np.setdiff1d(np.arange(count), pairs.ravel()), size=OUTLIERS, replace=False)
    vectors[outliers] = normalise(rng.normal(size=(OUTLIERS, dimension)) * 3)
    made = templates()
    phashes: dict[int, str] = {}
    records = []
    for i in range(count):
        point = str(uuid.uuid4())
        data, stats = made[0] if rng.random() < DARK_SHARE else made[1 + i % (len(made) - 1)]
        payload = make_payload(user, i, point, rng, quality=stats)
        payload["filename"] = f"{user}_{i:05d}.webp"
        payload["original_key"] = payload["original_key"].removesuffix(".jpg") + ".webp"
        payload["thumbnail_key"] = payload["thumbnail_key"].removesuffix(".jpg") + ".webp"
        payload.update(format="WEBP", width=128, height=96, bytes=len(data), content_size=[128, 96])
        services.store.put(payload["thumbnail_key"], data, "image/webp")
        services.store.put(payload["original_key"], data, "image/webp")
        if labelled:
            split = "test" if i % 5 == 0 else "train"
            payload.update(datasets=["default"], splits=[split], label=f"class {groups[i] % 8}")
        phashes[i] = payload["phash"]
        records.append(ImageRecord(point, payload, vectors[i]))
    for first, second in pairs:  # the copies also share a pHash: near duplicates too
        records[second].payload["phash"] = records[second].payload["content_phash"] = phashes[first]
    for start in range(0, count, 1000):
        services.index.upsert(records[start : start + 1000])


# --- the browser ------------------------------------------------------------------------------


@dataclass
class Action:
    """One thing a reviewer does on a page; ``find`` returns the element to click (or None)."""

    page: str
    kind: str  # review button | checkbox | next page | filter change
    name: str
    find: Callable[[Any], Any]
    then: Callable[[Any], None] | None = None  # for a filter typed into a box: the key press
    samples: list[float] = field(default_factory=list)
    note: str = ""


def first_visible(*locators: Any) -> Any:
    """The first of ``locators`` that matches a visible element (each tried in turn), or None."""
    for locator in locators:
        try:
            if locator.count() and locator.first.is_visible():
                return locator.first
        except Exception:  # a locator the page cannot parse any more: try the next
            continue
    return None


def in_popover(page: Any, opener: str, label: str) -> Any:
    """The checkbox labelled ``label``, opening the popover whose button starts with ``opener``
    first if the checkbox is hidden in it (opening a popover runs nothing on the server)."""
    box = first_visible(page.get_by_test_id("stCheckbox").filter(has_text=label))
    if box is None:
        button = first_visible(page.get_by_test_id("stPopover").get_by_role("button").filter(has_text=opener))
        if button is None:
            return None
        button.click()
        box = first_visible(page.get_by_test_id("stCheckbox").filter(has_text=label))
    return box


def quality_pill(page: Any) -> Any:
    """The second pill of the Anomalies page's quality checks, opening its tab first (a tab
    switch runs nothing on the server). Clicks choose and clear that check in turn."""
    pill = first_visible(page.locator("[class*='st-key-anom_check'] button").nth(1))
    if pill is None:
        tab = first_visible(page.get_by_role("tab", name="Quality problems"))
        if tab is None:
            return None
        tab.click()
        pill = first_visible(page.locator("[class*='st-key-anom_check'] button").nth(1))
    return pill


def step_up(page: Any, key: str) -> Any:
    """The + of the page number input ``key``, back on page 1 first when this is the last page
    (reviews and hidden clusters shorten the list while the bench runs)."""
    pager = page.locator(f"[class*='st-key-{key}']")
    button = first_visible(pager.locator("[data-testid='stNumberInputStepUp']"))
    if button is not None and button.is_disabled():
        box = pager.locator("input").first
        box.fill("1")
        box.press("Enter")
        page.wait_for_timeout(300)
        settle(page)
        button = first_visible(pager.locator("[data-testid='stNumberInputStepUp']"))
    return button


def actions() -> list[Action]:
    """What each review page offers, found by label, widget key or test id."""
    filters = iter(["latency_0", "latency_1"] * 50)

    def type_filter(page: Any) -> Any:
        box = first_visible(page.get_by_label("Filter by file name"), page.get_by_placeholder("e.g. beach, IMG_20"))
        if box is not None:
            box.fill(next(filters))
        return box

    return [
        Action(
            "Gallery",
            "checkbox",
            "select an image",
            lambda p: first_visible(
                p.locator("[class*='st-key-select_'] [data-testid='stCheckbox'] label"),
                p.locator("[class*='st-key-select_'] [data-testid='stCheckbox']"),
                p.locator("[class*='st-key-select_']"),
            ),
        ),
        Action(
            "Gallery",
            "next page",
            "Next",
            lambda p: first_visible(
                p.get_by_role("button", name="Next", exact=True), p.get_by_role("button", name="Next")
            ),
        ),
        Action("Gallery", "filter change", "file name filter", type_filter, then=lambda box: box.press("Enter")),
        Action(
            "Anomalies",
            "review button",
            "confirm (first card)",
            lambda p: first_visible(
                p.locator("[class*='st-key-anom_confirm_'] button"), p.get_by_role("button", name="Confirm")
            ),
        ),
        Action(
            "Anomalies",
            "review button",
            "mark normal (first card)",
            lambda p: first_visible(
                p.locator("[class*='st-key-anom_normal_'] button"), p.get_by_role("button", name="Mark as normal")
            ),
        ),
        Action(
            "Anomalies",
            "checkbox",
            "show reviewed images (toggle)",
            lambda p: first_visible(
                p.locator("[class*='st-key-anom_reviewed'] label"),
                p.locator("label").filter(has_text="Show reviewed images"),
            ),
        ),
        Action(
            "Anomalies",
            "next page",
            "page +1",
            lambda p: step_up(p, "anom_page") or first_visible(p.get_by_role("button", name="Next")),
        ),
        Action(
            "Anomalies",
            "filter change",
            "a quality 'Check' pill",
            lambda p: quality_pill(p),
        ),
        Action(
            "Duplicates",
            "review button",
            "Keep all (first cluster)",
            lambda p: first_visible(
                p.get_by_role("button", name="Keep all"), p.locator("[class*='st-key-dup_keep_'] button")
            ),
        ),
        Action(
            "Duplicates",
            "review button",
            "Not duplicates (first cluster)",
            lambda p: first_visible(
                p.get_by_role("button", name="Not duplicates"), p.locator("[class*='st-key-dup_not_'] button")
            ),
        ),
        Action(
            "Duplicates",
            "checkbox",
            "confirm the bulk delete (ticked and unticked, never submitted)",
            lambda p: in_popover(p, "Delete", "move them to the trash"),
        ),
        Action(
            "Duplicates",
            "next page",
            "page +1",
            lambda p: step_up(p, "dup_page") or first_visible(p.get_by_role("button", name="Next")),
        ),
        Action(
            "Duplicates",
            "filter change",
            "a 'Levels' pill",
            lambda p: first_visible(p.locator("[class*='st-key-dup_levels'] button").last),
        ),
    ]


def go_to(page: Any, name: str, timeout_ms: int = ACTION_TIMEOUT_MS) -> float:
    """Open ``name`` from the sidebar; seconds from the click to the end of its first run."""
    settle(page)  # a click while a run is in flight can be swallowed by it
    link = page.get_by_test_id("stSidebarNavItems").get_by_role("link", name=name)
    seconds = timed(page, link, timeout_ms=timeout_ms)
    print(f"  {name}: {seconds:.2f} s", flush=True)
    return seconds


def count_finished_runs(page: Any) -> None:
    """Count the runs the server reports finished on ``page``'s websocket: a run too short for the
    page ever to show it as running (choosing a check that flags nothing) still ends ``timed``."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    FINISHED_RUNS[id(page)] = 0

    def frame(payload: bytes | str) -> None:
        if isinstance(payload, bytes):
            message = ForwardMsg()
            with contextlib.suppress(Exception):  # not a ForwardMsg: not a run's end
                message.ParseFromString(payload)
                if message.WhichOneof("type") == "script_finished":
                    FINISHED_RUNS[id(page)] += 1

    page.on("websocket", lambda socket: socket.on("framereceived", frame))


def timed(
    page: Any, target: Any, then: Callable[[Any], None] | None = None, timeout_ms: int = ACTION_TIMEOUT_MS
) -> float:
    """Seconds from acting on ``target`` to the end of the run it caused: the page showed the run
    and is idle again, or the server finished a run since and the page is idle."""
    finished = FINISHED_RUNS.get(id(page))
    page.evaluate(RESET_JS)
    if then is None:
        target.click()
    else:
        then(target)
    deadline = time.monotonic() + timeout_ms / 1000
    while not page.evaluate(RUN_DONE_JS):
        if finished is not None and FINISHED_RUNS[id(page)] > finished and page.evaluate(IDLE_JS):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"no end of run within {timeout_ms / 1000:.0f} s")
        page.wait_for_timeout(20)
    return float(page.evaluate(ELAPSED_JS))


def sign_in(page: Any, url: str) -> float:
    page.goto(url)
    page.get_by_label("User name", exact=True).fill(USER)
    page.get_by_label("Password", exact=True).first.fill(PASSWORD)
    seconds = timed(page, page.get_by_role("button", name="Sign in"))
    page.get_by_role("heading", name="Gallery").wait_for()
    return seconds


def jobs_done(page: Any, timeout_s: float = WARM_UP_TIMEOUT_MS / 1000) -> None:
    """Wait until the sidebar's jobs panel shows no running job (the page's background analyses,
    e.g. the neighbour graph, are over) and the page's run that follows has ended."""
    deadline = time.monotonic() + timeout_s
    running = page.get_by_text(re.compile(r"Jobs · \d+ running"))
    while running.count() and time.monotonic() < deadline:
        page.wait_for_timeout(500)
    settle(page)


def settle(page: Any) -> None:
    """Wait until no run is in flight (after a page switch or an earlier action)."""
    page.wait_for_function(IDLE_JS, timeout=ACTION_TIMEOUT_MS)


PAGES = ["Gallery", "Anomalies", "Duplicates", "Explorer", "Search", "Upload"]


def snap(page: Any, folder: Path | None, name: str) -> None:
    """A full-page screenshot ``folder/name.png`` when screenshots were asked for."""
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=folder / f"{name}.png", full_page=True)


def measure(
    url: str, repeats: int, screenshots: Path | None, keyboard: int
) -> tuple[dict[str, float], list[Action], KeyboardReview]:
    from playwright.sync_api import sync_playwright

    visits: dict[str, float] = {}
    measured = actions()
    review = KeyboardReview(keyboard, note="not run")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        warm = browser.new_context(viewport={"width": 1440, "height": 900})
        warm.add_init_script(OBSERVER_JS)
        page = warm.new_page()
        count_finished_runs(page)
        page.set_default_timeout(ACTION_TIMEOUT_MS)
        sign_in(page, url)
        print("warm-up (computes and caches every analysis, as an earlier visit would):", flush=True)
        for name in PAGES[1:]:
            try:
                go_to(page, name, timeout_ms=WARM_UP_TIMEOUT_MS)
            except Exception as exc:  # say what the page showed, and warm up the rest
                print(f"  {name}: no end of run seen ({type(exc).__name__})", flush=True)
                snap(page, screenshots, f"warm-up-{name.lower()}")
            jobs_done(page)
        warm.close()

        context = browser.new_context(viewport={"width": 1440, "height": 900})
        context.add_init_script(OBSERVER_JS)
        page = context.new_page()
        count_finished_runs(page)
        page.set_default_timeout(ACTION_TIMEOUT_MS)
        print("first visits after sign-in:", flush=True)
        visits["Gallery (sign-in)"] = sign_in(page, url)
        for name in PAGES[1:]:
            try:
                visits[name] = go_to(page, name)
            except Exception as exc:  # record it and go on: one slow page must not hide the rest
                visits[name] = float("nan")
                print(f"  {name}: no end of run within {ACTION_TIMEOUT_MS / 1000:.0f} s ({type(exc).__name__})")
                snap(page, screenshots, f"timeout-{name.lower()}")
                state = page.evaluate("() => JSON.stringify(window.__vad.runs.slice(-5))")
                print(f"  last run states: {state}", flush=True)
        for name in ("Gallery", "Anomalies", "Duplicates"):
            go_to(page, name, timeout_ms=WARM_UP_TIMEOUT_MS)
            for action in (a for a in measured if a.page == name):
                run_action(page, action, repeats)
            if name == "Anomalies":  # from the first page of the list again: away and back resets it
                go_to(page, "Gallery")
                go_to(page, "Anomalies")
                review = review_with_keys(page, keyboard)
            snap(page, screenshots, f"latency-{name.lower()}")
        browser.close()
    return visits, measured, review


@dataclass
class KeyboardReview:
    """Reviewing flagged images one after another in the viewer, by key only (issue 15: 50 flagged
    images in under a minute)."""

    wanted: int
    samples: list[float] = field(default_factory=list)  # key press to the next image on screen
    total_s: float = float("nan")
    note: str = ""


def open_viewer_with(page: Any, action: str, tries: int = 40) -> bool:
    """Open the viewer from the first thumbnail whose list offers ``action`` (a page may show
    thumbnails without review actions first, e.g. the Anomalies page's rare groups)."""
    thumbnails = page.get_by_role("button", name="View image").filter(visible=True)
    for nth in range(min(tries, thumbnails.count())):
        settle(page)
        thumbnails.nth(nth).click()
        dialog = page.get_by_role("dialog")
        dialog.locator(".stage").wait_for()
        page.wait_for_function(SHOWN_JS, timeout=ACTION_TIMEOUT_MS)
        if dialog.get_by_role("button", name=action).count():
            return True
        page.keyboard.press("Escape")
        dialog.wait_for(state="detached")
    return False


def review_with_keys(page: Any, wanted: int, key: str = "n") -> KeyboardReview:
    """Open the viewer on the first thumbnail of the page and press ``key`` (Anomalies: N, mark
    normal, which moves on) ``wanted`` times; each timing ends when the next image is on screen."""
    review = KeyboardReview(wanted)
    if not open_viewer_with(page, "Normal"):
        review.note = "no thumbnail opens a viewer with a Normal action"
        return review
    stage = page.get_by_role("dialog").locator(".stage")
    started = time.perf_counter()
    for _ in range(wanted):
        before = stage.get_attribute("data-image-id")
        page.evaluate(RESET_JS)
        page.keyboard.press(key)
        try:
            page.wait_for_function(NEXT_SHOWN_JS, arg=before, timeout=ACTION_TIMEOUT_MS, polling=20)
        except Exception as exc:  # the last image of the list, or the page changed: say so
            review.note = f"stopped after {len(review.samples)}: {type(exc).__name__}"
            break
        review.samples.append(float(page.evaluate(ELAPSED_JS)))
    review.total_s = time.perf_counter() - started
    page.keyboard.press("Escape")
    page.get_by_role("dialog").wait_for(state="detached")
    settle(page)
    print(f"  viewer: {len(review.samples)} images reviewed by key in {review.total_s:.1f} s", flush=True)
    return review


def run_action(page: Any, action: Action, repeats: int) -> None:
    for _ in range(repeats):
        settle(page)
        target = action.find(page)
        if target is None:
            action.note = "not found on the page"
            return
        try:
            action.samples.append(timed(page, target, action.then))
            print(f"  {action.page} / {action.name}: {action.samples[-1]:.2f} s", flush=True)
        except Exception as exc:  # the page changed under the bench: say so, measure the rest
            action.note = f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
            return


# --- report -----------------------------------------------------------------------------------


def p95(samples: list[float]) -> float:
    return float(np.percentile(samples, 95)) if samples else float("nan")


def print_report(
    count: int, visits: dict[str, float], measured: list[Action], review: KeyboardReview, populate_s: float
) -> None:
    print(f"\n{count:,} images (populated in {populate_s:.0f} s) {load_note()}")
    print("\n| page | first visit after sign-in | target |\n| --- | ---: | --- |")
    for name, seconds in visits.items():
        if np.isnan(seconds):
            print(f"| {name} | > {ACTION_TIMEOUT_MS / 1000:.0f} s (no end of run seen) | **not met** |")
            continue
        verdict = "met" if seconds <= VISIT_TARGET_S else "**not met**"
        print(f"| {name} | {seconds:.2f} s | <= {VISIT_TARGET_S:.0f} s: {verdict} |")
    print("\n| page | action | kind | n | p50 | p95 | target (p95 <= 1 s) |")
    print("| --- | --- | --- | ---: | ---: | ---: | --- |")
    for action in measured:
        if not action.samples:
            print(f"| {action.page} | {action.name} | {action.kind} | 0 | | | {action.note} |")
            continue
        high = p95(action.samples)
        verdict = "met" if high <= CLICK_TARGET_S else "**not met**"
        note = f" ({action.note})" if action.note else ""
        median = float(np.median(action.samples))
        print(
            f"| {action.page} | {action.name} | {action.kind} | {len(action.samples)} | {median:.2f} s | "
            f"{high:.2f} s | {verdict}{note} |"
        )
    done = len(review.samples)
    if done:
        rate = review.total_s / done * review.wanted
        verdict = "met" if done == review.wanted and review.total_s <= 60 else "**not met**"
        print(
            f"\nViewer, Anomalies, key N (mark normal, next image) {done} times: {review.total_s:.1f} s in all "
            f"(p50 {np.median(review.samples):.2f} s, p95 {p95(review.samples):.2f} s per image; "
            f"{rate:.0f} s per {review.wanted}); target {review.wanted} in <= 60 s: {verdict}"
            + (f" ({review.note})" if review.note else "")
        )
    else:
        print(f"\nViewer keyboard review: nothing measured ({review.note})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=10, help="timings per action")
    parser.add_argument("--screenshots", type=Path, help="save a screenshot of each page here")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keyboard", type=int, default=50, help="flagged images reviewed by key in the viewer")
    args = parser.parse_args()
    logging.getLogger("streamlit").setLevel(logging.ERROR)

    from core.auth import UserStore
    from core.services import open_services
    from core.settings import load_settings

    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        data_dir = Path(tmp) / "data"
        started = time.perf_counter()
        services = open_services(load_settings(data_dir=data_dir, model=MODEL, device="cpu"))
        populate(services, USER, args.images)
        services.close()  # the app opens the same data folder
        populate_s = time.perf_counter() - started
        UserStore(data_dir).add(USER, PASSWORD)
        print(f"populated {args.images:,} images in {populate_s:.0f} s {load_note()}", flush=True)
        with streamlit_app(data_dir, Path(tmp) / "streamlit.log", model=MODEL) as (url, _):
            visits, measured, review = measure(url, args.repeats, args.screenshots, args.keyboard)
    print_report(args.images, visits, measured, review, populate_s)
    if args.json:
        figures = {
            "images": args.images,
            "load_average": os.getloadavg()[0],
            "first_visit_s": visits,
            "actions": [
                {"page": a.page, "action": a.name, "kind": a.kind, "samples_s": a.samples, "note": a.note}
                for a in measured
            ],
            "viewer_keyboard": {"samples_s": review.samples, "total_s": review.total_s, "note": review.note},
        }
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
