"""envelope.py - checks a failure against the contract (DESIGN section 4) and packs its MessagePack envelope.

The checks are the sidecar's own, with its default limits, and the refusals
use its words: a refused envelope raises InvalidEnvelopeError whose message
starts with the field ("max_retries: 101 is out of range 0-100") and whose
reason is the snake_case code the sidecar puts in Dlq-Invalid-Reason. The
bytes are canonical: keys in the contract's order, every value in its
smallest MessagePack form (tests/vectors holds them).
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping
from typing import Any, Final

import msgpack

__all__ = [
    "KEY_ORDER",
    "LIMITS",
    "MISSING",
    "POLICIES",
    "InvalidEnvelopeError",
    "Packed",
    "encode_envelope",
    "subject_ok",
]

# The contract's keys, in the order a client writes them (DESIGN section 4's table).
KEY_ORDER: Final = (
    "task_id",
    "task",
    "error",
    "error_type",
    "error_category",
    "retry_policy",
    "max_retries",
    "retry_subject",
    "repos",
    "metadata",
    "failed_at",
    "enqueue",
    # issue 17's keys (an older sidecar ignores them as unknown keys):
    "backoff",
    "template",
    "priority",
    "depends_on",
)

# The sidecar's default limits (limits.* in its config; tests/vectors/manifest.json repeats them).
LIMITS: Final = {
    "max_task_id_len": 256,
    "max_string_len": 1024,
    "max_error_len": 4096,
    "max_metadata_keys": 64,
    "max_metadata_bytes": 16384,
    "max_repos": 64,
    "max_depth": 32,
}

POLICIES: Final = ("never", "linear", "exponential", "immediate")
PRIORITIES: Final = ("high", "normal", "low")
MAX_DELAYS: Final = 32             # backoff: delays in one list
MAX_DEPENDS: Final = 32            # depends_on: task ids in one list
MAX_DELAY_MS: Final = 604800000    # backoff: 7 days

# Milliseconds since the epoch of 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z.
MIN_MS: Final = -62167219200000
MAX_MS: Final = 253402300799999


class _Missing:
    """The marker of a key left out (None is MessagePack nil, which is not the same for task)."""

    _instance: "_Missing | None" = None

    def __new__(cls) -> "_Missing":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()


class InvalidEnvelopeError(ValueError):
    """A failure that breaks the contract; nothing was published.

    Attributes: ``field`` (the envelope key, or "envelope" for the whole
    message), ``reason`` (the sidecar's snake_case code: "task_id_missing",
    "bad_type", "too_big", "out_of_range", "bad_value", ...) and ``message``
    (one sentence that starts with the field, as the sidecar says it).
    """

    def __init__(self, field: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.reason = reason
        self.message = message


class Packed:
    """A value given as its exact MessagePack bytes (one complete value).

    Use it for a task that is already MessagePack: the bytes are checked
    (complete, no trailing bytes, nesting within the limit) and republished
    to workers exactly as given.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.data = bytes(data)

    def __repr__(self) -> str:
        return f"Packed({self.data!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Packed) and other.data == self.data

    def __hash__(self) -> int:
        return hash(self.data)


def _kind(v: Any) -> str:
    """The MessagePack kind a Python value packs as, in the sidecar's words."""
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a float"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, (bytes, bytearray, memoryview)):
        return "binary"
    if isinstance(v, Mapping):
        return "a map"
    if isinstance(v, (list, tuple)):
        return "an array"
    if isinstance(v, Packed):
        return "MessagePack bytes"
    return "a " + type(v).__name__


def _fail(field: str, reason: str, message: str) -> InvalidEnvelopeError:
    return InvalidEnvelopeError(field, reason, message)


def _utf8(field: str, s: str, what: str | None = None) -> bytes:
    """s as UTF-8; a lone surrogate is refused naming its byte offset."""
    try:
        return s.encode("utf-8")
    except UnicodeEncodeError as e:
        at = len(s[: e.start].encode("utf-8", "surrogatepass"))
        raise _fail(field, "bad_utf8", f"{what or field}: not valid UTF-8 at byte {at}") from None


def _check_string(field: str, v: Any, limit: int) -> None:
    if not isinstance(v, str):
        raise _fail(field, "bad_type", f"{field}: must be a string, not {_kind(v)}")
    n = len(_utf8(field, v))
    if n > limit:
        raise _fail(field, "too_big", f"{field}: {n} bytes, at most {limit}")


def _check_task_id(v: Any) -> None:
    if v is MISSING:
        raise _fail("task_id", "task_id_missing", "task_id: missing")
    if v is None:
        raise _fail("task_id", "task_id_missing", "task_id: missing (nil)")
    if not isinstance(v, str):
        raise _fail("task_id", "bad_type", f"task_id: must be a string, not {_kind(v)}")
    if v == "":
        raise _fail("task_id", "task_id_missing", "task_id: empty")
    b = _utf8("task_id", v)
    limit = LIMITS["max_task_id_len"]
    if len(b) > limit:
        raise _fail("task_id", "too_big", f"task_id: {len(b)} bytes, at most {limit}")
    for i, ch in enumerate(v):
        cp = ord(ch)
        if cp < 0x20 or 0x7F <= cp <= 0x9F:
            at = len(v[:i].encode("utf-8"))
            raise _fail("task_id", "bad_chars", f"task_id: control character at byte {at}")


def _depth(v: Any, limit: int) -> int:
    """Nesting of containers in v (a scalar is 0), counted up to limit + 1 (so cycles end)."""
    if isinstance(v, Mapping):
        items: Any = (x for kv in v.items() for x in kv)
    elif isinstance(v, (list, tuple)):
        items = iter(v)
    else:
        return 0
    if limit <= 0:
        return 1
    d = 0
    for x in items:
        d = max(d, _depth(x, limit - 1))
        if d >= limit:
            break
    return d + 1


def _pack(field: str, v: Any) -> bytes:
    """The canonical MessagePack of one value (a Packed value is checked and kept as is)."""
    limit = LIMITS["max_depth"] - 1  # the envelope map is the first level
    if isinstance(v, Packed):
        try:
            obj = msgpack.unpackb(v.data, raw=True, strict_map_key=False, timestamp=0)
        except msgpack.ExtraData:
            raise _fail(field, "trailing_bytes", f"{field}: trailing bytes after the value") from None
        except (ValueError, msgpack.OutOfData, msgpack.FormatError, msgpack.StackError) as e:
            text = str(e)
            if "incomplete" in text or isinstance(e, msgpack.OutOfData):
                raise _fail(field, "truncated",
                            f"{field}: a declared length passes the end of the input") from None
            raise _fail(field, "bad_msgpack", f"{field}: not MessagePack ({text})") from None
        if _depth(obj, limit) > limit:
            raise _fail(field, "too_deep", f"{field}: nesting deeper than the limit ({limit} levels)")
        return v.data
    if _depth(v, limit) > limit:
        raise _fail(field, "too_deep", f"{field}: nesting deeper than the limit ({limit} levels)")
    try:
        return bytes(msgpack.packb(v, use_bin_type=True, datetime=True))
    except UnicodeEncodeError:
        raise _fail(field, "bad_utf8", f"{field}: a string that is not valid UTF-8") from None
    except (TypeError, ValueError, OverflowError) as e:
        raise _fail(field, "bad_type", f"{field}: cannot be packed as MessagePack ({e})") from None


def subject_ok(s: str, wildcards: bool = False) -> bool:
    """Whether s is a NATS subject: tokens separated by '.', none empty, no
    whitespace or control characters; '*' and '>' only as whole tokens ('>'
    last) and only when wildcards is true."""
    if not isinstance(s, str) or not s or len(s) > 4096:
        return False
    tokens = s.split(".")
    for k, t in enumerate(tokens):
        if not t:
            return False
        if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in t):
            return False
        if t in ("*", ">"):
            if not wildcards or (t == ">" and k != len(tokens) - 1):
                return False
        elif "*" in t or ">" in t:
            return False
    return True


_MDAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))\Z",
    re.ASCII,
)


def parse_rfc3339(s: str) -> int | None:
    """s as ms since the epoch, with the sidecar's rules (years 0000-9999,
    't'/'z'/space accepted, fractions past ms cut, second 60 allowed), or
    None when it is not an RFC 3339 date-time."""
    m = _RFC3339.match(s)
    if not m:
        return None
    y, mo, d, h, mi, se = (int(m.group(i)) for i in range(1, 7))
    if not (1 <= mo <= 12) or not (1 <= d <= _MDAYS[mo - 1]) or h > 23 or mi > 59 or se > 60:
        return None
    if mo == 2 and d == 29 and not ((y % 4 == 0 and y % 100 != 0) or y % 400 == 0):
        return None
    off = 0
    if m.group(9):
        oh, om = int(m.group(10)), int(m.group(11))
        if oh > 23 or om > 59:
            return None
        off = (oh * 3600 + om * 60) * (-1 if m.group(9) == "-" else 1)
    ms = int((m.group(7) or "0")[:3].ljust(3, "0"))
    # Days from 0000-03-01 based civil calendar (proleptic Gregorian).
    yy = y - (1 if mo <= 2 else 0)
    era = (yy if yy >= 0 else yy - 399) // 400
    yoe = yy - era * 400
    doy = (153 * (mo + (-3 if mo > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    return (days * 86400 + h * 3600 + mi * 60 + se - off) * 1000 + ms


def _failed_at(v: Any) -> Any:
    """The value written for failed_at: int ms, or the RFC 3339 text as given."""
    if isinstance(v, _dt.datetime):
        if v.tzinfo is None:
            raise _fail("failed_at", "bad_value",
                        "failed_at: a datetime without a time zone (give tzinfo, e.g. timezone.utc)")
        delta = v - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
        v = delta.days * 86400000 + delta.seconds * 1000 + delta.microseconds // 1000
    if isinstance(v, int) and not isinstance(v, bool):
        if not MIN_MS <= v <= MAX_MS:
            raise _fail("failed_at", "bad_timestamp", "failed_at: out of range (years 0000-9999)")
        return v
    if isinstance(v, str):
        ms = parse_rfc3339(v)
        if ms is None:
            raise _fail("failed_at", "bad_timestamp", "failed_at: not an RFC 3339 date-time")
        if not MIN_MS <= ms <= MAX_MS:
            raise _fail("failed_at", "bad_timestamp", "failed_at: out of range (years 0000-9999)")
        return v
    raise _fail("failed_at", "bad_type",
                "failed_at: must be a timestamp, an integer (ms) or an RFC 3339 string")


def _pack_key(out: bytearray, key: str, packed: bytes) -> None:
    out += msgpack.packb(key)
    out += packed


def encode_envelope(envelope: Mapping[str, Any], *, max_bytes: int = 0) -> bytes:
    """encode_envelope() checks a failure envelope and returns its MessagePack bytes.

    envelope maps contract keys to values: task_id (str), task (any value
    msgpack packs, bytes as a bin, or Packed raw bytes; None is nil),
    error (str; bytes are read as UTF-8), error_type, error_category,
    retry_policy, retry_subject (str),
    max_retries (int 0-100), repos (list of str), metadata (a mapping, or
    Packed), failed_at (int ms since the epoch, an aware datetime, or an RFC
    3339 string), enqueue (bool), backoff (a list of 1-32 delays in ms, each
    1 ms - 7 days, the last repeating), template (str: a template configured
    on the sidecar), priority ("high", "normal" or "low", any case),
    depends_on (a list of task ids). An optional key whose value is None is
    left out. Keys are written in the contract's order whatever the
    mapping's order; enqueue only when true.

    max_bytes (0: no limit) caps the whole envelope (a server's max_payload).
    Raises InvalidEnvelopeError naming the field: for every rule the sidecar
    refuses, and also for a retry_subject that is not a subject to publish
    to (the sidecar would park the task) and for a key outside the contract
    (reason "unknown_key": a typo would be silently ignored by the sidecar).
    Any thread; pure.
    """
    if not isinstance(envelope, Mapping):
        raise _fail("envelope", "not_a_map", f"envelope: expected a map, not {_kind(envelope)}")
    for i, k in enumerate(envelope):
        if not isinstance(k, str):
            raise _fail("envelope", "bad_type", f"envelope: key {i} is {_kind(k)}, not a string")
        if k not in KEY_ORDER:
            raise _fail(k, "unknown_key",
                        f"{k}: not a key of the envelope ({', '.join(KEY_ORDER)})")
    env = envelope
    out = bytearray()
    n = 0

    _check_task_id(env.get("task_id", MISSING))
    _pack_key(out, "task_id", msgpack.packb(env["task_id"]))
    n += 1

    task = env.get("task", MISSING)
    if task is MISSING:
        raise _fail("task", "task_missing", "task: missing")
    _pack_key(out, "task", _pack("task", task))
    n += 1

    error = env.get("error")
    if error is not None:
        if isinstance(error, (bytes, bytearray, memoryview)):  # bin is read as text (section 4)
            error = bytes(error).decode("utf-8", "replace")
        if not isinstance(error, str):
            raise _fail("error", "bad_type", f"error: must be a string, not {_kind(error)}")
        _utf8("error", error)
        _pack_key(out, "error", msgpack.packb(error))
        n += 1

    for key in ("error_type", "error_category"):
        v = env.get(key)
        if v is not None:
            _check_string(key, v, LIMITS["max_string_len"])
            _pack_key(out, key, msgpack.packb(v))
            n += 1

    policy = env.get("retry_policy")
    if policy is not None:
        if hasattr(policy, "value") and isinstance(policy.value, str):  # a RetryPolicy member
            policy = policy.value
        _check_string("retry_policy", policy, LIMITS["max_string_len"])
        if policy.lower() not in POLICIES:
            raise _fail("retry_policy", "bad_value",
                        "retry_policy: not one of never, linear, exponential, immediate")
        _pack_key(out, "retry_policy", msgpack.packb(str(policy)))
        n += 1

    mr = env.get("max_retries")
    if mr is not None:
        if not isinstance(mr, int) or isinstance(mr, bool):
            raise _fail("max_retries", "bad_type", "max_retries: must be an integer 0-100")
        if not 0 <= mr <= 100:
            raise _fail("max_retries", "out_of_range", f"max_retries: {mr} is out of range 0-100")
        _pack_key(out, "max_retries", msgpack.packb(mr))
        n += 1

    rs = env.get("retry_subject")
    if rs is not None:
        _check_string("retry_subject", rs, LIMITS["max_string_len"])
        if not subject_ok(rs):
            raise _fail("retry_subject", "bad_value",
                        f"retry_subject: \"{rs[:100]}\" is not a NATS subject to publish to "
                        "(empty token, whitespace, control character or wildcard)")
        _pack_key(out, "retry_subject", msgpack.packb(rs))
        n += 1

    repos = env.get("repos")
    if repos is not None:
        if not isinstance(repos, (list, tuple)):
            raise _fail("repos", "bad_type", f"repos: must be an array of strings, not {_kind(repos)}")
        if len(repos) > LIMITS["max_repos"]:
            raise _fail("repos", "too_big", f"repos: {len(repos)} entries, at most {LIMITS['max_repos']}")
        for i, r in enumerate(repos):
            if not isinstance(r, str):
                raise _fail("repos", "bad_type", f"repos: entry {i} must be a string, not {_kind(r)}")
            rb = _utf8("repos", r, f"repos: entry {i}")
            if len(rb) > LIMITS["max_string_len"]:
                raise _fail("repos", "too_big",
                            f"repos: entry {i} is {len(rb)} bytes, at most {LIMITS['max_string_len']}")
        if repos:
            _pack_key(out, "repos", msgpack.packb(list(repos)))
            n += 1

    meta = env.get("metadata")
    if meta is not None:
        if isinstance(meta, Packed):
            mp = _pack("metadata", meta)
            obj = msgpack.unpackb(mp, raw=True, strict_map_key=False, timestamp=0)
            if not isinstance(obj, dict):
                raise _fail("metadata", "bad_type", f"metadata: must be a map, not {_kind(obj)}")
            keys = len(obj)
        elif isinstance(meta, Mapping):
            keys = len(meta)
            mp = b""
        else:
            raise _fail("metadata", "bad_type", f"metadata: must be a map, not {_kind(meta)}")
        if keys > LIMITS["max_metadata_keys"]:
            raise _fail("metadata", "too_many_keys",
                        f"metadata: {keys} keys, at most {LIMITS['max_metadata_keys']}")
        if not mp and isinstance(meta, Mapping):
            mp = _pack("metadata", dict(meta))
        if len(mp) > LIMITS["max_metadata_bytes"]:
            raise _fail("metadata", "too_big",
                        f"metadata: {len(mp)} bytes, at most {LIMITS['max_metadata_bytes']}")
        _pack_key(out, "metadata", mp)
        n += 1

    fa = env.get("failed_at")
    if fa is not None:
        _pack_key(out, "failed_at", msgpack.packb(_failed_at(fa)))
        n += 1

    enq = env.get("enqueue")
    if enq is not None:
        if not isinstance(enq, bool):
            raise _fail("enqueue", "bad_type", f"enqueue: must be a boolean, not {_kind(enq)}")
        if enq:
            _pack_key(out, "enqueue", msgpack.packb(True))
            n += 1

    bo = env.get("backoff")
    if bo is not None:
        if not isinstance(bo, (list, tuple)):
            raise _fail("backoff", "bad_type", f"backoff: must be an array of delays, not {_kind(bo)}")
        if not 1 <= len(bo) <= MAX_DELAYS:
            raise _fail("backoff", "out_of_range", f"backoff: {len(bo)} delays, give 1-{MAX_DELAYS}")
        for i, d in enumerate(bo):
            if not isinstance(d, int) or isinstance(d, bool):
                raise _fail("backoff", "bad_type", f"backoff[{i}]: must be an integer of ms, not {_kind(d)}")
            if not 1 <= d <= MAX_DELAY_MS:
                raise _fail("backoff", "out_of_range",
                            f"backoff[{i}]: {d} ms is out of range 1-{MAX_DELAY_MS} (7 days)")
        _pack_key(out, "backoff", msgpack.packb(list(bo)))
        n += 1

    for key in ("template", "priority"):
        v = env.get(key)
        if v is not None:
            _check_string(key, v, LIMITS["max_string_len"])
            if key == "priority" and v.lower() not in PRIORITIES:
                raise _fail("priority", "bad_value", "priority: not one of high, normal, low")
            _pack_key(out, key, msgpack.packb(v))
            n += 1

    deps = env.get("depends_on")
    if deps is not None:
        if not isinstance(deps, (list, tuple)):
            raise _fail("depends_on", "bad_type", f"depends_on: must be an array of task ids, not {_kind(deps)}")
        if len(deps) > MAX_DEPENDS:
            raise _fail("depends_on", "out_of_range", f"depends_on: {len(deps)} task ids, at most {MAX_DEPENDS}")
        for i, d in enumerate(deps):
            try:
                _check_task_id(d)
            except InvalidEnvelopeError as e:
                raise _fail("depends_on", "bad_value", f"depends_on: entry {i} is not a task id ({e.message})") from None
            # The sidecar sends these to dlq.invalid (the failure is not stored): refused here.
            if d == env["task_id"]:
                raise _fail("depends_on", "bad_value", f"depends_on: entry {i} is the task's own id")
            if d in deps[:i]:
                raise _fail("depends_on", "bad_value", f"depends_on: entry {i} names {d!r} again")
        if deps:
            _pack_key(out, "depends_on", msgpack.packb(list(deps)))
            n += 1

    head = bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")  # fixmap up to 15 keys
    body = head + bytes(out)
    if max_bytes and len(body) > max_bytes:
        raise _fail("envelope", "too_big",
                    f"envelope: {len(body)} bytes, at most {max_bytes} (the server's max_payload)")
    return body
