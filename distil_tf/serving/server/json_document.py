"""Request bodies parsed the way TF Serving's RapidJSON parser sees them.

TF Serving parses with `kParseIterativeFlag | kParseNanAndInfFlag |
kParseStopWhenDoneFlag` (util/json_tensor.cc `ParseJson`):

- iterative: any nesting depth parses. Python's `json` module recurses (in C)
  and stops at the interpreter's recursion limit, so a deep document falls
  back to the iterative parser below, which only runs for such documents;
- NaN / Infinity / -Infinity are accepted;
- stop when done: bytes after the first complete value are ignored.

Errors are INVALID_ARGUMENT with RapidJSON's English messages
("JSON Parse error: Invalid value. at offset: 0"). Integers keep RapidJSON's
ranges: outside [-2**63, 2**64) they become doubles, and a number too large
for a double is an error, as it is for RapidJSON.

`debug_string` is TF Serving's `JsonValueToDebugString`: a value written
for an error message, cut at 256 characters, without recursion.
"""

import json
import math
import re

from distil_tf.serving.server.status import ServingError

MAX_DEBUG_STRING_CHARS = 256

_INT64_MIN = -(2**63)
_UINT64_END = 2**64

# RapidJSON's GetParseError_En wording for the errors Python's decoder reports.
_PYTHON_TO_RAPIDJSON = (
    ("Expecting value", "Invalid value."),
    ("Expecting property name enclosed in double quotes", "Missing a name for object member."),
    ("Expecting ':' delimiter", "Missing a colon after a name of object member."),
    ("Unterminated string", "Missing a closing quotation mark in string."),
    ("Invalid \\escape", "Invalid escape character in string."),
    ("Invalid \\uXXXX escape", "Incorrect hex digit after \\u escape in string."),
    ("Invalid control character", "Invalid encoding in string."),
)


class _TooBig(ValueError):
    pass


def _parse_int(text):
    value = int(text)
    if _INT64_MIN <= value < _UINT64_END:
        return value
    # RapidJSON stores integers beyond 64 bits as doubles.
    return _parse_float(text)


def _parse_float(text):
    value = float(text)
    if math.isinf(value):
        raise _TooBig(text)
    return value


_DECODER = json.JSONDecoder(parse_int=_parse_int, parse_float=_parse_float)
_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _parse_error(message, offset):
    return ServingError("INVALID_ARGUMENT", f"JSON Parse error: {message} at offset: {offset}")


def _rapidjson_message(error, text):
    message = error.msg
    if message == "Expecting ',' delimiter":
        # Python says the same for objects and arrays; RapidJSON names which.
        container = _innermost_open_container(text, error.pos)
        if container == "{":
            return "Missing a comma or '}' after an object member."
        return "Missing a comma or ']' after an array element."
    for python, rapidjson in _PYTHON_TO_RAPIDJSON:
        if message.startswith(python):
            return rapidjson
    return message + "."


def _innermost_open_container(text, position):
    depth = []
    in_string = escaped = False
    for char in text[:position]:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth.append(char)
        elif char in "]}" and depth:
            depth.pop()
    return depth[-1] if depth else None


def parse_json(body):
    """Request body (bytes or str) -> Python value, RapidJSON's way.

    Raises:
        ServingError: INVALID_ARGUMENT "JSON Parse error: ..." for a body that
            is empty, not UTF-8 or not JSON.
    """
    if not body:
        return _empty()
    if isinstance(body, (bytes, bytearray)):
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError as error:
            raise _parse_error("Invalid encoding in string.", error.start) from None
    else:
        text = body
    start = _WHITESPACE.match(text).end()
    if start == len(text):
        raise _parse_error("The document is empty.", start)
    try:
        value, _ = _DECODER.raw_decode(text, start)
        return value
    except RecursionError:
        return _IterativeParser(text, start).parse()
    except _TooBig as error:
        raise _parse_error("Number too big to be stored in double.",
                           text.find(str(error), start)) from None
    except json.JSONDecodeError as error:
        raise _parse_error(_rapidjson_message(error, text), error.pos) from None


def _empty():
    raise ServingError("INVALID_ARGUMENT", "JSON Parse error: The document is empty")


_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_CONSTANTS = (("NaN", math.nan), ("Infinity", math.inf), ("-Infinity", -math.inf),
              ("true", True), ("false", False), ("null", None))


class _IterativeParser:
    """A JSON parser with an explicit stack, for documents nested too deeply
    for `json` (RapidJSON's iterative mode). Slower, so only the fallback."""

    def __init__(self, text, start):
        self.text = text
        self.position = start

    def _skip(self):
        self.position = _WHITESPACE.match(self.text, self.position).end()

    def _fail(self, message):
        raise _parse_error(message, self.position)

    def _scalar(self):
        text, position = self.text, self.position
        if text.startswith('"', position):
            try:
                value, self.position = json.decoder.scanstring(text, position + 1)
            except json.JSONDecodeError as error:
                raise _parse_error(_rapidjson_message(error, text), error.pos) from None
            return value
        for token, value in _CONSTANTS:
            if text.startswith(token, position):
                self.position = position + len(token)
                return value
        match = _NUMBER.match(text, position)
        if not match:
            self._fail("Invalid value.")
        self.position = match.end()
        try:
            if match.group(1) or match.group(2):
                return _parse_float(match.group(0))
            return _parse_int(match.group(0))
        except _TooBig:
            raise _parse_error("Number too big to be stored in double.", position) from None

    def parse(self):
        # Each stack entry is [container, pending_key]; values attach to the top.
        stack = []
        while True:
            self._skip()
            char = self.text[self.position:self.position + 1]
            if stack and isinstance(stack[-1][0], dict) and stack[-1][1] is None:
                # Inside an object, expecting a key (or the closing brace).
                if char == "}" and not stack[-1][0]:
                    self.position += 1
                    value = stack.pop()[0]
                elif char != '"':
                    self._fail("Missing a name for object member.")
                else:
                    stack[-1][1] = self._scalar()
                    self._skip()
                    if not self.text.startswith(":", self.position):
                        self._fail("Missing a colon after a name of object member.")
                    self.position += 1
                    continue
            elif char == "[":
                self.position += 1
                self._skip()
                if self.text.startswith("]", self.position):
                    self.position += 1
                    value = []
                else:
                    stack.append([[], None])
                    continue
            elif char == "{":
                self.position += 1
                stack.append([{}, None])
                continue
            elif char == "":
                self._fail("Invalid value.")
            else:
                value = self._scalar()
            # Attach `value`, then close every container that ends here.
            while True:
                if not stack:
                    return value
                container, key = stack[-1]
                if isinstance(container, list):
                    container.append(value)
                else:
                    container[key] = value
                    stack[-1][1] = None
                self._skip()
                char = self.text[self.position:self.position + 1]
                closer = "]" if isinstance(container, list) else "}"
                if char == ",":
                    self.position += 1
                    if isinstance(container, dict):
                        self._skip()
                        if not self.text.startswith('"', self.position):
                            self._fail("Missing a name for object member.")
                    break
                if char != closer:
                    self._fail("Missing a comma or ']' after an array element."
                               if closer == "]" else
                               "Missing a comma or '}' after an object member.")
                self.position += 1
                value = stack.pop()[0]


def json_type_name(value):
    """RapidJSON's type names, which TF Serving puts in its messages."""
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, (int, float)):
        return "Number"
    if isinstance(value, str):
        return "String"
    if isinstance(value, dict):
        return "Object"
    return "Array"


def _scalar_text(value):
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
    return json.dumps(value, ensure_ascii=False)


def debug_string(value, limit=MAX_DEBUG_STRING_CHARS):
    """A JSON value as text for an error message, at most ~`limit` chars.

    Walks the value with an explicit stack, so a deeply nested document
    cannot overflow anything, and stops as soon as the limit is reached.
    """
    pieces, length = [], 0
    # Stack of iterators over what is left to write; strings are literal text.
    stack = [iter([value])]
    while stack and length < limit:
        try:
            item = next(stack[-1])
        except StopIteration:
            stack.pop()
            continue
        if isinstance(item, _Literal):
            text = item.text
        elif isinstance(item, list):
            stack.append(_array_items(item))
            continue
        elif isinstance(item, dict):
            stack.append(_object_items(item))
            continue
        else:
            text = _scalar_text(item)
        pieces.append(text)
        length += len(text)
    return "".join(pieces)[:limit]


class _Literal:
    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text


def _array_items(values):
    yield _Literal("[")
    for index, item in enumerate(values):
        if index:
            yield _Literal(", ")
        yield item
    yield _Literal("]")


def _object_items(members):
    yield _Literal("{")
    for index, (key, item) in enumerate(members.items()):
        yield _Literal((", " if index else "") + json.dumps(key, ensure_ascii=False) + ": ")
        yield item
    yield _Literal("}")
