"""Arrows point down only, rooms stay small, and what is registered is what is exported."""

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
            # Absolute imports of the built-ins, or relative ones (``..plugins``) from inside the
            # package; another library's ``.plugins`` (Lightning's checkpoint IO) is fine.
            relative = module.startswith(".") and module.lstrip(".").split(".")[0] == "plugins"
            if module == "plugins" or module.startswith(("plugins.", "lstm_plugins.plugins")) or relative:
                offenders.append(f"{path.relative_to(CORE.parent)} imports {module}")
    assert offenders == []


def test_the_built_ins_register_through_the_entry_point_group():
    from importlib.metadata import entry_points

    names = {ep.name: ep.value for ep in entry_points(group="lstm_plugins")}
    assert names["gradient_clipping"] == "lstm_plugins.plugins.gradient_clipping:GradientClipping"
    assert names["dropout"] == "lstm_plugins.plugins.dropout:Dropout"
    assert names["l2"] == "lstm_plugins.plugins.l2:L2Penalty"
    assert names["grad_norm"] == "lstm_plugins.plugins.grad_norm:GradientNorms"


def _built_in_entry_points():
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group="lstm_plugins") if ep.dist is not None
            and ep.dist.metadata["Name"] == "lstm-plugins"}


def test_the_entry_points_and_the_plugins_exports_agree():
    import inspect

    import lstm_plugins.plugins as plugins
    from lstm_plugins import Technique

    entry_points = _built_in_entry_points()
    registered = {ep.value.split(":")[1]: name for name, ep in entry_points.items()}
    exported_techniques = {
        name for name in plugins.__all__
        if inspect.isclass(getattr(plugins, name)) and issubclass(getattr(plugins, name), Technique)
    }
    # Every exported technique is registered, and every registered one is exported.
    assert exported_techniques == set(registered)
    for class_name, entry_name in registered.items():
        technique = entry_points[entry_name].load()
        assert technique is getattr(plugins, class_name)
        assert technique.name == entry_name  # saved configs rebuild by this name
        assert entry_points[entry_name].value.startswith(f"lstm_plugins.plugins.{entry_name}:")


def test_each_technique_class_has_its_function_face_by_name():
    import re

    import lstm_plugins.plugins as plugins
    import lstm_plugins.plugins.functional as functional
    from lstm_plugins import Technique

    classes = [name for name in plugins.__all__
               if isinstance(getattr(plugins, name), type) and issubclass(getattr(plugins, name), Technique)]
    # Snake case, an acronym kept whole: LRSchedule -> lr_schedule, NonFiniteGuard -> non_finite_guard.
    faces = [re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower() for name in classes]
    assert sorted(faces) == sorted(functional.__all__)  # one function per class, and no other
    assert all(callable(getattr(functional, face)) for face in faces)
    # A function never shadows its module: the plugins package attributes stay modules.
    import types

    assert all(isinstance(getattr(plugins, module), types.ModuleType) for module in ("dropout", "zoneout", "l2"))


def test_no_module_of_the_core_or_the_built_ins_exceeds_400_lines():
    root = CORE.parent
    sizes = {str(path.relative_to(root)): len(path.read_text().splitlines())
             for folder in ("lstm_plugins", "plugins") for path in (root / folder).rglob("*.py")}
    assert {path: lines for path, lines in sizes.items() if lines > 400} == {}


def test_the_top_level_api_is_curated():
    import lstm_plugins

    assert len(lstm_plugins.__all__) <= 20
    assert all(hasattr(lstm_plugins, name) for name in lstm_plugins.__all__)
    for machinery in ("build_technique_manager", "hookspec", "reverse_within_length_index", "run_lstm"):
        assert machinery not in lstm_plugins.__all__


def test_lengths_reach_the_device_through_the_queued_copy_only():
    """Host lengths copied with a plain ``.to(device)`` make a GPU step wait (a host
    synchronisation per mask or index); the core and the built-ins copy them with ``lengths_on``."""
    import re

    plain = re.compile(r"\blengths\.to\((?!\"cpu\")")
    offenders = []
    for path in sorted(CORE.rglob("*.py")) + sorted((CORE.parent / "plugins").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if plain.search(line) and "non_blocking" not in line:
                offenders.append(f"{path.relative_to(CORE.parent)}:{number}: {line.strip()}")
    assert offenders == []
