"""outcome.py - a worker's reply to a retry (DESIGN section 6): the bytes a worker writes, and what a reply means."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final, Mapping

import msgpack

__all__ = ["Outcome", "clean_text", "decode_outcome", "encode_outcome"]

MAX_ERROR: Final = 4096          # the sidecar's limits.max_error_len
MAX_STRING: Final = 1024         # its limits.max_string_len (error_type)
MAX_DEPTH: Final = 32            # its limits.max_depth: nesting of arrays/maps, the top one included
TRUNC_MARKER: Final = "...[truncated]"


@dataclass(frozen=True)
class Outcome:
    """What a reply says: ok, else the error text and error_type (None: none)."""

    ok: bool
    error: str = ""
    error_type: str | None = None


def _as_text(v: object) -> str:
    """v as a str: v itself, else str(v), repr(v), or a fixed text when both raise (or return no str)."""
    if isinstance(v, str):
        return str.__str__(v)  # a str subclass's own __str__ is not trusted either
    for render in (str, repr):
        try:
            t = render(v)
        except Exception:
            continue
        if isinstance(t, str):
            return str.__str__(t)
    return f"<unprintable {type(v).__name__}>"


def clean_text(s: str, limit: int, marker: str | None = TRUNC_MARKER) -> str:
    """s made valid UTF-8 (a lone surrogate becomes U+FFFD, NUL a space) and
    cut at a character boundary to at most limit bytes; a cut text ends with
    marker (None: no marker). A value that is not a str is taken as its
    str() (repr() when that fails; a fixed text when both do). Pure."""
    s = _as_text(s)
    s = s.encode("utf-16", "surrogatepass").decode("utf-16", "replace").replace("\0", " ")
    b = s.encode("utf-8")
    if len(b) <= limit:
        return s
    keep = limit - (len(marker.encode("utf-8")) if marker else 0)
    cut = b[: max(keep, 0)].decode("utf-8", "ignore")
    return cut + (marker or "")


def encode_outcome(ok: bool, error: str | None = None, error_type: str | None = None) -> bytes:
    """encode_outcome() is the reply body a worker sends: {"ok":true}, or
    {"ok":false,"error":<error>,"error_type":<error_type>} (error_type left
    out when None; error None is ""). The texts are cleaned with
    clean_text() (error at most 4096 bytes with a marker, error_type 1024).
    Compact JSON, UTF-8 unescaped: the canonical outcome vectors' bytes. Pure."""
    if ok:
        return b'{"ok":true}'
    body: dict[str, Any] = {"ok": False, "error": clean_text(error or "", MAX_ERROR)}
    if error_type is not None:
        body["error_type"] = clean_text(error_type, MAX_STRING, None)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class _Malformed(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's members as a dict; a key given twice is refused (the sidecar's jansson does)."""
    d = dict(pairs)
    if len(d) != len(pairs):
        raise _Malformed
    return d


def _check_depth(v: Any, max_depth: int = MAX_DEPTH) -> None:
    """Raises _Malformed when v nests arrays/maps more than max_depth deep (the
    sidecar refuses such a reply as malformed), or when a JSON string holds a
    lone surrogate (jansson refuses "\\ud800"). Iterative: no recursion."""
    stack: list[tuple[Any, int]] = [(v, 0)]
    while stack:
        x, d = stack.pop()
        if isinstance(x, str):
            if any("\ud800" <= ch <= "\udfff" for ch in x):
                raise _Malformed
        elif isinstance(x, (dict, list, tuple)):
            if d >= max_depth:
                raise _Malformed
            items = [i for kv in x.items() for i in kv] if isinstance(x, dict) else list(x)
            stack.extend((i, d + 1) for i in items)


def _load(body: bytes) -> Any:
    """The reply's value: JSON when its first non-blank byte is '{', else one MessagePack value."""
    if body.lstrip(b" \t\r\n")[:1] == b"{":
        try:
            v = json.loads(body.decode("utf-8"), object_pairs_hook=_no_duplicates)
        except (UnicodeDecodeError, ValueError, RecursionError, _Malformed):
            raise _Malformed from None
    else:
        try:
            v = msgpack.unpackb(body, raw=False, strict_map_key=False)
        except Exception:  # msgpack raises several kinds for bytes that do not parse
            raise _Malformed from None
    try:
        _check_depth(v)
    except RecursionError:
        raise _Malformed from None
    return v


def _text(v: Any) -> str:
    """An error value as text: a string as is, bin as UTF-8, anything else as JSON."""
    if isinstance(v, str):
        return v
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).decode("utf-8", "replace")
    try:
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return _as_text(v)


def decode_outcome(body: bytes, headers: Mapping[str, str] | None = None) -> Outcome:
    """decode_outcome() reads a worker's reply as the sidecar does (DESIGN
    section 6, tests/vectors outcomes): an empty or blank body, {"ok":true}
    or a MessagePack map with ok true is success; ok false is a failure with
    its error (a string, bin, an error object's message, or any other value
    as JSON text) and error_type; a Nats-Service-Error header is a failure
    "<code> <message>"; a body that does not parse is "malformed reply",
    one without a boolean ok "unrecognised reply". Pure."""
    if headers and headers.get("Nats-Service-Error"):
        code = headers.get("Nats-Service-Error-Code", "")
        return Outcome(False, f"{code} {headers['Nats-Service-Error']}".strip())
    if not body.strip(b" \t\r\n"):
        return Outcome(True)
    try:
        v = _load(body)
    except _Malformed:
        return Outcome(False, "malformed reply")
    if not isinstance(v, dict) or not isinstance(v.get("ok"), bool):
        return Outcome(False, "unrecognised reply")
    if v["ok"]:
        return Outcome(True)
    err = v.get("error")
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        err = err["message"]
    et = v.get("error_type")
    return Outcome(
        False,
        "" if err is None else clean_text(_text(err), MAX_ERROR),
        et[: MAX_STRING] if isinstance(et, str) else None,
    )
