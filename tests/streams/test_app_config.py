"""How the worker's Faust app bounds what it holds of its input (the memory figures of issue 7 depend on it)."""

from trailhouse.config import Settings


def test_the_worker_takes_at_most_one_batch_from_the_kafka_client_and_buffers_one_more(tmp_path):
    """Faust's default poll (None) takes, and unpacks, every message fetched: ~450 raw chunks at once in the
    bench at 400k events. The cap is one batch of full-size chunks, the same as the stream buffer ahead of it."""
    from streams.app import build_app

    conf = build_app(Settings(data_dir=tmp_path), "127.0.0.1:9", web_port=6066).conf
    assert (conf.broker_max_poll_records, conf.stream_buffer_maxsize) == (37, 37), "32 MiB of 900 kB chunks"
