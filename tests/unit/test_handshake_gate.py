"""The per-process gate on socket handshakes in flight (api/ws/admission.py)."""

from __future__ import annotations

from api.ws.admission import HandshakeGate


def test_the_handshake_gate_refuses_past_its_limit_and_counts_each_handshake_once() -> None:
    gate = HandshakeGate(limit=2)
    a, b, c = object(), object(), object()
    assert gate.enter(a) and gate.enter(b)
    assert not gate.enter(c) and gate.refused == 1
    gate.leave(a)
    gate.leave(a)  # idempotent: upgraded, then the handler's finally
    assert gate.in_flight == 1
    assert gate.enter(c)
