"""junit.xml for CI systems: one testcase per scenario."""
import re
import xml.etree.ElementTree as ET
from typing import List, Optional, Tuple

from . import text
from .records import Run, ScenarioEntry

# Characters XML 1.0 cannot carry at all (ANSI escapes from a log, NUL): written as \xNN instead.
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value: object) -> str:
    return NOT_XML.sub(lambda m: f"\\x{ord(m.group(0)):02x}", str(value))


def properties(scenario: ScenarioEntry) -> List[Tuple[str, str]]:
    """What a CI dashboard groups and filters by: the scenario's coordinates, its renderer, and
    every component version it ran with (version.<name>)."""
    found: List[Tuple[str, Optional[str]]] = [
        ("path", scenario.path), ("runtime", scenario.runtime), ("probe", scenario.probe),
        ("machine", scenario.machine),
        ("display", scenario.display if scenario.display != "offscreen" else None),
        ("outcome", scenario.outcome.value), ("failure_kind",
                                                                             scenario.failure_kind),
        ("renderer", scenario.renderer), ("runtime_mesa", scenario.runtime_mesa),
        ("baseline", scenario.known.kind.value if scenario.known else None)]
    found += [(f"version.{name}", version) for name, version in sorted(scenario.versions.items())]
    return [(name, value) for name, value in found if value]


def add_properties(case: ET.Element, scenario: ScenarioEntry) -> None:
    element = ET.SubElement(case, "properties")
    for name, value in properties(scenario):
        ET.SubElement(element, "property", name=xml_text(name), value=xml_text(value))


def junit_kind(scenario: ScenarioEntry) -> Optional[str]:
    """The JUnit element a testcase carries, if any: an UnexpectedPass the matrix declared fails."""
    if scenario.outcome.fails_run(scenario.matrix_expects_failure):
        return "failure"
    return scenario.outcome.junit_kind


def render(run: Run) -> str:
    scenarios = run.scenarios
    kinds = [junit_kind(s) for s in scenarios]
    failures, skipped = kinds.count("failure"), kinds.count("skipped")
    suite = ET.Element("testsuite", name="gpu-harness", tests=str(len(scenarios)),
                       failures=str(failures),
                       skipped=str(skipped), errors="0", time=f"{run.wall_s:.3f}")
    for scenario, kind in zip(scenarios, kinds, strict=True):
        reason = xml_text(text.as_written(scenario.reason))
        case = ET.SubElement(suite, "testcase", classname=xml_text(f"gpu-harness.{scenario.path}"),
                             name=xml_text(scenario.id), time=f"{scenario.wall_s or 0:.3f}")
        add_properties(case, scenario)
        if kind is not None:
            element = ET.SubElement(case, kind, message=reason)
            if kind == "failure":
                element.text = reason
        ET.SubElement(case, "system-out").text = xml_text(
            f"outcome: {scenario.outcome}\nreason: {reason}\nrenderer: {scenario.renderer}\n")
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
