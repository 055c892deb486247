"""Errors injected at a boto3 client, for what the S3 emulator cannot produce (throttling, KMS denial, a bucket
policy it does not enforce): a `before-call` hook answers an operation with an error response instead of sending
the request, so botocore raises the same `ClientError` (same code, same operation) AWS would cause."""

from __future__ import annotations

import threading
from typing import Any

from botocore.awsrequest import AWSResponse


class Faults:
    def __init__(self, client: Any) -> None:
        self._rules: dict[str, tuple[int, str, str, int | None]] = {}  # operation -> (status, code, message, times)
        self._lock = threading.Lock()
        self.calls: dict[str, int] = {}
        client.meta.events.register("before-call.s3", self._before_call)

    def fail(self, operation: str, code: str, *, status: int = 403, message: str = "", times: int | None = None):
        """Answer `operation` (GetObject, ListObjectsV2, ...) with an error, `times` times (None: until cleared)."""
        with self._lock:
            self._rules[operation] = (status, code, message or code, times)
        return self

    def clear(self, operation: str | None = None) -> None:
        with self._lock:
            if operation is None:
                self._rules.clear()
            else:
                self._rules.pop(operation, None)

    def _before_call(self, model: Any, **_: Any) -> Any:
        with self._lock:
            self.calls[model.name] = self.calls.get(model.name, 0) + 1
            rule = self._rules.get(model.name)
            if rule is None:
                return None
            status, code, message, times = rule
            if times is not None:
                if times <= 1:
                    del self._rules[model.name]
                else:
                    self._rules[model.name] = (status, code, message, times - 1)
        response = AWSResponse("https://injected.invalid/", status, {}, None)
        return response, {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}},
        }
