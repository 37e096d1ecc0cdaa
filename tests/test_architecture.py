"""The layers of docs/ARCHITECTURE.md hold: no module imports a layer above its own, and no import cycle."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "smu"


def layers() -> list[tuple[str, list[str]]]:
    """(layer, module prefixes) from the table in docs/ARCHITECTURE.md, top to bottom."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    table = next(b for b in text.split("```")[1::2] if b.lstrip().startswith("layer"))
    rows = [re.match(r"^(\w+)\s+((?:smu[\w.]*\s*)+)$", line.strip()) for line in table.splitlines()]
    return [(m.group(1), m.group(2).split()) for m in rows if m]


def module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports(path: Path, known: set[str]) -> set[str]:
    """Every smu module ``path`` imports, anywhere in the file; ``from smu.x import y`` counts as
    ``smu.x.y`` when that is a module, else ``smu.x``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "smu"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "smu":
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
    return found - {"smu"}  # the root holds only the version and lazy names (checked below)


def graph() -> dict[str, set[str]]:
    names = module_names()
    return {name: imports(path, set(names)) - {name} for name, path in names.items()}


def layer_of(module: str, table: list[tuple[str, list[str]]]) -> int:
    """The index (0 = top) of the longest prefix in the table that names ``module``."""
    best = max(
        (
            (len(p), i)
            for i, (_, prefixes) in enumerate(table)
            for p in prefixes
            if module == p or module.startswith(p + ".")
        ),
        default=None,
    )
    assert best is not None, f"{module} is in no layer of docs/ARCHITECTURE.md: add it to the table"
    return best[1]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_a_layer_above_its_own():
    table = layers()
    assert [name for name, _ in table][:2] == ["interface", "workflows"] and table[-1][0] == "base"
    upward = [
        f"{a} ({table[layer_of(a, table)][0]}) imports {b} ({table[layer_of(b, table)][0]})"
        for a, targets in sorted(graph().items())
        for b in sorted(targets)
        if layer_of(b, table) < layer_of(a, table)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_the_package_root_imports_nothing_at_module_level():
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    assert all(
        n.module == "__future__" or not (n.module or "").startswith("smu")
        for n in top
        if isinstance(n, ast.ImportFrom)
    )
    assert not [a.name for n in top if isinstance(n, ast.Import) for a in n.names if a.name.startswith("smu")]


def test_the_checks_catch_an_upward_import_and_a_cycle():
    table = layers()
    assert layer_of("smu.io.artifacts", table) > layer_of("smu.data.forget", table)  # io below data
    assert layer_of("smu.execution.distributed", table) == len(table) - 1  # the longest prefix wins
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_map_names_every_top_level_package_and_module_of_smu():
    """docs/ARCHITECTURE.md's map of smu/ is the list a newcomer learns: it names each entry, no more."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    tree = next(b for b in text.split("```")[1::2] if b.lstrip().startswith("smu/"))
    mapped = set(re.findall(r"^  (\w+(?:/|\.py))", tree, flags=re.M))
    entries = {p.name + ("/" if p.is_dir() else "") for p in PACKAGE.iterdir() if not p.name.startswith("__")}
    assert mapped == entries
