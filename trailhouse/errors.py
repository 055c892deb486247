"""The one exception hierarchy of trailhouse.

Every error a user can see derives from `TrailhouseError` and says what to do. Its type says whether a retry can
help: `TransientError` (the same call may succeed later: broker restarting, ClickHouse overloaded) or
`TerminalError` (nothing changes until someone fixes the input, the permissions or the configuration). Library
errors (botocore, librdkafka, ClickHouse) are translated once, at the stage boundary, from their structured codes,
always with `raise ... from exc` so the cause stays visible with `--verbose`.
"""

from __future__ import annotations


class TrailhouseError(Exception):
    """Root of every error trailhouse raises on purpose."""


class TransientError(TrailhouseError):
    """A retry may succeed; `retry_after` (seconds) is a hint when the cause says how long to wait."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TerminalError(TrailhouseError):
    """Retrying the same thing will fail the same way: the input, configuration or permissions must change."""


class ConfigError(TerminalError):
    """A setting is missing, malformed or contradicts another one."""


class InvalidSource(TerminalError):
    """A log source registration is malformed (account, region, bucket or prefix)."""


class UnknownSource(TerminalError):
    """A command named a source id that is not in the registry."""


class SourceUnreadable(TerminalError):
    """The collector cannot list or read a source's bucket (missing bucket, access denied, wrong region).

    `reason` is the stable, machine-readable cause when known: no_such_bucket, access_denied, kms_denied,
    wrong_region, assume_role_denied, no_credentials, no_such_folder.
    """

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class SourceUnavailable(TransientError):
    """A source's storage failed in a way that may pass (throttling, network, a file vanishing mid-read)."""


class BadLogFile(TerminalError):
    """A log file or record cannot be read as CloudTrail JSON; it goes to the dead-letter topic.

    `kind` is the stable, machine-readable reason stored in the dead letter (corrupt_gzip, not_json, ...).
    """

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class SearchSyntaxError(TerminalError):
    """A search pattern cannot be translated; the message points at the offending part."""


class KafkaUnavailable(TransientError):
    """The Kafka cluster did not answer or refused a request that may succeed later."""


class ClickHouseUnavailable(TransientError):
    """ClickHouse did not answer or refused a request that may succeed later."""


class DataDirInUse(TerminalError):
    """Another trailhouse process owns an embedded component in the same data directory."""
