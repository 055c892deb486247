"""How the worker's Faust app bounds what it holds of its input (the memory figures of issue 7 depend on it)."""

from trailhouse.config import Settings


def test_faust_takes_and_buffers_few_messages_ahead_of_the_intake(tmp_path):
    """Faust counts messages, and a message is up to a 900 kB chunk. Its default poll (None) takes, and unpacks,
    every message fetched: ~450 raw chunks at once in the bench at 400k events; its default stream buffer is 4,096
    messages. The agent's batches are bounded in bytes behind these (streams/intake.py)."""
    from streams.app import FAUST_BUFFER_MESSAGES, build_app

    conf = build_app(Settings(data_dir=tmp_path), "127.0.0.1:9", web_port=6066).conf
    assert FAUST_BUFFER_MESSAGES <= 16
    assert (conf.broker_max_poll_records, conf.stream_buffer_maxsize) == (FAUST_BUFFER_MESSAGES,) * 2
