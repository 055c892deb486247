"""`trailhouse demo`: the whole pipeline on the embedded stack, from generated CloudTrail files to a search.

It lays out generated log files in a bucket on a local S3 endpoint exactly as a trail writes them, registers one
source per account and region, runs every stage until everything is searchable, then shows each source's status
and a wildcard search for the first account. Its state lives in `<data-dir>/demo`, wiped at every start.
"""

from __future__ import annotations

import os
import shutil
import time

from producers.credentials import s3_client_factory
from sinks.search import SearchQuery, parse_query
from trailhouse import commands
from trailhouse.config import Settings
from trailhouse.embedded_s3 import DEMO_CREDENTIALS, local_s3
from trailhouse.generate import GenerateSpec, account_ids, generate_files, write_files
from trailhouse.pipeline import run_once
from trailhouse.registry import Registry
from trailhouse.sources import new_source
from trailhouse.stack import kafka

BUCKET = "trailhouse-demo-trail"


def demo(settings: Settings, *, events: int, accounts: int, regions: tuple[str, ...], seed: int) -> int:
    def step(text: str) -> None:
        print(f"\n==> {text}", flush=True)

    settings = settings.with_(data_dir=settings.data_dir / "demo")
    if settings.data_dir.exists():
        shutil.rmtree(settings.data_dir)
    os.environ.update(DEMO_CREDENTIALS)  # the local endpoint accepts any key; never send real ones to it
    os.environ.pop("AWS_PROFILE", None)
    with local_s3() as endpoint:
        settings = settings.with_(s3_endpoint_url=endpoint, s3_region="us-east-1", poll_interval=1.0)
        step(f"generating {events:,} CloudTrail records for {accounts} account(s) into s3://{BUCKET} ({endpoint})")
        client = s3_client_factory(settings)()
        client.create_bucket(Bucket=BUCKET)
        spec = GenerateSpec(events=events, accounts=accounts, seed=seed, regions=regions)
        show = commands.progress_printer()
        files, records = write_files(
            generate_files(spec),
            commands.s3_writer(client, BUCKET),
            progress=lambda f, r: show(f"{f} files, {r:,} records uploaded"),
        )
        print(f"    {files} log files, {records:,} records, laid out as AWSLogs/<account>/CloudTrail/<region>/...")

        with kafka(settings) as (bootstrap, embedded):
            step("registering the log sources")
            registry = Registry(settings, bootstrap)
            for account in account_ids(accounts, seed):
                for region in regions:
                    source = new_source(account, region, f"s3://{BUCKET}")
                    registry.add(source)
                    print(f"    {source.source_id}")
            step("running poller -> Kafka -> Faust worker -> Kafka -> ClickHouse sink until everything is searchable")
            started = time.monotonic()
            report = run_once(settings, bootstrap, timeout_s=600, progress=commands.progress_printer())
            if embedded is not None:
                embedded.save(embedded.drained_topics)
            print("    " + commands.once_summary(report, time.monotonic() - started))

        step("trailhouse sources status")
        print(commands.sources_status(settings))
        pattern = f"*{account_ids(accounts, seed)[0]}*"
        query = SearchQuery(parse_query(pattern))
        step(f"trailhouse search '{pattern}' --count")
        commands.search(settings, query=query, limit=0, count_only=True, output="table")
        step(f"trailhouse search '{pattern}' --limit 10")
        started = time.monotonic()
        commands.search(settings, query=query, limit=10, count_only=False, output="table")
        print(f"    ({(time.monotonic() - started) * 1000:.0f} ms)")
    print(
        f"\nExplore further: trailhouse search --data-dir {settings.data_dir} '*Delete*' "
        f"(stages stopped; the embedded broker and the local S3 endpoint are shut down)"
    )
    return 0 if not report.failed else 1
