"""test_vectors.py - the Python client against tests/vectors (the shared wire contract), no server needed."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import msgpack
import pytest

import dlq_client
from dlq_client import InvalidEnvelopeError, decode_outcome, encode_envelope, encode_outcome

VECTORS = Path(os.environ.get("DLQ_VECTORS_DIR") or Path(__file__).resolve().parents[3] / "tests" / "vectors")
MANIFEST = json.loads((VECTORS / "manifest.json").read_text(encoding="utf-8"))


def read(rel: str) -> bytes:
    return (VECTORS / rel).read_bytes()


class Duplicate(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise Duplicate(keys)
    return dict(pairs)


def _unbin(v: Any) -> Any:
    """The JSON twin's {"$bin": base64} as bytes, everywhere in a value."""
    if isinstance(v, dict):
        if len(v) == 1 and isinstance(v.get("$bin"), str):
            return base64.b64decode(v["$bin"])
        return {k: _unbin(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_unbin(x) for x in v]
    return v


def twin(entry: dict[str, Any]) -> Any:
    """The JSON twin of an envelope vector as the mapping a Python caller would pass; raises
    Duplicate when it repeats a key (a dict cannot say that)."""
    text = read(entry["json"]).decode("utf-8")
    return _unbin(json.loads(text, object_pairs_hook=_no_duplicates))


def ids(entries: list[dict[str, Any]]) -> list[str]:
    return [e["name"] for e in entries]


ENVELOPES = MANIFEST["envelopes"]
CANONICAL = [e for e in ENVELOPES if e["valid"] and e["canonical"] and "client_refuses" not in e]
REFUSED = [e for e in ENVELOPES if (not e["valid"] or "client_refuses" in e) and e.get("json")]
INVALID_NO_TWIN = [e for e in ENVELOPES if not e["valid"] and not e.get("json")]
VALID_OTHER = [e for e in ENVELOPES if e["valid"] and not e["canonical"] and "client_refuses" not in e]
OUTCOMES = MANIFEST["outcomes"]


def test_manifest_has_enough() -> None:
    """The selections below are not empty by accident (a renamed manifest key would make them so)."""
    assert len(CANONICAL) >= 11
    assert len(REFUSED) >= 30
    assert len(OUTCOMES) >= 15
    assert MANIFEST["limits"] == dlq_client.LIMITS
    assert tuple(MANIFEST["key_order"]) == dlq_client.KEY_ORDER


@pytest.mark.parametrize("entry", CANONICAL, ids=ids(CANONICAL))
def test_canonical_encodes_to_the_exact_bytes(entry: dict[str, Any]) -> None:
    want = read(entry["msgpack"])
    got = encode_envelope(twin(entry))
    assert got == want, f"{entry['name']}: {got.hex()} != {want.hex()}"
    # The same failure decoded from the vector's MessagePack (str/bin kept apart), in reverse key order.
    decoded = msgpack.unpackb(want, raw=False, strict_map_key=False)
    assert encode_envelope(dict(reversed(list(decoded.items())))) == want
    # And with the task given as its raw bytes.
    decoded["task"] = dlq_client.Packed(bytes.fromhex(entry["expect"]["task_hex"]))
    assert encode_envelope(decoded) == want


@pytest.mark.parametrize("entry", VALID_OTHER, ids=ids(VALID_OTHER))
def test_other_valid_vectors_are_accepted(entry: dict[str, Any]) -> None:
    """Non-canonical valid vectors (nil optionals, RFC 3339 failed_at, unknown keys ...) are not
    refused, except a key outside the contract, which the client names (stricter than the sidecar)."""
    env = twin(entry)
    if entry["expect"]["unknown"]:
        with pytest.raises(InvalidEnvelopeError) as ei:
            encode_envelope(env)
        assert ei.value.field == entry["expect"]["unknown"][0] and ei.value.reason == "unknown_key"
        return
    got = msgpack.unpackb(encode_envelope(env), raw=False, strict_map_key=False)
    exp = entry["expect"]
    assert got["task_id"] == exp["task_id"]
    assert msgpack.packb(got["task"]) == bytes.fromhex(exp["task_hex"])
    assert got.get("max_retries") == exp["max_retries"]
    if exp["failed_at_ms"] is not None:
        fa = got["failed_at"]
        assert (dlq_client.parse_rfc3339(fa) if isinstance(fa, str) else fa) == exp["failed_at_ms"]


@pytest.mark.parametrize("entry", REFUSED, ids=ids(REFUSED))
def test_refused_naming_the_field(entry: dict[str, Any]) -> None:
    try:
        env = twin(entry)
    except Duplicate:
        pytest.skip("a duplicate key cannot be written as a Python mapping")
    exp = entry.get("client_refuses") or entry
    with pytest.raises(InvalidEnvelopeError) as ei:
        encode_envelope(env)
    e = ei.value
    assert (e.field, e.reason) == (exp["field"], exp["reason"]), str(e)
    assert str(e).startswith(exp["field"] + ":"), str(e)
    why = entry.get("why")
    if why and "at byte" not in why:
        assert str(e) == why, "the sidecar's own sentence"


@pytest.mark.parametrize("entry", INVALID_NO_TWIN, ids=ids(INVALID_NO_TWIN))
def test_invalid_without_twin(entry: dict[str, Any]) -> None:
    """MessagePack-only breaks: those that decode to a Python value are refused like the sidecar;
    the others (truncated, bad UTF-8, trailing bytes ...) cannot be produced by an encoder."""
    try:
        env = msgpack.unpackb(read(entry["msgpack"]), raw=False, strict_map_key=False)
    except Exception:
        pytest.skip("bytes no encoder writes")
    with pytest.raises(InvalidEnvelopeError) as ei:
        encode_envelope(env)
    assert (ei.value.field, ei.value.reason) == (entry["field"], entry["reason"])
    assert str(ei.value) == entry["why"]


@pytest.mark.parametrize("entry", OUTCOMES, ids=ids(OUTCOMES))
def test_outcomes_decode_as_the_manifest_says(entry: dict[str, Any]) -> None:
    body = read(entry["file"])
    o = decode_outcome(body)
    assert o.ok is entry["ok"]
    if not entry["ok"]:
        assert o.error == entry["error"]
        assert o.error_type == entry["error_type"]
    if entry["canonical"]:
        assert encode_outcome(entry["ok"], entry.get("error"), entry.get("error_type")) == body


def test_packed_task_checked() -> None:
    base = {"task_id": "t-1"}
    with pytest.raises(InvalidEnvelopeError) as ei:
        encode_envelope({**base, "task": dlq_client.Packed(b"\x81\xa1x")})
    assert (ei.value.field, ei.value.reason) == ("task", "truncated")
    with pytest.raises(InvalidEnvelopeError) as ei:
        encode_envelope({**base, "task": dlq_client.Packed(b"\x01\x02")})
    assert ei.value.reason == "trailing_bytes"
    with pytest.raises(InvalidEnvelopeError) as ei:
        encode_envelope({**base, "task": dlq_client.Packed(b"\xc1")})
    assert ei.value.reason == "bad_msgpack"
    deep: Any = 1
    for _ in range(32):
        deep = [deep]
    with pytest.raises(InvalidEnvelopeError) as ei:
        encode_envelope({**base, "task": deep})
    assert ei.value.reason == "too_deep"
    with pytest.raises(InvalidEnvelopeError) as ei:
        encode_envelope({**base, "task": dlq_client.Packed(msgpack.packb(deep))})
    assert ei.value.reason == "too_deep"
    # 31 levels inside the envelope's map: the limit, accepted.
    assert encode_envelope({**base, "task": deep[0]})


def test_python_only_refusals() -> None:
    base = {"task_id": "t-1", "task": 1}
    cases = [
        ({"task": {1, 2}}, "task", "bad_type"),
        ({"task_id": "a\ud800"}, "task_id", "bad_utf8"),
        ({"max_retries": True}, "max_retries", "bad_type"),
        ({"retry_subject": "dlq.retry.*"}, "retry_subject", "bad_value"),
        ({"retry_subject": "dlq..retry"}, "retry_subject", "bad_value"),
        ({"failed_at": "2025-02-29T00:00:00Z"}, "failed_at", "bad_timestamp"),
        ({"eror": "typo"}, "eror", "unknown_key"),
    ]
    for extra, field, reason in cases:
        with pytest.raises(InvalidEnvelopeError) as ei:
            encode_envelope({**base, **extra})
        assert (ei.value.field, ei.value.reason) == (field, reason), extra
    with pytest.raises(InvalidEnvelopeError) as ei:
        encode_envelope({**base, "error": "x" * 2000}, max_bytes=1000)
    assert (ei.value.field, ei.value.reason) == ("envelope", "too_big")


def test_failed_at_forms() -> None:
    import datetime as dt

    aware = dt.datetime(2025, 12, 3, 22, 13, 20, 123000, tzinfo=dt.timezone.utc)
    want = read("envelopes/valid/every_field.msgpack")
    env = twin(next(e for e in ENVELOPES if e["name"] == "every_field"))
    env["failed_at"] = aware
    assert encode_envelope(env) == want
    with pytest.raises(InvalidEnvelopeError) as ei:
        encode_envelope({**env, "failed_at": aware.replace(tzinfo=None)})
    assert ei.value.field == "failed_at"
    assert dlq_client.parse_rfc3339("2025-12-03T23:13:20.123456+01:00") == 1764800000123


def test_outcome_texts_cleaned() -> None:
    body = encode_outcome(False, "\ud800" + "j" * 9000, "Bad\ud800")
    o = decode_outcome(body)
    assert o.error.startswith("\ufffdjjj") and o.error.endswith("...[truncated]")
    assert len(o.error.encode()) <= 4096
    assert o.error_type == "Bad\ufffd"
    assert decode_outcome(b"", {"Nats-Service-Error": "busy", "Nats-Service-Error-Code": "503"}) == \
        dlq_client.Outcome(False, "503 busy")


@pytest.mark.parametrize("body, want", [
    (b'\x82\xa2ok\xc2\xa5error' + b'\x91' * 1000 + b'\xc0', dlq_client.Outcome(False, "malformed reply")),
    (b'{"ok":false,"error":' + b'[' * 5000 + b']' * 5000 + b'}', dlq_client.Outcome(False, "malformed reply")),
    (b'{"ok":true,"ok":false}', dlq_client.Outcome(False, "malformed reply")),
    (b'{"ok":false,"error":"\\u0000\\ud800"}', dlq_client.Outcome(False, "malformed reply")),
    (b'{"ok":false,"error":"\\udc00"}', dlq_client.Outcome(False, "malformed reply")),
    (b'{"ok":false,"error":"\\u0000x\\ud83d\\ude00"}', dlq_client.Outcome(False, " x\U0001F600")),
    (b'{"stream":"X","seq":1}', dlq_client.Outcome(False, "unrecognised reply")),
])
def test_outcome_hostile_replies(body: bytes, want: dlq_client.Outcome) -> None:
    """Replies a hostile or broken worker may send decode as the sidecar's codec reads them, never raise."""
    assert decode_outcome(body) == want


def test_read_ack_hostile_answers() -> None:
    from dlq_client.report import _read_ack
    for data in (b"[" * 100000, b'{"ok":' + b"[" * 100000, b"\xff", b"{}", b"[]"):
        with pytest.raises(dlq_client.ProtocolError):
            _read_ack(data)


class _Unprintable:
    def __str__(self) -> str:
        raise ValueError("no str")

    def __repr__(self) -> str:
        raise ValueError("no repr")


class _BadStr(Exception):
    def __str__(self) -> str:
        raise ValueError("no str")


class _BadBoth(Exception):
    def __str__(self) -> str:
        raise ValueError("no str")

    def __repr__(self) -> str:
        raise ValueError("no repr")


@pytest.mark.parametrize("exc, want", [
    (dlq_client.RetryFailed(123), b'{"ok":false,"error":"123"}'),  # type: ignore[arg-type]
    (dlq_client.RetryFailed("x", 5), b'{"ok":false,"error":"x","error_type":"5"}'),  # type: ignore[arg-type]
    (dlq_client.RetryFailed(_Unprintable(), _Unprintable()),  # type: ignore[arg-type]
     b'{"ok":false,"error":"<unprintable _Unprintable>","error_type":"<unprintable _Unprintable>"}'),
    (_BadStr("a"), b'{"ok":false,"error":"_BadStr(\'a\')","error_type":"_BadStr"}'),
    (_BadBoth(), b'{"ok":false,"error":"<unprintable _BadBoth>","error_type":"_BadBoth"}'),
])
def test_hostile_handler_exceptions_are_answered(exc: BaseException, want: bytes) -> None:
    """A handler raising any of these still gets a section 6 failure replied (serve_retries' _run)."""
    import asyncio

    from dlq_client.worker import _run

    def handler(_: dlq_client.Retry) -> None:
        raise exc

    retry = dlq_client.Retry("dlq.retry.x", b"\xc0", "t1", 1, 3, None, None, None, None, None)
    body, fatal = asyncio.run(_run(handler, retry))
    assert fatal is None
    assert body == want
    assert decode_outcome(body).ok is False
