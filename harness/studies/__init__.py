"""Measurements beyond a run's verdicts: the phase benchmark, the vtest server benchmark, the
hostile vtest client. Imports the layers below it (core to run)."""
