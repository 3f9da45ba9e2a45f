"""The per-connection, bytes-level translation the relay calls for every text frame.

Pure: bytes in, text frames out, no I/O. A frame the dialect leaves unchanged is
forwarded as the original text, so it is never re-encoded.
"""

from __future__ import annotations

import dataclasses
import json
import json.encoder
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from strangler.legacy_adapters.base import Adapter, Context
from strangler.legacy_adapters.canonical import Message

INVALID_JSON: Final = "Invalid JSON"
NOT_AN_OBJECT: Final = "Message must be a JSON object"
NO_TYPE: Final = "Message must have a string 'type'"

# Decoding or encoding can fail on a frame nested deeper than the recursion limit.
_JSON_ERRORS: Final = (ValueError, RecursionError)
_JSON_WHITESPACE: Final = " \t\n\r"
# The accelerator's scanner and encoder factory are undocumented, hence untyped.
_decoder: Any = json.JSONDecoder()
_scan_once: Final[Callable[[str, int], tuple[Any, int]]] = _decoder.scan_once
_json_encoder: Any = json.encoder
_c_make_encoder: Final[Any] = _json_encoder.c_make_encoder  # None without the accelerator


def _decode(text: str) -> Any:
    """json.loads without its two regex passes (half its cost on a small frame)."""
    try:
        value, end = _scan_once(text, 0)
    except StopIteration:
        return json.loads(text)  # leading whitespace, or raises the usual error
    if end != len(text) and text[end:].strip(_JSON_WHITESPACE):
        raise ValueError("Extra data")
    return value


def _unserializable(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _make_encode() -> Callable[[Any], str]:
    if _c_make_encoder is None:  # pragma: no cover - interpreters without the accelerator
        return json.JSONEncoder(ensure_ascii=False, check_circular=False).encode
    # One C encoder for every frame; json.dumps builds a new one per call. No cycle
    # check: frames come from json.loads, and a cycle would still end in RecursionError.
    iterencode = _c_make_encoder(
        None,  # markers: no circular-reference check
        _unserializable,
        json.encoder.encode_basestring,  # ensure_ascii=False: non-ASCII text stays readable
        None,  # indent
        ": ",
        ", ",
        False,  # sort_keys
        False,  # skipkeys
        True,  # allow_nan, as json.loads accepted NaN
    )

    def encode(value: Any) -> str:
        chunks: tuple[str, ...] = iterencode(value, 0)
        return "".join(chunks)

    return encode


_encode: Final = _make_encode()


@dataclass(frozen=True, slots=True)
class Translated:
    """What one frame turns into: text frames onward (``to_peer``) and back (``to_sender``)."""

    to_peer: tuple[str, ...] = ()
    to_sender: tuple[str, ...] = ()
    problem: str | None = None  # why a client frame was rejected (INVALID_JSON, ...)


class Translator:
    """Translates one connection's frames between a client dialect and canonical.

    Remembers the dialect's connection id from the greeting, so later heartbeats
    repeat the id the client was given.
    """

    __slots__ = ("_adapter", "_ctx", "_from_canonical", "_to_canonical")

    def __init__(self, adapter: Adapter, ctx: Context) -> None:
        self._adapter = adapter
        self._ctx = ctx
        # Bound once: the lookups would otherwise run on every frame.
        self._to_canonical = adapter.client_to_canonical
        self._from_canonical = adapter.event_from_canonical

    @property
    def context(self) -> Context:
        """The connection's context, with the connection id once the greeting set it."""
        return self._ctx

    def client_frame(self, data: bytes) -> Translated:
        """A client text frame as canonical frames for the unified router; never raises.

        A frame that is not a JSON object with a string ``type`` goes nowhere; the
        client gets the reply its legacy route sent (if any) and the socket stays open.
        """
        try:
            text = data.decode("utf-8")
            msg = _decode(text)
        except (UnicodeDecodeError, *_JSON_ERRORS):
            return self._reject(INVALID_JSON)
        if type(msg) is not dict:
            return self._reject(NOT_AN_OBJECT)
        if not isinstance(msg.get("type"), str):
            return self._reject(NO_TYPE)
        out = self._to_canonical(msg)
        if out is msg:
            return Translated(to_peer=(text,))
        try:
            return Translated(to_peer=(_encode(out),))
        except _JSON_ERRORS:
            return Translated(to_peer=(text,))  # too deep to re-encode: let the router judge

    def backend_frame(self, data: bytes) -> Translated:
        """A unified router frame as the client's dialect renders it; never raises.

        Anything that is not a JSON object (flood padding, binary-looking text) passes
        through unchanged.
        """
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            # Not valid text; replacement characters keep it sendable as a text frame.
            return Translated(to_peer=(data.decode("utf-8", "replace"),))
        try:
            event = _decode(text)
        except _JSON_ERRORS:
            return Translated(to_peer=(text,))
        if type(event) is not dict:
            return Translated(to_peer=(text,))
        out = self._from_canonical(event, self._ctx)
        if out is event:
            return Translated(to_peer=(text,))
        if event.get("type") == "connection_established":
            self._remember_connection_id(out)
        try:
            return Translated(to_peer=(_encode(out),))
        except _JSON_ERRORS:
            return Translated(to_peer=(text,))

    def _reject(self, problem: str) -> Translated:
        reply = self._adapter.invalid_frame_reply(problem)
        if reply is None:
            return Translated(problem=problem)
        return Translated(to_sender=(_encode(reply),), problem=problem)

    def _remember_connection_id(self, greeting: Message) -> None:
        data = greeting.get("data")
        connection_id = data.get("connection_id") if isinstance(data, dict) else None
        if isinstance(connection_id, str):
            self._ctx = dataclasses.replace(self._ctx, connection_id=connection_id)
