"""guard.py - the seed design's execute_with_dlq: run work, and report the exception it raises to the sidecar."""

from __future__ import annotations

import functools
import inspect
import logging
from types import TracebackType
from typing import Any, Awaitable, Callable, Literal, Mapping, ParamSpec, TypeVar

from nats.aio.client import Client
from nats.js.client import JetStreamContext

from .envelope import MISSING
from .report import Ack, Durable, reporter_for

__all__ = [
    "RETRYABLE_EXCEPTIONS",
    "Guard",
    "Strategy",
    "execute_with_dlq",
    "guard",
    "mark_for_dlq",
    "protect",
]

log = logging.getLogger("dlq_client")

Strategy = Literal["automatic", "selective", "manual", "disabled"]
STRATEGIES = ("automatic", "selective", "manual", "disabled")

# What "selective" reports by default: errors worth retrying (the sidecar's transient and
# network categories). TimeoutError covers asyncio's and nats-py's time-outs.
RETRYABLE_EXCEPTIONS: tuple[type[BaseException], ...] = (TimeoutError, ConnectionError)

P = ParamSpec("P")
R = TypeVar("R")

_MARK = "__dlq_enqueue__"


def mark_for_dlq(exc: BaseException) -> BaseException:
    """Marks exc for the "manual" strategy (``raise mark_for_dlq(e)``); returns exc."""
    setattr(exc, _MARK, True)
    return exc


class Guard:
    """An async context manager that reports the exception of its block (see guard())."""

    def __init__(
        self,
        nc_or_js: Client | JetStreamContext,
        service: str,
        task_id: str,
        task: Any = MISSING,
        *,
        strategy: Strategy = "automatic",
        retry_on: tuple[type[BaseException], ...] | Callable[[BaseException], bool] = RETRYABLE_EXCEPTIONS,
        prefix: str = "dlq",
        durable: Durable = "auto",
        ack_timeout: float = 5.0,
        wait: bool = True,
        **failure: Any,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy: {strategy!r} is not one of {', '.join(STRATEGIES)}")
        self.nc_or_js = nc_or_js
        self.service = service
        self.task_id = task_id
        self.task = task
        self.strategy: Strategy = strategy
        self.retry_on = retry_on
        self.prefix, self.durable, self.ack_timeout, self.wait = prefix, durable, ack_timeout, wait
        self.failure = failure        # the envelope's other keys (error_category, max_retries, metadata ...)
        self.ack: Ack | None = None   # the acknowledgement of the report, once made (wait=True)
        self.reported = False
        self.report_error: BaseException | None = None
        self._enqueue = False

    def enqueue(self) -> None:
        """Under "manual": report the exception that ends this block (call it before raising)."""
        self._enqueue = True

    def should_report(self, exc: BaseException) -> bool:
        """Whether the strategy reports exc (only Exception subclasses ever are)."""
        if not isinstance(exc, Exception) or self.strategy == "disabled":
            return False
        if self.strategy == "automatic":
            return True
        if self.strategy == "selective":
            if isinstance(self.retry_on, tuple):
                return isinstance(exc, self.retry_on)
            return bool(self.retry_on(exc))
        return self._enqueue or bool(getattr(exc, _MARK, False))  # manual

    async def __aenter__(self) -> "Guard":
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None and self.should_report(exc):
            await self.report(exc)
        # None: the exception goes on, the caller still sees its failure

    async def report(self, exc: BaseException) -> Ack | None:
        """Reports exc now (error: str(exc), error_type: its class name). A report that fails is
        logged and added to exc's notes, never raised over exc; it is kept in report_error."""
        failure = dict(self.failure)
        failure.setdefault("error", str(exc) or repr(exc))
        failure.setdefault("error_type", type(exc).__name__)
        if self.strategy == "manual":
            failure["enqueue"] = True
        try:
            r = reporter_for(self.nc_or_js, self.prefix, self.durable, self.ack_timeout)
            self.ack = await r.report(self.service, self.task_id, self.task, wait=self.wait, **failure)
            self.reported = True
        except Exception as e:  # never hide the work's own exception behind the report's
            self.report_error = e
            log.error("dlq_client: could not report task %s: %s: %s", self.task_id, type(e).__name__, e)
            exc.add_note(f"dlq_client: the failure was not reported: {type(e).__name__}: {e}")
        return self.ack


def guard(
    nc_or_js: Client | JetStreamContext,
    service: str,
    task_id: str,
    task: Any = MISSING,
    **options: Any,
) -> Guard:
    """guard() is an async context manager that reports an exception raised in its block:

        async with guard(nc, "orders", task_id=order["id"], task=order):
            await process(order)

    The exception is reported to "<prefix>.failed.<service>" with error
    str(exc) and error_type its class name (error and error_type given as
    options win), then raised again. The strategy option decides which
    exceptions are reported (only subclasses of Exception ever are; a
    cancellation or KeyboardInterrupt is not a task failure):

    - "automatic" (default): every exception.
    - "selective": only retryable ones: instances of retry_on (default
      RETRYABLE_EXCEPTIONS: TimeoutError, ConnectionError), or those for
      which retry_on(exc) is true when it is a function. Others go on unreported.
    - "manual": only when the code asks, by calling .enqueue() on the guard
      before raising or by raising mark_for_dlq(exc); the envelope says
      "enqueue": true (what a sidecar with strategy: manual stores).
    - "disabled": nothing is reported.

    Other options: retry_on, prefix, durable, ack_timeout, wait (default
    True: the block's exit waits for the acknowledgement), and the
    envelope's keys (task_msgpack, error_category, retry_policy,
    max_retries, retry_subject, repos, metadata, failed_at, msg_id). The
    guard's task_id and task may be set inside the block. A report that
    fails never replaces the exception: it is logged, added to the
    exception's notes and kept in .report_error.
    """
    return Guard(nc_or_js, service, task_id, task, **options)


def protect(
    nc_or_js: Client | JetStreamContext | Callable[[], Client | JetStreamContext],
    service: str,
    *,
    task_id: str | Callable[..., str],
    task: Any = MISSING,
    **options: Any,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """protect() is a decorator for an async function: a call that raises is
    reported as guard() does, then raises again.

        @protect(nc, "orders", task_id=lambda order: order["id"], task=lambda order: order)
        async def process(order): ...

    task_id and task are values, or functions called with the call's
    arguments; task left out is {"args": [...], "kwargs": {...}} of the call.
    nc_or_js may be a function returning the connection (for a decorator
    applied before connecting). Options as guard(), strategy included.
    """

    def deco(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        if not inspect.iscoroutinefunction(func):
            raise TypeError(f"protect: {getattr(func, '__name__', func)!r} is not an async function")

        @functools.wraps(func)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            conn = nc_or_js() if callable(nc_or_js) and not isinstance(nc_or_js, (Client, JetStreamContext)) else nc_or_js
            tid = task_id(*args, **kwargs) if callable(task_id) else task_id
            if task is MISSING:
                t: Any = {"args": list(args), "kwargs": dict(kwargs)}
            else:
                t = task(*args, **kwargs) if callable(task) else task
            async with Guard(conn, service, tid, t, **options):
                return await func(*args, **kwargs)

        return wrapper

    return deco


async def execute_with_dlq(
    nc_or_js: Client | JetStreamContext,
    service: str,
    func: Callable[..., Any],
    args: tuple[Any, ...] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    task_id: str,
    task: Any = MISSING,
    **options: Any,
) -> Any:
    """execute_with_dlq() runs func(*args, **kwargs) (awaited when it is async)
    and returns its result; an exception is reported as guard() does, then
    raised again. task left out is {"args": [...], "kwargs": {...}}. Options
    as guard(), strategy included. The seed design's name for the wrapper."""
    kw = dict(kwargs or {})
    t = {"args": list(args), "kwargs": kw} if task is MISSING else task
    async with Guard(nc_or_js, service, task_id, t, **options):
        result = func(*args, **kw)
        if inspect.isawaitable(result):
            result = await result
        return result
