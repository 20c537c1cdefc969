"""Turning a requested model name into the deployment that serves this attempt."""

from __future__ import annotations

import bisect
import itertools
import random

from dheera_ai.errors import BadRequestError, NotFoundError
from dheera_ai.types import Call, Deployment


class ModelGroup:
    """The deployments that share a `model_name`, with their weights precomputed for choosing."""

    def __init__(self, name: str, deployments: list[Deployment]):
        self.name = name
        self.deployments = deployments
        weights = [_weight(d) for d in deployments]
        if not any(weights):
            weights = [1.0] * len(deployments)
        self._cumulative = list(itertools.accumulate(weights))

    def pick(self) -> Deployment:
        """Weighted random choice (simple-shuffle): O(log n) in the group's size."""
        if len(self.deployments) == 1:
            return self.deployments[0]
        point = random.random() * self._cumulative[-1]
        return self.deployments[bisect.bisect_right(self._cumulative, point)]


def _weight(deployment: Deployment) -> float:
    for key in ("weight", "rpm", "tpm"):
        value = deployment.params.get(key)
        if value:
            return float(value)
    return 0.0


class Router:
    def __init__(self, deployments: list[Deployment]):
        by_name: dict[str, list[Deployment]] = {}
        for deployment in deployments:
            by_name.setdefault(deployment.model_name, []).append(deployment)
        self.groups = {name: ModelGroup(name, members) for name, members in by_name.items()}

    def model_names(self) -> list[str]:
        return list(self.groups)

    def find(self, deployment_id: str) -> Deployment:
        """The deployment with this id; a 404 once the config no longer has it."""
        for group in self.groups.values():
            for deployment in group.deployments:
                if deployment.id == deployment_id:
                    return deployment
        raise NotFoundError("The deployment that created this object is no longer configured.",
                            code="deployment_not_found")

    def choose(self, call: Call) -> Deployment:
        if call.deployment_id:  # a follow-up to what that deployment created
            return self.find(call.deployment_id)
        group = self.groups.get(call.model)
        if group is None:
            raise BadRequestError(
                f"Invalid model name '{call.model}'. "
                f"Valid models: {', '.join(sorted(self.groups)) or '(none configured)'}",
                param="model", code="model_not_found")
        return group.pick()
