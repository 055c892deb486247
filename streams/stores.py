"""Where the worker's tables live: the de-dup window on disk (RocksDB), the small per-source tables in memory.

The de-dup window holds one entry per event id of two windows (~48 h of events), so in Faust's memory store the
worker's memory grows with the event rate. In RocksDB (Faust's `rocksdb://` store, through the `rocksdict`
bindings) it lives under the worker's directory (`Settings.worker_data_dir`), with RocksDB's own memory bounded
per table partition: at most two write buffers of `rocksdb_write_buffer_bytes` and a block cache of
`rocksdb_block_cache_bytes`. After a restart on the same directory Faust reads only the changelog's tail (the store
keeps the changelog offset it has applied); on a new directory it reads the whole changelog, as the memory store
always does.

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

import fcntl
from datetime import timedelta
from typing import IO, Any

import faust
from faust.types.tables import WindowWrapperT

from trailhouse.config import Settings
from trailhouse.errors import DataDirInUse

DEDUP_TABLE = "event-ids"
WRITE_BUFFERS = 2  # one being filled, one being flushed to disk


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
            "ttl": int(3 * settings.dedup_window),
        },
    }


class DiskWindowTable(faust.Table):
    """A windowed table without Faust's in-memory expiry index: its store expires old windows (RocksDB's TTL)."""

    def _maybe_set_key_ttl(self, key: Any, partition: int) -> None:
        _, (_, window_end) = key  # only what `relative_to_now()` windows read; the index stays empty
        latest = self._partition_latest_timestamp
        latest[partition] = max(latest[partition], window_end)


def dedup_table(app: faust.App, settings: Settings) -> WindowWrapperT:
    """The de-dup window: tumbling windows of `dedup_window` in stream time, kept for two (an id is a duplicate if
    seen in the current or the previous window: within at least `dedup_window` and at most twice that)."""
    window = timedelta(seconds=settings.dedup_window)
    store = dedup_table_store(settings)
    if settings.dedup_store == "memory":
        table = app.Table(DEDUP_TABLE, default=int, **store)
    else:
        table = app.tables.add(DiskWindowTable(app, name=DEDUP_TABLE, default=int, beacon=app.tables.beacon, **store))
    return table.tumbling(window, expires=2 * window).relative_to_stream()


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
