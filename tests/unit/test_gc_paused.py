"""Windows timed with Python's collector paused (`[run] pause_gc`), as timeit times its loops."""

import gc

from pytest_specdecode.measure.measurer import gc_paused


def test_the_collector_is_off_inside_a_window_and_back_on_after_even_on_failure():
    assert gc.isenabled()
    try:
        with gc_paused():
            assert not gc.isenabled()
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert gc.isenabled()


def test_pause_gc_false_leaves_it_alone_and_a_disabled_collector_stays_disabled():
    with gc_paused(False):
        assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the user's choice, not ours to undo
    finally:
        gc.enable()
