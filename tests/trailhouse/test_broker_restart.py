"""When `trailhouse run` restarts its embedded broker, and what it saves when the pipeline will not drain."""

from dataclasses import dataclass, field

import pytest

from trailhouse.config import Settings
from trailhouse.errors import TrailhouseError
from trailhouse.pipeline import StageDied, _broker_full, _drain_and_save

SETTINGS = Settings(embedded_broker_max_mb=1024)


@dataclass
class Broker:
    """What the restart decision reads of the embedded broker, and what it is asked to save."""

    resident: float | None = None
    drained_topics: list[str] = field(default_factory=lambda: ["trailhouse.checkpoints", "worker-state"])
    saved: list[list[str]] = field(default_factory=list)

    def resident_mb(self) -> float | None:
        return self.resident

    def save(self, topics: list[str]) -> None:
        self.saved.append(list(topics))


@dataclass
class Stages:
    failure: Exception | None = None

    def wait_drained(self, *, timeout_s: float) -> None:
        if self.failure is not None:
            raise self.failure


@pytest.mark.parametrize(
    ("resident", "saved", "max_mb", "full"),
    [
        (2000.0, True, 1024, True),
        (1000.0, True, 1024, False),  # under the limit
        (2000.0, False, 1024, False),  # no save since the stages started: a restart would go back
        (2000.0, True, 0, False),  # 0 = never
        (None, True, 1024, False),  # no /proc: nothing to go by
    ],
)
def test_the_broker_is_restarted_only_past_its_limit_and_after_a_save(resident, saved, max_mb, full):
    settings = SETTINGS.with_(embedded_broker_max_mb=max_mb)
    assert _broker_full(settings, Broker(resident), saved=saved) is full


def test_a_drained_pipeline_saves_its_checkpoints_state_and_registry():
    broker = Broker()
    _drain_and_save(SETTINGS, Stages(), broker, restarting=True)
    assert broker.saved == [["trailhouse.checkpoints", "worker-state", SETTINGS.topic_registry]]


def test_a_restart_that_cannot_drain_keeps_the_last_saved_checkpoints():
    broker = Broker()
    _drain_and_save(SETTINGS, Stages(TrailhouseError("the worker did not catch up")), broker, restarting=True)
    assert broker.saved == [[SETTINGS.topic_registry]], "checkpoints past the stored events would skip them"


@pytest.mark.parametrize(
    ("failure", "restarting"),
    [(TrailhouseError("the worker did not catch up"), False), (StageDied("the sink stage exited"), True)],
)
def test_a_stop_that_cannot_drain_and_a_dead_stage_still_fail_the_run(failure, restarting):
    broker = Broker()
    with pytest.raises(TrailhouseError):
        _drain_and_save(SETTINGS, Stages(failure), broker, restarting=restarting)
    assert broker.saved == []
