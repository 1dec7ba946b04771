"""What a scenario is: the nouns (scenario, runtime, the path and machine tables, probes, outcomes
and failure classes) and the comparison of its images with goldens. Imports harness.core and
harness.system."""
