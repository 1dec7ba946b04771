"""junit.xml for CI systems: one testcase per scenario."""
import re
import xml.etree.ElementTree as ET
from typing import List, Optional, Tuple

from ..scenario.outcomes import Outcome
from . import entries, text

# Characters XML 1.0 cannot carry at all (ANSI escapes from a log, NUL): written as \xNN instead.
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value: object) -> str:
    return NOT_XML.sub(lambda m: f"\\x{ord(m.group(0)):02x}", str(value))


def properties(scenario: dict) -> List[Tuple[str, str]]:
    """What a CI dashboard groups and filters by: the scenario's coordinates, its renderer, and
    every component version it ran with (version.<name>)."""
    known = entries.mapping(scenario, "baseline")
    found = [("path", scenario["path"]), ("runtime", entries.runtime(scenario)), ("probe", entries.probe(scenario)),
             ("machine", entries.machine(scenario)),
             ("outcome", scenario["outcome"]), ("failure_kind", entries.failure_class(scenario)),
             ("renderer", entries.text(scenario, "renderer")), ("runtime_mesa", entries.runtime_mesa(scenario)),
             ("baseline", entries.text(known, "kind"))]
    found += [(f"version.{name}", version) for name, version in sorted(entries.versions(scenario).items())]
    return [(name, value) for name, value in found if value]


def add_properties(case: ET.Element, scenario: dict) -> None:
    element = ET.SubElement(case, "properties")
    for name, value in properties(scenario):
        ET.SubElement(element, "property", name=xml_text(name), value=xml_text(value))


def junit_kind(scenario: dict) -> Optional[str]:
    """The JUnit element a testcase carries, if any: an UnexpectedPass the matrix declared fails."""
    outcome = Outcome.parse(scenario["outcome"])
    expect = scenario.get("expect")
    if outcome.fails_run(isinstance(expect, dict) and expect.get("outcome") == "fail"):
        return "failure"
    return outcome.junit_kind


def render(document: dict) -> str:
    scenarios = document["scenarios"]
    kinds = [junit_kind(s) for s in scenarios]
    failures, skipped = kinds.count("failure"), kinds.count("skipped")
    suite = ET.Element("testsuite", name="gpu-harness", tests=str(len(scenarios)), failures=str(failures),
                       skipped=str(skipped), errors="0", time=f"{document.get('wall_s', 0):.3f}")
    for scenario, kind in zip(scenarios, kinds, strict=True):
        reason = xml_text(text.as_written(scenario["reason"]))
        case = ET.SubElement(suite, "testcase", classname=xml_text(f"gpu-harness.{scenario['path']}"),
                             name=xml_text(scenario["id"]), time=f"{scenario.get('wall_s') or 0:.3f}")
        add_properties(case, scenario)
        if kind is not None:
            element = ET.SubElement(case, kind, message=reason)
            if kind == "failure":
                element.text = reason
        ET.SubElement(case, "system-out").text = xml_text(
            f"outcome: {scenario['outcome']}\nreason: {reason}\nrenderer: {scenario.get('renderer')}\n")
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
