"""docs/strangler.schema.json: generated from the schema, committed, and read by editors."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from strangler.proxy.commands.cli import main
from strangler.proxy.config import json_schema

REPO = Path(__file__).resolve().parents[4]
SCHEMA_FILE = REPO / "docs" / "strangler.schema.json"
DEMO_CONFIG = REPO / "proxy" / "commands" / "demo_config" / "strangler.yaml"


def test_the_committed_schema_is_what_the_code_generates() -> None:
    committed = SCHEMA_FILE.read_text()
    generated = json.dumps(json_schema(), indent=2) + "\n"
    assert committed == generated, (
        "docs/strangler.schema.json is out of date; regenerate it with\n"
        "    strangler config-schema > docs/strangler.schema.json"
    )


def test_config_schema_command_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config-schema"]) == 0
    assert json.loads(capsys.readouterr().out) == json_schema()


def test_every_key_has_a_description_for_editors() -> None:
    schema = json_schema()
    for name, definition in schema["$defs"].items():
        for key, prop in definition.get("properties", {}).items():
            target = schema["$defs"].get(prop.get("$ref", "").rpartition("/")[2], prop)
            assert "description" in prop or "description" in target, f"{name}.{key}"


def test_the_demo_config_names_the_schema_for_editors() -> None:
    first_line = DEMO_CONFIG.read_text().splitlines()[0]
    assert first_line == "# yaml-language-server: $schema=../../../docs/strangler.schema.json"
    assert (DEMO_CONFIG.parent / "../../../docs/strangler.schema.json").resolve() == SCHEMA_FILE


def test_the_schema_accepts_the_demo_config() -> None:
    assert problems(yaml.safe_load(DEMO_CONFIG.read_text()), json_schema()) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"relay": {"colour": "red"}}, "relay: unknown key colour"),
        ({"logging": {"format": "xml"}}, "logging.format: not one of ['text', 'json']"),
        ({"limits": {"max_connections": 0}}, "limits.max_connections: below 1"),
        ({"routes": "main"}, "routes: not of type array"),
    ],
)
def test_the_schema_rejects_what_the_proxy_rejects(change: dict[str, Any], problem: str) -> None:
    document = {**yaml.safe_load(DEMO_CONFIG.read_text()), **change}
    assert problems(document, json_schema()) == [problem]


def problems(value: Any, schema: dict[str, Any]) -> list[str]:
    """What a JSON Schema validator would report, for the keywords this schema uses."""
    return _check(value, schema, schema, "")


_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _check(value: Any, schema: dict[str, Any], root: dict[str, Any], where: str) -> list[str]:
    if "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rpartition("/")[2]]
    if "anyOf" in schema:
        options = [_check(value, option, root, where) for option in schema["anyOf"]]
        return [] if [] in options else [f"{where}: matches no option"]
    kinds = schema.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if kinds and not any(_is(value, kind) for kind in kinds):
        return [f"{where}: not of type {'/'.join(kinds)}"]
    found = []
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{where}: not one of {schema['enum']}")
    if "minimum" in schema and value < schema["minimum"]:
        found.append(f"{where}: below {schema['minimum']}")
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        found.append(f"{where}: not above {schema['exclusiveMinimum']}")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        found.append(f"{where}: does not match {schema['pattern']}")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        missing = [key for key in schema.get("required", ()) if key not in value]
        found += [f"{where}: {key} is required" for key in missing]
        for key, item in value.items():
            at = f"{where}.{key}" if where else key
            if key in properties:
                found += _check(item, properties[key], root, at)
            elif schema.get("additionalProperties") is False:
                found.append(f"{where}: unknown key {key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                found += _check(item, schema["additionalProperties"], root, at)
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += _check(item, schema["items"], root, f"{where}[{i}]")
    return found


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, _TYPES[kind])


FORBIDDEN = ("aiohttp", "asyncio", "socket", "prometheus_client", "multidict", "yarl")


@pytest.mark.parametrize("module", sorted((REPO / "proxy" / "config").glob("*.py")), ids=str)
def test_config_modules_import_no_io_and_nothing_above_them(module: Path) -> None:
    imported = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert not {name for name in imported if name.split(".")[0] in FORBIDDEN}
    above = {n for n in imported if n.startswith("strangler.proxy.") and ".config" not in n}
    # The one exception (pyproject's [tool.importlinter]): the jwt verifier, at start-up.
    assert above <= {"strangler.proxy.edge.identity"}
