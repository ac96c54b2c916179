"""Request bodies to JSON, hostile-safe, with a batch's items answered one by one (pure).

Every JSON body goes through :func:`rekap.contract.decode_object`, the
contract's one decode that never raises and refuses what rekap could not carry
on (deep nesting, 5,000-digit numbers, lone surrogates, NaN). It judges the
whole body at once, so one hostile item would sink its batch: when a body it
refuses for such a reason is a batch (``{"sales": [...]}``, ``{"orders":
[...]}``, or a top-level array), :func:`decode_batch` finds the array's items
in the text without parsing them and decodes each on its own, so each gets its
own answer. That second pass runs only for refused bodies; a body that decodes
costs the one decode.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from rekap.contract import Reason, Rejection, decode_object

#: Reasons for which a refused batch is split and its items decoded one by one: they can
#: come from one item. Malformed JSON only when it is NaN or Infinity in an item: the
#: grammar must hold, or the item boundaries themselves are unsure.
ITEM_REASONS: Final = frozenset({Reason.NESTING_TOO_DEEP, Reason.NUMBER_TOO_LONG,
                                 Reason.INVALID_TEXT, Reason.RECORD_TOO_LARGE})

#: What the splitter looks at: whole string literals (so brackets inside them do not
#: count) and the structural characters. Numbers and literals are stepped over.
_TOKEN: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},:]', re.DOTALL)
_SPACE: Final = re.compile(r"[ \t\n\r]*")


def decode_batch(body: bytes, key: str | None) -> dict[str, Any] | list[Any] | Rejection:
    """A JSON body as one object, as the list of a batch's items, or why it is neither.

    ``key`` names the array of a batch inside an object (``"sales"``); None means a
    batch is a top-level array. A list is returned only for a batch; its items are
    decoded values (anything JSON) or, when the batch was split, an object or a
    :class:`Rejection` each. An object holding ``key`` with something else than an
    array is returned as the object, for the caller to refuse.
    """
    data = decode_object(body)
    if isinstance(data, dict):
        if key is not None and isinstance(data.get(key), list):
            return list(data[key])
        return data
    splittable = data.reason in ITEM_REASONS or (
        data.reason == Reason.NOT_AN_OBJECT and key is None) or (
        data.reason == Reason.MALFORMED_JSON and _grammatical(body))
    items = _split(body, key) if splittable else None
    return data if items is None else items


#: Reads JSON grammar only, with NaN and Infinity (which json, unlike JSON, accepts) and
#: numbers of any length: is a body refused as malformed only for what one item holds?
_GRAMMAR: Final = json.JSONDecoder(parse_constant=lambda _: None, parse_int=lambda _: 0,
                                   parse_float=lambda _: 0)


def _grammatical(body: bytes) -> bool:
    try:
        _GRAMMAR.decode(body.decode("utf-8-sig"))
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return False
    return True


def _split(body: bytes, key: str | None) -> list[dict[str, Any] | Rejection] | None:
    """Each item of the batch array in ``body``, decoded on its own; None if ``body`` is
    not a batch whose outside (everything but the array's items) decodes cleanly."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    start = _array_start(text, key)
    if start is None:
        return None
    found = _items(text, start)
    if found is None:
        return None
    raw_items, end = found
    outside = text[:start] + "[]" + text[end:]
    if key is None:
        if outside.strip() != "[]":
            return None
    elif not isinstance(decode_object(outside), dict):
        return None
    return [decode_object(raw) for raw in raw_items]


def _array_start(text: str, key: str | None) -> int | None:
    """Index of the ``[`` opening the batch array: the top level, or ``key``'s value."""
    first = _SPACE.match(text, 0)
    i = first.end() if first else 0
    if key is None:
        return i if text.startswith("[", i) else None
    if not text.startswith("{", i):
        return None
    depth = 0
    start = None
    for m in _TOKEN.finditer(text, i):
        piece = m.group()
        if piece == "{" or piece == "[":
            depth += 1
        elif piece == "}" or piece == "]":
            depth -= 1
            if depth == 0:
                return start
        elif depth == 1 and piece[0] == '"':
            after = _SPACE.match(text, m.end())
            j = after.end() if after else m.end()
            if text.startswith(":", j) and _key_is(piece, key):
                value = _SPACE.match(text, j + 1)
                k = value.end() if value else j + 1
                if text.startswith("[", k):
                    start = k  # the last one counts, as in json's reading of duplicate keys
    return None


def _key_is(literal: str, key: str) -> bool:
    if literal == f'"{key}"':
        return True
    if "\\" not in literal:
        return False
    try:
        return bool(json.loads(literal) == key)
    except ValueError:
        return False


def _items(text: str, start: int) -> tuple[list[str], int] | None:
    """The raw text of each item of the array opening at ``start`` and the index past its
    ``]``; None when the array does not close."""
    depth = 0
    item_start = start + 1
    items: list[str] = []
    for m in _TOKEN.finditer(text, start):
        piece = m.group()
        if piece == "[" or piece == "{":
            depth += 1
        elif piece == "]" or piece == "}":
            depth -= 1
            if depth == 0:
                last = text[item_start:m.start()]
                if items or last.strip():
                    items.append(last)
                return items, m.end()
        elif piece == "," and depth == 1:
            items.append(text[item_start:m.start()])
            item_start = m.end()
    return None
