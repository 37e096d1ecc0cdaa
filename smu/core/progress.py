"""Where the library sends progress. The default shows nothing; ``smu.cli.ui`` draws it with Rich.

Its own module (no torch), so the terminal layer can import it without the training stack.
"""

from __future__ import annotations


class Reporter:
    """Progress of a long step: ``start`` a bar of ``total`` units (None: unknown), ``update`` it (with
    ``status``: a line of text beside it), ``note`` a line; ``bar`` another bar in the same display."""

    def start(self, label: str, total: int | None) -> None: ...

    def update(self, advance: int = 0, **fields: object) -> None: ...

    def stop(self) -> None: ...

    def note(self, message: str) -> None: ...

    def bar(self) -> Reporter:
        """A reporter for one more bar shown with this one (the Ray executor: one per worker)."""
        return Reporter()
