"""release_free_heap gives freed heap memory back (a fresh process, so the heap is its own)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_freed_heap_memory_leaves_the_resident_set() -> None:
    script = textwrap.dedent(
        """
        from edged.heap import release_free_heap

        def rss_mb():
            line = next(x for x in open("/proc/self/status") if x.startswith("VmRSS:"))
            return int(line.split()[1]) / 1024

        base = rss_mb()
        chunks = [bytearray(64 * 1024) for _ in range(2000)]  # 125 MB from the heap, below mmap's threshold
        pin = bytearray(64 * 1024)  # the heap top stays in use, as later allocations keep it in the daemon
        del chunks
        held = rss_mb() - base
        assert release_free_heap()
        print(round(held), round(rss_mb() - base))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env={"MALLOC_ARENA_MAX": "2"})
    assert done.returncode == 0, done.stderr
    held, after = (int(x) for x in done.stdout.split())
    assert held > 100, f"glibc gave {125 - held} MB back by itself: the test no longer shows the retention"
    assert after < 20, f"{after} MB still resident after the trim"
