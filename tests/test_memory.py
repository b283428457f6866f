"""memory.back_soon switches numpy's huge-page advice off while a backing thread runs
(the advice's madvise waits for the memory map the backing holds), and back as it was
once the last backing thread is done. (Backing itself: tests/test_network_build.py.)"""

import os
import threading

import numpy as np
import pytest

from nudgesim import memory


def advice() -> bool:
    """numpy's huge-page advice now, left as it is."""
    switch = memory._numpy_advice()
    was = switch(True)
    switch(was)
    return bool(was)


@pytest.fixture(autouse=True)
def kept_advice():
    """numpy's setting before the test (True on Linux >= 4.6 unless
    NUMPY_MADVISE_HUGEPAGE=0), put back after it."""
    was = advice()
    yield was
    memory._numpy_advice()(was)


@pytest.fixture
def gates(monkeypatch):
    """back() held until the test opens the gate numbered by the array's first value."""
    opened = {k: threading.Event() for k in range(3)}

    def held(a):
        assert opened[int(a[0])].wait(10)
        return True

    monkeypatch.setattr(memory, "back", held)
    yield opened
    for gate in opened.values():
        gate.set()


def test_numpy_has_the_switch():
    # numpy 1.26 and 2.x both have it; without it backing still works (below), but the
    # backing thread would hold up numpy's large allocations again
    assert memory._numpy_advice() is not None


@pytest.mark.parametrize("before", [True, False])
def test_advice_is_off_while_any_backing_thread_runs_and_then_as_it_was(gates, before):
    memory._numpy_advice()(before)
    first = memory.back_soon(np.zeros(4) + 0)
    second = memory.back_soon(np.zeros(4) + 1)
    assert advice() is False
    gates[0].set()
    first.join(10)
    assert not first.is_alive() and advice() is False  # the second still runs
    gates[1].set()
    second.join(10)
    assert not second.is_alive() and advice() is before
    assert memory._backing == 0


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_advice_comes_back_when_backing_fails(monkeypatch, kept_advice):
    def broken(a):
        raise OSError("no")

    monkeypatch.setattr(memory, "back", broken)
    memory.back_soon(np.zeros(4)).join(10)
    assert advice() is kept_advice and memory._backing == 0


def test_backing_works_where_numpy_has_no_switch(monkeypatch, gates):
    monkeypatch.setattr(memory, "_numpy_advice", lambda: None)
    thread = memory.back_soon(np.zeros(4) + 2)
    assert memory._backing == 1
    gates[2].set()
    thread.join(10)
    assert not thread.is_alive() and memory._backing == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork with threads running
def test_a_child_forked_while_backing_has_the_advice_back(gates):
    memory._numpy_advice()(True)
    thread = memory.back_soon(np.zeros(4) + 0)
    assert advice() is False
    pid = os.fork()
    if pid == 0:  # the child, where no backing thread runs: it never returns to pytest
        ok = False
        try:
            ok = advice() is True and memory._backing == 0
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert advice() is False  # the parent's thread still runs
    gates[0].set()
    thread.join(10)
    assert advice() is True
