"""The package's layers, read from its source (ast), so that a wrong import fails here by name.

    errors, devices                      foundation: nothing of the package
    models                               plain PyTorch: errors only; no Lightning, no W&B
    data                                 models and the foundation
    training                             data, models, foundation (Lightning lives here)
    inference                            anything below but evaluation and cli; never Lightning
    evaluation                           anything below but cli
    cli                                  the only place that prints or parses arguments; nothing imports it

Modules are named by their dotted path under ``cyclegan/`` (``inference.convert``; a package by
its folder, ``cli``; the package itself ``cyclegan``). Imports inside functions count: a lazy
import is still a dependency. Each test lists every offender as ``module:line``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cyclegan"
ROOT = "cyclegan"  # the name of cyclegan/__init__.py in this graph
FOUNDATION = {"errors", "devices"}
LIGHTNING = {"pytorch_lightning", "lightning", "lightning_fabric"}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
LIGHTNING_INTERNALS = "training.lightning_internals"  # the one module allowed to touch Lightning's privates
MAX_INTERNAL_LINES = 3


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts) or ROOT


@cache
def _sources() -> dict[str, tuple[Path, ast.Module]]:
    found = {_name(p): (p, ast.parse(p.read_text(), filename=str(p))) for p in sorted(PACKAGE.rglob("*.py"))}
    assert len(found) > 20 and "models.networks" in found, f"no package found under {PACKAGE}"
    return found


def _layer(module: str) -> str:
    return module.split(".")[0]


def _is_package(module: str) -> bool:
    return module == ROOT or (PACKAGE / module.replace(".", "/") / "__init__.py").is_file()


def _resolve(module: str, base: str, names: list[str]) -> Iterator[str]:
    """The package modules that ``from <base> import <names>`` (``base`` relative to the package,
    "" for the package itself) reads: ``base.name`` where that is a module, else ``base``."""
    known = _sources()
    for name in names:
        full = f"{base}.{name}" if base else name
        if full in known:
            yield full
        elif base in known or (not base and ROOT in known):
            yield base or ROOT
        else:
            raise AssertionError(f"{module}: cannot resolve 'from {base or ROOT} import {name}'")


def _import_nodes(tree: ast.AST, *, load_time_only: bool = False) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement; with ``load_time_only`` those that run when the module is imported
    (not inside a function, nor under ``if TYPE_CHECKING``)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        for child in ast.iter_child_nodes(node):
            if load_time_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if load_time_only and isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def _imports(module: str, *, load_time_only: bool = False) -> list[tuple[int, str, str]]:
    """``(line, kind, name)`` for each import of ``module``: kind ``internal`` with a package module
    (``inference.convert``), or ``external`` with the imported module's dotted name."""
    return _parse_imports(module, _sources()[module][1], load_time_only=load_time_only)


def _parse_imports(module: str, tree: ast.AST, *, load_time_only: bool = False) -> list[tuple[int, str, str]]:
    package = module if _is_package(module) else module.rpartition(".")[0]
    out = []
    for node in _import_nodes(tree, load_time_only=load_time_only):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == ROOT or alias.name.startswith(ROOT + "."):
                    out.append((node.lineno, "internal", alias.name.partition(".")[2] or ROOT))
                else:
                    out.append((node.lineno, "external", alias.name))
            continue
        if node.level:  # relative: from the module's package, one level up per extra dot
            parts = [] if package == ROOT else package.split(".")
            parts = parts[:len(parts) - (node.level - 1)] if node.level > 1 else parts
            base = ".".join([*parts, *([node.module] if node.module else [])])
        elif node.module == ROOT or (node.module or "").startswith(ROOT + "."):
            base = node.module.partition(".")[2]
        else:
            out.append((node.lineno, "external", node.module))
            continue
        out += [(node.lineno, "internal", target) for target in _resolve(module, base, [a.name for a in node.names])]
    return sorted(set(out))


def _internal(module: str, **kwargs) -> list[tuple[int, str]]:
    return [(line, target) for line, kind, target in _imports(module, **kwargs) if kind == "internal" and target != module]


def _external(module: str) -> list[tuple[int, str]]:
    return [(line, name) for line, kind, name in _imports(module) if kind == "external"]


def _in(module: str, *layers: str) -> bool:
    return _layer(module) in layers


def _offenders(lines: list[str]) -> str:
    return "\n  " + "\n  ".join(lines)


# a. -----------------------------------------------------------------------------------------


def test_no_import_cycles():
    graph = {m: sorted({t for _, t in _internal(m)}) for m in _sources()}
    cycles: set[tuple[str, ...]] = set()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        for other in graph.get(module, ()):
            if other in path:
                cycle = path[path.index(other):]
                start = cycle.index(min(cycle))  # one rotation per cycle
                cycles.add(tuple(cycle[start:] + cycle[:start]))
            elif other not in done:
                visit(other, path + [other])
        done.add(module)

    for module in sorted(graph):
        visit(module, [module])
    assert sum(map(len, graph.values())) > 20, "the import graph came out (nearly) empty: the parser is broken"
    assert not cycles, "import cycles:" + _offenders([" -> ".join([*c, c[0]]) for c in sorted(cycles)])


def test_import_parser_sees_absolute_relative_and_lazy_imports():
    # What the rules rest on, on a made-up body for module inference.convert.
    code = """
import cyclegan.models.networks
from cyclegan.data import images
from cyclegan.errors import DataError
from cyclegan import devices
from .translator import Translator
from . import manifest
from ..training.state import TRANSLATOR
import torch.nn
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from cyclegan.evaluation.metrics import kid

def lazy():
    import pytorch_lightning
    from cyclegan.cli import app
"""
    found = {(kind, name) for _, kind, name in _parse_imports("inference.convert", ast.parse(code))}
    internal = {"models.networks", "data.images", "errors", "devices", "inference.translator", "inference.manifest",
                "training.state", "evaluation.metrics", "cli.app"}
    assert found == {("internal", m) for m in internal} | {("external", m) for m in ("torch.nn", "typing", "pytorch_lightning")}
    at_load = {name for _, _, name in _parse_imports("inference.convert", ast.parse(code), load_time_only=True)}
    assert not at_load & {"pytorch_lightning", "cli.app", "evaluation.metrics"}  # in a function, or for type checkers only
    assert "training.state" in at_load


# b. -----------------------------------------------------------------------------------------


def test_models_are_plain_pytorch():
    bad = [f"{m}:{line} imports {t}" for m in _sources() if _in(m, "models")
           for line, t in _internal(m) if not (_in(t, "models") or t == "errors")]
    bad += [f"{m}:{line} imports {name}" for m in _sources() if _in(m, "models")
            for line, name in _external(m) if name.split(".")[0] in LIGHTNING | {"wandb"}]
    assert not bad, "cyclegan.models may import cyclegan.errors only, and neither Lightning nor W&B:" + _offenders(bad)


def test_nothing_imports_the_cli():
    bad = [f"{m}:{line} imports {t}" for m in _sources() if not _in(m, "cli")
           for line, t in _internal(m) if _in(t, "cli")]
    assert not bad, "cyclegan.cli is the top: nothing else in the package may import it:" + _offenders(bad)


def test_data_imports_no_layer_above_it():
    bad = [f"{m}:{line} imports {t}" for m in _sources() if _in(m, "data")
           for line, t in _internal(m) if _in(t, "training", "inference", "evaluation", "cli")]
    assert not bad, "cyclegan.data may not import training, inference, evaluation or cli:" + _offenders(bad)


def test_training_imports_no_layer_above_it():
    bad = [f"{m}:{line} imports {t}" for m in _sources() if _in(m, "training")
           for line, t in _internal(m) if _in(t, "inference", "evaluation", "cli")]
    assert not bad, "cyclegan.training may not import inference, evaluation or cli:" + _offenders(bad)


def test_inference_imports_no_layer_above_it_and_no_lightning():
    bad = [f"{m}:{line} imports {t}" for m in _sources() if _in(m, "inference")
           for line, t in _internal(m) if _in(t, "evaluation", "cli")]
    bad += [f"{m}:{line} imports {name}" for m in _sources() if _in(m, "inference")
            for line, name in _external(m) if name.split(".")[0] in LIGHTNING]
    assert not bad, "cyclegan.inference may not import evaluation, cli or Lightning:" + _offenders(bad)


def _load_time_closure(module: str) -> dict[str, list[str]]:
    """Every package module that importing ``module`` runs, each with the chain that leads there
    (a module's parent packages run first)."""
    chains, todo = {module: [module]}, [module]
    while todo:
        current = todo.pop()
        parts = current.split(".")
        parents = [".".join(parts[:i]) for i in range(1, len(parts))] + [ROOT]
        for target in [*(p for p in parents if p in _sources()), *(t for _, t in _internal(current, load_time_only=True))]:
            if target not in chains:
                chains[target] = chains[current] + [target]
                todo.append(target)
    return chains


def test_converting_a_folder_never_loads_lightning():
    # Transitively, at import time: what inference imports (and their packages' __init__) may not
    # import Lightning either.
    bad = []
    for module in [m for m in _sources() if _in(m, "inference")]:
        for reached, chain in _load_time_closure(module).items():
            for line, kind, name in _imports(reached, load_time_only=True):
                if kind == "external" and name.split(".")[0] in LIGHTNING:
                    bad.append(f"{' -> '.join(chain)}:{line} imports {name}")
    assert not bad, "importing cyclegan.inference loads Lightning:" + _offenders(sorted(set(bad)))


def test_foundation_modules_import_nothing_of_the_package_above_them():
    # errors is the bottom; devices may raise its errors and nothing else.
    allowed = {"errors": set(), "devices": {"errors"}}
    bad = [f"{m}:{line} imports {t}" for m in sorted(FOUNDATION) for line, t in _internal(m) if t not in allowed[m]]
    assert not bad, "cyclegan.errors and cyclegan.devices are the foundation: errors imports nothing of the " \
        "package, devices only errors:" + _offenders(bad)


# c. -----------------------------------------------------------------------------------------


def test_only_the_cli_prints_or_parses_arguments():
    bad = []
    for module, (_, tree) in _sources().items():
        if _in(module, "cli"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                bad.append(f"{module}:{node.lineno} calls print")
            elif isinstance(node, ast.Import) and any(a.name.split(".")[0] == "argparse" for a in node.names):
                bad.append(f"{module}:{node.lineno} imports argparse")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "argparse":
                bad.append(f"{module}:{node.lineno} imports from argparse")
            elif (isinstance(node, ast.Name) and node.id == "ArgumentParser") or \
                    (isinstance(node, ast.Attribute) and node.attr == "ArgumentParser") or \
                    (isinstance(node, ast.alias) and node.name.rpartition(".")[2] == "ArgumentParser"):
                bad.append(f"{module}:{getattr(node, 'lineno', '?')} uses ArgumentParser")
    assert not bad, "only cyclegan.cli prints and parses arguments (elsewhere: return values, raise " \
        "CycleGANError, or cyclegan.errors.warn):" + _offenders(sorted(set(bad)))


# d. -----------------------------------------------------------------------------------------


def test_no_module_is_over_400_lines():
    bad = [f"{m}: {n} lines" for m, (path, _) in _sources().items()
           if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES]
    assert not bad, f"modules over {MAX_MODULE_LINES} lines (split them by what they do):" + _offenders(bad)


def test_no_function_is_over_60_lines():
    bad = [f"{m}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines"
           for m, (_, tree) in _sources().items() for node in ast.walk(tree)
           if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
           and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not bad, f"functions over {MAX_FUNCTION_LINES} lines:" + _offenders(bad)


# e. -----------------------------------------------------------------------------------------

# Lightning's (and its WandbLogger's) private or unstable internals this package has needed.
_INTERNAL_NAMES = {"_logger_connector", "fit_loop", "epoch_loop", "batch_progress", "_parse_ckpt_path",
                   "_on_before_step", "_on_after_step", "_wandb_init", "_experiment", "_offline", "_trainer",
                   "_batches_that_stepped"}


def _names_in(expr: ast.AST) -> Iterator[str]:
    """The names along an attribute chain: ``self.trainer.strategy`` -> strategy, trainer, self."""
    while True:
        if isinstance(expr, ast.Attribute):
            yield expr.attr
            expr = expr.value
        elif isinstance(expr, ast.Call):
            expr = expr.func
        elif isinstance(expr, ast.Subscript):
            expr = expr.value
        else:
            if isinstance(expr, ast.Name):
                yield expr.id
            return


def _lightning_object(name: str) -> bool:
    return name in ("trainer", "logger") or name.startswith("opt") or name in _INTERNAL_NAMES


def _touches_internals(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a key of Lightning's checkpoint state
        return bool(set(node.value.split(".")) & _INTERNAL_NAMES)
    if isinstance(node, ast.Attribute):
        if node.attr in _INTERNAL_NAMES:
            return True
        private = node.attr.startswith("_") and not node.attr.endswith("__")
        return private and any(_lightning_object(n) for n in _names_in(node.value))
    # Overriding a private hook is touching it too (LightningCLI._parse_ckpt_path).
    return isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in _INTERNAL_NAMES


def _internal_lines() -> dict[str, list[int]]:
    found: dict[str, set[int]] = {}
    for module, (_, tree) in _sources().items():
        prose = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}  # docstrings
        for node in ast.walk(tree):
            if id(node) not in prose and _touches_internals(node):
                found.setdefault(module, set()).add(node.lineno)
    return {m: sorted(lines) for m, lines in sorted(found.items())}


def test_lightning_internals_are_touched_in_one_module_only():
    bad = [f"{m}:{line}" for m, lines in _internal_lines().items() if m != LIGHTNING_INTERNALS for line in lines]
    assert not bad, f"Lightning's private internals, touched outside cyclegan/{LIGHTNING_INTERNALS.replace('.', '/')}.py:" \
        + _offenders(bad)


def test_lightning_internals_take_at_most_3_lines():
    lines = _internal_lines().get(LIGHTNING_INTERNALS, [])
    assert len(lines) <= MAX_INTERNAL_LINES, \
        f"{LIGHTNING_INTERNALS} touches Lightning's internals on {len(lines)} lines (at most {MAX_INTERNAL_LINES}): {lines}"


def test_internals_detector_sees_what_it_should():
    def touches(code: str) -> bool:
        return any(_touches_internals(n) for n in ast.walk(ast.parse(code)))

    for code in ("trainer._logger_connector.reset()", "self.trainer.fit_loop.epoch_loop", "x.batch_progress",
                 "opt_g._on_before_step()", "self.optimizers()[0]._on_after_step()", "logger._wandb_init.pop('a')",
                 "self._experiment = None", "self.trainer.strategy._checkpoint_io", "super()._parse_ckpt_path()",
                 "def _parse_ckpt_path(self): pass", "logger._offline = True",
                 "checkpoint['loops']['fit_loop']['epoch_loop.state_dict']", "self._trainer is None",
                 "module._trainer"):
        assert touches(code), code
    for code in ("self._warned.add(m)", "trainer.global_step", "self.__class__", "optimizer.step()", "_log.warning(m)",
                 "'a fit_loop in prose'"):
        assert not touches(code), code
