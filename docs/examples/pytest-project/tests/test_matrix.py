"""glcheck over the project's matrix (../matrix.toml, relative to this module): one test per
scenario, named by its id. The harness's verdict is the test's (a Skip skips it and a Fail fails
it, each with the harness's reason); the body asserts more on what the app printed."""
import pytest


@pytest.mark.gpu_harness_matrix("../matrix.toml")
def test_glcheck_matrix(gpu_harness_scenario):
    assert [subtest.outcome for subtest in gpu_harness_scenario.subtests] == ["pass"]
    assert "pixel: 51 102 153 255" in gpu_harness_scenario.output
