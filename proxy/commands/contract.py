"""The router contract, docs/asyncapi.yaml, as validators for frames in both directions.

Pure: no sockets, no event loop. The document ships inside this package
(`asyncapi.yaml`, a copy of docs/asyncapi.yaml that a test keeps identical), so an
installed `strangler conformance` reads the same contract as the repository. Schemas
are the AsyncAPI default schema format, a superset of JSON Schema draft-07, and are
checked here with draft-07 validators.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

import jsonschema
import yaml
from referencing import Registry
from referencing.jsonschema import DRAFT7

DOCUMENT: Final = "asyncapi.yaml"
# The document's `id`: its schemas' internal `#/...` references resolve against it.
DOCUMENT_URI: Final = "urn:strangler:unified-router"
TURN_END: Final = frozenset({"agent_completed", "agent_error"})
TOOL_PAIR: Final = ("tool_executing", "tool_completed")


@dataclass(frozen=True)
class MessageSpec:
    """One message of the document: its name, direction and payload validator."""

    name: str
    direction: str  # "client" (the router receives it) or "server" (the router sends it)
    types: frozenset[str] | None  # the `type` values it names; None: any other type
    validator: jsonschema.protocols.Validator


class Contract:
    """Validators for every client message and server event the document names."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document
        registry: Registry[Any] = Registry().with_resource(
            DOCUMENT_URI, DRAFT7.create_resource(document)
        )
        directions = _directions(document)
        self.messages: dict[str, MessageSpec] = {}
        for name, message in document["components"]["messages"].items():
            ref = message["payload"]["$ref"]
            schema = {"$ref": DOCUMENT_URI + ref}
            self.messages[name] = MessageSpec(
                name=name,
                direction=directions[name],
                types=_type_values(_resolve(document, ref), document),
                validator=jsonschema.Draft7Validator(schema, registry=registry),
            )

    def specs(self, direction: str) -> list[MessageSpec]:
        """The messages of one direction, in document order."""
        return [spec for spec in self.messages.values() if spec.direction == direction]

    def server_problem(self, frame: Any) -> str | None:
        """Why `frame` is not a server event the document allows (None: it is)."""
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            return "not a JSON object with a string type"
        kind = frame["type"]
        candidates = self._candidates("server", kind)
        if not candidates:
            return f"{kind!r} is not a server event of the contract"
        error = jsonschema.exceptions.best_match(candidates[0].validator.iter_errors(frame))
        if error is not None:
            return f"{kind} does not match the schema at {_where(error)}: {error.message}"
        return _mirror_problem(frame)

    def client_problem(self, frame: Any) -> str | None:
        """Why `frame` is not a client message shape the router must accept (None: it is)."""
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            return "not a JSON object with a string type"
        kind = frame["type"]
        candidates = self._candidates("client", kind)
        problems = []
        for spec in candidates:
            error = jsonschema.exceptions.best_match(spec.validator.iter_errors(frame))
            if error is None:
                return None
            problems.append(f"{spec.name} at {_where(error)}: {error.message}")
        return f"{kind} matches no accepted shape ({'; '.join(problems)})"

    def client_shape(self, frame: Any) -> str | None:
        """The name of the first client message `frame` is valid against, if any."""
        kind = frame.get("type") if isinstance(frame, dict) else None
        if not isinstance(kind, str):
            return None
        for spec in self._candidates("client", kind):
            if spec.validator.is_valid(frame):
                return spec.name
        return None

    def _candidates(self, direction: str, kind: str) -> list[MessageSpec]:
        named = [s for s in self.specs(direction) if s.types is not None and kind in s.types]
        if named or direction == "server":
            return named
        return [s for s in self.specs(direction) if s.types is None]


def package_text() -> str:
    """The contract document shipped in this package."""
    return resources.files(__package__ or "strangler.proxy.commands").joinpath(DOCUMENT).read_text()


@functools.cache
def contract() -> Contract:
    """The packaged contract, loaded once per process."""
    return Contract(yaml.safe_load(package_text()))


def all_schemas(document: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """Every schema the document holds, by a readable location (components, bindings)."""
    for name, schema in document["components"]["schemas"].items():
        yield f"components.schemas.{name}", schema
    for name, message in document["components"]["messages"].items():
        yield f"components.messages.{name}.payload", message["payload"]
    for channel_name, channel in document["channels"].items():
        binding = channel.get("bindings", {}).get("ws", {})
        for part in ("query", "headers"):
            if part in binding:
                yield f"channels.{channel_name}.bindings.ws.{part}", binding[part]


def turn_order_problem(events: Sequence[Mapping[str, Any]]) -> str | None:
    """Why `events` are not one turn in the contract's order (None: they are).

    agent_started, one or more agent_thinking, zero or more tool_executing /
    tool_completed pairs, then agent_completed or agent_error, all with one run_id.
    """
    kinds = [str(event.get("type")) for event in events]
    if not kinds:
        return "no turn events"
    if kinds[0] != "agent_started":
        return f"the turn starts with {kinds[0]}, expected agent_started"
    if kinds[-1] not in TURN_END:
        return f"the turn ends with {kinds[-1]}, expected agent_completed or agent_error"
    index = 1
    thinking = 0
    while index < len(kinds) and kinds[index] == "agent_thinking":
        thinking += 1
        index += 1
    if thinking == 0:
        return f"{kinds[1]} right after agent_started, expected agent_thinking"
    while index < len(kinds) - 1:
        pair = tuple(kinds[index : index + 2])
        if pair != TOOL_PAIR:
            if kinds[index] == "tool_completed":
                return "tool_completed without a tool_executing before it"
            if kinds[index] == "tool_executing":
                return f"tool_executing followed by {kinds[index + 1]}, expected tool_completed"
            return f"{kinds[index]} where a tool pair or the end of the turn was expected"
        index += 2
    run_ids = {event.get("run_id") for event in events}
    if len(run_ids) != 1:
        return f"the turn's events carry {len(run_ids)} different run_ids"
    return None


def _directions(document: Mapping[str, Any]) -> dict[str, str]:
    """Each message's direction: receive operations take client messages, the rest send."""
    found: dict[str, str] = {}
    for operation in document["operations"].values():
        direction = "client" if operation["action"] == "receive" else "server"
        for ref in operation["messages"]:
            found[_message_name(document, ref["$ref"])] = direction
        for ref in operation.get("reply", {}).get("messages", []):
            found[_message_name(document, ref["$ref"])] = "server"
    return found


def _message_name(document: Mapping[str, Any], ref: str) -> str:
    """A channel message reference (`#/channels/c/messages/m`) as its component's name."""
    target = _resolve(document, ref)
    component_ref: str = target["$ref"]
    return component_ref.rsplit("/", 1)[1]


def _resolve(document: Mapping[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _type_values(schema: Mapping[str, Any], document: Mapping[str, Any]) -> frozenset[str] | None:
    """The `type` field values a payload schema names (None: "any other type")."""
    parts = [schema, *schema.get("allOf", [])]
    for part in parts:
        if "$ref" in part:
            found = _type_values(_resolve(document, part["$ref"]), document)
            if found is not None:
                return found
        rule = part.get("properties", {}).get("type", {})
        if "const" in rule:
            return frozenset({rule["const"]})
        if "enum" in rule:
            return frozenset(rule["enum"])
    return None


def _where(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(part) for part in error.absolute_path)
    return path or "the top level"


def _mirror_problem(frame: Mapping[str, Any]) -> str | None:
    """The top-level mirrors JSON Schema cannot tie to `data`: tool_name and results."""
    data = frame.get("data")
    if not isinstance(data, dict):
        return None
    kind = frame["type"]
    if "tool_name" in data and frame.get("tool_name") != data["tool_name"]:
        return f"{kind}: top-level tool_name differs from data.tool_name"
    if kind == "tool_completed" and "result" in data and frame.get("results") != data["result"]:
        return "tool_completed: top-level results differs from data.result"
    return None
