"""worker.py - a worker's side: serve a retry subject, run the handler, reply the outcome of DESIGN section 6."""

from __future__ import annotations

import asyncio
import inspect
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

import msgpack
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from .envelope import subject_ok
from .outcome import _as_text, encode_outcome

__all__ = ["Retry", "RetryFailed", "Worker", "serve_retries"]

log = logging.getLogger("dlq_client")


class RetryFailed(Exception):
    """Raise it from a handler to fail the attempt with an error_type of your
    choice ("HTTP 503", "TimeoutError") instead of the exception's class name."""

    def __init__(self, error: str, error_type: str | None = None) -> None:
        # A text that is not a str is replied as its str() (see outcome_of_exception()).
        super().__init__(error)
        self.error = error
        self.error_type = error_type


def _int(v: str | None, lo: int, dflt: int) -> int:
    try:
        n = int(v) if v is not None and v.strip().lstrip("+-").isdigit() else dflt
    except ValueError:
        return dflt
    return n if n >= lo else dflt


@dataclass(frozen=True)
class Retry:
    """One retry (DESIGN section 5) as the handler gets it.

    data is the task's MessagePack bytes exactly as the service sent them;
    task is the same decoded (lazily, maps with any key, bin as bytes). The
    headers of section 5: task_id (Dlq-Task-Id, None when absent), attempt
    (Dlq-Attempt, 1-based; 0 when absent or unreadable), max_retries
    (Dlq-Max-Retries; -1 when absent), error_category, original_subject,
    first_failed_at (RFC 3339), episode, msg_id (Nats-Msg-Id:
    <task_id>:<episode>:<attempt>); headers holds every header, msg the
    nats-py message itself.
    """

    subject: str
    data: bytes
    task_id: str | None
    attempt: int
    max_retries: int
    error_category: str | None
    original_subject: str | None
    first_failed_at: str | None
    episode: str | None
    msg_id: str | None
    headers: Mapping[str, str] = field(default_factory=dict)
    msg: Msg | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_msg(cls, msg: Msg) -> "Retry":
        h: Mapping[str, str] = msg.headers or {}
        return cls(
            subject=msg.subject,
            data=bytes(msg.data),
            task_id=h.get("Dlq-Task-Id"),
            attempt=_int(h.get("Dlq-Attempt"), 1, 0),
            max_retries=_int(h.get("Dlq-Max-Retries"), 0, -1),
            error_category=h.get("Dlq-Error-Category"),
            original_subject=h.get("Dlq-Original-Subject"),
            first_failed_at=h.get("Dlq-First-Failed-At"),
            episode=h.get("Dlq-Episode"),
            msg_id=h.get("Nats-Msg-Id"),
            headers=dict(h),
            msg=msg,
        )

    @property
    def task(self) -> Any:
        """The task decoded from data (raises msgpack's errors when data is not one MessagePack value)."""
        return msgpack.unpackb(self.data, raw=False, strict_map_key=False)


Handler = Callable[[Retry], Any] | Callable[[Retry], Awaitable[Any]]


def outcome_of_exception(exc: BaseException) -> tuple[str, str]:
    """The (error, error_type) a worker replies for exc: RetryFailed's own, else str(exc)
    (repr when empty) and the exception's class name. Never raises: a text that is
    not a str is taken as its str() (repr() when that raises, else a fixed text),
    and so is an exception whose __str__ raises."""
    if isinstance(exc, RetryFailed):
        error = getattr(exc, "error", None)
        error_type = getattr(exc, "error_type", None)
        return ("" if error is None else _as_text(error)), ("" if error_type is None else _as_text(error_type))
    try:
        error = str(exc)
    except Exception:
        error = ""
    if not isinstance(error, str) or not error:
        error = _as_text(_Repr(exc))
    return error, _as_text(type(exc).__name__)


class _Repr:
    """Renders an exception as repr(exc), or a fixed text when that raises too."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __str__(self) -> str:
        return repr(self.exc)

    def __repr__(self) -> str:
        return f"<unprintable {type(self.exc).__name__}>"


async def _run(handler: Handler, retry: Retry) -> tuple[bytes, BaseException | None]:
    """Runs the handler and returns the reply body (success unless it raised or returned False)
    and, for a SystemExit or KeyboardInterrupt, the exception to raise once the reply is sent."""
    try:
        if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(getattr(handler, "__call__", None)):
            result = await handler(retry)
        else:
            result = await asyncio.to_thread(handler, retry)
            if inspect.isawaitable(result):
                result = await result
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # the worker answers a failure rather than die
        try:
            error, error_type = outcome_of_exception(exc)
            body = encode_outcome(False, error, error_type or None)
        except Exception:  # belt and braces: a failure is always answered
            error, error_type = "worker handler failed", "dlq.UnprintableError"
            body = encode_outcome(False, error, error_type)
        log.info("dlq_client: retry %s attempt %d failed: %s: %s", retry.task_id, retry.attempt,
                 error_type, error)
        return body, None if isinstance(exc, Exception) else exc
    if result is False:
        return encode_outcome(False, "worker handler returned False", "dlq.HandlerReturnedFalse"), None
    return encode_outcome(True), None


class Worker:
    """A served retry subject (see serve_retries()); stop it with drain() or unsubscribe()."""

    def __init__(self, sub: Subscription) -> None:
        self.subscription = sub

    async def drain(self) -> None:
        """Stops taking retries: those already delivered are handled and answered first."""
        await self.subscription.drain()  # type: ignore[no-untyped-call]

    async def unsubscribe(self) -> None:
        """Stops at once (a retry being handled is still answered)."""
        await self.subscription.unsubscribe()


async def serve_retries(
    nc: Client,
    subject: str,
    handler: Handler,
    queue: str = "",
) -> Worker:
    """serve_retries() subscribes on nc to subject (a retry subject,
    wildcards allowed) in queue group queue ("" none; the workers of one
    service share one) and calls handler(retry) for every retry, one at a
    time, then replies its outcome (DESIGN section 6) when the retry has a
    reply subject:

    - the handler returns (anything but False): {"ok":true}, the task completes;
    - it raises an Exception: {"ok":false,"error":str(exc),"error_type":<the
      exception's class name>}, which the sidecar classifies again (RetryFailed
      sets both texts; the error is cut to 4096 bytes; a text that is not a str,
      or an exception whose __str__ raises, is replied as its str() or repr(),
      else a fixed text: a raising handler is always answered);
    - it returns False: a failure, error_type "dlq.HandlerReturnedFalse".

    An async handler runs on the connection's loop; a plain function runs in
    a worker thread (asyncio.to_thread), so blocking work does not stall the
    connection. The subscription is flushed to the server before this
    returns. Raises ValueError for a bad subject or queue name, nats-py's
    errors when the subscription fails.
    """
    if not callable(handler):
        raise TypeError("handler: must be callable")
    if not subject_ok(subject, wildcards=True):
        raise ValueError(f'subject: "{str(subject)[:64]}" is not a NATS subject')
    if queue and (any(c in queue for c in " \t\r\n.*>")):
        raise ValueError(f'queue: "{queue[:64]}" is not a queue group name')

    async def on_retry(msg: Msg) -> None:
        retry = Retry.from_msg(msg)
        body, fatal = await _run(handler, retry)
        if msg.reply:
            try:
                await nc.publish(msg.reply, body)
            except Exception as exc:  # a closed connection: the sidecar times the attempt out
                log.warning("dlq_client: cannot reply to retry %s: %s", retry.task_id, exc)
        if fatal is not None:  # SystemExit, KeyboardInterrupt: answered, then let it stop the program
            await nc.flush(timeout=5)
            raise fatal

    sub = await nc.subscribe(subject, queue=queue, cb=on_retry)
    await nc.flush(timeout=5)
    return Worker(sub)
