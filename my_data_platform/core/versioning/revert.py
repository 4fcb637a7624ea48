"""Roll a branch back to an earlier dataset version without rewriting history.

A rollback is a *new* commit whose tree equals the chosen version's tree: nothing is reset or
force-moved, so the bad version stays resolvable (for audits and for diffs) and the rollback
itself carries who did it, why, and from/to which commits.

It is built on a short-lived work branch (the same path every other writer takes: stage,
commit, merge), so a writer that moved ``main`` in the meantime is detected by the merge
instead of being silently overwritten.

Where the provenance lives: the work-branch commit carries it, and the same message and
metadata are passed to the merge, so whichever commit ``main`` ends on carries it too: the
work commit itself after a fast-forward (the embedded store), or the merge commit on a backend
that always writes one (lakeFS). ``resolve_ref("main")`` therefore always names a commit with
``reverted_to``/``reverted_from``/``reverted_by``/``reason``.
"""

from __future__ import annotations

import datetime as dt
import secrets

from my_data_platform.core.versioning.base import (
    DEFAULT_BRANCH,
    Commit,
    MergeConflictError,
    NoChangesError,
    ObjectEntry,
    RefNotFoundError,
    VersioningError,
    VersionStore,
)


class RevertConflictError(MergeConflictError):
    """The branch moved while the rollback was being prepared and the merge conflicts.

    The work branch is kept (``work_branch``) so the prepared rollback can be inspected or
    merged by hand; nothing reached the destination branch."""

    def __init__(self, conflict: MergeConflictError, work_branch: str) -> None:
        super().__init__(conflict.source, conflict.destination, conflict.paths)
        self.work_branch = work_branch
        self.args = (
            f"{self.args[0]}; {conflict.destination!r} moved while reverting. The prepared "
            f"rollback is kept on branch {work_branch!r} (merge or delete it by hand)",
        )


class RevertMismatchError(VersioningError):
    """After the merge the branch's tree is not the requested version's tree (a concurrent,
    non-conflicting write was merged in alongside the rollback)."""


def tree(vs: VersionStore, ref: str) -> dict[str, ObjectEntry]:
    """Path -> entry of the committed state at ``ref``."""
    return {o.path: o for o in vs.list_objects(ref)}


def _same_tree(a: dict[str, ObjectEntry], b: dict[str, ObjectEntry]) -> bool:
    return a.keys() == b.keys() and all(a[p].checksum == b[p].checksum for p in a)


def _differing(a: dict[str, ObjectEntry], b: dict[str, ObjectEntry]) -> list[str]:
    return sorted(p for p in a.keys() | b.keys() if p not in a or p not in b or a[p] != b[p])


def revert(
    vs: VersionStore,
    ref: str,
    *,
    reverted_by: str,
    reason: str,
    branch: str = DEFAULT_BRANCH,
) -> Commit:
    """Make ONE new commit on ``branch`` whose tree equals ``ref``'s; returns the branch's new
    head commit (which carries the provenance metadata).

    Raises :class:`RefNotFoundError` (``ref`` or ``branch`` missing), :class:`NoChangesError`
    (``branch`` already has ``ref``'s tree), :class:`RevertConflictError` (``branch`` moved and
    the merge conflicts; the work branch is kept and named) and :class:`RevertMismatchError`
    (the merge succeeded but the branch does not equal ``ref``: a concurrent write got in).
    """
    if not reason or not reason.strip():
        raise ValueError("a rollback needs a reason")
    if not reverted_by or not reverted_by.strip():
        raise ValueError("a rollback needs reverted_by")
    try:
        target = vs.resolve_ref(ref)
    except RefNotFoundError as exc:
        raise RefNotFoundError(f"cannot revert to {ref!r}: no such ref ({exc})") from exc
    previous = vs.branch_head(branch)
    wanted = tree(vs, target)
    if _same_tree(tree(vs, previous), wanted):
        raise NoChangesError(
            f"{branch!r} (at {previous[:12]}) already has the tree of {ref!r} "
            f"({target[:12]}): nothing to revert"
        )

    reason = reason.strip()
    shown = ref[:12] if ref == target else ref  # a full commit id is shortened like target's
    message = f"revert {branch} to {target[:12]} ({shown}): {reason}"
    metadata = {
        "reverted_to": target,
        "reverted_from": previous,
        "reverted_by": reverted_by.strip(),
        "reason": reason,
        "reverted_ref": ref,
    }
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    work = f"revert-{stamp}-{secrets.token_hex(4)}"
    vs.create_branch(work, previous)
    try:
        current = tree(vs, work)
        for path in sorted(current.keys() - wanted.keys()):
            vs.delete_object(work, path)
        changed = {
            p: vs.get_object(target, p)
            for p, e in sorted(wanted.items())
            if p not in current or current[p].checksum != e.checksum
        }
        if changed:
            vs.put_objects(work, changed)
        vs.commit(work, message, metadata)
    except BaseException:
        # nothing was published: the half-built work branch is of no use to anyone
        vs.delete_branch(work)
        raise
    try:
        head = vs.merge(work, branch, message, metadata)
    except MergeConflictError as exc:
        raise RevertConflictError(exc, work) from exc
    vs.delete_branch(work)
    now = tree(vs, head)
    if not _same_tree(now, wanted):
        paths = _differing(now, wanted)
        raise RevertMismatchError(
            f"{branch!r} moved while reverting: after merging, its head {head[:12]} differs "
            f"from {ref!r} ({target[:12]}) in {len(paths)} path(s): {', '.join(paths[:20])}"
        )
    return vs.get_commit(head)
