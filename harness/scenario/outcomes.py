"""What a scenario can end as, and why it failed: the words the verdict, the reports, JUnit,
the HTML and the CLI's exit code all share."""
import enum
from dataclasses import dataclass, field
from typing import Dict, Optional


class Outcome(str, enum.Enum):
    PASS = "Pass"
    FAIL = "Fail"
    EXPECTED_FAIL = "ExpectedFail"
    FLAKE = "Flake"
    SKIP = "Skip"
    # Passed where a failure was expected (deqp-runner's word). Expected by the matrix (expect =
    # "fail"): a failure of the run; known to the baseline as a failure: reported, and a failure
    # of the run only where asked (run --fail-on-unexpected-pass).
    UNEXPECTED_PASS = "UnexpectedPass"

    def __str__(self) -> str:
        return self.value

    @property
    def is_success(self) -> bool:
        """Counts as a good result for a run (a Skip is an answer, not a defect); an UnexpectedPass
        the matrix declared is not one either (fails_run)."""
        return self is not Outcome.FAIL

    def fails_run(self, expected_by_matrix: bool, strict_unexpected: bool = False,
                  strict_skip: bool = False) -> bool:
        """Whether this outcome fails the run: a Fail; an UnexpectedPass where the matrix expected
        the failure (or with strict_unexpected); a Skip with strict_skip."""
        return self is Outcome.FAIL or (self is Outcome.SKIP and strict_skip) or \
            (self is Outcome.UNEXPECTED_PASS and (expected_by_matrix or strict_unexpected))

    @property
    def junit_kind(self) -> Optional[str]:
        """The JUnit element a testcase with this outcome carries, if any."""
        return {Outcome.FAIL: "failure", Outcome.SKIP: "skipped"}.get(self)

    @property
    def renders(self) -> bool:
        """The scenario rendered in the end (a Flake after a retry, an UnexpectedPass too)."""
        return self in (Outcome.PASS, Outcome.FLAKE, Outcome.UNEXPECTED_PASS)

    @classmethod
    def parse(cls, text: str) -> "Outcome":
        return cls(text)


class FailureKind(str, enum.Enum):
    """Why a scenario failed, in classes a person can act on."""

    HARNESS_ERROR = "harness-error"  # the harness itself raised: a bug or an environment problem
    SERVICE_FAILED = "service-failed"  # a sidecar did not come up
    SERVICE_DIED = "service-died"  # a sidecar died while the workload ran
    LAUNCH_FAILED = "launch-failed"  # the sandbox/VM did not start or stopped early
    GUEST_PANIC = "guest-panic"
    CRASH = "crash"  # the workload died by a signal
    TIMEOUT = "timeout"
    NO_RESULT = "no-result"  # exited without a parseable report
    PROBE_ERROR = "probe-error"  # the probe ran and reported an error
    # A driver that did not load, in the loader's words (harness.host.diagnosis):
    MISSING_LIBRARY = "missing-library"
    GLIBC_TOO_OLD = "glibc-too-old"
    SYMBOL_LOOKUP = "symbol-lookup"
    WRONG_ARCHITECTURE = "wrong-architecture"  # a 64-bit driver in a 32-bit process, or the reverse
    STALE_SPEC = "stale-spec"  # a CDI spec names files or devices the host no longer has
    EGL_INIT = "egl-init"  # EGL did not initialise, and the loader said nothing more
    VULKAN_ERROR = "vulkan-error"  # a Vulkan call failed: its command and VkResult
    # a compositor found no display device (a render node alone), or showed nothing
    NO_DISPLAY = "no-display"
    # the device renders but cannot present to the display's surface (no VK_KHR_swapchain, no
    # surface support): the probe names what is missing
    CANNOT_PRESENT = "cannot-present"
    # a driver call never returned (the probe's watchdog names the step)
    DRIVER_HANG = "driver-hang"
    # a host-driver path rendered with the runtime's own driver
    HOST_DRIVER_UNUSED = "host-driver-unused"
    SILENT_SOFTWARE_FALLBACK = "silent-software-fallback"
    WRONG_RENDERER = "wrong-renderer"
    IMAGE_MISMATCH = "image-mismatch"
    SCANOUT_MISMATCH = "scanout-mismatch"
    # a presenting scenario's display server showed nothing (black, one colour, an empty window)
    BLANK_CAPTURE = "blank-capture"
    # the display showed something, but not the probe's frame (or no capture came)
    NOT_ON_SCREEN = "not-on-screen"
    SCREEN_MISMATCH = "screen-mismatch"  # the window on screen differs from the golden
    ISOLATION = "isolation"  # the workload sees what the path promises to hide
    INTERRUPTED = "interrupted"
    RUNTIME_BUILD = "runtime-build"  # the scenario's runtime could not be built
    VFIO = "vfio"  # a vfio step (bind, restore) failed on the host: which one and why follows
    # a workload's subtests failed (piglit tests, a command's rule)
    SUBTEST_FAILED = "subtest-failed"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Failure:
    """Why something failed: its class, the one-line message, and what the class is about (the
    soname, the glibc version, the signal, the step) where a diagnosis named it."""

    kind: FailureKind
    message: str
    subject: str = ""


class SubtestOutcome(str, enum.Enum):
    """How one subtest of a workload ended (piglit's words, which deqp-runner shares)."""

    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"
    WARN = "warn"  # passed with a warning: not a failure
    CRASH = "crash"  # died by a signal
    TIMEOUT = "timeout"  # ran past its deadline and was killed

    def __str__(self) -> str:
        return self.value

    @property
    def failed(self) -> bool:
        return self in (SubtestOutcome.FAIL, SubtestOutcome.CRASH, SubtestOutcome.TIMEOUT)


@dataclass(frozen=True)
class Subtest:
    """One subtest of a workload scenario: a piglit test, a benchmark scene, a command."""

    name: str
    outcome: SubtestOutcome
    detail: str = ""
    seconds: Optional[float] = None
    figures: Dict[str, float] = field(default_factory=dict)  # a score, fps: by name

    def to_dict(self) -> dict:
        data: dict = {"name": self.name, "outcome": str(self.outcome)}
        data.update({key: value for key, value in (("detail", self.detail), ("seconds",
                                                                             self.seconds),
                                                   ("figures", dict(self.figures))) if value})
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Subtest":
        return cls(str(data["name"]), SubtestOutcome(data["outcome"]), str(data.get("detail", "")),
                   data.get("seconds"), dict(data.get("figures") or {}))
