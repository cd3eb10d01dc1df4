"""Plain-text tables that are also Markdown (pipes and a dash row), for pasting into docs."""

from __future__ import annotations

from collections.abc import Sequence


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned, text left-aligned."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(_is_number(row[i]) for row in cells[1:]) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        padded = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric, strict=True)]
        return "| " + " | ".join(padded) + " |"

    rule = "| " + " | ".join(("-" * (w - 1) + ":") if num else "-" * w for w, num in zip(widths, numeric, strict=True))
    return "\n".join([line(cells[0]), rule + " |", *(line(row) for row in cells[1:])])


def pct(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:.1f} %"  # NaN: nothing to measure


def _is_number(text: str) -> bool:
    stripped = text.replace(",", "").replace("%", "").replace(" s", "").replace("n/a", "0").strip()
    try:
        float(stripped)
    except ValueError:
        return False
    return True
