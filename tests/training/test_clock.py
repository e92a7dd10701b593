"""FitClock: the fit's seconds summed across resumes, and unknown (None) after a checkpoint that has no clock."""

from __future__ import annotations

import pytest

from uae.training import clock as clock_module
from uae.training.clock import FitClock


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """perf_counter reads the last value of this list: the test sets the time."""
    times = [1000.0]
    monkeypatch.setattr(clock_module.time, "perf_counter", lambda: times[-1])
    return times


def test_a_fresh_fit_counts_from_setup(now: list[float]) -> None:
    clock = FitClock()
    clock.setup(None, None, "fit")  # type: ignore[arg-type]
    now.append(1042.5)
    assert clock.seconds() == 42.5
    assert clock.state_dict() == {"seconds": 42.5}


def test_a_resumed_fit_adds_its_seconds_to_the_checkpoints(now: list[float]) -> None:
    clock = FitClock()
    clock.setup(None, None, "fit")  # type: ignore[arg-type]
    clock.on_load_checkpoint(None, None, {"callbacks": {"FitClock": {"seconds": 300.0}}})  # type: ignore[arg-type]
    clock.load_state_dict({"seconds": 300.0})  # Lightning calls both, in this order, when the state is there
    now.append(1010.0)
    assert clock.seconds() == 310.0
    assert clock.state_dict() == {"seconds": 310.0}  # the next checkpoint carries the total on


def test_a_checkpoint_without_a_clock_leaves_the_total_unknown(now: list[float]) -> None:
    clock = FitClock()
    clock.setup(None, None, "fit")  # type: ignore[arg-type]
    clock.on_load_checkpoint(None, None, {"callbacks": {}})  # type: ignore[arg-type]  # no load_state_dict follows
    now.append(1500.0)
    assert clock.seconds() is None
    assert clock.state_dict() == {}  # and later checkpoints do not pretend to know it


def test_the_state_key_is_the_class_name() -> None:
    """The name the checkpoints store the clock under: renaming the class would orphan every saved clock."""
    assert FitClock().state_key == "FitClock"
