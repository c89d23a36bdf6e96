"""Plain-data wire format between a candidate and the trusted side.

The candidate process sends the *values* its expressions produced; the trusted side
decides equality.  So values travel as JSON (never pickle: decoding must not run code),
with a one-key object tagging each non-JSON type.  Builtin subclasses travel as their
base value (a namedtuple as a tuple, a Counter as a dict, an IntEnum as an int): that
keeps the paper's legitimate equalities and throws away any overridden ``__eq__``.
Anything else becomes an ``Opaque`` that equals nothing, so an object whose ``__eq__``
always answers True cannot pass a comparison.

Decoding runs in the trusted process on bytes the candidate wrote, so it is bounded: the
JSON nesting depth (``MAX_DEPTH`` levels of values; deeper values travel as an ``Opaque``
"too deep", and a forged deeper line is refused), and the work of building sets and dicts:
elements whose hashes collide (a candidate can craft integers that all hash alike, which
makes building the set quadratic) are refused once more than ``MAX_SAME_HASH`` share one.
``short_repr`` describes a decoded value in bounded time and length, and never raises (a
plain ``repr`` of ``fact(2000) + 1`` does); ``printable`` makes any text it sent encodable.
"""

from __future__ import annotations

import json
import math
from collections import Counter

_SMALL_INT_BITS = 63  # beyond this, hex: JSON digit strings are capped at 4300 digits in 3.11
MAX_DEPTH = 100
MAX_SAME_HASH = 64
MAX_CONTAINERS = 500_000  # per result line: lists, tuples, sets, dicts...
MAX_ITEMS = 4_000_000  # per result line: values of any kind (commas, strings' own included)


class Unreadable(ValueError):
    """What the candidate's process sent is not plain data within our bounds."""


class Opaque:
    """Stand-in for a value that is not plain data: unequal to everything, even itself."""

    __slots__ = ("type_name",)

    def __init__(self, type_name: str):
        self.type_name = printable(str(type_name)[:100])

    def __eq__(self, other):
        return False

    def __ne__(self, other):
        return True

    __hash__ = object.__hash__

    def __repr__(self):
        return f"<opaque {self.type_name}>"


def _type_name(value) -> str:
    try:
        return type.__dict__["__qualname__"].__get__(type(value))
    except Exception:
        return "?"


def _encode_int(value: int):
    value = int.__index__(value)
    return value if value.bit_length() <= _SMALL_INT_BITS else {"I": format(value, "x")}


_CONTAINERS = (
    (tuple, "t", tuple.__iter__),
    (frozenset, "f", frozenset.__iter__),
    (set, "s", set.__iter__),
    (list, None, list.__iter__),
)


def _to_plain(value, depth: int = 0):
    if depth > MAX_DEPTH:
        raise RecursionError
    if value is None or value is True or value is False:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, int):
        return _encode_int(value)
    for base, tag, iterate in _CONTAINERS:
        if isinstance(value, base):
            items = [_to_plain(item, depth + 1) for item in iterate(value)]
            return items if tag is None else {tag: items}
    if isinstance(value, dict):
        return {"d": [[_to_plain(k, depth + 1), _to_plain(v, depth + 1)] for k, v in dict.items(value)]}
    if isinstance(value, (bytes, bytearray)):
        return {"b" if isinstance(value, bytes) else "ba": bytes(value).hex()}
    if isinstance(value, complex):
        return {"c": [complex.__complex__(value).real, complex.__complex__(value).imag]}
    return {"o": _type_name(value)}


def encode(value) -> object:
    """Value -> JSON-able structure (candidate side; the candidate controls this anyway)."""
    try:
        return _to_plain(value)
    except RecursionError:
        return {"o": "too deep"}


def _hashable(items: list) -> list:
    """Refuse elements whose hashes collide en masse before a set or dict is built of them."""
    try:
        counts = Counter(map(hash, items))
    except TypeError as exc:
        raise Unreadable(f"unhashable element: {exc}") from None
    if counts and max(counts.values()) > MAX_SAME_HASH:
        raise Unreadable("too many elements with the same hash")
    return items


def _pairs(payload, depth: int) -> list:
    pairs = [(_from_plain(k, depth), _from_plain(v, depth)) for k, v in payload]
    _hashable([k for k, _ in pairs])
    return pairs


def _int(text: str) -> int:
    return -int(text[1:], 16) if text.startswith("-") else int(text, 16)


_DECODERS = {
    "t": lambda v, depth: tuple(_items(v, depth)),
    "f": lambda v, depth: frozenset(_hashable(_items(v, depth))),
    "s": lambda v, depth: set(_hashable(_items(v, depth))),
    "d": lambda v, depth: dict(_pairs(v, depth)),
    "b": lambda v, depth: bytes.fromhex(v),
    "ba": lambda v, depth: bytearray.fromhex(v),
    "c": lambda v, depth: complex(float(v[0]), float(v[1])),
    "I": lambda v, depth: _int(v),
    "o": lambda v, depth: Opaque(v),
}


def _items(data, depth: int) -> list:
    if not isinstance(data, list):
        raise Unreadable("expected a list")
    return [_from_plain(item, depth) for item in data]


def _from_plain(data, depth: int = 0):
    if depth > MAX_DEPTH:
        raise Unreadable("nested too deeply")
    if isinstance(data, list):
        return _items(data, depth + 1)
    if isinstance(data, dict):
        ((tag, payload),) = data.items()
        return _DECODERS[tag](payload, depth + 1)
    return data


def decode(data) -> object:
    """JSON-parsed structure -> value (trusted side).  Anything malformed raises ``Unreadable``."""
    try:
        return _from_plain(data)
    except Unreadable:
        raise
    except Exception as exc:  # KeyError, TypeError, ValueError, RecursionError, MemoryError...
        raise Unreadable(f"not plain data: {type(exc).__name__}") from None


def loads(line: str) -> object:
    """Parse one result line within ``MAX_CONTAINERS`` lists/objects and ``MAX_ITEMS`` values.

    Counted before parsing (at C speed), so a line of millions of ``[]`` costs nothing; the
    C parser itself stops at the interpreter's recursion limit.
    """
    if line.count("[") + line.count("{") > MAX_CONTAINERS or line.count(",") > MAX_ITEMS:
        raise Unreadable("too many values to check")
    try:
        return json.loads(line)
    except Exception as exc:  # ValueError, RecursionError (deep nesting), MemoryError
        raise Unreadable(f"unreadable result line ({type(exc).__name__})") from None


def dumps(message) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


_CLOSERS = {list: "[]", tuple: "()", set: "{}", frozenset: "{}", dict: "{}"}


def _short_int(value: int) -> str:
    bits = value.bit_length()
    if bits <= 1000:
        return repr(value)
    return f"<int of about {int(bits * math.log10(2)) + 1} digits>"


def _describe(value, budget: int, depth: int) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, (float, complex, Opaque)):
        return repr(value)
    if isinstance(value, int):
        return _short_int(value)
    if isinstance(value, (str, bytes, bytearray)):
        text = repr(value[:budget])
        return text if len(value) <= budget else text + "..."
    kind = type(value)
    if kind not in _CLOSERS or depth > 8:
        return "<...>" if kind in _CLOSERS else f"<{type(value).__name__}>"
    items = value.items() if kind is dict else value
    opening, closing = _CLOSERS[kind]
    parts, used = [], 2
    for item in items:
        if used >= budget:
            parts.append("...")
            break
        if kind is dict:
            key, val = item
            part = f"{_describe(key, budget - used, depth + 1)}: {_describe(val, budget - used, depth + 1)}"
        else:
            part = _describe(item, budget - used, depth + 1)
        parts.append(part)
        used += len(part) + 2
    if kind is frozenset:
        return f"frozenset({{{', '.join(parts)}}})"
    if kind is tuple and len(parts) == 1:
        return f"({parts[0]},)"
    if kind is set and not parts:
        return "set()"
    return opening + ", ".join(parts) + closing


def short_repr(value, limit: int = 300) -> str:
    """A bounded description of a decoded value; never raises, never exceeds ``limit``."""
    try:
        text = printable(_describe(value, limit, 0))
    except Exception:
        return "<unprintable>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def printable(text: str) -> str:
    """``text`` with what UTF-8 cannot encode (a lone surrogate from the candidate) escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
