"""The code version in provenance: fixed into the wheel at build time, read from git only for
a live checkout (and then marked), an error otherwise (my_data_platform/_build.py)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import my_data_platform
from my_data_platform._build import (
    BUILD_INFO,
    CodeVersionError,
    git_state,
    resolve_code_version,
)

ROOT = Path(__file__).resolve().parent.parent
VERSION = my_data_platform.__version__


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def _package(where: Path, version: str = "9.8.7") -> Path:
    pkg = where / "my_data_platform"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(f'"""A copy."""\n\n__version__ = "{version}"\n')
    return pkg


def _checkout(tmp_path: Path) -> tuple[Path, str]:
    """A git checkout of a tiny project: pyproject.toml, the package, a README."""
    root = tmp_path / "checkout"
    pkg = _package(root)
    (root / "pyproject.toml").write_text('[project]\nname = "my_data_platform"\n')
    (root / "README.md").write_text("readme\n")
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "commit", "-qm", "first")
    return pkg, _git(root, "rev-parse", "HEAD")


def test_build_info_is_what_provenance_records(tmp_path: Path) -> None:
    pkg = _package(tmp_path / "site")
    commit = "0123456789abcdef" * 2 + "01234567"
    info = {"version": "9.8.7", "commit": commit, "dirty": False, "built_at": "2026-01-02"}
    (pkg / BUILD_INFO).write_text(json.dumps(info))
    got = resolve_code_version(pkg)
    assert got == {
        "version": f"9.8.7+g{commit[:12]}", "commit": commit, "dirty": False,
        "origin": "build", "built_at": "2026-01-02",
    }  # fmt: skip
    (pkg / BUILD_INFO).write_text(json.dumps({**info, "dirty": True}))
    assert resolve_code_version(pkg)["version"] == f"9.8.7+g{commit[:12]}.dirty"


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        json.dumps([1, 2]),
        json.dumps({"version": "1", "dirty": False}),  # no commit
        json.dumps({"version": "1", "commit": "../../etc/passwd", "dirty": False}),
        json.dumps({"version": "1", "commit": "abc", "dirty": False}),  # too short to name one
        json.dumps({"version": "1", "commit": "a" * 40, "dirty": "no"}),
    ],
)
def test_damaged_build_info_is_an_error(tmp_path: Path, content: str) -> None:
    pkg = _package(tmp_path / "site")
    (pkg / BUILD_INFO).write_text(content)
    with pytest.raises(CodeVersionError, match="reinstall"):
        resolve_code_version(pkg)


def test_no_build_info_and_no_git_is_an_error_not_a_guess(tmp_path: Path) -> None:
    pkg = _package(tmp_path / "site-packages")
    with pytest.raises(CodeVersionError) as err:
        resolve_code_version(pkg)
    assert str(pkg) in str(err.value) and "reinstall" in str(err.value)
    # a checkout without a commit yet cannot name one either; git's own reason is in the error
    (pkg.parent / "pyproject.toml").write_text("[project]\n")
    _git(pkg.parent, "init", "-q")
    with pytest.raises(CodeVersionError, match=r"git at .*: fatal: "):
        resolve_code_version(pkg)


def test_a_package_inside_an_unrelated_repository_does_not_borrow_its_commit(
    tmp_path: Path,
) -> None:
    """A venv inside some other checkout: that checkout's HEAD says nothing about this code."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "pyproject.toml").write_text('[project]\nname = "something_else"\n')
    _git(other, "init", "-q")
    _git(other, "add", ".")
    _git(other, "commit", "-qm", "unrelated")
    deep = _package(other / ".venv" / "lib" / "site-packages")
    nested = _package(other / "vendored")  # a pyproject.toml beside it, but not a checkout top
    (other / "vendored" / "pyproject.toml").write_text("[project]\n")
    for pkg, why in ((deep, "has no pyproject.toml"), (nested, "not the top of one")):
        with pytest.raises(CodeVersionError, match="not in a git checkout") as err:
            resolve_code_version(pkg)
        assert why in str(err.value)


def test_a_source_checkout_is_marked_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pkg, commit = _checkout(tmp_path)
    with caplog.at_level(logging.WARNING, logger="my_data_platform._build"):
        got = resolve_code_version(pkg)
    assert got["version"] == f"9.8.7+g{commit[:12]}.source"
    assert (got["origin"], got["commit"], got["dirty"]) == ("source", commit, False)
    assert "without an install" in caplog.text and commit[:12] in caplog.text
    # docs are not code: editing them leaves the version clean
    (pkg.parent / "README.md").write_text("edited\n")
    assert resolve_code_version(pkg)["dirty"] is False
    # an edited or a new module is: the commit alone no longer describes the code
    (pkg / "new_module.py").write_text("X = 1\n")
    assert resolve_code_version(pkg)["version"] == f"9.8.7+g{commit[:12]}.source.dirty"


def test_this_checkout_resolves_where_tests_run() -> None:
    """Tests run with PYTHONPATH=<checkout> (or an editable install): the live commit."""
    state = git_state(ROOT)
    if state is None:
        pytest.skip(f"{ROOT} is not a git checkout")
    got = resolve_code_version()
    assert got["origin"] in ("source", "editable")
    assert got["commit"] == state["commit"] and got["dirty"] == state["dirty"]
    assert got["version"].startswith(f"{VERSION}+g{state['commit'][:12]}.{got['origin']}")


@pytest.mark.slow  # builds a wheel (pip subprocess) and imports it in a second interpreter
def test_the_wheel_carries_its_commit_and_needs_no_git(tmp_path: Path) -> None:
    state = git_state(ROOT)
    if state is None:
        pytest.skip(f"{ROOT} is not a git checkout")
    # no build isolation: the tests run offline, and setuptools is already installed
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path / "wheel"), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = (tmp_path / "wheel").glob("my_data_platform-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        info = json.loads(zf.read(f"my_data_platform/{BUILD_INFO}"))
        zf.extractall(tmp_path / "site")  # what installing a pure-Python wheel amounts to
    assert info["commit"] == state["commit"] and info["dirty"] == state["dirty"]
    assert info["version"] == VERSION and info["built_at"]

    # the installed copy, far from any .git, reports the build's commit through lineage
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    out = subprocess.run(
        [sys.executable, "-c",
         "import json, my_data_platform._build as b;"
         "from my_data_platform.defs.datasets.lineage import code_version;"
         "print(json.dumps([b.__file__, code_version()]))"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    where, version = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(where).is_relative_to(tmp_path / "site")
    assert version == f"{VERSION}+g{state['commit'][:12]}" + (".dirty" if state["dirty"] else "")
