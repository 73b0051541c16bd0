"""The layout rules of docs/adr/0005-layout-and-layers.md, checked on the code itself:
no import cycles (module-level or inside functions), small modules, a small engine/
root, and a pure core."""

from __future__ import annotations

import grimp

from tests.conftest import ROOT

PACKAGES = ("engine", "journeys", "rules", "channels")
MAX_LINES = 600
MAX_ENGINE_ROOT_MODULES = 8
IO_LIBRARIES = ("sqlalchemy", "sqlmodel", "alembic", "fastapi", "starlette", "uvicorn",
                "apscheduler", "httpx", "aiosmtplib", "psycopg")


def _graph(external: bool = False) -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, include_external_packages=external, cache_dir=None)


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(
                        child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles_among_our_modules() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = _graph()
    graph.add_import(importer="rules.errors", imported="rules.conditions")
    assert any({"rules.conditions", "rules.errors"} <= set(c) for c in _cycles(graph))


def test_no_source_module_is_over_600_lines() -> None:
    long = {str(path.relative_to(ROOT)): lines for package in PACKAGES
            for path in (ROOT / package).rglob("*.py")
            if "migrations" not in path.parts
            and (lines := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_engine_root_holds_at_most_8_modules() -> None:
    root_modules = sorted(p.name for p in (ROOT / "engine").glob("*.py"))
    assert len(root_modules) <= MAX_ENGINE_ROOT_MODULES, root_modules


def test_the_core_imports_no_io_library() -> None:
    graph = _graph(external=True)
    reached = graph.find_upstream_modules("engine.core", as_package=True)
    assert sorted(set(reached) & set(IO_LIBRARIES)) == []
    ours = {m for m in reached if m.split(".")[0] in PACKAGES}
    assert not any(m.startswith(("engine.runtime", "engine.store", "channels")) for m in ours)


def test_every_package_folder_is_a_package() -> None:
    """A folder of code without __init__.py would be left out of the wheel."""
    missing = [str(d.relative_to(ROOT)) for package in PACKAGES
               for d in [ROOT / package, *(ROOT / package).rglob("*")]
               if d.is_dir() and any(d.glob("*.py")) and not (d / "__init__.py").exists()
               and "migrations" not in d.parts and "__pycache__" not in d.parts]
    assert missing == []
