"""Plain-data wire format between a candidate and the trusted side.

The candidate process sends the *values* its expressions produced; the trusted side
decides equality.  So values travel as JSON (never pickle: decoding must not run code),
with a one-key object tagging each non-JSON type.  Builtin subclasses travel as their
base value (a namedtuple as a tuple, an IntEnum as an int): that keeps the paper's
legitimate equalities and throws away any overridden ``__eq__``.  The library types whose
``==`` differs from their base's, or that have no builtin base, travel as themselves and
are rebuilt here from their fields, so they compare exactly as in plain Python: numpy
scalars (``np.float32(0.1) == 0.1`` holds, ``np.bool_(True) is True`` does not),
``Fraction``, ``Decimal``, ``date``/``datetime``/``time``/``timedelta`` (fixed-offset time
zones), ``OrderedDict`` (order counts between two of them), ``Counter`` and ``deque``.
Anything else becomes an ``Opaque``: comparing it raises ``UncheckableValue``, which names
its type, so an object whose ``__eq__`` always answers True cannot pass and a correct
answer of a type the judge cannot carry is reported as such, never as a wrong one.

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
import sys
from collections import Counter, OrderedDict, deque

_SMALL_INT_BITS = 63  # beyond this, hex: JSON digit strings are capped at 4300 digits in 3.11
MAX_DEPTH = 100
MAX_SAME_HASH = 64
MAX_CONTAINERS = 500_000  # per result line: lists, tuples, sets, dicts...
MAX_ITEMS = 4_000_000  # per result line: values of any kind (commas, strings' own included)
MAX_DECIMAL_CHARS = 10_000  # a Decimal's digits and exponent, as text


class Unreadable(ValueError):
    """What the candidate's process sent is not plain data within our bounds."""


class UncheckableValue(TypeError):
    """A comparison reached a value the judge cannot carry (an ``Opaque``)."""


class Opaque:
    """Stand-in for a value that is not plain data: comparing it raises ``UncheckableValue``."""

    __slots__ = ("type_name",)

    def __init__(self, type_name: str):
        self.type_name = printable(str(type_name)[:100])

    def __eq__(self, other):
        raise UncheckableValue(f"the judge cannot compare a value of type {self.type_name} (not plain data)")

    __ne__ = __eq__

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


_NUMPY_KINDS = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                          "float16", "float32", "float64", "complex64", "complex128"})


def _library_value(value, depth: int):
    """A numpy scalar, Fraction, Decimal, date/time or ordered mapping as its fields, else None.

    Found through ``sys.modules``: a candidate that made such a value has imported its
    module, and one that did not costs no import.
    """
    modules = sys.modules
    numpy, fractions, decimal, datetime = (modules.get(name) for name in ("numpy", "fractions", "decimal", "datetime"))
    if numpy is not None and isinstance(value, numpy.generic):
        kind = numpy.dtype(type(value)).name
        return {"n": [kind, _to_plain(value.item(), depth + 1)]} if kind in _NUMPY_KINDS else None
    if fractions is not None and isinstance(value, fractions.Fraction):
        return {"F": [_encode_int(value.numerator), _encode_int(value.denominator)]}
    if decimal is not None and isinstance(value, decimal.Decimal):
        return {"D": decimal.Decimal.__str__(value)}
    if datetime is not None and isinstance(value, (datetime.date, datetime.time, datetime.timedelta)):
        return _datetime_fields(value, datetime)
    if isinstance(value, (OrderedDict, Counter)):
        tag = "od" if isinstance(value, OrderedDict) else "C"
        return {tag: [[_to_plain(k, depth + 1), _to_plain(v, depth + 1)] for k, v in dict.items(value)]}
    if isinstance(value, deque):
        return {"q": [[_to_plain(item, depth + 1) for item in deque.__iter__(value)], value.maxlen]}
    return None


def _datetime_fields(value, datetime):
    if isinstance(value, datetime.timedelta):
        return {"td": [value.days, value.seconds, value.microseconds]}
    zone = getattr(value, "tzinfo", None)
    if zone is not None and type(zone) is not datetime.timezone:
        return None  # a zone database entry: not carried
    offset = None if zone is None else [*_datetime_fields(zone.utcoffset(None), datetime)["td"], zone.tzname(None)]
    if isinstance(value, datetime.datetime):
        fields = ["datetime", value.year, value.month, value.day, value.hour, value.minute, value.second,
                  value.microsecond, value.fold, offset]
    elif isinstance(value, datetime.date):
        fields = ["date", value.year, value.month, value.day]
    else:
        fields = ["time", value.hour, value.minute, value.second, value.microsecond, value.fold, offset]
    return {"dt": fields}


_CONTAINERS = (
    (tuple, "t", tuple.__iter__),
    (frozenset, "f", frozenset.__iter__),
    (set, "s", set.__iter__),
    (list, None, list.__iter__),
)


_BUILTIN_TYPES = frozenset({list, tuple, dict, set, frozenset, bytes, bytearray, complex})


def _to_plain(value, depth: int = 0):
    if depth > MAX_DEPTH:
        raise RecursionError
    if value is None or value is True or value is False:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if type(value) is float:
        return value
    if type(value) is int:
        return _encode_int(value)
    library = None if type(value) in _BUILTIN_TYPES else _library_value(value, depth)
    if library is not None:
        return library
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


def _whole(data, depth: int) -> int:
    value = _from_plain(data, depth)
    if type(value) is not int:
        raise Unreadable("expected an integer")
    return value


def _numpy_scalar(payload, depth: int):
    import numpy

    kind, value = payload
    if kind not in _NUMPY_KINDS:
        raise Unreadable(f"not a carried numpy type: {kind}")
    value = _from_plain(value, depth)
    if type(value) not in (bool, int, float, complex):
        raise Unreadable("malformed numpy scalar")
    return numpy.dtype(kind).type(value)


def _fraction(payload, depth: int):
    from fractions import Fraction

    numerator, denominator = (_whole(part, depth) for part in payload)
    return Fraction(numerator, denominator)


def _decimal(text, depth: int):
    from decimal import Decimal

    if not isinstance(text, str) or len(text) > MAX_DECIMAL_CHARS:
        raise Unreadable("malformed decimal")
    return Decimal(text)


def _zone(offset, datetime):
    if offset is None:
        return None
    days, seconds, microseconds, name = offset
    return datetime.timezone(datetime.timedelta(days, seconds, microseconds), str(name))


def _datetime(fields, depth: int):
    import datetime

    if not isinstance(fields, list) or not all(type(field) is int for field in fields[1:-1]):
        raise Unreadable("malformed date or time")
    kind, *values = fields
    if kind == "date":
        return datetime.date(*values)
    if kind == "datetime":
        *parts, fold, zone = values
        return datetime.datetime(*parts, tzinfo=_zone(zone, datetime), fold=fold)
    if kind == "time":
        *parts, fold, zone = values
        return datetime.time(*parts, tzinfo=_zone(zone, datetime), fold=fold)
    raise Unreadable("malformed date or time")


def _timedelta(fields, depth: int):
    import datetime

    if not isinstance(fields, list) or len(fields) != 3 or not all(type(field) is int for field in fields):
        raise Unreadable("malformed timedelta")
    return datetime.timedelta(*fields)


def _deque(payload, depth: int):
    items, maxlen = payload
    if maxlen is not None and type(maxlen) is not int:
        raise Unreadable("malformed deque")
    return deque(_items(items, depth), maxlen)


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
    "n": _numpy_scalar,
    "F": _fraction,
    "D": _decimal,
    "dt": _datetime,
    "td": _timedelta,
    "od": lambda v, depth: OrderedDict(_pairs(v, depth)),
    "C": lambda v, depth: Counter(dict(_pairs(v, depth))),
    "q": _deque,
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
