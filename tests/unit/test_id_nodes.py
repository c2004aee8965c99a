"""The id generator mints only with a node it holds right now, and stays strictly increasing across nodes."""

from __future__ import annotations

import time

import pytest

from storage.ids import IdGenerator, NodeNotHeld, id_node


def test_a_generator_without_a_held_node_refuses_to_mint() -> None:
    with pytest.raises(NodeNotHeld):
        IdGenerator().next_id()


def test_a_generator_stops_minting_when_its_lease_runs_out_or_is_dropped() -> None:
    gen = IdGenerator()
    gen.hold(5, time.monotonic() - 0.001)
    with pytest.raises(NodeNotHeld):
        gen.next_id()
    gen.hold(5, time.monotonic() + 60)
    assert id_node(gen.next_id()) == 5
    gen.drop(5)
    with pytest.raises(NodeNotHeld):
        gen.next_id()


def test_switching_to_another_held_node_keeps_ids_strictly_increasing() -> None:
    gen = IdGenerator()
    gen.hold(900, time.monotonic() + 60)
    gen.hold(3, time.monotonic() + 60)
    before = [gen.next_id() for _ in range(1000)]
    first = gen.node
    assert first is not None and {id_node(v) for v in before} == {first}
    gen.drop(first)
    after = [gen.next_id() for _ in range(1000)]
    assert {id_node(v) for v in after} == {900 if first == 3 else 3}
    values = before + after
    assert values == sorted(values) and len(set(values)) == len(values)


def test_a_held_node_must_fit_in_ten_bits() -> None:
    with pytest.raises(ValueError):
        IdGenerator().hold(1024, time.monotonic() + 60)
