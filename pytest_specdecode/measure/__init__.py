"""Measuring: the plan of windows, the sides (spec, and vanilla from memo, store or engine), the
checks on each window, losslessness and divergences.

`Measurer` is public: a conftest's `pytest_specdecode_measurer` hook returns one (docs/markers.md)."""

from .measurer import Measurer

__all__ = ["Measurer"]
