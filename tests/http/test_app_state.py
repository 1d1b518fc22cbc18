"""`app.state` keeps starlette's State behaviour with its values as plain attributes."""

from __future__ import annotations

import pytest
from starlette.datastructures import State

from proxy.http.app import AppState, create_app
from tests.http.conftest import settings_with


def test_values_are_plain_attributes_and_state_semantics_hold() -> None:
    state = AppState()
    state.upstream = "u"
    assert isinstance(state, State)
    assert vars(state)["upstream"] == "u"  # found by the normal lookup, no __getattr__
    assert state._state["upstream"] == "u"
    del state.upstream
    with pytest.raises(AttributeError):
        _ = state.upstream


def test_the_app_carries_settings_and_metrics_in_it() -> None:
    settings = settings_with()
    app = create_app(settings)
    assert isinstance(app.state, AppState)
    assert app.state.settings is settings
    assert app.state.metrics is not None
