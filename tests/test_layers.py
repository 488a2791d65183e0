"""The runner's wings import one way: a test fails when a module imports against the rule.

Each folder of ``runner/biapy_runner/`` is a stage (a wing); ``errors``, ``log`` and the package's
``__init__`` are the base every wing may use; ``cli``, ``pipeline``, ``chunked_run``, ``training``, ``split``,
``galaxy`` and ``__main__`` are the application on top. ``ALLOWED`` is the rule that ``docs/ARCHITECTURE.md`` states in words.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "runner" / "biapy_runner"
ARCHITECTURE = Path(__file__).resolve().parents[1] / "docs" / "ARCHITECTURE.md"

BASE = {"errors", "log", "__init__"}
APP = {"cli", "pipeline", "chunked_run", "training", "split", "galaxy", "__main__"}
#: wing -> the wings its modules may import (besides itself and the base).
ALLOWED: dict[str, set[str]] = {
    "base": set(),
    "config": set(),
    "io": {"config"},
    "models": {"config", "io"},
    "inference": {"config", "io", "models"},
    "decode": {"config", "io"},
    "metrics": {"config", "io"},
    "workflows": {"config", "io", "models", "inference", "decode", "metrics"},
    "train": {"config", "io", "models", "inference", "decode", "metrics"},
    "report": {"config", "io", "metrics"},
    "app": {"config", "io", "models", "inference", "decode", "metrics", "workflows", "train",
            "report"},
}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _name(path: Path) -> str:
    """``biapy_runner.models.backends.onnx`` for ``models/backends/onnx.py``."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    parts = parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts
    return ".".join(("biapy_runner", *parts)) if parts != ("__init__",) else "biapy_runner"


def _wing(module: str) -> str:
    """The wing of a dotted module name inside the package."""
    parts = module.split(".")[1:]
    if not parts or parts[0] in BASE:
        return "base"
    if parts[0] in APP:
        return "app"
    return parts[0]


def _from_package(name: str) -> str:
    """The module ``from biapy_runner import name`` reads: a submodule, else the package."""
    is_module = (PACKAGE / f"{name}.py").exists() or (PACKAGE / name).is_dir()
    return f"biapy_runner.{name}" if is_module else "biapy_runner"


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of the package in ``path``, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("biapy_runner")]
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: use absolute imports")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("biapy_runner"):
            if node.module == "biapy_runner":  # from biapy_runner import log, __version__, ...
                found += [(node.lineno, _from_package(a.name)) for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def test_every_import_follows_the_one_way_rule() -> None:
    wrong = []
    for path in _modules():
        wing = _wing(_name(path))
        assert wing in ALLOWED, f"{path}: the folder {wing!r} is no wing; add it to ALLOWED"
        for line, module in _imports(path):
            target = _wing(module)
            if target not in ("base", wing) and target not in ALLOWED[wing]:
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} ({wing}) imports {module}")
    assert not wrong, "imports against the one-way rule:\n" + "\n".join(wrong)


def test_the_rule_has_no_cycle() -> None:
    seen: dict[str, int] = {}

    def depth(wing: str, path: tuple[str, ...] = ()) -> int:
        assert wing not in path, f"cycle: {' -> '.join((*path, wing))}"
        if wing not in seen:
            seen[wing] = 1 + max((depth(w, (*path, wing)) for w in ALLOWED[wing]), default=0)
        return seen[wing]

    for wing in ALLOWED:
        depth(wing)


def test_architecture_names_every_module() -> None:
    text = ARCHITECTURE.read_text()
    missing = [
        str(p.relative_to(PACKAGE))
        for p in _modules()
        if p.name != "__init__.py" or p.parent.name == "backends"
        if f"`{p.relative_to(PACKAGE).as_posix()}`" not in text
    ]
    assert not missing, f"docs/ARCHITECTURE.md does not name: {', '.join(missing)}"


def test_the_checker_sees_a_wrong_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from biapy_runner.workflows.base import Workflow\n")
    assert _imports(bad) == [(2, "biapy_runner.workflows.base")]
    assert "workflows" not in ALLOWED["decode"] and "workflows" not in ALLOWED["metrics"]
    assert "workflows" not in ALLOWED["models"]
