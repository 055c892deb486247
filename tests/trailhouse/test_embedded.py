from trailhouse.config import Settings
from trailhouse.embedded import EmbeddedKafka


def test_a_new_embedded_broker_clears_the_workers_tables_of_the_previous_one(tmp_path):
    settings = Settings(data_dir=tmp_path)
    table = settings.worker_data_dir / "v1" / "tables" / "event-ids-0.db"
    table.mkdir(parents=True)
    (table / "CURRENT").write_text("MANIFEST-000001\n")
    with EmbeddedKafka(settings) as kafka:
        assert kafka.owner
        assert not table.exists(), "its changelog offsets belong to the previous broker's topics"
