"""Log sources: what a user registers (account + region + bucket), validated, with a derived identifier.

A source id is derived, never typed (`cloudtrail-<account>-<region>`), so the same registration always lands on
the same Kafka key, checkpoint and ClickHouse rows. Validation happens here, once, so every entry point (CLI,
TOML file, registry topic) rejects the same mistakes with the same words.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from trailhouse.errors import InvalidSource

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_ORG_ID = re.compile(r"^o-[a-z0-9]{10,32}$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z\-]*:iam::\d{12}:role/[\w+=,.@\-/]{1,512}$")
_PROFILE = re.compile(r"^[\w+=,.@\-]{1,128}$")
_EXTERNAL_ID = re.compile(r"^[\w+=,.@:/\-]{2,1224}$")


@dataclass(frozen=True)
class Source:
    account: str
    region: str
    bucket: str  # s3://name or file:///absolute/path
    prefix: str = ""
    org_id: str | None = None
    created_at: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    profile: str | None = None  # AWS credentials profile to read the bucket with; None = the default chain
    role_arn: str | None = None  # role to assume (cross-account collection)
    external_id: str | None = None  # what the role's trust policy may require with it

    @property
    def source_id(self) -> str:
        return source_id(self.account, self.region)

    @property
    def credentials(self) -> str:
        """How the source is read, in words: 'default', 'profile p', 'role arn:...', or both."""
        parts = [f"profile {self.profile}"] if self.profile else []
        if self.role_arn:
            parts.append(f"role {self.role_arn}" + (" (external id)" if self.external_id else ""))
        return ", ".join(parts) or "default"

    def settings_equal(self, other: Source) -> bool:
        """Same registration, whenever it was made."""
        return self.to_record() | {"created_at": None} == other.to_record() | {"created_at": None}

    def to_record(self) -> dict[str, Any]:
        return {
            "source_id": self.source_id,
            "account": self.account,
            "region": self.region,
            "bucket": self.bucket,
            "prefix": self.prefix,
            "org_id": self.org_id,
            "created_at": self.created_at,
            "profile": self.profile,
            "role_arn": self.role_arn,
            "external_id": self.external_id,
        }

    @staticmethod
    def from_record(record: dict[str, Any]) -> Source:
        return Source(
            account=record["account"],
            region=record["region"],
            bucket=record["bucket"],
            prefix=record["prefix"],
            org_id=record["org_id"],
            created_at=record["created_at"],
            profile=record.get("profile"),
            role_arn=record.get("role_arn"),
            external_id=record.get("external_id"),
        )


def source_id(account: str, region: str) -> str:
    return f"cloudtrail-{account}-{region}"


def new_source(
    account: str,
    region: str,
    bucket: str,
    prefix: str = "",
    org_id: str | None = None,
    now: datetime | None = None,
    *,
    profile: str | None = None,
    role_arn: str | None = None,
    external_id: str | None = None,
) -> Source:
    """Validate and normalize a registration as typed by a user; raise `InvalidSource` saying what to fix."""
    return Source(
        account=normalize_account(account),
        region=validate_region(region),
        bucket=normalize_bucket(bucket),
        prefix=normalize_prefix(prefix),
        org_id=validate_org_id(org_id),
        created_at=now or datetime.now(UTC),
        profile=validate_profile(profile),
        role_arn=validate_role_arn(role_arn),
        external_id=validate_external_id(external_id, role_arn),
    )


def normalize_account(text: str) -> str:
    """'1234-5678-9012' and '1234 5678 9012' become '123456789012'; anything but 12 digits is rejected."""
    digits = re.sub(r"[\s\-]", "", text)
    if not re.fullmatch(r"\d{12}", digits):
        raise InvalidSource(
            f"account {text!r} is not an AWS account number: it must be exactly 12 digits "
            f"(dashes and spaces are ignored), got {len(digits)} character(s)"
            + ("" if digits.isdigit() else " including non-digits")
        )
    return digits


@cache
def aws_regions() -> frozenset[str]:
    """Every region of every AWS partition, from botocore's bundled endpoint data (no network)."""
    import botocore.session

    session = botocore.session.get_session()
    return frozenset(
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions("cloudtrail", partition_name=partition)
    )


def validate_region(text: str) -> str:
    region = text.strip().lower()
    if region in aws_regions():
        return region
    nearest = difflib.get_close_matches(region, sorted(aws_regions()), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(nearest)}?" if nearest else "; regions look like us-east-1 or eu-west-2"
    raise InvalidSource(f"region {text!r} is not an AWS region{hint}")


def normalize_bucket(text: str) -> str:
    """Accept `s3://name`, a bare bucket name, or `file:///absolute/path` (a folder laid out like the bucket)."""
    text = text.strip()
    if text.startswith("file://"):
        parsed = urlparse(text)
        if parsed.netloc not in ("", "localhost"):
            raise InvalidSource(f"bucket {text!r}: use file:///absolute/path (three slashes)")
        path = Path(parsed.path)
        if not path.is_absolute():
            raise InvalidSource(f"bucket {text!r}: the folder must be an absolute path")
        return f"file://{path}"
    name = text.removeprefix("s3://").rstrip("/")
    if "/" in name:
        raise InvalidSource(
            f"bucket {text!r}: give the bucket alone and the part after it with --prefix "
            f"(--bucket s3://{name.split('/', 1)[0]} --prefix {name.split('/', 1)[1]})"
        )
    if not _BUCKET_NAME.match(name) or ".." in name:
        raise InvalidSource(
            f"bucket {text!r} is not a valid S3 bucket name (3-63 lowercase letters, digits, dots, hyphens)"
        )
    return f"s3://{name}"


def normalize_prefix(text: str) -> str:
    """Key prefix before AWSLogs/, stored without leading or trailing slashes."""
    prefix = text.strip().strip("/")
    if prefix.endswith("AWSLogs") or "/AWSLogs/" in f"/{prefix}/":
        raise InvalidSource(
            f"prefix {text!r} includes AWSLogs: give only the part before it "
            f"(the trail's S3 key prefix), e.g. {prefix.split('AWSLogs')[0].strip('/')!r}"
        )
    return prefix


def validate_org_id(text: str | None) -> str | None:
    if not text:
        return None
    org = text.strip().lower()
    if not _ORG_ID.match(org):
        raise InvalidSource(f"organization id {text!r} must look like o-a1b2c3d4e5")
    return org


def validate_profile(text: str | None) -> str | None:
    if not text or not text.strip():
        return None
    profile = text.strip()
    if not _PROFILE.match(profile):
        raise InvalidSource(f"profile {text!r} is not an AWS profile name (letters, digits and +=,.@_-)")
    return profile


def validate_role_arn(text: str | None) -> str | None:
    if not text or not text.strip():
        return None
    arn = text.strip()
    if not _ROLE_ARN.match(arn):
        raise InvalidSource(f"role {text!r} is not an IAM role ARN: it looks like arn:aws:iam::123456789012:role/name")
    return arn


def validate_external_id(text: str | None, role_arn: str | None) -> str | None:
    if not text or not text.strip():
        return None
    if not role_arn:
        raise InvalidSource("an external id goes with a role to assume: give --role-arn too")
    external = text.strip()
    if not _EXTERNAL_ID.match(external):
        raise InvalidSource("external id must be 2-1224 letters, digits or +=,.@:/-_")
    return external
