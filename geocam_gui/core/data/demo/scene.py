"""Layout of one place of the demo data set: a street in one-point perspective.

World helpers: depth ``t`` is the perspective scale (1 at the near plane, -> 0 at the
vanishing point); heights are in "near units" (image heights at ``t = 1``) above the ground.
``build_scene`` returns a ``synthetic_draw.Scene`` ready to be rendered from several views.
"""

from __future__ import annotations

import numpy as np

from geocam_gui.core.data.demo.draw import (ACCENT, CARS, DETAIL, EVIDENCE, FACADE, GREENS, SKY, Scene,
                                            _contrast, _jitter, _pick, evidence_fraction)

CLASSES = ("pittsburgh", "tokyo")


class Street:
    """Perspective of a straight street; all lines of the street meet at (vx, h)."""

    def __init__(self, rng):
        self.h = rng.uniform(0.40, 0.54)
        self.vx = rng.uniform(0.32, 0.68)
        self.g = rng.uniform(1.05, 1.22)
        self.xl = rng.uniform(-0.45, -0.12)
        self.xr = rng.uniform(1.12, 1.45)
        self.cl = self.xl + rng.uniform(0.22, 0.34)
        self.cr = self.xr - rng.uniform(0.22, 0.34)
        self.t_end = rng.uniform(0.16, 0.26)
        self.floor = rng.uniform(0.16, 0.22)

    def x(self, xn, t):
        return self.vx + (xn - self.vx) * t

    def y(self, height, t):
        return self.h + (self.g - self.h) * t - height * t


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


def _glyphs(sc, rng, x0, y0, cell, n, vertical, rgb):
    """``n`` glyphs of side ``cell`` from (x0, y0), downwards or rightwards."""
    alphabet = [_glyph(rng) for _ in range(rng.integers(3, 6))]
    width = max(cell * .14, 0.006)
    for i in range(n):
        gx, gy = (x0, y0 + i * cell * 1.1) if vertical else (x0 + i * cell * 1.1, y0)
        for (ax, ay), (bx, by) in alphabet[rng.integers(len(alphabet))]:
            sc.line([(gx + ax * cell, gy + ay * cell), (gx + bx * cell, gy + by * cell)], rgb, width, EVIDENCE)


def _signboard(sc, rng, x0, y0, x1, y1, vertical):
    bg = _pick(rng, ACCENT)
    ink = _contrast(rng, ACCENT, bg)
    sc.rect(x0, y0, x1, y1, bg, EVIDENCE)
    if rng.random() < .5:  # frame
        fw = 0.06 * min(x1 - x0, y1 - y0)
        sc.line([(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)], ink, fw, EVIDENCE)
    side = (x1 - x0) if vertical else (y1 - y0)
    cell = side * .7
    along = (y1 - y0) if vertical else (x1 - x0)
    n = max(1, int((along - side * .3) / (cell * 1.1)))
    pad = (along - n * cell * 1.1 + cell * .1) / 2
    if vertical:
        _glyphs(sc, rng, x0 + side * .15, y0 + pad, cell, n, True, ink)
    else:
        _glyphs(sc, rng, x0 + pad, y0 + side * .15, cell, n, False, ink)


def _overlaps(box, boxes):
    return any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in boxes)


def _tokyo_item(sc, rng, st, boxes, far):
    kind = rng.choice(3, p=[.5, .3, .2])
    if kind == 0:  # vertical sign sticking out of a side facade, facing the camera
        t = rng.uniform(.35, .95)
        left = rng.random() < .5
        w = rng.uniform(.07, .14) * t * 1.6
        hgt = w * rng.uniform(2.6, 4.5)
        base = st.y(st.floor * rng.uniform(1.2, 2.5), t)
        xf = st.x(st.xl if left else st.xr, t)
        box = (xf, base - hgt, xf + w, base) if left else (xf - w, base - hgt, xf, base)
    else:  # horizontal sign on a far building, or a billboard on its roof
        t = st.t_end
        x0, x1, top = far[rng.integers(len(far))]
        w = min(x1 - x0, rng.uniform(.16, .4))
        hgt = w * rng.uniform(.22, .34)
        cx = rng.uniform(x0, max(x0, x1 - w))
        if kind == 1:
            y = rng.uniform(top + .02, st.y(st.floor * 1.2, t) - hgt) if st.y(st.floor * 1.2, t) - hgt > top + .02 else top
            box = (cx, y, cx + w, y + hgt)
        else:
            box = (cx, top - hgt * 1.5, cx + w, top - hgt * .5)
            legs = _pick(rng, ACCENT[[10, 7]], 8)
            for lx in (cx + w * .2, cx + w * .8):
                sc.line([(lx, top - hgt * .5), (lx, top)], legs, max(.004, w * .03), EVIDENCE)
    if _overlaps(box, boxes):
        return None
    _signboard(sc, rng, *box, vertical=(kind == 0))
    return box, t


def _truss(sc, rng, x0, x1, deck_y, t, rgb, deck_rgb):
    beam = max(.022, .03 * t)
    th = rng.uniform(.2, .4) * t * 1.5
    panels = int(rng.integers(4, 9))
    arch = rng.random() < .35
    xs = np.linspace(x0, x1, panels + 1)
    tops = [deck_y - th * (np.sin(np.pi * (x - x0) / (x1 - x0)) * .6 + .4 if arch else 1.0) for x in xs]
    sc.rect(x0, deck_y, x1, deck_y + beam * 1.6, deck_rgb, EVIDENCE)
    sc.line(list(zip(xs, tops)), rgb, beam, EVIDENCE)
    pratt = rng.random() < .5
    for i in range(panels):
        if pratt:
            sc.line([(xs[i], tops[i]), (xs[i], deck_y)], rgb, beam * .8, EVIDENCE)
            a, b = (i, i + 1) if i < panels / 2 else (i + 1, i)
            sc.line([(xs[a], deck_y), (xs[b], tops[b])], rgb, beam * .8, EVIDENCE)
        else:
            mid = (xs[i] + xs[i + 1]) / 2
            ym = (tops[i] + tops[i + 1]) / 2
            sc.line([(xs[i], deck_y), (mid, ym), (xs[i + 1], deck_y)], rgb, beam * .8, EVIDENCE)
    return (x0, min(tops) - beam, x1, deck_y + beam * 1.6)


def _pittsburgh_item(sc, rng, st, boxes, far):
    kind = rng.choice(3, p=[.45, .3, .25])
    rgb = _pick(rng, ACCENT)
    second = _contrast(rng, ACCENT, rgb, 80)
    if kind == 0:  # truss bridge across the street
        t = rng.uniform(st.t_end * 1.05, .55)
        x0, x1 = st.x(st.xl, t), st.x(st.xr, t)
        deck = st.y(rng.uniform(.45, 1.0), t)
        box = (x0, deck - .45 * t * 1.5, x1, deck + .03)
        if _overlaps(box, boxes):
            return None
        return _truss(sc, rng, x0, x1, deck, t, rgb, second), t
    if kind == 1:  # stairway climbing to a far building or up the sidewalk
        far_end = rng.random() < .5
        t = st.t_end * 1.02 if far_end else rng.uniform(.35, .8)
        w = rng.uniform(.28, .5) * t * 1.6
        if far_end:
            x0 = rng.uniform(st.x(st.xl, t), st.x(st.xr, t) - w)
        else:
            left = rng.random() < .5
            x0 = st.x(st.xl, t) if left else st.x(st.xr, t) - w
        base = st.y(0, t)
        rise = w * rng.uniform(.5, .9)
        box = (x0, base - rise - .2 * t, x0 + w, base)
        if _overlaps(box, boxes):
            return None
        steps = int(rng.integers(6, 12))
        up_right = rng.random() < .5
        pts = [(x0, base)] if up_right else [(x0 + w, base)]
        for i in range(steps):
            fx0, fx1 = (i / steps, (i + 1) / steps)
            yy = base - rise * (i + 1) / steps
            xa, xb = (x0 + w * fx0, x0 + w * fx1) if up_right else (x0 + w * (1 - fx0), x0 + w * (1 - fx1))
            pts += [(xa, yy), (xb, yy)]
        pts.append((x0 + w, base) if up_right else (x0, base))
        sc.poly(pts, second, EVIDENCE)
        rail = max(.018, .024 * t)
        lift = .12 * t * 1.6
        a = (x0, base - lift) if up_right else (x0 + w, base - lift)
        b = (x0 + w, base - rise - lift) if up_right else (x0, base - rise - lift)
        sc.line([a, b], rgb, rail, EVIDENCE)
        for f in np.linspace(0, 1, int(rng.integers(3, 6))):
            px, py = a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f
            sc.line([(px, py), (px, py + lift)], rgb, rail * .8, EVIDENCE)
        return box, t
    # railing along a curb, in perspective
    left = rng.random() < .5
    xn = st.cl if left else st.cr
    ta, tb = min(1.0, (1.0 - st.h) / (st.g - st.h)), rng.uniform(st.t_end * 1.2, .5)
    hr = rng.uniform(.22, .34)
    x_near, x_far = st.x(xn, ta), st.x(xn, tb)
    box = (min(x_near, x_far), st.y(hr, ta), max(x_near, x_far), st.y(0, ta))
    if _overlaps(box, boxes):
        return None
    for level, thick in ((hr, .05), (hr * .5, .035)):
        sc.poly([(st.x(xn, ta), st.y(level, ta)), (st.x(xn, tb), st.y(level, tb)),
                 (st.x(xn, tb), st.y(level - thick, tb)), (st.x(xn, ta), st.y(level - thick, ta))], rgb, EVIDENCE)
    for z in np.arange(1 / ta, 1 / tb, rng.uniform(.25, .45)):
        t = 1 / z
        pw = max(.012, .035 * t)
        sc.rect(st.x(xn, t) - pw / 2, st.y(hr, t), st.x(xn, t) + pw / 2, st.y(0, t), rgb, EVIDENCE)
    return box, ta


def _far_row(sc, rng, st) -> list[tuple]:
    """Frontal buildings closing the street; returns their (x0, x1, top)."""
    t = st.t_end
    xa, xb, ground = st.x(st.xl, t) - .05, st.x(st.xr, t) + .05, st.y(0, t)
    cuts = np.sort(rng.uniform(xa, xb, int(rng.integers(1, 4))))
    edges = [xa, *cuts, xb]
    out = []
    for x0, x1 in zip(edges[:-1], edges[1:]):
        top = ground - rng.uniform(.5, 2.6) * t
        rgb = _pick(rng, FACADE)
        sc.rect(x0, top, x1, ground, rgb)
        glass = _jitter(rng, (70, 84, 100), 20)
        fh, wc = st.floor * t, rng.uniform(.03, .06)
        for yy in np.arange(ground - 2 * fh, top + fh * .5, -fh):
            for xx in np.arange(x0 + wc * .3, x1 - wc * .8, wc):
                sc.rect(xx, yy, xx + wc * .55, yy + fh * .55, glass, DETAIL)
        out.append((max(x0, 0.0), min(x1, 1.0), top))
    return [o for o in out if o[1] - o[0] > .12] or [(xa, xb, min(o[2] for o in out))]


def _facades(sc, rng, st, xn):
    """Buildings along one side, from the near plane to the far row."""
    z, z_end = .55, 1 / st.t_end
    while z < z_end:
        z1 = min(z_end, z + rng.uniform(.5, 1.6))
        t0, t1 = 1 / z, 1 / z1
        height = rng.uniform(.55, 2.2)
        rgb = _pick(rng, FACADE)
        quad = lambda ha, hb, ta, tb: [(st.x(xn, ta), st.y(hb, ta)), (st.x(xn, tb), st.y(hb, tb)),  # noqa: E731
                                       (st.x(xn, tb), st.y(ha, tb)), (st.x(xn, ta), st.y(ha, ta))]
        sc.poly(quad(0, height, t0, t1), rgb)
        sc.poly(quad(height - .04, height, t0, t1), tuple(c * .75 for c in rgb), DETAIL)
        glass = _jitter(rng, (64, 80, 98), 22)
        cols = max(1, int(round((z1 - z) / rng.uniform(.22, .4))))
        zs = np.linspace(z, z1, cols + 1)
        for f in range(1, int(height / st.floor)):
            ha = f * st.floor + st.floor * .28
            for za, zb in zip(zs[:-1], zs[1:]):
                ta, tb = 1 / (za + (zb - za) * .25), 1 / (za + (zb - za) * .75)
                if abs(st.x(xn, ta) - st.x(xn, tb)) < .006 or st.y(ha + st.floor * .5, ta) < -.15:
                    continue
                sc.poly(quad(ha, ha + st.floor * .5, ta, tb), glass, DETAIL)
        if rng.random() < .6:  # plain shop front with an awning
            sc.poly(quad(.02, st.floor * .7, t0, t1), _jitter(rng, (50, 58, 70), 15), DETAIL)
            sc.poly(quad(st.floor * .7, st.floor * .9, t0, t1), _pick(rng, ACCENT), DETAIL)
        z = z1


def _ground(sc, rng, st):
    walk = _pick(rng, np.array([(170, 168, 160), (150, 146, 140), (186, 176, 160)]), 10)
    sc.rect(-1, st.h, 2, 3, walk)
    road = _jitter(rng, (84, 84, 88), 12)
    t = st.t_end
    sc.poly([(st.x(st.cl, t), st.y(0, t)), (st.x(st.cr, t), st.y(0, t)), (st.x(st.cr, 3), st.y(0, 3)),
             (st.x(st.cl, 3), st.y(0, 3))], road)
    mark = (225, 222, 200) if rng.random() < .7 else (230, 190, 40)
    xc = (st.cl + st.cr) / 2
    for z in np.arange(.6, 1 / t, .5):
        ta, tb = 1 / z, 1 / (z + .22)
        sc.poly([(st.x(xc - .012, ta), st.y(0, ta)), (st.x(xc + .012, ta), st.y(0, ta)),
                 (st.x(xc + .012, tb), st.y(0, tb)), (st.x(xc - .012, tb), st.y(0, tb))], mark, DETAIL)


def _distractors(sc, rng, st) -> list[tuple]:
    """Trees, poles and cars of both cities, as (depth, callable) to be drawn far to near."""
    items = []
    for _ in range(rng.integers(0, 4)):  # trees on the sidewalks
        t, left = rng.uniform(st.t_end * 1.3, 1.0), rng.random() < .5
        x = st.x((st.xl + st.cl) / 2 if left else (st.xr + st.cr) / 2, t)
        g, trunk, crown = st.y(0, t), _jitter(rng, (90, 66, 48), 10), _pick(rng, GREENS, 12)
        r = rng.uniform(.13, .22) * t * 1.4
        blobs = [(x + rng.uniform(-r, r) * .7, g - .5 * t - rng.uniform(0, r), r * rng.uniform(.6, 1)) for _ in range(4)]
        items.append((t, lambda x=x, g=g, t=t, trunk=trunk, crown=crown, blobs=blobs: (
            sc.rect(x - .012 * t, g - .5 * t, x + .012 * t, g, trunk),
            [sc.ellipse(bx - br, by - br, bx + br, by + br, crown) for bx, by, br in blobs])))
    pole_rgb = _pick(rng, np.array([(70, 72, 76), (58, 80, 62), (120, 120, 118)]), 8)
    wires = rng.random() < .5
    for _ in range(rng.integers(0, 4)):  # poles with a lamp arm
        t, left = rng.uniform(st.t_end * 1.3, 1.0), rng.random() < .5
        x, g = st.x(st.cl - .03 if left else st.cr + .03, t), st.y(0, t)
        top, arm = g - rng.uniform(.8, 1.2) * t, (.12 if left else -.12) * t
        items.append((t, lambda x=x, g=g, t=t, top=top, arm=arm: (
            sc.rect(x - .008 * t, top, x + .008 * t, g, pole_rgb),
            sc.line([(x, top + .03 * t), (x + arm, top)], pole_rgb, .006 * t))))
    if wires:
        hw = rng.uniform(1.0, 1.3)
        for xn in (st.cl - .03, st.cr + .03):
            items.append((1.0, lambda xn=xn: sc.line([(st.x(xn, 1.5), st.y(hw, 1.5)), (st.x(xn, st.t_end), st.y(hw, st.t_end))],
                                                     (40, 40, 44), .003)))
    for _ in range(rng.integers(0, 4)):  # cars seen from behind
        t = rng.uniform(st.t_end * 1.2, .9)
        lane = rng.uniform(.25, .75)
        x, g = st.x(st.cl + (st.cr - st.cl) * lane, t), st.y(0, t)
        w, body = .34 * t, _pick(rng, CARS, 10)
        items.append((t, lambda x=x, g=g, t=t, w=w, body=body: (
            sc.rect(x - w * .45, g - .05 * t, x - w * .3, g, (24, 24, 26)),
            sc.rect(x + w * .3, g - .05 * t, x + w * .45, g, (24, 24, 26)),
            sc.rect(x - w / 2, g - .2 * t, x + w / 2, g - .04 * t, body),
            sc.poly([(x - w * .38, g - .2 * t), (x + w * .38, g - .2 * t), (x + w * .3, g - .3 * t), (x - w * .3, g - .3 * t)], body),
            sc.poly([(x - w * .32, g - .205 * t), (x + w * .32, g - .205 * t), (x + w * .26, g - .285 * t),
                     (x - w * .26, g - .285 * t)], (50, 58, 66), DETAIL),
            sc.rect(x - w * .46, g - .16 * t, x - w * .36, g - .12 * t, (200, 30, 30), DETAIL),
            sc.rect(x + w * .36, g - .16 * t, x + w * .46, g - .12 * t, (200, 30, 30), DETAIL))))
    return items


def _sky(rng, cloudy):
    if cloudy:
        top, bottom = _jitter(rng, (128, 130, 138), 12), _jitter(rng, (196, 198, 202), 10)
    else:
        top, bottom = _jitter(rng, (46, 106, 196), 14), _jitter(rng, (168, 206, 240), 10)
    return top, bottom


def _clouds(sc, rng, st, cloudy):
    n = rng.integers(6, 14) if cloudy else rng.integers(0, 3)
    for _ in range(n):
        cx, cy = rng.uniform(-.1, 1.1), rng.uniform(-.05, st.h * .8)
        r = rng.uniform(.05, .14) if cloudy else rng.uniform(.02, .05)
        shade = rng.uniform(150, 222) if cloudy else rng.uniform(236, 250)
        for _ in range(rng.integers(3, 6)):
            ox, oy, rr = rng.uniform(-1.5, 1.5) * r, rng.uniform(-.4, .4) * r, r * rng.uniform(.6, 1.1)
            sc.ellipse(cx + ox - rr * 1.4, cy + oy - rr * .7, cx + ox + rr * 1.4, cy + oy + rr * .7,
                       (shade, shade, shade + (3 if cloudy else 4)), SKY)


def build_scene(rng: np.random.Generator, city: str, cloudy: bool) -> Scene:
    """One place of ``city`` ("pittsburgh" or "tokyo") under a clear or cloudy sky."""
    st = Street(rng)
    top, bottom = _sky(rng, cloudy)
    sc = Scene(st.h, top, bottom, cloudy)
    _clouds(sc, rng, st, cloudy)
    _ground(sc, rng, st)
    far = _far_row(sc, rng, st)
    _facades(sc, rng, st, st.xl)
    _facades(sc, rng, st, st.xr)
    # Evidence until it covers a target fraction drawn from one distribution for both cities.
    target = rng.uniform(.06, .14)
    item = _tokyo_item if city == "tokyo" else _pittsburgh_item
    boxes: list[tuple] = []
    layers: list[tuple] = []
    for attempt in range(24):
        sub = Scene(sc.horizon, top, bottom, cloudy)
        made = item(sub, rng, st, boxes, far)
        if made is None:
            continue
        covered = evidence_fraction([op for _, ops in layers for op in ops] + sub.ops)
        if covered > target * 1.5 and attempt < 16:
            continue  # too big for this place: try a smaller one
        boxes.append(made[0])
        layers.append((made[1], sub.ops))
        if covered >= target and len(layers) >= 2:
            break
    items = _distractors(sc, rng, st)
    for depth, ops in layers:
        items.append((depth, lambda ops=ops: sc.ops.extend(ops)))
    for _, draw in sorted(items, key=lambda it: it[0]):
        draw()
    return sc

