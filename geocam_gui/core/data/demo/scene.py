"""Layout of one place of the demo data set: a street in one-point perspective.

World helpers: depth ``t`` is the perspective scale (1 at the near plane, -> 0 at the
vanishing point); heights are in "near units" (image heights at ``t = 1``) above the ground.
``build_scene`` returns a ``draw.Scene`` ready to be rendered from several views.
"""

from __future__ import annotations

import numpy as np

from geocam_gui.core.data.demo.draw import ACCENT, CARS, DETAIL, FACADE, GREENS, SKY, Scene, _jitter, _pick
from geocam_gui.core.data.demo.evidence import evidence_layers

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
                sc.rect(xx, yy, xx + wc * .55, yy + fh * .55, glass, DETAIL, "window")
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
                sc.poly(quad(ha, ha + st.floor * .5, ta, tb), glass, DETAIL, "window")
        if rng.random() < .6:  # plain shop front with an awning
            sc.poly(quad(.02, st.floor * .7, t0, t1), _jitter(rng, (50, 58, 70), 15), DETAIL, "shop_front")
            sc.poly(quad(st.floor * .7, st.floor * .9, t0, t1), _pick(rng, ACCENT), DETAIL, "awning")
        z = z1


def _ground(sc, rng, st):
    walk = _pick(rng, np.array([(170, 168, 160), (150, 146, 140), (186, 176, 160)]), 10)
    sc.rect(-1, st.h, 2, 3, walk, 0, "sidewalk")
    road = _jitter(rng, (84, 84, 88), 12)
    t = st.t_end
    sc.poly([(st.x(st.cl, t), st.y(0, t)), (st.x(st.cr, t), st.y(0, t)), (st.x(st.cr, 3), st.y(0, 3)),
             (st.x(st.cl, 3), st.y(0, 3))], road, 0, "road")
    mark = (225, 222, 200) if rng.random() < .7 else (230, 190, 40)
    xc = (st.cl + st.cr) / 2
    for z in np.arange(.6, 1 / t, .5):
        ta, tb = 1 / z, 1 / (z + .22)
        sc.poly([(st.x(xc - .012, ta), st.y(0, ta)), (st.x(xc + .012, ta), st.y(0, ta)),
                 (st.x(xc + .012, tb), st.y(0, tb)), (st.x(xc - .012, tb), st.y(0, tb))], mark, DETAIL, "road_marking")


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
            sc.rect(x - .012 * t, g - .5 * t, x + .012 * t, g, trunk, 0, "tree"),
            [sc.ellipse(bx - br, by - br, bx + br, by + br, crown, 0, "tree") for bx, by, br in blobs])))
    pole_rgb = _pick(rng, np.array([(70, 72, 76), (58, 80, 62), (120, 120, 118)]), 8)
    wires = rng.random() < .5
    for _ in range(rng.integers(0, 4)):  # poles with a lamp arm
        t, left = rng.uniform(st.t_end * 1.3, 1.0), rng.random() < .5
        x, g = st.x(st.cl - .03 if left else st.cr + .03, t), st.y(0, t)
        top, arm = g - rng.uniform(.8, 1.2) * t, (.12 if left else -.12) * t
        items.append((t, lambda x=x, g=g, t=t, top=top, arm=arm: (
            sc.rect(x - .008 * t, top, x + .008 * t, g, pole_rgb, 0, "pole"),
            sc.line([(x, top + .03 * t), (x + arm, top)], pole_rgb, .006 * t, 0, "pole"))))
    if wires:
        hw = rng.uniform(1.0, 1.3)
        for xn in (st.cl - .03, st.cr + .03):
            items.append((1.0, lambda xn=xn: sc.line([(st.x(xn, 1.5), st.y(hw, 1.5)), (st.x(xn, st.t_end), st.y(hw, st.t_end))],
                                                     (40, 40, 44), .003, 0, "wire")))
    for _ in range(rng.integers(0, 4)):  # cars seen from behind
        t = rng.uniform(st.t_end * 1.2, .9)
        lane = rng.uniform(.25, .75)
        x, g = st.x(st.cl + (st.cr - st.cl) * lane, t), st.y(0, t)
        w, body = .34 * t, _pick(rng, CARS, 10)
        items.append((t, lambda x=x, g=g, t=t, w=w, body=body: (
            sc.rect(x - w * .45, g - .05 * t, x - w * .3, g, (24, 24, 26), 0, "car"),
            sc.rect(x + w * .3, g - .05 * t, x + w * .45, g, (24, 24, 26), 0, "car"),
            sc.rect(x - w / 2, g - .2 * t, x + w / 2, g - .04 * t, body, 0, "car"),
            sc.poly([(x - w * .38, g - .2 * t), (x + w * .38, g - .2 * t), (x + w * .3, g - .3 * t), (x - w * .3, g - .3 * t)],
                    body, 0, "car"),
            sc.poly([(x - w * .32, g - .205 * t), (x + w * .32, g - .205 * t), (x + w * .26, g - .285 * t),
                     (x - w * .26, g - .285 * t)], (50, 58, 66), DETAIL, "car"),
            sc.rect(x - w * .46, g - .16 * t, x - w * .36, g - .12 * t, (200, 30, 30), DETAIL, "car"),
            sc.rect(x + w * .36, g - .16 * t, x + w * .46, g - .12 * t, (200, 30, 30), DETAIL, "car"))))
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
                       (shade, shade, shade + (3 if cloudy else 4)), SKY, "cloud")


def build_scene(rng: np.random.Generator, city: str, cloudy: bool, layout: str = "any") -> Scene:
    """One place of ``city`` ("pittsburgh" or "tokyo") under a clear or cloudy sky, its evidence
    laid out by ``layout`` (see ``evidence.LAYOUTS``).

    ``rng`` first gives three seeds: the street, the sky and the evidence each have their own
    generator, so the same ``rng`` state gives the same street under either sky and with any
    layout (views of one place may differ in sky or layout only).
    """
    street_seed, sky_seed, evidence_seed = (int(v) for v in rng.integers(2 ** 62, size=3))
    street_rng = np.random.default_rng(street_seed)
    sky_rng = np.random.default_rng([sky_seed, int(cloudy)])
    st = Street(street_rng)
    top, bottom = _sky(sky_rng, cloudy)
    sc = Scene(st.h, top, bottom, cloudy)
    _clouds(sc, sky_rng, st, cloudy)
    _ground(sc, street_rng, st)
    _far_row(sc, street_rng, st)
    _facades(sc, street_rng, st, st.xl)
    _facades(sc, street_rng, st, st.xr)
    items = _distractors(sc, street_rng, st)
    layers = evidence_layers(np.random.default_rng(evidence_seed), city, layout, st.h, (top, bottom, cloudy))
    for depth, ops in layers:
        items.append((depth, lambda ops=ops: sc.ops.extend(ops)))
    for _, draw in sorted(items, key=lambda it: it[0]):
        draw()
    return sc
