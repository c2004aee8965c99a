"""The layout says where code runs (docs/ARCHITECTURE.md, STYLE.md): SQL only in storage/, Ray only in
actors/runtime/, and the architecture map lists exactly the modules there are. import-linter (pyproject.toml)
checks the import directions; these check what it cannot."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("api", "actors", "storage", "domain")
SQL = re.compile(
    r"^\s*SELECT\b|\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|WITH\s+\w+\s+AS\s*\()",
    re.S | re.I,
)
# Text that reads as SQL but is not run: an operator's instruction inside an error message.
NOT_RUN = {"actors/runtime/topology.py"}


def _modules(package: str) -> list[Path]:
    return sorted(p for p in (REPO / package).rglob("*.py") if "__pycache__" not in p.parts)


def _strings(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_sql_lives_only_in_storage() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{line}"
        for package in ("api", "actors", "domain")
        for path in _modules(package)
        if path.relative_to(REPO).as_posix() not in NOT_RUN
        for line, text in _strings(path)
        if SQL.search(text)
    ]
    assert not offenders, f"SQL outside storage/: {offenders}"


def test_the_sql_check_finds_sql() -> None:
    """The check above would see a statement if there were one (a statement of storage/ is found by it)."""
    found = [line for path in _modules("storage") for line, text in _strings(path) if SQL.search(text)]
    assert len(found) > 50


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_only_actors_runtime_imports_ray() -> None:
    offenders = [
        str(path.relative_to(REPO))
        for package in PACKAGES
        for path in _modules(package)
        if any(name == "ray" or name.startswith("ray.") for name in _imports(path))
        and not path.relative_to(REPO).as_posix().startswith("actors/runtime/")
    ]
    assert not offenders, offenders


def test_routes_hold_no_sql_and_publish_nothing() -> None:
    """A route parses, authenticates, calls and encodes: it reaches storage, Redis and delivery only through the
    read side (api/reads) or a typed op."""
    forbidden = ("storage", "asyncpg", "redis", "actors.runtime.delivery", "actors.after_commit", "msgpack")
    offenders = {
        str(path.relative_to(REPO)): sorted(n for n in _imports(path) if n.split(".")[0] in forbidden or n in forbidden)
        for path in _modules("api/routes")
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_the_architecture_map_lists_every_module_and_nothing_else() -> None:
    """docs/ARCHITECTURE.md names every package and module of the four packages (as `path/` or `path.py`), and
    everything it names exists."""
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:api|actors|storage|domain)(?:/[a-z_0-9]+)*(?:\.py|/))`", text))
    present = set()
    for package in PACKAGES:
        for path in _modules(package):
            rel = path.relative_to(REPO).as_posix()
            if path.name == "__init__.py":
                present.add(rel.removesuffix("__init__.py"))
            else:
                present.add(rel)
    missing = sorted(present - named)
    stale = sorted(n for n in named if not (REPO / n).exists())
    assert not missing, f"modules docs/ARCHITECTURE.md does not name: {missing}"
    assert not stale, f"names in docs/ARCHITECTURE.md that do not exist: {stale}"
