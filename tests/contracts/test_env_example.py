""".env.example lists exactly the variables the server reads, and docs/OPERATIONS.md's table lists the same.

The variables are found in the source of storage/config.py (``_env("NAME", ...)``, ``_env_int``, ``_env_list``,
``os.environ.get``, ``os.getenv``, ``os.environ[...]``), so a new setting without its line in .env.example (or a
line left behind for a removed one) fails here. A few knobs are read by Ray or our scripts rather than by
load_settings; they are named below with the file that reads them, and that file is checked to read them.
Both documents also show the defaults load_settings uses (where the default is a constant), and the table marks
"Every node" exactly on the settings that are part of the shard fingerprint (actors/runtime/versioning.py).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from actors.runtime.versioning import GATEWAY_ONLY_SETTINGS

REPO = Path(__file__).resolve().parents[2]
ENV_READERS = {"_env", "_env_int", "_env_list"}

# Listed in .env.example but read elsewhere: name -> a file that reads it.
OTHER_READERS = {
    "RAY_AUTH_MODE": "scripts/run.sh",  # and by Ray itself, in every process that joins the cluster
    "RAY_AUTH_TOKEN_PATH": "scripts/run.sh",
    "RAY_NUM_CPUS": "actors/runtime/cluster.py",  # the CPUs of the local head `make run` starts
}


def _name_of(call: ast.Call) -> str | None:
    """The variable name a call reads, when it is one of the env readers with a literal name."""
    func = call.func
    reads_env = (isinstance(func, ast.Name) and func.id in ENV_READERS) or (
        isinstance(func, ast.Attribute)
        and (
            (func.attr == "get" and ast.unparse(func.value) == "os.environ")
            or (func.attr == "getenv" and ast.unparse(func.value) == "os")
        )
    )
    if reads_env and call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def config_variables() -> set[str]:
    tree = ast.parse((REPO / "storage" / "config.py").read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (name := _name_of(node)) is not None:
            names.add(name)
        elif (
            isinstance(node, ast.Subscript)
            and ast.unparse(node.value) == "os.environ"
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)
        ):
            names.add(node.slice.value)
    return names


def settings_field_of_variable() -> dict[str, str]:
    """Variable -> the Settings field load_settings fills from it (directly, or through a local variable)."""
    tree = ast.parse((REPO / "storage" / "config.py").read_text(encoding="utf-8"))
    (load,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "load_settings"]

    def read_in(node: ast.AST) -> list[str]:
        return [name for sub in ast.walk(node) if isinstance(sub, ast.Call) and (name := _name_of(sub))]

    local = {
        stmt.targets[0].id: read_in(stmt.value)
        for stmt in load.body
        if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name)
    }
    (call,) = [n for n in ast.walk(load) if isinstance(n, ast.Call) and ast.unparse(n.func) == "Settings"]
    fields: dict[str, str] = {}
    for keyword in call.keywords:
        value = keyword.value
        if isinstance(value, ast.Call) and ast.unparse(value.func) == "str" and len(value.args) == 1:
            value = value.args[0]  # str(var_dir)
        names = local.get(value.id, []) if isinstance(value, ast.Name) else read_in(value)
        for name in names:
            assert keyword.arg is not None
            fields[name] = keyword.arg
    return fields


def config_defaults() -> dict[str, str]:
    """Variable -> the default load_settings uses, for the defaults written as constants (or module constants)."""
    import storage.config

    tree = ast.parse((REPO / "storage" / "config.py").read_text(encoding="utf-8"))
    defaults: dict[str, str] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and (name := _name_of(node)) and len(node.args) == 2):
            continue
        default = node.args[1]
        if isinstance(default, ast.Name) and isinstance(getattr(storage.config, default.id, None), str | int):
            defaults[name] = str(getattr(storage.config, default.id))
        elif all(isinstance(n, ast.Constant | ast.BinOp | ast.operator) for n in ast.walk(default)):
            defaults[name] = str(eval(compile(ast.Expression(default), "<default>", "eval"), {"__builtins__": {}}))  # noqa: S307
    # Read as "" and merged over the built-in buckets: unset means every bucket at its DEFAULT_RATE_LIMITS value.
    defaults["RATE_LIMITS"] = storage.config.DEFAULT_RATE_LIMITS
    return defaults


def example_values() -> dict[str, str]:
    text = (REPO / ".env.example").read_text(encoding="utf-8")
    return {name: value.strip() for name, value in re.findall(r"(?m)^#? ?([A-Z][A-Z0-9_]*)=(.*)$", text)}


def example_variables() -> list[str]:
    """Every ``# NAME=value`` (or ``NAME=value``) line of .env.example, in order."""
    text = (REPO / ".env.example").read_text(encoding="utf-8")
    return re.findall(r"(?m)^#? ?([A-Z][A-Z0-9_]*)=", text)


def test_config_reads_the_variables_its_source_names() -> None:
    # The scan itself works: a few variables every deployment sets are found.
    assert {"DATABASE_URL", "REDIS_URL", "JWT_SECRET", "PORT", "CORS_ORIGINS"} <= config_variables()


def test_every_variable_load_settings_reads_is_in_env_example() -> None:
    missing = sorted(config_variables() - set(example_variables()))
    assert not missing, f"read in storage/config.py but not listed in .env.example: {missing}"


def test_env_example_shows_the_defaults_load_settings_uses() -> None:
    defaults = config_defaults()
    assert {"PORT", "RATE_LIMITS", "MAX_BODY_BYTES", "CORS_ORIGINS"} <= set(defaults), "the scan itself works"
    shown = example_values()
    wrong = {name: (shown[name], value) for name, value in defaults.items() if name in shown and shown[name] != value}
    assert not wrong, f".env.example shows another default than storage/config.py (shown, real): {wrong}"


def test_every_variable_in_env_example_is_read_by_someone() -> None:
    listed = example_variables()
    twice = sorted({name for name in listed if listed.count(name) > 1})
    assert not twice, f"listed twice in .env.example: {twice}"
    unknown = sorted(set(listed) - config_variables() - set(OTHER_READERS))
    assert not unknown, f"in .env.example but never read (storage/config.py or OTHER_READERS): {unknown}"
    for name, reader in OTHER_READERS.items():
        assert name in listed, f"{name} ({reader}) is missing from .env.example"
        assert name in (REPO / reader).read_text(encoding="utf-8"), f"{reader} no longer reads {name}"


def test_operations_md_documents_every_variable_of_env_example() -> None:
    text = (REPO / "docs" / "OPERATIONS.md").read_text(encoding="utf-8")
    section = text.split("## Configuration knobs", 1)[-1].split("\n## ", 1)[0]
    assert section != text, "docs/OPERATIONS.md has no 'Configuration knobs' section"
    documented = set(re.findall(r"(?m)^\| `([A-Z][A-Z0-9_]*)` \|", section))
    listed = set(example_variables())
    assert not listed - documented, f"in .env.example, not in OPERATIONS.md's table: {sorted(listed - documented)}"
    assert not documented - listed, f"in OPERATIONS.md's table, not in .env.example: {sorted(documented - listed)}"


def test_operations_md_shows_the_defaults_and_marks_the_settings_in_the_shard_fingerprint() -> None:
    text = (REPO / "docs" / "OPERATIONS.md").read_text(encoding="utf-8")
    section = text.split("## Configuration knobs", 1)[-1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"(?m)^\| `([A-Z][A-Z0-9_]*)` \|(.*)$", section))
    defaults = config_defaults()
    for name, row in rows.items():
        cell = row.split("|", 1)[0].strip()
        shown = "" if cell == "empty" else cell[1:-1] if re.fullmatch(r"`[^`]*`", cell) else None
        if name in defaults and shown is not None:
            assert shown == defaults[name], (
                f"OPERATIONS.md shows {shown!r} as the default of {name}, not {defaults[name]!r}"
            )
    fields = settings_field_of_variable()
    assert {"PORT", "VAR_DIR", "MAIL_DIR", "USER_SHARDS"} <= set(fields), "the mapping itself works"
    wrong = sorted(
        name
        for name, row in rows.items()
        if name in fields and row.rstrip(" |").endswith("Every node") == (fields[name] in GATEWAY_ONLY_SETTINGS)
    )
    assert not wrong, f"'Every node' (part of the shard fingerprint, actors/runtime/versioning.py) is wrong for {wrong}"
