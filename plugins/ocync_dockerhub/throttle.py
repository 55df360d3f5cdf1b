"""Docker Hub's throttle policy: manifest GETs, which spend the pull quota, stand alone."""

from __future__ import annotations

from ocync_core.policies import Action, ThrottlePolicy, WindowSpec

__all__ = ["LOW_BUDGET", "THROTTLE_POLICY"]

# A fifth of the anonymous pull quota Docker Hub announces (`RateLimit-Limit: 100;w=21600`):
# below it, discovery slows down so transfers in flight finish before the quota runs out.
LOW_BUDGET = 20

# HEADs are free and a 429 on them is plain load, so they never share a window with the
# quota'd GETs: a refused pull must not slow the HEADs that decide whether a pull is needed.
THROTTLE_POLICY = ThrottlePolicy(
    windows={
        "manifest_head": WindowSpec(initial=8),
        "manifest_get": WindowSpec(initial=4),
        "manifest_write": WindowSpec(initial=4),
        "blob_read": WindowSpec(initial=8),
        "upload": WindowSpec(initial=4),
        "other": WindowSpec(initial=4),
    },
    window_of={
        Action.MANIFEST_HEAD: "manifest_head",
        Action.MANIFEST_GET: "manifest_get",
        Action.MANIFEST_PUT: "manifest_write",
        Action.BLOB_HEAD: "blob_read",
        Action.BLOB_GET: "blob_read",
        Action.BLOB_CHECK: "blob_read",
        Action.UPLOAD_START: "upload",
        Action.UPLOAD_CHUNK: "upload",
        Action.UPLOAD_FINISH: "upload",
        Action.MOUNT: "upload",
    },
    default_window="other",
    # `RateLimit-Remaining: 76;w=21600`: the pulls left in the window (`w`, in seconds).
    budget_headers=("ratelimit-remaining",),
    low_budget=LOW_BUDGET,
)
