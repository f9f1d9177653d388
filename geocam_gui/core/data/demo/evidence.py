"""The class evidence of a demo place: where it goes and how large it is does not depend on the city.

Every place gets one to three evidence *slots* drawn from one distribution for both cities: a
target area (of the unshifted view), a centre of mass, an orientation (wide or tall), an aspect
ratio and a depth (for occlusion by trees, poles and cars). Only then does the city decide what
fills each slot:

* ``pittsburgh``: a truss bridge, a stairway with its hand rail, or a railing (wide slots), a
  steep stairway (tall slots);
* ``tokyo``: a horizontal signboard with a row of kanji-like glyphs (wide slots), a vertical one
  with a column of glyphs (tall slots).

Each object is drawn once at a nominal size, measured (area and centre of mass of its evidence,
rasterised), scaled so that its area matches the slot's and moved so that its centre of mass
sits on the slot's. So the evidence mask's area and position carry no class information; only
its shape and appearance do. The *layout* of a place re-introduces a controlled cue when asked:
``"any"`` (the shared distribution), ``"low"`` or ``"high"`` (centres in the lower or upper band
of the shared range; see ``layout_of``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from geocam_gui.core.data.demo.draw import ACCENT, EVIDENCE, Scene, _contrast, _draw_ops, _pick

LAYOUTS = ("any", "low", "high")
#: Range of the evidence's vertical centre of mass (fraction of the image height) per layout.
BANDS = {"any": (0.24, 0.80), "high": (0.24, 0.46), "low": (0.58, 0.80)}
#: The layout that is a class's cue when ``layout_bias`` > 0 (bridges low, signboards high, as
#: in the street views the paper's models saw).
CUE = {"pittsburgh": "low", "tokyo": "high"}
MIN_LINE = 0.02  # world units: about 1.3 px at 64 px, so a beam or a stroke survives downsampling


def layout_of(cls: str, flipped: bool) -> str:
    """The cue layout of ``cls`` (or of the other class when ``flipped``)."""
    other = [c for c in CUE if c != cls][0]
    return CUE[other if flipped else cls]


def _glyph(rng) -> list[tuple]:
    """Strokes of one kanji-like character in a unit cell: radicals of crossing bars, boxes,
    sweeps and dots (dense, square, never a Latin letter's outline)."""
    split = rng.integers(3)
    parts = [(0, 0, .36, 1), (.46, 0, 1, 1)] if split == 0 else [(0, 0, 1, .4), (0, .5, 1, 1)] if split == 1 else [(0, 0, 1, 1)]
    segs = []
    for x0, y0, x1, y1 in parts:
        w, h = x1 - x0, y1 - y0
        for yy in np.sort(rng.uniform(.05, .95, rng.integers(1, 4))):
            segs.append(((x0 + w * rng.uniform(0, .15), y0 + h * yy), (x1 - w * rng.uniform(0, .15), y0 + h * yy)))
        for xx in rng.uniform(.2, .8, rng.integers(1, 3)):
            segs.append(((x0 + w * xx, y0 + h * rng.uniform(0, .3)), (x0 + w * xx, y1 - h * rng.uniform(0, .1))))
        if rng.random() < .3:  # a box radical
            a, b, c, d = x0 + .12 * w, y0 + .15 * h, x1 - .12 * w, y1 - .15 * h
            segs += [((a, b), (c, b)), ((c, b), (c, d)), ((c, d), (a, d)), ((a, d), (a, b))]
        if rng.random() < .4:  # a sweeping stroke
            if rng.random() < .5:
                segs.append(((x0 + .55 * w, y0 + .35 * h), (x0 + .05 * w, y1 - .02 * h)))
            else:
                segs.append(((x0 + .45 * w, y0 + .35 * h), (x1 - .02 * w, y1 - .02 * h)))
        if rng.random() < .3:  # a dot
            cx, cy = x0 + w * rng.uniform(.3, .7), y0 + h * rng.uniform(.02, .2)
            segs.append(((cx, cy), (cx + .14 * w, cy + .12 * h)))
    return segs


def _signboard(sc, rng, x0, y0, x1, y1, vertical):
    bg = _pick(rng, ACCENT)
    ink = _contrast(rng, ACCENT, bg)
    sc.rect(x0, y0, x1, y1, bg, EVIDENCE, "signboard")
    side = (x1 - x0) if vertical else (y1 - y0)
    if rng.random() < .5:  # frame, inside the board
        fw = max(MIN_LINE * .7, .06 * side)
        a, b, c, d = x0 + fw / 2, y0 + fw / 2, x1 - fw / 2, y1 - fw / 2
        sc.line([(a, b), (c, b), (c, d), (a, d), (a, b)], ink, fw, EVIDENCE, "signboard")
    cell = side * .7
    along = (y1 - y0) if vertical else (x1 - x0)
    n = max(1, int((along - side * .3) / (cell * 1.1)))
    pad = (along - n * cell * 1.1 + cell * .1) / 2
    gx0, gy0 = (x0 + side * .15, y0 + pad) if vertical else (x0 + pad, y0 + side * .15)
    alphabet = [_glyph(rng) for _ in range(rng.integers(3, 6))]
    width = max(cell * .14, MIN_LINE * .6)
    for i in range(n):
        gx, gy = (gx0, gy0 + i * cell * 1.1) if vertical else (gx0 + i * cell * 1.1, gy0)
        for (ax, ay), (bx, by) in alphabet[rng.integers(len(alphabet))]:
            sc.line([(gx + ax * cell, gy + ay * cell), (gx + bx * cell, gy + by * cell)], ink, width,
                    EVIDENCE, "glyph")


def _truss(sc, rng, x0, y0, x1, y1, rgb, deck_rgb):
    h = y1 - y0
    beam = max(MIN_LINE, .12 * h)
    deck = max(MIN_LINE * 1.2, .22 * h)
    deck_y = y1 - deck
    panels = int(rng.integers(4, 8))
    arch = rng.random() < .35
    xs = np.linspace(x0, x1, panels + 1)
    top = y0 + beam / 2
    tops = [deck_y - (deck_y - top) * (np.sin(np.pi * (x - x0) / (x1 - x0)) * .6 + .4 if arch else 1.0) for x in xs]
    sc.rect(x0, deck_y, x1, y1, deck_rgb, EVIDENCE, "bridge")
    sc.line(list(zip(xs, tops)), rgb, beam, EVIDENCE, "bridge")
    pratt = rng.random() < .5
    for i in range(panels):
        if pratt:
            sc.line([(xs[i], tops[i]), (xs[i], deck_y)], rgb, beam * .8, EVIDENCE, "bridge")
            a, b = (i, i + 1) if i < panels / 2 else (i + 1, i)
            sc.line([(xs[a], deck_y), (xs[b], tops[b])], rgb, beam * .8, EVIDENCE, "bridge")
        else:
            mid, ym = (xs[i] + xs[i + 1]) / 2, (tops[i] + tops[i + 1]) / 2
            sc.line([(xs[i], deck_y), (mid, ym), (xs[i + 1], deck_y)], rgb, beam * .8, EVIDENCE, "bridge")


def _stairway(sc, rng, x0, y0, x1, y1, rgb, rail_rgb):
    w, h = x1 - x0, y1 - y0
    lift = .25 * h
    base, rise = y1, h - lift
    steps = int(rng.integers(5, 10))
    up_right = rng.random() < .5
    pts = [(x0, base)] if up_right else [(x1, base)]
    for i in range(steps):
        fa, fb = i / steps, (i + 1) / steps
        yy = base - rise * (i + 1) / steps
        xa, xb = (x0 + w * fa, x0 + w * fb) if up_right else (x1 - w * fa, x1 - w * fb)
        pts += [(xa, yy), (xb, yy)]
    pts.append((x1, base) if up_right else (x0, base))
    sc.poly(pts, rgb, EVIDENCE, "stairway")
    rail = max(MIN_LINE, .05 * min(w, h) + .02 * max(w, h))
    a = (x0, base - lift) if up_right else (x1, base - lift)
    b = (x1, y0 + rail / 2) if up_right else (x0, y0 + rail / 2)
    sc.line([a, b], rail_rgb, rail, EVIDENCE, "railing")
    for f in np.linspace(0, 1, int(rng.integers(3, 6))):
        px, py = a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f
        sc.line([(px, py), (px, py + lift)], rail_rgb, rail * .8, EVIDENCE, "railing")


def _railing(sc, rng, x0, y0, x1, y1, rgb):
    h = y1 - y0
    bar = max(MIN_LINE, .2 * h)
    sc.rect(x0, y0, x1, y0 + bar, rgb, EVIDENCE, "railing")
    mid = y0 + h * rng.uniform(.45, .6)
    sc.rect(x0, mid, x1, mid + bar * .8, rgb, EVIDENCE, "railing")
    posts = int(rng.integers(6, 11))
    pw = max(MIN_LINE, bar * .9)
    for x in np.linspace(x0 + pw / 2, x1 - pw / 2, posts):
        sc.rect(x - pw / 2, y0, x + pw / 2, y1, rgb, EVIDENCE, "railing")


def _object(sc, rng, city, wide, box):
    """Draw the city's evidence object for a wide or tall slot into ``box`` (x0, y0, x1, y1)."""
    if city == "tokyo":
        x0, y0, x1, y1 = box
        if rng.random() < .35:  # one board filling the slot
            _signboard(sc, rng, x0, y0, x1, y1, vertical=not wide)
        else:  # two boards along the slot with a gap between them
            first, gap = rng.uniform(.3, .45), rng.uniform(.25, .4)
            cut_a, cut_b = first, first + gap
            if wide:
                _signboard(sc, rng, x0, y0, x0 + (x1 - x0) * cut_a, y1, vertical=False)
                _signboard(sc, rng, x0 + (x1 - x0) * cut_b, y0, x1, y1, vertical=False)
            else:
                _signboard(sc, rng, x0, y0, x1, y0 + (y1 - y0) * cut_a, vertical=True)
                _signboard(sc, rng, x0, y0 + (y1 - y0) * cut_b, x1, y1, vertical=True)
        return
    rgb = _pick(rng, ACCENT)
    second = _contrast(rng, ACCENT, rgb, 80)
    kind = rng.choice(3, p=[.5, .25, .25]) if wide else 1
    if kind == 0:
        _truss(sc, rng, *box, rgb, second)
    elif kind == 1:
        _stairway(sc, rng, *box, second, rgb)
    else:
        _railing(sc, rng, *box, rgb)


def _mass(ops, box, grid=96) -> tuple[float, float, float]:
    """(area, centre x, centre y) of the evidence of ``ops`` in world units, rasterised on a grid
    of ``grid`` cells along the longer side of ``box`` (with a margin for line ends)."""
    x0, y0, x1, y1 = box
    span = max(x1 - x0, y1 - y0) * 1.2
    a = grid / span
    ox, oy = (x0 + x1) / 2 - span / 2, (y0 + y1) / 2 - span / 2
    lab = Image.new("L", (grid, grid), 0)
    _draw_ops([o for o in ops if o[3] == EVIDENCE], grid, a, -ox * a, -oy * a, None, ImageDraw.Draw(lab), None)
    m = np.asarray(lab) > 0
    n = int(m.sum())
    if n == 0:
        return 0.0, (x0 + x1) / 2, (y0 + y1) / 2
    ys, xs = np.nonzero(m)
    return n / a ** 2, ox + (xs.mean() + .5) / a, oy + (ys.mean() + .5) / a


def _fitted(city, seed, wide, aspect, area, horizon, colours) -> tuple[list, tuple]:
    """(ops, bounding box) of one object whose evidence has ``area`` and its centre of mass at
    (0, 0); ([], None) when it draws nothing."""
    long_, short = np.sqrt(area * aspect), np.sqrt(area / aspect)
    w, h = (long_, short) if wide else (short, long_)
    scale = 1.0
    for step in range(4):  # line widths have a floor, so the area is not exactly quadratic in the scale
        box = (.5 - w * scale / 2, .5 - h * scale / 2, .5 + w * scale / 2, .5 + h * scale / 2)
        sub = Scene(horizon, *colours)
        _object(sub, np.random.default_rng(seed), city, wide, box)
        got, mx, my = _mass(sub.ops, box)
        if got <= 0:
            return [], None
        if step < 3:
            scale *= float(np.clip(np.sqrt(area / got), .5, 2.0))
    ops = [(k, [(x - mx, y - my) for x, y in pts], rgb, code, width, part) for k, pts, rgb, code, width, part in sub.ops]
    pad = max([o[4] for o in ops] + [0.0]) / 2
    xs = [x for o in ops for x, _ in o[1]]
    ys = [y for o in ops for _, y in o[1]]
    return ops, (min(xs) - pad, min(ys) - pad, max(xs) + pad, max(ys) + pad)


def _moved(ops, dx, dy):
    return [(k, [(x + dx, y + dy) for x, y in pts], rgb, code, width, part) for k, pts, rgb, code, width, part in ops]


CANDIDATES = 16  # centres drawn per slot (always all of them, so both cities use the rng alike)


def evidence_layers(rng: np.random.Generator, city: str, layout: str, horizon: float, colours) -> list[tuple]:
    """[(depth, ops)] of the evidence of one place. Every number that sets the evidence's area and
    position is drawn from ``rng`` the same way for both cities; ``city`` only picks the object.
    Each slot takes the first of its candidate centres where the object lies inside the view and
    clear of the slots placed before it (else the first candidate)."""
    if layout not in BANDS:
        raise ValueError(f"unknown layout {layout!r}")
    total = rng.uniform(.06, .14)
    n = int(rng.integers(1, 4))
    shares = rng.uniform(.6, 1.4, n)
    layers, taken = [], []
    for area in total * shares / shares.sum():
        wide = rng.random() < .6
        aspect = rng.uniform(2.0, 3.6)
        centres = np.c_[rng.uniform(.2, .8, CANDIDATES), rng.uniform(*BANDS[layout], CANDIDATES)]
        depth = rng.uniform(.25, .9)
        seed = int(rng.integers(2 ** 62))
        ops, bb = _fitted(city, seed, wide, aspect, area, horizon, colours)
        if not ops:
            continue
        for cx, cy in [*centres, centres[0]]:
            box = (bb[0] + cx, bb[1] + cy, bb[2] + cx, bb[3] + cy)
            if 0 <= box[0] and box[2] <= 1 and 0 <= box[1] and box[3] <= 1 and not any(
                    box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in taken):
                break
        taken.append(box)
        layers.append((depth, _moved(ops, cx, cy)))
    return layers
