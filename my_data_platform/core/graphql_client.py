"""A small client for the Dagster webserver's GraphQL API: backfills, and following them.

``mdp run`` on the production profile starts nothing itself: it asks the running webserver to
backfill (the daemon submits the runs, the run launcher and executor run them, everything is
recorded in the shared instance) and follows the backfill to its end. dagster-graphql's own
client has no backfill calls, so this one speaks the schema directly (checked against
dagster_graphql 1.13: ``launchPartitionBackfill``, ``partitionBackfillOrError``,
``addDynamicPartition``, ``repositoriesOrError``). Plain Python (standard library only).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

FINISHED_RUN_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
DONE_BACKFILL_STATUSES = frozenset(
    {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
)
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


class GraphQLError(RuntimeError):
    """The webserver answered with an error (a GraphQL error or an error type of the schema)."""


class WebserverUnreachable(GraphQLError):
    """No webserver answered at the URL (refused, timed out, not Dagster)."""


@dataclass(frozen=True)
class BackfillRun:
    run_id: str
    status: str
    partition: str | None  # the day, ``first...last`` for a range, or None (unpartitioned)
    failed_steps: tuple[str, ...] = ()

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_RUN_STATUSES


@dataclass(frozen=True)
class BackfillState:
    backfill_id: str
    status: str
    runs: tuple[BackfillRun, ...] = ()
    error: str | None = None
    num_partitions: int | None = None

    @property
    def done(self) -> bool:
        """Over: the backfill is in a final state and none of its runs is still going."""
        return self.status in DONE_BACKFILL_STATUSES and all(r.finished for r in self.runs)

    @property
    def failed_runs(self) -> list[BackfillRun]:
        return [r for r in self.runs if r.status != "SUCCESS" and r.finished]

    @property
    def succeeded(self) -> bool:
        return (
            self.done
            and self.status in ("COMPLETED", "COMPLETED_SUCCESS")
            and not self.failed_runs
            and self.error is None
        )


@dataclass(frozen=True)
class Repository:
    location: str
    name: str


_RUN_FIELDS = "runId status tags { key value } stepStats { stepKey status }"

_BACKFILL_QUERY = f"""
query Backfill($id: String!) {{
  partitionBackfillOrError(backfillId: $id) {{
    __typename
    ... on PartitionBackfill {{
      id status numPartitions
      error {{ message }}
      runs {{ {_RUN_FIELDS} }}
    }}
    ... on Error {{ message }}
  }}
}}
"""

_LAUNCH_MUTATION = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
  }
}
"""

_REPOSITORIES_QUERY = """
query Repositories {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection {
      nodes { name location { name } }
    }
    ... on Error { message }
  }
}
"""

_ADD_PARTITION_MUTATION = """
mutation Add($selector: RepositorySelector!, $name: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $selector, partitionsDefName: $name, partitionKey: $key) {
    __typename
    ... on AddDynamicPartitionSuccess { partitionKey }
    ... on DuplicateDynamicPartitionError { partitionName }
    ... on Error { message }
  }
}
"""


class DagsterWebserverClient:
    """Talks to ``{url}/graphql``. ``url`` is a checked ``http(s)://`` base URL (settings)."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"the webserver URL must be http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def execute(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST one GraphQL document; the ``data`` of the answer, or :class:`GraphQLError`."""
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=body,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            raise GraphQLError(f"{self.url}/graphql answered HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise WebserverUnreachable(
                f"no Dagster webserver answered at {self.url} ({reason})"
            ) from None
        try:
            answer = json.loads(payload)
        except ValueError:
            raise WebserverUnreachable(
                f"{self.url}/graphql did not answer JSON: is it a Dagster webserver?"
            ) from None
        if not isinstance(answer, dict):
            raise GraphQLError(
                f"{self.url}/graphql answered {type(answer).__name__}, not an object"
            )
        if answer.get("errors"):
            messages = "; ".join(str(e.get("message", e)) for e in answer["errors"])
            raise GraphQLError(f"GraphQL error: {messages}")
        data = answer.get("data")
        if not isinstance(data, dict):
            raise GraphQLError("GraphQL answer without data")
        return data

    def version(self) -> str:
        """The webserver's Dagster version: a cheap check that it answers."""
        return str(self.execute("{ version }")["version"])

    def repositories(self) -> list[Repository]:
        got = _ok(self.execute(_REPOSITORIES_QUERY)["repositoriesOrError"], "RepositoryConnection")
        return [Repository(location=n["location"]["name"], name=n["name"]) for n in got["nodes"]]

    def find_repository(self, location: str | None = None) -> Repository:
        """The repository of code location ``location``, or the only one the webserver has."""
        repos = self.repositories()
        matches = [r for r in repos if location is None or r.location == location]
        if len(matches) == 1:
            return matches[0]
        names = sorted(f"{r.location}/{r.name}" for r in repos) or ["none"]
        wanted = f"code location {location!r}" if location else "exactly one repository"
        raise GraphQLError(f"the webserver at {self.url} does not have {wanted}: {names}")

    def add_dynamic_partitions(
        self, repository: Repository, partitions_def_name: str, keys: Sequence[str]
    ) -> list[str]:
        """Add each key to the dynamic partitions definition; the keys that were new."""
        added: list[str] = []
        selector = {
            "repositoryLocationName": repository.location,
            "repositoryName": repository.name,
        }
        for key in keys:
            got = self.execute(
                _ADD_PARTITION_MUTATION,
                {"selector": selector, "name": partitions_def_name, "key": key},
            )["addDynamicPartition"]
            if got["__typename"] == "AddDynamicPartitionSuccess":
                added.append(key)
            elif got["__typename"] != "DuplicateDynamicPartitionError":
                _ok(got, "AddDynamicPartitionSuccess")
        return added

    def launch_backfill(
        self,
        asset_keys: Sequence[Sequence[str]],
        partition_names: Sequence[str] | None = None,
        *,
        tags: dict[str, str] | None = None,
        title: str | None = None,
    ) -> str:
        """Launch an asset backfill and return its id.

        With ``partition_names``, the partitioned assets are backfilled for those partitions
        (and unpartitioned ones in the selection once); without, every partition
        (``allPartitions``), which for an unpartitioned selection is one run.
        """
        params: dict[str, Any] = {
            "assetSelection": [{"path": list(k)} for k in asset_keys],
            "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()],
        }
        if partition_names is None:
            params["allPartitions"] = True
        else:
            params["partitionNames"] = list(partition_names)
        if title:
            params["title"] = title
        got = self.execute(_LAUNCH_MUTATION, {"params": params})["launchPartitionBackfill"]
        return str(_ok(got, "LaunchBackfillSuccess")["backfillId"])

    def backfill(self, backfill_id: str) -> BackfillState:
        got = self.execute(_BACKFILL_QUERY, {"id": backfill_id})["partitionBackfillOrError"]
        got = _ok(got, "PartitionBackfill")
        return BackfillState(
            backfill_id=str(got["id"]),
            status=str(got["status"]),
            runs=tuple(sorted((_run(r) for r in got.get("runs") or []), key=_run_order)),
            error=(got.get("error") or {}).get("message"),
            num_partitions=got.get("numPartitions"),
        )

    def follow_backfill(
        self,
        backfill_id: str,
        on_change: Callable[[BackfillState], None] | None = None,
        *,
        poll_s: float = 2.0,
        timeout_s: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> BackfillState:
        """Poll until the backfill and all its runs are over; ``on_change`` sees every new
        state (status, or a run's status). A ``timeout_s`` that passes raises TimeoutError
        (the backfill goes on in the webserver)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        last: tuple[Any, ...] | None = None
        while True:
            state = self.backfill(backfill_id)
            seen = (state.status, tuple((r.run_id, r.status) for r in state.runs))
            if seen != last and on_change is not None:
                on_change(state)
            last = seen
            if state.done:
                return state
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(
                    f"backfill {backfill_id} still {state.status} after {timeout_s:g}s "
                    f"({sum(r.finished for r in state.runs)}/{len(state.runs)} runs finished)"
                )
            sleep(poll_s)


def _ok(got: dict[str, Any], expected: str) -> dict[str, Any]:
    """``got`` when it is the ``expected`` type of a union, else a GraphQLError with its message."""
    kind = got.get("__typename")
    if kind == expected:
        return got
    message = got.get("message") or "; ".join(e["message"] for e in got.get("errors") or [])
    raise GraphQLError(f"{kind}: {message or 'no message'}")


def _run(raw: dict[str, Any]) -> BackfillRun:
    tags = {t["key"]: t["value"] for t in raw.get("tags") or []}
    partition = tags.get(PARTITION_TAG)
    if partition is None and RANGE_START_TAG in tags:
        start, end = tags[RANGE_START_TAG], tags.get(RANGE_END_TAG, "")
        partition = start if start == end else f"{start}...{end}"
    failed = tuple(s["stepKey"] for s in raw.get("stepStats") or [] if s.get("status") == "FAILURE")
    return BackfillRun(str(raw["runId"]), str(raw["status"]), partition, failed)


def _run_order(run: BackfillRun) -> tuple[str, str]:
    return (run.partition or "", run.run_id)
