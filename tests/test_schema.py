"""`orchestrate schema`: the JSON Schema of the format, kept in step with the spec classes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import attrs
import jsonschema
import pytest
from ruamel.yaml import YAML

from orchestrate._schema import workflow_schema
from orchestrate._spec import (
    SETTING_KEYS,
    ExpectCheck,
    FunctionCheck,
    FunctionStep,
    InputSpec,
    Judge,
    JudgeCheck,
    LLMStep,
    MatchCheck,
    ProviderSpec,
    SchemaCheck,
    Workflow,
    WorkflowStep,
)
from orchestrate._validate import validate_file
from tests.conftest import REPO
from tests.test_validate import CORPUS


def keys(cls: type, skip: tuple[str, ...] = ()) -> set[str]:
    return {f.name.rstrip("_") for f in attrs.fields(cls) if f.name not in skip}


def test_schema_command_prints_a_valid_schema(cli: Callable) -> None:
    """The command prints a JSON Schema that is itself valid (draft 2020-12)."""
    result = cli("schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema == workflow_schema()


@pytest.mark.parametrize(
    ("where", "cls", "skip"),
    [
        (("properties",), Workflow, ("path",)),
        (("properties", "inputs", "additionalProperties", "properties"), InputSpec, ()),
        (("properties", "providers", "additionalProperties", "properties"), ProviderSpec, ()),
        (("$defs", "function_step", "properties"), FunctionStep, ()),
        (("$defs", "workflow_step", "properties"), WorkflowStep, ()),
        (("$defs", "expect_check", "properties"), ExpectCheck, ()),
        (("$defs", "schema_check", "properties"), SchemaCheck, ()),
        (("$defs", "match_check", "properties"), MatchCheck, ()),
        (("$defs", "judge_check", "properties"), JudgeCheck, ()),
        (("$defs", "judge_check", "properties", "judge", "properties"), Judge, ()),
        (("$defs", "function_check", "properties"), FunctionCheck, ()),
    ],
)
def test_schema_has_every_field_of_the_classes(
    where: tuple[str, ...], cls: type, skip: tuple[str, ...]
) -> None:
    """Each class's fields are exactly the properties the schema allows: no drift."""
    node = workflow_schema()
    for part in where:
        node = node[part]
    assert set(node) == keys(cls, skip)


def test_llm_step_schema_has_step_and_setting_keys() -> None:
    """An LLM step allows its own keys plus every setting that `defaults` has."""
    properties = workflow_schema()["$defs"]["llm_step"]["properties"]
    assert set(properties) == keys(LLMStep, ("settings",)) | set(SETTING_KEYS)


# Corpus files whose problem JSON Schema cannot express, each with the reason. Every other
# file in tests/invalid must be rejected by the generated schema.
_MEANING = "a template's or expression's meaning, which JSON Schema cannot read"
NOT_EXPRESSIBLE: dict[str, str] = {
    "alias_bomb": "a limit on YAML alias expansion: once parsed it is only data",
    "duplicate_key": "not loadable YAML: the parser refuses it before any schema",
    "not_utf8": "not loadable YAML: the parser refuses it before any schema",
    "tab_indent": "not loadable YAML: the parser refuses it before any schema",
    "yaml_syntax": "not loadable YAML: the parser refuses it before any schema",
    "duplicate_merge_key": "not loadable YAML: the parser refuses it before any schema",
    "huge_integer": "not loadable YAML: the parser refuses it before any schema",
    "impossible_date": "not loadable YAML: the parser refuses it before any schema",
    "merge_indirect": "not loadable YAML: the parser refuses it before any schema",
    "merge_into_itself": "not loadable YAML: the parser refuses it before any schema",
    "unquoted_template": "not loadable YAML: a mapping used as a key is unhashable",
    "yaml_colon_in_value": "not loadable YAML: the parser refuses it before any schema",
    "yaml_indentation": "not loadable YAML: the parser refuses it before any schema",
    "duplicate_id": "uniqueness of one key across array items (uniqueItems compares whole items)",
    "needs_cycle": "a cycle in the graph the steps' references make",
    "self_reference": _MEANING,
    "bad_output_field": _MEANING,
    "comparison_type": _MEANING,
    "expression_syntax": _MEANING,
    "for_each_not_a_list": _MEANING,
    "sandbox_escape": _MEANING,
    "sandbox_escape_item": _MEANING,
    "template_syntax": _MEANING,
    "template_syntax_block": _MEANING,
    "template_syntax_block_first_line": _MEANING,
    "typed_reference": _MEANING,
    "unknown_input_ref": _MEANING,
    "unknown_step_ref": _MEANING,
    "unknown_variable": _MEANING,
    "check_unknown_output": "a value that must be one of the outputs named elsewhere",
    "check_unknown_step": _MEANING,
    "check_expression_syntax": _MEANING,
    "check_needs_output": "a key required only when the workflow has several outputs",
    "check_bad_regex": "regex syntax",
    "check_bad_schema": "expressible as a $ref to the meta-schema, left out (as for steps)",
    "check_duplicate_id": "uniqueness of one key across array items (uniqueItems compares "
    "whole items)",
    "unknown_needs": "a value that must be one of the ids used elsewhere in the file",
    "unknown_provider": "a value that must be a built-in provider or a key of `providers`",
    "function_misspelt": "the names a Python module defines",
    "missing_subworkflow": "whether a file exists",
    "input_enum_default": "a value that must be one of a sibling list's values",
    "sub_workflow_with_type": "another file's input types",
    "mock_schema_mismatch": "a JSON document inside a string, checked against a sibling schema",
    "schema_bad_regex": "regex syntax (`format: regex` is an annotation, not an assertion)",
    "schema_unresolved_ref": "where a JSON pointer inside the value points",
    "invalid_json_schema": "expressible as a $ref to the meta-schema, left out: editors would "
    "fetch it from the web, and a step's `$schema` picks the draft",
    "schema_remote_ref": "the form of `$ref` at any depth of a schema but not under data "
    "keywords (`const`, `enum`...) that may hold a `$ref` key; left to "
    "validate",
}
EXPRESSIBLE = sorted(p.stem for p in CORPUS.glob("*.yaml") if p.stem not in NOT_EXPRESSIBLE)


def _load(path: Path) -> object:
    return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))


def test_the_inexpressible_list_names_corpus_files() -> None:
    """Each exception names a file that exists, so the list cannot rot."""
    assert set(NOT_EXPRESSIBLE) <= {p.stem for p in CORPUS.glob("*.yaml")}


@pytest.mark.parametrize("name", EXPRESSIBLE)
def test_schema_rejects_what_validate_rejects(name: str) -> None:
    """Every broken corpus file whose problem JSON Schema can express is rejected by it."""
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_load(CORPUS / f"{name}.yaml"), workflow_schema())


@pytest.mark.parametrize("path", sorted((REPO / "workflows").rglob("*.yaml")), ids=lambda p: p.name)
def test_schema_accepts_every_example(path: Path) -> None:
    """Every workflow in workflows/ satisfies the schema."""
    jsonschema.validate(_load(path), workflow_schema())


@pytest.mark.parametrize(
    "fragment",
    [
        "inputs: {bad-name: {}}\nsteps: [{id: a, prompt: x}]",
        "inputs: {n: {type: number, default: '1'}}\nsteps: [{id: a, prompt: x}]",
        "inputs: {s: {default: 1}}\nsteps: [{id: a, prompt: x}]",
        "steps: [{id: a-b, prompt: x}]",
        "steps: [{id: a, function: 'no colon'}]",
        "steps: [{id: a, function: 'm:f', timeout: 0}]",
        "steps: [{id: a, workflow: x.yaml, timeout: -1}]",
        "steps: [{id: a, prompt: x, temperature: -0.1}]",
        "defaults: {max_tokens: 0}\nsteps: [{id: a, prompt: x}]",
        "version: 2\nsteps: [{id: a, prompt: x}]",
    ],
)
def test_schema_rules_reject(fragment: str, tmp_path: Path) -> None:
    """Patterns, ranges, typed defaults and the version are in the schema
    (and `validate` rejects each file too)."""
    flow = tmp_path / "flow.yaml"
    flow.write_text(fragment, encoding="utf-8")
    assert not validate_file(flow).valid
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_load(flow), workflow_schema())
