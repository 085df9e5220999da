"""Hooks that conftest files and other plugins can implement (declared by `plugin.pytest_addhooks`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .measure.measurer import Measurer


@pytest.hookspec(firstresult=True)
def pytest_specdecode_measurer(config: pytest.Config) -> Measurer | None:
    """The measurer (engines, and what was measured on them) for this session to use.

    Called once, when the session first needs an engine. Return a
    `pytest_specdecode.measure.measurer.Measurer` to use engines that outlive the session or come from
    elsewhere: a plugin's own test suite runs many in-process pytester sessions and shares one set
    of engines between them; an `EnginePool` takes a factory per mode, so engines can be any
    object with the `Engine` protocol. Whoever returns a measurer owns it: the session neither
    stops its engines nor forgets what it measured, and a config it measured before is not
    measured again. Return None to let the session make its own, stopped when the session ends.
    """
