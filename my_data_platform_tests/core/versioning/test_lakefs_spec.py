"""The vendored lakeFS spec: which release it is, that it agrees with the pinned SDK, and that
the test server's traffic is really checked against it (a wrong shape fails the test)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import pkgutil
import re
import tomllib
from pathlib import Path

import lakefs_sdk
import lakefs_sdk.api
import lakefs_sdk.models
import pytest
import urllib3

from my_data_platform.core.versioning import InvalidNameError, LakeFSVersionStore
from my_data_platform_tests.core.versioning.conftest import lakefs_store
from my_data_platform_tests.core.versioning.lakefs_http import json_response
from my_data_platform_tests.core.versioning.lakefs_server import LakeFSTestServer
from my_data_platform_tests.core.versioning.spec_validation import (
    SPEC_DIR,
    SPEC_PATH,
    find_route,
    openapi,
    spec_dict,
)

REPO_ROOT = Path(__file__).resolve().parents[3]

# the models this project's traffic uses: their fields must be the spec's
USED_MODELS = [
    "Repository",
    "RepositoryCreation",
    "Ref",
    "RefList",
    "BranchCreation",
    "CommitCreation",
    "Commit",
    "CommitList",
    "ObjectStats",
    "ObjectStatsList",
    "Diff",
    "DiffList",
    "Merge",
    "MergeResult",
    "FindMergeBaseResult",
    "TagCreation",
    "Pagination",
    "Error",
    "BranchProtectionRule",
]


def vendored() -> dict[str, str]:
    lines = (SPEC_DIR / "VERSION").read_text().split()
    return dict(line.split("=", 1) for line in lines)


def sdk_operations() -> dict[tuple[str, str], str]:
    """(METHOD, path template) -> SDK method name, read from the generated ``call_api`` calls."""
    ops: dict[tuple[str, str], str] = {}
    for mod_info in pkgutil.iter_modules(lakefs_sdk.api.__path__):
        mod = importlib.import_module(f"lakefs_sdk.api.{mod_info.name}")
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if not cls.__name__.endswith("Api") or cls.__module__ != mod.__name__:
                continue
            for name, fn in inspect.getmembers(cls, inspect.isfunction):
                if not name.endswith("_with_http_info"):
                    continue
                found = re.findall(r"call_api\(\s*'([^']+)',\s*'([A-Z]+)'", inspect.getsource(fn))
                assert len(found) == 1, f"cannot read the route of {cls.__name__}.{name}"
                path, method = found[0]
                ops[(method, path)] = name.removesuffix("_with_http_info")
    return ops


def _norm(name: str) -> str:
    return name.replace("_", "").lower()


# ------------------------------------------------------------------ which spec, which SDK
def test_vendored_file_is_recorded_and_licensed() -> None:
    digest = hashlib.sha256(SPEC_PATH.read_bytes()).hexdigest()
    readme = (SPEC_DIR / "README.md").read_text()
    assert digest in readme  # the README names the exact file it describes
    assert vendored()["lakefs_release"] in readme and vendored()["lakefs_commit"] in readme
    assert "Apache License" in (SPEC_DIR / "NOTICE").read_text()
    assert "Apache License" in (SPEC_DIR / "LICENSE").read_text()


def test_spec_info_version_is_the_sdk_api_version() -> None:
    """``info.version`` is the API document's version (lakeFS keeps it at 1.0.0); the SDK
    records the document version it was generated from: they must agree."""
    report = lakefs_sdk.Configuration().to_debug_report()
    api_version = re.search(r"Version of the API: (\S+)", report)
    assert api_version is not None
    assert spec_dict()["info"]["version"] == api_version.group(1)


def test_pyproject_pins_the_installed_sdk() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    deps = pyproject["project"]["dependencies"]
    pins = [d for d in deps if re.match(r"lakefs-sdk\s*==", d)]
    assert pins == [f"lakefs-sdk=={lakefs_sdk.__version__}"]
    assert vendored()["sdk_pinned"] == lakefs_sdk.__version__


def test_vendored_release_is_the_sdk_release() -> None:
    assert vendored()["lakefs_release"] == f"v{lakefs_sdk.__version__}"


def test_every_sdk_operation_is_in_the_spec_at_the_same_route() -> None:
    ops = sdk_operations()
    assert len(ops) > 100
    spec_paths = spec_dict()["paths"]
    missing = []
    for (method, path), name in sorted(ops.items()):
        op = spec_paths.get(path, {}).get(method.lower())
        if op is None or _norm(op["operationId"]) != _norm(name):
            missing.append(f"{method} {path} ({name})")
    assert missing == []


@pytest.mark.parametrize("model", USED_MODELS)
def test_the_models_we_use_have_the_spec_fields(model: str) -> None:
    schema = spec_dict()["components"]["schemas"][model]
    cls = getattr(lakefs_sdk.models, model)
    fields = cls.__fields__
    if "properties" not in schema:  # an array or map type
        return
    assert {f.alias for f in fields.values()} == set(schema["properties"])
    required = {f.alias for f in fields.values() if f.required}
    assert required == set(schema.get("required", []))


# ------------------------------------------------------------------ enforcement
def test_spec_is_parsed_once() -> None:
    assert openapi() is openapi()
    assert spec_dict() is spec_dict()


def test_routes_come_from_the_spec() -> None:
    route = find_route("POST", "/api/v1/repositories/r-1/refs/a%2Fb/merge/main")
    assert route.operation == "mergeIntoBranch"
    assert route.params == {"repository": "r-1", "sourceRef": "a/b", "destinationBranch": "main"}
    assert find_route("PATCH", "/api/v1/repositories/r-1").operation is None
    assert find_route("GET", "/api/v1/no/such/thing").template is None


def test_a_response_that_breaks_the_spec_fails_the_test(tmp_path: Path) -> None:
    """The server answers getBranch without ``commit_id``: the SDK may cope, the check not."""
    server = LakeFSTestServer(tmp_path / "srv")
    broken = r"response GET .*/branches/main -> 200.*commit_id"
    with pytest.raises(AssertionError, match=broken), server:
        store = lakefs_store(server)
        store.create_repository()
        server._handlers["getBranch"] = lambda c: json_response(200, {"id": "main"})
        with contextlib.suppress(Exception):  # whatever the SDK makes of it: it is recorded
            store.branch_head("main")
    assert [v.kind for v in server.violations] == ["response"]


def test_a_request_that_breaks_the_spec_gets_400_and_is_recorded(
    lakefs_server: LakeFSTestServer,
) -> None:
    http = urllib3.PoolManager()
    headers = urllib3.make_headers(
        basic_auth=f"{lakefs_server.access_key_id}:{lakefs_server.secret_access_key}"
    )
    resp = http.request(
        "POST",
        f"{lakefs_server.endpoint}/api/v1/repositories",
        json={"name": "Bad_Name", "storage_namespace": "local://x"},
        headers=headers,
    )
    assert resp.status == 400
    assert "does not match" in resp.json()["message"]
    taken = lakefs_server.take_violations()
    assert [(v.kind, v.status) for v in taken] == [("request", 400)]
    assert "Bad_Name" in str(taken[0])


# ------------------------------------------------------------------ the client's own check
@pytest.mark.parametrize(
    "name", ["ab", "Datasets", "data_sets", "-datasets", "d" * 64, "has space", "ümlaut"]
)
def test_client_rejects_repository_names_lakefs_rejects(name: str) -> None:
    with pytest.raises(InvalidNameError, match=r"\^\[a-z0-9\]\[a-z0-9-\]\{2,62\}\$"):
        LakeFSVersionStore("http://127.0.0.1:9", "k", "s", name)


@pytest.mark.parametrize("name", ["abc", "datasets", "0-team-data", "d" * 63])
def test_client_accepts_repository_names_lakefs_accepts(name: str) -> None:
    assert LakeFSVersionStore("http://127.0.0.1:9", "k", "s", name).repository == name
