"""Predicting the next image while one image is decoded (a two-stage producer/consumer).

:class:`Overlapped` is ``produce(key) = second(first(key))`` for keys asked for in a known
order: once ``first`` of key i is done, ``first`` of key i+1 starts in one background thread
(the forward releases the GIL; scipy and scikit-image partly do) while ``second`` of key i runs
in the caller, whose result is then returned at once (and written, scored, ... by the caller
before key i+1 is asked for). Results come in order; the background thread's log lines are held
back and written when its key is asked for, so the log reads as a sequential run's; an exception
of ``first`` is raised when its key is asked for, as a sequential run raises it. The thread is a
daemon, and leaving the context waits for it (a stopped run waits for the prediction running
ahead, never for more).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

from biapy_runner import log

K = TypeVar("K", bound=Hashable)


class _Ahead:
    """``first(key)`` running in a daemon thread, with its log lines held."""

    def __init__(self, first: Callable[[Any], Any], key: Any) -> None:
        self.lines: list[log.Held] = []
        self.value: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(
            target=self._run, args=(first, key), name="predict-ahead", daemon=True
        )
        self.thread.start()

    def _run(self, first: Callable[[Any], Any], key: Any) -> None:
        with log.held() as self.lines:
            try:
                self.value = first(key)
            except BaseException as err:  # noqa: BLE001 - raised when the key is asked for
                self.error = err

    def result(self) -> Any:
        """Wait for the value (interruptible by signals), write the held lines, raise the
        thread's exception if it had one."""
        self.thread.join()
        log.emit(self.lines)
        if self.error is not None:
            raise self.error
        return self.value


class Overlapped(Generic[K]):
    """``second(first(key))`` for ``keys`` asked for in order, ``first`` of the next key
    beside ``second`` of this one (see the module). With fewer than two keys it runs
    sequentially, without a thread."""

    def __init__(
        self, first: Callable[[K], Any], second: Callable[[Any], Any], keys: Sequence[K]
    ) -> None:
        self.first, self.second = first, second
        self.keys = list(keys)
        self._ahead: _Ahead | None = None
        self._next = 0

    def __enter__(self) -> Overlapped[K]:
        return self

    def __exit__(self, *exc: object) -> None:
        """Wait for a prediction still running ahead (a run stopped by an error or a signal):
        a forward left running beside the interpreter's exit or the next job can crash it."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.thread.join()

    def __call__(self, key: K) -> Any:
        """The result of ``key``, which must be the next of ``keys``."""
        index = self._next
        if index >= len(self.keys) or self.keys[index] != key:
            raise ValueError(f"{key!r} asked for out of order (expected the keys {self.keys})")
        self._next += 1
        ahead, self._ahead = self._ahead, None
        value = ahead.result() if ahead is not None else self.first(key)
        if index + 1 < len(self.keys):
            self._ahead = _Ahead(self.first, self.keys[index + 1])
        return self.second(value)
