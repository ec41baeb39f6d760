"""PNG outputs of a run: image grids, toy scatter plots and the loss/metric curves.

Every file is written through a temp file + ``os.replace`` so a reader (or a crash) never sees
half a PNG. Matplotlib uses the Agg backend: no display needed.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from contract import pixels
from training.checkpoint import atomic_write


def to_uint8(images: Tensor | np.ndarray) -> np.ndarray:
    """``[-1, 1]`` float ``(N, C, H, W)`` to uint8 with the contract's rounding (contract.pixels)."""
    x = images.detach().cpu().numpy() if isinstance(images, Tensor) else np.asarray(images)
    return pixels.to_uint8(x)


def image_grid(images: Tensor | np.ndarray, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile ``(N, C, H, W)`` images into one ``(H', W', C)`` uint8 array (C = 1 squeezed)."""
    u8 = to_uint8(images)
    n, c, h, w = u8.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    grid = np.zeros((pad + ncol * (h + pad), pad + nrow * (w + pad), c), dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[y : y + h, x : x + w] = u8[i].transpose(1, 2, 0)
    return grid[..., 0] if c == 1 else grid


def save_png(array: np.ndarray, path: Path, scale: int = 1) -> None:
    from PIL import Image

    im = Image.fromarray(array)
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    atomic_write(Path(path), lambda f: f.write(buf.getvalue()))


def save_image_grid(
    images: Tensor | np.ndarray, path: Path, nrow: int | None = None, scale: int = 1
) -> None:
    save_png(image_grid(images, nrow), path, scale)


def _figure(size: tuple[float, float]) -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    # A bare Figure (no pyplot): no global state, nothing leaks between calls or threads.
    return Figure(figsize=size, dpi=100)


def _save_figure(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    atomic_write(Path(path), lambda f: f.write(buf.getvalue()))


def save_scatter(
    fake: np.ndarray, real: np.ndarray, centers: np.ndarray, path: Path, title: str = ""
) -> None:
    """Generated 2-D points over real ones, with the mixture's mode centres marked."""
    fig = _figure((5, 5))
    ax = fig.add_subplot()
    ax.scatter(real[:, 0], real[:, 1], s=4, c="0.75", label="real", linewidths=0)
    ax.scatter(
        fake[:, 0], fake[:, 1], s=4, c="tab:blue", alpha=0.6, label="generated", linewidths=0
    )
    ax.scatter(centers[:, 0], centers[:, 1], s=30, marker="x", c="tab:red", label="modes")
    span = float(np.abs(centers).max()) * 1.5 + 0.5
    ax.set(xlim=(-span, span), ylim=(-span, span), aspect="equal", title=title)
    outside = float((np.abs(fake) > span).any(axis=1).mean())
    if outside:  # a fixed view keeps plots comparable across steps; say what it hides
        ax.text(0.02, 0.02, f"{100 * outside:.1f}% of generated points outside the view",
                transform=ax.transAxes, fontsize=7)  # fmt: skip
    ax.legend(loc="upper right", fontsize=7, markerscale=2)
    _save_figure(fig, path)


# Panels of curves.png: (title, metrics.jsonl keys); a panel with no data is left out.
CURVE_PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("losses", ("d_loss", "g_loss")),
    ("D(x) and D(G(z)) (probabilities)", ("p_real", "p_fake")),
    ("raw D output (logit / critic value)", ("d_real", "d_fake")),
    ("critic's Wasserstein estimate", ("w_distance",)),
    ("gradient penalty", ("gp",)),
    ("throughput (real images/s)", ("img_per_s",)),
)


def save_curves(records: Sequence[dict[str, Any]], path: Path, title: str = "") -> None:
    """One panel per group of metrics in ``CURVE_PANELS``, against the generator step."""
    panels = [(t, [k for k in keys if any(k in r for r in records)]) for t, keys in CURVE_PANELS]
    panels = [(t, keys) for t, keys in panels if keys]
    if not panels:
        return
    cols = 2
    rows = math.ceil(len(panels) / cols)
    fig = _figure((5.5 * cols, 3.0 * rows))
    for i, (panel_title, keys) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        for key in keys:
            pts = [(r["step"], r[key]) for r in records if r.get(key) is not None]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, label=key, linewidth=1)
        ax.set_title(panel_title, fontsize=9)
        ax.set_xlabel("generator step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save_figure(fig, path)
