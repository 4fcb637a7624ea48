"""Branch retention: remove the run branches write-audit-publish leaves behind, on any backend.

``datasets/popularity`` writes each run to ``run-<runid8>-<YYYYmmddHHMMSS>`` (UTC), branched
from ``main``. A published run deletes its branch; two kinds are left behind:

* **merged**: a run killed between the merge and the branch delete (or a run that found the
  dataset unchanged and died before deleting). The head is in ``main``'s history and nothing is
  staged, so the branch holds nothing ``main`` lacks: it is removed.
* **failed**: an audit failed (the objects stay staged, uncommitted, for debugging), or a run
  died after its commit and before the merge (commits ``main`` lacks). Kept for
  ``failed_retention`` and then removed.

Only names of exactly that shape are considered: ``main`` (the default branch), tags and any
other branch (a user's own, ``revert-*``) are never touched. A run branch is also left alone
while its run may still be writing: while it is younger than ``grace`` or its Dagster run id
prefix is in ``protect``.

**How old a branch is.** Neither backend records when a branch was created, so it is derived:
the creation time is the timestamp in the name (the asset writes it, UTC, when it creates the
branch). The *last activity* is that time, or the head commit's date when the head is a commit
made on the branch itself (not in ``main``'s history: the run's own commit, or one made while
debugging it, restarts the clock). A head that is in ``main`` is the commit the branch started
from, older than the branch, so its date says nothing. A failed branch expires
``failed_retention`` after its last activity. Staged writes carry no date on either backend.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Literal

from my_data_platform.core.versioning.base import RefNotFoundError, VersionStore

log = logging.getLogger(__name__)

RUN_BRANCH = re.compile(r"^run-(?P<run>[0-9a-f]{8})-(?P<ts>\d{14})$")
"""``run-<first 8 hex digits of the Dagster run id>-<UTC %Y%m%d%H%M%S>``."""

Status = Literal["merged", "failed"]
Action = Literal["removed", "kept", "in_progress"]


@dataclass(frozen=True)
class BranchDecision:
    """What retention decided for one run branch, and why (for the report and the logs)."""

    branch: str
    status: Status | None
    action: Action
    created_at: dt.datetime
    last_activity: dt.datetime
    reason: str


@dataclass
class RetentionReport:
    decisions: list[BranchDecision] = field(default_factory=list)

    def _names(self, status: Status | None, action: Action) -> list[str]:
        return [d.branch for d in self.decisions if d.status == status and d.action == action]

    @property
    def removed_merged(self) -> list[str]:
        return self._names("merged", "removed")

    @property
    def removed_expired(self) -> list[str]:
        """Failed-audit branches past the retention."""
        return self._names("failed", "removed")

    @property
    def kept_failed(self) -> list[str]:
        return self._names("failed", "kept")

    @property
    def in_progress(self) -> list[str]:
        """Branches a run may still be writing (too young, or their run is in progress)."""
        return [d.branch for d in self.decisions if d.action == "in_progress"]


def run_branch_created_at(name: str) -> dt.datetime | None:
    """The UTC creation time in a run branch's name; ``None`` for any other name."""
    m = RUN_BRANCH.fullmatch(name)
    if m is None:
        return None
    try:
        return dt.datetime.strptime(m.group("ts"), "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)
    except ValueError:  # e.g. month 13: not a name the asset writes
        return None


def apply_branch_retention(
    vs: VersionStore,
    *,
    failed_retention: dt.timedelta,
    grace: dt.timedelta,
    protect: Collection[str] = (),
    now: dt.datetime | None = None,
) -> RetentionReport:
    """Remove merged run branches and failed ones older than ``failed_retention``; keep the
    rest (module docstring). ``protect`` holds run-id prefixes (8 hex digits) of runs still in
    progress. A branch that vanishes meanwhile (another maintenance run) is skipped."""
    now = now or dt.datetime.now(dt.UTC)
    report = RetentionReport()
    main = vs.default_branch
    protected = {p[:8] for p in protect}
    for name in vs.list_branches():
        created = run_branch_created_at(name)
        if name == main or created is None:
            continue
        try:
            decision = _decide(vs, name, created, main, failed_retention, grace, protected, now)
            if decision.action == "removed":
                vs.delete_branch(name)
        except RefNotFoundError:
            log.info("branch %s vanished during retention; skipped", name)
            continue
        log.info("retention: %s %s (%s)", name, decision.action, decision.reason)
        report.decisions.append(decision)
    return report


def _decide(
    vs: VersionStore,
    name: str,
    created: dt.datetime,
    main: str,
    failed_retention: dt.timedelta,
    grace: dt.timedelta,
    protected: set[str],
    now: dt.datetime,
) -> BranchDecision:
    run = name.split("-")[1]
    if run in protected:
        return BranchDecision(name, None, "in_progress", created, created, "its run is in progress")
    if now - created < grace:
        return BranchDecision(
            name, None, "in_progress", created, created, "younger than the grace period"
        )
    head = vs.get_commit(vs.branch_head(name))
    dirty = bool(vs.uncommitted(name))
    in_main = vs.is_ancestor(head.id, main)
    if in_main and not dirty:
        return BranchDecision(name, "merged", "removed", created, created, "head is in main")
    # a head in main is the commit the branch started from: older than the branch itself
    last = created if in_main else max(created, head.created_at.astimezone(dt.UTC))
    why = "uncommitted changes" if dirty else "commits main lacks"
    age = now - last
    if age >= failed_retention:
        return BranchDecision(
            name, "failed", "removed", created, last, f"{why}; idle {age} >= {failed_retention}"
        )
    return BranchDecision(
        name, "failed", "kept", created, last, f"{why}; idle {age} < {failed_retention}"
    )
