"""The package's installation: version ranges, extras, uv.lock, scripts/setup.sh and what the core install needs.

CPU only, no network: these tests read pyproject.toml, uv.lock and the set-up script, run the set-up script up to
its first check, and run the package in a subprocess where no module that only an extra brings can be imported
(the one slow test: `mfer --help` and a fast_dev_run fit on the session's tiny cache).
"""

import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from multimodal_fer import _lazy

from conftest import CONFIGS, REPO, tiny_data_args

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
LOCK = tomllib.loads((REPO / "uv.lock").read_text())
SETUP = REPO / "scripts" / "setup.sh"
PROJECT = canonicalize_name(PYPROJECT["project"]["name"])
#: The extras the documentation and the install hints of multimodal_fer._lazy name.
RUNTIME_EXTRAS = {"3d", "physio", "wandb", "video", "faces"}


def _locked_versions() -> dict[str, set[Version]]:
    """Every package of uv.lock with its locked versions (a universal lock may hold several per package)."""
    versions: dict[str, set[Version]] = {}
    for package in LOCK["package"]:
        versions.setdefault(canonicalize_name(package["name"]), set()).add(Version(package["version"]))
    return versions


def _requirements() -> dict[str, list[Requirement]]:
    """pyproject.toml's requirements by where they are declared: "core", each extra, each dependency group."""
    declared = {"core": PYPROJECT["project"]["dependencies"], **PYPROJECT["project"]["optional-dependencies"]}
    declared.update({f"group:{name}": items for name, items in PYPROJECT["dependency-groups"].items()})
    return {where: [Requirement(item) for item in items] for where, items in declared.items()}


def _lock_closure(roots: list[dict]) -> set[str]:
    """Names of the packages that uv.lock installs for ``roots`` (dependency entries of the lock), markers ignored."""
    packages: dict[str, list[dict]] = {}
    for package in LOCK["package"]:
        packages.setdefault(canonicalize_name(package["name"]), []).append(package)
    seen: set[tuple[str, tuple[str, ...]]] = set()
    todo = list(roots)
    while todo:
        entry = todo.pop()
        key = (canonicalize_name(entry["name"]), tuple(sorted(entry.get("extra", []))))
        if key in seen:
            continue
        seen.add(key)
        for package in packages[key[0]]:
            todo += package.get("dependencies", [])
            for extra in key[1]:
                todo += package.get("optional-dependencies", {}).get(extra, [])
    return {name for name, _ in seen}


def _root_package() -> dict:
    return next(p for p in LOCK["package"] if canonicalize_name(p["name"]) == PROJECT)


def _optional_only_modules() -> list[str]:
    """Top-level modules installed here whose every distribution only an extra or a dependency group brings."""
    root = _root_package()
    core = _lock_closure(root["dependencies"])
    everything = _lock_closure(
        [
            *root["dependencies"],
            *(dep for deps in root["optional-dependencies"].values() for dep in deps),
            *(dep for deps in root["dev-dependencies"].values() for dep in deps),
        ]
    )
    optional = everything - core
    return sorted(
        module
        for module, dists in packages_distributions().items()
        if module.isidentifier() and all(canonicalize_name(dist) in optional for dist in dists)
    )


def _run_without_optional_packages(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a Python where no module of an extra (open3d, wandb, cv2, av, ...) can be imported."""
    blocked = _optional_only_modules()
    prologue = f"import sys\nfor name in {blocked!r}:\n    sys.modules[name] = None\n"
    env = {**os.environ, "WANDB_MODE": "disabled"}
    return subprocess.run(
        [sys.executable, "-c", prologue + code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600
    )


def test_every_requirement_is_locked_at_a_version_inside_its_range() -> None:
    locked = _locked_versions()
    for where, requirements in _requirements().items():
        for requirement in requirements:
            name = canonicalize_name(requirement.name)
            if name == PROJECT:  # "all" names the other extras
                continue
            assert name in locked, f"{requirement} ({where}) is not in uv.lock: run uv lock"
            outside = [str(v) for v in locked[name] if not requirement.specifier.contains(v, prereleases=True)]
            assert not outside, f"uv.lock holds {name} {outside}, outside {requirement} ({where}): run uv lock"


def test_uv_lock_was_written_from_this_pyproject() -> None:
    """The lock's copy of the requirements is pyproject.toml's: a changed range without `uv lock` fails here."""
    locked = {
        (canonicalize_name(item["name"]), item.get("specifier", ""), item.get("marker", ""))
        for item in _root_package()["metadata"]["requires-dist"]
    }
    declared = set()
    for where, requirements in _requirements().items():
        if where.startswith("group:"):
            continue
        for requirement in requirements:
            marker = "" if where == "core" else f"extra == '{where}'"
            declared.add((canonicalize_name(requirement.name), str(SpecifierSet(str(requirement.specifier))), marker))
    normalised = {(name, str(SpecifierSet(spec)), marker) for name, spec, marker in locked}
    assert normalised == declared
    assert LOCK["requires-python"] == "==3.11.*"


def test_every_requirement_is_a_range_and_every_exact_pin_says_why() -> None:
    lines = (REPO / "pyproject.toml").read_text().splitlines()
    for where, requirements in _requirements().items():
        for requirement in requirements:
            if canonicalize_name(requirement.name) == PROJECT:
                continue
            operators = {spec.operator for spec in requirement.specifier}
            if "==" in operators:
                line = next(i for i, text in enumerate(lines) if f'"{requirement}"' in text.replace(" ", ""))
                assert lines[line - 1].strip().startswith("#"), f"exact pin {requirement} ({where}) without a reason"
            else:
                assert {">", ">="} & operators and {"<", "<="} & operators, f"{requirement} ({where}) is open-ended"


def test_torch_is_locked_from_pypi_for_linux_x86_64_and_python_3_11() -> None:
    torch = next(p for p in LOCK["package"] if p["name"] == "torch")
    assert torch["version"] == "2.11.0" and torch["source"] == {"registry": "https://pypi.org/simple"}
    assert any("cp311-cp311-manylinux" in w["url"] and w["url"].endswith("x86_64.whl") for w in torch["wheels"])


def test_extras_cover_the_optional_packages_and_all_means_every_runtime_extra() -> None:
    extras = _requirements()
    assert RUNTIME_EXTRAS | {"all", "dev"} <= set(extras)
    (everything,) = extras["all"]
    assert canonicalize_name(everything.name) == PROJECT and set(everything.extras) == RUNTIME_EXTRAS
    names = {where: {canonicalize_name(r.name) for r in reqs} for where, reqs in extras.items()}
    assert {"open3d", "neurokit2", "wandb"}.isdisjoint(names["core"])
    assert names["dev"] >= {"pytest", "ruff", "scikit-image", "import-linter"}
    # facenet-pytorch's own metadata pins torch<2.3: a dependency group, locked with the corrected metadata.
    assert names["group:mtcnn"] == {"facenet-pytorch"}
    facenet = next(p for p in LOCK["package"] if p["name"] == "facenet-pytorch")
    assert {d["name"] for d in facenet["dependencies"]} >= {"torch", "numpy"}


def test_install_hints_of_lazy_imports_name_an_extra_that_brings_the_locked_version() -> None:
    extras = _requirements()
    locked = _locked_versions()
    for module, (extra, pinned) in _lazy._EXTRAS.items():
        requirement = Requirement(pinned.strip("'"))
        name = canonicalize_name(requirement.name)
        assert name in {canonicalize_name(r.name) for r in extras[extra]}, f"extra {extra!r} does not bring {name}"
        assert locked[name] == {Version(str(requirement.specifier).removeprefix("=="))}, f"{module}: {pinned}"


def test_a_missing_optional_package_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "neurokit2", None)
    with pytest.raises(ImportError, match=r"extra 'physio': pip install 'multimodal-fer\[physio\]'"):
        _lazy.require("neurokit2", "simulating ECG")


def test_setup_script_installs_the_lock_with_a_pinned_uv() -> None:
    script = SETUP.read_text()
    assert re.search(r"\buv\b.* sync --locked", script) or '"$UV" sync --locked' in script
    version = re.search(r"^UV_VERSION=(\S+)$", script, re.MULTILINE)
    assert version, "setup.sh pins no uv version"
    assert Version(version[1]) in SpecifierSet(PYPROJECT["tool"]["uv"]["required-version"])
    assert "libusb-1.0-0" in script
    assert ".uv/" in (REPO / ".gitignore").read_text().splitlines()


def _fake_bin(tmp_path: Path, **scripts: str) -> Path:
    """A folder of stand-in commands (``id``, ``ldconfig``, ``sudo``), first on PATH."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name, body in scripts.items():
        path = folder / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    return folder


def _run_setup(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a copy of setup.sh in an empty project folder (it stops before installing anything in these tests)."""
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    (project / "scripts" / "setup.sh").write_text(SETUP.read_text())
    return subprocess.run(
        ["bash", "scripts/setup.sh"], capture_output=True, text=True, cwd=project, env=env, timeout=60, check=False
    )


def test_setup_without_root_and_without_libusb_says_what_to_install(tmp_path: Path) -> None:
    fake = _fake_bin(
        tmp_path, id="echo 1000", ldconfig="echo 'libc.so.6 (libc6,x86-64) => /lib/libc.so.6'", sudo="exit 1"
    )
    done = _run_setup(tmp_path, {"PATH": f"{fake}:{os.environ['PATH']}", "HOME": str(tmp_path)})
    assert done.returncode == 1
    assert "sudo apt-get install libusb-1.0-0" in done.stderr and 'MFER_EXTRAS="physio' in done.stderr
    assert not (tmp_path / "project" / ".venv").exists()


def test_setup_without_the_3d_extra_does_not_ask_for_libusb(tmp_path: Path) -> None:
    fake = _fake_bin(tmp_path, id="echo 1000", ldconfig="true", sudo="exit 1")
    env = {
        "PATH": f"{fake}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "MFER_EXTRAS": "physio wandb dev",
        "PYTHON": str(tmp_path / "no-python"),  # stops the script at its next step
    }
    done = _run_setup(tmp_path, env)
    assert done.returncode == 1 and "libusb" not in done.stderr and "Python 3.11 is needed" in done.stderr


def test_core_install_runs_help_and_trains_from_a_prepared_cache(tmp_path: Path, tiny_cache: Path) -> None:
    """With every module of an extra unimportable (a core install): `mfer --help`, then a CSV-logged fit."""
    args = [
        "fit",
        "--config",
        str(CONFIGS / "quickstart.yaml"),
        "--config",
        str(CONFIGS / "overlays" / "csv_logger.yaml"),
        *tiny_data_args(tiny_cache),
        f"--trainer.default_root_dir={tmp_path}",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        "--trainer.accelerator=cpu",
        "--trainer.fast_dev_run=true",
    ]
    code = (
        "from multimodal_fer.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as stop:\n    assert stop.code in (0, None), stop.code\n"
        f"main({args!r})\n"
        "print('FIT DONE')\n"
    )
    blocked = _optional_only_modules()
    assert {"open3d", "neurokit2", "wandb", "cv2", "av", "soundfile", "facenet_pytorch", "sklearn"} <= set(blocked)
    done = _run_without_optional_packages(code, tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "verbs:" in done.stdout and "FIT DONE" in done.stdout
