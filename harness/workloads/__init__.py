"""Workload kinds: probes a matrix declares ([probes.NAME] kind = ...), each kind one module."""
