"""The web view's pages and API through Starlette's test client: data, security, runs."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape

from orchestrate.ui import create_app
from tests.conftest import FAST_THEN_SLOW, SLOW

with warnings.catch_warnings():  # Starlette 1.x would rather have httpx2; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

TOKEN = "secret-test-token"
BASE = "http://127.0.0.1:8765"
SAME_ORIGIN = {"origin": BASE}

HELLO = """
    name: hello
    description: Greets <img src=x onerror=alert(1)> people
    inputs:
      name: {type: string, description: Who to greet}
      count: {type: integer, default: 2}
      loud: {type: boolean, default: false}
      tags: {type: array, default: []}
    steps:
      - id: greet
        prompt: "Greet {{ inputs.name }}"
        mock: "<script>alert(1)</script> hello {{ inputs.name }}"
      - id: shout
        prompt: "Shout {{ steps.greet.output }}"
        mock: "**HELLO** [docs](https://example.com)"
    outputs:
      text: "{{ steps.shout.output }}"
    """
BROKEN = """
    name: broken
    steps:
      - id: a
        prompt: "{{ steps.nope.output }}"
    """

IDEAS = """
    name: ideas
    inputs:
      tone: {enum: [formal, casual], default: formal, description: How it sounds}
      level: {type: integer, enum: [1, 2, 3]}
    steps:
      - id: ideas
        for_each: "['alpha', 'beta', 'gamma']"
        prompt: "An idea about {{ item }}, {{ inputs.tone }}, level {{ inputs.level }}"
        mock: "idea <b>{{ item }}</b>"
    """
ROWS_FLOW = """
    name: rows
    inputs:
      text: {type: string}
    steps:
      - id: shape
        function: rows:shape
        with: {text: "{{ inputs.text }}"}
      - id: answer
        prompt: "Answer {{ steps.shape.output }}"
        mock: "answer to {{ steps.shape.output }}"
    """
ROWS_PY = """
    def shape(text):
        if text == "bad":
            raise ValueError("this row is <b>bad</b>")
        return text.upper()
    """


@pytest.fixture
def flows(tmp_path: Path, write_flow: Callable[..., Path]) -> Path:
    """A folder with a workflow, a broken one, a slow one and a YAML file that is no workflow."""
    for name, text in (
        ("hello.yaml", HELLO),
        ("sub/broken.yaml", BROKEN),
        ("slow.yaml", FAST_THEN_SLOW),
        ("slow.py", SLOW),
        ("settings.yaml", "colour: blue\n"),
        ("ideas.yaml", IDEAS),
        ("rows.yaml", ROWS_FLOW),
        ("rows.py", ROWS_PY),
    ):
        write_flow(text, f"flows/{name}")
    write_flow(HELLO, "outside.yaml")
    return tmp_path / "flows"


@pytest.fixture
def client(flows: Path) -> Iterator[TestClient]:
    """A client of the app over `flows`, holding the token cookie."""
    with TestClient(create_app([flows], token=TOKEN, port=8765), base_url=BASE) as client:
        assert client.get(f"/?token={TOKEN}").status_code == 200
        yield client


@pytest.fixture
def bare(flows: Path) -> Iterator[TestClient]:
    """A client of the same app without the token."""
    with TestClient(create_app([flows], token=TOKEN, port=8765), base_url=BASE) as client:
        yield client


def start(client: TestClient, workflow: str = "hello.yaml", **body: Any) -> str:
    body = {"workflow": workflow, "inputs": {"name": "Ada"}, "mock": True} | body
    response = client.post("/api/runs", json=body, headers=SAME_ORIGIN)
    assert response.status_code == 201, response.text
    return str(response.json()["run_id"])


def finished(client: TestClient, run_id: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        document = client.get(f"/api/runs/{run_id}").json()
        if document["status"] != "running":
            return dict(document)
        time.sleep(0.02)
    raise AssertionError(f"run {run_id} still running after {timeout} s")


def sse_records(text: str) -> list[dict[str, Any]]:
    """The data of each Server-Sent Event, checking that its type names its record."""
    records = []
    for message in text.strip().split("\n\n"):
        event, data = message.split("\n")
        record = json.loads(data.removeprefix("data: "))
        assert event == f"event: {record['event']}"
        records.append(record)
    return records


# --- access --------------------------------------------------------------------------------

GET_ROUTES = [
    "/",
    "/workflows/hello.yaml",
    "/runs",
    "/batches",
    "/api/workflows",
    "/api/workflows/hello.yaml",
    "/api/runs",
    "/static/ui.css",
]


@pytest.mark.parametrize("path", GET_ROUTES)
def test_every_route_needs_the_token(bare: TestClient, path: str) -> None:
    """Without a token every page, API route and asset is 401 and shows no data."""
    response = bare.get(path)
    assert response.status_code == 401
    assert "hello" not in response.text and "token" in response.text


@pytest.mark.parametrize("path", GET_ROUTES)
def test_a_wrong_token_is_refused(bare: TestClient, path: str) -> None:
    """A wrong token, in the query, a header or the cookie, is 403."""
    assert bare.get(path, params={"token": "nope"}).status_code == 403
    assert bare.get(path, headers={"authorization": "Bearer nope"}).status_code == 403
    bare.cookies.set("orchestrate_ui_8765", "nope")
    assert bare.get(path).status_code == 403


def test_the_token_in_the_address_becomes_a_strict_http_only_cookie(bare: TestClient) -> None:
    """?token= redirects to the same page without it and sets an HttpOnly SameSite cookie."""
    response = bare.get(f"/runs?status=failed&token={TOKEN}", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/runs?status=failed"
    cookie = response.headers["set-cookie"]
    assert f"orchestrate_ui_8765={TOKEN}" in cookie
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    assert bare.get("/runs").status_code == 200


def test_a_bearer_token_opens_the_api(bare: TestClient) -> None:
    """Scripts use `Authorization: Bearer TOKEN`."""
    response = bare.get("/api/workflows", headers={"authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200


@pytest.mark.parametrize("host", ["evil.example:8765", "127.0.0.1:9999", "localhost.evil:8765"])
def test_a_foreign_host_header_is_refused(client: TestClient, host: str) -> None:
    """DNS rebinding: a Host that is not the server's address is refused, token or not."""
    response = client.get("/api/workflows", headers={"host": host})
    assert response.status_code == 400
    assert "hello" not in response.text


def test_localhost_is_the_server_too(client: TestClient) -> None:
    """`localhost:PORT` names the server as `127.0.0.1:PORT` does."""
    assert client.get("/api/workflows", headers={"host": "localhost:8765"}).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"origin": "http://evil.example"},
        {"origin": "http://127.0.0.1:8765.evil.example"},
        {"referer": "http://evil.example/page"},
        {"origin": "null"},
    ],
)
def test_a_post_from_another_site_is_refused(client: TestClient, headers: dict) -> None:
    """CSRF: with the cookie, a POST needs our own Origin (or Referer); no run starts."""
    body = {"workflow": "hello.yaml", "inputs": {"name": "x"}, "mock": True}
    assert client.post("/api/runs", json=body, headers=headers).status_code == 403
    form = client.post(
        "/workflows/hello.yaml/run", data={"input.name": "x", "mock": "1"}, headers=headers
    )
    assert form.status_code == 403
    assert client.get("/api/runs").json()["runs"] == []


def test_a_same_origin_referer_is_enough(client: TestClient) -> None:
    """A browser that sends no Origin but our Referer may post."""
    response = client.post(
        "/api/runs",
        json={"workflow": "hello.yaml", "mock": True, "inputs": {"name": "x"}},
        headers={"referer": f"{BASE}/workflows/hello.yaml"},
    )
    assert response.status_code == 201


def test_a_script_with_the_bearer_token_needs_no_origin(bare: TestClient) -> None:
    """A script's POST (token in its header, which no other site can send) runs."""
    response = bare.post(
        "/api/runs",
        headers={"authorization": f"Bearer {TOKEN}"},
        json={"workflow": "hello.yaml", "mock": True, "inputs": {"name": "x"}},
    )
    assert response.status_code == 201


def test_get_never_changes_anything(client: TestClient) -> None:
    """Cancelling and running are POST only."""
    run_id = start(client)
    assert client.get(f"/api/runs/{run_id}/cancel").status_code == 405
    assert client.get(f"/runs/{run_id}/again").status_code in (404, 405)


def test_responses_forbid_foreign_scripts_and_frames(client: TestClient) -> None:
    """The CSP allows our own scripts only, and no page of ours inside another site."""
    policy = client.get("/").headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy


@pytest.mark.parametrize(
    "path",
    [
        "../outside.yaml",
        "..%2Foutside.yaml",
        "%2E%2E/outside.yaml",
        "sub/../../outside.yaml",
        "/etc/passwd",
        "%2Fetc%2Fpasswd",
        "hello.py",
        "nothing.yaml",
        "sub",
    ],
)
def test_only_workflows_under_the_paths_are_served(client: TestClient, path: str) -> None:
    """`..`, absolute paths, other files and missing ones: 404 on the page and the API."""
    for prefix in ("/workflows/", "/api/workflows/"):
        response = client.get(prefix + path)
        assert response.status_code == 404, prefix + path
        assert "Greets" not in response.text and "root:" not in response.text


def test_a_symlink_leading_out_is_not_served(flows: Path, client: TestClient) -> None:
    """A link inside the folder to a file outside it is neither listed nor read."""
    (flows / "link.yaml").symlink_to(flows.parent / "outside.yaml")
    listed = [w["path"] for w in client.get("/api/workflows").json()["workflows"]]
    assert "link.yaml" not in listed
    assert client.get("/api/workflows/link.yaml").status_code == 404


def test_a_run_outside_the_paths_is_refused(client: TestClient) -> None:
    """POST /api/runs names a workflow under the paths, or gets 404."""
    response = client.post(
        "/api/runs", json={"workflow": "../outside.yaml", "mock": True}, headers=SAME_ORIGIN
    )
    assert response.status_code == 404


# --- workflows -------------------------------------------------------------------------------


def test_the_workflows_list(client: TestClient) -> None:
    """Every workflow below the folder (subfolders too), the broken one with its error
    count; files that are not workflows are left out."""
    rows = {w["path"]: w for w in client.get("/api/workflows").json()["workflows"]}
    assert sorted(rows) == ["hello.yaml", "ideas.yaml", "rows.yaml", "slow.yaml", "sub/broken.yaml"]
    assert rows["hello.yaml"] | {"last_run": None} == {
        "path": "hello.yaml",
        "name": "hello",
        "steps": 2,
        "valid": True,
        "errors": 0,
        "description": "Greets <img src=x onerror=alert(1)> people",
        "last_run": None,
    }
    assert rows["sub/broken.yaml"]["valid"] is False
    assert rows["sub/broken.yaml"]["errors"] == 1
    html = client.get("/").text
    assert 'href="/workflows/sub/broken.yaml"' in html and "1 error" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_the_last_run_shows_on_the_list(client: TestClient) -> None:
    """After a run, the list names its status."""
    run_id = start(client)
    finished(client, run_id)
    rows = {w["path"]: w for w in client.get("/api/workflows").json()["workflows"]}
    assert rows["hello.yaml"]["last_run"]["run_id"] == run_id
    assert rows["hello.yaml"]["last_run"]["status"] == "succeeded"


def test_the_workflow_page_has_graph_inputs_and_source(client: TestClient) -> None:
    """The graph picture with a node per step, a field per input of its type, the source."""
    data = client.get("/api/workflows/hello.yaml").json()
    assert data["graph"] == {
        "nodes": [{"id": "greet", "kind": "llm"}, {"id": "shout", "kind": "llm"}],
        "edges": [{"from": "greet", "to": "shout"}],
    }
    assert [(i["name"], i["type"], i["required"], i["default"]) for i in data["inputs"]] == [
        ("name", "string", True, None),
        ("count", "integer", False, 2),
        ("loud", "boolean", False, False),
        ("tags", "array", False, []),
    ]
    html = client.get("/workflows/hello.yaml").text
    assert 'id="node-greet"' in html and 'data-step="shout"' in html
    assert '<textarea id="input-name" name="input.name"' in html
    assert 'name="input.count" type="number" step="1" value="2"' in html
    assert 'name="input.loud" type="checkbox"' in html
    assert 'data-json="array"' in html
    assert "Who to greet" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # the source, escaped
    assert "<script>alert(1)" not in html


def test_a_broken_workflow_shows_each_problem_at_its_line(client: TestClient) -> None:
    """The diagnostic is listed under its source line; no graph, no run button works."""
    data = client.get("/api/workflows/sub/broken.yaml").json()
    [problem] = data["diagnostics"]
    assert (problem["file"], problem["line"]) == ("sub/broken.yaml", 4)
    assert data["svg"] is None
    html = client.get("/workflows/sub/broken.yaml").text
    line_four = html.index('id="L4"')
    assert html.index("nope", line_four) < html.index("</table>", line_four)
    assert 'class="diag severity-error"' in html
    assert "disabled>Run</button>" in html


# --- running ---------------------------------------------------------------------------------


def test_the_form_starts_an_ordinary_run_with_typed_inputs(client: TestClient) -> None:
    """Run with mock from the form: redirect to the run, inputs typed, the history has it
    as `orchestrate run --mock` records it."""
    form = {
        "input.name": "Ada\r\nLovelace",
        "input.count": "5",
        "input.loud": "1",
        "input.tags": '["a", "b"]',
        "mock": "1",
        "concurrency": "2",
    }
    response = client.post(
        "/workflows/hello.yaml/run", data=form, headers=SAME_ORIGIN, follow_redirects=False
    )
    assert response.status_code == 303
    run_id = response.headers["location"].removeprefix("/runs/")
    document = finished(client, run_id)
    assert document["status"] == "succeeded"
    assert document["inputs"] == {
        "name": "Ada\nLovelace",
        "count": 5,
        "loud": True,
        "tags": ["a", "b"],
    }
    assert document["outputs"] == {"text": "**HELLO** [docs](https://example.com)"}
    from orchestrate.history import open_store

    with open_store() as store:
        assert store.run_row(run_id)["mode"] == "mock"
        assert store.document(run_id) == document


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("input.tags", "[1,", "must be a JSON array"),
        ("input.count", "2.5", "must be of type integer"),
        ("input.count", "many", "must be a whole number"),
        ("concurrency", "0", "concurrency must be between 1 and 1000"),
    ],
)
def test_bad_form_values_show_the_form_again_with_the_error(
    client: TestClient, field: str, value: str, message: str
) -> None:
    """A wrong value is a 400 page naming the problem, with what was typed kept."""
    form = {"input.name": "Ada", "mock": "1", field: value}
    response = client.post("/workflows/hello.yaml/run", data=form, headers=SAME_ORIGIN)
    assert response.status_code == 400
    assert message in response.text
    assert client.get("/api/runs").json()["runs"] == []


def test_a_real_run_without_its_key_is_refused_before_it_starts(client: TestClient) -> None:
    """No OPENAI_API_KEY: POST /api/runs is a 400 naming the variable; nothing is sent."""
    response = client.post(
        "/api/runs", json={"workflow": "hello.yaml", "inputs": {"name": "x"}}, headers=SAME_ORIGIN
    )
    assert response.status_code == 400
    assert "OPENAI_API_KEY" in response.json()["error"]["message"]


def test_model_text_is_never_markup(client: TestClient) -> None:
    """The mock's `<script>` reply shows as text on the run page and the step panel, and
    Markdown links get rel=noopener noreferrer."""
    run_id = start(client)
    finished(client, run_id)
    for path in (f"/runs/{run_id}/steps/greet", f"/runs/{run_id}/steps/greet/panel"):
        html = client.get(path).text
        assert "&lt;script&gt;alert(1)&lt;/script&gt; hello Ada" in html
        assert "<script>alert" not in html
    shout = client.get(f"/runs/{run_id}/steps/shout/panel").text
    assert "<strong>HELLO</strong>" in shout
    assert '<a href="https://example.com" rel="noopener noreferrer">docs</a>' in shout


def test_the_run_page_and_its_twin(client: TestClient) -> None:
    """The run page lists the steps with their status; the API gives the result document."""
    run_id = start(client)
    document = finished(client, run_id)
    assert [s["id"] for s in document["steps"]] == ["greet", "shout"]
    html = client.get(f"/runs/{run_id}").text
    assert html.count('class="step status-succeeded') == 2
    assert 'class="node status-succeeded"' in html
    assert f'href="/api/runs/{run_id}" download' in html
    assert "Run again" in html and ">Cancel<" not in html
    panel = client.get(f"/runs/{run_id}/steps/greet/panel").text
    assert "Greet Ada" in panel  # the rendered prompt


def test_unknown_runs_and_steps_are_404(client: TestClient) -> None:
    """A run id or step that does not exist is a 404 page or API error."""
    assert client.get("/runs/ffffffff").status_code == 404
    assert client.get("/api/runs/ffffffff").status_code == 404
    assert client.get("/api/runs/ffffffff/events").status_code == 404
    run_id = start(client)
    finished(client, run_id)
    assert client.get(f"/runs/{run_id}/steps/nope/panel").status_code == 404


def test_events_of_a_live_run(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SSE stream of a run started here carries the `--events` records, tokens too."""
    monkeypatch.setenv("ORCHESTRATE_MOCK_LATENCY", "0.3")
    run_id = start(client)
    with client.stream("GET", f"/api/runs/{run_id}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        records = sse_records("".join(stream.iter_text()))
    names = [r["event"] for r in records]
    assert names[0] == "run_started" and names[-1] == "run_finished"
    assert {"step_started", "step_finished", "token"} <= set(names)
    tokens = "".join(
        r["text"] for r in records if r["event"] == "token" and r["step_id"] == "greet"
    )
    assert tokens == "<script>alert(1)</script> hello Ada"
    assert records[-1]["status"] == "succeeded"


def test_events_of_a_recorded_run(client: TestClient) -> None:
    """A run read from the history gives one step_finished per step, then run_finished."""
    run_id = start(client)
    finished(client, run_id)
    with client.stream("GET", f"/api/runs/{run_id}/events") as stream:
        records = sse_records("".join(stream.iter_text()))
    assert [(r["event"], r.get("step_id")) for r in records] == [
        ("step_finished", "greet"),
        ("step_finished", "shout"),
        ("run_finished", None),
    ]


def test_cancel_a_running_run(client: TestClient) -> None:
    """Cancel stops the run; it is recorded as cancelled with the finished step kept."""
    run_id = start(client, "slow.yaml", inputs={})
    deadline = time.monotonic() + 10
    while client.get(f"/api/runs/{run_id}").json()["steps"] == []:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert ">Cancel<" in client.get(f"/runs/{run_id}").text
    response = client.post(f"/api/runs/{run_id}/cancel", headers=SAME_ORIGIN)
    assert response.status_code == 202
    document = finished(client, run_id)
    assert document["status"] == "cancelled"
    assert [(s["id"], s["status"]) for s in document["steps"]] == [
        ("fast", "succeeded"),
        ("slow", "cancelled"),
    ]
    again = client.post(f"/api/runs/{run_id}/cancel", headers=SAME_ORIGIN)
    assert again.status_code == 409


def test_stopping_the_server_cancels_its_runs(flows: Path) -> None:
    """The app's shutdown cancels the runs in flight and records them as cancelled."""
    with TestClient(create_app([flows], token=TOKEN, port=8765), base_url=BASE) as client:
        client.get(f"/?token={TOKEN}")
        run_id = start(client, "slow.yaml", inputs={})
    from orchestrate.history import open_store

    with open_store() as store:
        assert store.document(run_id)["status"] == "cancelled"


def test_run_again_and_resume(client: TestClient, flows: Path) -> None:
    """Run again repeats the inputs; Resume of a failed run reuses its succeeded steps."""
    run_id = start(client)
    finished(client, run_id)
    again = client.post(f"/runs/{run_id}/again", headers=SAME_ORIGIN, follow_redirects=False)
    assert again.status_code == 303
    second = finished(client, again.headers["location"].removeprefix("/runs/"))
    assert second["inputs"] == {"name": "Ada", "count": 2, "loud": False, "tags": []}
    resumed = client.post(f"/runs/{run_id}/resume", headers=SAME_ORIGIN, follow_redirects=False)
    third = finished(client, resumed.headers["location"].removeprefix("/runs/"))
    assert third["resumed_from"] == run_id
    assert all(step["reused"] for step in third["steps"])


def test_a_terminal_run_shows_in_the_history(
    client: TestClient, flows: Path, cli: Callable
) -> None:
    """`orchestrate run` in another process: listed, and its page and events work."""
    result = cli("run", flows / "hello.yaml", "--mock", "--json", "-i", "name=Bo")
    run_id = json.loads(result.stdout)["run_id"]
    assert client.get("/api/runs").json()["runs"][0]["run_id"] == run_id
    html = client.get(f"/runs/{run_id}").text
    assert "hello Bo" not in html or "&lt;script&gt;" in html
    assert 'href="/workflows/hello.yaml"' in html
    with client.stream("GET", f"/api/runs/{run_id}/events") as stream:
        assert sse_records("".join(stream.iter_text()))[-1]["event"] == "run_finished"


# --- history and compare -------------------------------------------------------------------


def test_history_pages_and_filters(client: TestClient) -> None:
    """Newest first, filtered by workflow and status, paged by `before`."""
    ids = [start(client) for _ in range(3)]
    for run_id in ids:
        finished(client, run_id)
    first = client.get("/api/runs", params={"limit": 2}).json()
    assert [r["run_id"] for r in first["runs"]] == ids[::-1][:2]
    second = client.get("/api/runs", params={"limit": 2, "before": first["next"]}).json()
    assert [r["run_id"] for r in second["runs"]] == [ids[0]]
    assert second["next"] is None
    assert client.get("/api/runs", params={"status": "failed"}).json()["runs"] == []
    assert client.get("/api/runs", params={"workflow": "nope"}).json()["runs"] == []
    html = client.get("/runs", params={"limit": 2}).text
    assert all(run_id in html for run_id in ids)


@pytest.mark.usefixtures("history_backend")
def test_history_shows_who_ran_each_run_and_filters_by_them(
    client: TestClient, flows: Path, cli: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The history page has a User column, each name a link to that user's runs; `user=`
    filters the page and the API."""
    ran = {}
    for user in ("ada", "bob"):
        monkeypatch.setenv("ORCHESTRATE_USER", user)
        result = cli("run", flows / "hello.yaml", "--mock", "--json", "-i", "name=Cy")
        ran[user] = json.loads(result.stdout)["run_id"]
    assert [r["user"] for r in client.get("/api/runs").json()["runs"]] == ["bob", "ada"]
    html = client.get("/runs").text
    assert "<th>User</th>" in html and '<a href="/runs?user=ada">ada</a>' in html
    only_ada = client.get("/runs", params={"user": "ada"}).text
    assert ran["ada"] in only_ada and ran["bob"] not in only_ada
    assert 'name="user" value="ada"' in only_ada
    api = client.get("/api/runs", params={"user": "bob"}).json()
    assert [r["run_id"] for r in api["runs"]] == [ran["bob"]] and api["user"] == "bob"


def test_compare_two_runs(client: TestClient) -> None:
    """Two runs side by side: inputs diff, per step output changes marked."""
    a = start(client)
    b = start(client, inputs={"name": "Bo"})
    finished(client, a)
    finished(client, b)
    diff = client.get("/api/compare", params={"a": a, "b": b}).json()
    greet = diff["steps"][0]
    assert (greet["id"], greet["output_changed"]) == ("greet", True)
    assert "hello Ada" in greet["output_a"] and "hello Bo" in greet["output_b"]
    assert diff["steps"][1]["output_changed"] is False
    html = client.get("/compare", params={"a": a, "b": b}).text
    assert '<span class="diff-del">-&lt;script&gt;alert(1)&lt;/script&gt; hello Ada</span>' in html
    assert client.get("/compare", params={"a": a, "b": "nope"}).status_code == 404


def test_no_api_key_reaches_a_page(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a key in the environment, no page or API answer contains it."""
    key = "sk-test-abcdefghijklmnop"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    run_id = start(client)
    finished(client, run_id)
    for path in (
        "/",
        "/workflows/hello.yaml",
        f"/runs/{run_id}",
        f"/api/runs/{run_id}",
        f"/runs/{run_id}/steps/greet/panel",
        "/runs",
    ):
        assert key not in client.get(path).text


def priced(run_id: str, costs: dict[str, float | None]) -> None:
    """Give the recorded steps of a run these costs (and the run their sum), as a run at a
    priced model would have them: the mock is free."""
    import sqlite3

    from orchestrate.history import database_path

    with sqlite3.connect(database_path()) as db:
        for step_id, cost in costs.items():
            db.execute(
                "UPDATE steps SET cost_usd = ? WHERE run_id = ? AND step_id = ?",
                (cost, run_id, step_id),
            )
        known = list(costs.values())
        total = None if None in known else sum(c for c in known if c is not None)
        db.execute(
            "UPDATE runs SET cost_usd = ?, document = json_set(document, '$.cost_usd', ?)"
            " WHERE run_id = ?",
            (total, total, run_id),
        )


# --- cost -------------------------------------------------------------------------------------


def test_costs_on_the_run_history_and_compare_pages(client: TestClient) -> None:
    """Each step's cost and the run's, as the terminal formats them ($0.0031; `?` unknown),
    on the run page, its step panel, the history's column and the compare page's deltas."""
    a, b = start(client), start(client, inputs={"name": "Bo"})
    finished(client, a)
    finished(client, b)
    priced(a, {"greet": 0.0021, "shout": 0.001})
    priced(b, {"greet": 0.0121, "shout": None})
    run = client.get(f"/runs/{a}").text
    assert '<span class="sub" id="run-cost" title="cost">$0.0031</span>' in run
    assert '<span class="cost">$0.0021</span>' in run and '<span class="cost">$0.001</span>' in run
    assert '<span class="cost">$0.0021</span>' in client.get(f"/runs/{a}/steps/greet/panel").text
    assert '<span class="cost">?</span>' in client.get(f"/runs/{b}/steps/shout/panel").text
    history = client.get("/runs").text
    assert '<td class="num">$0.0031</td>' in history and '<td class="num">?</td>' in history
    compare = client.get("/compare", params={"a": a, "b": b}).text
    assert '<span class="delta up">+$0.01</span>' in compare  # greet: 0.0121 - 0.0021
    assert '<span class="delta same">?</span>' in compare  # shout, and the runs: unknown


def test_a_mock_run_costs_nothing(client: TestClient) -> None:
    """The mock is free: $0 on the run page and in the history, not `?`."""
    run_id = start(client)
    finished(client, run_id)
    assert 'id="run-cost" title="cost">$0</span>' in client.get(f"/runs/{run_id}").text
    assert '<td class="num">$0</td>' in client.get("/runs").text


# --- enum inputs and for_each items ----------------------------------------------------------


def test_an_enum_input_is_a_select_with_its_default_chosen(client: TestClient) -> None:
    """`enum` inputs are <select>s: a string's values as they are, others as JSON; a
    required one starts on an empty choice, an optional one on its default."""
    html = client.get("/workflows/ideas.yaml").text
    assert (
        '<select id="input-tone" name="input.tone">\n'
        '          <option value="formal" selected>formal</option>\n'
        '          <option value="casual">casual</option>'
    ) in html
    assert '<option value="">(choose one)</option>' in html
    assert '<option value="3">3</option>' in html
    fields = client.get("/api/workflows/ideas.yaml").json()["inputs"]
    assert [field["enum"] for field in fields] == [["formal", "casual"], [1, 2, 3]]


@pytest.mark.parametrize(
    ("form", "message"),
    [
        (
            {"input.tone": "loud", "input.level": "2"},
            "input &#39;tone&#39; must be one of formal, casual, got &#34;loud&#34;",
        ),
        (
            {"input.tone": "formal", "input.level": "7"},
            "input &#39;level&#39; must be one of 1, 2, 3",
        ),
        ({"input.tone": "formal", "input.level": ""}, "missing required input &#39;level&#39;"),
    ],
)
def test_a_value_outside_the_enum_is_refused(client: TestClient, form: dict, message: str) -> None:
    """A posted value that is not one of the input's values is a 400 naming them."""
    response = client.post(
        "/workflows/ideas.yaml/run", data=form | {"mock": "1"}, headers=SAME_ORIGIN
    )
    assert response.status_code == 400
    assert message in response.text
    assert client.get("/api/runs").json()["runs"] == []


def test_a_for_each_step_lists_its_items(client: TestClient) -> None:
    """The step panel of a for_each: n/N, and each item's index, status and output
    (escaped)."""
    form = {"input.tone": "casual", "input.level": "2", "mock": "1"}
    response = client.post(
        "/workflows/ideas.yaml/run", data=form, headers=SAME_ORIGIN, follow_redirects=False
    )
    run_id = response.headers["location"].removeprefix("/runs/")
    assert finished(client, run_id)["inputs"] == {"tone": "casual", "level": 2}
    panel = client.get(f"/runs/{run_id}/steps/ideas/panel").text
    assert '<summary>Items <span class="items">3/3</span></summary>' in panel
    for index, item in enumerate(("alpha", "beta", "gamma")):
        assert (
            f'<span class="index">{index}</span> <span class="badge status-succeeded">'
            f'✓ succeeded</span> <span class="preview">idea &lt;b&gt;{item}&lt;/b&gt;'
            "</span>"
        ) in panel
    assert (
        "Items" not in client.get(f"/runs/{run_id}/steps/ideas/panel").text.split("Output")[1]
    )  # listed once, before the output


def test_a_for_each_shows_the_prompts_of_its_first_items_only(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The panel lists the prompts of the first ITEMS_SHOWN items and says how many more
    there are (a 1,000-item step's panel stays small)."""
    from orchestrate.ui import _history

    monkeypatch.setattr(_history, "ITEMS_SHOWN", 2)
    run_id = start(client, "ideas.yaml", inputs={"level": 1})
    finished(client, run_id)
    panel = client.get(f"/runs/{run_id}/steps/ideas/panel").text
    prompts = panel.split("<summary>Prompt")[1].split("<summary>Raw")[0]
    assert "An idea about alpha" in prompts and "An idea about beta" in prompts
    assert "gamma" not in prompts
    assert "1 more items' prompts: see Download JSON." in prompts
    hello = start(client)
    finished(client, hello)
    prompt = client.get(f"/runs/{hello}/steps/greet/panel").text.split("<summary>Prompt")[1]
    assert "Greet Ada" in prompt and "<h4>" not in prompt and "more items" not in prompt


@pytest.mark.parametrize(
    ("entry", "for_each", "expected"),
    [
        (None, False, 0),
        ({"attempts": 1}, False, 0),
        ({"attempts": 3}, False, 2),
        ({"attempts": 3, "output": ["a", "b", "c"]}, True, 0),
        ({"attempts": 5, "output": ["a", "b", "c"]}, True, 2),
        ({"attempts": 5, "output": None}, True, 0),  # failed: its item count is not known
    ],
)
def test_retries_count_attempts_beyond_one_a_call(
    entry: Any, for_each: bool, expected: int
) -> None:
    """A for_each's attempts are summed over its items (SPEC 4): not retries."""
    from orchestrate.ui._history import retries

    assert retries(entry, for_each=for_each) == expected


def test_a_for_each_without_retries_shows_none(client: TestClient) -> None:
    """The steps list shows no retries for a 3-item for_each of 3 attempts; its panel
    says the attempts are its items'."""
    run_id = start(client, "ideas.yaml", inputs={"level": 1})
    finished(client, run_id)
    html = client.get(f"/runs/{run_id}/steps/ideas").text
    assert 'class="attempts"' not in html
    assert "attempts 3 for 3 items" in html


def test_the_items_of_a_failed_for_each_say_which_have_no_output() -> None:
    """A failed for_each keeps the outputs of the items that succeeded; the others say so."""
    from orchestrate._result import ItemResult, StepResult
    from orchestrate.ui._history import for_each_items

    result = StepResult(
        id="s",
        status="failed",
        request={"items": [{}, {}, {}]},
        items=(ItemResult(index=1, output="kept", fingerprint="f"),),
    )
    items = for_each_items(result, "failed", None, {})
    assert items == {
        "total": 3,
        "done": 1,
        "shown": [
            {"index": 0, "status": "no output", "output": None},
            {"index": 1, "status": "succeeded", "output": "kept"},
            {"index": 2, "status": "no output", "output": None},
        ],
    }
    live = for_each_items(None, "running", (1, 3), {0: "failed"})
    assert live is not None and [item["status"] for item in live["shown"]] == [
        "failed",
        "waiting",
        "waiting",
    ]
    assert for_each_items(StepResult(id="s", status="succeeded"), "succeeded", None, {}) is None


# --- batches ----------------------------------------------------------------------------------


@pytest.fixture
def batch(flows: Path) -> Any:
    """A batch of 4 rows over rows.yaml, run with the mock into the history: rows 1 and 3
    fail in their function step."""
    from orchestrate._batch import run_batch
    from orchestrate.history import HistoryOptions

    rows = [{"text": "one"}, {"text": "bad"}, {"text": "three"}, {"text": "bad"}]
    return run_batch(flows / "rows.yaml", rows, mock=True, history=HistoryOptions())


def test_the_batch_page_and_its_twin(client: TestClient, batch: Any) -> None:
    """GET /api/batches/ID is `runs show ID --json` with the rows listed, those that did
    not succeed first; the page shows the summary and links each row to its run."""
    batch_id = batch.summary.batch_id
    data = client.get(f"/api/batches/{batch_id}").json()
    shown = {key: data[key] for key in ("batch_id", "status", "rows", "succeeded", "failed")}
    assert shown == {
        "batch_id": batch_id,
        "status": "failed",
        "rows": 4,
        "succeeded": 2,
        "failed": 2,
    }
    assert [(r["row"], r["status"]) for r in data["rows_shown"]] == [
        (1, "failed"),
        (3, "failed"),
        (0, "succeeded"),
        (2, "succeeded"),
    ]
    assert data["failed_rows"] == data["rows_shown"][:2]
    html = client.get(f"/batches/{batch_id}").text
    assert '<dd class="status-failed">2</dd>' in html
    assert data["cost_usd"] == 0
    assert '<dd id="batch-cost">$0</dd>' in html  # the mock is free
    for row in batch.rows:
        assert f'<a href="/runs/{row.run_id}">{row.run_id}</a>' in html
    assert html.index(batch.rows[1].run_id) < html.index(batch.rows[0].run_id)
    assert "this row is &lt;b&gt;bad&lt;/b&gt;" in html
    assert "p50" in html and "Checks" not in html  # a batch without checks


def test_each_batch_row_shows_its_runs_cost(client: TestClient, batch: Any) -> None:
    """A batch's rows carry their run's cost from the history: in the API and as a column
    of the page (`?` where a priced step's cost is unknown)."""
    first, second = batch.rows[0].run_id, batch.rows[2].run_id
    priced(first, {"answer": 0.0123})
    priced(second, {"answer": None})
    data = client.get(f"/api/batches/{batch.summary.batch_id}").json()
    costs = {row["run_id"]: row["cost_usd"] for row in data["rows_shown"]}
    assert costs[first] == 0.0123 and costs[second] is None
    assert costs[batch.rows[1].run_id] == 0  # a mock row that failed: free
    html = client.get(f"/batches/{batch.summary.batch_id}").text
    assert '<th class="num">Cost</th>' in html
    row = html[html.index(f'<a href="/runs/{first}">') :]
    assert row.index('<td class="num cost">$0.0123</td>') < row.index("</tr>")
    row = html[html.index(f'<a href="/runs/{second}">') :]
    assert row.index('<td class="num cost">?</td>') < row.index("</tr>")


def test_a_batch_shows_its_checks_whatever_they_are(client: TestClient, batch: Any) -> None:
    """A summary's `checks` ({id: {passed, failed, pass_rate}}) become a pass-rate table."""
    import sqlite3

    from orchestrate.history import database_path

    batch_id = batch.summary.batch_id
    summary = batch.summary.to_dict() | {
        "checks": {"has_answer": {"passed": 3, "failed": 1, "pass_rate": 0.75}}
    }
    with sqlite3.connect(database_path()) as db:
        db.execute(
            "UPDATE batches SET summary = ? WHERE batch_id = ?", (json.dumps(summary), batch_id)
        )
    html = client.get(f"/batches/{batch_id}").text
    assert (
        '<td class="mono">has_answer</td>\n    <td class="num">3</td>\n'
        '    <td class="num">1</td>\n    <td class="num">75%</td>'
    ) in html
    assert '<span style="width: 75.0%"></span>' in html


def test_each_rows_checks_show_as_badges(
    client: TestClient, batch: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row's `checks` ([{id, passed, score, message}]) show as ✓/✗ badges, the message on
    hover (escaped)."""
    from orchestrate import history
    from orchestrate.history import _batches

    real = history.row_entry

    def with_checks(row: Any) -> dict[str, Any]:
        return real(row) | {
            "checks": [
                {
                    "id": "long_enough",
                    "passed": row.status == "succeeded",
                    "score": 0.5,
                    "message": "<b>too short</b>",
                }
            ]
        }

    monkeypatch.setattr(history, "row_entry", with_checks)
    monkeypatch.setattr(_batches, "row_entry", with_checks)
    html = client.get(f"/batches/{batch.summary.batch_id}").text
    assert "<th>Checks</th>" in html
    assert (
        '<span class="badge status-failed" title="&lt;b&gt;too short&lt;/b&gt;">✗ '
        "long_enough 0.5</span>"
    ) in html
    assert '<span class="badge status-succeeded" title="&lt;b&gt;too short&lt;/b&gt;">✓' in html


def test_batches_in_the_history_and_the_batches_page(client: TestClient, batch: Any) -> None:
    """The history links a batch to its page; /batches lists batches only; a run's id at
    /batches/ goes to its run page and a batch's at /runs/ to its batch page; an unknown
    id is a 404."""
    batch_id = batch.summary.batch_id
    run_id = start(client)
    finished(client, run_id)
    history = client.get("/runs").text
    assert f'<a href="/batches/{batch_id}">{batch_id}</a>' in history
    assert "batch · 4 rows" in history
    batches = client.get("/batches").text
    assert f'href="/batches/{batch_id}"' in batches and run_id not in batches
    assert [r["run_id"] for r in client.get("/api/runs?kind=batch").json()["runs"]] == [batch_id]
    assert batch_id not in {r["run_id"] for r in client.get("/api/runs?kind=run").json()["runs"]}
    moved = client.get(f"/batches/{run_id}", follow_redirects=False)
    assert (moved.status_code, moved.headers["location"]) == (303, f"/runs/{run_id}")
    moved = client.get(f"/runs/{batch_id}", follow_redirects=False)
    assert (moved.status_code, moved.headers["location"]) == (303, f"/batches/{batch_id}")
    assert client.get(f"/api/runs/{batch_id}").status_code == 404
    assert client.get("/batches/ffffffff").status_code == 404
    assert client.get(f"/api/batches/{run_id}").status_code == 404


def test_a_batch_id_where_a_run_is_wanted_points_to_the_batch(
    client: TestClient, batch: Any
) -> None:
    """A batch's id at /api/runs/ID and /api/runs/ID/events is a 404 saying where it is
    (not a stream that fails)."""
    batch_id = batch.summary.batch_id
    for path in (f"/api/runs/{batch_id}", f"/api/runs/{batch_id}/events"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/json"
        assert f"see /api/batches/{batch_id}" in response.json()["error"]["message"]


@pytest.mark.parametrize("kind", ["runs", "batches", "x", "RUN"])
def test_an_unknown_kind_is_refused(client: TestClient, kind: str) -> None:
    """/api/runs?kind= takes run or batch only: anything else is a 400 saying so."""
    response = client.get(f"/api/runs?kind={kind}")
    assert response.status_code == 400
    assert response.json()["error"] == {
        "type": "invalid_input",
        "message": "kind must be run or batch",
    }


# --- checks and variants ----------------------------------------------------------------------

CHECKED = """
    name: checked
    inputs:
      question: {type: string}
      expected: {type: string, default: ""}
      tone: {default: plain}
    outputs:
      answer: "{{ steps.answer.output }}"
    steps:
      - id: answer
        prompt: "{{ inputs.question }} ({{ inputs.tone }})"
        mock: "{{ inputs.question | upper }}"
    checks:
      - id: right
        expect: outputs.answer == row.expected
      - id: short
        output: answer
        regex: "^<.{100}"
      - id: polite
        judge: {rubric: The answer is polite.}
    """


def test_the_run_page_shows_each_check(
    write_flow: Callable[..., Path], client: TestClient, cli: Callable[..., Any]
) -> None:
    """A run's `checks` show under its outputs: ✓/✗, the id, the score and the message
    (a judge's reason, an error), escaped."""
    flow = write_flow(CHECKED.replace("row.expected", "'<B>A</B>'"), "flows/checked.yaml")
    result = cli("run", flow, "--mock", "--json", "--input", "question=<b>a</b>")
    document = json.loads(result.stdout)
    checks = {c["id"]: c for c in document["checks"]}
    assert [checks[i]["passed"] for i in ("right", "short", "polite")] == [True, False, True]
    html = client.get(f"/runs/{document['run_id']}").text
    section = html[html.index('<h2 id="checks">') :]
    assert 'Checks <span class="sub">2 of 3 passed</span>' in section
    assert (
        '<span class="badge status-failed">✗ failed</span>\n        <span class="mono">short'
        in section
    )
    assert '<span class="sub">score 1.0</span>' in section  # the mock judge's score
    message = checks["short"]["message"]
    assert message and "<B>" in message
    assert str(escape(message)) in section and message not in section


def test_the_batch_page_compares_the_variants(
    write_flow: Callable[..., Path], client: TestClient, cli: Callable[..., Any], tmp_path: Path
) -> None:
    """A --matrix batch's `variants` become a table: one line per combination with its
    pass rate, each check's, the judge's mean score, tokens and cost; the pass rate
    against --fail-under is a fact of the summary."""
    flow = write_flow(CHECKED, "flows/checked.yaml")
    data = tmp_path / "cases.jsonl"
    data.write_text(
        "".join(
            json.dumps(row) + "\n"
            for row in [{"question": "a", "expected": "A"}, {"question": "b", "expected": "wrong"}]
        )
    )
    result = cli(
        "batch",
        flow,
        "--data",
        data,
        "--mock",
        "--json",
        "--output",
        tmp_path / "out.jsonl",
        "--fail-under",
        "0.5",
        "--matrix",
        "inputs.tone=plain,warm",
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    html = client.get(f"/batches/{summary['batch_id']}").text
    table = html[html.index('<table class="list variants">') :]
    table = table[: table.index("</table>")]
    assert table.count("<tr>") == 3  # the head and two variants
    assert '<th class="num mono">right</th>' in table
    assert '<td class="mono">inputs.tone=plain</td>' in table
    assert '<td class="mono">inputs.tone=warm</td>' in table
    first = table[table.index("inputs.tone=plain") :]
    assert first.index('<td class="num">50%</td>') < first.index("</tr>")  # right: 1 of 2
    assert '<dd id="batch-pass-rate" class="status-succeeded">50%' in html
    assert '<span class="sub">of 50% needed</span>' in html


def test_a_batch_without_variants_has_no_variants_table(client: TestClient, batch: Any) -> None:
    """No --matrix: no Variants section."""
    assert "Variants" not in client.get(f"/batches/{batch.summary.batch_id}").text
