"""glcheck through two paths with the gpu_harness fixture: on the host's own driver (native) and
from a sandbox with no /dev/dri, over a vtest socket to the host's virgl_test_server (vtest-virgl)."""
import pytest


@pytest.mark.parametrize("path", ["native", "vtest-virgl"])
def test_glcheck_draws(gpu_harness, path):
    # `files` (relative to this module) are put in {out}/inputs, where every path sees them.
    result = gpu_harness.run(["python3", "{out}/inputs/glcheck.py"], path=path, files=["../glcheck.py"],
                             pass_pattern="^ok$")
    result.check()  # the verdict is the test's: a Skip skips it, a Fail fails it with the harness's reason
    # The app got the renderer the harness's own GL scene got before it, in the same place.
    assert f"renderer: {result.renderer}" in result.output
    assert "pixel: 51 102 153 255" in result.log.read_text()
    if path == "vtest-virgl":
        assert result.renderer.startswith("virgl")
