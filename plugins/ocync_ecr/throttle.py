"""ECR's throttle policy: one AIMD window per API action, each paced at its quota.

ECR throttles each API action separately, per account and region ("Amazon ECR service
quotas", https://docs.aws.amazon.com/AmazonECR/latest/userguide/service-quotas.html, and the
Service Quotas console under "Amazon Elastic Container Registry": "Rate of <Action> requests").
The data-plane requests of the Distribution API are served by these actions, so a 429 on one
(PutImage) must not slow the others (UploadLayerPart).
"""

from __future__ import annotations

from ocync_core.policies import Action, ThrottlePolicy, WindowSpec

__all__ = ["ACTION_TPS", "THROTTLE_POLICY", "WINDOW_OF"]

# Requests per second per action (the default quotas; adjustable ones may be higher in an
# account, never lower). PutImage runs a little under its cap: our clock and ECR's differ.
ACTION_TPS: dict[str, float] = {
    "PutImage": 9.5,  # quota 10
    "InitiateLayerUpload": 100.0,
    "UploadLayerPart": 500.0,
    "CompleteLayerUpload": 100.0,
    "BatchCheckLayerAvailability": 1000.0,
    "BatchGetImage": 2000.0,
    "GetDownloadUrlForLayer": 3000.0,
    "GetAuthorizationToken": 500.0,
    # ListImages has no published rate quota; 20/s keeps tag listing far from any limit.
    "ListImages": 20.0,
}

WINDOW_OF: dict[Action, str] = {
    Action.UPLOAD_START: "InitiateLayerUpload",
    Action.MOUNT: "InitiateLayerUpload",
    Action.UPLOAD_CHUNK: "UploadLayerPart",
    Action.UPLOAD_FINISH: "CompleteLayerUpload",
    Action.MANIFEST_PUT: "PutImage",
    Action.MANIFEST_GET: "BatchGetImage",
    Action.MANIFEST_HEAD: "BatchGetImage",
    Action.BLOB_GET: "GetDownloadUrlForLayer",
    Action.BLOB_HEAD: "GetDownloadUrlForLayer",
    Action.BLOB_CHECK: "BatchCheckLayerAvailability",
    Action.TAG_LIST: "ListImages",
    Action.TOKEN: "GetAuthorizationToken",
}


def _spec(action: str, tps: float) -> WindowSpec:
    # A burst of a tenth of a second's quota (at least 1): never a second's worth at once,
    # which ECR's own bucket would refuse after a quiet spell. PutImage gets no burst at all.
    burst = 1 if action == "PutImage" else max(1, int(tps // 10))
    initial = 2.0 if action == "PutImage" else 4.0
    return WindowSpec(initial=initial, rate=tps, burst=burst)


THROTTLE_POLICY = ThrottlePolicy(
    windows={
        **{action: _spec(action, tps) for action, tps in ACTION_TPS.items()},
        "other": WindowSpec(initial=4),
    },
    window_of=WINDOW_OF,
    default_window="other",
)
