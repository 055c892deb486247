import gzip
import io
import json

import pytest

from producers.split import chunk_records, decompress, record_texts, split_log_file
from trailhouse.errors import BadLogFile

LIMITS = {"max_chunk_bytes": 900_000, "max_file_bytes": 64 * 1024 * 1024}


def test_real_files_split_into_their_records_byte_for_byte(real_files):
    for path in real_files:
        raw = path.read_bytes()
        texts = record_texts(raw)
        parsed = json.loads(raw)["Records"]
        assert [json.loads(t) for t in texts] == parsed
        # each text is a verbatim slice of the file, in order
        document = raw.decode()
        position = 0
        for text in texts:
            position = document.index(text, position) + len(text)


def test_gzip_is_detected_by_content_not_name(real_files):
    raw = real_files[0].read_bytes()
    assert split_log_file(gzip.compress(raw), **LIMITS).chunks == split_log_file(raw, **LIMITS).chunks


def test_chunks_stay_under_the_limit_and_keep_order():
    records = [json.dumps({"eventID": str(i), "pad": "x" * 1000}) for i in range(500)]
    split = chunk_records(records, max_chunk_bytes=70_000)
    assert len(split.chunks) > 1
    assert [r for chunk in split.chunks for r in chunk] == records
    assert all(sum(len(r) + 5 for r in chunk) <= 70_000 - 4096 for chunk in split.chunks)


def test_a_record_larger_than_a_message_is_set_aside_and_the_rest_kept():
    small = [json.dumps({"eventID": str(i)}) for i in range(3)]
    huge = json.dumps({"eventID": "huge", "pad": "é" * 40_000})
    split = chunk_records([small[0], huge, small[1], small[2]], max_chunk_bytes=70_000)
    assert [r for chunk in split.chunks for r in chunk] == small
    [oversized] = split.oversized
    assert oversized.index == 1 and huge.startswith(oversized.text), "the dead letter keeps the record's start"
    assert len(oversized.text.encode()) <= 64 * 1024 and oversized.size == len(huge.encode())
    assert split.records == 3


def test_an_empty_file_is_one_empty_chunk():
    assert split_log_file(b'{"Records":[]}', **LIMITS).chunks == [[]]


def test_records_need_not_be_the_first_key():
    assert record_texts(b'{"Other": {"a": [1, 2]}, "Records": [ {"a":1} ,{"b":2}]}') == ['{"a":1}', '{"b":2}']


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (gzip.compress(b'{"Records":[]}', mtime=0)[:-6], "corrupt_gzip"),
        (b"\x1f\x8bnot gzip at all", "corrupt_gzip"),
        (b"<html>denied</html>", "not_json"),
        (b'{"Records": [{"a": 1}', "not_json"),
        (b'{"Records": [{"a": tru}]}', "not_json"),
        (b'{"records": []}', "no_records"),
        (b'{"Records": {"a": 1}}', "no_records"),
        (b"\xff\xfe{", "not_utf8"),
    ],
)
def test_unreadable_files_are_rejected_with_a_reason(data, kind):
    with pytest.raises(BadLogFile) as info:
        split_log_file(data, **LIMITS)
    assert info.value.kind == kind
    assert str(info.value)


def test_a_file_inflating_past_the_limit_is_refused_without_inflating_it_all():
    bomb = gzip.compress(b'{"Records":[' + b" " * 10_000_000 + b"]}")
    with pytest.raises(BadLogFile) as info:
        decompress(bomb, max_bytes=1_000_000)
    assert info.value.kind == "file_too_large"


@pytest.mark.parametrize("piece", [1, 7, 4096])
def test_a_stream_cut_anywhere_gives_the_same_records(real_files, monkeypatch, piece):
    import producers.split as split

    monkeypatch.setattr(split, "PIECE_BYTES", piece)
    for path in real_files[:3]:
        raw = path.read_bytes()
        expected = [json.dumps(r) for r in json.loads(raw)["Records"]]
        texts = record_texts(gzip.compress(raw))
        assert [json.loads(t) for t in texts] == [json.loads(e) for e in expected]
        assert texts == record_texts(raw)


def test_a_big_file_is_split_with_bounded_memory_and_its_chunks_read_back_in_order():
    import io
    import tracemalloc

    from producers.split import split_stream

    records = [json.dumps({"eventID": f"{i:08d}", "pad": "x" * 900}) for i in range(40_000)]
    data = gzip.compress(('{"Records":[' + ",".join(records) + "]}").encode(), compresslevel=1)
    tracemalloc.start()
    try:
        with split_stream(io.BytesIO(data), max_chunk_bytes=200_000, max_file_bytes=1 << 30, spool_bytes=2 << 20) as s:
            peak = tracemalloc.get_traced_memory()[1]
            assert [r for chunk in s.chunks for r in chunk] == records
            assert len(s.chunks) > 100 and s.records == len(records)
    finally:
        tracemalloc.stop()
    assert peak < 12 * 1024 * 1024, f"{peak / 1e6:.1f} MB held to split a {len(records) * 0.9 / 1000:.0f} MB file"


def test_concatenated_gzip_members_are_one_file_and_trailing_bytes_are_ignored():
    whole = b'{"Records": [{"a": 1}, {"b": 2}]}'
    assert record_texts(gzip.compress(whole[:20]) + gzip.compress(whole[20:]) + b"\0\0") == ['{"a": 1}', '{"b": 2}']


def test_a_file_over_the_limit_is_refused_while_streaming():
    from producers.split import split_stream

    data = gzip.compress(b'{"Records":[' + b",".join([b'{"a": 1}'] * 200_000) + b"]}")
    with pytest.raises(BadLogFile) as info:
        split_stream(io.BytesIO(data), max_chunk_bytes=900_000, max_file_bytes=100_000, spool_bytes=1 << 20)
    assert info.value.kind == "file_too_large"
