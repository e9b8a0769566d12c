"""How the next chunks are checked and how big they are, from what the last rounds found and how
long they took. Pure: functions of the options, the state and the round's figures."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..models import MAX_BUCKETS, MAX_CHUNK_ROWS, MAX_KEYS_PER_REQUEST, MAX_SCAN_BUCKETS, DiffOptions, DiffState

DENSE_CHUNK_ROWS = 50_000  # chunk size while differences are dense enough to list every row
SAMPLES_PER_BUCKET = 8  # sampled keys per bucket of a whole-table chunk: bucket sizes within ~35%
MIN_BUCKET_ROWS = 3  # below this, differences are so dense that listing every row is cheaper


@dataclass(frozen=True)
class ChunkFindings:
    """What one new chunk of the walk found: what the tuning learns from."""

    source_rows: int
    listed: bool  # its rows were listed (no checksums)
    found: int  # differences found by listing
    buckets: int
    differing_buckets: int


@dataclass(frozen=True)
class Tuning:
    """The chunk policy of one diff. scan_bound: some side scans for every range query."""

    options: DiffOptions
    scan_bound: bool

    def plain(self, state: DiffState) -> bool:
        """Whether the next chunk gets one plain checksum rather than bucket checksums. Buckets
        cost a little more per row (~15% on MariaDB); a plain checksum that differs costs a second
        pass over the chunk. Most checks find tables identical, so while a run has found no
        difference at all the next chunk is expected to match too; once it has, more are expected.
        Never where a side scans (a second pass is a second scan)."""
        if self.scan_bound or state.streak == 0:
            return False
        return not any(t.missing or t.extra or t.differing for t in state.targets) and not state.pending

    def bucket_rows(self, state: DiffState) -> int:
        # Half the listing threshold at most: a bucket with a few extra rows on a target is still
        # listed at once rather than cut again.
        return state.bucket_rows or max(1, self.options.bisection_threshold // 2)

    def parts(self, rows: int, bucket_rows: int) -> int:
        """Buckets to cut a range into: small enough that a differing bucket can be listed at once
        (re-reading only it), at least the bisection factor, at most MAX_BUCKETS."""
        return min(MAX_BUCKETS, max(self.options.bisection_factor, -(-rows // bucket_rows)))

    def next_chunk(self, state: DiffState) -> tuple[int, int]:
        """The next chunk's size in rows and the buckets to cut it into (1: no buckets)."""
        if state.dense:
            return min(state.chunk_size, DENSE_CHUNK_ROWS), 1
        if self.plain(state):
            return state.chunk_size, 1
        bucket = self.bucket_rows(state)
        if self.scan_bound:
            # Where a side scans, every chunk costs a scan of the whole table: one chunk takes the
            # whole table (up to 40M rows) in one pass on each side, cut into buckets, and the
            # differing ones are cut again in later, batched rounds.
            size = max(state.chunk_size, self.whole_table(state))
            return size, min(MAX_SCAN_BUCKETS, max(self.options.bisection_factor, -(-size // bucket)))
        size = min(state.chunk_size, bucket * MAX_BUCKETS)
        return size, self.parts(size, bucket)

    def sample(self, state: DiffState, size: int, parts: int) -> tuple[float, int] | None:
        """Where a side scans and a chunk takes the whole table: the fraction of its rows to sample
        for the chunk's cuts (about SAMPLES_PER_BUCKET a bucket) and the most keys to take;
        None where the chunk does not take it all (no estimate, or more rows than a chunk holds)."""
        if not self.scan_bound or self.options.stop_on_streak is not None:
            return None
        estimate = state.key_range.estimated_rows if state.key_range is not None else None
        if not estimate or estimate <= 0 or size >= 4 * MAX_CHUNK_ROWS or parts < 2:
            return None
        wanted = min(MAX_KEYS_PER_REQUEST // 2, SAMPLES_PER_BUCKET * parts)
        return min(1.0, wanted / estimate), 2 * wanted

    def whole_table(self, state: DiffState) -> int:
        """Rows in a chunk that takes the rest of the table, from the walker's estimate (a quarter
        more: estimates lag); 40M rows where there is none, or with --stop-on-streak (whose chunks
        keep the size it asks for)."""
        if self.options.stop_on_streak is not None:
            return state.chunk_size
        estimate = state.key_range.estimated_rows if state.key_range is not None else None
        if not estimate or estimate < 0:
            return 4 * MAX_CHUNK_ROWS
        return min(4 * MAX_CHUNK_ROWS, estimate + estimate // 4 + 1)

    def adapt(self, state: DiffState, chunks: Sequence[ChunkFindings], seconds: float) -> None:
        """Chooses how the next chunks are checked, and their size.

        The density d of differences (per row) sets the bucket size: a bucket of b rows costs its
        checksum (about 1/b of a listed row per row) and, when it differs (chance about b*d), the
        listing of its b rows; b = sqrt(1/d) balances the two. At 1% that is 10-row buckets, of
        which 10% differ, instead of listing every row; below MIN_BUCKET_ROWS every row is listed."""
        opts = self.options
        rows = sum(c.source_rows for c in chunks)
        if chunks[0].listed:
            density = sum(c.found for c in chunks) / max(1, rows)
        else:
            buckets = sum(c.buckets for c in chunks)
            if buckets < opts.bisection_factor:
                # Too few buckets to tell (a plain checksum after a matching chunk).
                state.chunk_size = self.next_chunk_size(state, seconds, rows / len(chunks))
                return
            share = sum(c.differing_buckets for c in chunks) / buckets
            density = 1.0 if share >= 1 else 1 - (1 - share) ** (1 / self.bucket_rows(state))
            state.chunk_size = self.next_chunk_size(state, seconds, rows / len(chunks))
        best = math.sqrt(1 / density) if density > 0 else math.inf
        # Where a side scans, differing ranges wait to be listed in batches: never list at once.
        state.dense = best < MIN_BUCKET_ROWS and not self.scan_bound
        state.bucket_rows = int(min(max(1, opts.bisection_threshold // 2), max(MIN_BUCKET_ROWS, best)))

    def next_chunk_size(self, state: DiffState, seconds: float, size: float) -> int:
        """Aims each round of chunks at the target time. A round costs a fixed time plus a time per
        row; the fixed time (the first round's, a small chunk from the start of the key space) is
        tiny where indexes serve the ranges and a whole table scan where a side must scan, and
        chunks then grow until it is a quarter of the round."""
        opts = self.options
        size = max(1.0, size)
        if state.fixed_seconds is None:
            state.fixed_seconds = seconds
        fixed = state.fixed_seconds
        target = max(opts.target_chunk_seconds, 4 * fixed)
        per_row = max(seconds - fixed, 1e-3 * seconds, 1e-9) / size
        wanted = (target - fixed) / per_row
        # --max-chunk-size bounds the chunks; only where a side must scan for every range does a
        # chunk grow past it, until the scan is a quarter of the round (a slow first round on an
        # indexed table is no scan: the bound holds there, whatever the timings).
        scan_growth = max(1.0, 4 * fixed / opts.target_chunk_seconds) if self.scan_bound else 1.0
        limit = min(4 * MAX_CHUNK_ROWS, opts.max_chunk_size * scan_growth)
        # Growth is bounded (timings of small chunks are noisy), less so while the fixed cost is
        # most of the round (a scan: the time per row is then barely measured).
        growth = 64.0 if seconds < 1.5 * fixed else 16.0
        wanted = min(size * growth, max(size / 4.0, wanted))
        return int(min(limit, max(opts.chunk_size, wanted)))
