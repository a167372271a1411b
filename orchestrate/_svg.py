"""A workflow's graph as a standalone SVG picture, laid out in layers (Sugiyama style).

`orchestrate graph --format svg` prints it and the web view draws it on its workflow and
run pages, where a script recolours a step by swapping its `status-*` class.

The layout has four stages: each step goes in the rank of its longest path from a source;
an edge that spans several ranks gets a dummy node in every rank between, so that each
edge joins neighbouring ranks; sweeps of the barycenter heuristic reorder the ranks to cut
crossings; then each node is pulled towards its neighbours (least squares under the
minimum gaps), which straightens the edges. Sizes and positions are measured along the
ranks ("main": x for LR, y for TB) and across them ("cross"), so one layout serves both.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import PurePath
from typing import Literal

import attrs

from orchestrate._plan import Plan
from orchestrate._spec import AnyStep, FunctionStep, LLMStep, ModelSettings, Workflow

Direction = Literal["LR", "TB"]
Point = tuple[float, float]  # (main, cross)

RANK_GAP = 64  # between ranks: room for the curves and arrowheads
NODE_GAP = 22  # between two boxes of a rank
EDGE_GAP = 10  # between two edges passing through a rank; twice that to a box
MARGIN = 18
SWEEPS = 4  # of crossing reduction, each down then up
STRAIGHTENING_PASSES = 8


# --- layout ----------------------------------------------------------------------------------


@attrs.frozen
class Ranked:
    """Nodes by rank, dummies included, and the edges between neighbouring ranks."""

    ranks: list[list[str]]
    above: dict[str, list[str]]  # node -> its neighbours in the rank before
    below: dict[str, list[str]]  # node -> its neighbours in the rank after
    chains: dict[tuple[str, str], list[str]]  # edge -> its nodes, source to target


def rank_nodes(order: Sequence[str], edges: Sequence[tuple[str, str]]) -> Ranked:
    """Rank each node by its longest path from a source; `order` must be topological.

    A source then moves up to the rank just before its first dependent, so that a step
    used late does not pull a long edge across the whole picture.
    """
    incoming: dict[str, list[str]] = {node: [] for node in order}
    outgoing: dict[str, list[str]] = {node: [] for node in order}
    for source, target in edges:
        incoming[target].append(source)
        outgoing[source].append(target)
    rank: dict[str, int] = {}
    for node in order:
        rank[node] = max((rank[source] + 1 for source in incoming[node]), default=0)
    for node in order:
        if not incoming[node] and outgoing[node]:
            rank[node] = min(rank[target] for target in outgoing[node]) - 1
    ranks: list[list[str]] = [[] for _ in range(max(rank.values(), default=-1) + 1)]
    for node in order:
        ranks[rank[node]].append(node)
    above: dict[str, list[str]] = {node: [] for node in order}
    below: dict[str, list[str]] = {node: [] for node in order}
    chains: dict[tuple[str, str], list[str]] = {}
    for source, target in edges:
        # "->" cannot occur in a step id, so a dummy's name never clashes with a node's.
        dummies = [f"{source}->{target}#{r}" for r in range(rank[source] + 1, rank[target])]
        for r, dummy in enumerate(dummies, rank[source] + 1):
            ranks[r].append(dummy)
            above[dummy], below[dummy] = [], []
        chain = chains[source, target] = [source, *dummies, target]
        for upper, lower in itertools.pairwise(chain):
            below[upper].append(lower)
            above[lower].append(upper)
    return Ranked(ranks, above, below, chains)


def count_crossings(ranks: Sequence[Sequence[str]], below: Mapping[str, list[str]]) -> int:
    """How many pairs of edges cross between neighbouring ranks in this order."""
    total = 0
    for upper, lower in itertools.pairwise(ranks):
        where = {node: i for i, node in enumerate(lower)}
        seen: list[int] = []  # sorted targets of the edges from nodes further up the rank
        for node in upper:
            targets = sorted([where[other] for other in below[node]])
            for target in targets:
                total += len(seen) - bisect.bisect_right(seen, target)
            for target in targets:
                bisect.insort(seen, target)
    return total


def order_ranks(ranked: Ranked) -> list[list[str]]:
    """The ranks reordered by barycenter sweeps; the order with the fewest crossings wins."""
    current = [list(rank) for rank in ranked.ranks]
    best, fewest = [list(rank) for rank in current], count_crossings(current, ranked.below)
    for sweep in range(2 * SWEEPS):
        if fewest == 0:
            break
        if sweep % 2 == 0:
            for r in range(1, len(current)):
                current[r] = _by_barycenter(current[r], current[r - 1], ranked.above)
        else:
            for r in range(len(current) - 2, -1, -1):
                current[r] = _by_barycenter(current[r], current[r + 1], ranked.below)
        crossings = count_crossings(current, ranked.below)
        if crossings < fewest:
            best, fewest = [list(rank) for rank in current], crossings
    return best


def _by_barycenter(
    rank: list[str], fixed: list[str], neighbours: Mapping[str, list[str]]
) -> list[str]:
    """`rank` sorted by the mean position of each node's neighbours in the `fixed` rank."""
    where = {node: i for i, node in enumerate(fixed)}

    def barycenter(item: tuple[int, str]) -> float:
        index, node = item
        near = [where[other] for other in neighbours[node]]
        return sum(near) / len(near) if near else index  # a node with no neighbour stays

    return [node for _, node in sorted(enumerate(rank), key=barycenter)]


@attrs.frozen
class Layout:
    ranks: list[list[str]]  # in their final order, dummies included
    centres: dict[str, Point]  # of every node, dummies too
    rank_of: dict[str, int]
    spans: list[tuple[float, float]]  # where each rank starts and ends along the main axis
    extent: Point  # the size of the whole drawing
    chains: dict[tuple[str, str], list[str]]


def layout(
    order: Sequence[str], edges: Sequence[tuple[str, str]], sizes: Mapping[str, Point]
) -> Layout:
    """Place the nodes of a DAG; `sizes` gives each node's (main, cross) size."""
    ranked = rank_nodes(order, edges)
    ranks = order_ranks(ranked)

    def size(node: str) -> Point:
        return sizes.get(node, (0.0, 0.0))

    spans: list[tuple[float, float]] = []
    start = float(MARGIN)
    for rank in ranks:
        depth = max(size(node)[0] for node in rank)
        spans.append((start, start + depth))
        start += depth + RANK_GAP
    gaps = [
        [
            (size(a)[1] + size(b)[1]) / 2 + _gap(a in sizes, b in sizes)
            for a, b in itertools.pairwise(rank)
        ]
        for rank in ranks
    ]
    cross: dict[str, float] = {}
    for rank, rank_gaps in zip(ranks, gaps, strict=True):
        cross.update(zip(rank, _spread([0.0] * len(rank), rank_gaps), strict=True))
    for sweep in range(STRAIGHTENING_PASSES):
        neighbours = ranked.above if sweep % 2 == 0 else ranked.below
        indices = range(len(ranks)) if sweep % 2 == 0 else range(len(ranks) - 1, -1, -1)
        for r in indices:
            wanted = [
                sum(cross[o] for o in near) / len(near)
                if (near := neighbours[node])
                else cross[node]
                for node in ranks[r]
            ]
            cross.update(zip(ranks[r], _spread(wanted, gaps[r]), strict=True))
    low = min((cross[n] - size(n)[1] / 2 for n in cross), default=0.0)
    high = max((cross[n] + size(n)[1] / 2 for n in cross), default=0.0)
    centres = {
        node: ((spans[r][0] + spans[r][1]) / 2, cross[node] - low + MARGIN)
        for r, rank in enumerate(ranks)
        for node in rank
    }
    extent = (start - RANK_GAP + MARGIN if ranks else 2.0 * MARGIN, high - low + 2 * MARGIN)
    rank_of = {node: r for r, rank in enumerate(ranks) for node in rank}
    return Layout(ranks, centres, rank_of, spans, extent, ranked.chains)


def _gap(box: bool, other_box: bool) -> float:
    """The room between neighbours across a rank, boxes or edges passing through."""
    return NODE_GAP if box and other_box else EDGE_GAP * (1 + box + other_box)


def _spread(wanted: list[float], gaps: list[float]) -> list[float]:
    """The positions closest to `wanted` (least squares) that keep at least `gaps` apart.

    Subtracting each item's minimum offset from the first turns the gaps into "never
    decreasing", which pool-adjacent-violators solves exactly in one pass.
    """
    if len(wanted) == 1:  # most ranks of a long chain: nothing to keep apart
        return wanted
    offsets = list(itertools.accumulate(gaps, initial=0.0))
    means: list[float] = []  # of the blocks of items merged so far, and their sizes
    counts: list[int] = []
    for want, offset in zip(wanted, offsets, strict=True):
        mean, count = want - offset, 1
        while means and means[-1] > mean:
            previous, merged = means.pop(), counts.pop()
            mean = (previous * merged + mean * count) / (merged + count)
            count += merged
        means.append(mean)
        counts.append(count)
    levels = [mean for mean, count in zip(means, counts, strict=True) for _ in range(count)]
    return [level + offset for level, offset in zip(levels, offsets, strict=True)]


# --- drawing ---------------------------------------------------------------------------------

BOX_HEIGHT = 46
PADDING = 14
MAX_CHARS = 30
ID_CHAR_WIDTH = 8.0  # average advance at 13px semibold; generous, so text fits the box
DETAIL_CHAR_WIDTH = 6.6  # at 11px
# fill, stroke: light, then dark (prefers-color-scheme)
_COLOURS = {
    "waiting": ("#f6f8fa", "#8c959f", "#161b22", "#6e7681"),
    "queued": ("#f6f8fa", "#8c959f", "#161b22", "#6e7681"),
    "running": ("#ddf4ff", "#0969da", "#0c2d6b", "#4493f8"),
    "succeeded": ("#dafbe1", "#1a7f37", "#0f2f1a", "#3fb950"),
    "failed": ("#ffebe9", "#cf222e", "#3d1114", "#f85149"),
    "skipped": ("#f6f8fa", "#8c959f", "#161b22", "#6e7681"),
    "cancelled": ("#fff8c5", "#bf8700", "#2e2400", "#d29922"),
}
STATUSES = tuple(_COLOURS)
_STYLE = """
svg.orchestrate-graph { --text: #1f2328; --muted: #59636e; --edge: #8c959f; --bg: #ffffff;
  background: var(--bg); font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
.orchestrate-graph .box, .orchestrate-graph .stack { fill: var(--fill); stroke: var(--stroke);
  stroke-width: 1.5; }
.orchestrate-graph .status-running .box { stroke-width: 2.5; }
.orchestrate-graph .status-skipped .box { stroke-dasharray: 5 4; }
.orchestrate-graph .status-skipped text { opacity: 0.7; }
.orchestrate-graph .id { font-size: 13px; font-weight: 600; fill: var(--text); }
.orchestrate-graph .detail { font-size: 11px; fill: var(--muted); }
.orchestrate-graph .badge rect { fill: var(--bg); stroke: var(--stroke); }
.orchestrate-graph .badge text { font-size: 10px; font-weight: 600; fill: var(--muted); }
.orchestrate-graph .edge { fill: none; stroke: var(--edge); stroke-width: 1.5; }
.orchestrate-graph .arrow { fill: var(--edge); }
"""
_DARK = """svg.orchestrate-graph { --text: #e6edf3; --muted: #9198a1; --edge: #6e7681;
  --bg: #0d1117; }"""
_ENTITIES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})
# Characters XML 1.0 forbids even escaped; a YAML string can hold them.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def graph_svg(
    workflow: Workflow,
    plan: Plan,
    *,
    direction: Direction = "LR",
    statuses: Mapping[str, str] | None = None,
) -> str:
    """The graph as a standalone SVG document: a box per step, an arrow per dependency.

    Each step is `<g class="node status-STATUS" data-step="ID" id="node-ID">` (status from
    `statuses`, default "waiting") and each edge `<path class="edge" data-from data-to>`.
    """
    statuses = statuses or {}
    unknown = sorted(set(statuses.values()) - set(STATUSES))
    if unknown:
        raise ValueError(f"unknown step status {unknown[0]!r}; expected one of {STATUSES}")
    steps = {step.id: step for step in workflow.steps}
    details = {step.id: _detail(step, workflow.defaults) for step in workflow.steps}
    boxes = {step_id: _box_size(step_id, details[step_id]) for step_id in steps}
    sizes = {i: (w, h) if direction == "LR" else (h, w) for i, (w, h) in boxes.items()}
    placed = layout(plan.order, plan.edges, sizes)

    def xy(point: Point) -> Point:
        return point if direction == "LR" else (point[1], point[0])

    width, height = xy(placed.extent)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="orchestrate-graph" '
        f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'role="img" aria-label="{_escape("workflow " + workflow.name)}">',
        f"<title>{_escape(workflow.name)}</title>",
        f"<style>{_style()}</style>",
        '<defs><marker id="orchestrate-arrow" viewBox="0 0 10 10" refX="9" refY="5" '
        'markerWidth="10" markerHeight="10" markerUnits="userSpaceOnUse" orient="auto">'
        '<path class="arrow" d="M0,1 L10,5 L0,9 z"/></marker></defs>',
    ]
    ports = _ports(placed, sizes)
    for (source, target), chain in placed.chains.items():
        points = _route(placed, chain, ports[source, target], sizes)
        d = "M{:.1f},{:.1f}".format(*xy(points[0])) + "".join(
            _segment(a, b, xy) for a, b in itertools.pairwise(points)
        )
        parts.append(
            f'<path class="edge" data-from="{_escape(source)}" '
            f'data-to="{_escape(target)}" d="{d}" '
            'marker-end="url(#orchestrate-arrow)"/>'
        )
    for step_id in plan.order:
        status = statuses.get(step_id, "waiting")
        centre = xy(placed.centres[step_id])
        parts.append(_node(steps[step_id], details[step_id], centre, boxes[step_id], status))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _route(
    placed: Layout, chain: list[str], ports: list[float], sizes: Mapping[str, Point]
) -> list[Point]:
    """An edge's points: out of its source, straight through each rank it crosses, in."""
    (source_main, source_cross), (target_main, target_cross) = (
        placed.centres[chain[0]],
        placed.centres[chain[-1]],
    )
    points = [(source_main + sizes[chain[0]][0] / 2, source_cross + ports[0])]
    for dummy in chain[1:-1]:
        cross = placed.centres[dummy][1]
        start, end = placed.spans[placed.rank_of[dummy]]
        points += [(start, cross), (end, cross)]
    points.append((target_main - sizes[chain[-1]][0] / 2, target_cross + ports[1]))
    return points


def _ports(placed: Layout, sizes: Mapping[str, Point]) -> dict[tuple[str, str], list[float]]:
    """Where each edge leaves its source and enters its target, off the middle of the side.

    The edges at one side are spread in the order of where they go, so that arrows into a
    box with many inputs stay apart and do not cross there.
    """
    offsets = {edge: [0.0, 0.0] for edge in placed.chains}
    for end, (node_at, other_at) in enumerate(((0, 1), (-1, -2))):
        groups: dict[str, list[tuple[float, tuple[str, str]]]] = {}
        for edge, chain in placed.chains.items():
            groups.setdefault(chain[node_at], []).append((placed.centres[chain[other_at]][1], edge))
        for node, group in groups.items():
            step = min(10.0, sizes[node][1] * 0.6 / max(len(group) - 1, 1))
            for i, (_, edge) in enumerate(sorted(group)):
                offsets[edge][end] = (i - (len(group) - 1) / 2) * step
    return offsets


def _segment(a: Point, b: Point, xy: Callable[[Point], Point]) -> str:
    """A line along the main axis, or a curve that leaves and arrives parallel to it."""
    if abs(a[1] - b[1]) < 0.5:
        return " L{:.1f},{:.1f}".format(*xy(b))
    middle = (a[0] + b[0]) / 2
    return " C{:.1f},{:.1f} {:.1f},{:.1f} {:.1f},{:.1f}".format(
        *xy((middle, a[1])), *xy((middle, b[1])), *xy(b)
    )


def _box_size(step_id: str, detail: str) -> Point:
    chars = max(len(_clip(step_id)) * ID_CHAR_WIDTH, len(_clip(detail)) * DETAIL_CHAR_WIDTH)
    return max(96.0, chars + 2 * PADDING), float(BOX_HEIGHT)


def _detail(step: AnyStep, defaults: ModelSettings) -> str:
    """The second line of a box: the kind, and the model, callable or file it calls."""
    if isinstance(step, LLMStep):
        model = step.settings.model or defaults.model  # as written: a picture of the file
        return f"llm · {model}" if model else "llm"
    if isinstance(step, FunctionStep):
        return f"function · {step.function.rpartition(':')[2]}"
    return f"workflow · {PurePath(step.workflow).name}"


def _node(step: AnyStep, detail: str, centre: Point, box: Point, status: str) -> str:
    (x, y), (width, height) = centre, box
    left, top = x - width / 2, y - height / 2
    rect = f'width="{width:.0f}" height="{height:.0f}" rx="7"'
    tooltip = [step.id, detail]
    tooltip += [f"when: {step.when}"] * (step.when is not None)
    tooltip += [f"for each: {step.for_each}"] * (step.for_each is not None)
    parts = [
        f'<g class="node status-{_escape(status)}" data-step="{_escape(step.id)}" '
        f'id="node-{_escape(step.id)}">',
        f"<title>{_escape(chr(10).join(tooltip))}</title>",
    ]
    if step.for_each is not None:  # a stack of boxes: the step runs once per item
        parts.append(f'<rect class="stack" x="{left + 4:.1f}" y="{top + 4:.1f}" {rect}/>')
    parts += [
        f'<rect class="box" x="{left:.1f}" y="{top:.1f}" {rect}/>',
        f'<text class="id" x="{left + PADDING:.1f}" y="{top + 19:.1f}">{_escape(_clip(step.id))}'
        "</text>",
        f'<text class="detail" x="{left + PADDING:.1f}" y="{top + 35:.1f}">'
        f"{_escape(_clip(detail))}</text>",
    ]
    badges = [
        label
        for label, value in (("for each", step.for_each), ("if", step.when))
        if value is not None
    ]
    right = left + width - 8
    for label in badges:
        badge_width = 10 + 6 * len(label)
        right -= badge_width
        parts.append(
            f'<g class="badge"><rect x="{right:.1f}" y="{top - 8:.1f}" '
            f'width="{badge_width}" height="15" rx="7.5"/><text x="{right + 5:.1f}" '
            f'y="{top + 3:.1f}">{label}</text></g>'
        )
        right -= 4
    parts.append("</g>")
    return "\n".join(parts)


def _style() -> str:
    def rules(which: int) -> str:
        return "\n".join(
            f".orchestrate-graph .node.status-{status} {{ --fill: {colours[which]}; "
            f"--stroke: {colours[which + 1]}; }}"
            for status, colours in _COLOURS.items()
        )

    return f"{_STYLE}{rules(0)}\n@media (prefers-color-scheme: dark) {{\n{_DARK}\n{rules(2)}\n}}\n"


def _clip(text: str) -> str:
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1] + "…"


def _escape(text: str) -> str:
    """Text safe inside an element or a double-quoted attribute, whatever it holds."""
    return _NOT_XML.sub("\ufffd", text).translate(_ENTITIES)
