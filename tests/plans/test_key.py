from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

from edged.backends.base import BuildOptions
from edged.plans.key import plan_key
from edged.platform import discover

REPO = Path(__file__).resolve().parents[2]
PLATFORMS = REPO / "tests" / "fixtures" / "platforms"
JETSON = REPO / "tests" / "fixtures" / "jetson"


def _identity(name: str) -> Dict[str, Any]:
    root = JETSON / name if (JETSON / name).is_dir() else PLATFORMS / name
    return discover(str(root), versions=lambda: {"tensorrt": "10.3.0", "cuda": "12.6"}).identity()


def _key(model: Path, **changes: Any) -> str:
    args: Dict[str, Any] = {
        "version": "10.3.0",
        "identity": _identity("agx-orin-64gb-jp6.2"),
        "options": BuildOptions(precision="fp16", device="dla0", gpu_fallback=True, batch=4),
    }
    args.update(changes)
    return plan_key("det", str(model), "tensorrt", args["version"], args["identity"], args["options"]).digest


def test_each_single_change_gives_another_key(demo_assets: Path, tmp_path: Path) -> None:
    model = demo_assets / "demo-cnn.onnx"
    flipped = tmp_path / "flipped.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    flipped.write_bytes(bytes(data))
    base_options = BuildOptions(precision="fp16", device="dla0", gpu_fallback=True, batch=4)
    keys = {
        "base": _key(model),
        "tensorrt version": _key(model, version="10.3.1"),
        "module on the same SoC": _key(model, identity=_identity("agx-orin-32gb-jp6.0")),
        "one model byte": _key(flipped),
        "precision": _key(model, options=dataclasses.replace(base_options, precision="int8")),
        "dla core": _key(model, options=dataclasses.replace(base_options, device="dla1")),
        "gpu fallback": _key(model, options=dataclasses.replace(base_options, gpu_fallback=False)),
        "batch": _key(model, options=dataclasses.replace(base_options, batch=8)),
    }
    assert len(set(keys.values())) == len(keys), keys
    assert _key(model) == keys["base"]


def test_cache_locations_do_not_change_the_key(demo_assets: Path) -> None:
    model = demo_assets / "demo-cnn.onnx"
    a = BuildOptions(extra={"state_dir": "/var/cache/edged/plans"})
    b = BuildOptions(extra={"state_dir": "/tmp/elsewhere"})
    identity = _identity("x86-cpu")
    assert (
        plan_key("m", str(model), "x", "1", identity, a).digest
        == plan_key("m", str(model), "x", "1", identity, b).digest
    )


def test_keys_are_identical_across_processes_and_hash_seeds(demo_assets: Path) -> None:
    script = (
        "import sys; from edged.backends.base import BuildOptions; from edged.plans.key import plan_key\n"
        "extra = {'layer_devices': {'a': 'gpu', 'b': 'dla'}}\n"
        "opts = BuildOptions(precision='int8', device='dla1', batch=2, extra=extra)\n"
        "identity = {'soc': 'tegra234', 'gpus': [['Orin', '8.7', None]], 'flags': ['b', 'a']}\n"
        "print(plan_key('m', sys.argv[1], 'tensorrt', '10.3.0', identity, opts).digest)\n"
    )
    digests = set()
    for seed in ("0", "1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run(
            [sys.executable, "-c", script, str(demo_assets / "demo-cnn.onnx")],
            env=env,
            cwd=str(REPO),
            capture_output=True,
            text=True,
            check=True,
        )
        digests.add(out.stdout.strip())
    assert len(digests) == 1 and len(digests.pop()) == 64
