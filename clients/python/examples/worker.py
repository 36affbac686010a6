"""worker.py - a worker that serves the retries of the "orders" service (python examples/worker.py [nats-url]); Ctrl-C stops it."""

import asyncio
import sys

import nats

import dlq_client


async def retry_order(retry: dlq_client.Retry) -> None:
    order = retry.task  # the task as the service sent it (retry.data: its exact MessagePack bytes)
    print(f"attempt {retry.attempt}/{retry.max_retries} of {retry.task_id}: {order}")
    # Do the work again here. Returning is success; raising fails the attempt
    # ({"ok":false,"error":str(e),"error_type":<class name>}), which the sidecar classifies again.


async def main(url: str) -> None:
    nc = await nats.connect(url)
    worker = await dlq_client.serve_retries(nc, "dlq.retry.orders", retry_order, queue="orders-workers")
    try:
        await asyncio.Event().wait()
    finally:
        await worker.drain()
        await nc.close()


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "nats://127.0.0.1:4222"))
    except KeyboardInterrupt:
        pass
