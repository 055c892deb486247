from pathlib import Path

import pytest

from trailhouse.config import Settings, load_settings
from trailhouse.errors import ConfigError


def test_defaults_need_nothing():
    settings = load_settings(environ={})
    assert settings == Settings()
    assert settings.embedded_kafka
    assert settings.clickhouse_dsn == f"chdb://{Path('.trailhouse/clickhouse').resolve()}"


def test_flags_beat_environment_which_beats_the_file(tmp_path):
    config = tmp_path / "trailhouse.toml"
    config.write_text('[trailhouse]\npoll_interval = 5\nsink_batch_events = 10\nclickhouse_database = "fromfile"\n')
    settings = load_settings(
        flags={"poll_interval": "7", "sink_batch_events": None},
        environ={"TRAILHOUSE_POLL_INTERVAL": "6", "TRAILHOUSE_SINK_BATCH_EVENTS": "20"},
        config_file=config,
    )
    assert settings.poll_interval == 7.0
    assert settings.sink_batch_events == 20
    assert settings.clickhouse_database == "fromfile"


def test_the_config_file_can_come_from_the_environment(tmp_path):
    config = tmp_path / "t.toml"
    config.write_text('kafka_bootstrap = "k1:9092,k2:9092"\n')
    settings = load_settings(environ={"TRAILHOUSE_CONFIG": str(config)})
    assert settings.kafka_bootstrap == "k1:9092,k2:9092"
    assert not settings.embedded_kafka


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"TRAILHOUSE_POLL_INTERVAL": "soon"}, "TRAILHOUSE_POLL_INTERVAL"),
        ({"TRAILHOUSE_POLL_INTERVAL": "0"}, "positive"),
        ({"TRAILHOUSE_KAFKA_COMPRESSION": "brotli"}, "none, gzip, lz4 or zstd"),
        ({"TRAILHOUSE_CLICKHOUSE_URL": "tcp://host:9000"}, "http://host:8123"),
        ({"TRAILHOUSE_CLICKHOUSE_DATABASE": "x; drop"}, "letters, digits"),
        ({"TRAILHOUSE_DEDUP_STORE": "redis"}, "use rocksdb .on disk. or memory"),
        ({"TRAILHOUSE_ROCKSDB_BLOCK_CACHE_BYTES": "4096"}, "at least 1048576"),
        ({"TRAILHOUSE_ROCKSDB_BLOOM_BITS": "0"}, "rocksdb_bloom_bits=0: use 1 to 24 bits per id"),
        ({"TRAILHOUSE_POLL_QUEUE_BYTES": "900000"}, "poll_queue_bytes=900000 cannot hold one message.*965536"),
        ({"TRAILHOUSE_EMBEDDED_BROKER_MAX_MB": "-1"}, "embedded_broker_max_mb must be 0 .never restart"),
    ],
)
def test_bad_values_name_the_setting_and_the_fix(environ, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(environ=environ)


def test_unknown_keys_in_the_file_are_reported(tmp_path):
    config = tmp_path / "t.toml"
    config.write_text("pol_interval = 5\n")
    with pytest.raises(ConfigError, match="unknown setting.*pol_interval"):
        load_settings(environ={}, config_file=config)


def test_a_missing_config_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(environ={}, config_file=tmp_path / "nope.toml")


def test_the_embedded_broker_gets_short_rebalances_and_a_real_cluster_long_ones():
    assert Settings().rebalance_timeout == 4.0
    assert Settings(kafka_bootstrap="k:9092").rebalance_timeout == 60.0
    assert Settings(worker_rebalance_timeout=15.0).rebalance_timeout == 15.0


@pytest.mark.parametrize(
    ("url", "embedded"),
    [(None, True), ("chdb:///var/lib/trailhouse/clickhouse", True), ("https://user:pw@ch.internal:8443", False)],
)
def test_the_embedded_engine_is_chdb_whether_implied_or_named(url, embedded):
    assert Settings(clickhouse_url=url).embedded_clickhouse is embedded


def test_every_command_s_help_shows_its_settings():
    """argparse expands % in help texts: a setting's help with a plain "%" broke `--help` of its commands."""
    import argparse

    from trailhouse.cli import _parser

    def commands(parser: argparse.ArgumentParser):
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from commands(sub)

    helps = [" ".join(parser.format_help().split()) for parser in commands(_parser())]  # unwrapped
    assert len(helps) > 10
    assert any("~1% of the window's files at 10" in text for text in helps)
