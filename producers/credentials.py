"""boto3 clients with a source's own credentials: the default chain, a named profile, or a role to assume.

Cross-account collection is the common case: the trail's bucket lives in a log-archive account and the collector
assumes a role there. Assumed credentials refresh themselves before they expire (botocore's refreshable
credentials), so a poller runs for months on one client. Clients are made lazily (folder-only setups need no AWS)
and cached per set of credentials; boto3 clients are thread-safe, the sessions that make them are not (a lock).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials
from botocore.exceptions import ProfileNotFound

from trailhouse.config import Settings
from trailhouse.errors import SourceUnreadable
from trailhouse.sources import Source

ROLE_SESSION_NAME = "trailhouse"

Credentials = tuple[str | None, str | None, str | None]  # profile, role ARN, external id


class AwsClients:
    """S3 (and SQS) clients per set of credentials, made on first use."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._sessions: dict[Credentials, boto3.Session] = {}
        self._clients: dict[tuple[Credentials, str, str | None], Any] = {}

    def s3(self, source: Source | None = None) -> Any:
        """The S3 client to read `source` with (None: the collector's default credentials)."""
        return self._client("s3", _credentials(source), self._settings.s3_endpoint_url, self._settings.s3_region)

    def sqs(self, queue_url: str) -> Any:
        """An SQS client for a queue URL: AWS's endpoint from the URL's host, or that host itself (an emulator)."""
        host = queue_url.split("/")[2] if "://" in queue_url else ""
        if host.endswith(".amazonaws.com"):
            region = host.split(".")[1] if host.startswith("sqs.") else None
            return self._client("sqs", (None, None, None), None, region or self._settings.s3_region)
        endpoint = "/".join(queue_url.split("/")[:3])
        return self._client("sqs", (None, None, None), endpoint, self._settings.s3_region or "us-east-1")

    def _client(self, service: str, credentials: Credentials, endpoint: str | None, region: str | None) -> Any:
        key = (credentials, service, endpoint)
        with self._lock:
            if key not in self._clients:
                concurrency = self._settings.poll_download_concurrency
                self._clients[key] = self._session(credentials).client(
                    service,
                    endpoint_url=endpoint,
                    region_name=region,
                    config=Config(
                        retries={"max_attempts": 5, "mode": "adaptive"}, max_pool_connections=max(16, concurrency + 4)
                    ),
                )
            return self._clients[key]

    def _session(self, credentials: Credentials) -> boto3.Session:
        if credentials not in self._sessions:
            profile, role_arn, external_id = credentials
            try:
                base = boto3.session.Session(profile_name=profile)
            except ProfileNotFound as exc:
                raise SourceUnreadable(
                    f"AWS profile {profile!r} is not configured on this collector; add it to ~/.aws/config "
                    "(or AWS_CONFIG_FILE), or register the source without --profile"
                ) from exc
            self._sessions[credentials] = base if role_arn is None else self._assumed(base, role_arn, external_id)
        return self._sessions[credentials]

    def _assumed(self, base: boto3.Session, role_arn: str, external_id: str | None) -> boto3.Session:
        """A session whose credentials come from sts:AssumeRole with `base`'s, refreshed before they expire."""
        endpoint = self._settings.sts_endpoint_url or self._settings.s3_endpoint_url
        region = self._settings.s3_region

        def make_sts(service: str, **kwargs: Any) -> Any:
            return base.client(service, endpoint_url=endpoint, region_name=region, **kwargs)

        source_credentials = base.get_credentials()
        if source_credentials is None:
            raise SourceUnreadable(
                f"no AWS credentials to assume {role_arn} with: give the collector credentials (environment, "
                "profile, instance or pod role)"
            )
        extra: dict[str, Any] = {"RoleSessionName": ROLE_SESSION_NAME}
        if external_id:
            extra["ExternalId"] = external_id
        fetcher = AssumeRoleCredentialFetcher(
            client_creator=make_sts,
            source_credentials=source_credentials,
            role_arn=role_arn,
            extra_args=extra,
        )
        core = botocore.session.Session()
        core._credentials = DeferredRefreshableCredentials(  # botocore's documented way to plug a provider in
            method="assume-role", refresh_using=fetcher.fetch_credentials
        )
        return boto3.session.Session(botocore_session=core)


def _credentials(source: Source | None) -> Credentials:
    if source is None:
        return (None, None, None)
    return (source.profile, source.role_arn, source.external_id)


def s3_client_factory(settings: Settings) -> Callable[[], Any]:
    """A factory of S3 clients with the collector's default credentials (for `generate` and the demo)."""
    clients = AwsClients(settings)
    return lambda: clients.s3()
