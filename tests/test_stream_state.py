"""The subprocess transport's stream rules, one step at a time: no process, no task."""

from __future__ import annotations

import pytest

from ctlwire.transport import InputBroken, InputClosed, TransportError
from ctlwire.transport._stream import SMALL_READ, Input, Life, Output, StreamState


def test_life_starts_once_and_closes_once() -> None:
    state = StreamState()
    assert state.life is Life.NEW
    state.start()
    assert state.life is Life.RUNNING
    with pytest.raises(RuntimeError, match="already started"):
        state.start()
    assert state.begin_close() is True
    assert state.life is Life.CLOSING
    assert state.begin_close() is False  # a second close waits for the first
    state.closed()
    assert state.life is Life.CLOSED and state.begin_close() is False
    with pytest.raises(RuntimeError):
        state.start()


def test_a_transport_closed_before_it_started_cannot_start() -> None:
    state = StreamState()
    assert state.begin_close() is True
    with pytest.raises(RuntimeError, match="already started"):
        state.start()


def test_each_input_state_refuses_writes_with_its_own_error() -> None:
    state = StreamState()
    assert state.input is Input.OPEN
    state.end_input()
    assert state.input is Input.CLOSED
    error = state.write_error()
    assert isinstance(error, InputClosed) and "already closed" in str(error)
    state.release_input()  # closing later does not hide that the input was ended
    assert state.input is Input.CLOSED

    released = StreamState()
    released.release_input()
    assert released.input is Input.RELEASED
    error = released.write_error()
    assert type(error) is TransportError and "transport is closed" in str(error)
    released.end_input()  # end_input after aclose changes nothing
    assert released.input is Input.RELEASED


def test_a_cut_line_breaks_the_input_for_good_but_it_can_still_be_ended() -> None:
    state = StreamState()
    assert state.break_input() is True
    error = state.write_error()
    assert isinstance(error, InputBroken) and "part-way through a line" in str(error)
    assert state.break_input() is False  # already broken: nothing new to report
    state.end_input()
    assert state.input is Input.CLOSED
    assert state.break_input() is False  # a closed input cannot break


def test_short_reads_wait_for_readiness_and_full_reads_do_not() -> None:
    state = StreamState()
    assert not state.must_wait  # the first read is tried at once
    state.read(SMALL_READ)  # a flood: read again straight away
    assert state.output is Output.READY and not state.must_wait
    state.read(SMALL_READ - 1)  # slower than us: wait next time
    assert state.output is Output.DRAINED and state.must_wait
    state.read(1)
    assert state.must_wait
    state.read(SMALL_READ * 4)
    assert not state.must_wait


def test_a_read_that_finds_nothing_waits_unless_stdout_is_orphaned() -> None:
    state = StreamState()
    assert state.would_block() is True
    assert state.must_wait
    state.orphan()
    assert state.orphaned and not state.must_wait
    state.read(10)  # what a descendant wrote is still read, but never waited for
    assert state.orphaned
    assert state.would_block() is False  # nothing left: read as the end
    state.ended()
    assert state.at_end


def test_the_end_of_stdout_is_never_undone_by_an_orphan() -> None:
    state = StreamState()
    state.ended()
    state.orphan()
    assert state.at_end and not state.orphaned
