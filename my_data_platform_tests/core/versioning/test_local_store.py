"""The embedded store's own guarantees: crash safety, two writers, and a model-based test."""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from my_data_platform.core.versioning import (
    LocalVersionStore,
    LockTimeoutError,
    MergeConflictError,
    NoChangesError,
    RefExistsError,
    UncommittedChangesError,
)

REPO_ROOT = Path(__file__).resolve().parents[3]

# A writer that commits ever-growing rounds until it is killed. Round r writes 200 files and
# moves latest.txt, so any committed state can be checked against what the round must hold.
_CRASH_WRITER = textwrap.dedent(
    """
    import sys
    from my_data_platform.core.versioning import LocalVersionStore
    store = LocalVersionStore(sys.argv[1], "datasets")
    start = int(sys.argv[2])
    r = start
    while True:
        files = {f"r{r:04d}/f{i:03d}.bin": f"{r}:{i}".encode() * 50 for i in range(200)}
        files["latest.txt"] = str(r).encode()
        store.put_objects("main", files)
        store.commit("main", f"round {r}", {"round": str(r)})
        r += 1
    """
)

_CONCURRENT_WRITER = textwrap.dedent(
    """
    import json, os, sys, time
    from my_data_platform.core.versioning import LocalVersionStore, NoChangesError
    root, wid, go = sys.argv[1], sys.argv[2], sys.argv[3]
    store = LocalVersionStore(root, "datasets", lock_timeout=30)
    while not os.path.exists(go):
        time.sleep(0.005)
    ok = empty = 0
    for k in range(8):
        store.put_objects("main", {f"w{wid}/r{k}/f{j}.txt": f"{wid}-{k}-{j}".encode()
                                   for j in range(20)})
        try:
            store.commit("main", f"writer {wid} round {k}", {"writer": wid})
            ok += 1
        except NoChangesError:  # the other writer's commit already took our staged files
            empty += 1
    print(json.dumps({"ok": ok, "empty": empty}))
    """
)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def _round_files(r: int) -> dict[str, bytes]:
    return {f"r{r:04d}/f{i:03d}.bin": f"{r}:{i}".encode() * 50 for i in range(200)}


def _assert_committed_state_is_complete(store: LocalVersionStore, ref: str) -> int:
    """Every committed round is fully present and ``latest.txt`` names the last one."""
    commit = store.get_commit(ref)
    if "round" not in commit.metadata:
        assert store.list_objects(ref) == []
        return -1
    last = int(commit.metadata["round"])
    assert store.get_object(ref, "latest.txt") == str(last).encode()
    paths = {e.path for e in store.list_objects(ref)}
    assert len(paths) == (last + 1) * 200 + 1
    for r in {0, last // 2, last}:
        for path, data in _round_files(r).items():
            assert store.get_object(ref, path) == data
    return last


@pytest.mark.slow
def test_kill_9_mid_commit_leaves_a_consistent_readable_store(tmp_path: Path) -> None:
    store = LocalVersionStore(tmp_path, "datasets")
    store.create_repository()
    rng = random.Random(1234)
    next_round = 0
    heads_seen = [store.branch_head("main")]
    for _ in range(5):
        proc = subprocess.Popen(
            [sys.executable, "-c", _CRASH_WRITER, str(tmp_path), str(next_round)],
            env=_env(),
            stderr=subprocess.PIPE,
        )
        # wait for the writer's first commit (imports take a while on a loaded machine),
        # then kill it at a random point of a later round
        deadline = time.monotonic() + 30
        while store.branch_head("main") == heads_seen[-1] and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()

        assert store.check_consistency() == []
        last = _assert_committed_state_is_complete(store, store.branch_head("main"))
        for old in heads_seen:  # every earlier head is still readable
            _assert_committed_state_is_complete(store, old)
        store.list_objects("main")  # the staged view survives a torn staging append
        heads_seen.append(store.branch_head("main"))
        assert last >= next_round  # the writer committed at least once before the kill
        next_round = last + 1
    # the lock died with its holder, and a torn staging file does not block a new commit
    store.put_object("main", "after-crash.txt", b"ok")
    store.commit("main", "after the crashes")
    assert store.check_consistency() == []


@pytest.mark.slow
def test_two_processes_committing_to_one_branch_lose_nothing(tmp_path: Path) -> None:
    store = LocalVersionStore(tmp_path, "datasets")
    store.create_repository()
    root_commit = store.branch_head("main")
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CONCURRENT_WRITER, str(tmp_path), wid, str(go)],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for wid in ("a", "b")
    ]
    time.sleep(0.3)  # both are importing / polling
    go.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        results.append(json.loads(out))

    assert store.check_consistency() == []
    expected = {
        f"w{w}/r{k}/f{j}.txt": f"{w}-{k}-{j}".encode()
        for w in ("a", "b")
        for k in range(8)
        for j in range(20)
    }
    assert {e.path: store.get_object("main", e.path) for e in store.list_objects("main")} == (
        expected
    )
    assert store.uncommitted("main") == []
    commits = store.log("main", limit=1000)
    ok = sum(r["ok"] for r in results)
    assert ok >= 2 and len(commits) == ok + 1  # linear history: no commit was overwritten
    assert commits[-1].id == root_commit
    for child, parent in itertools.pairwise(commits):
        assert child.parents == (parent.id,)


def test_a_second_writer_waits_then_fails_cleanly(tmp_path: Path) -> None:
    store = LocalVersionStore(tmp_path, "datasets", durable=False, lock_timeout=0.3)
    store.create_repository()
    store.put_object("main", "a.txt", b"a")
    fd = os.open(tmp_path / "datasets" / "lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another process would hold it like this
        t0 = time.monotonic()
        with pytest.raises(LockTimeoutError, match="retry later"):
            store.commit("main", "blocked")
        assert time.monotonic() - t0 >= 0.3
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    assert store.commit("main", "unblocked").message == "unblocked"
    assert store.get_object("main", "a.txt") == b"a"


def test_corruption_is_reported(tmp_path: Path) -> None:
    store = LocalVersionStore(tmp_path, "datasets", durable=False)
    store.create_repository()
    store.put_object("main", "a.txt", b"hello")
    store.commit("main", "one")
    assert store.check_consistency() == []
    blob = next(p for p in (tmp_path / "datasets" / "objects").rglob("*") if p.is_file())
    blob.write_bytes(b"HELLO")
    assert any("corrupt" in p for p in store.check_consistency())
    blob.unlink()
    assert any("missing" in p for p in store.check_consistency())


def test_branch_creation_is_zero_copy(tmp_path: Path) -> None:
    store = LocalVersionStore(tmp_path, "datasets", durable=False)
    store.create_repository()
    store.put_objects("main", {f"f{i}": os.urandom(64) for i in range(300)})
    store.commit("main", "data")

    def files() -> int:
        return sum(1 for p in (tmp_path / "datasets").rglob("*") if p.is_file())

    before = files()
    store.create_branch("copy", "main")
    assert files() == before + 1  # one ref file


# ---------------------------------------------------------------------------------- model test
# few names and values, so branches collide, diverge and conflict often
_BRANCHES = st.sampled_from(["main", "b1", "b2", "b3"])
_PATHS = st.sampled_from(["a", "b", "d/c"])
_DATA = st.sampled_from([b"", b"0", b"1"])


class StoreMatchesModel(RuleBasedStateMachine):
    """Random branch/write/delete/commit/merge sequences against a dict model.

    The model keeps, per branch, its head commit and staged writes, and per commit its tree
    (path -> bytes) and parents; merges are computed from the model's own history.
    """

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.store = LocalVersionStore(self.tmp.name, "model", durable=False)
        self.trees: dict[str, dict[str, bytes]] = {}
        self.parents: dict[str, tuple[str, ...]] = {}
        self.heads: dict[str, str] = {}
        self.staged: dict[str, dict[str, bytes | None]] = {}

    def teardown(self) -> None:
        self.tmp.cleanup()

    @initialize()
    def create(self) -> None:
        self.store.create_repository()
        root = self.store.branch_head("main")
        self.trees[root], self.parents[root] = {}, ()
        for branch in ("main", "b1", "b2"):
            if branch != "main":
                self.store.create_branch(branch, "main")
            self.heads[branch], self.staged[branch] = root, {}

    # model helpers
    def view(self, branch: str) -> dict[str, bytes]:
        out = dict(self.trees[self.heads[branch]])
        for p, v in self.staged[branch].items():
            if v is None:
                out.pop(p, None)
            else:
                out[p] = v
        return out

    def ancestors(self, c: str) -> set[str]:
        seen, todo = set(), [c]
        while todo:
            x = todo.pop()
            if x not in seen:
                seen.add(x)
                todo.extend(self.parents[x])
        return seen

    def move_head(self, branch: str, commit: str) -> None:
        """A merge that moves a clean branch drops its staging area, as lakeFS does (see
        docs/versioning.md): what is left there are no-ops, such as a write undone by a delete."""
        self.heads[branch], self.staged[branch] = commit, {}

    def generation(self, c: str) -> int:
        return 1 + max((self.generation(p) for p in self.parents[c]), default=0)

    @rule(name=_BRANCHES, source=_BRANCHES)
    def create_branch(self, name: str, source: str) -> None:
        if source not in self.heads:
            return
        if name in self.heads:
            with pytest.raises(RefExistsError):
                self.store.create_branch(name, source)
            return
        self.store.create_branch(name, source)
        self.heads[name], self.staged[name] = self.heads[source], {}

    @rule(branch=_BRANCHES, path=_PATHS, data=_DATA)
    def write(self, branch: str, path: str, data: bytes) -> None:
        if branch in self.heads:
            self.store.put_object(branch, path, data)
            self.staged[branch][path] = data

    @rule(branch=_BRANCHES, path=_PATHS)
    def delete(self, branch: str, path: str) -> None:
        if branch in self.heads:
            self.store.delete_object(branch, path)
            if path in self.view(branch):
                self.staged[branch][path] = None

    @rule(branch=_BRANCHES)
    def commit(self, branch: str) -> None:
        if branch not in self.heads:
            return
        view = self.view(branch)
        if view == self.trees[self.heads[branch]]:
            with pytest.raises(NoChangesError):
                self.store.commit(branch, "noop")
            self.staged[branch] = {}
            return
        c = self.store.commit(branch, f"commit on {branch}")
        assert c.parents == (self.heads[branch],)
        self.trees[c.id], self.parents[c.id] = view, c.parents
        self.heads[branch], self.staged[branch] = c.id, {}

    @rule(source=_BRANCHES, dest=_BRANCHES)
    def merge(self, source: str, dest: str) -> None:
        if source not in self.heads or dest not in self.heads:
            return
        src, dst = self.heads[source], self.heads[dest]
        if self.view(dest) != self.trees[dst]:
            with pytest.raises(UncommittedChangesError):
                self.store.merge(source, dest)
            return
        common = self.ancestors(src) & self.ancestors(dst)
        base = max(common, key=lambda c: (self.generation(c), c))
        if base == src:
            assert self.store.merge(source, dest) == dst
            return
        if base == dst:
            assert self.store.merge(source, dest) == src
            self.move_head(dest, src)
            return
        b, s, d = self.trees[base], self.trees[src], self.trees[dst]
        merged, conflicts = {}, []
        for p in b.keys() | s.keys() | d.keys():
            bv, sv, dv = b.get(p), s.get(p), d.get(p)
            if sv in (dv, bv):
                result = dv
            elif dv == bv:
                result = sv
            else:
                conflicts.append(p)
                continue
            if result is not None:
                merged[p] = result
        if conflicts:
            with pytest.raises(MergeConflictError) as exc:
                self.store.merge(source, dest)
            assert exc.value.paths == sorted(conflicts)
            return
        new = self.store.merge(source, dest)
        if merged == d:
            assert new == dst
            return
        assert self.store.get_commit(new).parents == (dst, src)
        self.trees[new], self.parents[new] = merged, (dst, src)
        self.move_head(dest, new)

    @invariant()
    def matches_model(self) -> None:
        if not self.heads:
            return
        assert self.store.list_branches() == sorted(self.heads)
        for branch, head in self.heads.items():
            assert self.store.branch_head(branch) == head
            view = self.view(branch)
            listed = self.store.list_objects(branch)
            assert [e.path for e in listed] == sorted(view)
            for e in listed:
                assert self.store.get_object(branch, e.path) == view[e.path]
            committed = {e.path for e in self.store.list_objects(head)}
            assert committed == set(self.trees[head])

    @invariant()
    def consistent(self) -> None:
        if self.heads:
            assert self.store.check_consistency() == []


StoreMatchesModel.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestStoreMatchesModel = StoreMatchesModel.TestCase


def test_model_regression_merge_into_a_branch_whose_staged_write_was_deleted() -> None:
    """The sequence the state machine found (issue 14), replayed as hypothesis prints it.

    ``main`` stages ``d/c`` and deletes it again before any commit: that leaves no change, so
    ``main`` is clean and the merge goes ahead; the fast-forward drops ``main``'s staging
    area, so the merged ``d/c`` is visible. The model used to keep the tombstone.
    """
    state = StoreMatchesModel()
    try:
        state.create()
        state.write(branch="main", path="d/c", data=b"")
        state.write(branch="b2", path="d/c", data=b"")
        state.commit(branch="b2")
        state.delete(branch="main", path="d/c")
        state.merge(source="b2", dest="main")
        state.matches_model()
        assert [e.path for e in state.store.list_objects("main")] == ["d/c"]
    finally:
        state.teardown()
