"""service.py - a service that reports its failed tasks to dlq-sidecar (python examples/service.py [nats-url])."""

import asyncio
import sys

import nats

import dlq_client


class PaymentDeclinedError(Exception):
    pass


async def charge(order: dict) -> None:
    raise PaymentDeclinedError(f"card declined for order {order['id']}")


async def main(url: str) -> None:
    nc = await nats.connect(url)
    order = {"id": "order-42", "amount_cents": 1999}

    # 1. Report a failure by hand: the sidecar's acknowledgement comes back.
    ack = await dlq_client.report_failure(nc, "orders", order["id"], order, error_type="TimeoutError",
                                          error="db timed out after 5 s")
    print("reported:", ack)

    # 2. Or wrap the work: the exception is reported (error_type "PaymentDeclinedError") and raised again.
    try:
        async with dlq_client.guard(nc, "payments", "charge-" + order["id"], order):
            await charge(order)
    except PaymentDeclinedError as e:
        print("reported and raised:", e)
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "nats://127.0.0.1:4222"))
