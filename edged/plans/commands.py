"""``edged plan list | build | verify | prune | show KEY``."""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING, Any, List

from edged.errors import EdgedError

if TYPE_CHECKING:
    from edged.model_set import ModelSet

__all__ = ["add_plan_parser"]


def _models(args: argparse.Namespace) -> ModelSet:
    """The configured models, placed as ``edged run`` would place them; nothing started."""
    from edged.config import load_config
    from edged.model_loading import platform_for
    from edged.model_set import ModelSet

    config = load_config(args.config)
    return ModelSet(config, platform_for(config.models))


def _list(args: argparse.Namespace) -> int:
    store = _models(args).plans().store
    rows = [
        {
            "name": p.name,
            "size_mb": round(p.size_bytes / (1 << 20), 2),
            "last_used": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(p.last_used)),
            "build_seconds": p.manifest.get("build_seconds"),
        }
        for p in store.entries()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(f"{row['name']}  {row['size_mb']} MB  used {row['last_used']}  built in {row['build_seconds']} s")
        print(f"{len(rows)} plans in {store.root}")
    return 0


def _build(args: argparse.Namespace) -> int:
    models = _models(args)
    failures = 0
    for model in models.config.models:
        try:
            pipeline = models.load_model(model)
        except EdgedError as exc:
            print(f"{model.name}: failed: {exc}")
            failures += 1
            continue
        pipeline.close_runners()
        # load_model builds for placement's device, as `edged run` will: the plan is the one it loads.
        key = pipeline.plan_key
        assert key is not None  # load_pipeline sets it
        print(f"{model.name}: {key.name} ready")
        fallback = models.snapshot(latency=False).models[model.name].fallback
        if fallback:
            print(f"  {fallback}")
    return 1 if failures else 0


def _verify(args: argparse.Namespace) -> int:
    rows = _models(args).plans().store.verify()
    for row in rows:
        print(f"{row['name']}: {'ok' if row['ok'] else 'CORRUPT, quarantined'}")
    return 0 if all(row["ok"] for row in rows) else 1


def _prune(args: argparse.Namespace) -> int:
    removed: List[str] = _models(args).plans().store.prune()
    for name in removed:
        print(f"removed {name}")
    print(f"{len(removed)} removed")
    return 0


def _show(args: argparse.Namespace) -> int:
    matches = [p for p in _models(args).plans().store.entries() if p.name == args.key or p.digest.startswith(args.key)]
    if len(matches) != 1:
        print(f"plan {args.key!r}: {'no such plan' if not matches else 'ambiguous; give more of the key'}")
        return 1
    print(json.dumps(matches[0].manifest, indent=2, sort_keys=True))
    return 0


def add_plan_parser(sub: Any, default_config: str) -> None:
    plan = sub.add_parser("plan", help="inspect and manage the plan cache")
    plan.add_argument("--config", default=default_config, help="config file (default: %(default)s)")
    verbs = plan.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    listing = verbs.add_parser("list", help="cached plans")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=_list)
    verbs.add_parser("build", help="build (or find cached) plans for every configured model").set_defaults(func=_build)
    verbs.add_parser("verify", help="re-hash every plan; quarantine corrupt ones (exit 1)").set_defaults(func=_verify)
    verbs.add_parser("prune", help="delete quarantined and leftover files; evict to limits").set_defaults(func=_prune)
    show = verbs.add_parser("show", help="a plan's manifest (key document, build log, placement)")
    show.add_argument("key", help="plan name or a prefix of its digest")
    show.set_defaults(func=_show)
