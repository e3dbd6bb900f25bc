"""The HTTP gateway (`crewbus serve gateway`): a REST API, resumable SSE event streams, an
OpenAI-compatible front door and a web UI, all over HTTP.

Why `httpapi` and not `gateway`: `crewbus.gateway` is the *submit* gateway, a NATS
request/reply handler that runs inside the orchestrator process and stores submissions on
the bus. This package is an HTTP server in its own process, and a client of the bus like
the CLI: it submits through `crewbus.submit`, controls through `crewbus.control`, reads the
task state from KV and the events and spans from their streams. It keeps nothing of its
own but a per-replica rate-limit bucket, so any number of replicas can run behind a load
balancer.
"""
