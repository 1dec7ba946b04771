"""junit.xml for CI systems: one testcase per scenario."""
import xml.etree.ElementTree as ET

from ..outcomes import Outcome


def render(document: dict) -> str:
    scenarios = document["scenarios"]
    outcomes = [Outcome.parse(s["outcome"]) for s in scenarios]
    failures = sum(1 for o in outcomes if o.junit_kind == "failure")
    skipped = sum(1 for o in outcomes if o.junit_kind == "skipped")
    suite = ET.Element("testsuite", name="gpu-harness", tests=str(len(scenarios)), failures=str(failures),
                       skipped=str(skipped), errors="0", time=f"{document.get('wall_s', 0):.3f}")
    for scenario, outcome in zip(scenarios, outcomes, strict=True):
        case = ET.SubElement(suite, "testcase", classname=f"gpu-harness.{scenario['path']}",
                             name=scenario["id"], time=f"{scenario.get('wall_s') or 0:.3f}")
        if outcome.junit_kind is not None:
            element = ET.SubElement(case, outcome.junit_kind, message=scenario["reason"])
            if outcome.junit_kind == "failure":
                element.text = scenario["reason"]
        ET.SubElement(case, "system-out").text = (
            f"outcome: {scenario['outcome']}\nreason: {scenario['reason']}\nrenderer: {scenario.get('renderer')}\n")
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
