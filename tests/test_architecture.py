"""Arrows point down only: the core never imports a built-in technique."""

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "lstm_plugins"


def _imported_modules(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            yield "." * node.level + (node.module or "")


def test_no_core_module_imports_the_built_in_techniques():
    offenders = []
    files = sorted(CORE.rglob("*.py"))
    assert len(files) > 10
    for path in files:
        for module in _imported_modules(path):
            if module == "plugins" or module.startswith(("plugins.", "lstm_plugins.plugins")) or ".plugins" in module:
                offenders.append(f"{path.relative_to(CORE.parent)} imports {module}")
    assert offenders == []


def test_the_built_ins_register_through_the_entry_point_group():
    from importlib.metadata import entry_points

    names = {ep.name: ep.value for ep in entry_points(group="lstm_plugins")}
    assert names["gradient_clipping"] == "lstm_plugins.plugins.gradient_clipping:GradientClipping"
    assert names["dropout"] == "lstm_plugins.plugins.dropout:Dropout"
    assert names["l2"] == "lstm_plugins.plugins.l2:L2Penalty"
    assert names["grad_norm"] == "lstm_plugins.plugins.grad_norm:GradientNormMonitor"
