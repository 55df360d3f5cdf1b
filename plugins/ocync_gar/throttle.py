"""Artifact Registry's throttle policy: one window for every request, paced at the project quota.

Artifact Registry counts requests per project and location, whatever they do: "Requests per
minute in each region or multi-region: 60000" (of which 18000 may be writes), per
https://cloud.google.com/artifact-registry/quotas. A Docker pull or push is many HTTP requests
and each one counts. So all actions share one AIMD window: a 429 means the project's budget is
spent, and slowing only the action that met it would let the others spend what is left.
"""

from __future__ import annotations

from ocync_core.policies import Action, ThrottlePolicy, WindowSpec

__all__ = ["PROJECT_WINDOW", "REQUESTS_PER_MINUTE", "THROTTLE_POLICY"]

REQUESTS_PER_MINUTE = 60_000
PROJECT_WINDOW = "project"

THROTTLE_POLICY = ThrottlePolicy(
    windows={
        # A burst of a tenth of a second's quota: never a minute's worth at once.
        PROJECT_WINDOW: WindowSpec(
            initial=8, rate=REQUESTS_PER_MINUTE / 60, burst=REQUESTS_PER_MINUTE // 600
        ),
    },
    window_of=dict.fromkeys(Action, PROJECT_WINDOW),
    default_window=PROJECT_WINDOW,
)
