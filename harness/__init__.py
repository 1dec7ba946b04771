"""gpu-harness: test whether GPU rendering really works through sandbox, container and VM paths."""

__version__ = "0.1.0"
