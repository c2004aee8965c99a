"""Plain logic with no I/O, used by every side: rules and limits, text parsing, ranking, tokens, presence
bookkeeping, the wire contract of the socket and the presenters of rows as wire objects. Imports nothing of ours
but domain."""
