"""The shapes world: one object per 48×48 image, in the spirit of CSS (Vo et al., CVPR 2019).

Attributes are discrete (shape, color, size, position on a 3×3 grid) so ground truth is exact; continuous
jitter (offset, size, rotation, tint) makes every rendering unique, so retrieval cannot match pixels. Objects
are drawn at ``SCALE``× resolution and box-filtered down (exact 4×4 supersampling) so small stars stay
recognisable.
Everything is a pure function of the attributes and a ``numpy`` generator: same seed, same pixels.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

WORLD_VERSION = 1
IMAGE_SIZE = 48
SCALE = 4

SHAPES = ("circle", "square", "triangle", "star")
COLORS = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "white")
SIZES = ("small", "large")
POSITIONS = (
    "top left",
    "top",
    "top right",
    "left",
    "center",
    "right",
    "bottom left",
    "bottom",
    "bottom right",
)
ATTRIBUTES = ("shape", "color", "size", "position")
VALUES: dict[str, tuple[str, ...]] = {"shape": SHAPES, "color": COLORS, "size": SIZES, "position": POSITIONS}

RGB: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (250, 140, 0),
    "yellow": (240, 225, 30),
    "green": (30, 170, 50),
    "cyan": (0, 205, 215),
    "blue": (35, 65, 235),
    "purple": (145, 45, 205),
    "white": (240, 240, 240),
}
BACKGROUND = (48, 48, 48)
# Object extent as a fraction of a grid cell (radius of the circle; other shapes are scaled to similar area).
RADIUS = {"small": 0.24, "large": 0.42}
JITTER = {"offset": 0.10, "size": 0.10, "rotation_deg": 15.0, "tint": 12, "background": 6}

# Salts that keep the random streams of different purposes disjoint (see ``rng_for``).
SALT_TRAIN, SALT_HELDOUT, SALT_GALLERY, SALT_QUERIES, SALT_CORPUS = 101, 202, 303, 404, 505


@dataclass(frozen=True, order=True)
class Attributes:
    """The discrete description of one image; the ground truth of every query is defined on these."""

    shape: str
    color: str
    size: str
    position: str

    def __post_init__(self) -> None:
        for name in ATTRIBUTES:
            if getattr(self, name) not in VALUES[name]:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; choose from {VALUES[name]}")

    def with_value(self, attribute: str, value: str) -> Attributes:
        return replace(self, **{attribute: value})

    @property
    def key(self) -> str:
        """File-name safe id, e.g. ``circle-red-large-top_left``."""
        return "-".join(getattr(self, a).replace(" ", "_") for a in ATTRIBUTES)

    @classmethod
    def from_key(cls, key: str) -> Attributes:
        shape, color, size, position = key.split("-")[:4]
        return cls(shape, color, size, position.replace("_", " "))


def all_attributes() -> list[Attributes]:
    """Every combination (4 × 8 × 2 × 9 = 576), in a fixed order."""
    return [Attributes(s, c, z, p) for s in SHAPES for c in COLORS for z in SIZES for p in POSITIONS]


def rng_for(salt: int, seed: int, index: int = 0) -> np.random.Generator:
    """An independent generator per (purpose, seed, item), so renderings do not depend on iteration order."""
    return np.random.default_rng([salt, seed, index])


def world_spec() -> dict:
    """Everything that determines the pixels; its hash names caches of rendered images."""
    return {
        "version": WORLD_VERSION,
        "image_size": IMAGE_SIZE,
        "scale": SCALE,
        "values": VALUES,
        "rgb": RGB,
        "background": BACKGROUND,
        "radius": RADIUS,
        "jitter": JITTER,
    }


def world_hash(**extra: object) -> str:
    blob = json.dumps({"world": world_spec(), **extra}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if kind == "square":
        # Half-diagonal for a square of side sqrt(pi) * r (same area as the circle).
        radii, count, start = [r * math.sqrt(math.pi / 2)], 4, math.pi / 4
    elif kind == "triangle":
        radii, count, start = [r * 1.3], 3, -math.pi / 2
    else:  # star: five points, inner radius 0.45 of the outer one
        radii, count, start = [r * 1.45, r * 1.45 * 0.45], 10, -math.pi / 2
    points = []
    for i in range(count):
        radius = radii[i % len(radii)]
        theta = start + angle + 2 * math.pi * i / count
        points.append((cx + radius * math.cos(theta), cy + radius * math.sin(theta)))
    return points


def render(attrs: Attributes, rng: np.random.Generator) -> Image.Image:
    """Draw ``attrs`` with fresh jitter from ``rng``; a 48×48 RGB image."""
    big = IMAGE_SIZE * SCALE
    cell = big / 3
    row, col = divmod(POSITIONS.index(attrs.position), 3)
    dx, dy = rng.uniform(-JITTER["offset"], JITTER["offset"], size=2) * cell
    cx, cy = (col + 0.5) * cell + dx, (row + 0.5) * cell + dy
    r = RADIUS[attrs.size] * cell * (1 + rng.uniform(-JITTER["size"], JITTER["size"]))
    angle = math.radians(rng.uniform(-JITTER["rotation_deg"], JITTER["rotation_deg"]))
    tint = rng.integers(-JITTER["tint"], JITTER["tint"] + 1, size=3)
    color = tuple(int(np.clip(v + t, 0, 255)) for v, t in zip(RGB[attrs.color], tint, strict=True))
    shade = int(rng.integers(-JITTER["background"], JITTER["background"] + 1))
    image = Image.new("RGB", (big, big), tuple(v + shade for v in BACKGROUND))
    draw = ImageDraw.Draw(image)
    if attrs.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=color)
    else:
        draw.polygon(_polygon(attrs.shape, cx, cy, r, angle), fill=color)
    return image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)


def attributes_dict(attrs: Attributes) -> dict[str, str]:
    return asdict(attrs)
