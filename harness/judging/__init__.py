"""Judging what a launch saw: the verdict, baselines of known failures, the scenario's result and
the leak audit. Imports the layers below it (core to matrix)."""
