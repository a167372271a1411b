"""The SVG picture of a graph: the layered layout, and a safe, standalone document."""

from __future__ import annotations

import itertools
import random
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrate._plan import Plan, build_plan
from orchestrate._spec import LLMStep, ModelSettings, Workflow
from orchestrate._svg import (
    count_crossings,
    graph_svg,
    layout,
    order_ranks,
    rank_nodes,
)
from orchestrate._validate import load_workflow

SVG = "{http://www.w3.org/2000/svg}"


def generated(needs: list[list[int]]) -> Workflow:
    """A workflow whose step i (`s0`, `s1`...) needs the steps listed at needs[i]."""
    steps = [
        LLMStep(id=f"s{i}", prompt="x", needs=tuple(f"s{d}" for d in deps))
        for i, deps in enumerate(needs)
    ]
    return Workflow(name="generated", steps=tuple(steps))


def chain(n: int) -> Workflow:
    return generated([[]] + [[i - 1] for i in range(1, n)])


def fan_out(n: int) -> Workflow:
    return generated([[]] + [[0]] * (n - 1))


def fan_in(n: int) -> Workflow:
    return generated([[]] * (n - 1) + [list(range(n - 1))])


def lattice(width: int, height: int) -> Workflow:
    """Rows of `width` steps, each needing the step above it and the one above-left."""
    return generated(
        [
            [] if row == 0 else [(row - 1) * width + c for c in (col - 1, col) if c >= 0]
            for row in range(height)
            for col in range(width)
        ]
    )


def random_dag(n: int, seed: int) -> Workflow:
    """Each step needs up to 3 of the 12 steps before it, in a shuffled file order."""
    rng = random.Random(seed)
    needs = [rng.sample(range(max(0, i - 12), i), rng.randint(0, min(3, i))) for i in range(n)]
    return generated(needs)


SHAPES = {
    "chain of 60": chain(60),
    "fan-out of 60": fan_out(60),
    "fan-in of 60": fan_in(60),
    "lattice 10x6": lattice(10, 6),
    **{f"random 60, seed {seed}": random_dag(60, seed) for seed in range(4)},
    "random 200": random_dag(200, 7),
}
TREES = ("chain of 60", "fan-out of 60", "fan-in of 60")


def planned(workflow: Workflow) -> Plan:
    return build_plan(workflow)


@pytest.mark.parametrize("name", SHAPES)
def test_every_edge_goes_to_the_next_rank(name: str) -> None:
    """Ranks follow the dependencies, and dummies split long edges into one-rank steps."""
    plan = planned(SHAPES[name])
    ranked = rank_nodes(plan.order, plan.edges)
    rank_of = {node: r for r, rank in enumerate(ranked.ranks) for node in rank}
    for (source, target), nodes in ranked.chains.items():
        assert rank_of[source] < rank_of[target]
        assert [rank_of[n] for n in nodes] == list(range(rank_of[source], rank_of[target] + 1))
    for node, lower in ranked.below.items():
        assert all(rank_of[other] == rank_of[node] + 1 for other in lower)


def test_a_source_sits_just_before_its_first_dependent() -> None:
    """A step with no needs, used only late, is ranked next to its user, not at the start."""
    ranked = rank_nodes(["a", "b", "late", "c"], [("a", "b"), ("b", "c"), ("late", "c")])
    assert ranked.ranks == [["a"], ["b", "late"], ["c"]]
    assert ranked.chains["late", "c"] == ["late", "c"]


@pytest.mark.parametrize("name", SHAPES)
def test_ordering_never_adds_crossings(name: str) -> None:
    """The barycenter sweeps keep the ranks' nodes and never end with more crossings."""
    plan = planned(SHAPES[name])
    ranked = rank_nodes(plan.order, plan.edges)
    ordered = order_ranks(ranked)
    assert [sorted(r) for r in ordered] == [sorted(r) for r in ranked.ranks]
    after = count_crossings(ordered, ranked.below)
    assert after <= count_crossings(ranked.ranks, ranked.below)
    if name in TREES:
        assert after == 0


def test_ordering_untangles_a_crossed_pair() -> None:
    """Two parallel edges declared crosswise end up side by side, without their crossing."""
    order, edges = ["a", "b", "y", "x"], [("a", "x"), ("b", "y")]
    ranked = rank_nodes(order, edges)
    assert count_crossings(ranked.ranks, ranked.below) == 1
    assert count_crossings(order_ranks(ranked), ranked.below) == 0


@pytest.mark.parametrize("name", SHAPES)
def test_boxes_never_overlap(name: str) -> None:
    """No two boxes overlap, and every box lies inside the drawing."""
    plan = planned(SHAPES[name])
    sizes = {step_id: (100.0 + 7 * (i % 5), 46.0) for i, step_id in enumerate(plan.order)}
    placed = layout(plan.order, plan.edges, sizes)
    boxes = []
    for step_id, (width, height) in sizes.items():
        main, cross = placed.centres[step_id]
        boxes.append((main - width / 2, cross - height / 2, main + width / 2, cross + height / 2))
    for box in boxes:
        assert box[0] >= 0 and box[1] >= 0
        assert box[2] <= placed.extent[0] and box[3] <= placed.extent[1]
    for a, b in itertools.combinations(boxes, 2):
        assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)


def test_a_chain_is_drawn_as_a_straight_line() -> None:
    """Every step of a chain sits on one line across the ranks."""
    plan = planned(chain(10))
    placed = layout(plan.order, plan.edges, {s: (100.0, 46.0) for s in plan.order})
    assert len({placed.centres[s][1] for s in plan.order}) == 1


def nodes_of(document: str) -> list[ET.Element]:
    return [g for g in ET.fromstring(document).iter(f"{SVG}g") if "node" in g.get("class", "")]


@pytest.mark.parametrize("name", SHAPES)
@pytest.mark.parametrize("direction", ["LR", "TB"])
def test_document_has_each_step_once_and_each_edge(name: str, direction: str) -> None:
    """The SVG parses, with one node per step id and one edge per dependency."""
    workflow = SHAPES[name]
    plan = planned(workflow)
    root = ET.fromstring(graph_svg(workflow, plan, direction=direction))  # type: ignore[arg-type]
    assert root.get("viewBox") == f"0 0 {root.get('width')} {root.get('height')}"
    steps = [g.get("data-step") for g in root.iter(f"{SVG}g") if g.get("data-step")]
    assert sorted(steps) == sorted(workflow.step_ids)
    edges = [
        (p.get("data-from"), p.get("data-to"))
        for p in root.iter(f"{SVG}path")
        if p.get("class") == "edge"
    ]
    assert sorted(edges) == sorted(plan.edges)


def test_statuses_become_classes() -> None:
    """Each node carries its status class and id; steps without one are waiting."""
    workflow = chain(3)
    document = graph_svg(workflow, planned(workflow), statuses={"s1": "running", "s2": "failed"})
    classes = {g.get("id"): g.get("class") for g in nodes_of(document)}
    assert classes == {
        "node-s0": "node status-waiting",
        "node-s1": "node status-running",
        "node-s2": "node status-failed",
    }


def test_an_unknown_status_is_refused() -> None:
    """A status outside the known set is a ValueError, not a stray class."""
    workflow = chain(2)
    with pytest.raises(ValueError, match="'done'"):
        graph_svg(workflow, planned(workflow), statuses={"s0": "done"})


def test_style_colours_each_status_in_light_and_dark() -> None:
    """The embedded style has a rule per status, and a dark variant in a media query."""
    workflow = chain(1)
    style = ET.fromstring(graph_svg(workflow, planned(workflow))).find(f"{SVG}style")
    assert style is not None and style.text is not None
    for status in ("waiting", "queued", "running", "succeeded", "failed", "skipped", "cancelled"):
        assert style.text.count(f".status-{status} {{ --fill") == 2
    assert "@media (prefers-color-scheme: dark)" in style.text


HOSTILE = '</text><script>alert("x")</script>&amp;]]>\x01\x1b'


def test_hostile_text_is_escaped() -> None:
    """Models, names and expressions cannot add elements or break the XML."""
    step = LLMStep(
        id="s0", prompt="x", when=HOSTILE, for_each=HOSTILE, settings=ModelSettings(model=HOSTILE)
    )
    workflow = Workflow(name=HOSTILE, steps=(step,), defaults=ModelSettings(model=HOSTILE))
    document = graph_svg(workflow, planned(workflow))
    root = ET.fromstring(document)
    assert "script" not in {element.tag.removeprefix(SVG) for element in root.iter()}
    assert "<script" not in document
    texts = "".join(root.itertext())
    assert '</text><script>alert("x")</script>' in texts


def test_no_external_references_or_scripts() -> None:
    """The document stands alone: no script, no link outside it, no event handler."""
    workflow = load_workflow(Path(__file__).parent.parent / "workflows" / "code-review.yaml")
    document = graph_svg(workflow, planned(workflow))
    assert "<script" not in document and "href" not in document and " on" not in document
    assert "url(" not in document.replace("url(#orchestrate-arrow)", "")


@pytest.mark.parametrize(
    ("yaml", "detail", "badges"),
    [
        ('prompt: "x"\n    model: m-1', "llm · m-1", []),
        ('prompt: "x"', "llm · gpt-test", []),
        ('function: tools:count\n    when: "true"', "function · count", ["if"]),
        ('workflow: lib/child.yaml\n    for_each: "[1, 2]"', "workflow · child.yaml", ["for each"]),
    ],
)
def test_box_shows_kind_and_what_it_calls(
    write_flow: Callable, yaml: str, detail: str, badges: list[str]
) -> None:
    """A box shows the id, the kind with its model, callable or file, and when/for_each."""
    write_flow("def count(**kwargs):\n    return 1\n", "tools.py")
    write_flow('steps:\n  - id: a\n    prompt: "x"\n', "lib/child.yaml")
    path = write_flow(f"defaults:\n  model: gpt-test\nsteps:\n  - id: one\n    {yaml}\n")
    workflow = load_workflow(path)
    (node,) = nodes_of(graph_svg(workflow, planned(workflow)))
    assert [t.text for t in node.iter(f"{SVG}text") if t.get("class")] == ["one", detail]
    assert [
        t.text
        for g in node.iter(f"{SVG}g")
        if g.get("class") == "badge"
        for t in g.iter(f"{SVG}text")
    ] == badges


def test_graph_command_prints_svg(cli: Callable, write_flow: Callable) -> None:
    """`graph --format svg` prints the document on stdout, LR unless told TB."""
    path = write_flow(
        'steps:\n  - id: a\n    prompt: "x"\n  - id: b\n    needs: [a]\n    prompt: "y"\n'
    )
    result = cli("graph", path, "--format", "svg")
    assert result.exit_code == 0
    wide = ET.fromstring(result.stdout)
    tall = ET.fromstring(cli("graph", path, "-f", "svg", "--direction", "TB").stdout)
    assert float(wide.get("width")) > float(wide.get("height"))
    assert float(tall.get("width")) < float(tall.get("height"))


def test_direction_belongs_to_svg_only(cli: Callable, write_flow: Callable) -> None:
    """`--direction` with another format is a usage error (exit 2), not silently ignored."""
    path = write_flow('steps:\n  - id: a\n    prompt: "x"\n')
    result = cli("graph", path, "-f", "dot", "--direction", "TB")
    assert result.exit_code == 2
    assert "--direction" in result.stderr


def test_an_empty_direction_is_a_usage_error(cli: Callable, write_flow: Callable) -> None:
    """`--direction ''` is exit 2 naming the option, not the default direction."""
    path = write_flow('steps:\n  - id: a\n    prompt: "x"\n')
    result = cli("graph", path, "-f", "svg", "--direction", "")
    assert result.exit_code == 2
    assert "--direction" in result.stderr
    assert result.stdout == ""
