"""Decoding one image while the next one is predicted (a two-stage producer/consumer).

:class:`Overlapped` is ``produce(key) = second(first(key))`` for keys asked for in a known
order: when ``key`` i is asked for, ``second`` of it runs in one worker thread while ``first`` of
key i+1 runs in the caller (the forward releases the GIL; scipy and scikit-image partly do), and
the result of key i is returned. Results come in order; log lines are held back and written as a
sequential run writes them (each key's ``first`` lines, then its ``second`` lines, when its result
is asked for); an exception is raised where a sequential run raises it: an error of ``first(i+1)``
when key i+1 is asked for (after key i's result was used), an error of ``second(i)`` when key i is.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from biapy_runner import log

K = TypeVar("K", bound=Hashable)


@dataclass
class _Ahead:
    """``first`` of one key done ahead: its value or exception, its held log lines, and the
    future of its ``second``."""

    lines: list[log.Held] = field(default_factory=list)
    value: Any = None
    error: BaseException | None = None
    second: Future | None = None


class Overlapped(Generic[K]):
    """``second(first(key))`` for ``keys`` asked for in order, ``second`` of one key beside
    ``first`` of the next (see the module); a context manager that waits for its worker on exit.
    With fewer than two keys it runs sequentially, without a thread."""

    def __init__(
        self, first: Callable[[K], Any], second: Callable[[Any], Any], keys: Sequence[K]
    ) -> None:
        self.first, self.second = first, second
        self.keys = list(keys)
        self._ahead: dict[int, _Ahead] = {}
        self._next = 0
        self._pool = ThreadPoolExecutor(1, "decode") if len(self.keys) > 1 else None

    def __enter__(self) -> Overlapped[K]:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            for ahead in self._ahead.values():
                if ahead.second is not None:
                    ahead.second.cancel()
            self._pool.shutdown(wait=True)

    def __call__(self, key: K) -> Any:
        """The result of ``key``, which must be the next of ``keys``."""
        index = self._next
        if index >= len(self.keys) or self.keys[index] != key:
            raise ValueError(f"{key!r} asked for out of order (expected the keys {self.keys})")
        self._next += 1
        if self._pool is None:
            return self.second(self.first(key))
        current = self._ahead.pop(index, None) or self._start(index, hold=False)
        log.emit(current.lines)
        if current.error is not None:
            raise current.error
        if index + 1 < len(self.keys):
            self._ahead[index + 1] = self._start(index + 1, hold=True)
        assert current.second is not None
        failed: _Failed | None = None
        try:
            value, lines = current.second.result()
        except _Failed as err:
            failed = err
        if failed is not None:  # raised here, outside the handler: its chain stays its own
            log.emit(failed.lines)
            raise failed.error
        log.emit(lines)
        return value

    def _start(self, index: int, hold: bool) -> _Ahead:
        """Run ``first`` of key ``index`` here (its lines held when ahead of its turn) and submit
        its ``second`` to the worker."""
        ahead = _Ahead()
        try:
            if hold:
                with log.held() as ahead.lines:
                    ahead.value = self.first(self.keys[index])
            else:
                ahead.value = self.first(self.keys[index])
        except Exception as err:  # noqa: BLE001 - raised when this key's result is asked for
            ahead.error = err
            return ahead
        assert self._pool is not None
        ahead.second = self._pool.submit(self._second, ahead.value)
        return ahead

    def _second(self, value: Any) -> tuple[Any, list[log.Held]]:
        with log.held() as lines:
            try:
                return self.second(value), list(lines)
            except Exception as err:  # noqa: BLE001 - re-raised in the caller's thread
                raise _Failed(err, list(lines)) from err


class _Failed(Exception):
    """An exception of ``second`` with the log lines held until it happened."""

    def __init__(self, error: BaseException, lines: list[log.Held]) -> None:
        super().__init__(str(error))
        self.error, self.lines = error, lines
