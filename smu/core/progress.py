"""Where the library sends progress. The default shows nothing; ``smu.cli.ui`` draws it with Rich on a
terminal and as timestamped lines in a log.

Its own module (no torch), so the terminal layer can import it without the training stack.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

LONG_ON_CPU_S = 600.0
"""An estimate beyond this on a CPU comes with a hint to shorten the run."""


@dataclass(frozen=True)
class Estimate:
    """What a command is about to do and how long that should take, said before the first epoch.

    ``images`` counts training-step images (forward, backward and update) summed over everything the job
    trains; passes without an update (evaluation, Fisher, saliency) are counted at their share of a
    training step's cost. ``seconds`` is ``images`` over the speed measured on this device by a few
    training steps of the job's own model (``smu.execution.estimate.calibrate``), None when unknown."""

    work: str
    """What will run, in words: ``dense 182 epochs, then 5 rounds of 174 epochs``."""
    images: int
    seconds: float | None
    images_per_second: float | None
    device: str

    def line(self) -> str:
        """The plan as one line: what, how many images, about how long, and a hint when long on a CPU."""
        if self.seconds is None:
            return f"plan: {self.work} (time not estimated)"
        speed = f"{self.images_per_second:,.0f} img/s over {self.images:,} images"
        text = f"plan: {self.work}; about {duration(self.seconds)} on {self.device} ({speed})"
        if self.device.startswith("cpu") and self.seconds > LONG_ON_CPU_S:
            text += "; fewer --epochs or a GPU (--device cuda) make it shorter"
        return text

    def side_by_side(self, parallel: int | None) -> Estimate:
        """The plan when an executor runs ``parallel`` of its steps at a time on this machine (the time
        divided, as if they all took as long); None: it sends them elsewhere, so the time is unknown."""
        if parallel is None:
            return replace(self, seconds=None, images_per_second=None)
        if parallel == 1 or self.seconds is None:
            return self
        return replace(self, work=f"{self.work}, {parallel} at a time", seconds=self.seconds / parallel)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def epochs(n: int) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def duration(seconds: float) -> str:
    """A length of time as a person reads it: ``45 s``, ``12 min``, ``7.2 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Reporter:
    """Progress of a long step: ``start`` a bar of ``total`` units (None: unknown), ``update`` it (with
    ``status``: a line of text beside it; ``images``: training images done since the last update, which
    advance the whole job's plan), ``note`` a line; ``bar`` another bar in the same display; ``plan`` says
    what the whole job will do before it starts."""

    def start(self, label: str, total: int | None) -> None: ...

    def update(self, advance: int = 0, **fields: object) -> None: ...

    def stop(self) -> None: ...

    def note(self, message: str) -> None: ...

    def plan(self, estimate: Estimate) -> None:
        """The job's plan: shown as one line, and the total its ETA counts down (in training images)."""
        self._planned = True

    def planned(self) -> bool:
        """Whether the job already said its plan: a recipe's or an audit's steps need not time their own."""
        return getattr(self, "_planned", False)

    def bar(self) -> Reporter:
        """A reporter for one more bar shown with this one (the Ray executor: one per worker)."""
        return Reporter()
