"""Where the worker's tables live: the de-dup window on disk (RocksDB), the small per-source tables in memory.

The de-dup window holds one entry per event id of two windows (~48 h of events), so in Faust's memory store the
worker's memory grows with the event rate. In RocksDB (Faust's `rocksdb://` store, through the `rocksdict`
bindings) it lives under the worker's directory (`Settings.worker_data_dir`), with RocksDB's own memory bounded
per table partition: at most two write buffers of `rocksdb_write_buffer_bytes` and a block cache of
`rocksdb_block_cache_bytes`; only each file's index and bloom filter grow with the ids on disk (~1.7 bytes per id
at `rocksdb_bloom_bits` = 10). Most ids are new, and a new id is looked up in two windows: in every file whose
filter answers "maybe", RocksDB reads a block. Faust's default filter (3 bits per key) answers "maybe" for ~24% of
them, so once the window outgrows the page cache the worker would wait on the disk for most events; at 10 bits
~1% (docs/operations.md has the sizing).

After a restart on the same directory Faust reads only the changelog's tail (the store keeps the changelog offset
it has applied); on a new directory it reads the whole changelog, as the memory store always does.

The source-state and detector tables stay in memory: one entry per source or per source and API, and the worker
writes the source state from a timer, outside any message, which Faust's RocksDB store does not support (it takes
the partition of a write from the message being processed).

Expiry: Faust expires a windowed table's keys through an index in memory of every key written (a set per window,
plus a heap entry per write: ~300 bytes per event id, as much as the memory store's own entry), so on disk the
window would still cost memory per event. `DiskWindowTable` leaves that index out and lets RocksDB's TTL (three
windows from the write, longer than any entry is looked up: an id is looked up in the current and the previous
window only) drop old windows at compaction. That also drops what Faust's index never knew: windows read back
from disk or from the changelog after a restart.
"""

from __future__ import annotations

import asyncio
import fcntl
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import timedelta
from functools import partial
from types import SimpleNamespace
from typing import IO, Any, cast

import faust
import orjson
from faust.stores import rocksdb
from faust.types import TP, ProducerT
from faust.types.tables import WindowWrapperT
from rocksdict import WriteBatch

from streams.produce import send_records
from trailhouse.config import Settings
from trailhouse.errors import DataDirInUse

DEDUP_TABLE = "event-ids"
WRITE_BUFFERS = 2  # one being filled, one being flushed to disk


def right_sized(data: bytes) -> bytes:
    """`data` in an allocation of its own length, for bytes kept until their batch is sent.

    Faust serializes table keys and values with orjson, whose result keeps the whole buffer it wrote into: since
    orjson 3.12 at least 4 kB for any value, ~130 kB for a 2-4 kB detector entry (it sets the length but never
    shrinks the buffer: home-assistant/core#181245). A batch's changelog waits in `_unsent` until it is sent, and
    a batch touches a few hundred detector entries: ~25 MB of the worker's heap at its peak (memray, bench 400k),
    for ~1 MB of messages. The copy costs a memcpy of the message.
    """
    return bytes(memoryview(data))


def dedup_table_store(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of `app.Table` for the de-dup window: its store, and RocksDB's options.

    The URL names the table (`rocksdb:event-ids`, files `event-ids-<partition>.db`): a table's own `rocksdb://`
    is an empty yarl URL, which is false, so Faust would silently use the app's store instead.
    """
    if settings.dedup_store == "memory":
        return {"store": "memory://"}
    return {
        "store": f"rocksdb:{DEDUP_TABLE}",
        "options": {
            "write_buffer_size": settings.rocksdb_write_buffer_bytes,
            "max_write_buffer_number": WRITE_BUFFERS,
            "block_cache_size": settings.rocksdb_block_cache_bytes,
            "bloom_filter_size": settings.rocksdb_bloom_bits,
            "ttl": int(3 * settings.dedup_window),
        },
    }


class ChunkChangelogTable(faust.Table):
    """A table whose changelog messages the agent sends itself, a group of chunks at a time, in record batches.

    Faust sends a table's changelog one message per write through its producer buffer, which it drains one
    message at a time and only lets the agent wait on when it holds more than 100: with one write per event the
    buffer held ~100,000 pending messages at 200k events (the worker's memory grew with N) and a commit waited
    minutes for it. Here a write only queues its serialized message; `send_unsent` sends the queue in record
    batches, and the agent awaits them with the events of the chunks that wrote them, before those count as done
    (at-least-once, as before). The changelog offset the store records (RocksDB: where recovery resumes) is the
    first offset of the last batch acknowledged, so a recovery re-reads at most one batch.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unsent: list[tuple[int, bytes, bytes | None]] = []  # (partition, key, value; None deletes)

    def send_changelog(
        self,
        partition: int | None,
        key: Any,
        value: Any,
        key_serializer: Any = None,
        value_serializer: Any = None,
    ) -> Any:
        assert partition is not None, "written outside of a message (no partition)"
        topic = self.changelog_topic
        raw_key, _ = topic.prepare_key(key, key_serializer or self.key_serializer)
        raw_value, _ = topic.prepare_value(value, value_serializer or self.value_serializer)
        kept = None if raw_value is None else right_sized(raw_value)  # None: a deletion
        self._unsent.append((partition, right_sized(raw_key), kept))
        return SimpleNamespace(message=SimpleNamespace(partition=partition))  # what `on_key_set` reads

    async def send_unsent(self, producer: ProducerT) -> list[asyncio.Future[Any]]:
        """Send the changelog messages of the writes since the last call; returns the deliveries to await."""
        unsent, self._unsent = self._unsent, []
        by_partition: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
        for partition, key, value in unsent:
            by_partition[partition].append((key, value))
        topic = self.changelog_topic.get_topic_name()
        deliveries = []
        for partition, records in by_partition.items():
            sent = await send_records(producer, topic, partition, records)
            sent[-1].add_done_callback(partial(self._changelog_acknowledged, TP(topic, partition)))
            deliveries += sent
        return deliveries

    def first_marks(self, keys: Sequence[Any], timestamp: float, partition: int) -> list[Any]:
        """Per key of a chunk, its value in the window of `timestamp`, else in the window before, else None (the
        lookups of `table[key].current() or table[key].delta(size)` on the windowed wrapper, which derives the
        windows again for every key and reads the store twice per window: membership, then value)."""
        this, previous = self._windows(timestamp)
        store = self.data
        return [store.get((key, this)) or store.get((key, previous)) for key in keys]

    def mark_all(self, keys: Iterable[Any], value: Any, timestamp: float, partition: int) -> None:
        """Set each key to `value` in the window of `timestamp`: what `table[key] = value` on the windowed wrapper
        does (the store, the changelog message, the expiry index), without Faust's table sensors. `partition` is
        the chunk's: the changelog's, and on disk the database's."""
        window = self.window.current(timestamp)
        for key in keys:
            windowed = (key, window)
            self.send_changelog(partition, windowed, value)
            self.data[windowed] = value
            self._maybe_set_key_ttl(windowed, partition)

    def _windows(self, timestamp: float) -> tuple[Any, Any]:
        """The window of `timestamp` and the one before it."""
        window = self.window
        return window.current(timestamp), window.delta(timestamp, window.size)

    def _changelog_acknowledged(self, tp: TP, delivery: asyncio.Future[Any]) -> None:
        if not delivery.cancelled() and delivery.exception() is None:
            self.data.set_persisted_offset(tp, delivery.result().offset)


class DiskWindowTable(ChunkChangelogTable):
    """A windowed table without Faust's in-memory expiry index: its store expires old windows (RocksDB's TTL).

    A chunk's ids are read from the partition's database in one multi-get per window and written in one
    WriteBatch, each key serialized once for the database and the changelog: key by key through Faust's store
    (serializing it twice, and finding the partition's database from the current message each time) the de-dup
    window took a fifth of the worker's time end to end (bench, issue 7).
    """

    def first_marks(self, keys: Sequence[Any], timestamp: float, partition: int) -> list[Any]:
        store = cast(rocksdb.Store, self.data)
        db = store._db_for_partition(partition)
        firsts: list[Any] = [None] * len(keys)
        missing = list(range(len(keys)))
        for window in self._windows(timestamp):
            found = db[self._raw_keys([keys[i] for i in missing], window)] if missing else []
            for i, raw in zip(missing, found, strict=True):
                if raw is not None:
                    firsts[i] = store._decode_value(raw)
            missing = [i for i in missing if firsts[i] is None]
        return firsts

    def mark_all(self, keys: Iterable[Any], value: Any, timestamp: float, partition: int) -> None:
        store = cast(rocksdb.Store, self.data)
        window = self.window.current(timestamp)
        raw_value = right_sized(store._encode_value(value))  # one per chunk, queued with each of its keys
        batch = WriteBatch(raw_mode=True)
        for raw_key in self._raw_keys(list(keys), window):
            batch.put(raw_key, raw_value)
            self._unsent.append((partition, raw_key, raw_value))
        store._db_for_partition(partition).write(batch)
        self._maybe_set_key_ttl((None, window), partition)

    def _raw_keys(self, keys: list[Any], window: tuple[float, float]) -> list[bytes]:
        """The stored form of each (key, window): Faust's JSON key serializer writes `[key,[start,end]]` with
        orjson, so the window's part is serialized once per chunk, not once per key through Faust's serializer
        registry (~5% of the worker's time end to end). Checked against Faust's own encoding on the first key of
        every call; any difference (another key serializer, another Faust) falls back to Faust's, key by key."""
        store = cast(rocksdb.Store, self.data)
        if not keys:
            return []
        suffix = b"," + orjson.dumps(window) + b"]"
        try:
            first = b"[" + orjson.dumps(keys[0]) + suffix
        except TypeError:
            first = None
        if first != store._encode_key((keys[0], window)):
            return [store._encode_key((key, window)) for key in keys]
        return [first] + [b"[" + orjson.dumps(key) + suffix for key in keys[1:]]

    def _maybe_set_key_ttl(self, key: Any, partition: int) -> None:
        _, (_, window_end) = key  # only what `relative_to_now()` windows read; the index stays empty
        latest = self._partition_latest_timestamp
        latest[partition] = max(latest[partition], window_end)


def dedup_table(app: faust.App, settings: Settings) -> WindowWrapperT:
    """The de-dup window: tumbling windows of `dedup_window` in stream time, kept for two (an id is a duplicate if
    seen in the current or the previous window: within at least `dedup_window` and at most twice that)."""
    window = timedelta(seconds=settings.dedup_window)
    store = dedup_table_store(settings)
    kind = ChunkChangelogTable if settings.dedup_store == "memory" else DiskWindowTable
    table = app.tables.add(kind(app, name=DEDUP_TABLE, default=int, beacon=app.tables.beacon, **store))
    return table.tumbling(window, expires=2 * window).relative_to_stream()


def chunk_changelog_table(app: faust.App, name: str) -> ChunkChangelogTable:
    """An in-memory table whose changelog the agent sends itself (the detector's, written per batch: through
    Faust's producer buffer, drained one message at a time, its ~100 writes per batch made the agent wait)."""
    return app.tables.add(ChunkChangelogTable(app, name=name, default=None, beacon=app.tables.beacon))


def hold_worker_dir(settings: Settings) -> IO[str] | None:
    """Lock the worker's directory for this process, or fail: RocksDB allows one process per database, and two
    workers sharing a directory would otherwise retry its lock for 30 s per partition and then crash.

    The lock is released when the process exits (keep the returned file open until then). None with the memory
    store: nothing is kept on disk, so workers may share a data directory.
    """
    if settings.dedup_store == "memory":
        return None
    directory = settings.worker_data_dir
    directory.mkdir(parents=True, exist_ok=True)
    lock = open(directory / "worker.lock", "w")  # noqa: SIM115 - held open for the worker's lifetime
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        lock.close()
        raise DataDirInUse(
            f"another worker uses {directory}: give each worker process its own data directory (--data-dir or "
            "TRAILHOUSE_DATA_DIR), as its tables are stored there"
        ) from exc
    return lock
