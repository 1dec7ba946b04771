"""What emulation costs: a scenario on an emulated runtime against the same path and probe on the
native runtime of the same suite (bookworm-arm64 against bookworm), its probe time as a factor
and its fps as a share of native's, or "the same" where the rounds' spreads overlap."""
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

from .entryparts import RuntimeFacts, runtime_facts

Spread = Tuple[float, float]


@dataclass(frozen=True)
class Measured:
    """One scenario's numbers and how its runtime ran (from results.json or from a bench round)."""

    path: str
    probe: str
    runtime: str
    suite: str
    runs: str  # "natively", "emulated" (a runtime's execution fact)
    architecture: str
    emulator: str = ""  # the qemu-user version line, where emulated
    probe_s: Optional[float] = None
    fps: Optional[float] = None
    fps_spread: Optional[Spread] = None

    @classmethod
    def from_facts(cls, path: str, probe: str, runtime: str, facts: dict, probe_s: Optional[float],
                   fps: Optional[float], fps_spread: Optional[Spread]) -> Optional["Measured"]:
        """From a runtime's facts as its build wrote them (suite, execution); None where they do not
        say how it ran."""
        return cls.from_runtime(path, probe, runtime, runtime_facts(facts), probe_s, fps,
                                fps_spread)

    @classmethod
    def from_runtime(cls, path: str, probe: str, runtime: str, facts: RuntimeFacts,
                     probe_s: Optional[float],
                     fps: Optional[float], fps_spread: Optional[Spread]) -> Optional["Measured"]:
        """From a runtime's facts as results.json holds them; None where they do not say how it
        ran."""
        execution = facts.execution
        if execution is None or facts.suite is None or execution.runs not in ("natively",
                                                                              "emulated"):
            return None
        return cls(path, probe, runtime, facts.suite, execution.runs, execution.architecture,
                   execution.emulator,
                   probe_s, fps, fps_spread)


@dataclass(frozen=True)
class EmulationCost:
    emulated: Measured
    native: Measured

    @property
    def probe_factor(self) -> Optional[float]:
        if self.emulated.probe_s is None or not self.native.probe_s:
            return None
        return self.emulated.probe_s / self.native.probe_s

    @property
    def fps_share(self) -> Optional[float]:
        if self.emulated.fps is None or not self.native.fps:
            return None
        return self.emulated.fps / self.native.fps

    @property
    def fps_same(self) -> bool:
        """The emulated rounds' spread overlaps native's: the share is inside the noise."""
        one, other = self.emulated.fps_spread, self.native.fps_spread
        return bool(one and other and one[0] <= other[1] and other[0] <= one[1])

    def to_dict(self) -> dict:
        return {"path": self.emulated.path, "probe": self.emulated.probe,
                "runtime": self.emulated.runtime,
                "native_runtime": self.native.runtime, "architecture": self.emulated.architecture,
                "emulator": self.emulated.emulator, "probe_s": self.emulated.probe_s,
                "native_probe_s": self.native.probe_s, "probe_factor": rounded(self.probe_factor),
                "fps": self.emulated.fps, "native_fps": self.native.fps,
                "fps_vs_native": rounded(self.fps_share),
                "fps_same_as_native": self.fps_same}


def describe(item: dict) -> str:
    """`bookworm-arm64/gl: probe x4.9 (3.90 s against 0.79 s), fps 67% of bookworm's`, from
    EmulationCost.to_dict() (what results.json keeps)."""
    parts = []
    if item.get("probe_factor") is not None:
        parts.append(f"probe x{item['probe_factor']:.1f} ({item['probe_s']:.2f} s against "
                     f"{item['native_probe_s']:.2f} s)")
    if item.get("fps_vs_native") is not None:
        parts.append(f"fps the same as {item['native_runtime']}'s (within the spread)"
                     if item.get("fps_same_as_native")
                     else f"fps {item['fps_vs_native'] * 100:.0f}% of {item['native_runtime']}'s")
    return f"{item['runtime']}/{item['probe']}: {', '.join(parts) or 'no numbers'}"


def rounded(value: Optional[float]) -> Optional[float]:
    return round(value, 3) if value is not None else None


def pairs(measured: Iterable[Measured]) -> List[EmulationCost]:
    """Each emulated scenario with its native counterpart (same path, probe and suite), where the
    run has one: the runtime named as its suite first (bookworm before bookworm-i386)."""
    found = list(measured)
    native: Dict[Tuple[str, str, str], Measured] = {}
    for item in sorted(found, key=lambda item: item.runtime != item.suite):
        if item.runs == "natively":
            native.setdefault((item.path, item.probe, item.suite), item)
    return [EmulationCost(item, native[(item.path, item.probe, item.suite)]) for item in found
            if item.runs == "emulated" and (item.path, item.probe, item.suite) in native]
