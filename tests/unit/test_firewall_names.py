"""Counter names: one per (workload, reason), never shared by two workloads."""

from __future__ import annotations

from executors.nft import REASONS


def test_no_counter_reason_ends_in_another_reason():
    # W_reason == W2_reason2 for workloads W != W2 needs one reason to end in "_" + another.
    clashes = [(a, b) for a in REASONS for b in REASONS if a != b and a.endswith("_" + b)]
    assert clashes == []
