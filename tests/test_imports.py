"""The package imports downwards only: no circles between its modules, lazy imports included."""

import ast
from pathlib import Path

import neuralnp

PACKAGE = Path(neuralnp.__file__).parent


def _module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module, node):
    """The package modules an import statement anywhere in ``module`` names."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.startswith("neuralnp")]
    if node.level == 0:
        base = node.module or ""
        if not base.startswith("neuralnp"):
            return []
    else:
        package = module.split(".")
        if not (PACKAGE / Path(*package[1:]) / "__init__.py").exists() or package == ["neuralnp"]:
            package = package[:-1] if package != ["neuralnp"] else package
        package = package[:len(package) - (node.level - 1)] if node.level > 1 else package
        base = ".".join(package + ([node.module] if node.module else []))
    names, attributes = [], False
    for alias in node.names:  # "from . import losses" names a module, not the package's face
        candidate = f"{base}.{alias.name}"
        if (PACKAGE.parent / Path(*candidate.split("."))).with_suffix(".py").exists() or \
                (PACKAGE.parent / Path(*candidate.split(".")) / "__init__.py").exists():
            names.append(candidate)
        else:
            attributes = True
    return names + [base] if attributes else names


def _graph():
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets.update(t for t in _resolve(name, node) if t in modules and t != name)
        graph[name] = targets
    return graph


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_lazy_imports():
    graph = _graph()
    assert "neuralnp.serialization" in graph["neuralnp.model"]  # imported inside save()
    assert "neuralnp.losses" in graph["neuralnp.model"]


def test_no_import_circles_lazy_imports_included():
    # A package's __init__ re-exports its modules, so an arrow into a package stands for its
    # public face; circles through an __init__ are circles all the same.
    cycles = _cycles(_graph())
    assert cycles == [], "import circles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_serialization_reads_and_writes_files_without_the_model():
    graph = _graph()
    assert "neuralnp.model" not in graph["neuralnp.serialization"]


def test_sequential_reads_in_one_sitting():
    import inspect
    lines, _ = inspect.getsourcelines(neuralnp.Sequential)
    assert len(lines) < 300, f"Sequential is {len(lines)} lines; move a concern out of it"
