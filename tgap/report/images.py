"""PNG handling for the self-contained report: shrink, inline as data: URIs, stay within budget."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from matplotlib.figure import Figure
from PIL import Image

# The report must stay well under 10 MB for the thesis grid (7 methods × 3 sizes × 5 seeds):
# images are shrunk to this side and stop being inlined once the budget is spent.
MAX_IMAGE_SIDE = 320
IMAGE_BUDGET_BYTES = 7_000_000
PLOT_DPI = 80


def figure_png(fig: Figure) -> bytes:
    """Render a matplotlib figure to a compact PNG (adaptive 128-colour palette: plots have few
    colours, and it makes them about 3× smaller than RGBA)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=PLOT_DPI, bbox_inches="tight", facecolor="white")
    image = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    out = io.BytesIO()
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(
        out, format="PNG", optimize=True
    )
    return out.getvalue()


def shrink_png(path: Path, max_side: int = MAX_IMAGE_SIDE) -> bytes:
    """Read an image file, keep grey images grey, downscale to ``max_side``, re-encode as PNG."""
    with Image.open(path) as im:
        im.load()
        image = im.copy()
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB" if image.mode in ("RGBA", "P", "CMYK", "LA") else "L")
    if max(image.size) > max_side:
        # Nearest keeps the pixel look of small generated images; LANCZOS for big ones.
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


class ImageBudget:
    """Counts inlined bytes; ``take`` refuses an image once the budget would be exceeded."""

    def __init__(self, limit: int = IMAGE_BUDGET_BYTES) -> None:
        self.limit = limit
        self.used = 0
        self.refused = 0

    def take(self, png: bytes) -> str | None:
        size = len(png) * 4 // 3  # base64 inflation
        if self.used + size > self.limit:
            self.refused += 1
            return None
        self.used += size
        return data_uri(png)
