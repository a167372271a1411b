"""`orchestrate validate`: a corpus of broken workflows, each with its exact diagnostics."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrate._loader import MAX_FILE_BYTES
from orchestrate._validate import validate_file
from tests.conftest import REPO

CORPUS = Path(__file__).parent / "invalid"

# file stem -> every diagnostic it must produce, as (line, column, message), in order.
EXPECTED: list[tuple[str, list[tuple[int, int, str]]]] = [
    (
        "alias_bomb",
        [
            (1, 1, "the file expands to more than 100,000 nodes through its aliases"),
        ],
    ),
    (
        "bad_enum",
        [
            (4, 15, "expected one of fail, continue, got 'contine'"),
        ],
    ),
    (
        "bad_message_role",
        [
            (4, 16, "expected one of system, user, assistant, got 'usr'"),
        ],
    ),
    (
        "bad_output_field",
        [
            (5, 13, "steps.a.outptu does not exist"),
        ],
    ),
    (
        "broken_step_duplicate_id",
        [
            (4, 9, "duplicate step id 'a'"),
            (6, 15, "expected one of fail, continue, got 'yes'"),
        ],
    ),
    (
        "broken_step_function",
        [
            (2, 9, "invalid step id 'bad-id'"),
            (3, 15, "invalid function 'not a function'"),
            (4, 14, "`timeout` must be more than 0 seconds, got 0"),
            (5, 15, "expected one of fail, continue, got 'yes'"),
        ],
    ),
    (
        "check_bad_regex",
        [
            (6, 12, "invalid regular expression: missing ), unterminated subpattern at position 6"),
        ],
    ),
    (
        "check_bad_schema",
        [
            (7, 20, "invalid JSON Schema: 'objekt' is not valid under any of the given schemas"),
        ],
    ),
    (
        "check_duplicate_id",
        [
            (7, 9, "duplicate check id 'capital'"),
            (9, 9, "invalid check id '2nd'"),
        ],
    ),
    (
        "check_expression_syntax",
        [
            (6, 13, "unexpected end of the expression"),
        ],
    ),
    (
        "check_function",
        [
            (6, 15, "module 'wordtools' has no 'cuont_words'"),
            (8, 16, "`threshold` must be between 0 and 1, got -1"),
        ],
    ),
    (
        "check_judge",
        [
            (8, 7, "unknown key 'treshold' in a judge"),
            (12, 18, "`threshold` must be between 0 and 1, got 1.5"),
            (13, 17, "unknown provider 'opnai'"),
        ],
    ),
    (
        "check_misspelt_kind",
        [
            (6, 5, "unknown key 'contians' in a check"),
        ],
    ),
    (
        "check_needs_output",
        [
            (7, 5, "check 'capital' needs `output:` (the workflow has 2 outputs)"),
        ],
    ),
    (
        "check_no_kind",
        [
            (5, 5, "check 'capital' has no kind"),
        ],
    ),
    (
        "check_two_kinds",
        [
            (7, 5, "a check is exactly one kind, but this one has `contains` and `regex`"),
        ],
    ),
    (
        "check_unknown_output",
        [
            (6, 13, "unknown output 'anwser'"),
            (9, 13, "unknown output 'anwser'"),
        ],
    ),
    (
        "check_unknown_step",
        [
            (6, 13, "unknown step 'answr'"),
        ],
    ),
    (
        "comparison_type",
        [
            (
                14,
                11,
                'steps.grade.output.score is of type number, but is compared with a string ("5")',
            ),
            (
                17,
                11,
                'steps.grade.output.score is of type number, but is compared with a string ("5")',
            ),
            (
                17,
                11,
                "steps.grade.output.passed is of type boolean, but is compared with a string "
                '("yes")',
            ),
            (20, 11, 'inputs.limit is of type integer, but is compared with a string ("10")'),
            (20, 11, "inputs.level is of type string, but is compared with a number (3)"),
            (
                21,
                13,
                "steps.grade.output.label is of type string or null, but is compared with a "
                "number (3)",
            ),
        ],
    ),
    (
        "duplicate_id",
        [
            (4, 9, "duplicate step id 'a'"),
        ],
    ),
    (
        "duplicate_key",
        [
            (4, 5, "duplicate key 'prompt'"),
        ],
    ),
    (
        "duplicate_merge_key",
        [
            (7, 5, 'invalid YAML: found duplicate merge key "<<"'),
        ],
    ),
    (
        "empty",
        [
            (1, 1, "the workflow file is empty"),
        ],
    ),
    (
        "expression_syntax",
        [
            (6, 11, "unexpected end of the expression"),
        ],
    ),
    (
        "for_each_not_a_list",
        [
            (6, 15, "for_each needs a list, but inputs.name is of type string"),
            (9, 15, "for_each needs a list, but steps.by_input.output[0] is of type string"),
            (14, 15, "for_each needs a list, but steps.summary.status is of type string"),
            (17, 15, "for_each needs a list, but steps.summary.output is of type string"),
        ],
    ),
    (
        "function_misspelt",
        [
            (3, 15, "module 'wordtools' has no 'count_wrds'"),
            (6, 15, "module 'wordtools' has no 'tally'"),
        ],
    ),
    (
        "huge_integer",
        [
            (4, 17, "the number has more than 4,300 digits"),
        ],
    ),
    (
        "impossible_date",
        [
            (1, 9, "invalid YAML value: day is out of range for month"),
        ],
    ),
    (
        "input_default_type",
        [
            (4, 14, "the default of input 'count' is not of type integer"),
        ],
    ),
    (
        "input_enum_default",
        [
            (
                4,
                14,
                "the default \"forml\" of input 'tone' is not one of its enum values "
                "(formal, casual)",
            ),
        ],
    ),
    (
        "input_enum_type",
        [
            (4, 18, "the enum value \"three\" of input 'level' is not of type integer"),
        ],
    ),
    (
        "input_spec_null",
        [
            (1, 10, "input 'a' has no settings (its value is empty)"),
        ],
    ),
    (
        "invalid_json_schema",
        [
            (8, 23, "invalid JSON Schema: 'text' is not valid under any of the given schemas"),
        ],
    ),
    (
        "malformed_id",
        [
            (2, 9, "invalid step id 'summarize-article'"),
            (4, 9, "invalid step id '2nd'"),
        ],
    ),
    (
        "merge_indirect",
        [
            (4, 5, "a merge key (<<) merges the mapping that holds it"),
        ],
    ),
    (
        "merge_into_itself",
        [
            (1, 16, "a merge key (<<) merges the mapping that holds it"),
        ],
    ),
    (
        "messages_string",
        [
            (3, 15, "expected a list of messages, got a string ('hello')"),
        ],
    ),
    (
        "missing_id",
        [
            (2, 5, "a step is missing the required key 'id'"),
        ],
    ),
    (
        "missing_subworkflow",
        [
            (3, 15, "sub-workflow './nowhere.yaml' not found"),
        ],
    ),
    (
        "misspelt_kind",
        [
            (3, 5, "unknown key 'promt' in a step"),
        ],
    ),
    (
        "mock_schema_mismatch",
        [
            (
                8,
                11,
                "the mock does not match the schema at $.category: 'billling' is not one of "
                "['billing', 'bug']",
            ),
            (12, 11, "the mock is not valid JSON (Expecting value at line 1 column 1)"),
            (17, 11, "the mock does not match the schema at $: 1.5 is not of type 'integer'"),
        ],
    ),
    (
        "needs_cycle",
        [
            (2, 5, "dependency cycle: a -> c -> b -> a"),
        ],
    ),
    (
        "no_kind",
        [
            (2, 5, "step 'a' has no kind"),
        ],
    ),
    (
        "no_kind_unknown_keys",
        [
            (2, 5, "step 'a' has no kind"),
            (3, 5, "unknown key 'modle' in a step"),
            (4, 5, "unknown key 'temprature' in a step"),
        ],
    ),
    (
        "no_steps",
        [
            (1, 1, "the workflow has no `steps`"),
        ],
    ),
    (
        "not_utf8",
        [
            (3, 17, "the file is not valid UTF-8 (byte 0xe9)"),
        ],
    ),
    (
        "prompt_and_messages",
        [
            (4, 5, "an LLM step has `prompt` or `messages`, not both"),
        ],
    ),
    (
        "sandbox_escape",
        [
            (3, 13, "access to '__class__' is not allowed in templates"),
        ],
    ),
    (
        "sandbox_escape_item",
        [
            (3, 13, "access to '__init__' is not allowed in templates"),
        ],
    ),
    (
        "range_settings",
        [
            (2, 12, "`timeout` must be more than 0 seconds, got 0"),
            (3, 12, "`retries` must be between 0 and 100, got 101"),
            (7, 17, "`max_tokens` must be at least 1, got 0"),
            (8, 18, "`temperature` must be 0 or more, got -0.5"),
            (9, 14, "`retries` must be between 0 and 100, got -1"),
            (12, 14, "`timeout` must be more than 0 seconds, got -5"),
            (14, 15, "an LLM step's `messages` is empty"),
        ],
    ),
    (
        "schema_bad_regex",
        [
            (
                8,
                39,
                "invalid regular expression in pattern: unterminated character set at position 0",
            ),
            (
                10,
                9,
                "invalid regular expression in patternProperties: "
                "missing ), unterminated subpattern at position 0",
            ),
        ],
    ),
    (
        "schema_remote_ref",
        [
            (
                9,
                17,
                "remote $ref 'https://example.com/person.json': orchestrate never fetches "
                "schemas; put the definition under $defs",
            ),
            (
                12,
                21,
                "remote $ref 'http://example.com/email.json': orchestrate never fetches "
                "schemas; put the definition under $defs",
            ),
        ],
    ),
    (
        "schema_unresolved_ref",
        [
            (13, 21, "$ref '#/$defs/nope' does not resolve in the schema"),
        ],
    ),
    (
        "self_reference",
        [
            (3, 13, "step 'a' refers to itself"),
        ],
    ),
    (
        "several_errors",
        [
            (3, 17, "expected one of string, number, integer, boolean, array, object, got 'strng'"),
            (6, 13, "unknown input 'topik'"),
            (7, 18, "expected a number, got a string ('warm')"),
            (8, 9, "invalid step id 'second-step'"),
            (9, 13, "unknown step 'frist'"),
            (11, 15, "invalid function 'not a function'"),
        ],
    ),
    (
        "steps_not_list",
        [
            (2, 3, "expected a list of steps, got a mapping"),
        ],
    ),
    (
        "sub_workflow_with_type",
        [
            (6, 15, "the sub-workflow's input 'v' must be of type string, got 3"),
            (6, 21, "the sub-workflow's input 'n' must be of type integer, got true"),
            (6, 30, "the sub-workflow's input 'r' must be of type number, got \"0.5\""),
            (17, 10, "the sub-workflow's input 'n' must be of type integer, got 1.5"),
        ],
    ),
    (
        "tab_indent",
        [
            (3, 1, "invalid YAML: found character '\\t' that cannot start any token"),
        ],
    ),
    (
        "template_syntax",
        [
            (3, 13, "unexpected '}'"),
        ],
    ),
    (
        "template_syntax_block",
        [
            (8, 7, "unexpected '}'"),
        ],
    ),
    (
        "template_syntax_block_first_line",
        [
            (4, 7, "unexpected '}'"),
        ],
    ),
    (
        "top_level_list",
        [
            (1, 1, "a workflow must be a mapping at the top level, not a list"),
        ],
    ),
    (
        "two_kinds",
        [
            (4, 5, "a step is exactly one kind, but this one has `prompt` and `function`"),
        ],
    ),
    (
        "typed_reference",
        [
            (11, 13, "step 'extract' has no output field 'titel'"),
            (13, 15, "for_each needs a list, but steps.extract.output.title is of type string"),
        ],
    ),
    (
        "unknown_input_ref",
        [
            (5, 13, "unknown input 'artcle'"),
        ],
    ),
    (
        "unknown_needs",
        [
            (6, 12, "unknown step 'c'"),
        ],
    ),
    (
        "unknown_provider",
        [
            (7, 15, "unknown provider 'locl'"),
        ],
    ),
    (
        "provider_rate_limits",
        [
            (3, 10, "provider 'nourl' needs a base_url"),
            (4, 54, "`tpm` must be at least 1, got 0"),
        ],
    ),
    (
        "unknown_step_key",
        [
            (4, 5, "unknown key 'temprature' in a step"),
        ],
    ),
    (
        "unknown_step_ref",
        [
            (5, 13, "unknown step 'sumarize'"),
        ],
    ),
    (
        "unknown_top_key",
        [
            (1, 1, "unknown key 'step' in the workflow"),
            (1, 1, "the workflow has no `steps`"),
        ],
    ),
    (
        "unknown_variable",
        [
            (3, 13, "unknown variable 'input' in a template"),
            (3, 13, "unknown variable 'item' in a template"),
        ],
    ),
    (
        "unquoted_template",
        [
            (5, 11, "YAML reads an unquoted {{ ... }} as a mapping"),
            (9, 10, "YAML reads an unquoted {{ ... }} as a mapping"),
            (10, 11, "YAML reads an unquoted {{ ... }} as a mapping"),
            (10, 11, "unknown variable 'stepz' in a template"),
            (13, 31, "YAML reads an unquoted {{ ... }} as a mapping"),
            (15, 6, "YAML reads an unquoted {{ ... }} as a mapping"),
        ],
    ),
    (
        "version_2",
        [
            (1, 10, "unsupported version 2"),
        ],
    ),
    (
        "wrong_type_bool",
        [
            (2, 10, "expected true or false, got a string ('false')"),
        ],
    ),
    (
        "wrong_type_int",
        [
            (3, 12, "expected an integer, got a number (1.5)"),
        ],
    ),
    (
        "wrong_type_str",
        [
            (4, 12, "expected a string, got an integer (4)"),
        ],
    ),
    (
        "yaml_colon_in_value",
        [
            (3, 15, "invalid YAML: mapping values are not allowed here"),
        ],
    ),
    (
        "yaml_indentation",
        [
            (4, 4, "invalid YAML: expected <block end>, but found '<block mapping start>'"),
        ],
    ),
    (
        "yaml_syntax",
        [
            (5, 1, "invalid YAML: expected ',' or ']', but got '<stream end>'"),
        ],
    ),
]


def test_the_corpus_covers_every_file() -> None:
    """Every broken file in tests/invalid has its expected diagnostics listed here."""
    assert sorted(p.stem for p in CORPUS.glob("*.yaml")) == sorted(name for name, _ in EXPECTED)


@pytest.mark.parametrize(("name", "expected"), EXPECTED, ids=[name for name, _ in EXPECTED])
def test_broken_workflow_diagnostics(name: str, expected: list[tuple[int, int, str]]) -> None:
    """Each broken file reports exactly these problems, at these lines and columns."""
    report = validate_file(CORPUS / f"{name}.yaml")
    assert not report.valid
    assert [(d.line, d.column, d.message) for d in report.diagnostics] == expected


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("misspelt_kind", "did you mean 'prompt'?"),
        ("unknown_step_key", "did you mean 'temperature'?"),
        ("unknown_step_ref", "did you mean 'summarize'?"),
        ("unknown_input_ref", "did you mean 'article'?"),
        ("unknown_provider", "did you mean 'local'?"),
        ("malformed_id", "use letters, digits and underscores, e.g. 'summarize_article'"),
        ("typed_reference", "did you mean 'title'?"),
        ("tab_indent", "indent with spaces: YAML does not allow tabs"),
        ("bad_enum", "did you mean 'continue'?"),
        ("input_enum_default", "did you mean 'formal'?"),
        ("broken_step_duplicate_id", "it is first used on line 2; ids must be unique"),
        ("schema_remote_ref", "write it as `$ref: '#/$defs/NAME'` with the schema under `$defs:`"),
        (
            "comparison_type",
            "write 5 without quotes; as it is, the comparison fails when the step runs",
        ),
        ("function_misspelt", "did you mean 'count_words'?"),
        (
            "mock_schema_mismatch",
            "`--mock` answers with this text, and it is checked like a model's reply",
        ),
        ("unquoted_template", "an expression is written without braces: when: inputs.x"),
        ("messages_string", "write each as `- {role: user, content: ...}`, or use `prompt:`"),
        ("input_spec_null", "write `a: {}` for a string input"),
        ("check_misspelt_kind", "did you mean 'contains'?"),
        ("check_unknown_output", "did you mean 'answer'?"),
        ("check_unknown_step", "did you mean 'answer'?"),
        ("check_needs_output", "name one of city, country"),
        ("check_two_kinds", "split it into two checks"),
        ("check_function", "did you mean 'count_words'?"),
        ("yaml_indentation", "the indentation of this line does not match the lines above it"),
        (
            "yaml_colon_in_value",
            "a value holds ': ' (or a key is indented too far): quote the "
            "value, or line the key up with the keys above it",
        ),
    ],
)
def test_hints_point_at_the_fix(name: str, hint: str) -> None:
    """Near misses get a did-you-mean; other mistakes a hint of how to fix them."""
    report = validate_file(CORPUS / f"{name}.yaml")
    assert report.diagnostics[0].hint == hint


def test_oversized_file_is_rejected_before_parsing(tmp_path: Path) -> None:
    """A file over 10 MB is refused at 1:1 without being read as YAML."""
    big = tmp_path / "big.yaml"
    big.write_bytes(b"steps: []\n" + b"#" * MAX_FILE_BYTES)
    report = validate_file(big)
    assert [(d.line, d.column) for d in report.diagnostics] == [(1, 1)]
    assert "limited to 10,485,760 bytes" in report.diagnostics[0].message


@pytest.mark.parametrize("name", [name for name, _ in EXPECTED])
def test_cli_exits_2_with_located_errors(cli: Callable, name: str) -> None:
    """`orchestrate validate` prints FILE:LINE:COL: error: ... to stderr and exits 2."""
    path = CORPUS / f"{name}.yaml"
    result = cli("validate", path)
    assert result.exit_code == 2
    first = validate_file(path).diagnostics[0]
    assert f"{path}:{first.line}:{first.column}: error: {first.message}" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_validate_json_report(cli: Callable) -> None:
    """--json prints the SPEC's report to stdout, one entry per file."""
    good = REPO / "workflows" / "article-digest.yaml"
    bad = CORPUS / "self_reference.yaml"
    result = cli("validate", good, bad, "--json")
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert report["valid"] is False
    assert [f["valid"] for f in report["files"]] == [True, False]
    assert report["files"][1]["diagnostics"] == [
        {
            "file": str(bad),
            "line": 3,
            "column": 13,
            "severity": "error",
            "message": "step 'a' refers to itself",
            "hint": None,
        }
    ]


def test_valid_files_exit_0(cli: Callable) -> None:
    """Valid files exit 0 and say ok on stderr, nothing on stdout."""
    result = cli("validate", REPO / "workflows" / "article-digest.yaml")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "ok" in result.stderr


def test_missing_file_is_a_located_error(cli: Callable, tmp_path: Path) -> None:
    """A file that does not exist is reported like any other problem."""
    result = cli("validate", tmp_path / "nope.yaml")
    assert result.exit_code == 2
    assert "nope.yaml:1:1: error: cannot read the file" in result.stderr


def test_all_problems_at_once(tmp_path: Path) -> None:
    """Independent problems in different places are all reported in one pass."""
    report = validate_file(CORPUS / "several_errors.yaml")
    assert len(report.diagnostics) == 6


def test_a_schema_ref_is_never_fetched_by_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checking a schema with a remote $ref makes no request."""
    import urllib.request

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("validate fetched a $ref")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    assert not validate_file(CORPUS / "schema_remote_ref.yaml").valid


def test_sub_workflow_problems_are_reported_with_the_parent(write_flow: Callable) -> None:
    """A broken sub-workflow is validated with its parent and located in its own file."""
    child = write_flow(
        """
        steps:
          - id: x
            promt: hi
        """,
        "child.yaml",
    )
    parent = write_flow("""
        steps:
          - id: sub
            workflow: child.yaml
        """)
    report = validate_file(parent)
    assert [(d.file, d.line, d.column) for d in report.diagnostics] == [(str(child), 3, 5)]


def test_sub_workflow_recursion_is_an_error(write_flow: Callable) -> None:
    """A workflow that runs itself through a sub-workflow is refused."""
    flow = write_flow("""
        steps:
          - id: again
            workflow: flow.yaml
        """)
    report = validate_file(flow)
    assert [d.message for d in report.diagnostics] == ["sub-workflow 'flow.yaml' includes itself"]


def test_a_broken_step_still_gets_its_templates_checked(write_flow: Callable) -> None:
    """A step with a wrong key still has its templates checked, in the same pass."""
    flow = write_flow("""
        inputs:
          topic: {type: strng}
        steps:
          - id: a
            prompt: "{{ inputs.topik }} {{ ''.__class__ }}"
            temprature: 0.2
        """)
    report = validate_file(flow)
    assert [(d.line, d.column, d.message, d.hint) for d in report.diagnostics] == [
        (
            2,
            17,
            "expected one of string, number, integer, boolean, array, object, got 'strng'",
            "did you mean 'string'?",
        ),
        (
            5,
            13,
            "access to '__class__' is not allowed in templates",
            "templates may read inputs, steps and their values, but not private ('_') or "
            "internal attributes",
        ),
        (6, 5, "unknown key 'temprature' in a step", "did you mean 'temperature'?"),
    ]


def test_a_folder_is_searched_for_workflows(
    cli: Callable, write_flow: Callable, tmp_path: Path
) -> None:
    """`validate DIR` checks every *.yaml/*.yml with `steps:` below DIR, and nothing else."""
    write_flow("steps: [{id: a, prompt: hi}]\n", "flows/good.yaml")
    write_flow("steps:\n  - id: b\n    promt: hi\n", "flows/deep/er/bad.yml")
    write_flow("version: 1\nname: not a workflow\n", "flows/config.yaml")
    write_flow("steps: [{id: a, promt: hi}]\n", "flows/notes.txt")
    write_flow("steps: [{id: a, promt: hi}]\n", "flows/.hidden/bad.yaml")
    result = cli("validate", tmp_path / "flows", "--json")
    assert result.exit_code == 2
    files = [(f["file"], f["valid"]) for f in json.loads(result.stdout)["files"]]
    assert files == [
        (str(tmp_path / "flows/deep/er/bad.yml"), False),
        (str(tmp_path / "flows/good.yaml"), True),
    ]


def test_a_folder_without_workflows_is_a_warning(cli: Callable, tmp_path: Path) -> None:
    """A folder with no workflow in it says so on stderr, and is not an error."""
    result = cli("validate", tmp_path)
    assert result.exit_code == 0
    assert f"warning: no workflow files (*.yaml, *.yml with `steps:`) in {tmp_path}" in (
        result.stderr
    )


@pytest.mark.parametrize("paths", [[""], ["FLOW", " "]])
def test_an_empty_path_is_a_usage_error(
    cli: Callable, write_flow: Callable, paths: list[str]
) -> None:
    """`validate ''` is exit 2 naming the argument, not a search of the current folder."""
    flow = str(write_flow("steps: [{id: a, prompt: hi}]\n"))
    result = cli("validate", *[flow if p == "FLOW" else p for p in paths])
    assert result.exit_code == 2
    assert result.stderr == "error: FLOW must not be empty\n"


def test_the_workflows_folder_validates(cli: Callable) -> None:
    """`validate workflows/` finds and accepts every example."""
    result = cli("validate", REPO / "workflows")
    assert result.exit_code == 0
    checked = {line.removesuffix(": ok") for line in result.stderr.splitlines()}
    assert checked == {str(p) for p in (REPO / "workflows").rglob("*.yaml")}


@pytest.mark.parametrize(
    ("when", "hint"),
    [
        (
            'steps.g.output.score == "5"',
            "write 5 without quotes; as it is, the comparison is always false",
        ),
        (
            "steps.g.output.label != 3",
            'write "3" in quotes; as it is, the comparison is always true',
        ),
        ('steps.g.output.tags < "a"', "as it is, the comparison fails when the step runs"),
        (
            "inputs.level > 3",
            "declare the input with `type: number` (an input without `type` "
            "is a string); as it is, the comparison fails when the step runs",
        ),
        ('steps.each.output == "x"', "as it is, the comparison is always false"),
    ],
)
def test_comparison_hints_say_what_goes_wrong(write_flow: Callable, when: str, hint: str) -> None:
    """A mistyped comparison's hint gives the fix and what the comparison would do."""
    flow = write_flow(f"""
        inputs:
          level: {{}}
        steps:
          - id: g
            prompt: x
            schema:
              type: object
              properties: {{score: {{type: integer}}, label: {{type: string}},
                            tags: {{type: array}}}}
          - id: each
            for_each: "[1, 2]"
            prompt: "{{{{ item }}}}"
          - id: use
            when: {when}
            prompt: x
        """)
    assert [d.hint for d in validate_file(flow).diagnostics] == [hint]


@pytest.mark.parametrize(
    "source",
    [
        "from os.path import *\n",
        "def __getattr__(name):\n    return len\n",
        "globals()['count_wrds'] = len\n",
        "def broken(:\n",
        "def setup():\n    global count_wrds\n    count_wrds = len\n",
        "try:\n    from fast import count_wrds\nexcept ImportError:\n    count_wrds = len\n",
        "if True:\n    count_wrds = len\n",
    ],
)
def test_function_names_are_checked_only_when_the_source_tells(
    write_flow: Callable, source: str
) -> None:
    """Names made at run time, or a module that cannot be parsed, are never reported."""
    write_flow(source, "dynamic_tools.py")
    flow = write_flow("steps: [{id: a, function: 'dynamic_tools:count_wrds'}]\n")
    assert validate_file(flow).diagnostics == []


def test_validate_reads_function_modules_without_importing_them(write_flow: Callable) -> None:
    """The module is parsed, never run: validate executes no user code."""
    import sys

    write_flow("import sys\nsys.exit('imported')\ndef count_words(): ...\n", "never_run.py")
    write_flow("", "pkg/__init__.py")
    write_flow("raise SystemExit('imported')\ndef split(): ...\n", "pkg/sub.py")
    flow = write_flow("""
        steps:
          - {id: a, function: 'never_run:count_wrds'}
          - {id: b, function: 'pkg.sub:splt'}
          - {id: c, function: 'pkg:sub'}
        """)
    report = validate_file(flow)
    assert [(d.message, d.hint) for d in report.diagnostics] == [
        ("module 'never_run' has no 'count_wrds'", "did you mean 'count_words'?"),
        ("module 'pkg.sub' has no 'splt'", "did you mean 'split'?"),
    ]
    assert "never_run" not in sys.modules and "pkg" not in sys.modules


def test_a_diamond_of_sub_workflows_loads_each_file_once(
    write_flow: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A uses B and C, both use D, and so on: each file is loaded (and reported) once."""
    from orchestrate import _validate

    levels = 12  # loaded along every path, the bottom file alone would be loaded 4,096 times
    bottom = write_flow("steps:\n  - {id: a, promt: hi}\n", f"d{levels}.yaml")
    for level in range(levels - 1, -1, -1):
        for side in "lr":
            write_flow(
                f"steps:\n  - {{id: a, workflow: d{level + 1}.yaml}}\n", f"d{level}{side}.yaml"
            )
        top = write_flow(
            f"steps:\n  - {{id: a, workflow: d{level}l.yaml}}\n"
            f"  - {{id: b, workflow: d{level}r.yaml}}\n",
            f"d{level}.yaml",
        )
    loads: list[Path] = []
    real_load = _validate.load_file

    def counting_load(path: Path, display: str | None = None) -> object:
        loads.append(Path(path).resolve())
        return real_load(path, display)

    monkeypatch.setattr(_validate, "load_file", counting_load)
    report = validate_file(top)
    assert len(loads) == 3 * levels + 1
    assert len(set(loads)) == len(loads)
    assert [(d.file, d.line, d.message) for d in report.diagnostics] == [
        (str(bottom), 2, "unknown key 'promt' in a step")
    ]
    assert len(report.children) == 3 * levels


def test_every_template_is_parsed_once(
    write_flow: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cycle check reuses what the template checks parsed instead of parsing again."""
    from orchestrate._plan import TemplateSite

    parsed: list[str] = []
    real_parse = TemplateSite.parse

    def counting_parse(site: TemplateSite) -> object:
        parsed.append(site.source)
        return real_parse(site)

    monkeypatch.setattr(TemplateSite, "parse", counting_parse)
    path = write_flow("""
        steps:
          - {id: a, prompt: "{{ steps.b.output }}x"}
          - {id: b, prompt: "y", when: "steps.c.status == 'skipped'"}
          - {id: c, prompt: "z"}
        """)
    assert validate_file(path).valid
    assert sorted(parsed) == sorted(
        ["{{ steps.b.output }}x", "y", "steps.c.status == 'skipped'", "z"]
    )


def test_each_unquoted_template_hints_at_its_quoted_form() -> None:
    """`key: {{ x }}` read as a mapping: the hint writes the same line, quoted."""
    report = validate_file(CORPUS / "unquoted_template.yaml")
    assert [d.hint for d in report.diagnostics if "unquoted" in d.message] == [
        "an expression is written without braces: when: inputs.x",
        'quote the template: x: "{{ steps.a.output }}"',
        'quote the template: - "{{ stepz.a.output }}"',
        'quote the template: content: "{{ inputs.x | upper }}"',
        'quote the template: o: "{{ steps.a.output }}"',
    ]
