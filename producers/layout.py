"""The CloudTrail object key layout, as trails write it into S3.

    <prefix>/AWSLogs/<account>/CloudTrail/<region>/<YYYY>/<MM>/<DD>/<account>_CloudTrail_<region>_<YYYYMMDDTHHmmZ>_<unique>.json.gz
    <prefix>/AWSLogs/<o-orgid>/<account>/CloudTrail/<region>/...          (organization trails)
    .../CloudTrail-Digest/<region>/...  hourly digest files (integrity chain), not events
    .../CloudTrail-Insight/<region>/... Insights events written by AWS

Keys of one region sort by delivery day, then by file name, which starts with the delivery time: listing with
`StartAfter` therefore walks files in delivery order, which is what checkpointing relies on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum


class FileKind(StrEnum):
    LOGS = "CloudTrail"
    DIGEST = "CloudTrail-Digest"
    INSIGHT = "CloudTrail-Insight"


@dataclass(frozen=True)
class LogKey:
    """What a CloudTrail object key says about its file."""

    key: str
    prefix: str
    org_id: str | None
    account: str
    kind: FileKind
    region: str
    delivered: datetime | None  # the timestamp in the file name; None for names that do not carry one


_KEY = re.compile(
    r"^(?:(?P<prefix>.*?)/)?AWSLogs/(?:(?P<org>o-[a-z0-9]+)/)?(?P<account>\d{12})/"
    r"(?P<kind>CloudTrail|CloudTrail-Digest|CloudTrail-Insight)/(?P<region>[a-z0-9\-]+)/"
    r"(?P<day>\d{4}/\d{2}/\d{2})/(?P<name>[^/]+\.json(?:\.gz)?)$"
)
_NAME_TIME = re.compile(r"_(\d{8}T\d{4,6}Z)")


def parse_key(key: str) -> LogKey | None:
    """Parse a key of the CloudTrail layout; None for any other object (README files, folder markers, ...)."""
    m = _KEY.match(key)
    if m is None:
        return None
    return LogKey(
        key=key,
        prefix=m["prefix"] or "",
        org_id=m["org"],
        account=m["account"],
        kind=FileKind(m["kind"]),
        region=m["region"],
        delivered=_name_time(m["name"]),
    )


def _name_time(name: str) -> datetime | None:
    m = _NAME_TIME.search(name)
    if m is None:
        return None
    stamp = m[1]
    layout = "%Y%m%dT%H%M%SZ" if len(stamp) == 16 else "%Y%m%dT%H%MZ"
    return datetime.strptime(stamp, layout).replace(tzinfo=UTC)


def region_prefix(
    account: str, region: str, *, prefix: str = "", org_id: str | None = None, kind: FileKind = FileKind.LOGS
) -> str:
    """The key prefix under which a trail writes one account's files of one region, ending in '/'."""
    head = f"{prefix}/" if prefix else ""
    org = f"{org_id}/" if org_id else ""
    return f"{head}AWSLogs/{org}{account}/{kind.value}/{region}/"


def account_prefix(account: str, *, prefix: str = "", org_id: str | None = None) -> str:
    """The key prefix of everything a trail writes for one account (all kinds, all regions), ending in '/'."""
    head = f"{prefix}/" if prefix else ""
    org = f"{org_id}/" if org_id else ""
    return f"{head}AWSLogs/{org}{account}/"


def file_name(key: str) -> str:
    """The last part of a key: unique within its region's folder, since it carries account, region and time."""
    return key.rsplit("/", 1)[-1]


def delivered_at(key: str) -> datetime | None:
    """The delivery time in a key's file name; None when the name carries none."""
    return _name_time(file_name(key))


def key_at(lane_prefix: str, moment: datetime) -> str:
    """The key of the first file a lane (`region_prefix(...)`) can hold delivered at `moment` or after: a string
    that sorts before every such key and after every key of an earlier day, to start a listing from.

    File names begin with `<account>_<kind>_<region>_<time>` (digest files have the trail's name between region
    and time), so within a day folder the names of one region sort by time; the day folder is enough to skip
    every earlier day, and within the day the name prefix skips earlier minutes of log and Insights files.
    """
    parts = lane_prefix.rstrip("/").split("/")
    account, kind, region = parts[-3], parts[-2], parts[-1]
    moment = moment.astimezone(UTC)
    day = moment.strftime("%Y/%m/%d")
    if kind == FileKind.DIGEST.value:
        return f"{lane_prefix}{day}/"
    return f"{lane_prefix}{day}/{account}_{kind}_{region}_{moment.strftime('%Y%m%dT%H%M')}"
