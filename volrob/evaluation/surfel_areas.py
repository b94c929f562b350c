"""Area of the surface inside one cell of the voxel-corner grid, for each of the 256 neighbour codes.

A point of the corner grid sits between 2 x 2 x 2 voxels. Its *neighbour code* has bit ``128 >> (4a + 2b + c)``
set when the voxel at offset ``(a, b, c)`` (a along array axis 0) is inside the mask, so code 0 is all outside and
255 all inside. Inside the cell whose corners are those 8 voxel centres, the surface is the marching-cubes surface:

- its vertices are the midpoints of the cell edges that join an inside and an outside corner;
- on each face of the cell the vertices are joined in pairs by segments that cut off the inside corners; on a
  face with two diagonally opposite inside corners, each of them is cut off on its own;
- a code with more than four inside corners has the surface of its complement (the same surface, seen from the
  other side), so a code and its complement always have the same area;
- the closed loops of segments are the polygons of the surface; each (possibly non-planar) polygon is split into
  the triangles of its largest-area triangulation in voxel units.

The triangles' area vectors ``(q - p) x (r - p) / 2`` are kept; with voxel spacing ``(s0, s1, s2)`` a vector
``(v0, v1, v2)`` becomes ``(v0 s1 s2, v1 s0 s2, v2 s0 s1)`` and its length is the triangle's area in mm². These are
the surface-element areas of DeepMind's surface-distance package, which the official BraTS 2023+ metrics use; the
tests check all 256 codes against MONAI's copy of that table at several spacings.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import cache

import numpy as np

from volrob.evaluation.surface import check_spacing

CORNERS: tuple[tuple[int, int, int], ...] = tuple(itertools.product((0, 1), repeat=3))  # type: ignore[assignment]
"""Voxel offsets around a corner-grid point, in the order of their bits (``CORNERS[i]`` has bit ``128 >> i``)."""

Corner = tuple[int, int, int]
Edge = tuple[Corner, Corner]


def corner_bit(corner: Corner) -> int:
    """The neighbour-code bit of the voxel at offset ``corner``."""
    a, b, c = corner
    return 128 >> (4 * a + 2 * b + c)


def _faces() -> list[list[Corner]]:
    """The six faces of the cell, each as its four corners in cyclic order."""
    faces = []
    for axis in range(3):
        u, w = (i for i in range(3) if i != axis)
        for side in (0, 1):
            cycle = []
            for pu, pw in ((0, 0), (0, 1), (1, 1), (1, 0)):
                corner = [0, 0, 0]
                corner[axis], corner[u], corner[w] = side, pu, pw
                cycle.append((corner[0], corner[1], corner[2]))
            faces.append(cycle)
    return faces


FACES = _faces()


def _edge(p: Corner, q: Corner) -> Edge:
    return (p, q) if p < q else (q, p)


def _face_segments(face: list[Corner], inside: frozenset[Corner]) -> list[tuple[Edge, Edge]]:
    """Pairs of crossing edges joined on one face, cutting off each inside corner (or run of them)."""
    flags = [c in inside for c in face]
    crossings = [_edge(face[i], face[(i + 1) % 4]) for i in range(4) if flags[i] != flags[(i + 1) % 4]]
    if len(crossings) == 2:
        return [(crossings[0], crossings[1])]
    if not crossings:
        return []
    return [(_edge(face[i - 1], face[i]), _edge(face[i], face[(i + 1) % 4])) for i in range(4) if flags[i]]


def polygons(code: int) -> list[list[np.ndarray]]:
    """The surface polygons of ``code`` in the unit cell, each a loop of edge midpoints."""
    inside = frozenset(c for c in CORNERS if code & corner_bit(c))
    if len(inside) > 4:
        inside = frozenset(CORNERS) - inside
    links: dict[Edge, list[Edge]] = {}
    for face in FACES:
        for a, b in _face_segments(face, inside):
            links.setdefault(a, []).append(b)
            links.setdefault(b, []).append(a)
    loops, seen = [], set()
    for start in links:
        if start in seen:
            continue
        loop, previous, current = [start], None, start
        seen.add(start)
        while True:
            nxt = next(e for e in links[current] if e != previous) if previous is not None else links[current][0]
            if nxt == start:
                break
            loop.append(nxt)
            seen.add(nxt)
            previous, current = current, nxt
        loops.append([(np.array(p, float) + np.array(q, float)) / 2.0 for p, q in loop])
    return loops


@cache
def _triangulations(vertices: tuple[int, ...]) -> list[list[tuple[int, int, int]]]:
    """Every triangulation of the polygon with these vertex indices (in order)."""
    if len(vertices) < 3:
        return [[]]
    first, last = vertices[0], vertices[-1]
    out = []
    for k in range(1, len(vertices) - 1):
        for left in _triangulations(vertices[: k + 1]):
            for right in _triangulations(vertices[k:]):
                out.append([*left, *right, (first, vertices[k], last)])
    return out


def _area_vector(p: np.ndarray, q: np.ndarray, r: np.ndarray) -> np.ndarray:
    return np.cross(q - p, r - p) / 2.0


def _largest_triangulation(polygon: list[np.ndarray]) -> list[np.ndarray]:
    """Area vectors of the triangulation of ``polygon`` with the largest total area (first one on ties)."""
    best: list[np.ndarray] = []
    best_area = -1.0
    for triangles in _triangulations(tuple(range(len(polygon)))):
        vectors = [_area_vector(polygon[i], polygon[j], polygon[k]) for i, j, k in triangles]
        area = sum(float(np.linalg.norm(v)) for v in vectors)
        if area > best_area + 1e-12:
            best, best_area = vectors, area
    return best


@cache
def area_vectors() -> np.ndarray:
    """``(256, T, 3)`` area vectors of each code's triangles in voxel units (zero rows pad to ``T``)."""
    per_code = [[v for poly in polygons(code) for v in _largest_triangulation(poly)] for code in range(256)]
    table = np.zeros((256, max(len(v) for v in per_code), 3))
    for code, vectors in enumerate(per_code):
        if vectors:
            table[code, : len(vectors)] = vectors
    table.setflags(write=False)
    return table


def code_areas(spacing: Sequence[float]) -> np.ndarray:
    """``(256,)`` surface area (mm²) inside a corner-grid cell for each neighbour code, at voxel ``spacing``."""
    s0, s1, s2 = check_spacing(spacing, 3)
    scale = np.array([s1 * s2, s0 * s2, s0 * s1])
    return np.linalg.norm(area_vectors() * scale, axis=-1).sum(axis=-1)
