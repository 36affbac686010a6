"""report.py - a service's side: publish failure envelopes to the sidecar, through JetStream when a stream takes them."""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal, Mapping, Sequence

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.client import JetStreamContext

from .envelope import MISSING, InvalidEnvelopeError, Packed, encode_envelope, parse_rfc3339, subject_ok

__all__ = [
    "Ack",
    "DLQError",
    "Durable",
    "NoRespondersError",
    "ProtocolError",
    "ReportError",
    "ReportRefusedError",
    "ReportTimeoutError",
    "Reporter",
    "RetryPolicy",
    "report_failure",
]

Durable = Literal["auto", "always", "never"]


class RetryPolicy(str, Enum):
    """The retry policies of the seed design (DESIGN section 7); plain strings work too."""

    NEVER = "never"
    LINEAR = "linear"
    EXPONENTIAL = "exponential"
    IMMEDIATE = "immediate"


class DLQError(Exception):
    """Base of the errors of this package (InvalidEnvelopeError is a ValueError, not one of these)."""


class ReportError(DLQError):
    """A failure that could not be handed over (subclasses say why)."""


class ReportRefusedError(ReportError):
    """The sidecar (or JetStream) said no. ``code``: the sidecar's 400 (invalid) or 503
    (queue full, store unavailable: send again later), or JetStream's err_code."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class NoRespondersError(ReportError):
    """Nobody listens: no sidecar on the failure subject, or (durable "always") no stream captures it."""


class ReportTimeoutError(ReportError, TimeoutError):
    """No acknowledgement in time. The failure may still have arrived: send it again with the
    same task_id (one task per id) or, through JetStream, the same msg_id (stored once)."""


class ProtocolError(ReportError):
    """An answer that does not read as an acknowledgement."""


@dataclass(frozen=True)
class Ack:
    """What the sidecar (core NATS) or JetStream answered to a report that waited.

    durable: True for a JetStream PubAck (stream, seq, duplicate), False
    for the sidecar's own answer (task_id, status "pending", "exhausted" or
    "skipped", next_retry_at RFC 3339 or None when nothing is scheduled,
    stored True/False with a durable store else None, unknown_keys).
    """

    durable: bool
    stream: str | None = None
    seq: int | None = None
    duplicate: bool = False
    task_id: str | None = None
    status: str | None = None
    next_retry_at: str | None = None
    stored: bool | None = None
    unknown_keys: tuple[str, ...] = field(default_factory=tuple)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _read_ack(data: bytes) -> Ack:
    """The answer to a report as an Ack; a refusal raised.

    Whoever takes the failure subject answers: the sidecar ({"ok": ..},
    DESIGN section 3), or a JetStream stream that captures the subject, with
    its PubAck ({"stream": .., "seq": .., "duplicate": ..}: durable) or its
    error ({"error": {"code": .., "err_code": .., "description": ..}}, no "ok").
    """
    try:
        root = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, TypeError, RecursionError):  # RecursionError: "[" * 100000
        raise ProtocolError(f"the answer is not a JSON object: {data[:100]!r}") from None
    if not isinstance(root, dict):
        raise ProtocolError(f"the answer is not a JSON object: {data[:100]!r}")
    ok = root.get("ok")
    err = root.get("error")
    if "ok" not in root:
        stream = root.get("stream")
        if isinstance(stream, str) and stream and err is None:
            seq = root.get("seq")
            return Ack(durable=True, stream=stream, seq=seq if isinstance(seq, int) else None,
                       duplicate=root.get("duplicate") is True)
        err_code = err.get("err_code") if isinstance(err, dict) else None
        if isinstance(err_code, int) and not isinstance(err_code, bool) and err_code:
            desc = err.get("description") if isinstance(err, dict) else None
            raise ReportRefusedError(
                f"JetStream refused the failure (err_code {err_code}): "
                f"{desc if isinstance(desc, str) else '(no description)'}", err_code)
        raise ProtocolError(f"the answer is neither an acknowledgement nor a PubAck: {data[:100]!r}")
    if ok is False:
        err = err if isinstance(err, dict) else {}
        msg = err.get("message")
        code = err.get("code")
        raise ReportRefusedError(f"the sidecar refused: {msg if isinstance(msg, str) else '(no message)'}",
                                 code if isinstance(code, int) else 0)
    if ok is not True:
        raise ProtocolError(f"the answer has no boolean ok: {data[:100]!r}")
    stored = root.get("stored")
    uk = root.get("unknown_keys")
    return Ack(
        durable=False,
        task_id=root.get("task_id") if isinstance(root.get("task_id"), str) else None,
        status=root.get("status") if isinstance(root.get("status"), str) else None,
        next_retry_at=root.get("next_retry_at") if isinstance(root.get("next_retry_at"), str) else None,
        stored=stored if isinstance(stored, bool) else None,
        unknown_keys=tuple(k for k in uk if isinstance(k, str)) if isinstance(uk, list) else (),
    )


class Reporter:
    """Reports failures to dlq-sidecar over one NATS connection.

    nc_or_js is a connected nats-py Client, or a JetStreamContext (then
    every report goes through JetStream, as durable="always"). prefix is
    the sidecar's subjects.prefix; durable says where reports go: "auto"
    (one message on the failure subject with Nats-Msg-Id, answered by a
    stream that captures the subject, with its PubAck, else by the sidecar:
    no JetStream API call, so a user allowed to publish only
    <prefix>.failed.> reports durably too), "always" (a JetStream publish
    only, nats-py's js.publish: no stream is NoRespondersError, and only a
    PubAck is an acknowledgement; nats-py's JetStream publish is a request
    on the subject as well, but should it ever ask the JetStream API first,
    the user needs $JS.API rights), "never" (core NATS only, no
    Nats-Msg-Id). ack_timeout (seconds) bounds every wait for an
    acknowledgement. The reporter keeps no task
    state: one per connection is enough, used from that connection's loop.
    """

    def __init__(
        self,
        nc_or_js: Client | JetStreamContext,
        *,
        prefix: str = "dlq",
        durable: Durable = "auto",
        ack_timeout: float = 5.0,
    ) -> None:
        if not subject_ok(prefix):
            raise ValueError(f'prefix: "{prefix[:64]}" is not a subject prefix')
        if durable not in ("auto", "always", "never"):
            raise ValueError(f"durable: {durable!r} is not one of auto, always, never")
        if isinstance(nc_or_js, JetStreamContext):
            self._js: JetStreamContext = nc_or_js
            self._nc: Client = nc_or_js._nc
            durable = "always"
        elif isinstance(nc_or_js, Client):
            self._nc = nc_or_js
            self._js = nc_or_js.jetstream(timeout=ack_timeout)
        else:
            raise TypeError(f"nc_or_js: a nats Client or JetStreamContext, not {type(nc_or_js).__name__}")
        self.prefix = prefix
        self.durable: Durable = durable
        self.ack_timeout = float(ack_timeout)
        self._pending: set[asyncio.Future[Any]] = set()
        self._async_errors: list[str] = []

    async def report(
        self,
        service: str,
        task_id: str,
        task: Any = MISSING,
        *,
        task_msgpack: bytes | None = None,
        error: str | None = None,
        error_type: str | None = None,
        error_category: str | None = None,
        retry_policy: str | RetryPolicy | None = None,
        max_retries: int | None = None,
        retry_subject: str | None = None,
        repos: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | Packed | None = None,
        failed_at: Any = None,
        enqueue: bool = False,
        backoff: Sequence[int] | None = None,
        template: str | None = None,
        priority: str | None = None,
        depends_on: Sequence[str] | None = None,
        msg_id: str | None = None,
        wait: bool = True,
    ) -> Ack | None:
        """report() checks one failure and publishes it on "<prefix>.failed.<service>".

        service is one or more subject tokens ("orders", "orders.eu").
        task is the task as a Python value (packed as MessagePack; bytes
        become a bin), or task_msgpack its exact MessagePack bytes
        (republished to workers as given): exactly one. The other keyword
        arguments are the envelope's keys (DESIGN section 4; None leaves a
        key out): see encode_envelope(). Unless durable is "never" the
        message carries Nats-Msg-Id msg_id (default "<task_id>:<failed_at
        ms, else now ms>"), so a stream stores a resend with the same id once.

        With wait, returns the Ack of the one answer: in "auto" (and
        "never") the report is a request on the failure subject, answered
        by a stream that captures it (its PubAck: durable, stream, seq,
        duplicate; its error: ReportRefusedError with the err_code) or by
        the sidecar; in "always" it is a JetStream publish and the Ack its
        PubAck. Without wait, returns None once the message is handed to the
        connection (a plain publish with the header; "always": JetStream's
        publish_async; see flush()). Raises InvalidEnvelopeError before
        publishing anything when the envelope breaks the contract (or is larger than
        the server's max_payload); ReportRefusedError, NoRespondersError,
        ReportTimeoutError, ProtocolError when the hand-over fails; a
        ValueError for a service that is not subject tokens.
        """
        subject = f"{self.prefix}.failed.{service}" if isinstance(service, str) else ""
        if not subject or not subject_ok(subject):
            raise ValueError(f'service: "{str(service)[:64]}" is not subject tokens (e.g. "orders")')
        if task_msgpack is not None:
            if task is not MISSING:
                raise InvalidEnvelopeError("task", "bad_value", "task: give one of task and task_msgpack, not both")
            task = Packed(task_msgpack)
        envelope: dict[str, Any] = {
            "task_id": task_id,
            "task": task,
            "error": error,
            "error_type": error_type,
            "error_category": error_category,
            "retry_policy": retry_policy,
            "max_retries": max_retries,
            "retry_subject": retry_subject,
            "repos": repos,
            "metadata": metadata,
            "failed_at": failed_at,
            "enqueue": enqueue,
            "backoff": backoff,
            "template": template,
            "priority": priority,
            "depends_on": depends_on,
        }
        if task is MISSING:
            del envelope["task"]
        body = encode_envelope(envelope, max_bytes=self._nc.max_payload or 0)
        if self.durable == "never":
            return await self._publish_core(subject, body, None, wait)
        if msg_id is None:
            fa = _failed_at_ms(failed_at)
            msg_id = f"{task_id}:{fa if fa is not None else _now_ms()}"
        if self.durable == "always":
            return await self._publish_js(subject, body, msg_id, wait)
        return await self._publish_core(subject, body, {"Nats-Msg-Id": msg_id}, wait)

    async def _publish_js(self, subject: str, body: bytes, msg_id: str, wait: bool) -> Ack | None:
        headers = {"Nats-Msg-Id": msg_id}
        try:
            if not wait:
                fut = await self._js.publish_async(subject, body, headers=headers, wait_stall=self.ack_timeout)
                self._pending.add(fut)
                fut.add_done_callback(self._async_done)
                return None
            pa = await self._js.publish(subject, body, timeout=self.ack_timeout, headers=headers)
        except nats.js.errors.NoStreamResponseError:
            raise NoRespondersError(f"{subject}: no stream captures the subject (JetStream publish)") from None
        except nats.js.errors.APIError as e:
            raise ReportRefusedError(f"JetStream refused the failure (err_code {e.err_code}): {e.description}",
                                     e.err_code or e.code or 0) from e
        except (asyncio.TimeoutError, nats.errors.TimeoutError):
            raise ReportTimeoutError(f"{subject}: no PubAck in {self.ack_timeout:g} s") from None
        except nats.errors.Error as e:
            raise ReportError(f"{subject}: JetStream publish: {e}") from e
        return Ack(durable=True, stream=pa.stream, seq=pa.seq, duplicate=bool(pa.duplicate))

    def _async_done(self, fut: asyncio.Future[Any]) -> None:
        self._pending.discard(fut)
        if fut.cancelled():
            self._async_errors.append("cancelled")
            return
        e = fut.exception()
        if e is not None:
            self._async_errors.append(f"{type(e).__name__}: {e}")

    async def _publish_core(self, subject: str, body: bytes, headers: dict[str, str] | None,
                            wait: bool) -> Ack | None:
        """A request on the failure subject (answered by a stream or the sidecar), or a plain publish."""
        try:
            if not wait:
                await self._nc.publish(subject, body, headers=headers)
                return None
            reply = await self._nc.request(subject, body, timeout=self.ack_timeout, headers=headers)
        except nats.errors.NoRespondersError:
            raise NoRespondersError(f"{subject}: no responders (no sidecar or stream listens)") from None
        except (asyncio.TimeoutError, nats.errors.TimeoutError):
            raise ReportTimeoutError(f"{subject}: no acknowledgement in {self.ack_timeout:g} s") from None
        except nats.errors.Error as e:
            raise ReportError(f"{subject}: {e}") from e
        return _read_ack(reply.data)

    async def flush(self, timeout: float | None = None) -> None:
        """flush() waits up to timeout seconds (None: the ack timeout) until
        every report sent without wait is acknowledged: JetStream's PubAcks,
        then a flush of the connection for core publishes. Raises
        ReportTimeoutError, or ReportRefusedError naming how many JetStream
        refused since the last flush and the last reason."""
        t = self.ack_timeout if timeout is None else timeout
        try:
            if self._pending:
                await asyncio.wait_for(asyncio.gather(*list(self._pending), return_exceptions=True), t)
            await self._nc.flush(timeout=t)  # type: ignore[arg-type]  # a float works (asyncio.wait_for)
        except (asyncio.TimeoutError, nats.errors.TimeoutError):
            raise ReportTimeoutError(f"flush: {len(self._pending)} report(s) unacknowledged after {t:g} s") from None
        errors, self._async_errors = self._async_errors, []
        if errors:
            raise ReportRefusedError(f"{len(errors)} report(s) refused by JetStream; the last: {errors[-1]}")


def _failed_at_ms(v: Any) -> int | None:
    """failed_at in ms when it is an int or an aware datetime (for the default Nats-Msg-Id)."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str):
        return parse_rfc3339(v)
    if hasattr(v, "timestamp") and getattr(v, "tzinfo", None) is not None:
        return int(v.timestamp() * 1000)
    return None


# One Reporter per connection and settings, for report_failure() (forgotten with the connection).
_reporters: "weakref.WeakKeyDictionary[Any, dict[tuple[str, str, float], Reporter]]" = weakref.WeakKeyDictionary()


def reporter_for(nc_or_js: Client | JetStreamContext, prefix: str = "dlq", durable: Durable = "auto",
                 ack_timeout: float = 5.0) -> Reporter:
    """The shared Reporter of a connection (or JetStream context) with these settings."""
    per = _reporters.setdefault(nc_or_js, {})
    key = (prefix, durable, float(ack_timeout))
    r = per.get(key)
    if r is None:
        r = per[key] = Reporter(nc_or_js, prefix=prefix, durable=durable, ack_timeout=ack_timeout)
    return r


async def report_failure(
    nc_or_js: Client | JetStreamContext,
    service: str,
    task_id: str,
    task: Any = MISSING,
    *,
    prefix: str = "dlq",
    durable: Durable = "auto",
    ack_timeout: float = 5.0,
    **failure: Any,
) -> Ack | None:
    """report_failure() reports one failed task to dlq-sidecar: Reporter.report()
    on the connection's shared Reporter (prefix, durable and ack_timeout as
    in Reporter). Keyword arguments: task_msgpack, error, error_type,
    error_category, retry_policy, max_retries, retry_subject, repos,
    metadata, failed_at, enqueue, backoff, template, priority, depends_on,
    msg_id, wait (default True: wait for the
    acknowledgement and return it). Errors as Reporter.report()."""
    r = reporter_for(nc_or_js, prefix, durable, ack_timeout)
    return await r.report(service, task_id, task, **failure)
