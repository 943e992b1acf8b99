"""Experiment configuration: every parameter, its unit, default, source and range.

This module owns the experiment file format.  A config is data, validated in
full before anything runs: an unknown key, a wrong type or a value outside its
range raises :class:`ConfigError` naming the key path, the value and what is
allowed, and nothing is simulated or written.

Every parameter is declared once, below, with :func:`param`: its unit, its
default and the source of that default, and the range it is validated against.
``docs/`` and ``povsim params`` are generated from these declarations, so they
cannot drift from the code.

Months are written ``"YYYY-MM"``.  Money is in yuan at current prices.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from pathlib import Path
from typing import Any, Iterator, NamedTuple

from pydantic import BaseModel, Field, ValidationError, create_model, field_validator, model_validator

from .schema import (  # noqa: F401  (re-exported: the building blocks of every section)
    SRC_ASSUMPTION,
    SRC_FITTED,
    ConfigError,
    Month,
    Section,
    check_month,
    format_month,
    param,
    parse_month,
)

__all__ = [
    "Config",
    "ConfigError",
    "load_config",
    "parse_month",
    "format_month",
    "parameter_table",
    "walk",
    "schema_key",
    "apply_overrides",
    "flatten",
    "merge",
    "patch",
    "validate",
    "EXPERIMENT_KEYS",
    "Section",
    "param",
]

#: Top-level keys of an experiment file that are not config keys: they describe the
#: experiment (its scenarios, replicates and sweep) and are read by
#: :mod:`povsim.experiments`.  :func:`load_config` reads a file's baseline and leaves
#: them out; as overrides or in a config they are unknown keys.
EXPERIMENT_KEYS = ("scenarios", "replicates", "sweep")

#: overrides that reduce the rules to a one-time registration by threshold and nothing after:
#: no look-back, no reviews, no discovery channels (the model of povsim 0.1, and the one the
#: plain NumPy step in benchmarks/numpy_step.py implements)
def _one_time_threshold() -> dict[str, Any]:
    from .components import COMPONENTS

    rules = [c for c in COMPONENTS if c.months and c.name != "registration"]  # every rule with a calendar
    return {"policy.registration.method": "threshold", **{f"{c.path}.enabled": False for c in rules}}


ONE_TIME_THRESHOLD = _one_time_threshold()


# --------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------


class SimulationConfig(Section):
    """The simulated period."""

    start: Month = param("2013-01", "month", "NBS headcount series starts in 2012-2013", "first reported month")
    end: Month = param("2020-12", "month", "end of the 2014-2020 campaign", "last reported month")
    burn_in_years: int = param(
        5,
        "years",
        "long enough for the AR(1) component (rho=0.98/month) and shock states to reach steady state",
        "years simulated before `start`'s year (from January), without policy, and not reported",
        ge=1,
        le=50,
    )
    threads: int = param(0, "threads", "0 means all cores Numba sees", "threads for the compiled engine", ge=0, le=1024)

    _months = field_validator("start", "end")(check_month)

    @model_validator(mode="after")
    def _ordered(self) -> "SimulationConfig":
        if parse_month(self.end) < parse_month(self.start):
            raise ValueError(f"end ({self.end}) is before start ({self.start}); allowed: end >= start")
        return self


class PopulationConfig(Section):
    """Households and their fixed characteristics."""

    households: int = param(
        1_000_000,
        "households",
        "a sample; rural China had about 200 million households",
        "number of households simulated",
        ge=1,
        le=2**32 - 1,
    )
    households_per_village: int = param(
        300,
        "households",
        "about 200 million rural households in about 600,000 administrative villages",
        "households in each village (the last village takes the rest)",
        ge=1,
        le=100_000,
    )
    villages_per_county: int = param(
        2,
        "villages",
        "a sample design: two villages from each county, so that a sample of any size spreads over many counties "
        "and every province and carries their income differences (rural China has about 250 villages per county: "
        "about 2,800 county-level units for ~690,000 villages; a full-size county would put a small sample in one "
        "county and the calibration would fit that county's draw)",
        "villages in each county",
        ge=1,
        le=100_000,
    )
    provinces: int = param(
        31,
        "provinces",
        "31 provincial-level units of mainland China",
        "provinces the counties are spread over, evenly and in order; a fixed number, so the province "
        "effects are the same draws at every population size",
        ge=1,
        le=100_000,
    )
    size_probabilities: list[float] = param(
        lambda: [0.10, 0.20, 0.24, 0.22, 0.13, 0.07, 0.03, 0.01],
        "probability",
        "approximates the 2010 census rural household size distribution (mean about 3.3 persons)",
        "probability that a household has 1, 2, ..., 8 members",
        min_length=1,
        max_length=8,
    )
    poor_area_share: float = param(
        0.292,
        "share of households",
        SRC_ASSUMPTION + ": the 832 poor counties (povsim/data/targets/china_rural_poverty.toml, poor_area_incomes) "
        "were 29.2% of China's 2,853 county-level units (end of 2013); their share of rural people is not among the "
        "targets and is taken equal to their share of counties. The poor-area income growth and transfer share "
        "depend on it",
        "the poor areas, for the poor-area income statistics: the counties ranked poorest by income level, "
        "holding this share of the households",
        ge=0.0,
        le=1.0,
    )
    worker_probability: float = param(
        0.55,
        "probability",
        "rural labour force about 55% of rural residents (NBS, 2014)",
        "probability that a member is of working capacity",
        ge=0.0,
        le=1.0,
    )

    @field_validator("size_probabilities")
    @classmethod
    def _is_distribution(cls, value: list[float]) -> list[float]:
        bad = [(n, p) for n, p in enumerate(value) if not (math.isfinite(p) and 0.0 <= p <= 1.0)]
        if bad:
            n, p = bad[0]
            raise ValueError(f"element {n} is {p!r}; allowed: each probability a number from 0 to 1")
        if not abs(sum(value) - 1.0) <= 1e-6:
            raise ValueError(f"probabilities must sum to 1 (within 1e-6), they sum to {sum(value):.6g}")
        return value


# --------------------------------------------------------------------------------------
# The whole config: the sections above, and each component's (povsim.components)
# --------------------------------------------------------------------------------------

#: what the sections that only hold other sections are
_GROUP_DOCS = {
    "policy": "The government's rules for finding and supporting the poor.",
    "policy.channels": "The continuous channels that find newly poor households.",
}


class _ConfigBase(Section):
    """A whole experiment: what is simulated, for how long, under which rules."""

    name: str = param("povsim", "text", "-", "experiment name; the default output folder is results/<name>/", min_length=1)
    description: str = param("", "text", "-", "free text")
    seed: int = param(20140401, "integer", "-", "seed of every random stream", ge=0, lt=2**64)
    simulation: SimulationConfig = Field(default_factory=SimulationConfig)
    population: PopulationConfig = Field(default_factory=PopulationConfig)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        return check_name(value)

    @model_validator(mode="after")
    def _consistent(self) -> "Config":
        from .components import COMPONENTS

        start = parse_month(self.simulation.start)
        end = parse_month(self.simulation.end)
        missing = [y for y in range(start // 12, end // 12 + 1) if y not in self.poverty.lines]
        if missing:
            raise ValueError(
                f"poverty.lines has no line for year(s) {missing}; allowed: a line for every year "
                f"from {start // 12} to {end // 12}"
            )
        bad = []
        for component in COMPONENTS:
            if component.check is not None:
                bad.extend(component.check(self))
            if not component.months:
                continue
            section = component.section_of(self)
            if not getattr(section, "enabled", True):
                continue
            for name in component.months:
                value = getattr(section, name)
                if not start <= parse_month(value) <= end:
                    bad.append(
                        f"{component.path}.{name} = {value!r} is outside the simulated period; "
                        f"allowed: {self.simulation.start} to {self.simulation.end} (or disable the rule)"
                    )
            for first, name in component.windows:  # a window's last month is not before its first
                if parse_month(getattr(section, name)) < parse_month(getattr(section, first)):
                    bad.append(
                        f"{component.path}.{name} = {getattr(section, name)!r} is before "
                        f"{component.path}.{first} = {getattr(section, first)!r}"
                    )
        if bad:
            raise ValueError("\n  ".join(bad))
        return self

    # -- convenience ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The resolved config, every default filled in, as JSON-ready data."""
        return self.model_dump(mode="json")

    def with_overrides(self, overrides: dict[str, Any]) -> "Config":
        """A new validated config with dotted-path overrides applied."""
        return validate(apply_overrides(self.to_dict(), flatten(overrides)))


def _assemble() -> type[_ConfigBase]:
    """The :class:`Config` class: the base's sections, and every component's section at its path.

    A section that only holds other sections (``policy``, ``policy.channels``) is made
    here, in the order its first member appears in the registry.
    """
    from .components import SECTIONS

    tree: dict[str, Any] = {}
    for path, section in SECTIONS.items():
        node = tree
        *groups, leaf = path.split(".")
        for g in groups:
            node = node.setdefault(g, {})
        node[leaf] = section

    def build(node: dict[str, Any], prefix: str) -> dict[str, Any]:
        fields = {}
        for key, value in node.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict):
                name = "".join(part.title() for part in path.split(".")[-1:]) + "Config"
                value = create_model(
                    name, __base__=Section, __module__=__name__, __doc__=_GROUP_DOCS.get(path, f"The {key} sections."),
                    **build(value, path + "."),
                )
                globals()[name] = value  # importable by name: configs are pickled to Dask workers
            fields[key] = (value, Field(default_factory=value))
        return fields

    return create_model("Config", __base__=_ConfigBase, __module__=__name__, __doc__=_ConfigBase.__doc__,
                        **build(tree, ""))


#: A whole experiment: what is simulated, for how long, under which rules (every section, validated).
Config = _assemble()


# --------------------------------------------------------------------------------------
# Loading, overrides and error messages
# --------------------------------------------------------------------------------------


class SchemaKey(NamedTuple):
    """One key of the config schema: its dotted path, its pydantic field, and its section class if it is one."""

    path: str
    field: Any
    section: type[BaseModel] | None


def _as_section(annotation) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def walk(model: type[BaseModel] | None = None, prefix: str = "") -> Iterator[SchemaKey]:
    """Every key of the config schema, depth first in declaration order: sections, then their keys.

    The one walker of the schema: overrides, file merging, patches, error messages, the
    parameter table and the generated docs all go through it.
    """
    model = Config if model is None else model
    for name, field in model.model_fields.items():
        section = _as_section(field.annotation)
        key = SchemaKey(f"{prefix}{name}", field, section)
        yield key
        if section is not None:
            yield from walk(section, key.path + ".")


_KEYS: dict[str, SchemaKey] | None = None


def schema_key(path: str) -> SchemaKey | None:
    """The schema's key at a dotted ``path`` (``None`` if there is none); ``""`` is the whole config."""
    global _KEYS
    if _KEYS is None:
        _KEYS = {key.path: key for key in walk()}
    if path == "":
        return SchemaKey("", None, Config)
    return _KEYS.get(path)


def _section_at(path: tuple) -> type[BaseModel] | None:
    """The section class at ``path`` (a tuple of names), or ``None``."""
    key = schema_key(".".join(str(p) for p in path))
    return key.section if key is not None else None


def _format_errors(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(str(p) for p in e["loc"])
        key = ".".join(loc) or "<config>"
        value = e.get("input")
        if e["type"] == "extra_forbidden":
            parent = _section_at(loc[:-1])
            allowed = sorted(parent.model_fields) if parent else []
            lines.append(f"{key}: unknown key (value {value!r}); allowed keys here: {', '.join(allowed)}")
            continue
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if e["type"] == "value_error" and not loc:
            lines.append(msg)
        else:
            lines.append(f"{key} = {value!r}: {msg}{percent_hint(key, value)}")
    return "invalid config:\n  " + "\n  ".join(lines)


def _is_fraction(unit: str) -> bool:
    """Whether a parameter of this unit is a fraction from 0 to 1: a probability, a share or a rate per month."""
    return "probability" in unit or "share" in unit or unit.startswith("per ")


def percent_hint(path: str, value: Any) -> str:
    """A hint for a refused probability or share that looks written in percent (``30`` for 0.3), else ``""``.

    ``path`` is the key (or a key below it: an element of a list); ``value`` a number, or a list
    or table of numbers, of which the first above 1 and at most 100 is taken for a percentage.
    """
    parts = path.split(".")
    while parts and (schema_key(".".join(parts)) is None):
        parts.pop()
    key = schema_key(".".join(parts)) if parts else None
    if key is None or key.section is not None:
        return ""
    unit = str((key.field.json_schema_extra or {}).get("unit", ""))
    if not _is_fraction(unit):
        return ""
    values = value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
    for v in values:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and 1 < v <= 100:
            return f" (a {unit.split(' of ')[0] if 'share' in unit else 'probability'} is a fraction, not percent: " \
                   f"write {v / 100:g} for {v:g}%)"
    return ""


def validate(data: dict[str, Any]) -> Config:
    """A validated :class:`Config` from nested data; a :class:`ConfigError` names every bad key."""
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err)) from None


def _section_tables_spread(overrides: dict[str, Any]) -> dict[str, Any]:
    """Overrides with a table given for a section spread over its keys (``population={households=5}`` sets
    ``population.households`` and leaves the section's other keys as they are)."""
    out: dict[str, Any] = {}
    for path, value in overrides.items():
        key = schema_key(str(path))
        if isinstance(value, dict) and key is not None and key.section is not None:
            out.update(_section_tables_spread({f"{path}.{k}": v for k, v in value.items()}))
        else:
            out[path] = value
    return out


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Nested config data with ``{"a.b.c": value}`` overrides applied (a copy; ``data`` is not changed).

    A path that names no key of the schema is refused with a :class:`ConfigError` naming
    it and the keys allowed there; below a free-form mapping (``poverty.lines``) any key
    is a value.
    """
    data = json.loads(json.dumps(data))  # deep copy; the caller's dict is never changed
    for path, value in _section_tables_spread(overrides or {}).items():
        refuse_dates(value, where=f"invalid override {path!r}: ", prefix=f"{path}.")
        parts = str(path).split(".")
        node = data
        free = False  # below a key that is not a section: a free-form mapping
        for depth, part in enumerate(parts):
            here = ".".join(parts[: depth + 1])
            if not free:
                parent = schema_key(".".join(parts[:depth]))
                key = schema_key(here)
                if key is None:
                    allowed = ", ".join(sorted(parent.section.model_fields)) if parent and parent.section else ""
                    raise ConfigError(
                        f"invalid override {path!r} = {value!r}: unknown key {here!r}; allowed keys here: {allowed}"
                    )
                free = key.section is None
            if depth == len(parts) - 1:
                node[part] = value
            else:
                child = node.get(part)
                if child is None:
                    child = node[part] = {}
                if not isinstance(child, dict):
                    raise ConfigError(f"invalid override {path!r}: {here!r} is not a section")
                node = child
    return data


def flatten(patch: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables as dotted overrides: ``{"policy": {"lookback": {"enabled": False}}}`` -> ``{"policy.lookback.enabled": False}``.

    Tables are followed as far as the schema has sections; a table at a key that is not a
    section (``poverty.lines``) is one value.  Unknown keys are kept, for
    :func:`apply_overrides` to refuse.
    """
    flat: dict[str, Any] = {}
    for name, value in patch.items():
        path = f"{prefix}{name}"
        key = schema_key(path)
        if isinstance(value, dict) and value and (key is None or key.section is not None):
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def patch(config: Config, overrides: dict[str, Any]) -> Config:
    """A new validated config: ``config`` with dotted-path (or nested) overrides; ``config`` is not changed."""
    return validate(apply_overrides(config.to_dict(), flatten(overrides)))


def read_toml(path: str | Path, kind: str) -> dict[str, Any]:
    """A TOML file's contents; any fault reading it is a :class:`ConfigError` naming ``kind`` and the file.

    A missing file, a folder, a file that cannot be read, text that is not UTF-8,
    malformed TOML, and a TOML date or time anywhere (povsim writes months as
    ``"YYYY-MM"`` strings) each give one line.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{kind} {str(path)!r} is a folder; allowed: a TOML file")
    if not path.is_file():
        raise ConfigError(f"{kind} not found: {str(path)!r}")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{kind} {str(path)!r} cannot be read: {err.strerror or err}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{kind} {str(path)!r} is not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}); "
            "allowed: a file saved as UTF-8"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"malformed TOML in {str(path)!r}: {err}") from None
    refuse_dates(data, where=f"{kind} {str(path)!r}: ")
    return data


#: the longest name allowed (a name becomes a folder name)
MAX_NAME = 100


def check_name(value: str, key: str = "name") -> str:
    """``value`` if it is a safe folder name (letters, digits, ``_ . -``, not starting with ``.`` or ``-``, at
    most :data:`MAX_NAME` characters), else ``ValueError`` naming ``key``."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", value) or ".." in value:
        raise ValueError(f"{key} = {value!r}: a name is letters, digits, '_', '.', '-' (used as a folder name), "
                         "starting with a letter or digit")
    if len(value) > MAX_NAME:
        raise ValueError(f"{key} is {len(value)} characters long; allowed: at most {MAX_NAME} (used as a folder name)")
    return value


def refuse_dates(data: Any, where: str = "", prefix: str = "") -> None:
    """Raise :class:`ConfigError` for a TOML date, time or date-time anywhere in ``data``: months are strings."""
    import datetime

    if isinstance(data, dict):
        for k, v in data.items():
            refuse_dates(v, where, f"{prefix}{k}.")
    elif isinstance(data, list):
        for n, v in enumerate(data):
            refuse_dates(v, where, f"{prefix}{n}.")
    elif isinstance(data, (datetime.date, datetime.time)):
        key = prefix[:-1]
        raise ConfigError(
            f"{where}{key} = {data.isoformat()} is a TOML date or time; allowed: a month as a string in quotes, "
            f'e.g. {key.rsplit(".", 1)[-1]} = "{data.strftime("%Y-%m") if isinstance(data, datetime.date) else "2017-10"}"'
        )


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read and validate an experiment file (TOML), with optional dotted-path overrides.

    ``path=None`` gives the defaults.  Raises :class:`ConfigError` for a missing
    file, malformed TOML, an unknown key, a wrong type or a value out of range.
    The experiment-level keys (:data:`EXPERIMENT_KEYS`: ``[scenarios.*]``,
    ``replicates``, ``[sweep]``) are read by :mod:`povsim.experiments`, not here:
    this returns the file's baseline config.
    """
    if path is None:
        return validate(apply_overrides(Config().to_dict(), overrides))
    path = Path(path)
    data = read_toml(path, "experiment file")
    for key in EXPERIMENT_KEYS:
        data.pop(key, None)
    data.setdefault("name", path.stem)
    return validate(apply_overrides(merge(data), overrides))


def merge(data: dict[str, Any], defaults: dict[str, Any] | None = None, prefix: str = "") -> dict[str, Any]:
    """``data`` (a file's nested tables) laid over ``defaults`` (the default config), section by section.

    A value that is not a section replaces; unknown keys are kept so that validation
    reports them.
    """
    out = dict(Config().to_dict() if defaults is None else defaults)
    for name, value in data.items():
        key = schema_key(f"{prefix}{name}")
        if key is not None and key.section is not None and isinstance(value, dict):
            out[name] = merge(value, out.get(name, {}), f"{prefix}{name}.")
        else:
            out[name] = value
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """``"key.path=value"`` from the command line; the value is read as TOML, else as a string."""
    if "=" not in text:
        raise ConfigError(f"invalid --set {text!r}: write key.path=value, e.g. population.households=10000")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value


def parameter_table() -> list[dict[str, Any]]:
    """Every parameter: key path, unit, default, allowed range, source, description, and whether its default
    was fitted (its source starts with :data:`povsim.schema.SRC_FITTED`)."""
    rows: list[dict[str, Any]] = []
    for key in walk():
        if key.section is not None:
            continue
        field = key.field
        extra = field.json_schema_extra or {}
        bounds = []
        for m in field.metadata:
            for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
                if getattr(m, attr, None) is not None:
                    bounds.append(f"{sym} {getattr(m, attr)}")
        rows.append(
            {
                "key": key.path,
                "unit": extra.get("unit", ""),
                "default": field.get_default(call_default_factory=True),
                "allowed": extra.get("allowed") or ", ".join(bounds) or "-",
                "source": extra.get("source", ""),
                "description": field.description or "",
                "fitted": str(extra.get("source", "")).startswith(SRC_FITTED),
            }
        )
    return rows
