"""Peak memory of ingesting one file of an extreme shape or size, each in a fresh process.

Memory must be bounded by the limits, not by the shape of the image: a 1 x 65535 strip, a
100 MP image (exactly the default pixel limit) in 8-bit RGB and in 16-bit grey, an animation at
the limit, one far over it. Each file is ingested through the real Ingestor (local store,
embedded index, the tiny random CLIP) in a child process that first ingests a small ordinary
image, so that the model, index and allocator are warm, then restarts its peak-RSS counter; the
figure is the child's peak RSS (VmHWM) minus its RSS at that idle point (Linux /proc).

    .venv/bin/python -m bench.input_memory            # every class, one process each
    .venv/bin/python -m bench.input_memory --only strip-1x65535.png
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
#: The target: peak RSS of one ingest stays this far above the idle process at most.
BUDGET_MB = 1536


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _gradient(size: tuple[int, int], mode: str = "L") -> Image.Image:
    """A smooth ramp (compresses to almost nothing, decodes to the full size)."""
    return Image.linear_gradient("L").resize(size, Image.Resampling.BILINEAR).convert(mode)


def _tiff(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="TIFF", compression="tiff_adobe_deflate")
    return out.getvalue()


def _gray16(size: tuple[int, int]) -> Image.Image:
    width, height = size
    ramp = np.linspace(0, 65535, width, dtype=np.uint16)
    return Image.fromarray(np.broadcast_to(ramp, (height, width)).copy())


def _animation(frames: int, size: tuple[int, int]) -> bytes:
    images = [Image.new("P", size, i % 2) for i in range(frames)]
    for image in images:
        image.putpalette([0, 0, 0, 255, 255, 255])
    out = io.BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:], duration=40, optimize=False)
    return out.getvalue()


#: file name -> bytes builder. 100 MP is exactly the default limit, so those are accepted.
CLASSES: dict[str, Callable[[], bytes]] = {
    "strip-1x65535.png": lambda: _png(_gradient((1, 65535))),
    "strip-65535x1.png": lambda: _png(_gradient((65535, 1))),
    "strip-1x10000.png": lambda: _png(_gradient((1, 10000))),
    "strip-100000000x1.png": lambda: _png(Image.new("L", (100_000_000, 1), 90)),
    "rgb-100mp.png": lambda: _png(_gradient((10_000, 10_000), "RGB")),
    "gray16-100mp.png": lambda: _png(_gray16((10_000, 10_000))),
    "palette-alpha-100mp.png": lambda: _palette_alpha(),
    "float-100mp.tif": lambda: _tiff(_gradient((10_000, 10_000), "F")),
    "animation-10x3162x3162.gif": lambda: _animation(10, (3162, 3162)),
    "animation-200x1000x1000.gif": lambda: _animation(200, (1000, 1000)),
}


def _palette_alpha() -> bytes:
    out = io.BytesIO()
    _gradient((10_000, 10_000)).convert("P").save(out, format="PNG", transparency=0)
    return out.getvalue()


#: The classes the test suite measures (the others take longer to build or to decode).
TEST_CLASSES = ["strip-1x65535.png", "strip-65535x1.png", "strip-100000000x1.png", "gray16-100mp.png"]


def write_inputs(folder: Path, names: list[str] | None = None) -> list[Path]:
    """Build the named classes (all by default) as files in ``folder``."""
    paths = []
    for name in names or list(CLASSES):
        path = folder / name
        path.write_bytes(CLASSES[name]())
        paths.append(path)
    return paths


def measure(paths: list[Path], timeout: float = 600) -> list[dict]:
    """Ingest ``paths`` one after the other in one fresh process; one dict per file with its
    result and ``above_idle_mb``, the process's peak RSS since it was idle minus its idle RSS."""
    command = [sys.executable, "-m", "bench.input_memory", "--child", *map(str, paths)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the measuring process failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def _child(paths: list[Path]) -> None:
    from core.embed import load_embedder
    from core.index.edge import EdgeIndex
    from core.ingest import Ingestor
    from core.sources import IngestItem
    from core.storage import LocalStore

    with tempfile.TemporaryDirectory() as data:
        embedder = load_embedder("tiny:random", device="cpu")
        index = EdgeIndex(Path(data) / "index", "memory", embedder.dimension)
        ingestor = Ingestor(LocalStore(Path(data) / "objects"), index, embedder)  # prepared in-process
        warm = _png(_gradient((640, 480), "RGB"))
        ingestor.ingest([IngestItem("warm-up.png", lambda: warm, len(warm))], "bench")
        _reset_peak()  # the warm-up's own peak (model loading) is not the file's
        idle_mb = _rss_mb("VmRSS")
        for path in paths:
            [result] = ingestor.ingest([IngestItem(str(path), path.read_bytes, path.stat().st_size)], "bench")
            row = {"file": path.name, "status": result.status, "reason": result.reason}
            row |= {"idle_mb": round(idle_mb), "above_idle_mb": round(_rss_mb("VmHWM") - idle_mb)}
            print(json.dumps(row), flush=True)
        index.close()


def _reset_peak() -> None:
    """Linux: restart the peak-RSS counter (VmHWM) from the current RSS."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def _rss_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=list(CLASSES), help="measure these classes only")
    parser.add_argument("--child", nargs="+", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child)
        return
    with tempfile.TemporaryDirectory() as folder:
        paths = write_inputs(Path(folder), args.only)
        print(f"{'file':<30} {'bytes':>10} {'result':<9} {'peak above idle':>16}  reason")
        for path in paths:
            [row] = measure([path])
            flag = "" if row["above_idle_mb"] < BUDGET_MB else "  OVER BUDGET"
            print(
                f"{row['file']:<30} {path.stat().st_size:>10,} {row['status']:<9} "
                f"{row['above_idle_mb']:>13,} MB  {row['reason'] or ''}{flag}"
            )
    print(f"budget: {BUDGET_MB} MB above the idle process (idle = after one ordinary ingest)")


if __name__ == "__main__":
    main()
