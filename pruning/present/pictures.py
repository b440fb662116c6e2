"""What was pruned, as pictures: per layer, an image of kept and removed weights, and for structured
pruning the kept and removed channels (and heads) per layer. Pure: arrays and frames in, figures out.

A Linear layer is drawn rows (outputs) x columns (inputs); a convolution output channels x input
channels, each pixel the share of its kernel kept. Layers larger than MAX_SIDE on a side are
downsampled by an integer factor (each pixel then averages factor x factor cells), stated in the title.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

MAX_SIDE = 160
COLORS = [[0.0, "#2b2b2b"], [1.0, "#f2c14e"]]  # removed: dark, kept: amber


@dataclass(frozen=True)
class Picture:
    name: str
    shape: tuple[int, int]  # (outputs, inputs) before downsampling
    image: np.ndarray  # share kept per pixel, in [0, 1]
    factor: int  # each pixel averages factor x factor cells (1: none)
    kept: float  # share of the layer's weights kept

    @property
    def title(self) -> str:
        rows, cols = self.shape
        what = f"{self.name}: {rows:,} x {cols:,}, {self.kept:.1%} of the weights kept"
        if self.factor > 1:
            what += f"; downsampled {self.factor}x (each pixel averages {self.factor}x{self.factor} cells)"
        return what


def kept_cells(weight: np.ndarray) -> np.ndarray:
    """Share kept per (output, input) cell: Linear as is; a convolution's kernel summed (its share)."""
    kept = weight != 0
    if kept.ndim == 1:
        return kept.reshape(1, -1).astype(np.float32)
    return kept.reshape(kept.shape[0], kept.shape[1], -1).mean(axis=2, dtype=np.float32)


def downsample(image: np.ndarray, max_side: int = MAX_SIDE) -> tuple[np.ndarray, int]:
    """Block means over factor x factor cells, the smallest integer factor that fits `max_side`."""
    factor = max(1, math.ceil(max(image.shape) / max_side))
    if factor == 1:
        return image, 1
    rows, cols = (math.ceil(n / factor) * factor for n in image.shape)
    padded = np.full((rows, cols), np.nan, dtype=np.float32)
    padded[: image.shape[0], : image.shape[1]] = image
    blocks = padded.reshape(rows // factor, factor, cols // factor, factor)
    return np.nanmean(blocks, axis=(1, 3)), factor


def picture(name: str, weight: np.ndarray, max_side: int = MAX_SIDE) -> Picture:
    cells = kept_cells(weight)
    image, factor = downsample(cells, max_side)
    return Picture(name, cells.shape, image, factor, float(np.count_nonzero(weight)) / max(weight.size, 1))


def mask_figure(p: Picture) -> go.Figure:
    fig = go.Figure(
        go.Heatmap(
            z=p.image, zmin=0, zmax=1, colorscale=COLORS,
            colorbar=dict(title="kept", tickformat=".0%"),
            hovertemplate="output %{y}, input %{x}: %{z:.0%} kept<extra></extra>",
        )
    )  # fmt: skip
    unit = f" (x{p.factor})" if p.factor > 1 else ""
    fig.update_layout(
        title=dict(text=p.title, font=dict(size=13)),
        xaxis=dict(title=f"inputs{unit}", constrain="domain"),
        yaxis=dict(title=f"outputs{unit}", autorange="reversed", scaleanchor="x"),
        margin=dict(t=50, b=10, l=10, r=10),
        height=420,
    )
    return fig


def channels_frame(
    dense: Mapping[str, tuple[int, ...]],
    pruned: Mapping[str, tuple[int, ...]],
    heads: Mapping[str, tuple[int, int]] | None = None,
) -> pd.DataFrame:
    """Per layer (model order), output and input channels kept and removed, from the weights' shapes;
    `heads`: attention module -> (dense heads, heads kept)."""
    rows = []
    for name, shape in dense.items():
        now = pruned.get(name, shape)
        for what, axis in (("output channels", 0), ("input channels", 1)):
            if len(shape) > axis:
                rows.append(
                    {"layer": name, "unit": what, "kept": now[axis], "removed": shape[axis] - now[axis]}
                )
    for name, (total, kept) in (heads or {}).items():
        rows.append({"layer": name, "unit": "heads", "kept": kept, "removed": total - kept})
    return pd.DataFrame(rows, columns=["layer", "unit", "kept", "removed"])


def channels_figure(frame: pd.DataFrame, unit: str = "output channels") -> go.Figure:
    rows = frame[frame["unit"] == unit]
    fig = go.Figure()
    fig.add_bar(x=rows["layer"], y=rows["kept"], name="kept", marker_color=COLORS[1][1])
    fig.add_bar(x=rows["layer"], y=rows["removed"], name="removed", marker_color=COLORS[0][1])
    fig.update_layout(
        barmode="stack", title=dict(text=f"{unit} kept and removed per layer", font=dict(size=13)),
        yaxis_title=unit, xaxis_title="layer", margin=dict(t=40, b=10, l=10, r=10), height=360,
    )  # fmt: skip
    return fig
