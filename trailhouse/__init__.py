"""trailhouse: CloudTrail logs from S3, live in Kafka, enriched by Faust, searchable in ClickHouse."""

__version__ = "0.1.0"
