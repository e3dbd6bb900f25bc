"""The simulated model's "knowledge" of units: a small, fixed table of conversion factors.

A real model knows that a mile is 1609.344 metres; asked "Convert 5 km to miles", it
writes `5 * 1000 / 1609.344` for its calculator. The simulated model knows exactly the
units below and nothing else, and turns a conversion it recognises into that calculator
expression; the `calculator` tool does the arithmetic. Asked about a unit it does not
know (a fathom, a cubit), it says so instead of guessing, so such a question fails an
evaluation visibly.

Every unit is `(x + offset) * scale` base units (offset is zero except for temperatures):

- length, in metres: mm 0.001, cm 0.01, m 1, km 1000, inch 0.0254, foot 0.3048,
  yard 0.9144, mile 1609.344;
- mass, in kilograms: g 0.001, kg 1, tonne 1000, ounce 0.028349523125,
  pound 0.45359237;
- volume, in litres: ml 0.001, litre 1, US gallon 3.785411784;
- time, in seconds: second 1, minute 60, hour 3600, day 86400, week 604800;
- speed, in m/s: m/s 1, km/h 1000 / 3600, mph 1609.344 / 3600;
- temperature, in kelvin: kelvin 1, celsius 1 (offset 273.15), fahrenheit 5 / 9
  (offset 459.67).

A conversion is recognised in two forms, "<number> <unit> to|in|into <unit>" and "how many
<unit> are in <number> <unit>", when both units are known. With a unit it does not know,
only when the conversion is plainly asked for (the text says "convert", or asks "how many
<unknown> are in" a quantity of a unit it knows); only then is the answer "I don't know".
Any other text with a number and a word ("send 5 messages to Kafka", "how many jars are
in 17 crates") is not a conversion at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Unit:
    name: str
    dimension: str
    scale: str
    """Base units per unit, as a calculator expression (`1609.344`, `1000 / 3600`)."""
    offset: str = "0"
    """Added before scaling (temperatures only)."""


def _units() -> dict[str, Unit]:
    table: list[tuple[Unit, tuple[str, ...]]] = [
        (Unit("mm", "length", "0.001"), ("mm", "millimeter", "millimeters", "millimetre",
                                         "millimetres")),
        (Unit("cm", "length", "0.01"), ("cm", "centimeter", "centimeters", "centimetre",
                                        "centimetres")),
        (Unit("m", "length", "1"), ("m", "meter", "meters", "metre", "metres")),
        (Unit("km", "length", "1000"), ("km", "kilometer", "kilometers", "kilometre",
                                        "kilometres")),
        (Unit("inch", "length", "0.0254"), ("inch", "inches")),
        (Unit("foot", "length", "0.3048"), ("ft", "foot", "feet")),
        (Unit("yard", "length", "0.9144"), ("yd", "yard", "yards")),
        (Unit("mile", "length", "1609.344"), ("mi", "mile", "miles")),
        (Unit("g", "mass", "0.001"), ("g", "gram", "grams")),
        (Unit("kg", "mass", "1"), ("kg", "kilogram", "kilograms", "kilo", "kilos")),
        (Unit("tonne", "mass", "1000"), ("tonne", "tonnes")),
        (Unit("ounce", "mass", "0.028349523125"), ("oz", "ounce", "ounces")),
        (Unit("pound", "mass", "0.45359237"), ("lb", "lbs", "pound", "pounds")),
        (Unit("ml", "volume", "0.001"), ("ml", "milliliter", "milliliters", "millilitre",
                                         "millilitres")),
        (Unit("litre", "volume", "1"), ("l", "liter", "liters", "litre", "litres")),
        (Unit("US gallon", "volume", "3.785411784"), ("gal", "gallon", "gallons")),
        (Unit("second", "time", "1"), ("s", "sec", "second", "seconds")),
        (Unit("minute", "time", "60"), ("min", "minute", "minutes")),
        (Unit("hour", "time", "3600"), ("h", "hr", "hour", "hours")),
        (Unit("day", "time", "86400"), ("day", "days")),
        (Unit("week", "time", "604800"), ("week", "weeks")),
        (Unit("m/s", "speed", "1"), ("m/s",)),
        (Unit("km/h", "speed", "1000 / 3600"), ("km/h", "kph")),
        (Unit("mph", "speed", "1609.344 / 3600"), ("mph",)),
        (Unit("kelvin", "temperature", "1"), ("k", "kelvin", "kelvins")),
        (Unit("celsius", "temperature", "1", "273.15"), ("c", "°c", "celsius")),
        (Unit("fahrenheit", "temperature", "5 / 9", "459.67"), ("f", "°f", "fahrenheit")),
    ]
    return {alias: unit for unit, aliases in table for alias in aliases}


UNITS = _units()
"""Every spelling the simulated model knows, lower-case, to its unit."""

_NUMBER = r"(?<![\w.])(?P<value>-?\d+(?:\.\d+)?)"
_UNIT = r"(?:deg(?:rees?)?\s+)?(?P<{name}>°?[a-z][a-z/]*)"
_CONVERT_TO = re.compile(
    _NUMBER + r"\s*" + _UNIT.format(name="source") + r"\s+(?:to|in|into)\s+"
    + _UNIT.format(name="target") + r"(?![\w/])",
    re.IGNORECASE,
)
_HOW_MANY = re.compile(
    r"\bhow\s+many\s+" + _UNIT.format(name="target")
    + r"\s+(?:are\s+|is\s+)?(?:there\s+)?in\s+(?:a\s+|an\s+)?" + _NUMBER + r"\s*"
    + _UNIT.format(name="source") + r"(?![\w/])",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Conversion:
    """A conversion asked for: the value and units as written, and the units known."""

    value: str
    source_text: str
    target_text: str
    source: Unit | None
    target: Unit | None

    @property
    def unknown(self) -> str | None:
        """The first unit as written that the table lacks (None: both known)."""
        if self.source is None:
            return self.source_text
        if self.target is None:
            return self.target_text
        return None

    def expression(self) -> str | None:
        """The calculator expression for a conversion between two units of one dimension."""
        source, target = self.source, self.target
        if source is None or target is None or source.dimension != target.dimension:
            return None
        written = self.value if source.offset == "0" else f"({self.value} + {source.offset})"
        if source.scale != "1":
            written = f"{written} * {_grouped(source.scale)}"
        if target.scale != "1":
            written = f"{written} / {_grouped(target.scale)}"
        if target.offset != "0":
            written = f"{written} - {target.offset}"
        return written


def find_conversion(text: str) -> Conversion | None:
    """The unit conversion `text` asks for, or None when it asks for none."""
    matches = [m for m in (_CONVERT_TO.search(text), _HOW_MANY.search(text)) if m]
    if not matches:
        return None
    match = min(matches, key=lambda m: m.start())
    source_text, target_text = match.group("source"), match.group("target")
    conversion = Conversion(
        value=match.group("value"), source_text=source_text, target_text=target_text,
        source=UNITS.get(source_text.lower()), target=UNITS.get(target_text.lower()),
    )
    if conversion.unknown is not None and not _asks_to_convert(text, match, conversion):
        return None
    return conversion


def _asks_to_convert(text: str, match: re.Match[str], conversion: Conversion) -> bool:
    """Whether a conversion with an unknown unit is still plainly asked for: the text says
    "convert", or asks "how many <unit> are in" a quantity of a unit it knows."""
    if re.search(r"\bconvert", text, re.IGNORECASE):
        return True
    return match.re is _HOW_MANY and (conversion.source or conversion.target) is not None


def _grouped(scale: str) -> str:
    return f"({scale})" if " " in scale else scale
