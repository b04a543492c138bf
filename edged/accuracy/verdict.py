"""The result of one accuracy check: figures, the limits they were judged by, pass or fail.

Stored in the plan's manifest (``accuracy``) so a warm start does not repeat the check:
figures do not depend on the limits, so changed limits re-judge the stored figures, and
only changed validation data (another digest) runs the check again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

from edged.accuracy.settings import Thresholds

__all__ = ["Verdict", "judge"]


def judge(figures: Mapping[str, Any], limits: Thresholds) -> List[str]:
    """Every limit ``figures`` miss, in words; empty when the plan passes."""
    failures = []

    def at_least(name: str, value: Optional[float], minimum: float, what: str) -> None:
        if value is not None and value < minimum:
            failures.append(f"{what} {value:.4g} < {minimum:g} ({name})")

    at_least("min_top1_agreement", figures.get("top1_agreement"), limits.min_top1_agreement, "top-1 agreement")
    at_least("min_top5_overlap", figures.get("top5_overlap"), limits.min_top5_overlap, "top-5 overlap")
    at_least("min_box_precision", figures.get("box_precision"), limits.min_box_precision, "box precision")
    at_least("min_box_recall", figures.get("box_recall"), limits.min_box_recall, "box recall")
    head = any(k in figures for k in ("top1_agreement", "box_precision"))
    for name, tensor in sorted(figures.get("outputs", {}).items()):
        if not head:  # a classify or detect model is judged on what it reports
            at_least("min_cosine", tensor.get("cosine_mean"), limits.min_cosine, f"output {name}: cosine similarity")
        if limits.max_abs_error is not None and tensor["max_abs_error"] > limits.max_abs_error:
            failures.append(
                f"output {name}: max abs error {tensor['max_abs_error']:.4g} > {limits.max_abs_error:g} (max_abs_error)"
            )
    return failures


@dataclass(frozen=True)
class Verdict:
    passed: bool
    precision: str
    device: str
    reference: str  # what the plan was compared with
    data: Dict[str, Any]  # source, description, samples, digest
    figures: Dict[str, Any]
    thresholds: Dict[str, Any]
    failures: List[str] = field(default_factory=list)
    seconds: float = 0.0
    truncated: bool = False  # the time budget ran out before every sample was compared
    checked_at: float = field(default_factory=time.time)

    def as_dict(self) -> Dict[str, Any]:
        return {
            "passed": self.passed,
            "precision": self.precision,
            "device": self.device,
            "reference": self.reference,
            "data": dict(self.data),
            "figures": self.figures,
            "thresholds": dict(self.thresholds),
            "failures": list(self.failures),
            "seconds": self.seconds,
            "truncated": self.truncated,
            "checked_at": self.checked_at,
        }

    @staticmethod
    def from_dict(doc: Mapping[str, Any]) -> Optional["Verdict"]:
        """A stored verdict, or None when ``doc`` is not one (an older or damaged manifest)."""
        try:
            return Verdict(
                passed=bool(doc["passed"]),
                precision=str(doc["precision"]),
                device=str(doc["device"]),
                reference=str(doc["reference"]),
                data=dict(doc["data"]),
                figures=dict(doc["figures"]),
                thresholds=dict(doc["thresholds"]),
                failures=[str(f) for f in doc.get("failures", [])],
                seconds=float(doc.get("seconds", 0.0)),
                truncated=bool(doc.get("truncated", False)),
                checked_at=float(doc.get("checked_at", 0.0)),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def rejudged(self, limits: Thresholds) -> "Verdict":
        """This verdict's figures judged by ``limits`` (the config's, when they changed)."""
        failures = judge(self.figures, limits)
        return Verdict(
            not failures, self.precision, self.device, self.reference, self.data, self.figures,
            limits.as_dict(), failures, self.seconds, self.truncated, self.checked_at,
        )  # fmt: skip

    def headline(self) -> Dict[str, Any]:
        """The figures a status line or telemetry shows: the head's, else the worst cosine."""
        keys = ("top1_agreement", "top5_overlap", "box_precision", "box_recall")
        out = {k: self.figures[k] for k in keys if k in self.figures}
        if not out:
            cosines = [t["cosine_mean"] for t in self.figures.get("outputs", {}).values()]
            if cosines:
                out["cosine"] = min(cosines)
        return out

    def reason(self) -> str:
        """Why the plan failed, with what it was measured on: for status lines and refusals."""
        data = f"{self.data.get('samples', 0)} samples, {self.data.get('source', '?')}"
        return f"{'; '.join(self.failures) or 'passed'} ({data})"

    def summary(self) -> str:
        """One line: ``int8 on cpu failed: top-1 agreement 0.41 < 0.97 (...) on 64 calibration images``."""
        figures = ", ".join(f"{k} {v:.4g}" for k, v in self.headline().items())
        what = "passed" if self.passed else "failed: " + "; ".join(self.failures)
        data = f"{self.data.get('samples', 0)} samples, {self.data.get('source', '?')}"
        cut = ", time budget reached" if self.truncated else ""
        return f"{self.precision} on {self.device} {what} ({figures}; {data}{cut})"
