"""junit.xml for CI systems: one testcase per scenario."""
import re
import xml.etree.ElementTree as ET

from ..outcomes import Outcome

# Characters XML 1.0 cannot carry at all (ANSI escapes from a log, NUL): written as \xNN instead.
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value: object) -> str:
    return NOT_XML.sub(lambda m: f"\\x{ord(m.group(0)):02x}", str(value))


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
        if outcome.junit_kind is not None:
            element = ET.SubElement(case, outcome.junit_kind, message=reason)
            if outcome.junit_kind == "failure":
                element.text = reason
        ET.SubElement(case, "system-out").text = xml_text(
            f"outcome: {scenario['outcome']}\nreason: {scenario['reason']}\nrenderer: {scenario.get('renderer')}\n")
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
