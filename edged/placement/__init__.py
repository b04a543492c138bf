"""DLA/GPU placement: per-layer analysis of ONNX models and placement of models on devices."""

from __future__ import annotations

from edged.placement.analysis import Analysis, NodeResult, analyse
from edged.placement.explain import ModelPolicy, Report, explain
from edged.placement.observed import Difference, compare_reported
from edged.placement.profiles import Profile, estimate_profiles
from edged.placement.rules import TABLE_VERSION, Rule, RuleSet, rules_for
from edged.placement.solver import Assignment, Placement, Request, place
from edged.placement.target import Target, from_platform, preset, resolve_target

__all__ = [
    "Analysis",
    "Assignment",
    "Difference",
    "ModelPolicy",
    "NodeResult",
    "Placement",
    "Profile",
    "Report",
    "Request",
    "Rule",
    "RuleSet",
    "TABLE_VERSION",
    "Target",
    "analyse",
    "compare_reported",
    "estimate_profiles",
    "explain",
    "from_platform",
    "place",
    "preset",
    "resolve_target",
    "rules_for",
]
