"""The detectors every new coach session runs, in order (see ``coach.detector``).

The order is the order of the list: at each moment the session runs the detectors that read it
one after the other and publishes their findings in that order. A new detector is one module
defining a ``Detector``, added to ``BUILT_IN``; ``register`` adds one at run time (a plug-in, a
test), after the built-in ones, and ``unregister`` takes it out. A session takes the list as it
is when the call starts, so a call's detectors never change under it.
"""

from __future__ import annotations

from coach import checklist, dead_air, emotion, intents, violations
from coach.detector import Detector

# on a final: the checklist first (a customer's words can make a step due), then the intents, then
# the temperature (the intents weigh in)
BUILT_IN: tuple[Detector, ...] = (
    violations.DETECTOR,
    checklist.DETECTOR,
    intents.DETECTOR,
    emotion.DETECTOR,
    dead_air.DETECTOR,
)

_registered: list[Detector] = list(BUILT_IN)


def registered() -> tuple[Detector, ...]:
    """The detectors a session starting now runs, in order."""
    return tuple(_registered)


def register(detector: Detector) -> None:
    """Run ``detector`` in every session that starts from now on, after those already registered."""
    if any(d.name == detector.name for d in _registered):
        raise ValueError(f"a detector named {detector.name!r} is already registered")
    _registered.append(detector)


def unregister(name: str) -> None:
    """Stop running the detector called ``name`` in sessions that start from now on."""
    for i, detector in enumerate(_registered):
        if detector.name == name:
            del _registered[i]
            return
    raise KeyError(name)
