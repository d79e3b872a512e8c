"""Import rules between the package's layers, read from the source with `ast` (no module is imported), so a lower
layer cannot quietly start depending on one built on top of it. Imports inside functions count as well."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "tunespace"

# Layer -> the tunespace subpackages and modules it must never import (directly, at any depth of the module).
FORBIDDEN = {
    "data": ("encoders", "contrastive", "recommenders", "evaluation", "corpus", "reports", "cli", "sources"),
    "encoders": ("contrastive", "recommenders", "evaluation", "corpus", "reports", "cli", "sources"),
    "symbolic": ("encoders", "contrastive", "recommenders", "evaluation", "corpus", "reports", "cli", "sources"),
}


@dataclass(frozen=True)
class Imported:
    module: str  # absolute dotted name, e.g. tunespace.encoders.text
    names: tuple[str, ...]  # what `from module import ...` takes; empty for `import module`
    line: int


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path = PACKAGE) -> list[Imported]:
    """Every import statement in the file, relative ones resolved against the file's package."""
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [Imported(alias.name, (), node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.append(Imported(module, tuple(alias.name for alias in node.names), node.lineno))
    return found


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_package_is_where_the_rules_look():
    assert (PACKAGE / "__init__.py").is_file() and len(modules()) > 20


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_lower_layers_never_import_upper_ones(layer):
    bad = [f"{path.relative_to(PACKAGE)}:{imp.line} imports {imp.module}"
           for path in sorted((PACKAGE / layer).rglob("*.py")) for imp in imports(path)
           for upper in FORBIDDEN[layer]
           if imp.module == f"tunespace.{upper}" or imp.module.startswith(f"tunespace.{upper}.")
           or (imp.module == "tunespace" and upper in imp.names)]
    assert not bad, f"tunespace.{layer} must not import {', '.join(FORBIDDEN[layer])}:\n" + "\n".join(bad)


def test_devices_imports_nothing_from_tunespace():
    """Every layer may use tunespace.devices only while it depends on no layer itself."""
    assert not [imp for imp in imports(PACKAGE / "devices.py") if imp.module.split(".")[0] == "tunespace"]


def test_no_module_imports_another_modules_private_names():
    bad = [f"{path.relative_to(PACKAGE)}:{imp.line} takes {name} from {imp.module}"
           for path in modules() for imp in imports(path)
           if imp.module.split(".")[0] == "tunespace" and imp.module != module_name(path)
           for name in imp.names if name.startswith("_") and not name.startswith("__")]
    assert not bad, "share helpers through a public module (e.g. tunespace.cli.common):\n" + "\n".join(bad)


def test_htcl_cli_does_not_import_the_main_cli():
    """cli/main.py imports cli/htcl.py; what both need lives in tunespace.cli.common instead of a cycle."""
    assert not [imp for imp in imports(PACKAGE / "cli" / "htcl.py") if imp.module == "tunespace.cli.main"]


def test_the_checks_see_relative_and_nested_imports(tmp_path):
    """The walker resolves `from ..x import y` and finds imports inside functions, so neither hides a breach."""
    (tmp_path / "tunespace" / "data").mkdir(parents=True)
    source = tmp_path / "tunespace" / "data" / "sneaky.py"
    source.write_text("def f():\n    from ..encoders.text import sentence_embeddings\n    from . import _private\n")
    assert [(imp.module, imp.names) for imp in imports(source, tmp_path / "tunespace")] == [
        ("tunespace.encoders.text", ("sentence_embeddings",)), ("tunespace.data", ("_private",))]
