"""The security answer: per path and server, what a hostile client inside the path (the fuzzer a
matrix declares, harness/data/security.toml) did to the vtest server the path gave it, beside
what that path exposes of the host as measured. Read from results.json's scenario entries: the
fuzzer's summary (the last line of its step's output), the server's crashed processes, the
scenario's verdict and its exposure audit. Findings as measured, never a proof of safety."""
import json
from typing import List, Optional

from ..scenario.outcomes import Outcome
from ..scenario.paths import PATHS
from .display import css_class
from .records import ScenarioEntry
from .table import Answer, Cell, listed

SERVER_TOOL = "virgl_test_server"
SUMMARY_KEYS = {"tried", "answered", "dropped", "hung", "waiting", "session_bytes"}
# where the fuzzer saved the inputs that dropped or hung, in the scenario's folder
INPUTS = "probe/fuzz/inputs"
# how a scenario's own server runs
FORKING, CONFINED = "forking", "forking, confined (bwrap, seccomp)"
# a VM path: virglrenderer is QEMU's library
IN_QEMU = "in QEMU's process (the client is a guest program)"
QEMU_PREFIX = "qemu-system-"


def server_mode(path: str) -> str:
    spec = PATHS.get(path)
    if spec is not None and spec.guest_gpu:
        return IN_QEMU
    return CONFINED if spec is not None and spec.confined_server else FORKING


def server(entry: ScenarioEntry) -> str:
    """What the hostile client's bytes reached: the path's vtest server, or the VM's QEMU."""
    versions = entry.versions
    qemu = sorted(name for name in versions if name.startswith(QEMU_PREFIX))
    if SERVER_TOOL not in versions and qemu:
        return f"{qemu[0]} {versions[qemu[0]]}"
    return f"{SERVER_TOOL} {versions.get(SERVER_TOOL, '?')}"


def others(summary: dict) -> str:
    """What a guest's hostile program left of other clients (a fresh one after each input, and a
    victim's texture through the run), where it says."""
    if "victim" not in summary:
        return ""
    return (f"fresh clients' pixels wrong after {count(summary, 'disturbed')} inputs; "
            f"another client's texture: {summary.get('victim')}")


def fuzz_summary(entry: ScenarioEntry) -> Optional[dict]:
    """The fuzzer's summary in one of the scenario's workload steps (its output's last line), or
    None."""
    for output in entry.step_outputs:
        lines = [line for line in output.splitlines() if line.strip()]
        try:
            found = json.loads(lines[-1]) if lines else None
        except ValueError:
            continue
        if isinstance(found, dict) and SUMMARY_KEYS <= set(found):
            return found
    return None


def count(summary: dict, key: str) -> int:
    value = summary.get(key)
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else 0


def host_refusals(entry: ScenarioEntry) -> Optional[int]:
    """The commands a VM's virglrenderer refused, from QEMU's log (None: no VM)."""
    found = entry.renderer_refusals
    return None if found is None else int(found)


def security_record(entry: ScenarioEntry, summary: dict) -> dict:
    exposure = entry.exposure
    listed_cases = summary.get("targeted")
    targeted: list = listed_cases if isinstance(listed_cases, list) else []
    result_dir = entry.result_dir
    return {
        "path": entry.path, "runtime": entry.runtime,
        "server": server(entry), "others": others(summary),
        "mode": server_mode(entry.path),
        **{key: count(summary, key) for key in ("tried", "answered", "dropped", "waiting", "hung")},
        "seed": summary.get("seed"), "seconds": summary.get("seconds"),
        "crashes": int(entry.vtest_server_crashes or 0),
        "host_refused": host_refusals(entry),
        "outcome": entry.outcome.value, "reason": entry.reason,
        "targeted_refused": [t.get("case") for t in targeted if isinstance(t, dict)
                             and t.get("outcome") != "answered"],
        "targeted": len(targeted),
        "inputs": f"{result_dir}/{INPUTS}" if result_dir else None,
        "exposes": {"host_files": exposure.host_file_count or 0,
                    "host_sockets": list(exposure.host_sockets),
                    "shared_namespaces": list(exposure.shared_namespaces)} if exposure else None,
    }


def security(scenarios: List[ScenarioEntry]) -> Answer:
    answer = Answer("security", "A hostile client through each path",
                    "What did a hostile client inside the path (targeted cases, then a real "
                    "session mutated) do "
                    "to the vtest server the path gave it (in a VM: through the guest's virtio-gpu "
                    "device to "
                    "QEMU's virglrenderer): inputs answered, refused (its process for the client "
                    "ended), left waiting, hung; the server's processes that crashed; and what the "
                    "path exposes "
                    "of the host, as measured. No crash here is no proof of safety.",
                    ["path", "runtime", "server", "server runs", "inputs", "answered", "refused",
                     "waiting", "hung",
                     "crashed processes", "verdict", "the path exposes", "saved inputs"])
    for entry in scenarios:
        summary = fuzz_summary(entry)
        if summary is None:
            continue
        found = security_record(entry, summary)
        answer.add(found, row(found))
    return answer.or_say("No hostile client ran (harness/data/security.toml runs one through each "
                         "vtest path).")


def refusals(found: dict) -> str:
    """The inputs refused; in a VM, the guest kernel's and, apart, the commands QEMU's
    virglrenderer refused (the guest is not told: its log is)."""
    if found["host_refused"] is None:
        return str(found["dropped"])
    return (f"{found['dropped']} by the guest kernel; {found['host_refused']} commands by "
            "virglrenderer (QEMU's log)")


def row(found: dict) -> List[Cell]:
    outcome = Outcome.parse(found["outcome"])  # the entry's, as the record says it
    exposes = found["exposes"]
    exposed = "-" if exposes is None else (
        f"{exposes['host_files']} host files; sockets {listed(exposes['host_sockets']) or 'none'}"
        + (f"; shares {listed(exposes['shared_namespaces'])}" if exposes["shared_namespaces"]
           else ""))
    refused = found["targeted_refused"]
    return [Cell(found["path"]), Cell(found["runtime"]), Cell(found["server"]), Cell(found["mode"]),
            Cell(f"{found['tried']} ({found['targeted']} targeted)"), Cell(str(found["answered"])),
            Cell(refusals(found), title="targeted cases refused: " + (listed(refused) or "none")),
            Cell(str(found["waiting"])), Cell(str(found["hung"])), Cell(str(found["crashes"])),
            Cell(outcome.value, css_class(outcome), "; ".join(filter(None, (found["reason"],
                                                                            found["others"])))),
            Cell(exposed),
            Cell(found["inputs"] if found["dropped"] or found["hung"] else "-")]
