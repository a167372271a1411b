"""`orchestrate schema`: the JSON Schema of the format, kept in step with the spec classes."""

from __future__ import annotations

import json
from collections.abc import Callable

import attrs
import jsonschema
import pytest
from ruamel.yaml import YAML

from orchestrate._schema import workflow_schema
from orchestrate._spec import (
    SETTING_KEYS,
    FunctionStep,
    InputSpec,
    LLMStep,
    ProviderSpec,
    Workflow,
    WorkflowStep,
)
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
    ],
)
def test_schema_has_every_field_of_the_classes(where: tuple[str, ...], cls: type,
                                               skip: tuple[str, ...]) -> None:
    """Each class's fields are exactly the properties the schema allows: no drift."""
    node = workflow_schema()
    for part in where:
        node = node[part]
    assert set(node) == keys(cls, skip)


def test_llm_step_schema_has_step_and_setting_keys() -> None:
    """An LLM step allows its own keys plus every setting that `defaults` has."""
    properties = workflow_schema()["$defs"]["llm_step"]["properties"]
    assert set(properties) == keys(LLMStep, ("settings",)) | set(SETTING_KEYS)


BROKEN_SAMPLE = ["unknown_top_key", "unknown_step_key", "misspelt_kind", "wrong_type_int",
                 "wrong_type_bool", "wrong_type_str", "bad_enum", "missing_id", "no_kind",
                 "two_kinds", "steps_not_list", "no_steps", "top_level_list",
                 "prompt_and_messages", "bad_message_role"]


@pytest.mark.parametrize("name", BROKEN_SAMPLE)
def test_schema_rejects_broken_shapes(name: str) -> None:
    """The schema rejects the corpus files whose problem is their shape."""
    data = YAML(typ="safe", pure=True).load((CORPUS / f"{name}.yaml").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, workflow_schema())
