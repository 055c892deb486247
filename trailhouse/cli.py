"""The `trailhouse` command line: parse, build `Settings` once, call trailhouse.commands, turn errors into words.

Exit codes: 0 success, 1 the work failed (a source could not be read, a stage died), 2 the command or its
configuration is wrong, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from trailhouse import __version__, commands
from trailhouse.config import CLICKHOUSE, KAFKA, POLL, S3, SINK, WORKER, Settings, add_setting_flags, settings_from_args
from trailhouse.errors import TerminalError, TrailhouseError
from trailhouse.logs import setup_logging

ALL_SCOPES = (KAFKA, CLICKHOUSE, S3, POLL, WORKER, SINK)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trailhouse",
        description="Collect AWS CloudTrail logs from S3 into Kafka, enrich them, search them in ClickHouse.",
    )
    parser.add_argument("--version", action="version", version=f"trailhouse {__version__}")
    commands_ = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, scopes: Sequence[str]) -> argparse.ArgumentParser:
        sub = commands_.add_parser(name, help=help, description=help)
        add_setting_flags(sub, scopes)
        return sub

    demo = command("demo", "run the whole pipeline on the embedded stack with generated logs, then search", ALL_SCOPES)
    demo.add_argument("--events", type=_positive, default=20_000, help="records to generate (default 20000)")
    demo.add_argument("--accounts", type=_positive, default=3, help="accounts to generate (default 3)")
    demo.add_argument("--regions", default="us-east-1,eu-west-1", help="comma-separated (default us-east-1,eu-west-1)")
    demo.add_argument("--seed", type=int, default=7, help="random seed of the generated logs (default 7)")

    run = command("run", "run every stage (poll, worker, sink) until interrupted", ALL_SCOPES)
    run.add_argument(
        "--once", action="store_true", help="process every log file present now, exit 0 once all of it is searchable"
    )
    run.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        help="with --once: seconds to wait for the worker and sink to catch up (default 1800)",
    )

    poll = command(
        "poll",
        "run the poller stage: S3 -> cloudtrail.raw; several pollers share the sources (consumer group poll_group)",
        (KAFKA, S3, POLL),
    )
    poll.add_argument(
        "--once",
        action="store_true",
        help="poll every registered source once and exit (not shared: do not run it beside continuous pollers); "
        "with --sqs-queue: read notifications until the queue is empty",
    )
    poll.add_argument(
        "--since",
        default=None,
        metavar="WHEN",
        help="backfill: sources without a checkpoint, or with an older one, start listing at files delivered at "
        "WHEN (2026-01-01, an ISO time, or 30d); sources already past it go on from their checkpoint",
    )
    poll.add_argument(
        "--until",
        default=None,
        metavar="WHEN",
        help="backfill: stop at files delivered at WHEN; polls every source once, with progress, then exits",
    )
    poll.add_argument(
        "--sqs-queue",
        default=None,
        metavar="URL",
        help="SQS mode: collect the files S3 event notifications announce (direct, via SNS or EventBridge) instead "
        "of listing; a message is deleted once its file is in Kafka",
    )
    command("worker", "run the Faust worker stage: cloudtrail.raw -> cloudtrail.events", (KAFKA, WORKER))
    command("sink", "run the ClickHouse sink stage: cloudtrail.events -> ClickHouse", (KAFKA, CLICKHOUSE, SINK))
    migrate = command("migrate", "create or upgrade the ClickHouse tables, and apply --retention", (CLICKHOUSE,))
    migrate.add_argument(
        "--print", action="store_true", help="print the DDL for these settings (e.g. --cluster) instead of running it"
    )

    sources = commands_.add_parser("sources", help="register and inspect log sources")
    verbs = sources.add_subparsers(dest="verb", required=True, metavar="VERB")
    add = verbs.add_parser("add", help="register a log source (account + region + bucket)")
    add_setting_flags(add, (KAFKA,))
    add.add_argument("--account", required=True, help="AWS account number, 12 digits (dashes/spaces ignored)")
    add.add_argument("--region", required=True, help="AWS region of the logs, e.g. us-east-1")
    add.add_argument("--bucket", required=True, help="s3://bucket-name, or file:///path of a local copy")
    add.add_argument("--prefix", default="", help="the trail's S3 key prefix (the part before AWSLogs/)")
    add.add_argument("--org-id", default=None, help="organization id (o-...) of an organization trail")
    add.add_argument(
        "--profile", default=None, help="AWS profile to read the bucket with (default credentials if unset)"
    )
    add.add_argument(
        "--role-arn", default=None, help="IAM role to assume to read the bucket (cross-account collection)"
    )
    add.add_argument("--external-id", default=None, help="external id the role's trust policy requires")
    apply = verbs.add_parser(
        "apply", help="make the registry equal to a TOML file of [[sources]] (adds, updates, removes; prints the diff)"
    )
    add_setting_flags(apply, (KAFKA,))
    apply.add_argument("file", type=Path, help="TOML file with one [[sources]] table per source")
    apply.add_argument("--dry-run", action="store_true", help="print the difference, change nothing")
    verify = verbs.add_parser(
        "verify", help="check that sources can be read, with their own credentials; say what is wrong and the fix"
    )
    add_setting_flags(verify, (KAFKA, S3))
    verify.add_argument("source_id", nargs="?", default=None, help="one source (default: every source)")
    verify.add_argument(
        "--hours", type=float, default=24.0, help="newest file older than this many hours is a problem (default 24)"
    )
    remove = verbs.add_parser("remove", help="unregister a log source (its events stay searchable)")
    add_setting_flags(remove, (KAFKA,))
    remove.add_argument("source_id", help="id as shown by `trailhouse sources list`")
    add_setting_flags(verbs.add_parser("list", help="list registered sources"), (KAFKA,))
    add_setting_flags(
        verbs.add_parser("status", help="status, counts and last event of each source"), (KAFKA, CLICKHOUSE)
    )

    insights = command("insights", "unusual API call and error rates (Insights), newest first", (CLICKHOUSE,))
    insights.add_argument("--since", default="1d", help="insights at or after: 30m, 24h, 7d or an ISO date/time")
    insights.add_argument("--source", default=None, help="only this source id")
    insights.add_argument("--limit", type=_positive, default=100, help="most records shown (default 100)")
    insights.add_argument("--format", choices=("table", "json"), default="table", help="json: one record per line")
    search = command("search", "search events: '*123456789012*', eventName:Delete*, ...", (CLICKHOUSE,))
    search.add_argument("pattern", nargs="+", help="terms, AND-ed; * any characters, ? one character")
    search.add_argument("--count", action="store_true", help="print only the number of matching events")
    search.add_argument("--limit", type=_positive, default=100, help="most events shown, newest first (default 100)")
    search.add_argument("--since", default=None, help="events at or after: 30m, 24h, 7d or an ISO date/time")
    search.add_argument("--until", default=None, help="events before: 30m, 24h, 7d or an ISO date/time")
    search.add_argument("-i", "--ignore-case", action="store_true", help="case-insensitive matching")
    search.add_argument("--account", default=None, help="only events of these accounts (comma-separated, 12 digits)")
    search.add_argument("--region", default=None, help="only events of these regions (comma-separated)")
    search.add_argument("--source", default=None, help="only events of these source ids (comma-separated)")
    search.add_argument(
        "--format",
        choices=("table", "json", "csv"),
        default="table",
        help="table; json: one event per line; csv: a header, then one row per event (default table)",
    )

    _add_bench(commands_)

    generate = command("generate", "write realistic CloudTrail log files to a folder or bucket", (S3,))
    generate.add_argument("out", help="folder (path or file:///path) or s3://bucket[/prefix]")
    generate.add_argument("--events", type=_positive, default=10_000, help="records (default 10000)")
    generate.add_argument("--accounts", type=_positive, default=3, help="accounts (default 3)")
    generate.add_argument("--regions", default="us-east-1", help="comma-separated regions (default us-east-1)")
    generate.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    generate.add_argument("--start", default=None, help="first event time, ISO UTC (default: --span before now)")
    generate.add_argument(
        "--span-hours", type=_positive_float, default=24.0, help="hours the events spread over (default 24)"
    )
    return parser


def _add_bench(commands_: argparse._SubParsersAction) -> None:
    """`trailhouse bench <verb>`: measurements that report, never assert."""
    bench = commands_.add_parser("bench", help="measure trailhouse on this machine (reports, never asserts)")
    verbs = bench.add_subparsers(dest="verb", required=True, metavar="VERB")
    search_bench = verbs.add_parser(
        "search",
        help="wildcard search designs on N generated events: insert cost, size, p50/p99 of account-number searches",
        description="Generate N CloudTrail events (staged once, reused by later runs), load them into each design, "
        "time searches for a busy account, a rare one and a miss. Prints figures; never fails on a time.",
    )
    add_setting_flags(search_bench, (CLICKHOUSE, SINK))
    search_bench.add_argument("--events", type=_positive, default=2_000_000, help="events (default 2000000)")
    search_bench.add_argument(
        "--designs",
        default="scan,ngrambf,text_ngrams,numbers,lookup",
        help="comma-separated designs to compare: scan (the full-scan baseline), ngrambf, text_ngrams, numbers, "
        "lookup (trailhouse's); default all",
    )
    search_bench.add_argument("--repeat", type=_positive, default=20, help="timed runs per query (default 20)")
    search_bench.add_argument("--seed", type=int, default=0, help="random seed of the generated events (default 0)")
    search_bench.add_argument("--json", default=None, metavar="FILE", help="also write the figures as JSON")
    search_bench.add_argument("--keep", action="store_true", help="keep the design databases (bench_*) afterwards")

    insights_bench = verbs.add_parser(
        "insights",
        help="the Insights detector on simulated traffic with known anomalies: precision, recall, delay",
        description="Simulate several sources over days of traffic (daily and weekly rhythm, noise, rare APIs), "
        "inject call-rate bursts, error storms and slow ramps, run the worker's detector code over it and score "
        "the insights. Deterministic for a seed; prints figures, never fails on them.",
    )
    add_setting_flags(insights_bench, (WORKER,))
    insights_bench.add_argument("--sources", type=_positive, default=4, help="simulated sources (default 4)")
    insights_bench.add_argument("--days", type=_positive, default=9, help="simulated days, 8 or more (default 9)")
    insights_bench.add_argument("--seed", type=int, default=0, help="random seed of the traffic (default 0)")
    insights_bench.add_argument("--json", default=None, metavar="FILE", help="also write the figures as JSON")

    pipeline = verbs.add_parser(
        "pipeline",
        help="throughput of each stage and end to end vs chDB's own ingest, freshness, peak RSS (embedded stack)",
    )
    add_setting_flags(pipeline, ALL_SCOPES)
    pipeline.add_argument("--events", type=_positive, default=100_000, help="events to generate (default 100000)")
    pipeline.add_argument("--accounts", type=_positive, default=3, help="accounts to generate (default 3)")
    pipeline.add_argument("--seed", type=int, default=7, help="random seed of the generated logs (default 7)")
    pipeline.add_argument(
        "--span-hours",
        type=_positive_float,
        default=24.0,
        help="hours of event time the N events spread over (default 24)",
    )
    pipeline.add_argument(
        "--scale",
        action="store_true",
        help="run again with 4x --events over 4x --span-hours (files as large, 4x as many): does peak RSS grow?",
    )
    pipeline.add_argument(
        "--freshness-seconds", type=float, default=30.0, help="seconds of steady new files, 0 for none (default 30)"
    )
    pipeline.add_argument(
        "--freshness-rate", type=float, default=1000.0, help="events/s of the steady new files (default 1000)"
    )
    pipeline.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the report as JSON")


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    if args.verb == "search":
        report = commands.bench_search(
            settings,
            events=args.events,
            designs=_list(args.designs),
            repeat=args.repeat,
            seed=args.seed,
            json_path=args.json,
            keep=args.keep,
        )
        print(report)
        return 0
    if args.verb == "insights":
        print(
            commands.bench_insights(settings, sources=args.sources, days=args.days, seed=args.seed, json_path=args.json)
        )
        return 0
    from trailhouse.bench_pipeline import BenchSpec, bench_pipeline, write_report

    spec = BenchSpec(
        events=args.events,
        accounts=args.accounts,
        seed=args.seed,
        span=timedelta(hours=args.span_hours),
        scale=args.scale,
        freshness_seconds=args.freshness_seconds,
        freshness_rate=args.freshness_rate,
    )
    report = bench_pipeline(settings, spec, progress=lambda line: print(f"==> {line}", file=sys.stderr, flush=True))
    print(write_report(report, args.json))
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _regions(text: str) -> tuple[str, ...]:
    from trailhouse.sources import validate_region

    return tuple(validate_region(r) for r in text.split(",") if r.strip())


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    name = args.command
    if name == "demo":
        from trailhouse.demo import demo

        return demo(
            settings, events=args.events, accounts=args.accounts, regions=_regions(args.regions), seed=args.seed
        )
    if name == "run":
        return commands.run(settings, once=args.once, timeout_s=args.timeout)
    if name == "poll":
        from sinks.search import parse_time

        now = datetime.now(UTC)
        return commands.poll(
            settings,
            once=args.once,
            since=parse_time(args.since, now) if args.since else None,
            until=parse_time(args.until, now) if args.until else None,
            sqs_queue=args.sqs_queue,
        )
    if name == "worker":
        return commands.worker(settings)
    if name == "sink":
        return commands.sink(settings)
    if name == "migrate":
        print(commands.migrate(settings, print_only=args.print))
        return 0
    if name == "sources":
        return _sources(args, settings)
    if name == "search":
        return _search(args, settings)
    if name == "insights":
        from sinks.search import parse_time

        since = parse_time(args.since, datetime.now(UTC))
        return commands.insights(settings, since=since, source_id=args.source, limit=args.limit, output=args.format)
    if name == "generate":
        return _generate(args, settings)
    if name == "bench":
        return _bench(args, settings)
    raise AssertionError(name)


def _sources(args: argparse.Namespace, settings: Settings) -> int:
    from trailhouse.sources import new_source

    if args.verb == "add":
        source = new_source(
            args.account,
            args.region,
            args.bucket,
            args.prefix,
            args.org_id,
            profile=args.profile,
            role_arn=args.role_arn,
            external_id=args.external_id,
        )
        print(commands.sources_add(settings, source))
    elif args.verb == "apply":
        print(commands.sources_apply(settings, args.file, dry_run=args.dry_run))
    elif args.verb == "verify":
        ok, report = commands.sources_verify(settings, args.source_id, recent_hours=args.hours)
        print(report)
        return 0 if ok else 1
    elif args.verb == "remove":
        print(commands.sources_remove(settings, args.source_id))
    elif args.verb == "list":
        print(commands.sources_list(settings))
    elif args.verb == "status":
        print(commands.sources_status(settings))
    return 0


def _search(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.search import SearchQuery, parse_query, parse_time
    from trailhouse.sources import normalize_account

    now = datetime.now(UTC)
    query = SearchQuery(
        terms=parse_query(" ".join(args.pattern)),
        since=parse_time(args.since, now) if args.since else None,
        until=parse_time(args.until, now) if args.until else None,
        case_insensitive=args.ignore_case,
        accounts=tuple(normalize_account(a) for a in _list(args.account)),
        regions=_regions(args.region or ""),
        sources=_list(args.source),
    )
    return commands.search(settings, query=query, limit=args.limit, count_only=args.count, output=args.format)


def _list(text: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (text or "").split(",") if item.strip())


def _generate(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.search import parse_time
    from trailhouse.generate import GenerateSpec

    spec = GenerateSpec(
        events=args.events,
        accounts=args.accounts,
        seed=args.seed,
        regions=_regions(args.regions),
        start=parse_time(args.start, datetime.now(UTC)) if args.start else None,
        span=timedelta(hours=args.span_hours),
    )
    print(commands.generate(settings, destination=args.out, spec=spec))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
        setup_logging(settings.log_level)
        return _dispatch(args, settings)
    except TrailhouseError as exc:
        logging.getLogger("trailhouse").debug("details", exc_info=True)
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, TerminalError) and not _is_runtime(exc) else 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _is_runtime(exc: TrailhouseError) -> bool:
    """Terminal errors met while working (a source unreadable, a stage died) exit 1; usage/config ones exit 2."""
    from trailhouse.errors import ConfigError, InvalidSource, SearchSyntaxError, UnknownSource

    return not isinstance(exc, ConfigError | InvalidSource | SearchSyntaxError | UnknownSource)


if __name__ == "__main__":
    sys.exit(main())
