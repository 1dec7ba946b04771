"""junit.xml for CI systems: one testcase per scenario."""
import re
import xml.etree.ElementTree as ET
from typing import List, Tuple

from ..outcomes import Outcome
from . import entries

# Characters XML 1.0 cannot carry at all (ANSI escapes from a log, NUL): written as \xNN instead.
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value: object) -> str:
    return NOT_XML.sub(lambda m: f"\\x{ord(m.group(0)):02x}", str(value))


def properties(scenario: dict) -> List[Tuple[str, str]]:
    """What a CI dashboard groups and filters by: the scenario's coordinates, its renderer, and
    every component version it ran with (version.<name>)."""
    known = entries.mapping(scenario, "baseline")
    found = [("path", scenario["path"]), ("runtime", entries.runtime(scenario)), ("probe", entries.probe(scenario)),
             ("outcome", scenario["outcome"]), ("failure_kind", entries.failure_class(scenario)),
             ("renderer", entries.text(scenario, "renderer")), ("runtime_mesa", entries.runtime_mesa(scenario)),
             ("baseline", entries.text(known, "kind"))]
    found += [(f"version.{name}", version) for name, version in sorted(entries.versions(scenario).items())]
    return [(name, value) for name, value in found if value]


def add_properties(case: ET.Element, scenario: dict) -> None:
    element = ET.SubElement(case, "properties")
    for name, value in properties(scenario):
        ET.SubElement(element, "property", name=xml_text(name), value=xml_text(value))


def render(document: dict) -> str:
    scenarios = document["scenarios"]
    outcomes = [Outcome.parse(s["outcome"]) for s in scenarios]
    failures = sum(1 for o in outcomes if o.junit_kind == "failure")
    skipped = sum(1 for o in outcomes if o.junit_kind == "skipped")
    suite = ET.Element("testsuite", name="gpu-harness", tests=str(len(scenarios)), failures=str(failures),
                       skipped=str(skipped), errors="0", time=f"{document.get('wall_s', 0):.3f}")
    for scenario, outcome in zip(scenarios, outcomes, strict=True):
        reason = xml_text(scenario["reason"])
        case = ET.SubElement(suite, "testcase", classname=xml_text(f"gpu-harness.{scenario['path']}"),
                             name=xml_text(scenario["id"]), time=f"{scenario.get('wall_s') or 0:.3f}")
        add_properties(case, scenario)
        if outcome.junit_kind is not None:
            element = ET.SubElement(case, outcome.junit_kind, message=reason)
            if outcome.junit_kind == "failure":
                element.text = reason
        ET.SubElement(case, "system-out").text = xml_text(
            f"outcome: {scenario['outcome']}\nreason: {scenario['reason']}\nrenderer: {scenario.get('renderer')}\n")
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
