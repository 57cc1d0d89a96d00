"""Memory housekeeping between the phases of a big run (#15 item 6)."""

from __future__ import annotations

import gc
import platform

from reconcile import collector


def resident_kb() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * 4


def test_freed_heap_memory_goes_back_to_the_system_on_glibc() -> None:
    """Buffers of a few hundred KB (a read's answers) freed between objects that live on
    stay resident unless the heap is trimmed; give_back returns them (glibc, as in CI)."""
    assert platform.libc_ver()[0] == "glibc"  # the machines this runs on (see README)
    bytearray(300_000)  # one freed mmap raises glibc's threshold: the rest are heap
    kept, buffers = [], []
    for _ in range(200):
        buffers.append(bytearray(b"x" * 200_000))
        kept.append(bytearray(b"y" * 1_000))  # on the heap after each buffer, living on
    del buffers
    gc.collect()
    before = resident_kb()
    assert collector.give_back() is True
    assert resident_kb() < before
    assert kept
