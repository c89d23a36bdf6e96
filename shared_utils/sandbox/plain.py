"""Plain-data wire format between a candidate and the trusted side.

The candidate process sends the *values* its expressions produced; the trusted side
decides equality.  So values travel as JSON (never pickle: decoding must not run code),
with a one-key object tagging each non-JSON type.  Builtin subclasses travel as their
base value (a namedtuple as a tuple, a Counter as a dict, an IntEnum as an int): that
keeps the paper's legitimate equalities and throws away any overridden ``__eq__``.
Anything else becomes an ``Opaque`` that equals nothing, so an object whose ``__eq__``
always answers True cannot pass a comparison.
"""

from __future__ import annotations

import json

_SMALL_INT_BITS = 63  # beyond this, hex: JSON digit strings are capped at 4300 digits in 3.11


class Opaque:
    """Stand-in for a value that is not plain data: unequal to everything, even itself."""

    __slots__ = ("type_name",)

    def __init__(self, type_name: str):
        self.type_name = str(type_name)[:100]

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


def _to_plain(value):
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
            items = [_to_plain(item) for item in iterate(value)]
            return items if tag is None else {tag: items}
    if isinstance(value, dict):
        return {"d": [[_to_plain(k), _to_plain(v)] for k, v in dict.items(value)]}
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


_DECODERS = {
    "t": lambda v: tuple(map(_from_plain, v)),
    "f": lambda v: frozenset(map(_from_plain, v)),
    "s": lambda v: set(map(_from_plain, v)),
    "d": lambda v: {_from_plain(k): _from_plain(x) for k, x in v},
    "b": bytes.fromhex,
    "ba": lambda v: bytearray.fromhex(v),
    "c": lambda v: complex(float(v[0]), float(v[1])),
    "I": lambda v: int(v, 16) if not v.startswith("-") else -int(v[1:], 16),
    "o": Opaque,
}


def _from_plain(data):
    if isinstance(data, list):
        return [_from_plain(item) for item in data]
    if isinstance(data, dict):
        ((tag, payload),) = data.items()
        return _DECODERS[tag](payload)
    return data


def decode(data) -> object:
    """JSON-parsed structure -> value (trusted side).  Malformed input raises ValueError."""
    try:
        return _from_plain(data)
    except (KeyError, TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"not plain data: {exc!r}") from None


def dumps(message) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"
