"""Why a driver did not load, in classes a person can act on, read from the loader's own words:
the dlerror text and `ld.so --list` lines the probe reports, and what the dynamic loader and
Mesa printed on the probe's stderr. glvnd drops a vendor that fails to load without a word
(all the app sees is `eglInitialize 0x300c`); the probe's diagnosis and this module say which
library was missing, which glibc version was wanted, which symbol, or which signal."""
import re
import signal
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence

from ..scenario.outcomes import FailureKind

GLIBC_VERSION = re.compile(r"(?P<file>\S+): version `GLIBC_(?P<version>[\d.]+)' not found "
                           r"\(required by (?P<user>[^)]+)\)")
OTHER_VERSION = re.compile(r"(?P<file>\S+): version `(?P<version>[^']+)' not found \(required by "
                           r"(?P<user>[^)]+)\)")
MISSING = re.compile(r"(?P<name>[^\s:]+): cannot open shared object file")
UNDEFINED = re.compile(r"undefined symbol: (?P<symbol>[^\s,]+)")
WRONG_CLASS = re.compile(r"(?P<file>\S+): wrong ELF class: (?P<cls>ELFCLASS\d+)")
EGL_INIT = re.compile(r"eglInitialize error (?P<code>0x[0-9a-fA-F]+)")
VULKAN_FAILED = re.compile(r"(?P<command>vk\w+) failed: (?P<result>VK_\w+|VkResult -?\d+)")
HANG = re.compile(r"step (?P<step>\S+): no answer from the driver after (?P<seconds>[\d.]+) s")
FAILED = re.compile(r"failed", re.I)
SERVICE_CAUSE = re.compile(r"called .* failed|too low", re.I)
SERVICE_ERROR = re.compile(r"fail|error", re.I)
PROBE_FRAME = re.compile(r'File "[^"]*/(?P<file>[\w.]+\.py)", line (?P<line>\d+) in '
                         r'(?P<function>\w+)')
EGL_ERRORS = {0x3001: "EGL_NOT_INITIALIZED", 0x3002: "EGL_BAD_ACCESS", 0x3003: "EGL_BAD_ALLOC",
              0x3004: "EGL_BAD_ATTRIBUTE", 0x3005: "EGL_BAD_CONFIG", 0x3008: "EGL_BAD_DISPLAY",
              0x300C: "EGL_BAD_PARAMETER", 0x300D: "EGL_BAD_SURFACE"}
# Lines that look like failures but that virgl_test_server logs in every passing run (each client's
# end: its socket closed, the read returns nothing); checked against real passing runs by the
# vmtests.
PASSING_SERVICE_LINES = frozenset({"client failed: VTEST_CLIENT_ERROR_INPUT_READ"})
# What Mesa's virgl and Venus vtest clients print before abort() when a read of the server's socket
# fails.
LOST_SERVER = "lost connection to rendering server"
# What Mesa's virgl vtest client prints when a write to the server's socket fails; it goes on
# drawing nothing (Mesa 22.3 did: "Failed with Connection reset by peer", then "failed to get fd").
VTEST_WRITE_FAILED = re.compile(r"^Failed with (Connection reset by peer|Broken pipe)$")
# ... and, once every resource it creates has no shared memory, over and over:
NO_RESOURCE_FD = "Unable to get a valid fd"
# What virgl_test_server's SIGSEGV handler prints (to stdout) before the process exits.
SERVER_SEGV = "SIGSEGV!"
# What runc (through podman) says of a CDI spec's mount whose host file is gone, and podman of a
# device no spec provides (measured with podman 4.3.1 and runc 1.1).
CDI_MOUNT_GONE = re.compile(r'error mounting "(?P<host>[^"]+)" to rootfs at "(?P<inside>[^"]+)": '
                            r'stat [^:]+: '
                            r'no such file or directory')
CDI_UNRESOLVED = re.compile(r"unresolvable CDI devices (?P<devices>\S+)")
DRIVER_PREFIX = "/run/host-driver/"  # driverlayout.PREFIX: a file there is the host's


@dataclass(frozen=True)
class Diagnosis:
    kind: FailureKind
    subject: str  # the soname, the version wanted, the symbol, the signal, the EGL error, the step
    detail: str  # the loader's line behind it
    evidence: str = ""  # what a service (the server side) logged about it

    def describe(self) -> str:
        return f"{self.kind} {self.subject}"

    def to_dict(self) -> dict:
        return {"class": str(self.kind), "subject": self.subject, "detail": self.detail,
                "evidence": self.evidence}


def report_lines(report: Optional[dict]) -> List[str]:
    """The loader's words in a probe's report: its error, and its diagnosis of each library."""
    if not report:
        return []
    lines = [str(report.get("error") or "")]
    for entry in report.get("diagnosis") or []:
        if not isinstance(entry, dict):
            continue
        if entry.get("dlopen") not in (None, "ok"):
            lines.append(str(entry["dlopen"]))
        lines += [str(line) for line in entry.get("errors") or []]
        lines += [f"{name}: cannot open shared object file (needed by {entry.get('library')})"
                  for name in entry.get("missing") or []]
    return [line for line in lines if line]


def glibc_too_old(lines: List[str], libc: Dict[str, Optional[str]]) -> Optional[Diagnosis]:
    for line in lines:
        match = GLIBC_VERSION.search(line)
        if match:
            side = "host" if match["file"].startswith(DRIVER_PREFIX) else "runtime"
            has = libc.get(side)
            return Diagnosis(FailureKind.GLIBC_TOO_OLD,
                             f"GLIBC_{match['version']} needed, {side} has {has or 'an older one'}",
                             line.strip())
    return None


def missing_libraries(lines: List[str]) -> Optional[Diagnosis]:
    names: List[str] = []
    first = ""
    for line in lines:
        for match in MISSING.finditer(line):
            if match["name"] not in names:
                names.append(match["name"])
                first = first or line.strip()
    if not names:
        return None
    return Diagnosis(FailureKind.MISSING_LIBRARY, ", ".join(names), first)


def symbol_lookup(lines: List[str]) -> Optional[Diagnosis]:
    for line in lines:
        match = UNDEFINED.search(line) or OTHER_VERSION.search(line)
        if match:
            subject = (match["symbol"] if "symbol" in match.groupdict()
                       else f"version {match['version']}")
            return Diagnosis(FailureKind.SYMBOL_LOOKUP, subject, line.strip())
    return None


def wrong_architecture(lines: List[str]) -> Optional[Diagnosis]:
    for line in lines:
        match = WRONG_CLASS.search(line)
        if match:
            return Diagnosis(FailureKind.WRONG_ARCHITECTURE,
                             f"{match['cls']} library in this process",
                             line.strip())
    return None


def crashed_thread(log_lines: List[str]) -> List[str]:
    """The frames faulthandler printed for the thread that crashed ("Current thread ..."), where
    it printed several threads (the probe's watchdog is one); all lines otherwise."""
    for index, line in enumerate(log_lines):
        if line.startswith("Current thread"):
            rest = log_lines[index + 1:]
            end = next((i for i, text in enumerate(rest) if not text.strip()), len(rest))
            return rest[:end]
    return log_lines


def crash(signal_number: Optional[int], log_lines: List[str],
          service_lines: Sequence[str] = ()) -> Optional[Diagnosis]:
    """The signal and the probe's frame it hit. Where Mesa's vtest client aborted because its read
    of the server's socket failed, the server's side died first: that is the class (service-died),
    with what the server logged about it."""
    if not signal_number:
        return None
    try:
        name = signal.Signals(signal_number).name
    except ValueError:
        name = f"signal {signal_number}"
    frames = [m for m in (PROBE_FRAME.search(line) for line in crashed_thread(log_lines)) if m]
    where = (f" in {frames[0]['function']} ({frames[0]['file']}:{frames[0]['line']})" if frames
             else "")
    lost = next((line.strip() for line in log_lines if LOST_SERVER in line), "")
    if lost:
        return Diagnosis(FailureKind.SERVICE_DIED,
                         f"the vtest server's side of the socket went away: {name}{where}",
                         lost, service_evidence(list(service_lines)) or "nothing about this client")
    return Diagnosis(FailureKind.CRASH, name + where, next((line.strip() for line in log_lines
                                                            if "Fatal" in line), ""))


def lost_vtest_server(log_lines: Iterable[str]) -> str:
    """The line of a vtest client (Mesa's virgl winsys) that says the server's side of its socket
    went away, or "": a client that carries on after it may still exit 0 with pixels it read
    before."""
    return next((line.strip() for line in log_lines
                 if LOST_SERVER in line or NO_RESOURCE_FD in line
                 or VTEST_WRITE_FAILED.match(line.strip())), "")


def stale_spec(lines: List[str]) -> Optional[Diagnosis]:
    """A container that did not start because its CDI spec names what the host no longer has."""
    for line in lines:
        gone = CDI_MOUNT_GONE.search(line)
        if gone:
            return Diagnosis(FailureKind.STALE_SPEC,
                             f"{gone['host']} (mounted at {gone['inside']}) does not exist",
                             line.strip())
        unresolved = CDI_UNRESOLVED.search(line)
        if unresolved:
            return Diagnosis(FailureKind.STALE_SPEC,
                             f"no CDI spec provides {unresolved['devices']}", line.strip())
    return None


def egl_init(lines: List[str]) -> Optional[Diagnosis]:
    for line in lines:
        match = EGL_INIT.search(line)
        if match:
            code = int(match["code"], 16)
            return Diagnosis(FailureKind.EGL_INIT, EGL_ERRORS.get(code, match["code"]),
                             line.strip())
    return None


def server_crashes(log_path: Optional[str]) -> int:
    """How many of a vtest server's processes for a client crashed: its SIGSEGV handler's lines in
    its whole log (a forking server lives on; only the log says)."""
    if not log_path:
        return 0
    try:
        with open(log_path, errors="replace") as log:
            return sum(line.strip() == SERVER_SEGV for line in log)
    except OSError:
        return 0


# What virglrenderer logs when it refuses a guest's command (a context put in error, a resource
# it would not create): the refusals QEMU's process made, which the guest never hears of.
RENDERER_REFUSALS = ("context error reported", "Illegal resource parameters")
QEMU_LOG = "qemu"  # a VM scenario's QEMU log, by its name among the launch's logs


def renderer_refusals(log_path: Optional[str]) -> int:
    """How many commands the virglrenderer in a VM's QEMU refused: its lines in QEMU's whole log."""
    if not log_path:
        return 0
    try:
        with open(log_path, errors="replace") as log:
            return sum(any(marker in line for marker in RENDERER_REFUSALS) for line in log)
    except OSError:
        return 0


def service_evidence(service_lines: List[str]) -> str:
    """The last line a service (virgl_test_server) logged about what failed, if any: the call that
    failed (the cause: "X called Y which failed (-22)"), else a line that says "failed", else
    one that says "error" (often only the consequence: "client failed: ..._DISPATCH"). A line
    the service logs in every passing run too (PASSING_SERVICE_LINES) is no evidence."""
    telling = [line for line in service_lines if line.strip() not in PASSING_SERVICE_LINES]
    if any(line.strip() == SERVER_SEGV for line in telling):
        return f"its process for a client crashed ({SERVER_SEGV})"
    for pattern in (SERVICE_CAUSE, FAILED, SERVICE_ERROR):
        said = next((line.strip() for line in reversed(telling) if pattern.search(line)), "")
        if said:
            return said
    return ""


def driver_hang(report: Optional[dict], lines: List[str],
                service_lines: List[str]) -> Optional[Diagnosis]:
    if isinstance(report, dict) and report.get("hung") and isinstance(report.get("failed_step"),
                                                                      str):
        return Diagnosis(FailureKind.DRIVER_HANG, report["failed_step"], str(report.get("error",
                                                                                        "")),
                         service_evidence(service_lines))
    for line in lines:
        match = HANG.search(line)
        if match:
            return Diagnosis(FailureKind.DRIVER_HANG, match["step"], line.strip(),
                             service_evidence(service_lines))
    return None


def vulkan_error(report: Optional[dict], lines: List[str],
                 service_lines: List[str]) -> Optional[Diagnosis]:
    if isinstance(report, dict) and isinstance(report.get("failed_step"), str) and \
            isinstance(report.get("result_code"), str):
        return Diagnosis(FailureKind.VULKAN_ERROR,
                         f"{report['failed_step']} {report['result_code']}",
                         str(report.get("error", "")), service_evidence(service_lines))
    for line in lines:
        match = VULKAN_FAILED.search(line)
        if match:
            return Diagnosis(FailureKind.VULKAN_ERROR, f"{match['command']} {match['result']}",
                             line.strip(),
                             service_evidence(service_lines))
    return None


# the present probe's step where the device cannot present (harness/probe/vkpresent.py)
PRESENT_SUPPORT = "present-support"
# the kms probe's steps that set up the display and show the image
DISPLAY_STEPS = ("compositor", "show")


def no_display(report: Optional[dict]) -> Optional[Diagnosis]:
    """A compositor that found no display device (a render node alone) or showed nothing."""
    if isinstance(report,
                  dict) and report.get("failed_step") in DISPLAY_STEPS and not report.get("hung"):
        error = str(report.get("error", ""))
        subject = "no card node" if "no DRM card node" in error else str(report["failed_step"])
        return Diagnosis(FailureKind.NO_DISPLAY, subject, error)
    return None


def cannot_present(report: Optional[dict]) -> Optional[Diagnosis]:
    """A device that renders but offers the display's surface no way to present (the present
    probe's present-support step: no VK_KHR_swapchain, no surface support)."""
    if isinstance(report, dict) and report.get("failed_step") == PRESENT_SUPPORT:
        error = str(report.get("error", ""))
        subject = "no VK_KHR_swapchain" if "VK_KHR_swapchain" in error else "no surface support"
        return Diagnosis(FailureKind.CANNOT_PRESENT, subject, error)
    return None


def classify(report: Optional[dict], log_lines: Iterable[str], signal_number: Optional[int],
             libc: Dict[str, Optional[str]],
             service_lines: Iterable[str] = ()) -> Optional[Diagnosis]:
    """The most specific reason found, or None. A loader error is the cause when there is one;
    a crash, a hang, a Vulkan or EGL error is what remains when the loader said nothing (the
    probe's failed_step/result_code fields where it has them, else its words). A service's log
    (virgl_test_server's) is the evidence for what the server side refused."""
    log, services = list(log_lines), list(service_lines)
    lines = report_lines(report) + log
    return (stale_spec(lines) or glibc_too_old(lines, libc) or wrong_architecture(lines)
            or missing_libraries(lines)
            or symbol_lookup(lines) or crash(signal_number, log, services) or driver_hang(report,
                                                                                          lines,
                                                                                          services)
            or cannot_present(report) or vulkan_error(report, lines, services)
            or no_display(report) or egl_init(lines))
