"""Realistic CloudTrail log files, laid out as a trail writes them into S3, generated deterministically from a seed.

Used by `trailhouse demo`, by tests and by benchmarks. `generate_files` is pure: the same `GenerateSpec` (with an
explicit `start`) gives byte-identical files, and only `start=None` reads the clock. Writing is the caller's:
`write_files` with `folder_writer`, or with a `put` around its own S3 client.

What the files look like, as AWS delivers them:
- per account and region, files for every 5-minute window of event time, several per window when busy; the key's
  timestamp is the delivery time (a 5-minute boundary a few minutes after the file's last record) and its day
  folder is the delivery day's, so records of a day's last minutes sit in the next day's folder;
- each body is gzip of compact `{"Records":[...]}` with the records in time order (AWS only roughly keeps it);
- `recipientAccountId` is always the key's account and `awsRegion` the key's region; global services (IAM,
  sign-in, ...) appear only in us-east-1, or in the first region when the spec has no us-east-1;
- volume follows a business-hours curve, is lower at weekends, highest in the first account and first region,
  and has rare 3-8x bursts in single windows.

Who acts in each account is `generate_population`'s, what they log `generate_records`'s, and the accounts'
resources, API calls and strings are data in `generate_catalog`.
"""

from __future__ import annotations

import gzip
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from trailhouse.errors import ConfigError
from trailhouse.generate_catalog import ALNUM
from trailhouse.generate_population import Population
from trailhouse.generate_records import Stream

FIRST_ACCOUNT = "123456789012"
_WINDOW = 300  # seconds of event time per delivery
_MAX_RECORDS_PER_FILE = 2000
_GZIP_LEVEL = 3  # as fast as level 1 on CloudTrail JSON and a little smaller; the default, 9, is 3x slower


@dataclass(frozen=True)
class GenerateSpec:
    """What to generate: `events` records in all, over `accounts` accounts and `regions`, in [start, start+span).
    `start` is UTC (a naive datetime is taken as UTC); None means the span ending at the current minute. `prefix`
    goes before "AWSLogs/" in keys, without a trailing slash."""

    events: int
    accounts: int = 3
    seed: int = 0
    regions: tuple[str, ...] = ("us-east-1",)
    start: datetime | None = None
    span: timedelta = timedelta(hours=24)
    prefix: str = ""

    def __post_init__(self) -> None:
        if self.events < 0:
            raise ConfigError(f"events must be 0 or more, got {self.events}")
        if self.accounts < 1:
            raise ConfigError(f"accounts must be 1 or more, got {self.accounts}")
        if not self.regions or len(set(self.regions)) != len(self.regions):
            raise ConfigError(f"regions must be distinct and at least one, got {self.regions!r}")
        if self.span <= timedelta(0):
            raise ConfigError(f"span must be positive, got {self.span}")
        if self.prefix.startswith("/") or self.prefix.endswith("/"):
            raise ConfigError(f"prefix must not start or end with '/', got {self.prefix!r}")


@dataclass(frozen=True)
class LogFile:
    key: str  # full S3 key, "<prefix>/AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/<name>.json.gz"
    body: bytes  # gzip of compact {"Records":[...]}
    records: int


def account_ids(count: int, seed: int) -> list[str]:
    """`count` distinct 12-digit account ids. The first is always 123456789012, so docs and the demo can search for
    it; the others follow from `seed`, and a longer list starts with the shorter one."""
    rng = random.Random(f"trailhouse:{seed}:accounts")
    ids = [FIRST_ACCOUNT][:count]
    while len(ids) < count:
        candidate = str(rng.randrange(100_000_000_000, 1_000_000_000_000))
        if candidate not in ids:
            ids.append(candidate)
    return ids


def generate_files(spec: GenerateSpec) -> Iterator[LogFile]:
    """The trail's files, window by window; exactly `spec.events` records in all. Lazy: one file in memory at a
    time, however many events are asked for. Raises ConfigError when the span holds no whole second."""
    first, end = _bounds(spec)
    if spec.events and end <= first:
        raise ConfigError(f"span {spec.span} holds no whole second to put events in")
    accounts = account_ids(spec.accounts, spec.seed)
    home = "us-east-1" if "us-east-1" in spec.regions else spec.regions[0]
    streams = []
    for index, account in enumerate(accounts):
        population = Population(account, index, spec.seed, accounts)
        streams += [Stream(population, region, region == home) for region in spec.regions]
    plan = random.Random(f"trailhouse:{spec.seed}:plan")
    windows = [(max(s, first), min(s + _WINDOW, end)) for s in range(first - first % _WINDOW, end, _WINDOW)]
    weights = [_weight(plan, lo, hi, i, len(spec.regions)) for lo, hi in windows for i in range(len(streams))]
    for cell, n in enumerate(_apportion(spec.events, weights)):
        if n:
            (lo, hi), stream = windows[cell // len(streams)], streams[cell % len(streams)]
            files = math.ceil(n / _MAX_RECORDS_PER_FILE) + (n > 1 and plan.random() < 0.3)
            for part in range(files):
                size = n // files + (part < n % files)
                yield _log_file(stream, random.Random(plan.getrandbits(64)), lo, hi, size, spec.prefix)


def write_files(
    files: Iterable[LogFile],
    put: Callable[[str, bytes], None],
    progress: Callable[[int, int], None] | None = None,
) -> tuple[int, int]:
    """Hands each file to `put(key, body)` in order and returns (files, records) written; `progress(files,
    records)` runs after each file. An exception from `put` propagates: the files before it are written."""
    done_files = done_records = 0
    for f in files:
        put(f.key, f.body)
        done_files += 1
        done_records += f.records
        if progress is not None:
            progress(done_files, done_records)
    return done_files, done_records


def folder_writer(root: Path) -> Callable[[str, bytes], None]:
    """A `put` laying keys out under `root` as `aws s3 sync` does. Each file appears whole (written under a
    temporary name, then renamed), so a concurrent reader never sees part of one."""

    def put(key: str, body: bytes) -> None:
        parts = key.split("/")
        if key.startswith("/") or ".." in parts:
            raise ValueError(f"key {key!r} would land outside {root}")
        path = root.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(body)
        os.replace(tmp, path)

    return put


def _log_file(stream: Stream, rng: random.Random, lo: int, hi: int, n: int, prefix: str) -> LogFile:
    """`n` records at random seconds of [lo, hi), named by the delivery time a little after the last one."""
    times = sorted(lo + int(rng.random() * (hi - lo)) for _ in range(n))
    records = stream.records(rng, times)
    delivered = time.gmtime((times[-1] + rng.randint(20, 300) + _WINDOW - 1) // _WINDOW * _WINDOW)
    unique = "".join(rng.choices(ALNUM, k=16))
    name = f"{stream.account}_CloudTrail_{stream.region}_{time.strftime('%Y%m%dT%H%MZ', delivered)}_{unique}.json.gz"
    key = f"AWSLogs/{stream.account}/CloudTrail/{stream.region}/{time.strftime('%Y/%m/%d', delivered)}/{name}"
    body = gzip.compress(orjson.dumps({"Records": records}), compresslevel=_GZIP_LEVEL, mtime=0)
    return LogFile(f"{prefix}/{key}" if prefix else key, body, n)


def _bounds(spec: GenerateSpec) -> tuple[int, int]:
    """[first, end) in whole epoch seconds, such that every whole second in it lies in [start, start + span)."""
    if spec.start is None:
        start = datetime.now(UTC).replace(second=0, microsecond=0) - spec.span
    else:
        start = spec.start if spec.start.tzinfo else spec.start.replace(tzinfo=UTC)
    return math.ceil(start.timestamp()), math.ceil((start + spec.span).timestamp())


def _weight(rng: random.Random, lo: int, hi: int, stream: int, regions: int) -> int:
    """Relative volume of one stream in window [lo, hi). Streams are ordered account by account, region by
    region, so `stream // regions` is the account's index and `stream % regions` the region's."""
    if hi <= lo:
        return 0
    hour = lo % 86400 / 3600
    w = 0.25 + math.exp(-(((hour - 13.5) / 4.5) ** 2))
    w *= 0.5 if time.gmtime(lo).tm_wday >= 5 else 1.0
    w *= 1 / (1 + 0.7 * (stream // regions)) * (1.0 if stream % regions == 0 else 0.15)
    w *= rng.uniform(0.6, 1.4) * (rng.uniform(3, 8) if rng.random() < 0.01 else 1.0)
    return int(w * (hi - lo) * 1000)


def _apportion(total: int, weights: list[int]) -> list[int]:
    """Splits `total` in proportion to `weights`, exactly: cumulative rounding keeps the sum."""
    whole = sum(weights) or 1
    counts, cumulative, given = [], 0, 0
    for w in weights:
        cumulative += w
        upto = total * cumulative // whole
        counts.append(upto - given)
        given = upto
    return counts
