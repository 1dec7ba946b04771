"""Workload kinds: probes a matrix declares ([probes.NAME] kind = ...), each kind one module.
Imports harness.core and harness.scenario."""
