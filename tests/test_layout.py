"""The layout's rules, read from every module's imports (ast): which package may import which, what the
read path may not import, no module using another's underscore names, no test importing another test.

    trainables/      trains: torch, numpy; nothing else of this project
    search_spaces/   the paper's experiments as data: trainables' plain-Python modules only
    results/         the store and what is read from it: search_spaces (claims are data) and trainables' plain
                     modules; no torch, no ray
    orchestrator/    the CLI and the Ray Tune wiring: any of the above
    bench/           the developers' measurements: any of the above, never ray at import (a lent GPU may lack it)
    tests/           anything; shared helpers in tests/support, never another test module
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("trainables", "search_spaces", "results", "orchestrator", "bench")
MAY_IMPORT = {
    "trainables": {"trainables"},
    "search_spaces": {"search_spaces", "trainables"},
    "results": {"results", "search_spaces", "trainables"},
    "orchestrator": {"orchestrator", "search_spaces", "trainables", "results"},
    "bench": {"bench", "trainables", "search_spaces", "results", "orchestrator"},
}
# trainables' modules that the read commands, the plan and the store use: plain Python, no torch
PLAIN = ("trainables/__init__.py", "trainables/config.py", "trainables/errors.py", "trainables/vocabulary.py",
         "trainables/locations.py",
         "trainables/defaults.py", "trainables/eval_settings.py")
HEAVY = {"torch", "ray"}


def _sources():
    for package in PACKAGES + ("tests",):
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(), filename=str(path))


def _module_of(path: str) -> str:
    parts = path[:-3].split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: str, tree: ast.Module):
    """(module imported, names imported from it, at module level?) for every import of a file; relative
    imports resolved against its package."""
    package = _module_of(path) if path.endswith("__init__.py") else _module_of(path).rpartition(".")[0]
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], id(node) in top_level
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module, [a.name for a in node.names], id(node) in top_level


def test_each_package_imports_only_what_its_layer_allows():
    wrong = []
    for path, tree in _sources():
        package = path.split("/")[0]
        if package == "tests":
            continue
        for module, _, _ in _imports(path, tree):
            root = module.split(".")[0]
            if root in PACKAGES + ("tests", "support") and root not in MAY_IMPORT[package]:
                wrong.append(f"{path} imports {module}")
            if package in ("trainables", "results", "search_spaces") and root == "ray":
                wrong.append(f"{path} imports {module}")
            if package in ("results", "search_spaces") and root == "torch":
                wrong.append(f"{path} imports {module}")
    assert wrong == []


def test_the_plain_modules_and_bench_import_neither_torch_nor_ray_where_they_must_not():
    wrong = []
    for path, tree in _sources():
        for module, _, top in _imports(path, tree):
            root = module.split(".")[0]
            if path in PLAIN and root in HEAVY:
                wrong.append(f"{path} imports {module} (a plain module: the read commands import it)")
            if path.startswith("bench/") and root == "ray" and top:
                wrong.append(f"{path} imports ray at import time (a lent GPU machine may not have it)")
    assert wrong == []


def _project_module(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


def _is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _module_aliases(path: str, tree: ast.Module) -> dict:
    """name -> project module, for every name a file binds to one of this project's modules."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _project_module(alias.name):
                    aliases[alias.asname or alias.name.split(".")[0]] = alias.name
    for module, names, _ in _imports(path, tree):
        for name in names:
            if _project_module(module) and _is_module(f"{module}.{name}"):
                aliases[name] = f"{module}.{name}"
    return aliases


def test_no_module_uses_another_modules_underscore_names():
    """Outside the tests: `from x import _name` and `x._name` of another project module are both refused."""
    wrong = []
    for path, tree in _sources():
        if path.startswith("tests/"):
            continue
        me = _module_of(path)
        for module, names, _ in _imports(path, tree):
            if _project_module(module) and module != me:
                wrong += [f"{path}: from {module} import {name}" for name in names
                          if name.startswith("_") and not name.startswith("__")]
        aliases = _module_aliases(path, tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and aliases[node.value.id] != me and node.attr.startswith("_") and not node.attr.startswith("__")):
                wrong.append(f"{path}:{node.lineno}: {node.value.id}.{node.attr}")
    assert wrong == []


def test_no_test_imports_another_test_module():
    wrong = [f"{path} imports {module}" for path, tree in _sources() if path.startswith("tests/")
             for module, _, _ in _imports(path, tree) if module.split(".")[-1].startswith("test_")]
    assert wrong == []


def test_the_checks_see_what_they_check():
    """The rules above would catch a violation: one planted in memory for each."""
    planted = ast.parse("from orchestrator.plan import _check_checkpoint\nimport ray\nfrom test_plan import GOOD\n")
    found = list(_imports("results/x.py", planted))
    assert ("orchestrator.plan", ["_check_checkpoint"], True) in found and ("ray", [], True) in found
    assert ("test_plan", ["GOOD"], True) in found
    relative = list(_imports("trainables/windowed.py", ast.parse("from .kernels import run_kernel\n")))
    assert relative == [("trainables.kernels", ["run_kernel"], True)]
    uses = ast.parse("from . import fused\nfused._compiled.clear()\n")
    assert _module_aliases("trainables/train.py", uses) == {"fused": "trainables.fused"}
