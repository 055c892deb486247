"""Avro contracts of every trailhouse topic (`*.avsc`) and the codec that reads and writes them."""

from schemas.codec import Codec, UndecodableMessage

__all__ = ["Codec", "UndecodableMessage"]
