"""Kafka security: one set of settings, mapped to librdkafka's options and to Faust/aiokafka's.

The poller, the sink and the command line use confluent-kafka (librdkafka: `security.protocol`,
`sasl.username`, `ssl.ca.location`, an `oauth_cb`); the worker uses Faust over aiokafka (`broker_credentials`
holding an `ssl.SSLContext`, SASL user/password or an OAuth token provider). Users configure one surface,
`Settings.kafka_*`; `kafka_security` validates it into a `KafkaSecurity`, and `librdkafka_options` /
`faust_options` translate that for each client, so the two can never drift apart.

Supported: PLAINTEXT; SSL (server verification with a CA file or the system's CAs, optional client certificate);
SASL_PLAINTEXT and SASL_SSL with PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; and AWS MSK IAM, which is SASL/OAUTHBEARER
over TLS with a token signed by the aws-msk-iam-sasl-signer package from boto3's default credential chain
(environment, profile, IRSA/pod identity, instance role).

Building the options does not connect to anything. The SSL context for aiokafka reads the certificate files, so
a missing or unreadable file is reported here, at start, as a `ConfigError` naming the setting.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trailhouse.errors import ConfigError

if TYPE_CHECKING:
    from trailhouse.config import Settings

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "AWS_MSK_IAM")
AWS_MSK_IAM = "AWS_MSK_IAM"

# MSK broker host names end in .kafka.<region>.amazonaws.com (.kafka-serverless. for serverless clusters).
_MSK_HOST = re.compile(r"\.kafka(?:-serverless)?\.([a-z]{2}(?:-gov)?-[a-z]+-\d)\.amazonaws\.com(?:\.cn)?$")


@dataclass(frozen=True)
class KafkaSecurity:
    """A validated Kafka security configuration; `mechanism` is the user's name (AWS_MSK_IAM, not OAUTHBEARER)."""

    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    key_password: str | None = None
    check_hostname: bool = True
    aws_region: str | None = None

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl_mechanism(self) -> str | None:
        """The mechanism's name on the wire."""
        return "OAUTHBEARER" if self.mechanism == AWS_MSK_IAM else self.mechanism


def msk_region(bootstrap: str | None) -> str | None:
    """The AWS region in an MSK bootstrap address (b-1.x.y.c2.kafka.eu-west-1.amazonaws.com:9098), if any."""
    for server in (bootstrap or "").split(","):
        host = server.strip().rsplit(":", 1)[0]
        match = _MSK_HOST.search(host)
        if match:
            return match.group(1)
    return None


def kafka_security(settings: Settings) -> KafkaSecurity:
    """Validate the `kafka_*` security settings; every error names the setting to change."""
    protocol = settings.kafka_security_protocol.strip().upper()
    mechanism = settings.kafka_sasl_mechanism.strip().upper() if settings.kafka_sasl_mechanism else None
    if protocol not in PROTOCOLS:
        raise ConfigError(f"kafka_security_protocol={protocol!r}: use one of {', '.join(PROTOCOLS)}")
    sasl = protocol.startswith("SASL_")
    if sasl and mechanism is None:
        raise ConfigError(f"kafka_security_protocol={protocol} needs kafka_sasl_mechanism: {', '.join(MECHANISMS)}")
    if mechanism is not None and mechanism not in MECHANISMS:
        raise ConfigError(f"kafka_sasl_mechanism={mechanism!r}: use one of {', '.join(MECHANISMS)}")
    if mechanism is not None and not sasl:
        raise ConfigError(
            f"kafka_sasl_mechanism={mechanism} is used only with SASL: set kafka_security_protocol=SASL_SSL "
            "(or SASL_PLAINTEXT on a network you trust)"
        )
    if protocol != "PLAINTEXT" and settings.kafka_bootstrap is None:
        raise ConfigError(
            f"kafka_security_protocol={protocol} needs --kafka-bootstrap: the embedded broker speaks PLAINTEXT only"
        )
    if mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512") and not (
        settings.kafka_sasl_username and settings.kafka_sasl_password
    ):
        raise ConfigError(f"SASL {mechanism} needs kafka_sasl_username and kafka_sasl_password")
    region = None
    if mechanism == AWS_MSK_IAM:
        if protocol != "SASL_SSL":
            raise ConfigError("AWS_MSK_IAM works over TLS only: set kafka_security_protocol=SASL_SSL (port 9098)")
        region = settings.kafka_aws_region or msk_region(settings.kafka_bootstrap)
        if region is None:
            raise ConfigError(
                "AWS_MSK_IAM needs the cluster's region: set kafka_aws_region (it could not be read from "
                f"the bootstrap host {settings.kafka_bootstrap})"
            )
    tls_files = {
        "kafka_ssl_ca_file": settings.kafka_ssl_ca_file,
        "kafka_ssl_cert_file": settings.kafka_ssl_cert_file,
        "kafka_ssl_key_file": settings.kafka_ssl_key_file,
    }
    for name, path in tls_files.items():
        if path is None:
            continue
        if protocol not in ("SSL", "SASL_SSL"):
            raise ConfigError(f"{name} is used only with TLS: set kafka_security_protocol=SSL or SASL_SSL")
        if not path.is_file():
            raise ConfigError(f"{name}={path}: no such file; mount it there or fix the path")
    if settings.kafka_ssl_key_file is not None and settings.kafka_ssl_cert_file is None:
        raise ConfigError("kafka_ssl_key_file is the key of a client certificate: set kafka_ssl_cert_file too")
    return KafkaSecurity(
        protocol=protocol,
        mechanism=mechanism,
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password,
        ca_file=settings.kafka_ssl_ca_file,
        cert_file=settings.kafka_ssl_cert_file,
        key_file=settings.kafka_ssl_key_file,
        key_password=settings.kafka_ssl_key_password,
        check_hostname=settings.kafka_ssl_check_hostname,
        aws_region=region,
    )


# --- librdkafka (confluent-kafka): poller, sink, command line ------------------------------------------------


def librdkafka_options(security: KafkaSecurity) -> dict[str, Any]:
    """librdkafka configuration properties for `security` (merged into every client's options)."""
    options: dict[str, Any] = {"security.protocol": security.protocol}
    if security.tls:
        # "probe" looks for the system's CA bundle, the same trust aiokafka's default SSL context has.
        options["ssl.ca.location"] = str(security.ca_file) if security.ca_file else "probe"
        options["ssl.endpoint.identification.algorithm"] = "https" if security.check_hostname else "none"
        if security.cert_file is not None:
            options["ssl.certificate.location"] = str(security.cert_file)
        if security.key_file is not None:
            options["ssl.key.location"] = str(security.key_file)
        if security.key_password:
            options["ssl.key.password"] = security.key_password
    if security.sasl_mechanism is not None:
        options["sasl.mechanism"] = security.sasl_mechanism
    if security.mechanism == AWS_MSK_IAM:
        assert security.aws_region is not None
        options["oauth_cb"] = msk_oauth_callback(security.aws_region)
    elif security.mechanism is not None:
        options["sasl.username"] = security.username
        options["sasl.password"] = security.password
    return options


def msk_token(region: str) -> tuple[str, float]:
    """An MSK IAM auth token and its expiry (seconds since the epoch), signed with the default AWS credentials."""
    from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

    token, expiry_ms = MSKAuthTokenProvider.generate_auth_token(region)
    return token, expiry_ms / 1000.0


def msk_oauth_callback(region: str) -> Callable[[str | None], tuple[str, float]]:
    """librdkafka's `oauth_cb`: called with the (unused) sasl.oauthbearer.config, returns (token, expiry s)."""

    def oauth_cb(_config: str | None) -> tuple[str, float]:
        return msk_token(region)

    return oauth_cb


# --- aiokafka (Faust): the worker ----------------------------------------------------------------------------


def ssl_context(security: KafkaSecurity) -> ssl.SSLContext | None:
    """The TLS context aiokafka uses, with the same trust and client certificate as librdkafka's options."""
    if not security.tls:
        return None
    try:
        context = ssl.create_default_context(cafile=str(security.ca_file) if security.ca_file else None)
        if security.cert_file is not None:
            context.load_cert_chain(
                str(security.cert_file),
                str(security.key_file) if security.key_file else None,
                security.key_password,
            )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load the Kafka TLS files (kafka_ssl_ca_file / kafka_ssl_cert_file / kafka_ssl_key_file): {exc}"
        ) from exc
    if not security.check_hostname:
        context.check_hostname = False
    return context


def faust_options(security: KafkaSecurity) -> dict[str, Any]:
    """Keyword arguments of `faust.App` for `security` (Faust hands them to aiokafka's clients)."""
    import faust

    context = ssl_context(security)
    if security.mechanism == AWS_MSK_IAM:
        assert security.aws_region is not None
        provider = msk_token_provider(security.aws_region)
        return {"broker_credentials": faust.OAuthCredentials(oauth_cb=provider, ssl_context=context)}
    if security.mechanism is not None:
        credentials = faust.SASLCredentials(
            username=security.username, password=security.password, mechanism=security.mechanism, ssl_context=context
        )
        return {"broker_credentials": credentials}
    if context is not None:
        return {"broker_credentials": faust.SSLCredentials(context)}
    return {}


def msk_token_provider(region: str) -> Any:
    """aiokafka's OAUTHBEARER token provider for MSK IAM; signing runs off the event loop (it may fetch credentials)."""
    from aiokafka.abc import AbstractTokenProvider

    class MskTokenProvider(AbstractTokenProvider):
        async def token(self) -> str:
            token, _expiry = await asyncio.get_running_loop().run_in_executor(None, msk_token, region)
            return token

    return MskTokenProvider()
