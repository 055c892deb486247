import re
import tracemalloc
from collections.abc import Callable

import orjson
import pytest

from streams.stores import DiskWindowTable, dedup_table_store, hold_worker_dir
from trailhouse.config import Settings
from trailhouse.errors import DataDirInUse


def test_the_dedup_window_is_on_disk_with_its_memory_set_by_the_settings_unless_memory_is_asked_for():
    settings = Settings(rocksdb_write_buffer_bytes=2 << 20, rocksdb_block_cache_bytes=3 << 20, dedup_window=100.0)
    assert dedup_table_store(settings) == {
        "store": "rocksdb:event-ids",
        "options": {
            "write_buffer_size": 2 << 20,
            "max_write_buffer_number": 2,
            "block_cache_size": 3 << 20,
            "bloom_filter_size": 10,
            "ttl": 300,
        },
    }
    assert dedup_table_store(settings.with_(dedup_store="memory")) == {"store": "memory://"}


def test_two_workers_cannot_share_a_directory_of_rocksdb_tables(tmp_path):
    settings = Settings(data_dir=tmp_path)
    held = hold_worker_dir(settings)
    try:
        with pytest.raises(DataDirInUse, match="its own data directory"):
            hold_worker_dir(settings)
    finally:
        held.close()
    hold_worker_dir(settings).close()  # free again once the first worker is gone
    assert hold_worker_dir(settings.with_(dedup_store="memory")) is None


def test_the_worker_keeps_its_dedup_window_in_rocksdb_and_the_small_tables_in_memory(tmp_path):
    from faust.stores import memory, rocksdb

    from streams.app import build_app

    app = build_app(Settings(data_dir=tmp_path), "127.0.0.1:9", web_port=6066)
    stores = {name: type(table.data) for name, table in app.tables.items()}
    assert stores.pop("event-ids") is rocksdb.Store
    assert set(stores.values()) == {memory.Store}
    assert app.tables["event-ids"].data.partition_path(0) == tmp_path / "faust/v1/tables/event-ids-0.db"
    assert isinstance(app.tables["event-ids"], DiskWindowTable), "no in-memory index of the window's keys"

    in_memory = build_app(Settings(data_dir=tmp_path, dedup_store="memory"), "127.0.0.1:9", web_port=6066)
    assert type(in_memory.tables["event-ids"].data) is memory.Store
    assert not isinstance(in_memory.tables["event-ids"], DiskWindowTable), "Faust's index expires the memory store"


def test_a_window_on_disk_keeps_no_index_of_its_keys_in_memory(tmp_path):
    from streams.app import build_app

    table = build_app(Settings(data_dir=tmp_path), "127.0.0.1:9", web_port=6066).tables["event-ids"]
    for n in range(1000):
        table._maybe_set_key_ttl((f"id-{n}", (0.0, 86_399.9)), 1)
    assert not table._partition_timestamp_keys and not table._partition_timestamps[1]
    assert table._partition_latest_timestamp[1] == 86_399.9


def test_a_dedup_write_queues_its_changelog_message_for_the_chunk_instead_of_faust_s_producer_buffer(tmp_path):
    from streams.app import build_app

    for store in ("rocksdb", "memory"):
        app = build_app(Settings(data_dir=tmp_path / store, dedup_store=store), "127.0.0.1:9", web_port=6066)
        table = app.tables["event-ids"]
        sent = table.send_changelog(2, ("e1", (0.0, 86_399.9)), 8)
        assert sent.message.partition == 2
        # The bytes Faust's own send would have produced: recovery writes them to the store as they are.
        assert table._unsent == [(2, b'["e1",[0.0,86399.9]]', b"8")]
        assert app.producer.buffer.size == 0


def held_after(write: Callable[[], None]) -> int:
    """Bytes of Python allocations still held after `write()` (tracemalloc: what a buffer really takes, not its
    length)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        write()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_a_queued_changelog_message_holds_the_memory_of_its_bytes_not_of_the_serializer_s_buffer(tmp_path):
    from streams.app import build_app

    table = build_app(Settings(data_dir=tmp_path), "127.0.0.1:9", web_port=6066).tables["insight-apis"]
    entry = {"hours": list(range(3 * 168)), "hod": {str(h): (h, 60, h * h) for h in range(24)}}  # ~2.5 kB of JSON
    held = held_after(lambda: [table.send_changelog(0, f"source|api-{n}", entry) for n in range(20)])
    queued = sum(len(key) + len(value) for _, key, value in table._unsent)
    assert queued > 20 * 2000
    assert held < 4 * queued, "orjson's buffers (~130 kB per entry since 3.12) are kept until the batch is sent"
    assert orjson.loads(table._unsent[0][2]) == orjson.loads(orjson.dumps(entry))

    table.send_changelog(0, "source|gone", None, value_serializer="raw")  # a deletion stays a tombstone
    assert table._unsent[-1] == (0, b'"source|gone"', None)


def test_a_chunk_s_de_dup_mark_is_queued_in_memory_of_its_length(tmp_path):
    from streams.app import build_app

    table = build_app(Settings(data_dir=tmp_path), "127.0.0.1:9", web_port=6066).tables["event-ids"]
    held = held_after(lambda: [table.mark_all([f"e{n}"], n + 1, 150.0, 0) for n in range(50)])
    assert len(table._unsent) == 50
    assert held < 50 * 1024, "orjson keeps >= 4 kB for the one-digit mark of each chunk (since 3.12)"


def test_a_new_id_s_lookups_are_answered_by_the_bloom_filters_not_by_reading_the_window_s_blocks(tmp_path, monkeypatch):
    from faust.stores.rocksdb import RocksDBOptions

    from streams.app import build_app

    opened = []
    as_options = RocksDBOptions.as_options

    def with_statistics(self: RocksDBOptions):  # the options Faust opens the partition's database with
        options = as_options(self)
        options.enable_statistics()
        opened.append(options)
        return options

    monkeypatch.setattr(RocksDBOptions, "as_options", with_statistics)
    app = build_app(Settings(data_dir=tmp_path, dedup_window=100.0), "127.0.0.1:9", web_port=6066)
    table = app.tables["event-ids"]
    for chunk in range(20):
        table.mark_all([f"seen-{chunk}-{n}" for n in range(1000)], chunk + 1, 150.0, 0)
    table.data._db_for_partition(0).flush()  # on disk: what a lookup finds only through a filter, then a block

    assert table.first_marks([f"new-{n}" for n in range(5000)], 150.0, 0) == [None] * 5000
    counts = dict(re.findall(r"^(rocksdb\.bloom\.filter\.[a-z.]+) COUNT : (\d+)$", opened[-1].get_statistics(), re.M))
    probes = 2 * 5000  # the current window and the one before
    assert int(counts["rocksdb.bloom.filter.useful"]) >= 0.95 * probes
    assert int(counts["rocksdb.bloom.filter.full.positive"]) <= 0.03 * probes, "Faust's 3 bits: ~24% read a block"
    assert table.first_marks(["seen-3-7", "seen-19-999"], 150.0, 0) == [4, 20]


@pytest.mark.parametrize("store", ["rocksdb", "memory"])
def test_a_chunk_s_ids_are_looked_up_in_two_windows_and_marked_as_faust_would_store_and_log_them(tmp_path, store):
    from streams.app import build_app

    app = build_app(Settings(data_dir=tmp_path, dedup_store=store, dedup_window=100.0), "127.0.0.1:9", web_port=6066)
    table = app.tables["event-ids"]
    assert table.first_marks(["e1", "e2"], 150.0, 1) == [None, None]

    table.mark_all(["e1", "e2"], 8, 150.0, 1)
    assert table._unsent == [(1, b'["e1",[100.0,199.9]]', b"8"), (1, b'["e2",[100.0,199.9]]', b"8")]
    # Faust reads them back (recovery and its own lookups go through its store)
    assert table.data.get(("e1", (100.0, 199.9))) == 8
    table.mark_all(["e3"], 9, 250.0, 1)
    assert table.first_marks(["e1", "e3", "e4"], 250.0, 1) == [8, 9, None], "e1 from the window before"
    assert table.first_marks(["e1", "e3"], 350.0, 1) == [None, 9], "two windows later, e1 is forgotten"
    if store == "rocksdb":
        assert table.first_marks(["e1"], 150.0, 2) == [None], "each partition has its own database"


def test_window_keys_are_the_bytes_faust_s_serializer_writes_whatever_the_id(tmp_path):
    """Ids from hostile logs (quotes, backslashes, control characters, other scripts, emoji) are stored under
    exactly the key Faust's own serializer gives: recovery and Faust's lookups read what the worker wrote."""
    from streams.app import build_app

    app = build_app(Settings(data_dir=tmp_path, dedup_window=100.0), "127.0.0.1:9", web_port=6066)
    table = app.tables["event-ids"]
    store = table.data
    window = (100.0, 199.9)
    ids = ["e1", 'a"b', "back\\slash", "tab\tnew\nline\x00", "ünïcödé", "日本語", "🦆", "", "x" * 5000]
    assert table._raw_keys(ids, window) == [store._encode_key((i, window)) for i in ids]

    faust_encodings = []
    encode_key = store._encode_key
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store, "_encode_key", lambda key: faust_encodings.append(key) or encode_key(key))
        table._raw_keys(ids, window)
    assert faust_encodings == [(ids[0], window)], "Faust's serializer checks the first key only"

    table.mark_all(ids, 7, 150.0, 1)
    assert [store.get((i, window)) for i in ids] == [7] * len(ids)
    assert table.first_marks(ids, 150.0, 1) == [7] * len(ids)


def test_window_keys_fall_back_to_faust_s_serializer_when_it_writes_something_else(tmp_path, monkeypatch):
    from streams.app import build_app

    app = build_app(Settings(data_dir=tmp_path, dedup_window=100.0), "127.0.0.1:9", web_port=6066)
    table = app.tables["event-ids"]
    monkeypatch.setattr(table.data, "_encode_key", lambda key: repr(key).encode())
    assert table._raw_keys(["e1", "e2"], (100.0, 199.9)) == [b"('e1', (100.0, 199.9))", b"('e2', (100.0, 199.9))"]
