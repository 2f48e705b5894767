"""The house drawn from the code's own imports: rooms, the imports between them, loops, sizes.

``make house`` prints it; ``tests/test_house.py`` holds the rules (no import loop between modules or
between rooms, no module over the size limit outside tests). A room is a top-level package, or a
module at the root. Reads the source with ``ast``; runs nothing of the project.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP = {".venv", "tests", ".git", "docs", "playbooks_data", "__pycache__", "build"}
MAX_LINES = 400


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every project module outside tests."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in SKIP or any(p.startswith(".") for p in rel.parts):
            continue
        name = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        found[name] = path
    return found


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (anywhere in the file, lazy imports included)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                # A package's own __init__ runs before any of its modules: not an arrow.
                if target and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def room(module: str) -> str:
    return module.split(".")[0]


def loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def room_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    rooms: dict[str, set[str]] = defaultdict(set)
    for src, targets in graph.items():
        for dst in targets:
            if room(src) != room(dst):
                rooms[room(src)].add(room(dst))
    return rooms


def sizes(mods: dict[str, Path]) -> list[tuple[int, str]]:
    return sorted(((len(p.read_text().splitlines()), n) for n, p in mods.items()), reverse=True)


def main() -> int:
    mods = modules(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT)
    graph = imports(mods)
    rooms = room_graph(graph)
    module_loops, room_loops = loops(graph), loops(rooms)
    print(f"{len(mods)} modules in {len({room(m) for m in mods})} rooms")
    print(f"import loops between modules: {len(module_loops)}")
    for group in module_loops:
        print("  " + " <-> ".join(group))
    print(f"import loops between rooms (an import that runs back up): {len(room_loops)}")
    for group in room_loops:
        print("  " + " <-> ".join(group))
    print("rooms and what each imports:")
    for name in sorted({room(m) for m in mods}):
        print(f"  {name:<12} -> {', '.join(sorted(rooms.get(name, ()))) or '-'}")
    print("largest modules:")
    for lines, name in sizes(mods)[:6]:
        flag = "  over the limit" if lines > MAX_LINES else ""
        print(f"  {lines:>5}  {name}{flag}")
    return 1 if module_loops or room_loops else 0


if __name__ == "__main__":
    raise SystemExit(main())
