from __future__ import annotations

import time

import pytest

from storage.ids import MAX_NODE, IdGenerator, id_time_ms, min_id_at


def test_ids_are_strictly_increasing_and_unique() -> None:
    gen = IdGenerator(7)
    values = [gen.next_id() for _ in range(20_000)]
    assert values == sorted(values)
    assert len(set(values)) == len(values)
    assert all(0 < v < 2**63 for v in values)


def test_ids_from_different_nodes_never_collide() -> None:
    a, b = IdGenerator(1), IdGenerator(2)
    left = {a.next_id() for _ in range(5000)}
    right = {b.next_id() for _ in range(5000)}
    assert not left & right


def test_id_carries_its_creation_time() -> None:
    before = int(time.time() * 1000)
    value = IdGenerator(3).next_id()
    after = int(time.time() * 1000)
    assert before <= id_time_ms(value) <= after
    assert min_id_at(before) <= value


def test_node_must_fit_in_ten_bits() -> None:
    with pytest.raises(ValueError):
        IdGenerator(MAX_NODE + 1)
