"""Tools for checking journeys before customers see them: `simulate` (events through
journeys on a fake clock), `preview` (one send, rendered as it will be delivered) and
`demo` (the real service on a time-lapse clock); scenario tests and replay come here."""
