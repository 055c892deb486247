"""`trailhouse sources verify`: check a source the way the poller will read it, and say what is wrong and the fix.

The checks go from the outside in, and stop at the first that fails, since each needs the previous one:
the bucket exists and can be listed with the source's credentials; the account has a CloudTrail folder (else,
what the bucket holds instead: other accounts, an organization trail, another prefix); the region has files (else
the regions that do: "did you mean ..."); the newest file is recent; it can be read (S3 and, for SSE-KMS
objects, KMS) and is CloudTrail. Errors are told apart by their structured code (`SourceUnreadable.reason`)
and by the object's encryption from HeadObject, never by parsing messages.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from producers.layout import FileKind, account_prefix, delivered_at, region_prefix
from producers.split import iter_records
from producers.storage import ObjectStore, newest_key
from trailhouse.errors import BadLogFile, SourceUnavailable, SourceUnreadable
from trailhouse.sources import Source

SPOOL_BYTES = 8 * 1024 * 1024
MAX_FOLDERS_TRIED = 20


@dataclass(frozen=True)
class Finding:
    ok: bool
    what: str  # what was found, in words
    fix: str = ""  # what to do about it, when not ok


_Add = Callable[[Finding], None]


@dataclass
class Verification:
    source: Source
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.findings)

    def render(self) -> str:
        head = f"{self.source.source_id}  {self.source.bucket}  (credentials: {self.source.credentials})"
        lines = [head]
        for f in self.findings:
            lines.append(f"  {'ok  ' if f.ok else 'FAIL'} {f.what}")
            if f.fix:
                lines.append(f"       fix: {f.fix}")
        return "\n".join(lines)


def verify_source(source: Source, store: ObjectStore, *, now: datetime, recent: timedelta) -> Verification:
    result = Verification(source)
    add = result.findings.append
    try:
        _verify(source, store, now, recent, add)
    except SourceUnreadable as exc:
        add(_unreadable(source, exc))
    except SourceUnavailable as exc:
        add(Finding(False, f"S3 failed: {exc}", "try again; if it persists, check the network and s3_endpoint_url"))
    return result


def _verify(source: Source, store: ObjectStore, now: datetime, recent: timedelta, add: _Add) -> None:
    account = account_prefix(source.account, prefix=source.prefix, org_id=source.org_id)
    kinds = store.folders(account)
    add(Finding(True, f"{source.bucket} exists and can be listed"))
    if not any(k.endswith(f"/{FileKind.LOGS.value}/") for k in kinds):
        add(
            Finding(
                False,
                f"no CloudTrail folder for account {source.account}: nothing under {account}CloudTrail/",
                _where_the_logs_are(source, store),
            )
        )
        return
    regions = [f.rstrip("/").rsplit("/", 1)[-1] for f in store.folders(f"{account}{FileKind.LOGS.value}/")]
    if source.region not in regions:
        nearest = difflib.get_close_matches(source.region, regions, n=1, cutoff=0.0)
        add(
            Finding(
                False,
                f"no log files for {source.region}, while files exist for region(s) {', '.join(regions) or 'none'}",
                (f"did you mean {nearest[0]}? register the source with --region {nearest[0]}; " if nearest else "")
                + f"or make the trail log {source.region} (a multi-region trail covers every region)",
            )
        )
        return
    lane = region_prefix(source.account, source.region, prefix=source.prefix, org_id=source.org_id)
    newest = newest_key(store, lane)
    delivered = delivered_at(newest) if newest else None
    if newest is None or delivered is None:
        add(Finding(False, f"no log files under {lane}", "check that the trail is logging and delivers here"))
        return
    age = now - delivered
    if age > recent:
        add(
            Finding(
                False,
                f"log files present, but none in the last {recent.total_seconds() / 3600:.0f} hours: the newest was "
                f"delivered {delivered:%Y-%m-%d %H:%M}Z ({newest})",
                "check that the trail is logging (aws cloudtrail get-trail-status --name <trail>) and still "
                "delivers to this bucket and prefix",
            )
        )
    else:
        add(Finding(True, f"newest log file delivered {delivered:%Y-%m-%d %H:%M}Z, {_ago(age)} ago"))
    _read(source, store, newest, add)
    digests = store.folders(
        account_prefix(source.account, prefix=source.prefix, org_id=source.org_id) + f"{FileKind.DIGEST.value}/"
    )
    add(
        Finding(
            True,
            "digest files present (log file validation is on)"
            if digests
            else "no digest files (log file validation is off; trailhouse does not need it)",
        )
    )


def _read(source: Source, store: ObjectStore, key: str, add: _Add) -> None:
    """Read one file as the poller would; for an SSE-KMS object, a denial is a KMS denial."""
    try:
        head = store.head(key)
    except SourceUnreadable as exc:
        add(_unreadable(source, exc, key=key))
        return
    try:
        with store.fetch(key, SPOOL_BYTES) as body:
            count = sum(1 for _ in iter_records(body, max_file_bytes=1 << 40))
    except SourceUnreadable as exc:
        if exc.reason == "kms_denied" or (
            exc.reason == "access_denied" and (head.encryption or "").startswith("aws:kms")
        ):
            add(
                Finding(
                    False,
                    f"KMS decrypt denied: {key} is encrypted with KMS key {head.kms_key_id or '(the bucket key)'} "
                    "(SSE-KMS) and the credentials may not decrypt with it",
                    f"allow kms:Decrypt on that key to {_who(source)}, in the key policy (and an IAM policy when the "
                    "key is in the same account)",
                )
            )
        else:
            add(_unreadable(source, exc, key=key))
        return
    except BadLogFile as exc:
        add(Finding(False, f"{key} is not a CloudTrail log file: {exc}", "check what writes into this prefix"))
        return
    add(Finding(True, f"read {key}: {count} record(s)"))


def _unreadable(source: Source, exc: SourceUnreadable, key: str | None = None) -> Finding:
    bucket = source.bucket.removeprefix("s3://")
    who = _who(source)
    if exc.reason == "no_such_bucket":
        return Finding(
            False,
            f"bucket {source.bucket} does not exist",
            "check the bucket name: `aws cloudtrail describe-trails` shows each trail's S3BucketName",
        )
    if exc.reason == "no_such_folder":
        return Finding(False, f"folder {source.bucket} does not exist", "check the path of the source")
    if exc.reason == "access_denied" and key is None:
        return Finding(
            False,
            f"listing {source.bucket} is denied to {who}",
            f"allow s3:ListBucket on arn:aws:s3:::{bucket} to {who} (in its IAM policy, and in the bucket "
            "policy when the bucket is in another account)",
        )
    if exc.reason == "access_denied":
        return Finding(
            False,
            f"reading objects is denied to {who}: {key}",
            f"allow s3:GetObject on arn:aws:s3:::{bucket}/{source.prefix + '/' if source.prefix else ''}"
            f"AWSLogs/* to {who}",
        )
    if exc.reason == "kms_denied":
        return Finding(False, f"KMS decrypt denied reading {key or source.bucket}", f"allow kms:Decrypt to {who}")
    return Finding(False, str(exc))


def _where_the_logs_are(source: Source, store: ObjectStore) -> str:
    """What the bucket holds instead of the source's account folder, as a suggestion."""
    head = f"{source.prefix}/" if source.prefix else ""
    entries = [f.rstrip("/").rsplit("/", 1)[-1] for f in store.folders(f"{head}AWSLogs/")]
    if entries:
        orgs = [e for e in entries if e.startswith("o-")]
        for org in orgs:
            if store.folders(f"{head}AWSLogs/{org}/{source.account}/"):
                return f"this is an organization trail: register the source with --org-id {org}"
        if source.org_id and source.account in entries:
            return "the account's logs are not under an organization id here: register the source without --org-id"
        accounts = [e for e in entries if not e.startswith("o-")]
        listed = ", ".join(accounts[:10]) + (" ..." if len(accounts) > 10 else "")
        hint = f"accounts {listed}" if accounts else f"organization(s) {', '.join(orgs)}"
        return f"{head}AWSLogs/ holds {hint}: check the account number (the trail may log another account)"
    roots = store.folders("")
    if "AWSLogs/" in roots and source.prefix:
        return "the logs are at the top of the bucket: register the source without --prefix"
    candidates = [f for f in roots[:MAX_FOLDERS_TRIED] if store.folders(f"{f}AWSLogs/")]
    if candidates:
        return f"did you mean --prefix {candidates[0].rstrip('/')}? AWSLogs/ is under it"
    return "there is no AWSLogs/ folder where the source says: is this the trail's bucket and prefix?"


def _who(source: Source) -> str:
    if source.role_arn:
        return f"the role {source.role_arn}"
    if source.profile:
        return f"the credentials of profile {source.profile}"
    return "the collector's credentials"


def _ago(age: timedelta) -> str:
    minutes = int(age.total_seconds() // 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h"
