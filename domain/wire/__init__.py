"""The wire models: one msgspec struct per object on the wire, HTTP and socket alike (API.md sections 2-4).

They are the only definition of what a client sends and receives: routes decode request bodies into the inbound
structs (api/contract.py), answer with the outbound ones, and the socket frames carry the same structs
(domain/events.py). docs/openapi.json (api/openapi.py) and docs/asyncapi.yaml (scripts/gen_asyncapi.py) are
generated from them. Ids are decimal strings, times RFC 3339 strings (``format: date-time``).
"""
