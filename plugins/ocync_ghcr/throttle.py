"""GHCR's throttle policy: one window for every request, paced under the aggregate cap.

GHCR counts every request of a principal (a user or a token) against one budget, reported
at about 2000 requests per minute across reads and writes alike. Separate windows per action
would each believe they had the whole budget, so every action shares one window, and a token
bucket keeps the steady rate under the cap: 25/s is 1500/min. The cap is reported, not
confirmed, and the quarter left over covers what the throttle does not see (the probe of
``/v2/``, token requests) and the jitter of requests bunched on their way, so that no second
ever holds more than a second's share of the budget.
"""

from __future__ import annotations

from ocync_core.policies import ThrottlePolicy, WindowSpec

__all__ = ["CAP_PER_MINUTE", "RATE", "THROTTLE_POLICY", "WINDOW"]

CAP_PER_MINUTE = 2000
RATE = 25.0  # requests per second, 75 % of the reported cap
WINDOW = "ghcr"

THROTTLE_POLICY = ThrottlePolicy(
    windows={WINDOW: WindowSpec(initial=8, rate=RATE, burst=2)},
    window_of={},
    default_window=WINDOW,
    # GHCR may announce what is left of the budget; the core slows discovery when it is low.
    budget_headers=("x-ratelimit-remaining", "ratelimit-remaining"),
)
