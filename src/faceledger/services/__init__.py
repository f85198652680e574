"""The engine's services, one module per concern.

Each service is a small class that takes what it needs explicitly (the shared `Context`, the `Access`
guard, and the other services it calls) and owns its part of the store. `Engine` (engine.py) wires them
and is the only public entry point; the CLI and the HTTP API never import a service directly.

Data flows one way: engine → services → stages (imaging, pipeline, calibration, policy, retention)
and store / index / ledger. A service may call a service listed before it in `engine.Engine.__init__`,
never one after it, so there are no cycles.
"""
