"""Configuration: one frozen `Settings`, built once in the entry point from file, environment and flags.

Precedence, lowest to highest: the defaults below, a TOML file (`--config` / `TRAILHOUSE_CONFIG`, keys named as
the fields, either at top level or under a `[trailhouse]` table), environment variables (`TRAILHOUSE_<FIELD>`),
command-line flags (`--field-name`). Components never read the environment: they take plain keyword arguments
from this object, so tests can build any configuration without touching `os.environ`.

Each field's metadata is the single place that names it, documents it (with its unit) and says which commands
use it; the command line and `--help` are generated from it.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import socket
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from trailhouse.errors import ConfigError

ENV_PREFIX = "TRAILHOUSE_"

# Scopes group settings by the commands that use them, so `--help` of each command lists only what matters.
KAFKA, CLICKHOUSE, S3, POLL, WORKER, SINK = "kafka", "clickhouse", "s3", "poll", "worker", "sink"


def _setting(default: Any, help: str, *scopes: str, secret: bool = False) -> Any:
    """A field of `Settings`; a `secret` one (password, URL with credentials) is left out of the object's repr."""
    return field(default=default, repr=not secret, metadata={"help": help, "scopes": frozenset(scopes)})


@dataclass(frozen=True)
class Settings:
    data_dir: Path = _setting(
        Path(".trailhouse"),
        "directory for all local state: embedded ClickHouse data, registry and checkpoint snapshots",
    )
    log_level: str = _setting("INFO", "log level: DEBUG, INFO, WARNING or ERROR")

    kafka_bootstrap: str | None = _setting(
        None, "Kafka bootstrap servers (host:port,...); unset = the embedded Tansu broker", KAFKA
    )
    kafka_partitions: int = _setting(3, "partitions of topics trailhouse creates", KAFKA)
    kafka_replication: int = _setting(1, "replication factor of topics trailhouse creates", KAFKA)
    kafka_compression: str = _setting("zstd", "compression of produced batches: none, gzip, lz4, zstd", KAFKA)
    kafka_security_protocol: str = _setting(
        "PLAINTEXT", "how clients reach Kafka: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL", KAFKA
    )
    kafka_sasl_mechanism: str | None = _setting(
        None,
        "SASL mechanism with SASL_*: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, or AWS_MSK_IAM (OAUTHBEARER token signed "
        "with the AWS credentials of boto3's default chain)",
        KAFKA,
    )
    kafka_sasl_username: str | None = _setting(None, "SASL user name (PLAIN, SCRAM-*)", KAFKA)
    kafka_sasl_password: str | None = _setting(None, "SASL password (PLAIN, SCRAM-*)", KAFKA, secret=True)
    kafka_ssl_ca_file: Path | None = _setting(
        None, "PEM file of the CA(s) that signed the brokers' certificates; unset = the system's CAs", KAFKA
    )
    kafka_ssl_cert_file: Path | None = _setting(None, "PEM client certificate, for brokers that require one", KAFKA)
    kafka_ssl_key_file: Path | None = _setting(None, "PEM private key of the client certificate", KAFKA)
    kafka_ssl_key_password: str | None = _setting(
        None, "password of the client certificate's private key, if encrypted", KAFKA, secret=True
    )
    kafka_ssl_check_hostname: bool = _setting(
        True, "check that a broker's certificate names the host connected to; turn off only for testing", KAFKA
    )
    kafka_aws_region: str | None = _setting(
        None, "AWS region of the MSK cluster (AWS_MSK_IAM); unset = read from the bootstrap host name", KAFKA
    )
    embedded_broker_max_mb: int = _setting(
        1024,
        "resident MB of the embedded Kafka broker (Tansu keeps every message in memory) past which a continuous "
        "`trailhouse run` drains the pipeline and restarts the broker; 0 = never",
        KAFKA,
    )
    topic_raw: str = _setting("cloudtrail.raw", "topic of raw CloudTrail log files (RawBatch)", KAFKA)
    topic_events: str = _setting("cloudtrail.events", "topic of enriched events (Event)", KAFKA)
    topic_dlq: str = _setting("cloudtrail.dlq", "dead-letter topic (DeadLetter)", KAFKA)
    topic_sources: str = _setting("cloudtrail.sources", "compacted topic of per-source state (SourceState)", KAFKA)
    topic_alerts: str = _setting("cloudtrail.alerts", "topic of detection alerts (Alert)", KAFKA)
    topic_insights: str = _setting(
        "cloudtrail.insights", "topic of Insights events (Insight: the detector's, and AWS-made ones)", KAFKA
    )
    topic_registry: str = _setting("trailhouse.sources-config", "compacted topic of registered sources", KAFKA)
    topic_checkpoints: str = _setting("trailhouse.checkpoints", "compacted topic of poller checkpoints", KAFKA)

    clickhouse_url: str | None = _setting(
        None,
        "ClickHouse URL (http[s]://user:password@host:8123); unset = embedded chDB under the data directory",
        CLICKHOUSE,
        secret=True,
    )
    clickhouse_database: str = _setting("trailhouse", "ClickHouse database of trailhouse's tables", CLICKHOUSE)
    cluster: str | None = _setting(
        None,
        "ClickHouse cluster (a name in the servers' remote_servers): DDL runs ON CLUSTER, tables are replicated "
        "and sharded behind Distributed tables; unset = one server",
        CLICKHOUSE,
    )
    retention: str | None = _setting(
        None,
        "delete events and alerts this long after their event time: 400d, 52w or 7y (a year is 365 days); "
        "'forever' removes a retention set before; unset = leave the tables' retention as it is",
        CLICKHOUSE,
    )
    clickhouse_ca_file: Path | None = _setting(
        None,
        "PEM file of the CA that signed the ClickHouse server's certificate (https); unset = system CAs",
        CLICKHOUSE,
    )
    clickhouse_verify: bool = _setting(
        True, "verify the ClickHouse server's TLS certificate (https); turn off only for testing", CLICKHOUSE
    )

    s3_endpoint_url: str | None = _setting(None, "S3 endpoint URL for MinIO or an S3 emulator; unset = AWS S3", S3)
    s3_region: str | None = _setting(None, "AWS region of the S3 client; unset = boto3's default chain", S3)
    sts_endpoint_url: str | None = _setting(
        None, "STS endpoint URL for sources with a role to assume; unset = s3_endpoint_url if set, else AWS STS", S3
    )

    poll_interval: float = _setting(60.0, "seconds between two listings of a source", POLL)
    raw_chunk_bytes: int = _setting(
        900_000, "largest RawBatch message in bytes; keep below the broker's message.max.bytes", POLL
    )
    poll_download_concurrency: int = _setting(8, "log files downloaded at once per poller", POLL)
    max_file_bytes: int = _setting(
        512 * 1024 * 1024, "uncompressed size above which a log file goes to the dead-letter topic", POLL
    )
    poll_spool_bytes: int = _setting(
        8 * 1024 * 1024,
        "bytes of one file a poller keeps in memory while reading it (download, and chunks waiting to be sent); "
        "larger files spill to temporary files, so memory stays bounded whatever the file sizes",
        POLL,
    )
    poll_queue_bytes: int = _setting(
        8 * 1024 * 1024,
        "bytes of messages a poller holds until Kafka acknowledges them (the Kafka client's queue, whose own "
        "default is 1 GiB); a poller ahead of the broker waits there; at least raw_chunk_bytes + 65536",
        POLL,
    )
    poll_lookback: float = _setting(
        3600.0,
        "seconds of delivery time listed again before the newest file published, to catch files that land late "
        "with an older time in their name; 0 = none",
        POLL,
    )
    poll_group: str = _setting(
        "trailhouse-poll", "consumer group of the pollers (on the registry topic) that share the sources", POLL
    )
    sqs_visibility_timeout: float = _setting(
        300.0,
        "seconds an SQS notification stays hidden from other pollers while its file is read; extended while a "
        "big file is in flight",
        POLL,
    )
    sqs_wait: float = _setting(20.0, "seconds an SQS receive waits for notifications (long polling, 0-20)", POLL)

    worker_group: str = _setting("trailhouse-worker", "Faust app id = consumer group of the workers", WORKER)
    dedup_window: float = _setting(86_400.0, "seconds within which an eventID seen again is a duplicate", WORKER)
    dedup_store: str = _setting(
        "rocksdb",
        "where the worker keeps the de-dup window (one entry per event id of two windows): rocksdb (on disk under "
        "<data_dir>/faust, one directory per worker; its memory set by the three settings below) or memory (grows "
        "with the events of the window)",
        WORKER,
    )
    rocksdb_write_buffer_bytes: int = _setting(
        4 * 1024 * 1024, "bytes of one RocksDB write buffer; at most two per table partition a worker holds", WORKER
    )
    rocksdb_block_cache_bytes: int = _setting(
        2 * 1024 * 1024, "bytes of RocksDB block cache per table partition a worker holds", WORKER
    )
    rocksdb_bloom_bits: int = _setting(
        10,
        "bits per event id in the de-dup window's bloom filters: a new id's lookup reads a block from ~1% of the "
        "window's files at 10 (~24% at 3); filters and index take ~1.7 bytes of memory per id on disk at 10 (0.8 at "
        "3), outside the block cache",
        WORKER,
    )
    online_window: float = _setting(
        1_800.0, "seconds after the last ingested event during which a source is ONLINE (then IDLE)", WORKER
    )
    insights_min_volume: int = _setting(10, "calls in a minute below which nothing is an insight", WORKER)
    insights_ratio: float = _setting(3.0, "times the baseline rate a minute must reach to be unusual", WORKER)
    insights_z: float = _setting(6.0, "standard deviations above the baseline a minute must reach", WORKER)
    insights_p_value: float = _setting(1e-6, "Poisson tail probability below which a minute is unusual", WORKER)
    insights_min_history: float = _setting(
        43_200.0, "seconds of history an API needs before it can have an insight (AWS: up to 36 h)", WORKER
    )
    insights_lateness: float = _setting(
        600.0, "seconds of event time a minute stays open for late files before it is decided", WORKER
    )
    insights_end_after: int = _setting(2, "normal minutes in a row that end an insight", WORKER)
    worker_web_port: int | None = _setting(
        None,
        "port of the worker's web server (/sources/); 0 = any free port; unset = 6066 (a free one when embedded)",
        WORKER,
    )
    worker_web_host: str = _setting(
        socket.gethostname(), "host name other workers reach this one by (routes /sources/{id}/)", WORKER
    )
    worker_web_bind: str = _setting("0.0.0.0", "interface the worker's web server listens on", WORKER)
    worker_rebalance_timeout: float | None = _setting(
        None,
        "seconds a rebalance waits for workers to rejoin; unset = 4 on the embedded broker (Tansu holds every "
        "join for half of it), 60 otherwise",
        WORKER,
    )

    http_port: int | None = _setting(
        None,
        "port of the stage's /healthz, /readyz and /metrics; unset = 9401 poll, 9402 worker, 9403 sink "
        "(`run`: its poller, worker and sink take this port and the next two); 0 = no server",
        POLL,
        WORKER,
        SINK,
    )
    http_bind: str = _setting(
        "127.0.0.1", "address the /healthz and /metrics server listens on (0.0.0.0 in a container)", POLL, WORKER, SINK
    )
    stop_timeout: float = _setting(
        30.0,
        "seconds a stage has after SIGTERM to finish its work in flight; then it exits without it (status 1) and "
        "the next owner reads again what it did not commit",
        POLL,
        WORKER,
        SINK,
    )

    sink_group: str = _setting("trailhouse-sink", "consumer group of the ClickHouse sinks", SINK)
    sink_batch_events: int = _setting(50_000, "events per ClickHouse insert, at most", SINK)
    sink_batch_bytes: int = _setting(
        16 * 1024 * 1024,
        "bytes of messages the sink holds, all partitions together; reaching it inserts the largest batch "
        "(bounds the sink's memory: ClickHouse needs ~5x a batch's bytes to insert it)",
        SINK,
    )
    sink_batch_seconds: float = _setting(1.0, "seconds a partial batch waits before it is inserted", SINK)

    @property
    def embedded_kafka(self) -> bool:
        return self.kafka_bootstrap is None

    @property
    def embedded_clickhouse(self) -> bool:
        """ClickHouse runs inside this process (chDB): no clickhouse_url, or a chdb:// one."""
        return (self.clickhouse_url or "chdb://").startswith("chdb://")

    @property
    def worker_state_topics(self) -> list[str]:
        """Changelogs of the workers' tables that the embedded stack keeps on disk: per-source state and the
        insights detector's baselines (the de-dup window, one entry per event, is not kept)."""
        return [
            f"{self.worker_group}-{table}-changelog" for table in ("source-state", "insight-sources", "insight-apis")
        ]

    @property
    def worker_data_dir(self) -> Path:
        """The worker's Faust directory (RocksDB tables): one worker process per directory, as RocksDB locks it."""
        return self.data_dir / "faust"

    @property
    def rebalance_timeout(self) -> float:
        if self.worker_rebalance_timeout is not None:
            return self.worker_rebalance_timeout
        return 4.0 if self.embedded_kafka else 60.0

    @property
    def retention_days(self) -> int | None:
        """The configured retention in days; 0 means forever, None means not configured (leave it unchanged)."""
        return None if self.retention is None else parse_retention(self.retention)

    @property
    def clickhouse_dsn(self) -> str:
        """Where the ClickHouse client connects: the configured server, or chDB inside the data directory.

        TLS options travel in the DSN's query (`?ca_cert=...&verify=false`), which clickhouse-connect reads as
        keyword arguments of its HTTP client, so every place that connects gets them.
        """
        if not self.clickhouse_url:
            if importlib.util.find_spec("chdb") is None:
                raise ConfigError(
                    "no clickhouse_url is set and the embedded ClickHouse (chdb) is not installed: set "
                    "--clickhouse-url (or TRAILHOUSE_CLICKHOUSE_URL), or pip install 'trailhouse[embedded]'"
                )
            return f"chdb://{(self.data_dir / 'clickhouse').resolve()}"
        options = {}
        if self.clickhouse_ca_file is not None:
            options["ca_cert"] = str(self.clickhouse_ca_file)
        if not self.clickhouse_verify:
            options["verify"] = "false"
        if not options:
            return self.clickhouse_url
        url = urlsplit(self.clickhouse_url)
        query = "&".join(q for q in (url.query, urlencode(options)) if q)
        return urlunsplit(url._replace(query=query))

    def with_(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


_RETENTION_UNITS = {"d": 1, "w": 7, "y": 365}


def parse_retention(text: str) -> int:
    """'400d', '52w', '7y' or a number of days as days; 'forever' (or 0) as 0."""
    value = text.strip().lower()
    if value in ("forever", "none", "0", "0d"):
        return 0
    unit = value[-1] if value[-1:] in _RETENTION_UNITS else "d"
    number = value[:-1] if value[-1:] in _RETENTION_UNITS else value
    if not number.isdigit() or int(number) < 1:
        raise ConfigError(f"retention={text!r}: use a number of days, weeks or years (400d, 52w, 7y) or 'forever'")
    return int(number) * _RETENTION_UNITS[unit]


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _field_type(f: dataclasses.Field[Any]) -> type:
    """The concrete type of a field, `X | None` reduced to `X`."""
    hint = typing.get_type_hints(Settings)[f.name]
    if isinstance(hint, types.UnionType):
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return hint


def _convert(f: dataclasses.Field[Any], value: Any, origin: str) -> Any:
    kind = _field_type(f)
    if value is None or isinstance(value, kind):
        return value
    text = str(value).strip()
    if text == "" and f.default is None:
        return None
    try:
        if kind is bool:
            if text.lower() in {"1", "true", "yes", "on"}:
                return True
            if text.lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError(text)
        if kind is int:
            return int(text.replace("_", ""))
        return kind(text)
    except ValueError as exc:
        raise ConfigError(f"{origin}: {value!r} is not a valid {kind.__name__} for {f.name}") from exc


def _from_file(path: Path) -> dict[str, Any]:
    try:
        document = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist; create it or drop --config") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    table = document.get("trailhouse", document)
    known = {f.name for f in dataclasses.fields(Settings)}
    unknown = sorted(set(table) - known - {"sources"})
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return {k: v for k, v in table.items() if k in known}


def load_settings(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Settings:
    """Merge defaults, file, environment and flags into validated `Settings`.

    `flags` holds only what the user typed (None means "not given"); `environ` defaults to the process
    environment, which is read here and nowhere else.
    """
    environ = os.environ if environ is None else environ
    flags = dict(flags or {})
    if config_file is None and environ.get(ENV_PREFIX + "CONFIG"):
        config_file = Path(environ[ENV_PREFIX + "CONFIG"])
    values: dict[str, Any] = {}
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    if config_file is not None:
        for name, value in _from_file(config_file).items():
            values[name] = _convert(fields[name], value, f"config file {config_file}")
    for name, f in fields.items():
        if env_name(name) in environ:
            values[name] = _convert(f, environ[env_name(name)], f"environment variable {env_name(name)}")
        if flags.get(name) is not None:
            values[name] = _convert(f, flags[name], f"option {flag_name(name)}")
    settings = Settings(**values)
    _validate(settings)
    return settings


def _validate(s: Settings) -> None:
    if s.kafka_compression not in {"none", "gzip", "lz4", "zstd", "snappy"}:
        raise ConfigError(f"kafka_compression={s.kafka_compression!r}: use none, gzip, lz4 or zstd")
    if s.raw_chunk_bytes < 64 * 1024:
        raise ConfigError(f"raw_chunk_bytes={s.raw_chunk_bytes} is too small: use at least 65536")
    for name in (
        "kafka_partitions",
        "kafka_replication",
        "sink_batch_events",
        "sink_batch_bytes",
        "poll_download_concurrency",
    ):
        if getattr(s, name) < 1:
            raise ConfigError(f"{name} must be at least 1")
    for name in (
        "poll_interval",
        "sink_batch_seconds",
        "dedup_window",
        "online_window",
        "sqs_visibility_timeout",
        "stop_timeout",
    ):
        if getattr(s, name) <= 0:
            raise ConfigError(f"{name} must be a positive number of seconds")
    if s.embedded_broker_max_mb < 0:
        raise ConfigError("embedded_broker_max_mb must be 0 (never restart the broker) or a positive number of MB")
    if s.poll_lookback < 0:
        raise ConfigError("poll_lookback must be 0 (no look-back) or a positive number of seconds")
    if not 0 <= s.sqs_wait <= 20:
        raise ConfigError(f"sqs_wait={s.sqs_wait}: SQS long polling waits 0 to 20 seconds")
    if s.poll_spool_bytes < 64 * 1024:
        raise ConfigError(f"poll_spool_bytes={s.poll_spool_bytes} is too small: use at least 65536")
    if s.poll_queue_bytes < s.raw_chunk_bytes + 64 * 1024:
        raise ConfigError(
            f"poll_queue_bytes={s.poll_queue_bytes} cannot hold one message of raw_chunk_bytes={s.raw_chunk_bytes}: "
            f"use at least {s.raw_chunk_bytes + 64 * 1024}"
        )
    if s.clickhouse_url and not s.clickhouse_url.startswith(("http://", "https://", "chdb://")):
        raise ConfigError(
            f"clickhouse_url={s.clickhouse_url!r}: use http://host:8123, https://host:8443 or chdb:///path"
        )
    if not s.clickhouse_database.replace("_", "").isalnum():
        raise ConfigError(f"clickhouse_database={s.clickhouse_database!r}: use letters, digits and underscores")
    if s.cluster is not None and not s.cluster.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"cluster={s.cluster!r}: use the cluster's name from remote_servers (letters, digits, _ -)")
    if s.retention is not None:
        parse_retention(s.retention)
    if s.clickhouse_ca_file is not None and not s.clickhouse_ca_file.is_file():
        raise ConfigError(f"clickhouse_ca_file={s.clickhouse_ca_file}: no such file; mount the CA bundle there")
    if s.dedup_store not in {"rocksdb", "memory"}:
        raise ConfigError(f"dedup_store={s.dedup_store!r}: use rocksdb (on disk) or memory")
    for name in ("rocksdb_write_buffer_bytes", "rocksdb_block_cache_bytes"):
        if getattr(s, name) < 1024 * 1024:
            raise ConfigError(f"{name}={getattr(s, name)} is too small: use at least 1048576 (1 MiB)")
    if not 1 <= s.rocksdb_bloom_bits <= 24:
        raise ConfigError(
            f"rocksdb_bloom_bits={s.rocksdb_bloom_bits}: use 1 to 24 bits per id (10 reads the disk for ~1% of the "
            "lookups of new ids; more bits buy little)"
        )
    if s.http_port is not None and not 0 <= s.http_port <= 65533:
        raise ConfigError(f"http_port={s.http_port}: use a port number (0 turns the server off)")
    from trailhouse.security import kafka_security  # the security rules live beside their mapping

    kafka_security(s)


def add_setting_flags(parser: argparse.ArgumentParser, scopes: Iterable[str]) -> None:
    """Add `--flag` options for the settings of `scopes` (and the common ones) to a command's parser."""
    wanted = set(scopes)
    group = parser.add_argument_group("settings (flag > environment > config file > default)")
    group.add_argument(
        "--config", type=Path, default=None, metavar="FILE", help=f"TOML settings file [env {ENV_PREFIX}CONFIG]"
    )
    for f in dataclasses.fields(Settings):
        field_scopes = f.metadata["scopes"]
        if field_scopes and not field_scopes & wanted:
            continue
        group.add_argument(
            flag_name(f.name),
            dest=f.name,
            default=None,
            metavar=_field_type(f).__name__.upper(),
            # argparse formats help with %: a setting's "~1%" would break every command's --help
            help=f"{f.metadata['help']} [env {env_name(f.name)}; default {f.default}]".replace("%", "%%"),
        )


def settings_from_args(args: argparse.Namespace) -> Settings:
    names = {f.name for f in dataclasses.fields(Settings)}
    flags = {k: v for k, v in vars(args).items() if k in names}
    return load_settings(flags=flags, config_file=getattr(args, "config", None))
