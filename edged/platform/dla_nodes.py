"""The DLA platform devices a Jetson kernel registers, wherever the device tree nests them.

DLAs are host1x clients, so their platform devices sit under the host1x node, not at the top
of ``sys/devices/platform`` (NVIDIA's ``jetson_clocks`` script and nvpmodel logs):
``13e10000.host1x/15880000.nvdla0`` (T194, L4T R35), ``13e40000.host1x/15880000.nvdla0``
(T234, L4T R35) and ``bus@0/13e00000.host1x/15880000.nvdla0`` (T234, L4T R36). A module whose
DLAs are fused off (Orin Nano) has its nodes disabled in the device tree, so none appear.
"""

from __future__ import annotations

import glob
import os
import re
from typing import Dict, List, Tuple

__all__ = ["dla_nodes", "DLA_PATTERNS"]

# Depths seen on real trees, deepest first so the count never mixes levels.
DLA_PATTERNS = (
    "sys/devices/platform/*/*/*.nvdla[0-9]",
    "sys/devices/platform/*/*.nvdla[0-9]",
    "sys/devices/platform/*.nvdla[0-9]",
)


def dla_nodes(root: str) -> List[Tuple[str, str]]:
    """[("dla0", node path), ...] named by the node's own index (nvdla1 -> dla1)."""
    found: Dict[str, str] = {}
    for pattern in DLA_PATTERNS:
        for node in glob.glob(os.path.join(root, pattern)):
            match = re.search(r"nvdla(\d)$", node)
            if match and os.path.isdir(node):
                found.setdefault(f"dla{match.group(1)}", node)
    return sorted(found.items())
