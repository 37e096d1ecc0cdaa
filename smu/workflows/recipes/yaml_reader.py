"""YAML from others, read within bounds: recipes, ``key=value`` overrides, a run folder's recipe.yaml.

``yaml.safe_load`` runs no code, but aliases let a few hundred bytes stand for billions of values (each
level of ``b: &b [*a, *a, ...]`` multiplies), and everything that walks the result afterwards (checks,
error messages, a repr) pays for the whole expansion. So the document is composed first, its size
counted as if every alias were expanded (each shared node once, so counting is linear in the text), and
only a document of a recipe's size is built. A key written twice in one mapping is refused too: YAML
keeps the last silently, so `seeds: [1]` ... `seeds: [2]` would run other seeds than the reader sees.
"""

from __future__ import annotations

from typing import Any

import yaml

from smu.core.errors import UsageError, shown

MAX_CHARS = 1 << 20
"""Largest text read (a recipe is a few KB; a 1,000-seed sweep is about 5 KB)."""
MAX_VALUES = 100_000
"""Most values (scalars, lists, mappings) the document may hold with its aliases expanded."""
MAX_DEPTH = 32
"""Deepest nesting (a recipe nests four levels)."""

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML was built with it: faster


def load_yaml(text: str, what: str) -> Any:
    """The value of one YAML document, or a one-line UsageError naming ``what`` (e.g. "recipe 'x.yaml'")."""
    if len(text) > MAX_CHARS:
        raise UsageError(
            f"{what} is {len(text):,} characters long, more than any recipe ({MAX_CHARS:,} at most)",
            hint="is it the right file?",
        )
    loader = Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        values, depth = expanded_size(node)
        if values > MAX_VALUES:
            raise UsageError(
                f"{what} expands to more than {MAX_VALUES:,} values (aliases that multiply, or nest in "
                "themselves)",
                hint="write the values out; a recipe needs no aliases of aliases",
            )
        if depth > MAX_DEPTH:
            raise too_deep(what)
        if twice := repeated_key(node):
            lines = sorted({key.start_mark.line + 1 for key in twice})
            where = " and ".join(map(str, lines))
            raise UsageError(
                f"{what} sets {shown(twice[0].value)} twice (line{'s' * (len(lines) - 1)} {where})",
                hint="keep one of them; YAML would silently use the last",
            )
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise UsageError(
            f"{what} is not valid YAML{where} ({problem})", hint="check the indentation"
        ) from None
    except RecursionError:  # the pure-Python parser recurses once per level of nesting
        raise too_deep(what) from None
    finally:
        loader.dispose()


def too_deep(what: str) -> UsageError:
    return UsageError(f"{what} nests deeper than {MAX_DEPTH} levels", hint="is it the right file?")


def expanded_size(root: yaml.Node) -> tuple[float, int]:
    """(values, depth) of the document with every alias expanded; infinite for an alias inside itself.

    Iterative, so a deep document cannot exhaust the stack; each node is sized once and shared nodes
    (aliases) add their size again wherever they appear.
    """
    size: dict[int, float] = {}
    depth: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        children = child_nodes(node)
        if children_done:
            open_.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            if size[key] > MAX_VALUES:  # stop counting early: the answer is already "too big"
                return size[key], depth[key]
            continue
        if key in size:
            continue
        if key in open_:
            return float("inf"), 0
        open_.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)
    return size[id(root)], depth[id(root)]


def child_nodes(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


MERGE = "tag:yaml.org,2002:merge"


def repeated_key(root: yaml.Node) -> tuple[yaml.ScalarNode, yaml.ScalarNode] | None:
    """The first key written twice in one mapping (both nodes), or None; each node is looked at once.

    Keys are compared as written with their resolved tag, so `1` and `'1'` differ (as YAML's values do);
    `<<` merges may override keys, as YAML means them to.
    """
    seen_nodes: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: dict[tuple[str, str], yaml.ScalarNode] = {}
            for key, _ in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != MERGE:
                    if (key.tag, key.value) in keys:
                        return keys[key.tag, key.value], key
                    keys[key.tag, key.value] = key
        stack.extend(child_nodes(node))
    return None
