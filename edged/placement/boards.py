"""The boards ``--platform`` presets describe, and the JetPack releases each one runs.

A preset is a board on a JetPack release: ``agx-orin-64gb-jp5`` is an AGX Orin 64GB on
JetPack 5.1.x, analysed with the TensorRT that JetPack installs (edged/platform/releases.py).
The bare board name is its newest JetPack (``agx-orin-64gb`` = JetPack 6.1 and later 6.x).
Speeds are relative to one AGX Orin GPU (1.0); see profiles.py for what 1.0 means and where
the ratios come from.
"""

from __future__ import annotations

from typing import NamedTuple, Tuple

__all__ = ["Board", "BOARDS", "JETPACKS"]


class Board(NamedTuple):
    name: str
    soc: str
    dla_cores: int
    gpu: str
    speed: Tuple[Tuple[str, float], ...]
    jetpacks: Tuple[str, ...]  # keys of JETPACKS, newest last; the last is the bare name's


# Preset suffix -> an L4T release of that JetPack (its row in releases.py gives the TensorRT).
JETPACKS = {"jp5": "35.4.1", "jp6.0": "36.3.0", "jp6.1": "36.4.3", "jp7": "38.2.0"}

_ORIN = ("jp5", "jp6.0", "jp6.1")
_XAVIER = ("jp5",)  # JetPack 5 is the last release for Xavier

BOARDS: Tuple[Board, ...] = (
    Board("agx-orin-64gb", "tegra234", 2, "Orin (ga10b)", (("gpu", 1.0), ("dla", 0.48)), _ORIN),
    Board("agx-orin-32gb", "tegra234", 2, "Orin (ga10b)", (("gpu", 0.8), ("dla", 0.4)), _ORIN),
    Board("agx-orin-industrial", "tegra234", 2, "Orin (ga10b)", (("gpu", 0.9), ("dla", 0.44)), _ORIN),
    Board("orin-nx-16gb", "tegra234", 2, "Orin (ga10b)", (("gpu", 0.5), ("dla", 0.3)), _ORIN),
    Board("orin-nx-8gb", "tegra234", 1, "Orin (ga10b)", (("gpu", 0.4), ("dla", 0.3)), _ORIN),
    Board("orin-nano-8gb", "tegra234", 0, "Orin (ga10b)", (("gpu", 0.25),), _ORIN),
    Board("orin-nano-4gb", "tegra234", 0, "Orin (ga10b)", (("gpu", 0.13),), _ORIN),
    Board("agx-xavier", "tegra194", 2, "Xavier (gv11b)", (("gpu", 0.3), ("dla", 0.06)), _XAVIER),
    Board("agx-xavier-industrial", "tegra194", 2, "Xavier (gv11b)", (("gpu", 0.3), ("dla", 0.06)), _XAVIER),
    Board("xavier-nx", "tegra194", 2, "Xavier (gv11b)", (("gpu", 0.15), ("dla", 0.04)), _XAVIER),
    Board("xavier-nx-16gb", "tegra194", 2, "Xavier (gv11b)", (("gpu", 0.15), ("dla", 0.04)), _XAVIER),
    Board("agx-thor", "tegra264", 0, "Thor", (("gpu", 2.5),), ("jp7",)),
)
