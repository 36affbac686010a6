"""test_integration.py - the Python client against a real nats-server and the real dlq-sidecar (see conftest.py)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import msgpack
import nats
import pytest

import dlq_client
from conftest import ROOT, World, _tail, _world
from dlq_client import InvalidEnvelopeError, Retry, RetryFailed, guard, protect, report_failure, serve_retries

WAIT_S = 20.0  # waiting for something that should happen soon, on a loaded 2-core machine
_ids = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(_ids)}-{time.monotonic_ns() // 1_000_000}"


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 120))


async def admin(nc: nats.NATS, verb: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    r = await nc.request(f"dlq.admin.{verb}", json.dumps(body or {}).encode(), timeout=5)
    return json.loads(r.data)


async def get(nc: nats.NATS, task_id: str) -> dict[str, Any]:
    return await admin(nc, "get", {"task_id": task_id})


async def wait_status(nc: nats.NATS, task_id: str, want: str, timeout: float = WAIT_S) -> dict[str, Any]:
    """Polls dlq.admin.get until the task has status want; fails with the last answer."""
    deadline = time.monotonic() + timeout
    t: dict[str, Any] = {}
    while time.monotonic() < deadline:
        t = await get(nc, task_id)
        if t.get("status") == want:
            return t
        await asyncio.sleep(0.02)
    pytest.fail(f"task {task_id}: want status {want} within {timeout} s, last answer {t}")


async def absent(nc: nats.NATS, task_id: str) -> bool:
    t = await get(nc, task_id)
    return t.get("error", {}).get("code") == 404


def test_report_stored(world: Any) -> None:
    """A report with every field (waiting for the ack) and one without waiting: dlq.admin.get
    shows each field as sent."""

    async def body() -> None:
        nc = await nats.connect(world.url)
        tid = unique("rep")
        task = {"order": 42, "blob": b"\x00\xff"}
        ack = await report_failure(
            nc, "orders", tid, task,
            error="disk quota exceeded", error_type="QuotaError", error_category="resource",
            retry_policy=dlq_client.RetryPolicy.LINEAR, max_retries=7, retry_subject="dlq.retry.orders.slow",
            repos=["orders", "billing"], metadata={"tenant": "acme"}, failed_at=1764800000123,
        )
        assert ack is not None and not ack.durable
        assert ack.status == "pending" and ack.next_retry_at and ack.task_id == tid, ack
        t = await get(nc, tid)
        assert t["task_id"] == tid and t["status"] == "pending", t
        assert t["subject"] == "dlq.failed.orders"
        assert t["retry_subject"] == "dlq.retry.orders.slow"
        assert (t["error"], t["error_type"], t["error_category"]) == ("disk quota exceeded", "QuotaError", "resource")
        assert t["retry_policy"] == "linear" and t["max_retries"] == 7
        assert t["repos"] == ["orders", "billing"] and t["metadata"] == {"tenant": "acme"}
        assert t["task"] == {"order": 42, "blob": {"$bin": base64.b64encode(b"\x00\xff").decode()}}
        assert t["task_size"] == len(msgpack.packb(task))

        # Without waiting: a plain publish, stored all the same; a bin task and the defaults.
        tid2 = unique("nowait")
        assert await report_failure(nc, "payments", tid2, b"\x01\x02\x03", error="invalid schema: field x",
                                    wait=False) is None
        await dlq_client.reporter_for(nc).flush()
        t = await wait_status(nc, tid2, "pending")
        assert t["subject"] == "dlq.failed.payments" and t["error_category"] == "validation", t
        assert t["task"] == {"$bin": "AQID"} and t["max_retries"] == 3, t
        await nc.close()

    run(body)


def test_issue17_keys(request: pytest.FixtureRequest) -> None:
    """priority, backoff and template (one configured in the sidecar's file) arrive: get shows the
    priority, the delays and the template's fields; depends_on is checked in the envelope's bytes
    (the sidecar's support is another branch's); bad values are refused before publishing, and an
    unknown template by the sidecar."""
    d = Path(tempfile.mkdtemp(prefix="dlq-py-tpl-"))
    conf = d / "tpl.yaml"
    conf.write_text("templates:\n  slow: {max_retries: 9, retry_subject: dlq.retry.tpl}\n")
    gen = _world(request, False, (f"config={conf}",))
    w = next(gen)

    async def body() -> None:
        nc = await nats.connect(w.url)
        tid = unique("k17")
        await report_failure(nc, "orders", tid, {"n": 1}, error="busy", error_category="transient",
                             priority="high", backoff=[250, 60000], template="slow")
        t = await get(nc, tid)
        assert t["priority"] == "high" and t["backoff_ms"] == [250, 60000], t
        assert t["max_retries"] == 9 and t["retry_subject"] == "dlq.retry.tpl", t
        with pytest.raises(dlq_client.ReportRefusedError) as e:
            await report_failure(nc, "orders", unique("k17u"), {"n": 1}, template="nosuch")
        assert e.value.code == 400 and "template" in str(e.value), e.value
        await nc.close()

    try:
        run(body)
    finally:
        gen.close()
        shutil.rmtree(d, ignore_errors=True)
    env = msgpack.unpackb(dlq_client.encode_envelope({"task_id": "order-3", "task": 1, "depends_on": ["order-1", "order-2"]}))
    assert env["depends_on"] == ["order-1", "order-2"], env
    every = dlq_client.encode_envelope({"task_id": "x", "task": 1, "error": "e", "error_type": "T", "error_category": "network",
                                        "retry_policy": "linear", "max_retries": 2, "retry_subject": "dlq.retry.x",
                                        "repos": ["r"], "metadata": {"a": 1}, "failed_at": 1, "enqueue": True,
                                        "backoff": [5], "template": "t", "priority": "LOW", "depends_on": ["y"]})
    assert every[0] == 0xDE and len(msgpack.unpackb(every)) == 16  # past 15 keys: a map16
    for field, value in (("priority", "urgent"), ("backoff", [250, 0]), ("backoff", []), ("depends_on", ["ok", ""]),
                         ("depends_on", ["b"]), ("depends_on", ["x", "y", "x"]), ("depends_on", ["m"] * 33)):
        with pytest.raises(InvalidEnvelopeError) as e:
            dlq_client.encode_envelope({"task_id": "b", "task": 1, field: value})
        assert e.value.field == field, (field, value, e.value)


def test_invalid_refused_before_publishing(world: Any) -> None:
    """An envelope that breaks the contract is refused naming the field; the sidecar sees nothing."""

    async def body() -> None:
        nc = await nats.connect(world.url)
        seen: list[bytes] = []

        async def spy(msg: Any) -> None:
            seen.append(msg.data)

        await nc.subscribe("dlq.failed.>", cb=spy)
        await nc.flush()
        cases: list[tuple[dict[str, Any], str, str]] = [
            ({"max_retries": 101}, "max_retries", "max_retries: 101 is out of range 0-100"),
            ({"retry_subject": "dlq.retry.bad subject"}, "retry_subject", ""),
            ({"retry_policy": "sometimes"}, "retry_policy",
             "retry_policy: not one of never, linear, exponential, immediate"),
            ({"metadata": ["a"]}, "metadata", "metadata: must be a map, not an array"),
            ({"error_type": "E" * 1025}, "error_type", "error_type: 1025 bytes, at most 1024"),
        ]
        for extra, field, message in cases:
            with pytest.raises(InvalidEnvelopeError) as ei:
                await report_failure(nc, "orders", "bad-1", b"x", **extra)
            assert ei.value.field == field and str(ei.value).startswith(field + ":"), ei.value
            if message:
                assert str(ei.value) == message
        with pytest.raises(InvalidEnvelopeError) as ei:
            await report_failure(nc, "orders", "a" * 257, b"x")
        assert str(ei.value) == "task_id: 257 bytes, at most 256"
        with pytest.raises(InvalidEnvelopeError) as ei:
            await report_failure(nc, "orders", "big", b"x" * (nc.max_payload + 1))
        assert (ei.value.field, ei.value.reason) == ("envelope", "too_big")
        with pytest.raises(ValueError):
            await report_failure(nc, "orders.*", "t-1", b"x")
        await nc.flush()
        await asyncio.sleep(0.3)
        assert seen == [], "a refused envelope was published"
        st = await admin(nc, "stats")
        assert st["queue_size"] == 0 and st["lifetime_stats"]["invalid"] == 0, st
        await nc.close()

    run(body)


class Seen:
    """What a test handler saw (it may run in a worker thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.retries: list[Retry] = []

    def add(self, r: Retry) -> int:
        with self.lock:
            self.retries.append(r)
            return len(self.retries)

    def count(self) -> int:
        with self.lock:
            return len(self.retries)

    async def wait(self, n: int, timeout: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout
        while self.count() < n and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert self.count() >= n, f"the handler was called {self.count()} times, want {n}"


def test_retry_handler_gets_exact_bytes_and_headers(world: Any) -> None:
    """A worker served by the client gets the retry with the task's exact bytes and the headers of
    DESIGN section 5; its success completes the task."""
    # Bytes a careless copy would break: a bin with NUL and 0xff, a nested map, nil, a float.
    task = (b"\x83\xa1a\xc4\x04\x00\xff\x00\x01\xa1b\x81\xa1c\xc0\xa1d\xcb"
            b"\x40\x09\x21\xfb\x54\x44\x2d\x18")

    async def body() -> None:
        nc = await nats.connect(world.url)
        wc = await nats.connect(world.url)
        seen = Seen()

        async def handler(r: Retry) -> None:
            seen.add(r)

        worker = await serve_retries(wc, "dlq.retry.orders", handler, queue="orders-workers")
        tid = unique("retry")
        await report_failure(nc, "orders", tid, task_msgpack=task, error="connection reset by peer",
                             error_type="ConnectionError", max_retries=4, failed_at=1764800000123)
        await seen.wait(1)
        t = await wait_status(nc, tid, "completed")
        r = seen.retries[0]
        assert r.data == task, f"the handler got {r.data.hex()}, not the task's exact bytes"
        assert r.task == {"a": b"\x00\xff\x00\x01", "b": {"c": None}, "d": 3.141592653589793}
        assert r.task_id == tid and r.attempt == 1 and r.max_retries == 4, r
        assert r.error_category == "network" and r.original_subject == "dlq.failed.orders", r
        assert r.first_failed_at and r.first_failed_at.startswith("2025-12-03T22:13:20.123"), r
        assert r.episode and r.msg_id == f"{tid}:{r.episode}:1", r
        assert r.subject == "dlq.retry.orders" and r.headers["Dlq-Task-Id"] == tid
        assert t["retry_count"] == 0, t
        await worker.drain()
        await nc.close()
        await wc.close()

    run(body)


def test_handler_errors_classified_and_exhausted(world: Any) -> None:
    """A (plain, threaded) handler that raises: its error is classified (TimeoutError -> network), the
    task is exhausted after max_retries attempts, the handler called exactly that often. A handler
    returning False, or raising RetryFailed, fails the attempt too."""

    async def body() -> None:
        nc = await nats.connect(world.url)
        wc = await nats.connect(world.url)
        seen = Seen()
        mode = {"m": "raise"}

        def handler(r: Retry) -> Any:
            assert threading.current_thread() is not threading.main_thread()
            seen.add(r)
            if mode["m"] == "raise":
                raise TimeoutError("db timed out after 5000 ms")
            if mode["m"] == "false":
                return False
            raise RetryFailed("upstream said 403", "HTTP 403")

        worker = await serve_retries(wc, "dlq.retry.>", handler, queue="workers")
        tid = unique("exh")
        await report_failure(nc, "billing", tid, b"payload", error="rate limited, try again", max_retries=2)
        t = await wait_status(nc, tid, "exhausted")
        assert t["retry_count"] == 2, t
        assert (t["error"], t["error_type"], t["error_category"]) == \
            ("db timed out after 5000 ms", "TimeoutError", "network"), t
        await asyncio.sleep(1.0)  # no third attempt comes
        assert seen.count() == 2, f"want the handler called 2 times, got {seen.count()}"
        assert [r.attempt for r in seen.retries] == [1, 2]

        mode["m"] = "false"
        tid = unique("false")
        await report_failure(nc, "billing", tid, b"p", error="ECONNRESET", max_retries=1)
        t = await wait_status(nc, tid, "exhausted")
        assert (t["error"], t["error_type"]) == ("worker handler returned False", "dlq.HandlerReturnedFalse"), t

        mode["m"] = "retryfailed"
        tid = unique("rf")
        await report_failure(nc, "billing", tid, b"p", error="ECONNRESET", max_retries=3)
        t = await wait_status(nc, tid, "pending")
        deadline = time.monotonic() + WAIT_S
        while t.get("error_type") != "HTTP 403" and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            t = await get(nc, tid)
        # 403 is a permission error: no more automatic retries (parked), whatever the budget.
        assert (t["error"], t["error_type"], t["error_category"]) == ("upstream said 403", "HTTP 403", "permission"), t
        assert t["status"] == "pending" and t["next_retry_at"] is None, t
        await worker.drain()
        await nc.close()
        await wc.close()

    run(body)


class InventoryLockedError(Exception):
    pass


def test_wrappers_report_the_exception_class(world: Any) -> None:
    """guard(), protect() and execute_with_dlq() report the exception with its class name as
    error_type and raise it again; the strategies decide which exceptions are reported."""

    async def body() -> None:
        nc = await nats.connect(world.url)

        tid = unique("guard")
        with pytest.raises(InventoryLockedError):
            async with guard(nc, "shop", tid, {"sku": "A-1"}, max_retries=5) as g:
                raise InventoryLockedError("sku A-1 is locked by order 7")
        assert g.reported and g.ack is not None and g.ack.status == "pending"
        t = await get(nc, tid)
        assert (t["error"], t["error_type"]) == ("sku A-1 is locked by order 7", "InventoryLockedError"), t
        assert t["task"] == {"sku": "A-1"} and t["max_retries"] == 5, t

        @protect(nc, "shop", task_id=lambda order: order["id"], task=lambda order: order)
        async def process(order: dict[str, Any]) -> str:
            if order["qty"] < 0:
                raise ValueError(f"qty {order['qty']} is negative")
            return "done"

        pid = unique("protect")
        assert await process({"id": pid + "-ok", "qty": 1}) == "done"
        with pytest.raises(ValueError):
            await process({"id": pid, "qty": -2})
        t = await get(nc, pid)
        assert (t["error"], t["error_type"], t["error_category"]) == ("qty -2 is negative", "ValueError", "validation"), t
        assert t["task"] == {"id": pid, "qty": -2}
        assert await absent(nc, pid + "-ok"), "a call that succeeded was reported"

        eid = unique("exec")
        with pytest.raises(KeyError):
            await dlq_client.execute_with_dlq(nc, "shop", lambda d: d["missing"], ({"a": 1},), task_id=eid)
        t = await get(nc, eid)
        assert t["error_type"] == "KeyError" and t["task"] == {"args": [{"a": 1}], "kwargs": {}}, t

        # selective: a ValueError is not retryable (not reported), a TimeoutError is.
        s1, s2 = unique("sel-value"), unique("sel-timeout")
        with pytest.raises(ValueError):
            async with guard(nc, "shop", s1, 1, strategy="selective"):
                raise ValueError("bad input")
        with pytest.raises(TimeoutError):
            async with guard(nc, "shop", s2, 1, strategy="selective"):
                raise TimeoutError("upstream slow")
        assert await absent(nc, s1)
        assert (await get(nc, s2))["error_type"] == "TimeoutError"

        # manual: only when asked; disabled: never.
        m1, m2, m3, d1 = unique("man-no"), unique("man-enq"), unique("man-mark"), unique("dis")
        with pytest.raises(RuntimeError):
            async with guard(nc, "shop", m1, 1, strategy="manual"):
                raise RuntimeError("not asked")
        with pytest.raises(RuntimeError):
            async with guard(nc, "shop", m2, 1, strategy="manual") as g:
                g.enqueue()
                raise RuntimeError("asked with enqueue()")
        with pytest.raises(RuntimeError):
            async with guard(nc, "shop", m3, 1, strategy="manual"):
                raise dlq_client.mark_for_dlq(RuntimeError("asked with mark_for_dlq()"))
        with pytest.raises(RuntimeError):
            async with guard(nc, "shop", d1, 1, strategy="disabled"):
                raise RuntimeError("disabled")
        assert await absent(nc, m1) and await absent(nc, d1)
        assert (await get(nc, m2))["error"] == "asked with enqueue()"
        assert (await get(nc, m3))["error"] == "asked with mark_for_dlq()"

        # A report that cannot be made never hides the work's exception (no sidecar on this prefix).
        with pytest.raises(InventoryLockedError) as ei:
            async with guard(nc, "shop", unique("lost"), 1, prefix="nobody", ack_timeout=1.0) as g:
                raise InventoryLockedError("locked")
        assert isinstance(g.report_error, dlq_client.NoRespondersError), g.report_error
        assert any("not reported" in n for n in getattr(ei.value, "__notes__", []))
        await nc.close()

    run(body)


def test_jetstream_durable(js_world: Any) -> None:
    """With durable ingest (ingest.mode: jetstream) the client publishes through DLQ_FAILED with
    Nats-Msg-Id: the PubAck names the stream, a resend with the same msg_id is a duplicate, the task
    is stored; without waiting, flush() sees every PubAck; durable="always" without a stream is
    refused rather than sent on core NATS."""

    async def body() -> None:
        nc = await nats.connect(js_world.url)
        tid = unique("js")
        ack = await report_failure(nc, "orders", tid, b"durable", error="schema invalid", msg_id="js-report-1")
        assert ack is not None and ack.durable and ack.stream == "DLQ_FAILED" and ack.seq >= 1, ack
        assert not ack.duplicate
        again = await report_failure(nc, "orders", tid, b"durable", error="schema invalid", msg_id="js-report-1")
        assert again is not None and again.duplicate and again.seq == ack.seq, again
        t = await wait_status(nc, tid, "pending")
        assert t["error"] == "schema invalid" and t["task"] == {"$bin": base64.b64encode(b"durable").decode()}, t

        # Through a JetStreamContext, without waiting; the guard too goes through the stream.
        js = nc.jetstream()
        tids = [unique("js-async") for _ in range(5)]
        for i, x in enumerate(tids):
            assert await report_failure(js, "orders", x, {"n": i}, error="timeout", wait=False) is None
        await dlq_client.reporter_for(js).flush()
        for i, x in enumerate(tids):
            assert (await wait_status(nc, x, "pending"))["task"] == {"n": i}
        gid = unique("js-guard")
        with pytest.raises(ConnectionError):
            async with guard(nc, "orders", gid, 1) as g:
                raise ConnectionResetError("peer reset")
        assert g.ack is not None and g.ack.durable and g.ack.stream == "DLQ_FAILED", g.ack
        t = await wait_status(nc, gid, "pending")
        assert t["error_type"] == "ConnectionResetError" and t["error_category"] == "network", t

        with pytest.raises(dlq_client.NoRespondersError):
            await report_failure(nc, "orders", unique("strict"), b"x", prefix="other", durable="always",
                                 ack_timeout=2.0)
        await nc.close()

    run(body)


# The passwords docs/nats-auth.conf reads from nats-server's environment.
AUTH_PASSWORDS = {
    "AUTH_SIDECAR_PASSWORD": "sc-pw-p1",
    "AUTH_SERVICE_PASSWORD": "svc-pw-p2",
    "AUTH_WORKER_PASSWORD": "wk-pw-p3",
    "AUTH_OPERATOR_PASSWORD": "op-pw-p4",
    "AUTH_VIEWER_PASSWORD": "vw-pw-p5",
}


@pytest.mark.parametrize("jetstream", [False, True], ids=["core", "jetstream"])
def test_service_permissions(jetstream: bool, request: pytest.FixtureRequest) -> None:
    """The user "service" of docs/nats-auth.conf may publish only dlq.failed.> and read its own
    inbox: with the default durable="auto" a report is answered at once, by the sidecar in core
    mode and by DLQ_FAILED's PubAck in JetStream mode (a resend with the same msg_id a duplicate),
    the task is stored, and the server refuses the service nothing (a JetStream API lookup would
    be refused, and would stall the report for its whole timeout)."""
    w = World(Path(tempfile.mkdtemp(prefix="dlq-py-perm-")))
    w.admin_user = ("operator", AUTH_PASSWORDS["AUTH_OPERATOR_PASSWORD"], "_INBOX_operator")
    passed = False
    try:
        w.start_nats(jetstream, ROOT / "docs" / "nats-auth.conf", AUTH_PASSWORDS)
        flags = ["nats.user=" + ("dlq-sidecar-js" if jetstream else "dlq-sidecar"),
                 "nats.password=" + AUTH_PASSWORDS["AUTH_SIDECAR_PASSWORD"],
                 "nats.inbox_prefix=_INBOX_dlq-sidecar"]
        if jetstream:
            flags.append("ingest.mode=jetstream")
        w.start_sidecar(*flags)

        async def body() -> None:
            errors: list[Exception] = []

            async def on_error(e: Exception) -> None:
                errors.append(e)

            op = await w.connect_admin()
            svc = await nats.connect(w.url, user="service", password=AUTH_PASSWORDS["AUTH_SERVICE_PASSWORD"],
                                     inbox_prefix="_INBOX_service", error_cb=on_error)
            tid = unique("perm")
            t0 = time.monotonic()
            ack = await report_failure(svc, "orders", tid, 1, error="ECONNRESET", msg_id=tid + "-msg")
            took = time.monotonic() - t0
            assert took < 2.0, f"the report took {took:.2f} s (the ack timeout is 5 s)"
            assert ack is not None and ack.durable == jetstream, ack
            if jetstream:
                assert ack.stream == "DLQ_FAILED" and ack.seq and ack.seq >= 1 and not ack.duplicate, ack
                t0 = time.monotonic()
                again = await report_failure(svc, "orders", tid, 1, error="ECONNRESET", msg_id=tid + "-msg")
                took = time.monotonic() - t0
                assert took < 2.0 and again is not None and again.duplicate and again.seq == ack.seq, (again, took)
            else:
                assert ack.status == "pending" and ack.task_id == tid, ack
            t = await wait_status(op, tid, "pending")
            assert t["error"] == "ECONNRESET", t

            # Without waiting: a plain publish with the header, then a flush.
            tid2 = unique("perm-nowait")
            t0 = time.monotonic()
            assert await report_failure(svc, "orders", tid2, 2, error="ECONNRESET", wait=False) is None
            await dlq_client.reporter_for(svc).flush()
            assert time.monotonic() - t0 < 2.0
            await wait_status(op, tid2, "pending")

            await svc.flush()
            await asyncio.sleep(0.2)
            assert not [e for e in errors if "permissions violation" in str(e).lower()], errors
            assert errors == [], errors
            await svc.close()
            await op.close()

        run(body)
        passed = True
    finally:
        status = w.stop()
        if not passed or status != 0:
            for name, log in w.logs.items():
                print(f"---- {name} log ({log}) ----\n{_tail(log, 60)}")
        else:
            shutil.rmtree(w.dir, ignore_errors=True)
    assert status == 0, f"the sidecar exited with status {status} after SIGTERM"


def test_examples(world: Any) -> None:
    """clients/python/examples as a user runs them: service.py reports two failures, worker.py
    completes a retry of one."""
    import subprocess
    import sys
    from pathlib import Path

    ex = Path(__file__).resolve().parents[1] / "examples"
    env = {**os.environ, "PYTHONPATH": str(ex.parent / "src")}
    out = subprocess.run([sys.executable, str(ex / "service.py"), world.url], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "reported and raised: card declined for order order-42" in out.stdout, out.stdout

    async def body() -> None:
        nc = await nats.connect(world.url)
        t = await get(nc, "order-42")
        assert (t["error_type"], t["error_category"], t["subject"]) == ("TimeoutError", "network", "dlq.failed.orders"), t
        t = await get(nc, "charge-order-42")
        assert (t["error_type"], t["subject"]) == ("PaymentDeclinedError", "dlq.failed.payments"), t
        worker = subprocess.Popen([sys.executable, "-u", str(ex / "worker.py"), world.url], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            await asyncio.sleep(0.5)  # its subscription; a retry before it is deferred, not lost
            await admin(nc, "retry", {"task_id": "order-42"})
            await wait_status(nc, "order-42", "completed")
        finally:
            worker.terminate()
            output = worker.communicate(timeout=30)[0]
        assert "of order-42: {'id': 'order-42', 'amount_cents': 1999}" in output, output
        await nc.close()

    run(body)


def test_vectors_through_the_sidecar(world: Any) -> None:
    """Every valid vector the client encodes (canonical or not) is accepted by the real sidecar and
    stored as the manifest's expected decoding says: the client's bytes, not only the files, agree
    with the sidecar."""
    import datetime as dt
    from pathlib import Path

    vectors = Path(os.environ.get("DLQ_VECTORS_DIR") or Path(__file__).resolve().parents[3] / "tests" / "vectors")
    manifest = json.loads((vectors / "manifest.json").read_text(encoding="utf-8"))

    def unbin(v: Any) -> Any:
        if isinstance(v, dict):
            if len(v) == 1 and isinstance(v.get("$bin"), str):
                return base64.b64decode(v["$bin"])
            return {k: unbin(x) for k, x in v.items()}
        return [unbin(x) for x in v] if isinstance(v, list) else v

    async def body() -> None:
        nc = await nats.connect(world.url)
        n = 0
        for e in manifest["envelopes"]:
            if not e["valid"] or "client_refuses" in e or e["expect"]["unknown"]:
                continue
            env = unbin(json.loads((vectors / e["json"]).read_text(encoding="utf-8")))
            exp = e["expect"]
            tid = exp["task_id"] if exp["task_id"] != "t-1" else unique("vec-" + e["name"])
            env["task_id"] = tid
            r = await nc.request("dlq.failed.vectors", dlq_client.encode_envelope(env), timeout=5)
            ack = json.loads(r.data)
            assert ack.get("ok") is True, f"{e['name']}: {ack}"
            t = await get(nc, tid)
            assert t["task_size"] == len(exp["task_hex"]) // 2, f"{e['name']}: {t}"
            assert t["error"] == exp["error"] and t["error_type"] == exp["error_type"], f"{e['name']}: {t}"
            assert t["max_retries"] == (3 if exp["max_retries"] is None else exp["max_retries"]), f"{e['name']}: {t}"
            if exp["retry_policy"]:
                assert t["retry_policy"] == exp["retry_policy"].lower(), f"{e['name']}: {t}"
            if exp["failed_at_ms"] is not None:
                when = dt.datetime.fromtimestamp(exp["failed_at_ms"] / 1000, dt.timezone.utc)
                assert t["first_failed_at"] == when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{exp['failed_at_ms'] % 1000:03d}Z", t
            n += 1
        assert n >= 14, f"only {n} vectors sent"
        await nc.close()

    run(body)


def test_hostile_handlers_always_answered(world: Any) -> None:
    """serve_retries replies a section 6 failure whatever a handler raises: RetryFailed with texts that
    are not str, an exception whose __str__ (and __repr__) raises; never no reply (a timed-out attempt)."""

    class BadStr(Exception):
        def __str__(self) -> str:
            raise ValueError("no str")

    class BadBoth(BadStr):
        def __repr__(self) -> str:
            raise ValueError("no repr")

    cases: list[tuple[BaseException, bytes]] = [
        (RetryFailed(123), b'{"ok":false,"error":"123"}'),  # type: ignore[arg-type]
        (RetryFailed("x", 5), b'{"ok":false,"error":"x","error_type":"5"}'),  # type: ignore[arg-type]
        (BadStr("a"), b'{"ok":false,"error":"BadStr(\'a\')","error_type":"BadStr"}'),
        (BadBoth(), b'{"ok":false,"error":"<unprintable BadBoth>","error_type":"BadBoth"}'),
    ]

    async def body() -> None:
        nc = await nats.connect(world.url)
        wc = await nats.connect(world.url)
        current: dict[str, BaseException] = {}

        async def handler(r: Retry) -> None:
            raise current["exc"]

        subject = "hostile." + unique("w")
        worker = await serve_retries(wc, subject, handler)
        await nc.flush(timeout=5)
        for exc, want in cases:
            current["exc"] = exc
            # A loaded CI machine once answered the first request "no responders" although the
            # worker's subscription was flushed: ask again a few times; a dead worker still fails.
            for attempt in range(5):
                try:
                    reply = await nc.request(subject, b"\xc0", timeout=5)
                    break
                except nats.errors.NoRespondersError:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.2)
            assert reply.data == want, (exc, reply.data)
        await worker.unsubscribe()
        await nc.close()
        await wc.close()

    run(body)
