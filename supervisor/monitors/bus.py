"""The in-process event bus: monitors publish, the trigger engine and live viewers listen."""

from __future__ import annotations

import sys
from collections.abc import Callable

from .events import Event

Listener = Callable[[Event], None]


class Bus:
    """Synchronous fan-out on the event loop; a failing listener never stops the others."""

    def __init__(self) -> None:
        # A tuple, replaced on (un)subscribe: publishing (100,000 times a second) needs
        # no copy to be safe against a listener that unsubscribes.
        self._listeners: tuple[Listener, ...] = ()
        self.published = 0

    def subscribe(self, listener: Listener) -> None:
        self._listeners = (*self._listeners, listener)

    def unsubscribe(self, listener: Listener) -> None:
        if listener in self._listeners:
            i = self._listeners.index(listener)
            self._listeners = self._listeners[:i] + self._listeners[i + 1 :]

    def publish(self, event: Event) -> None:
        self.published += 1
        for listener in self._listeners:
            try:
                listener(event)
            except Exception as exc:  # one bad listener must not blind the others
                print(
                    f"clawvisor: monitor listener failed on {type(event).__name__}: {exc!r}",
                    file=sys.stderr,
                )
