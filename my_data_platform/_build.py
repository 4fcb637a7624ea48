"""Which code is running: the git commit fixed into the package when it is built.

Provenance (dataset commit metadata, model manifests, reproductions) names the code that
produced it. A worker runs an installed wheel and has no ``.git``, so asking git at run time
would fail there or, worse, answer for whatever repository happens to enclose the venv. So the
commit is written into the package when it is built (:class:`BuildPy`, wired in pyproject's
``[tool.setuptools.cmdclass]``) as ``my_data_platform/_build_info.json``; the sdist carries the
same file (:class:`Sdist`), so a wheel built from it without git keeps the commit.

At run time :func:`resolve_code_version` says where its answer came from (``origin``):

- ``build``: the build info of a wheel or sdist install, frozen at build time.
- ``editable``: an editable install (``make install``): the source tree *is* the code, so its
  live git state is the truth (build info written at install time would go stale on the next
  ``git pull``).
- ``source``: no install of this tree at all (``PYTHONPATH=<checkout>``): the checkout's git
  state, marked ``.source`` in the version and logged as a warning.

Anything else (no build info and no git checkout of this very package) raises
:class:`CodeVersionError` naming the fix: no silent guess ever reaches provenance.

This module only needs the standard library at run time; setuptools is imported for the build
commands alone, which a runtime without setuptools never uses.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
from pathlib import Path
from typing import Any, Literal, TypedDict

PACKAGE = "my_data_platform"
BUILD_INFO = "_build_info.json"
"""Written next to ``__init__.py`` in the build output; never committed (.gitignore)."""
PACKAGE_DIR = Path(__file__).resolve().parent

log = logging.getLogger(__name__)

Origin = Literal["build", "editable", "source"]


class CodeVersionError(RuntimeError):
    """The running code's commit cannot be known: provenance would be a guess."""


class CodeProvenance(TypedDict):
    """What :func:`resolve_code_version` knows about the running code."""

    version: str
    """``<package version>+g<commit[:12]>``, then ``.editable``/``.source`` for a live tree,
    then ``.dirty`` when the tree had uncommitted changes (PEP 440 local version labels)."""
    commit: str
    dirty: bool
    origin: Origin
    built_at: str | None


class GitState(TypedDict):
    commit: str
    dirty: bool


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout.strip()


def git_state(root: Path) -> GitState | None:
    """The commit checked out at ``root`` and whether the package's files differ from it.

    ``None`` unless ``root`` is the top of a git work tree holding ``pyproject.toml``: a package
    copied into some other repository (a venv inside an unrelated checkout) must not borrow
    that repository's commit. "Dirty" looks at what runs (the package and pyproject.toml,
    untracked files included), not at docs or tests.
    """
    return _git_state(root)[0]


def _git_state(root: Path) -> tuple[GitState | None, str]:
    """:func:`git_state`, and why it is ``None`` (for error messages)."""
    root = root.resolve()
    if not (root / "pyproject.toml").is_file():
        return None, f"{root} has no pyproject.toml"
    try:
        top = Path(_git(root, "rev-parse", "--show-toplevel")).resolve()
        if top != root:
            return None, f"{root} is inside the git work tree {top}, not the top of one"
        commit = _git(root, "rev-parse", "--verify", "HEAD")
        status = _git(root, "status", "--porcelain", "--", PACKAGE, "pyproject.toml")
    except subprocess.CalledProcessError as exc:
        # not a repository, no commit yet, or git refusing it ("dubious ownership")
        reason = (exc.stderr or "").strip().splitlines()
        return None, f"git at {root}: {reason[0] if reason else exc}"
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"git at {root}: {exc}"
    return {"commit": commit, "dirty": bool(status)}, ""


def package_version(package_dir: Path = PACKAGE_DIR) -> str:
    """``__version__`` as written in the package's ``__init__.py`` (the code that runs, not
    whichever distribution of the same name pip knows about)."""
    for line in (package_dir / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    raise CodeVersionError(f"{package_dir / '__init__.py'} defines no __version__")


def format_version(version: str, commit: str, dirty: bool, origin: Origin) -> str:
    """The one-string form stored in provenance; its suffixes say how far to trust it."""
    out = f"{version}+g{commit[:12]}"
    if origin != "build":
        out += f".{origin}"
    return out + (".dirty" if dirty else "")


def build_info(root: Path, package_dir: Path) -> dict[str, Any]:
    """The build info for a build of the source tree at ``root``: its git state, or, for a
    tree without git (an unpacked sdist), the build info the sdist carries. Raises
    :class:`CodeVersionError` when neither exists: a build must not guess its commit."""
    state = git_state(root)
    if state is not None:
        return {
            "version": package_version(package_dir),
            "commit": state["commit"],
            "dirty": state["dirty"],
            "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
    carried = read_build_info(package_dir)
    if carried is not None:
        return carried
    raise CodeVersionError(
        f"cannot build {PACKAGE} from {root}: it is not a git checkout and carries no "
        f"{PACKAGE}/{BUILD_INFO}; build from a git checkout, or from an sdist made from one"
    )


def read_build_info(package_dir: Path = PACKAGE_DIR) -> dict[str, Any] | None:
    """The package's build info; ``None`` when it has none; an error when it is unreadable
    (a damaged install is a problem to fix, not a reason to guess)."""
    path = package_dir / BUILD_INFO
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CodeVersionError(f"{path} is unreadable ({exc}); reinstall {PACKAGE}") from None
    ok = (
        isinstance(info, dict)
        and isinstance(info.get("commit"), str)
        and len(info["commit"]) >= 12
        and all(c in "0123456789abcdef" for c in info["commit"])
        and isinstance(info.get("dirty"), bool)
        and isinstance(info.get("version"), str)
    )
    if not ok:
        raise CodeVersionError(
            f"{path} is not a build info (commit, dirty, version); reinstall {PACKAGE}"
        )
    return info


def editable_root(package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The project root when ``package_dir`` is the source of an editable install of this
    distribution (PEP 610 ``direct_url.json``); ``None`` otherwise, e.g. for another
    checkout on ``PYTHONPATH`` while the editable install points elsewhere."""
    from importlib.metadata import distributions
    from urllib.parse import unquote, urlparse

    # every copy of the metadata, not the first: a checkout's own ``*.egg-info`` (left by the
    # editable build) comes first on ``sys.path`` from the project root and has no
    # ``direct_url.json``; the installed ``.dist-info`` does
    for dist in distributions(name=PACKAGE):
        try:
            direct = json.loads(dist.read_text("direct_url.json") or "{}")
        except ValueError:
            continue
        if not (direct.get("dir_info") or {}).get("editable"):
            continue
        url = urlparse(str(direct.get("url", "")))
        if url.scheme != "file":
            continue
        root = Path(unquote(url.path)).resolve()
        if package_dir.resolve() == root / PACKAGE:
            return root
    return None


def resolve_code_version(package_dir: Path = PACKAGE_DIR) -> CodeProvenance:
    """Which code runs: from the build info (``build``), else from the live git state of an
    editable install (``editable``) or of a plain checkout (``source``, logged as a warning).
    Raises :class:`CodeVersionError` when none of these applies."""
    package_dir = package_dir.resolve()
    info = read_build_info(package_dir)
    if info is not None:
        commit, dirty = str(info["commit"]), bool(info["dirty"])
        return {
            "version": format_version(str(info["version"]), commit, dirty, "build"),
            "commit": commit,
            "dirty": dirty,
            "origin": "build",
            "built_at": info.get("built_at"),
        }
    root = package_dir.parent
    origin: Origin = "editable" if editable_root(package_dir) == root else "source"
    state, why = _git_state(root)
    if state is None:
        raise CodeVersionError(
            f"{PACKAGE} at {package_dir} has no build info ({BUILD_INFO}) and is not in a git "
            f"checkout of this project ({why}), so the code version is unknown; reinstall it "
            f"from a git checkout (`pip install <checkout>` or `make install`)"
        )
    if origin == "source":
        log.warning(
            "%s runs from the source tree %s without an install: code version read from git "
            "(%s%s), marked '.source' in provenance",
            PACKAGE, root, state["commit"][:12], ", uncommitted changes" if state["dirty"] else "",
        )  # fmt: skip
    return {
        "version": format_version(package_version(package_dir), **state, origin=origin),
        "commit": state["commit"],
        "dirty": state["dirty"],
        "origin": origin,
        "built_at": None,
    }


# --- build commands (pyproject.toml: [tool.setuptools.cmdclass]) ----------------------------

try:
    from setuptools.command.build_py import build_py as _build_py
    from setuptools.command.sdist import sdist as _sdist
except ModuleNotFoundError:  # a runtime without setuptools: only the readers above are used
    pass
else:

    class BuildPy(_build_py):
        """``build_py`` that also writes ``_build_info.json`` into the build output, so a
        wheel knows its commit. Editable builds write nothing: their source tree is live and
        :func:`resolve_code_version` asks its git instead."""

        def run(self) -> None:
            super().run()
            if self.editable_mode:
                return
            info = build_info(Path.cwd(), Path.cwd() / PACKAGE)
            target = Path(self.build_lib) / PACKAGE / BUILD_INFO
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")

        def get_outputs(self, include_bytecode: bool = True) -> list[str]:
            outputs = list(super().get_outputs(include_bytecode))
            if not self.editable_mode:
                outputs.append(str(Path(self.build_lib) / PACKAGE / BUILD_INFO))
            return outputs

    class Sdist(_sdist):
        """``sdist`` that puts the build info into the archive, so a wheel built from the sdist
        (no ``.git`` there) still names the commit the sdist was made from."""

        def make_release_tree(self, base_dir: str, files: list[str]) -> None:
            super().make_release_tree(base_dir, files)
            info = build_info(Path.cwd(), Path.cwd() / PACKAGE)
            target = Path(base_dir) / PACKAGE / BUILD_INFO
            target.unlink(missing_ok=True)  # a hard link to a source file: never write through
            target.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
