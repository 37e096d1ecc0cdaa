"""The shipped recipes (``recipes/`` at the top of the repository, carried in the wheel), found by name
(``fashion-mnist/paper-table``) from any folder.

Reads YAML text only: ``smu recipes`` lists them without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from smu.core.errors import UsageError
from smu.core.registry import suggest

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable


@dataclass(frozen=True)
class Shipped:
    name: str
    """``quickstart``, ``fashion-mnist/paper-table``: the path under ``recipes/`` without ``.yaml``."""
    file: Traversable

    def text(self) -> str:
        return self.file.read_text(encoding="utf-8")

    def about(self) -> dict[str, Any]:
        """The keys ``smu recipes`` shows; a broken file shows as such instead of failing the listing."""
        try:
            raw = yaml.safe_load(self.text())
        except yaml.YAMLError:
            raw = None
        raw = raw if isinstance(raw, dict) else {}
        return {
            "name": self.name,
            "description": str(raw.get("description", "")),
            "dataset": str(raw.get("dataset", "digits")),
            "kind": str(raw.get("kind", "unlearn")),
            "estimated_time": str(raw.get("estimated_time", "")),
        }


def shipped_folder() -> Traversable:
    """The repository's ``recipes/``: in a wheel it is the package data of
    ``smu.workflows.recipes.shipped``; in a checkout (an editable install) it is read in place, beside
    the package."""
    inside = resources.files("smu").joinpath("workflows", "recipes", "shipped")
    return inside if inside.is_dir() else Path(__file__).resolve().parents[3] / "recipes"


def shipped() -> list[Shipped]:
    """Every shipped recipe, sorted by name."""
    found: list[Shipped] = []

    def walk(folder: Traversable, prefix: str) -> None:
        for item in folder.iterdir():
            if item.is_dir():
                walk(item, f"{prefix}{item.name}/")
            elif item.name.endswith(".yaml"):
                found.append(Shipped(prefix + item.name.removesuffix(".yaml"), item))

    walk(shipped_folder(), "")
    return sorted(found, key=lambda r: (r.name.count("/"), r.name))


def find(name: str) -> Shipped | None:
    name = name.removesuffix(".yaml").removeprefix("recipes/")
    return next((r for r in shipped() if r.name == name), None)


def read_recipe(name: str | Path) -> tuple[str, str]:
    """(label, YAML text) of a recipe file, or of the shipped recipe of that name."""
    path = Path(name)
    if path.is_file():
        try:
            return str(path), path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UsageError(
                f"recipe {str(path)!r} is not UTF-8 text", hint="is it the right file?"
            ) from None
    recipe = find(str(name))
    if recipe is not None:
        return recipe.name, recipe.text()
    names = [r.name for r in shipped()]
    close = suggest(str(name), names)
    raise UsageError(
        f"recipe {str(name)!r} is neither a file nor a shipped recipe",
        hint=(f"did you mean {close!r}? " if close else "") + "smu recipes lists the shipped ones",
    )
