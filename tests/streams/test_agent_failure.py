"""A worker whose agent fails stops (exit status 1) instead of being restarted by Faust, forever, behind a /healthz
that stays 200. Checked by hand on a real worker process (NOTES.md): it exits 1 within a second of the failure."""

import asyncio

import pytest

from trailhouse.config import Settings


class FailingStream:
    """A Faust stream whose reading fails, as a bug or an error Kafka returns out of the agent's loop would."""

    def noack(self) -> "FailingStream":
        return self

    async def events(self):
        raise RuntimeError("the agent's loop failed")
        yield  # an async generator, as Faust's


def _app_crashes(tmp_path, monkeypatch, *, stopping: bool) -> list[BaseException]:
    from streams.app import build_app

    app = build_app(Settings(data_dir=tmp_path), "127.0.0.1:9", web_port=6066)
    crashes: list[BaseException] = []

    async def crash(reason: BaseException) -> None:
        crashes.append(reason)

    monkeypatch.setattr(app, "crash", crash)
    monkeypatch.setattr(type(app), "should_stop", property(lambda _: stopping))
    with pytest.raises(RuntimeError, match="the agent's loop failed"):  # and Faust sees the failure too
        asyncio.run(app.agents["process"].fun(FailingStream()))
    return crashes


def test_an_agent_that_fails_crashes_the_worker_app(tmp_path, monkeypatch):
    [reason] = _app_crashes(tmp_path, monkeypatch, stopping=False)
    assert isinstance(reason, RuntimeError) and str(reason) == "the agent's loop failed"


def test_an_agent_that_fails_while_the_worker_stops_lets_it_stop_as_it_would(tmp_path, monkeypatch):
    assert _app_crashes(tmp_path, monkeypatch, stopping=True) == []
