"""pyproject.toml and environment.yml must install the same pinned stack."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name_and_spec(requirement: str) -> tuple[str, str]:
    requirement = requirement.split(";")[0].strip()
    match = re.match(r"([A-Za-z0-9_.\-]+)\s*(.*)", requirement)
    return match.group(1).lower().replace("_", "-"), match.group(2).replace(" ", "")


def _pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    requirements = project["dependencies"] + [r for extra in extras.values() for r in extra]
    return dict(_name_and_spec(r) for r in requirements)


def _conda_pip_requirements() -> dict[str, str]:
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    return dict(_name_and_spec(r) for r in pip_section if not r.startswith("-e"))


def test_same_packages_and_versions():
    assert _conda_pip_requirements() == _pyproject_requirements()


def test_the_legacy_stack_is_pinned_exactly():
    requirements = _pyproject_requirements()
    for name, version in {"torch": "2.8.0", "intel-extension-for-pytorch": "2.8.0", "transformers": "4.56.2"}.items():
        assert requirements[name] == f"=={version}"


def test_python_versions_agree():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in environment["dependencies"]
    assert project["requires-python"].startswith(">=3.11")


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = re.findall(r"^\s*(make \w+)\s*$", ci, flags=re.MULTILINE)
    assert commands == ["make test"]
    assert "make test" in readme
