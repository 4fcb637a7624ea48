"""Asset check results for judged floors (``core.stats``): fail blocks, warn does not."""

from __future__ import annotations

from typing import Any

import dagster as dg

from my_data_platform.core.stats import FloorJudgement


def judged_check(
    judgement: FloorJudgement, check_name: str | None = None, **extra: Any
) -> dg.AssetCheckResult:
    """``passed`` unless the verdict is warn or fail; a warn has WARN severity, so even a
    blocking check lets downstream assets run, and only a fail (the upper bound below the
    floor) blocks. The metadata gives n, the estimate, the bounds and the verdict."""
    severity = (
        dg.AssetCheckSeverity.ERROR if judgement.verdict == "fail" else dg.AssetCheckSeverity.WARN
    )
    kwargs: dict[str, Any] = {"check_name": check_name} if check_name else {}
    return dg.AssetCheckResult(
        passed=judgement.verdict == "pass",
        severity=severity,
        description=judgement.describe(),
        metadata={**judgement.metadata(), **extra},
        **kwargs,
    )
