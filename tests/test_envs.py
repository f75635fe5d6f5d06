"""The conda env files (`--sdm conda`) cannot be built here (no conda channel is reachable), so this proves what can be
proved without building them: every third-party package that a rule's script imports, directly or through the
package, is listed in that rule's env file, with the same version range as `pyproject.toml`."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

# conda-forge names that differ from the PyPI distribution's.
CONDA_NAMES = {"matplotlib": "matplotlib-base"}


def rule_envs() -> dict[str, tuple[Path, Path]]:
    """rule -> (env file, script) for every rule with both ``conda:`` and ``script:``."""
    found = {}
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=rule \w+:)", smk.read_text()):
            name = re.match(r"rule (\w+):", block)
            env = re.search(r"^\s+conda:\s*\n\s+\"([^\"]+)\"", block, re.M)
            script = re.search(r"^\s+script:\s*\n\s+\"([^\"]+)\"", block, re.M)
            if name and env and script:
                found[name.group(1)] = ((smk.parent / env.group(1)).resolve(), (smk.parent / script.group(1)).resolve())
    return found


def _module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_packages(script: Path) -> set[str]:
    """Top-level third-party modules that ``script`` imports, following every ``oidyolo`` module it reaches (local
    imports inside functions count: they run when the rule does)."""
    seen: set[Path] = set()
    todo, third_party = [script], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "oidyolo":
                    if (found := _module_file(name)) is not None:
                        todo.append(found)
                elif top not in sys.stdlib_module_names and top not in ("snakemake", "__future__"):
                    third_party.add(top)
    return third_party


def distribution(module: str) -> str:
    dists = importlib.metadata.packages_distributions().get(module)
    assert dists, f"no installed distribution provides the module {module!r}"
    return canonicalize_name(dists[0])


def pyproject_ranges() -> dict[str, SpecifierSet]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [*project["dependencies"], *project["optional-dependencies"]["cpu"]]
    return {canonicalize_name((r := Requirement(line)).name): r.specifier for line in reqs}


def env_ranges(env: Path) -> dict[str, SpecifierSet]:
    """Package -> version range of an env file, its conda and its pip sections alike."""
    out = {}
    for dep in yaml.safe_load(env.read_text())["dependencies"]:
        for line in dep["pip"] if isinstance(dep, dict) else [dep]:
            # conda pins one version as `name=1.2`; PEP 440 spells that `==1.2`.
            r = Requirement(re.sub(r"(?<=[\w\]])=(?=[\d*])", "==", line))
            out[canonicalize_name(r.name)] = r.specifier
    return out


RULES = rule_envs()


def test_every_rule_with_a_script_has_an_env() -> None:
    assert len(RULES) >= 10, RULES  # the parser found the rules
    assert {env.name for env, _ in RULES.values()} == {"data.yaml", "train.yaml", "report.yaml"}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_the_env_lists_every_package_the_rule_imports_with_pyproject_ranges(rule: str) -> None:
    env, script = RULES[rule]
    listed, wanted = env_ranges(env), pyproject_ranges()
    for module in sorted(imported_packages(script)):
        dist = distribution(module)
        name = CONDA_NAMES.get(dist, dist) if CONDA_NAMES.get(dist, dist) in listed else dist
        assert name in listed, f"{rule}: its script imports {module} ({dist}) but {env.name} does not list it"
        assert dist in wanted, f"{rule}: {dist} is imported but not a dependency in pyproject.toml"
        assert listed[name] == wanted[dist], f"{env.name}: {name}{listed[name]} differs from pyproject's {wanted[dist]}"


def test_data_rules_import_no_tensorflow() -> None:
    for rule, (env, script) in RULES.items():
        if env.name == "data.yaml":
            assert not {"tensorflow", "keras"} & imported_packages(script), rule
