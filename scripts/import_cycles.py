"""Import cycles between distil_tf's packages (and modules), from the source with `ast`.

    python scripts/import_cycles.py            # package-level cycles, e.g. data <-> tasks
    python scripts/import_cycles.py --modules  # module-level cycles

Every `import distil_tf.x...` / `from distil_tf.x import ...` counts, at module
level or inside a function (a lazy import still ties the two together).
Exit code 1 when a cycle exists, so CI or a reviewer can run it as a check.
"""

import argparse
import ast
import pathlib
import sys

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "distil_tf"


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path):
    """distil_tf modules imported anywhere in `path`."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("distil_tf"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("distil_tf"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def graph(level):
    """`{node: {node it imports}}` at "package" (distil_tf.<first part>) or "module" level."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        source = _node(name, level)
        for imported in imports_of(path):
            while imported not in modules and "." in imported:
                imported = imported.rsplit(".", 1)[0]  # `from pkg import function`
            target = _node(imported, level)
            if target != source and imported in modules:
                edges.setdefault(source, set()).add(target)
    return edges


def _node(module, level):
    parts = module.split(".")
    return ".".join(parts[:2]) if level == "package" else module


def cycles(edges):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on_stack, result = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    sys.setrecursionlimit(10000)
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(result)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", action="store_true", help="module-level instead of package-level")
    args = parser.parse_args()
    edges = graph("module" if args.modules else "package")
    found = cycles(edges)
    for component in found:
        members = set(component)
        links = [f"{a} -> {b}" for a in component for b in sorted(edges.get(a, ())) if b in members]
        print(f"cycle: {' <-> '.join(name.replace('distil_tf.', '') for name in component)}")
        for link in links:
            print(f"    {link}")
    print(f"{len(found)} cycle(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
