"""Drawing of one procedural street scene for the demo data set (see ``__init__.py``).

A *place* is built once (``build_scene``) as a list of drawing operations in world
coordinates (x, y in [0, 1] for the unshifted camera, y downwards). Each *view* of the place
renders the same operations through a slightly different camera and light (``render``), so the
views of a place are near-duplicates, like the views of one street-view panorama.

The scene is a street in one-point perspective: sky band, building facades with windows and
shop fronts on both sides, a row of buildings at the far end, road and sidewalks, and shared
distractors (trees, poles, wires, cars). The class evidence is added on top (``evidence.py``):

* ``tokyo``: horizontal and vertical signboards (one or two per slot) carrying procedural
  kanji-like glyphs;
* ``pittsburgh``: truss bridges with diagonal beams, stairways with hand rails, railings.

Evidence and distractor colours come from the same palettes in both classes, and the evidence's
area and position are drawn from one distribution for both classes, so mean colours and the
evidence layout say little about the class: the shapes do. Every op also carries a kind
(``PARTS``), rendered into the per-pixel label map.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

SKY, EVIDENCE, DETAIL = 1, 2, -1  # label codes; 0 = opaque non-evidence; DETAIL keeps its parent's label
SUPERSAMPLE = 2
#: Every kind of object the generator draws; the index is the pixel value of the per-kind label map
#: (``_parts.png``). 0 = unlabelled (never drawn: every pixel of a demo image has a kind).
PARTS = ("unlabelled", "sky", "cloud", "road", "road_marking", "sidewalk", "building", "window",
         "shop_front", "awning", "bridge", "stairway", "railing", "signboard", "glyph", "tree", "pole",
         "wire", "car")
PART = {name: i for i, name in enumerate(PARTS)}
#: The kinds that make up each class's evidence mask.
EVIDENCE_PARTS = {"pittsburgh": ("bridge", "stairway", "railing"), "tokyo": ("signboard", "glyph")}

FACADE = np.array([(150, 72, 58), (172, 98, 76), (200, 186, 160), (150, 150, 152), (118, 120, 126),
                   (222, 216, 204), (112, 84, 64), (160, 178, 152), (150, 168, 190), (226, 210, 170),
                   (84, 84, 94), (190, 160, 130)], float)
# Shared by signboards, bridges, railings, stairways and awnings: colour is not the evidence.
ACCENT = np.array([(205, 40, 40), (236, 192, 30), (212, 162, 44), (236, 236, 230), (40, 84, 184),
                   (40, 142, 72), (232, 122, 30), (32, 32, 36), (30, 142, 152), (122, 62, 152),
                   (122, 126, 132), (200, 70, 120)], float)
CARS = np.array([(230, 230, 232), (30, 30, 34), (160, 162, 168), (170, 30, 30), (40, 60, 130),
                 (90, 96, 104), (200, 190, 170)], float)
GREENS = np.array([(52, 110, 48), (74, 130, 56), (40, 92, 52), (96, 134, 60)], float)


class Scene:
    """View-independent description of one place: ops in world coordinates."""

    def __init__(self, horizon: float, sky_top, sky_bottom, cloudy: bool):
        self.horizon = horizon
        self.sky_top = np.asarray(sky_top, float)
        self.sky_bottom = np.asarray(sky_bottom, float)
        self.cloudy = cloudy
        self.ops: list[tuple] = []  # (kind, points, rgb, code, width, part id)

    def poly(self, pts, rgb, code=0, part="building"):
        self.ops.append(("p", [tuple(map(float, p)) for p in pts], tuple(rgb), code, 0.0, PART[part]))

    def rect(self, x0, y0, x1, y1, rgb, code=0, part="building"):
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], rgb, code, part)

    def line(self, pts, rgb, width, code=0, part="building"):
        self.ops.append(("l", [tuple(map(float, p)) for p in pts], tuple(rgb), code, float(width), PART[part]))

    def ellipse(self, x0, y0, x1, y1, rgb, code=0, part="building"):
        self.ops.append(("e", [(float(x0), float(y0)), (float(x1), float(y1))], tuple(rgb), code, 0.0, PART[part]))


def _draw_ops(ops, size, a, bx, by, draw_img, draw_lab, colour, draw_parts=None):
    """Rasterise ``ops`` with pixel = world * a + (bx, by)."""
    for kind, pts, rgb, code, width, part in ops:
        xy = [(x * a + bx, y * a + by) for x, y in pts]
        fill = colour(rgb, code) if draw_img is not None else None
        if kind == "p":
            if draw_img is not None:
                draw_img.polygon(xy, fill=fill)
            if code != DETAIL:
                draw_lab.polygon(xy, fill=code)
            if draw_parts is not None:
                draw_parts.polygon(xy, fill=part)
        elif kind == "l":
            w = max(1, int(round(width * a)))
            if draw_img is not None:
                draw_img.line(xy, fill=fill, width=w)
            if code != DETAIL:
                draw_lab.line(xy, fill=code, width=w)
            if draw_parts is not None:
                draw_parts.line(xy, fill=part, width=w)
        else:
            box = [min(xy[0][0], xy[1][0]), min(xy[0][1], xy[1][1]), max(xy[0][0], xy[1][0]), max(xy[0][1], xy[1][1])]
            if draw_img is not None:
                draw_img.ellipse(box, fill=fill)
            if code != DETAIL:
                draw_lab.ellipse(box, fill=code)
            if draw_parts is not None:
                draw_parts.ellipse(box, fill=part)


def evidence_fraction(ops, grid: int = 64) -> float:
    """Fraction of the unshifted view covered by the evidence ops (rasterised on a small grid)."""
    lab = Image.new("L", (grid, grid), 0)
    _draw_ops([o for o in ops if o[3] == EVIDENCE], grid, grid, 0.0, 0.0, None, ImageDraw.Draw(lab), None)
    return float(np.count_nonzero(np.asarray(lab))) / (grid * grid)


def render(scene: Scene, size: int, zoom: float, dx: float, dy: float, gain: float, tint) -> tuple:
    """One view: (RGB uint8 (size, size, 3), evidence bool (size, size), sky bool (size, size),
    per-kind label map uint8 (size, size) with values indexing ``PARTS``)."""
    s = size * SUPERSAMPLE
    a = zoom * s
    bx = (0.5 - 0.5 * zoom + dx) * s
    by = (0.5 - 0.5 * zoom + dy) * s
    lr, lg, lb = (float(c) * gain for c in tint)
    rows = ((np.arange(s) + 0.5) - by) / a
    t = np.clip(rows / scene.horizon, 0.0, 1.0)[:, None] ** 0.8
    grad = (scene.sky_top * (1 - t) + scene.sky_bottom * t) * (lr, lg, lb)
    column = np.clip(grad, 0, 255).astype(np.uint8)[:, None, :]
    img = Image.fromarray(column, "RGB").resize((s, s), Image.Resampling.NEAREST)
    lab = Image.new("L", (s, s), SKY)
    parts = Image.new("L", (s, s), PART["sky"])
    keep = 0.7 if scene.cloudy else 1.0  # overcast light: duller, darker colours
    dim = 0.88 if scene.cloudy else 1.0
    cache: dict = {}

    def colour(rgb, code):
        key = (rgb, code == SKY)
        c = cache.get(key)
        if c is None:
            r, g, b = rgb
            if code != SKY:
                m = (r + g + b) / 3 * (1 - keep)
                r, g, b = (r * keep + m) * dim, (g * keep + m) * dim, (b * keep + m) * dim
            c = cache[key] = (min(255, int(r * lr + .5)), min(255, int(g * lg + .5)), min(255, int(b * lb + .5)))
        return c

    _draw_ops(scene.ops, s, a, bx, by, ImageDraw.Draw(img), ImageDraw.Draw(lab), colour, ImageDraw.Draw(parts))
    out = np.asarray(img.reduce(SUPERSAMPLE))
    labels = np.asarray(lab)
    evidence = _majority(labels == EVIDENCE)
    skymask = _majority(labels == SKY)
    return out, evidence, skymask, _mode(np.asarray(parts), evidence, skymask)


def _majority(mask: np.ndarray) -> np.ndarray:
    """Downsample a boolean mask by SUPERSAMPLE (2): a pixel is inside when >= half its subpixels are."""
    m = mask.view(np.uint8)
    votes = m[0::2, 0::2] + m[1::2, 0::2] + m[0::2, 1::2] + m[1::2, 1::2]
    return votes >= 2


#: The mask code of each kind: the label map agrees with the evidence and sky masks pixel by pixel.
_GROUP = np.zeros(256, np.uint8)
_GROUP[[PART["sky"], PART["cloud"]]] = SKY
_GROUP[[PART[k] for kinds in EVIDENCE_PARTS.values() for k in kinds]] = EVIDENCE


def _mode(labels: np.ndarray, evidence: np.ndarray, sky: np.ndarray) -> np.ndarray:
    """Downsample a label map by SUPERSAMPLE (2) consistently with the masks: a pixel of the
    evidence mask takes the most frequent evidence kind among its four subpixels, else a pixel
    of the sky mask the most frequent sky kind, else the most frequent other kind (ties: the
    first subpixel in raster order)."""
    subs = np.stack([labels[0::2, 0::2], labels[0::2, 1::2], labels[1::2, 0::2], labels[1::2, 1::2]])
    out = subs[0].copy()  # where all four agree, that kind is also what the masks say
    mixed = np.flatnonzero(((subs != subs[0]).any(0)).ravel())
    if mixed.size:
        sub = subs.reshape(4, -1)[:, mixed]
        want = np.where(evidence.ravel()[mixed], EVIDENCE, np.where(sky.ravel()[mixed], SKY, 0)).astype(np.uint8)
        valid = _GROUP[sub] == want[None]
        votes = np.stack([((sub == sub[i]) & valid).sum(0) for i in range(4)])
        votes[~valid] = -1
        out.ravel()[mixed] = np.take_along_axis(sub, votes.argmax(0)[None], 0)[0]
    return out


def _jitter(rng, rgb, amount=14.0):
    return tuple(np.clip(np.asarray(rgb, float) + rng.uniform(-amount, amount, 3), 0, 255))


def _pick(rng, palette, amount=14.0):
    return _jitter(rng, palette[rng.integers(len(palette))], amount)


def _contrast(rng, palette, against, min_dist=110.0):
    """A palette colour far enough from ``against`` to read on top of it."""
    for _ in range(12):
        c = _pick(rng, palette, 10.0)
        if np.linalg.norm(np.subtract(c, against)) >= min_dist:
            return c
    return (236.0, 236.0, 230.0) if np.mean(against) < 128 else (28.0, 28.0, 32.0)
