"""How often a trio task goes through the scheduler, for tests of "does not wait"."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio


class _TaskSteps(trio.abc.Instrument):
    """Counts the times one task gave the scheduler a turn."""

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.count = 0

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.count += 1


@contextmanager
def scheduler_trips() -> Iterator[_TaskSteps]:
    """How often the current task yields to the scheduler inside the block.

    ``trio.testing.assert_no_checkpoints`` cannot say this: it also counts a
    cancellation check that did not yield, which a send that does not wait
    makes on purpose.
    """
    steps = _TaskSteps(trio.lowlevel.current_task())
    trio.lowlevel.add_instrument(steps)
    try:
        yield steps
    finally:
        trio.lowlevel.remove_instrument(steps)
