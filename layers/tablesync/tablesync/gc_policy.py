"""How the process's garbage collector is run during a diff.

A diff allocates millions of short-lived objects that hold no reference cycles (pages of keys and
hashes, items parsed from JSON). CPython's cyclic collector runs every 700 allocations and now and
then walks the whole heap, the imported modules (boto3's service models, pydantic's schemas)
included: in a DynamoDB diff that was 45% of the client's CPU time (docs/benchmarks.md). The
objects alive once the process has started are moved out of its reach (gc.freeze), and it runs
less often. Reference counting still frees everything else at once."""

from __future__ import annotations

import gc

FIRST_GENERATION_ALLOCATIONS = 50_000  # CPython's default is 700
_relaxed: list[bool] = []


def relax() -> None:
    """Called by the entry points (the CLI, the Lambda handlers) once their modules are loaded;
    once per process."""
    if _relaxed:
        return
    _relaxed.append(True)
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(FIRST_GENERATION_ALLOCATIONS, second, third)
