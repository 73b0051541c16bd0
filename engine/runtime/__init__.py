"""The runtime around the pure core, over the ports (engine/ports.py):

| module | job |
|---|---|
| `runner.py` | `Runner`: match events and due timers to journeys, advance, carry out commands |
| `events.py` | Segment events at the edge: validation and normalization |
| `identity.py` | which profile an event belongs to; links and merges (never two known people) |
| `privacy.py` | a person's export and erasure, event retention |
| `errortext.py` | error text to log and keep, without the values a database quotes |
| `rendering.py` | render a send exactly as it will be delivered |
| `policy.py` | consent, quiet hours and frequency caps at delivery |
| `dispatch.py` | the outbox dispatcher: deliver, retry, defer, skip |
| `worker.py` | the worker loop: inbox events, timers, outbox |
| `unsubscribe.py` | signed one-click unsubscribe links (naming the person) |
| `signing.py` | where the unsubscribe-signing secrets come from (config, or a file) |
| `why.py` | one person's decision log, as records or a readable story (`journeyman why`) |

It imports no concrete store: `engine/service.py` wires a store in.
"""
