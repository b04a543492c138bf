"""``edged plan list | build | verify [--accuracy] | prune | show KEY [--accuracy]``."""

from __future__ import annotations

import argparse
import functools
import json
import time
from typing import TYPE_CHECKING, Any, Dict, List

from edged.errors import EdgedError

if TYPE_CHECKING:
    from edged.model_set import ModelSet

__all__ = ["add_plan_parser"]

PARTIAL_PRUNE_AGE_S = 3600.0


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
    models = _models(args)
    rows = models.plans().store.verify()
    for row in rows:
        print(f"{row['name']}: {'ok' if row['ok'] else 'CORRUPT, quarantined'}")
    ok = all(row["ok"] for row in rows)
    if args.accuracy:
        ok = _verify_accuracy(models) and ok
    return 0 if ok else 1


def _verify_accuracy(models: ModelSet) -> bool:
    """Run the accuracy check again on each model's cached plans, as loading would meet them."""
    from edged.accuracy.admission import PlanGate
    from edged.backends import get_backend
    from edged.model_loading import build_options

    plans, cache_dir = models.plans(), models.config.plans.cache_dir
    ok = True
    for model in models.config.models:
        gate = PlanGate(plans, models.placer, cache_dir, functools.partial(_options, model, cache_dir))
        try:
            backend = get_backend(model.backend)
            rows = gate.recheck(model, backend, build_options(model, cache_dir, models.device_of(model.name)))
        except EdgedError as exc:
            print(f"{model.name}: accuracy not checked: {exc}")
            ok = False
            continue
        for name, verdict in rows:
            print(f"{model.name}: {name}: {verdict.summary() if verdict else 'fp32, the reference: not checked'}")
            ok = ok and (verdict is None or verdict.passed)
    return ok


def _options(model: Any, cache_dir: str, device: str, precision: str) -> Any:
    from edged.model_loading import build_options

    return build_options(model, cache_dir, device, precision)


def _store_garbage(config_path: str) -> List[str]:
    """Files of the model download store that neither the local file nor the persisted
    push refers to (docs/downloads.md); partial downloads an hour old (a running daemon's
    download writes more often than that)."""
    from edged.control.boot import load_effective
    from edged.control.settings import control_settings
    from edged.control.store import ConfigStore
    from edged.fetch import collect, download_settings, referenced_hashes

    effective = load_effective(config_path).config
    record = ConfigStore(control_settings(effective).state_dir).load()
    documents = [effective.document, record["document"] if record else None]
    from edged.config import load_config

    documents.append(load_config(config_path).document)
    store = download_settings(effective.document).store_dir
    return collect(store, referenced_hashes(documents), grace_s=0, partial_grace_s=PARTIAL_PRUNE_AGE_S)


def _prune(args: argparse.Namespace) -> int:
    removed: List[str] = _models(args).plans().store.prune()
    removed += _store_garbage(args.config)
    for name in removed:
        print(f"removed {name}")
    print(f"{len(removed)} removed")
    return 0


def _show(args: argparse.Namespace) -> int:
    matches = [p for p in _models(args).plans().store.entries() if p.name == args.key or p.digest.startswith(args.key)]
    if len(matches) != 1:
        print(f"plan {args.key!r}: {'no such plan' if not matches else 'ambiguous; give more of the key'}")
        return 1
    manifest = matches[0].manifest
    if not args.accuracy:
        print(json.dumps(manifest, indent=2, sort_keys=True))
        return 0
    return _show_accuracy(manifest)


def _show_accuracy(manifest: Dict[str, Any]) -> int:
    from edged.accuracy import Verdict

    verdict = Verdict.from_dict(manifest.get("accuracy") or {})
    if verdict is None:
        print(f"{manifest.get('name')}: no accuracy check recorded (fp32 plans are the reference; others are")
        print("checked when they are first loaded, or with `edged plan verify --accuracy`)")
        return 1
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(verdict.checked_at))
    print(f"{manifest.get('name')}: {verdict.summary()}")
    print(f"  checked {when} in {verdict.seconds:g} s against {verdict.reference}")
    print(f"  data: {verdict.data.get('description')}")
    for name, figures in sorted(verdict.figures.get("outputs", {}).items()):
        print(f"  output {name}: " + ", ".join(f"{k} {v:g}" for k, v in sorted(figures.items())))
    print("  limits: " + ", ".join(f"{k} {v:g}" for k, v in sorted(verdict.thresholds.items())))
    return 0 if verdict.passed else 1


def add_plan_parser(sub: Any, default_config: str) -> None:
    plan = sub.add_parser("plan", help="inspect and manage the plan cache")
    plan.add_argument("--config", default=default_config, help="config file (default: %(default)s)")
    verbs = plan.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    listing = verbs.add_parser("list", help="cached plans")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=_list)
    verbs.add_parser("build", help="build (or find cached) plans for every configured model").set_defaults(func=_build)
    verify = verbs.add_parser("verify", help="re-hash every plan; quarantine corrupt ones (exit 1)")
    verify.add_argument(
        "--accuracy",
        action="store_true",
        help="also re-run the accuracy check of each model's plans (exit 1 if any fails)",
    )
    verify.set_defaults(func=_verify)
    verbs.add_parser(
        "prune", help="delete quarantined and leftover files; evict to limits; unreferenced downloaded models"
    ).set_defaults(func=_prune)
    show = verbs.add_parser("show", help="a plan's manifest (key document, build log, placement)")
    show.add_argument("key", help="plan name or a prefix of its digest")
    show.add_argument("--accuracy", action="store_true", help="the plan's last accuracy check, in words")
    show.set_defaults(func=_show)
