"""Big audiences and Python's cyclic garbage collector.

A manifest of a million contacts is some ten million objects, none in a reference cycle,
that live as long as the run. The collector's full passes walk every one of them each
time the heap has grown by a quarter: a fifth of the local CPU time of a plan at 100,000
contacts. So it is paused while such records are built (they are freed by reference
counting; cycles made meanwhile are collected once it resumes), and the records of a big
state are then moved out of its reach (`gc.freeze`): they are still freed when dropped,
only never walked again.

Freed memory is also given back to the system after such a phase: glibc's allocator
keeps the freed middle of its heap (a read's answers, hundreds of kilobytes each, freed
between records that live on) unless asked to trim it, and the objects made after a read
come from elsewhere (Python's own arenas), so that memory would stay resident, unused.
"""

from __future__ import annotations

import ctypes
import gc
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache

BIG = 20_000  # records: below this, the collector is left alone


@contextmanager
def paused() -> Iterator[None]:
    """No automatic collection inside (as it was before on leaving)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def young_only() -> Iterator[None]:
    """Collections of young objects only inside: what a read leaves in reference cycles
    (answers, futures) dies young and is still collected; the records it keeps are not
    walked again each time they have grown by a quarter (a read of a million contacts)."""
    thresholds = gc.get_threshold()
    gc.set_threshold(thresholds[0], thresholds[1], 2**30)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def settled(records: int) -> None:
    """What is alive now lives for the run (a loaded manifest, a state read): when it is
    `records` many, keep the collector from walking it again."""
    if records >= BIG:
        gc.freeze()
        give_back()


def released() -> None:
    """What `settled` kept out of the collector's reach is in it again (a plan is made:
    what it read may now be dropped, cycles and all); what was freed meanwhile goes back."""
    gc.unfreeze()
    give_back()


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    trim: Callable[[int], int] | None = getattr(ctypes.CDLL(None), "malloc_trim", None)
    return trim  # glibc has it; musl has not


def give_back() -> bool:
    """Return the allocator's free heap pages to the system; False where it cannot."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
