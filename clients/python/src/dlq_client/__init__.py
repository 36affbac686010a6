"""dlq_client - report failed tasks to dlq-sidecar and serve its retries, on nats-py (DESIGN sections 4-6, 20).

Services: report_failure() (or a Reporter), the guard() context manager,
the protect() decorator and execute_with_dlq(). Workers: serve_retries().
The wire format: encode_envelope(), encode_outcome(), decode_outcome().
"""

from .envelope import (
    KEY_ORDER,
    LIMITS,
    MISSING,
    InvalidEnvelopeError,
    Packed,
    encode_envelope,
    parse_rfc3339,
    subject_ok,
)
from .guard import RETRYABLE_EXCEPTIONS, Guard, Strategy, execute_with_dlq, guard, mark_for_dlq, protect
from .outcome import Outcome, decode_outcome, encode_outcome
from .report import (
    Ack,
    DLQError,
    Durable,
    NoRespondersError,
    ProtocolError,
    ReportError,
    ReportRefusedError,
    Reporter,
    ReportTimeoutError,
    RetryPolicy,
    report_failure,
    reporter_for,
)
from .worker import Retry, RetryFailed, Worker, serve_retries

__version__ = "0.1.0"

__all__ = [
    "KEY_ORDER", "LIMITS", "MISSING", "RETRYABLE_EXCEPTIONS",
    "Ack", "DLQError", "Durable", "Guard", "InvalidEnvelopeError", "NoRespondersError", "Outcome",
    "Packed", "ProtocolError", "ReportError", "ReportRefusedError", "ReportTimeoutError", "Reporter",
    "Retry", "RetryFailed", "RetryPolicy", "Strategy", "Worker",
    "decode_outcome", "encode_envelope", "encode_outcome", "execute_with_dlq", "guard",
    "mark_for_dlq", "parse_rfc3339", "protect", "report_failure", "reporter_for", "serve_retries",
    "subject_ok",
]
