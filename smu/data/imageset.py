"""A set of images and labels: one tensor on the compute device, or lazy rows of a memory-mapped file."""

from __future__ import annotations

from collections.abc import Callable

import torch

Edit = tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]
"""Rows to change (bool per row of a lazy set, on the CPU) and the change (uint8 batch -> batch)."""


class ImageSet:
    """Images (uint8, N×C×H×W) and labels (int64, N), and where a dataset has sub-classes (CIFAR-20, a
    two-level image folder) each image's fine label, ``fine`` (int64, N; None otherwise).

    A set holds its images as one tensor, ``x``, on the compute device; a batch is an index gather
    from it. A *lazy* set, made by :meth:`mapped` over a dataset too large for memory, holds the
    whole memory-mapped tensor (on the CPU) and the rows that are its own, and reads only the rows a
    batch asks for (:meth:`take`), moving them to ``device``. Its subsets, joins and relabellings
    stay lazy; an edit (a backdoor trigger) is applied to the rows it marks as they are read, so the
    file is never written. ``x`` of a lazy set gathers every row into memory: use ``take``. The fine
    labels follow the rows through subsets, joins and moves, beside ``y``.
    """

    __slots__ = ("_images", "_rows", "_edits", "y", "fine", "device")

    def __init__(self, x: torch.Tensor, y: torch.Tensor, fine: torch.Tensor | None = None):
        self._images, self.y, self.fine, self.device = x, y, fine, x.device
        self._rows: torch.Tensor | None = None
        self._edits: tuple[Edit, ...] = ()

    @classmethod
    def mapped(
        cls,
        images: torch.Tensor,
        y: torch.Tensor,
        device: torch.device | str,
        fine: torch.Tensor | None = None,
    ) -> ImageSet:
        """A lazy set of every row of ``images`` (CPU, typically memory-mapped), batches on ``device``."""
        fine = None if fine is None else fine.to(device)
        return cls._lazy(images, torch.arange(len(images)), y.to(device), torch.device(device), (), fine)

    @classmethod
    def _lazy(
        cls,
        images: torch.Tensor,
        rows: torch.Tensor,
        y: torch.Tensor,
        device: torch.device,
        edits: tuple,
        fine: torch.Tensor | None,
    ) -> ImageSet:
        out = cls.__new__(cls)
        out._images, out._rows, out._edits, out.y, out.fine, out.device = images, rows, edits, y, fine, device
        return out

    @property
    def lazy(self) -> bool:
        return self._rows is not None

    @property
    def x(self) -> torch.Tensor:
        """Every image, on ``device`` (for a lazy set, a gather of all its rows)."""
        return self._images if self._rows is None else self.take(slice(None))

    def __len__(self) -> int:
        return len(self.y)

    def __repr__(self) -> str:
        kind = "lazy " if self.lazy else ""
        return f"ImageSet({kind}{len(self)} images {tuple(self._images.shape[1:])} on {self.device})"

    def take(self, index: slice | torch.Tensor) -> torch.Tensor:
        """The uint8 images at ``index`` (a slice, or an index tensor on any device), on ``device``."""
        if self._rows is None:
            if isinstance(index, torch.Tensor):
                index = index.to(self._images.device)
            return self._images[index]
        if isinstance(index, torch.Tensor):
            index = index.cpu()
        # Advanced indexing, not index_select: on uint8 rows this torch's index_select runs 30x slower.
        x = self._images[self._rows[index]]
        for marks, edit in self._edits:
            marked = marks[index]
            if marked.any():
                x[marked] = edit(x[marked])
        if self.device.type == "cuda":
            # From pinned memory the copy runs asynchronously (a memcpy of the batch here: cheap).
            return x.pin_memory().to(self.device, non_blocking=True)
        return x.to(self.device)

    def subset(self, index: torch.Tensor | slice) -> ImageSet:
        if self._rows is None:
            if isinstance(index, torch.Tensor):
                index = index.to(self.y.device)
            return ImageSet(self._images[index], self.y[index], self._fine_at(index))
        if isinstance(index, torch.Tensor):
            index = index.cpu()
        at = index.to(self.y.device) if isinstance(index, torch.Tensor) else index
        edits = tuple((marks[index], edit) for marks, edit in self._edits)
        return self._lazy(self._images, self._rows[index], self.y[at], self.device, edits, self._fine_at(at))

    def _fine_at(self, index: torch.Tensor | slice) -> torch.Tensor | None:
        return None if self.fine is None else self.fine[index]

    def to(self, device: torch.device | str) -> ImageSet:
        fine = None if self.fine is None else self.fine.to(device)
        if self._rows is None:
            return ImageSet(self._images.to(device), self.y.to(device), fine)
        return self._lazy(
            self._images, self._rows, self.y.to(device), torch.device(device), self._edits, fine
        )

    def with_labels(self, y: torch.Tensor) -> ImageSet:
        """The same images with labels ``y`` (and the same fine labels)."""
        if self._rows is None:
            return ImageSet(self._images, y, self.fine)
        return self._lazy(self._images, self._rows, y, self.device, self._edits, self.fine)

    def stamped(self, index: torch.Tensor | None, edit: Callable[[torch.Tensor], torch.Tensor]) -> ImageSet:
        """The set with ``edit`` (uint8 batch -> batch) applied to the images at ``index`` (None: all)."""
        if self._rows is None:
            if index is None:
                return ImageSet(edit(self._images), self.y, self.fine)
            x = self._images.clone()
            where = index.to(x.device)
            x[where] = edit(x[where])
            return ImageSet(x, self.y, self.fine)
        marks = torch.zeros(len(self), dtype=torch.bool)
        marks[slice(None) if index is None else index.cpu()] = True
        edits = (*self._edits, (marks, edit))
        return self._lazy(self._images, self._rows, self.y, self.device, edits, self.fine)

    @staticmethod
    def join(sets: list[ImageSet]) -> ImageSet:
        """The sets one after another. Lazy sets over the same images with the same edits stay lazy; the
        fine labels are kept where every set has them."""
        first = sets[0]
        same = all(
            s.lazy
            and s._images is first._images
            and s.device == first.device
            and [e for _, e in s._edits] == [e for _, e in first._edits]
            for s in sets
        )
        y = torch.cat([s.y for s in sets])
        fine = None if any(s.fine is None for s in sets) else torch.cat([s.fine for s in sets])
        if not same:
            return ImageSet(torch.cat([s.x for s in sets]), y, fine)
        edits = tuple(
            (torch.cat([s._edits[i][0] for s in sets]), edit) for i, (_, edit) in enumerate(first._edits)
        )
        return first._lazy(first._images, torch.cat([s._rows for s in sets]), y, first.device, edits, fine)
