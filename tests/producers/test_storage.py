from producers.storage import FolderStore


def test_a_folder_lists_in_s3_key_order_after_start_after(tmp_path):
    keys = [
        "AWSLogs/1/CloudTrail-Digest/us-east-1/2026/01/01/d.json.gz",
        "AWSLogs/1/CloudTrail/us-east-1/2026/01/01/a.json.gz",
        "AWSLogs/1/CloudTrail/us-east-1/2026/01/01/b.json.gz",
        "AWSLogs/1/CloudTrail/us-east-1/2026/01/02/a.json.gz",
        "AWSLogs/1/CloudTrail/us-east-1/2026/01/10/a.json.gz",
        "AWSLogs/1/CloudTrail/us-east-1/2026/02/01/a.json.gz",
        "AWSLogs/1/CloudTrail/us-east-2/2026/01/01/a.json.gz",
    ]
    for key in keys:
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(key.encode())
    store = FolderStore(tmp_path)

    assert [o.key for o in store.list("AWSLogs/")] == sorted(keys)
    prefix = "AWSLogs/1/CloudTrail/us-east-1/"
    listed = [o.key for o in store.list(prefix, start_after=prefix + "2026/01/01/b.json.gz")]
    assert listed == [prefix + "2026/01/02/a.json.gz", prefix + "2026/01/10/a.json.gz", prefix + "2026/02/01/a.json.gz"]
    assert store.get(keys[1]) == keys[1].encode()
    assert [o.key for o in store.list("AWSLogs/9/")] == []
