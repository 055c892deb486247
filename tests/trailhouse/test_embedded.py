from pathlib import Path

import pytest
from confluent_kafka import Producer

from trailhouse.bench_probes import total
from trailhouse.config import Settings
from trailhouse.embedded import EmbeddedKafka
from trailhouse.errors import KafkaUnavailable
from trailhouse.kafka import end_offsets, producer_options


def test_a_new_embedded_broker_clears_the_workers_tables_of_the_previous_one(tmp_path):
    settings = Settings(data_dir=tmp_path)
    table = settings.worker_data_dir / "v1" / "tables" / "event-ids-0.db"
    table.mkdir(parents=True)
    (table / "CURRENT").write_text("MANIFEST-000001\n")
    with EmbeddedKafka(settings) as kafka:
        assert kafka.owner
        assert not table.exists(), "its changelog offsets belong to the previous broker's topics"


def test_a_restarted_broker_listens_anew_with_the_saved_topics_and_without_the_old_process(tmp_path):
    settings = Settings(data_dir=tmp_path)
    with EmbeddedKafka(settings) as kafka:
        first_bootstrap, first_pid = kafka.bootstrap, kafka._process.pid
        producer = Producer(producer_options(settings, first_bootstrap))
        producer.produce(settings.topic_registry, key=b"source-a", value=b"kept")
        producer.produce(settings.topic_raw, key=b"file", value=b"gone with the old broker")
        assert producer.flush(10) == 0
        kafka.save([settings.topic_registry])
        saved = kafka.snapshot(settings.topic_registry)
        assert [value for _, value in saved.values()] == [b"kept"]
        resident = kafka.resident_mb()
        assert resident is not None and resident > 1

        assert kafka.restart() != first_bootstrap
        assert not Path(f"/proc/{first_pid}").exists()
        assert kafka.snapshot(settings.topic_registry) == saved, "restored in its partition"
        assert total(end_offsets(settings, kafka.bootstrap, settings.topic_raw)) == 0


def test_only_the_owner_of_the_broker_can_restart_it(tmp_path):
    settings = Settings(data_dir=tmp_path)
    with EmbeddedKafka(settings), EmbeddedKafka(settings) as attached:
        assert not attached.owner
        with pytest.raises(KafkaUnavailable, match="only the process that started"):
            attached.restart()
