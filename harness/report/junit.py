"""junit.xml for CI systems: one testcase per scenario."""
import xml.etree.ElementTree as ET


def render(document: dict) -> str:
    scenarios = document["scenarios"]
    failures = sum(1 for s in scenarios if s["outcome"] == "Fail")
    skipped = sum(1 for s in scenarios if s["outcome"] == "Skip")
    suite = ET.Element("testsuite", name="gpu-harness", tests=str(len(scenarios)), failures=str(failures),
                       skipped=str(skipped), errors="0", time=f"{document.get('wall_s', 0):.3f}")
    for scenario in scenarios:
        case = ET.SubElement(suite, "testcase", classname=f"gpu-harness.{scenario['path']}",
                             name=scenario["id"], time=f"{scenario.get('wall_s') or 0:.3f}")
        if scenario["outcome"] == "Fail":
            failure = ET.SubElement(case, "failure", message=scenario["reason"])
            failure.text = scenario["reason"]
        elif scenario["outcome"] == "Skip":
            ET.SubElement(case, "skipped", message=scenario["reason"])
        ET.SubElement(case, "system-out").text = (
            f"outcome: {scenario['outcome']}\nreason: {scenario['reason']}\nrenderer: {scenario.get('renderer')}\n")
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
