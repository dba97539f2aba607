"""Drawn scenes: a few flat shapes whose caption is a pure function of the drawing.

Shapes sit in equal left-to-right slots and the caption names them in that order with
position words, so a model can learn the exact text from the pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from curate.features.hashes import dct_low

__all__ = ["COLORS", "SHAPES", "Scene", "SceneShape", "draw_scene", "random_scene", "scene_hash"]

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 35),
    "green": (35, 160, 60),
    "blue": (35, 70, 220),
    "yellow": (245, 215, 30),
    "purple": (135, 45, 175),
    "orange": (245, 135, 20),
    "black": (15, 15, 15),
    "white": (245, 245, 245),
    "pink": (245, 150, 195),
    "brown": (125, 75, 35),
    "gray": (128, 128, 128),
}
BACKGROUNDS: tuple[str, ...] = ("gray", "white", "black", "yellow", "blue", "green")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "stripe")
_POSITIONS: dict[int, tuple[str, ...]] = {
    1: ("",),
    2: ("on the left", "on the right"),
    3: ("on the left", "in the middle", "on the right"),
}
_MIN_WIDTH = {1: 256, 2: 384, 3: 480}


@dataclass(frozen=True)
class SceneShape:
    """One shape: its name, color name, center (pixels) and size (bounding-box side)."""

    shape: str
    color: str
    cx: int
    cy: int
    size: int


@dataclass(frozen=True)
class Scene:
    """A full drawing: canvas size, background color name and shapes left to right."""

    width: int
    height: int
    background: str
    shapes: tuple[SceneShape, ...]

    @property
    def caption(self) -> str:
        """The exact description: shapes left to right, positions when there are several."""
        positions = _POSITIONS[len(self.shapes)]
        parts = []
        for s, pos in zip(self.shapes, positions, strict=True):
            article = "an" if s.color[0] in "aeiou" else "a"
            parts.append(f"{article} {s.color} {s.shape}" + (f" {pos}" if pos else ""))
        if len(parts) == 1:
            return f"{parts[0]} on a {self.background} background"
        body = ", ".join(parts[:-1]) + f" and {parts[-1]}"
        return f"{body}, on a {self.background} background"

    @property
    def objects(self) -> frozenset[tuple[str, str]]:
        """(color, shape) pairs, to pick captions that share nothing with this scene."""
        return frozenset((s.color, s.shape) for s in self.shapes)


def random_scene(rng: np.random.Generator) -> Scene:
    """Draw 1-3 shapes in distinct colors, none matching the background."""
    n = int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]))
    width = int(rng.integers(_MIN_WIDTH[n], 641))
    height = int(rng.integers(256, 641 if n < 3 else 481))
    background = str(rng.choice(BACKGROUNDS))
    palette = [c for c in COLORS if c != background]
    colors = [str(c) for c in rng.choice(palette, size=n, replace=False)]
    slot_w = width / n
    shapes = []
    for i in range(n):
        limit = min(slot_w, height)
        size = int(limit * rng.uniform(0.45, 0.7)) if n > 1 else int(limit * rng.uniform(0.3, 0.6))
        half = size / 2 + 2
        lo_x, hi_x = i * slot_w + half, (i + 1) * slot_w - half
        cx = int(rng.uniform(lo_x, max(lo_x, hi_x)))
        cy = int(rng.uniform(half, max(half, height - half)))
        shapes.append(SceneShape(str(rng.choice(SHAPES)), colors[i], cx, cy, size))
    return Scene(width, height, background, tuple(shapes))


# The star's ten vertex directions, cos and sin of -90° + k·36°, written out: libm's cos has
# per-CPU variants (FMA or not) that may round the last bit apart.
_STAR_DIRS: tuple[tuple[float, float], ...] = (
    (0.0, -1.0),
    (0.5877852522924731, -0.8090169943749475),
    (0.9510565162951535, -0.3090169943749474),
    (0.9510565162951535, 0.3090169943749474),
    (0.5877852522924731, 0.8090169943749475),
    (0.0, 1.0),
    (-0.587785252292473, 0.8090169943749475),
    (-0.9510565162951535, 0.3090169943749475),
    (-0.9510565162951536, -0.3090169943749473),
    (-0.5877852522924732, -0.8090169943749473),
)


def _star(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    pts = []
    for k, (c, s) in enumerate(_STAR_DIRS):
        rad = r if k % 2 == 0 else r * 0.42
        pts.append((cx + rad * c, cy + rad * s))
    return pts


def _draw(scene: Scene, k: float) -> Image.Image:
    """Draw at k times the scene's size."""
    size = (max(1, round(scene.width * k)), max(1, round(scene.height * k)))
    img = Image.new("RGB", size, COLORS[scene.background])
    draw = ImageDraw.Draw(img)
    for s in scene.shapes:
        fill = COLORS[s.color]
        cx, cy, r = s.cx * k, s.cy * k, s.size * k / 2
        if s.shape == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        elif s.shape == "square":
            draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
        elif s.shape == "triangle":
            draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=fill)
        elif s.shape == "star":
            draw.polygon(_star(cx, cy, r), fill=fill)
        else:  # stripe: a wide, short bar
            draw.rectangle((cx - r, cy - r * 0.28, cx + r, cy + r * 0.28), fill=fill)
    return img


def draw_scene(scene: Scene) -> Image.Image:
    """Render the scene; drawn at 2x and downsampled so edges are smooth like real images."""
    return _draw(scene, 2).resize((scene.width, scene.height), Image.Resampling.BOX)


_BITS = np.uint64(1) << np.arange(63, dtype=np.uint64)


def scene_hash(scene: Scene) -> np.uint64:
    """A grayscale perceptual hash (pHash) of the scene, to keep unrelated scenes apart.

    Flat drawings in different colors can share a luminance layout; dedup tools that hash
    grayscale would call them duplicates, which would make the truth table wrong. The DCT is
    curate's integer one: a float DCT through BLAS flips bits on some CPUs, and since which
    scenes are accepted steers the generator, that changed the whole web per CPU.
    """
    thumb = _draw(scene, 64 / max(scene.width, scene.height)).convert("L")
    a = np.asarray(thumb.resize((32, 32), Image.Resampling.BOX), dtype=np.uint8)
    coeffs = dct_low(a).reshape(64)[1:]
    bits = coeffs > np.partition(coeffs, 31)[31]  # the median of 63 integers, exactly
    return np.uint64(_BITS[bits].sum())
