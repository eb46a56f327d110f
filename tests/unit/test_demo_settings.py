"""How `streamrec demo` adjusts the settings its child processes get."""

from __future__ import annotations

import socket

from pydantic import SecretStr

from core.settings import ConsumerSettings, ModelSettings, ServingSettings
from tooling.demo.command import _demo_settings
from tooling.settings import ToolingSettings


def base(**serving: object) -> ToolingSettings:
    return ToolingSettings(  # type: ignore[call-arg]
        _env_file=None,
        serving=ServingSettings(**serving),  # type: ignore[arg-type]
        model=ModelSettings(epochs=20, factors=128),
        consumer=ConsumerSettings(metrics_port=0),
    )


def test_exit_caps_the_epochs_keeps_the_factors_and_the_api_polls_fast() -> None:
    fast = _demo_settings(base(), exit_after=True)
    assert (fast.model.epochs, fast.model.factors) == (5, 128)
    assert fast.serving.model_poll_s == 1.0
    full = _demo_settings(base(), exit_after=False)
    assert (full.model.epochs, full.model.factors) == (20, 128)


def test_the_demo_api_serves_the_demo_page_which_is_off_by_default() -> None:
    assert base().serving.demo_page is False
    assert _demo_settings(base(), exit_after=True).serving.demo_page is True


def test_a_one_off_ingest_key_only_when_none_is_configured() -> None:
    made = _demo_settings(base(), exit_after=True).serving.api_keys_ingest
    assert len(made) == 1 and made[0].get_secret_value().startswith("demo-")
    other = _demo_settings(base(), exit_after=True).serving.api_keys_ingest[0]
    assert other.get_secret_value() != made[0].get_secret_value()
    kept = _demo_settings(base(api_keys_ingest=[SecretStr("mine")]), exit_after=True)
    assert [k.get_secret_value() for k in kept.serving.api_keys_ingest] == ["mine"]
    admin = _demo_settings(base(api_keys_admin=[SecretStr("boss")]), exit_after=True)
    assert admin.serving.api_keys_ingest == []


def test_a_busy_consumer_metrics_port_is_moved() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        settings = base().model_copy(update={"consumer": ConsumerSettings(metrics_port=port)})
        moved = _demo_settings(settings, exit_after=True).consumer.metrics_port
    assert moved not in (0, port)
