"""The layout's rules, read from every module's imports (ast): which package may import which, no import cycle
(imports inside functions included), imports inside functions only where they keep start-up light, no module
using another's underscore names, no test importing another test; and the training core and bench/ importable
where only torch is installed.

    common/          what every package uses (errors, defaults, vocabulary, the trial config, locations):
                     plain Python and pyarrow; nothing else of this project
    trainables/      trains: torch, numpy (and filelock, torch's own dependency), and common; pyarrow only
                     inside the functions that read an object store
    search_spaces/   the paper's experiments as data: common only
    results/         the store and what is read from it: common and search_spaces (claims are data); no
                     torch, no ray
    orchestrator/    the CLI and the Ray Tune wiring: any of the above
    bench/           the developers' measurements: any of the above, never ray at import (a lent GPU may lack it)
    tests/           anything; shared helpers in tests/support, never another test module
"""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("common", "trainables", "search_spaces", "results", "orchestrator", "bench")
MAY_IMPORT = {
    "common": {"common"},
    "trainables": {"common", "trainables"},
    "search_spaces": {"common", "search_spaces"},
    "results": {"common", "search_spaces", "results"},
    "orchestrator": {"common", "search_spaces", "trainables", "results", "orchestrator"},
    "bench": {"common", "trainables", "search_spaces", "results", "orchestrator", "bench"},
}
# the third-party libraries a package's modules may import at their top (the standard library is free)
THIRD_PARTY_AT_TOP = {"common": {"pyarrow"}, "trainables": {"torch", "numpy", "filelock"},
                      "search_spaces": {"tomli"}}
# What is worth importing inside a function: a library that costs start-up time (the longest prefix names
# it: torch._dynamo is the compiler, which `import torch` does not load).
HEAVY = ("torch", "torch._dynamo", "torch._inductor", "ray", "ray.tune.search.optuna", "scipy", "statsmodels",
         "duckdb", "matplotlib", "pyarrow", "pandas", "optuna", "yaml", "mlflow", "wandb", "boto3", "PIL")
STDLIB = set(sys.stdlib_module_names)


def _sources(packages=PACKAGES + ("tests",)):
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(), filename=str(path))


def _module_of(path: str) -> str:
    parts = path[:-3].split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: str, tree: ast.Module):
    """(module imported, names imported from it, at import time? (outside every function), the node) for
    every import of a file; relative imports resolved against its package."""
    package = _module_of(path) if path.endswith("__init__.py") else _module_of(path).rpartition(".")[0]
    in_functions = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                    for n in ast.walk(f)}
    top_level = {id(node) for node in ast.walk(tree) if id(node) not in in_functions}  # runs when imported
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], id(node) in top_level, node
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module, [a.name for a in node.names], id(node) in top_level, node


def _project_module(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


def _is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _targets(module: str, names: list) -> list[str]:
    """The project modules an import loads: `from a import b` loads a.b where that is a module, else a."""
    out = [f"{module}.{n}" for n in names if _is_module(f"{module}.{n}")]
    if len(out) < len(names) or not names:
        out.append(module)
    return [m for m in out if _is_module(m)]


def _graph(trees: dict[str, ast.Module], top_only: bool = False) -> dict[str, set]:
    """module -> the project modules it imports (anywhere in it, or only at its top)."""
    graph = {}
    for path, tree in trees.items():
        me = _module_of(path)
        graph[me] = {t for m, names, top, _ in _imports(path, tree) if _project_module(m) and (top or not top_only)
                     for t in _targets(m, names) if t != me}
    return graph


def _cycles(graph: dict[str, set]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each a cycle of imports."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _heavy(module: str) -> str:
    """The heavy library an imported module name belongs to ('' if none): its longest prefix in HEAVY."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in HEAVY:
            return ".".join(parts[:n])
    return ""


def _loads(trees: dict[str, ast.Module]) -> dict[str, set]:
    """module -> the heavy libraries importing it loads (its top-level imports, followed through the project)."""
    direct, top_graph = {}, _graph(trees, top_only=True)
    for path, tree in trees.items():
        direct[_module_of(path)] = {_heavy(m) for m, _, top, _ in _imports(path, tree) if top and _heavy(m)}
    closure = {}

    def loads(module, seen):
        if module in closure:
            return closure[module]
        out = set(direct.get(module, ()))
        for dep in top_graph.get(module, ()):
            if dep not in seen:
                out |= loads(dep, seen | {dep})
        if module.count(".") > 0:  # importing a.b runs a/__init__.py first
            out |= loads(module.rpartition(".")[0], seen | {module.rpartition(".")[0]})
        closure[module] = out
        return out

    return {m: loads(m, {m}) for m in direct}


def _in_import_fallback(tree: ast.Module, node: ast.AST) -> bool:
    """Whether an import sits in a `try:` whose handler catches ImportError: an optional library, or another
    Python's or library version's spelling."""
    for t in ast.walk(tree):
        if isinstance(t, ast.Try) and any(node is n for stmt in t.body for n in ast.walk(stmt)):
            for handler in t.handlers:
                names = [handler.type] if not isinstance(handler.type, ast.Tuple) else handler.type.elts
                if any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError") for n in names):
                    return True
    return False


def local_imports(trees: dict[str, ast.Module]) -> list[tuple[str, str, str]]:
    """(file:line, module, why) of every import inside a function: why is 'heavy library', 'loads LIB',
    'optional', or a problem: 'standard library', 'a project module that loads nothing heavy', 'already
    loaded at the top of this module'."""
    loads = _loads(trees)
    out = []
    for path, tree in trees.items():
        me = _module_of(path)
        for module, names, top, node in _imports(path, tree):
            if top or module == "__future__":
                continue
            where = f"{path}:{node.lineno}"
            if _in_import_fallback(tree, node):
                out.append((where, module, "optional"))
            elif module.split(".")[0] in STDLIB:
                out.append((where, module, "standard library"))
            elif _project_module(module):
                brings = set().union(*(loads.get(t, set()) for t in _targets(module, names))) - loads.get(me, set())
                out.append((where, module, f"loads {', '.join(sorted(brings))}" if brings else
                            "a project module that loads nothing heavy"))
            elif _heavy(module):
                out.append((where, module, "heavy library" if _heavy(module) not in loads.get(me, set()) else
                            "already loaded at the top of this module"))
            else:
                out.append((where, module, "a light third-party library"))
    return out


ALLOWED_REASONS = ("heavy library", "loads ", "optional")
# files whose imports inside functions have another reason
EXEMPT = {"bench/targets_measure.py": "runs on earlier revisions' code too: each measurement imports what it uses "
                                      "only when that revision is measured"}


def _project_trees() -> dict[str, ast.Module]:
    return dict(_sources(PACKAGES))


def test_each_package_imports_only_what_its_layer_allows():
    wrong = []
    for path, tree in _sources():
        package = path.split("/")[0]
        if package == "tests":
            continue
        for module, _, top, _ in _imports(path, tree):
            root = module.split(".")[0]
            if root in PACKAGES + ("tests", "support") and root not in MAY_IMPORT[package]:
                wrong.append(f"{path} imports {module}")
            if package in ("common", "trainables", "results", "search_spaces") and root == "ray":
                wrong.append(f"{path} imports {module}")
            if package in ("common", "results", "search_spaces") and root == "torch":
                wrong.append(f"{path} imports {module}")
            allowed = THIRD_PARTY_AT_TOP.get(package)
            if allowed is not None and top and root not in STDLIB and root not in PACKAGES and root not in allowed:
                wrong.append(f"{path} imports {module} at its top ({package}/ may: {', '.join(sorted(allowed))})")
    assert wrong == []


def test_no_import_cycle_in_the_project_imports_inside_functions_included():
    assert _cycles(_graph(_project_trees())) == []


def test_imports_inside_functions_only_keep_start_up_light():
    """An import inside a function must bring a library that costs start-up time (torch, ray, pandas, ...)
    the module does not load already, or be optional; none for the standard library, none to hide a cycle."""
    wrong = [f"{where}: {module} ({why})" for where, module, why in local_imports(_project_trees())
             if not why.startswith(ALLOWED_REASONS) and where.split(":")[0] not in EXEMPT]
    assert wrong == []


def test_bench_and_the_training_core_import_where_only_torch_is_installed():
    """A lent GPU machine may have torch and nothing else of this project's dependencies: bench/ (but for the
    store's own benches) and trainables/ import there, with ray, pyarrow, pandas and the rest made missing."""
    missing = ["ray", "pyarrow", "pandas", "duckdb", "scipy", "statsmodels", "matplotlib", "optuna", "yaml",
               "jinja2", "mlflow", "wandb"]
    # the store's benches, and the copy of CIFAR-10 from an object store: those need pyarrow by their nature
    store_benches = {"bench/store_bench.py", "bench/store_compaction.py", "bench/targets.py", "trainables/node_data.py"}
    modules = [_module_of(path) for path, _ in _sources(("bench", "trainables"))
               if path not in store_benches and not path.endswith("__init__.py")]
    code = ("import sys, importlib\n"
            f"for name in {missing!r}: sys.modules[name] = None\n"
            f"for module in {modules!r}: importlib.import_module(module)\n"
            "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def _module_aliases(path: str, tree: ast.Module) -> dict:
    """name -> project module, for every name a file binds to one of this project's modules."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _project_module(alias.name):
                    aliases[alias.asname or alias.name.split(".")[0]] = alias.name
    for module, names, _, _ in _imports(path, tree):
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
        for module, names, _, _ in _imports(path, tree):
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
             for module, _, _, _ in _imports(path, tree) if module.split(".")[-1].startswith("test_")]
    assert wrong == []


def test_the_checks_see_what_they_check():
    """The rules above would catch a violation: one planted in memory for each."""
    planted = ast.parse("from orchestrator.plan import _check_checkpoint\nimport ray\nfrom test_plan import GOOD\n")
    found = [(m, n, top) for m, n, top, _ in _imports("results/x.py", planted)]
    assert ("orchestrator.plan", ["_check_checkpoint"], True) in found and ("ray", [], True) in found
    assert ("test_plan", ["GOOD"], True) in found
    relative = [(m, n, top) for m, n, top, _ in _imports("trainables/windowed.py", ast.parse("from .kernels import run_kernel\n"))]
    assert relative == [("trainables.kernels", ["run_kernel"], True)]
    uses = ast.parse("from . import fused\nfused._compiled.clear()\n")
    assert _module_aliases("trainables/train.py", uses) == {"fused": "trainables.fused"}
    # a cycle hidden by an import inside a function is still a cycle
    trees = _project_trees()
    trees["results/claims.py"] = ast.parse(ast.unparse(trees["results/claims.py"])
                                           + "\ndef planted():\n    from .tables import render\n")
    assert any({"results.claims", "results.tables"} <= set(c) for c in _cycles(_graph(trees)))
    # inside functions: the standard library, and a project module that loads nothing heavier, are refused
    trees["results/claims.py"] = ast.parse("def f():\n    import json\n    from common import vocabulary\n"
                                           "    import scipy\n    try:\n        import mlflow\n"
                                           "    except ImportError:\n        pass\n")
    reasons = {m: why for _, m, why in local_imports(trees) if _.startswith("results/claims.py")}
    assert reasons == {"json": "standard library", "common": "a project module that loads nothing heavy",
                       "scipy": "heavy library", "mlflow": "optional"}
