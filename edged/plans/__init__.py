"""The plan cache: keys that make stale plans impossible, an atomic store, builds on demand."""

from edged.plans.key import PLAN_FORMAT_VERSION, PlanKey, plan_key
from edged.plans.manager import PlanBuilds, PlanManager, PlanProgress
from edged.plans.store import PlanStore

__all__ = ["PLAN_FORMAT_VERSION", "PlanBuilds", "PlanKey", "PlanManager", "PlanProgress", "PlanStore", "plan_key"]
