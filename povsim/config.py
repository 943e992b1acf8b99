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
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "Config",
    "ConfigError",
    "load_config",
    "parse_month",
    "format_month",
    "parameter_table",
    "EXPERIMENT_KEYS",
]

#: Top-level keys of an experiment file that are not config keys: they describe the
#: experiment (its scenarios, replicates and sweep) and are read by
#: :mod:`povsim.experiments`.  :func:`load_config` reads a file's baseline and leaves
#: them out; as overrides or in a config they are unknown keys.
EXPERIMENT_KEYS = ("scenarios", "replicates", "sweep")

SRC_NBS_LINE = "NBS rural poverty line (../shared/targets/china_rural_poverty.toml, national_line)"
SRC_ASSUMPTION = "modelling assumption, to be calibrated (issue 5)"
SRC_REG_2014 = "2014 card registration, April-October 2014 (SCIO press conference 2021-04-06)"


class ConfigError(ValueError):
    """A config that cannot be run: the message names each bad key, its value and what is allowed."""


def param(default: Any, unit: str, source: str, description: str, **bounds: Any) -> Any:
    """Declare one parameter: a pydantic Field carrying its unit and source.

    ``default`` may be a zero-argument function for mutable defaults.  ``bounds``
    are pydantic's constraints (``ge``, ``gt``, ``le``, ``lt``, ``min_length``,
    ``max_length``).
    """
    extra = {"json_schema_extra": {"unit": unit, "source": source}, "description": description}
    if callable(default):
        return Field(default_factory=default, **extra, **bounds)
    if isinstance(default, (bool, int, float)):
        # strict: `true` is not a number and "5000" is not an integer (an int is still a valid float)
        return Field(default, strict=True, **extra, **bounds)
    return Field(default, **extra, **bounds)


_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")


#: overrides that reduce the rules to a one-time registration by threshold and nothing after:
#: no look-back, no reviews, no discovery channels (the model of povsim 0.1, and the one the
#: plain NumPy step in benchmarks/numpy_step.py implements)
ONE_TIME_THRESHOLD = {
    "policy.registration.method": "threshold",
    "policy.lookback.enabled": False,
    "policy.review.enabled": False,
    "policy.channels.self.enabled": False,
    "policy.channels.cadre.enabled": False,
    "policy.channels.data.enabled": False,
    "policy.channels.hotline.enabled": False,
}


def parse_month(text: str) -> int:
    """``"YYYY-MM"`` as a month index ``year * 12 + (month - 1)``."""
    m = _MONTH_RE.match(str(text))
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise ValueError(f"a month is written 'YYYY-MM' (e.g. '2014-10'), got {text!r}")
    return int(m.group(1)) * 12 + int(m.group(2)) - 1


def format_month(index: int) -> str:
    """A month index as ``"YYYY-MM"``."""
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


Month = str


def _check_month(value: str) -> str:
    parse_month(value)
    return value


# --------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------


class SimulationConfig(_Section):
    """The simulated period."""

    start: Month = param("2013-01", "month", "NBS headcount series starts in 2012-2013", "first reported month")
    end: Month = param("2020-12", "month", "end of the 2014-2020 campaign", "last reported month")
    burn_in_years: int = param(
        5,
        "years",
        "long enough for the AR(1) component (rho=0.98/month) and shock states to reach steady state",
        "years simulated before `start`, without policy, and not reported",
        ge=1,
        le=50,
    )
    threads: int = param(0, "threads", "0 means all cores Numba sees", "threads for the compiled engine", ge=0, le=1024)

    _months = field_validator("start", "end")(_check_month)

    @model_validator(mode="after")
    def _ordered(self) -> "SimulationConfig":
        if parse_month(self.end) < parse_month(self.start):
            raise ValueError(f"end ({self.end}) is before start ({self.start}); allowed: end >= start")
        return self


class PopulationConfig(_Section):
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
        250, "villages", "about 2,800 county-level units for ~690,000 villages", "villages in each county", ge=1, le=100_000
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
        if any(p < 0 or p > 1 for p in value):
            raise ValueError(f"each probability must be in [0, 1], got {value}")
        if abs(sum(value) - 1.0) > 1e-6:
            raise ValueError(f"probabilities must sum to 1 (within 1e-6), they sum to {sum(value):.6g}")
        return value


class IncomeConfig(_Section):
    """Per-capita income: fixed level, trend, persistent AR(1) and transitory components."""

    median: float = param(
        7500.0,
        "yuan per person per year",
        "NBS rural per-capita net income 2013: mean 8,896 yuan; with the SDs below, a median near 7,500 "
        "gives a 2013 headcount near the NBS 8.5%",
        "median fixed income level in the base year",
        gt=0.0,
        le=1e7,
    )
    base_year: int = param(2013, "year", "first reported year", "year in which the income level is `median`", ge=1900, le=2200)
    trend: float = param(
        0.09,
        "log points per year",
        "rural per-capita disposable income grew about 9% a year (nominal) 2013-2019 (NBS)",
        "growth of every household's income level",
        ge=-0.5,
        le=0.5,
    )
    province_sd: float = param(0.20, "log points", SRC_ASSUMPTION, "SD of the province effect on log income", ge=0.0, le=5.0)
    county_sd: float = param(0.25, "log points", SRC_ASSUMPTION, "SD of the county effect on log income", ge=0.0, le=5.0)
    household_sd: float = param(
        0.45, "log points", SRC_ASSUMPTION, "SD of the household's fixed deviation from its county mean", ge=0.0, le=5.0
    )
    labour_elasticity: float = param(
        0.30,
        "elasticity",
        SRC_ASSUMPTION,
        "effect of log(workers per member / expected share) on the income level",
        ge=0.0,
        le=3.0,
    )
    persistent_rho: float = param(
        0.98,
        "per month",
        "annual autocorrelation 0.78 of the persistent component, in the range of rural panel estimates",
        "AR(1) coefficient of the persistent log-income component",
        ge=0.0,
        lt=1.0,
    )
    persistent_sd: float = param(
        0.35,
        "log points",
        "Jalan and Ravallion (1998): about half of squared poverty gap is transient",
        "stationary SD of the persistent component",
        ge=0.0,
        le=5.0,
    )
    transitory_sd: float = param(
        0.30, "log points", SRC_ASSUMPTION, "SD of the monthly transitory log-income shock", ge=0.0, le=5.0
    )


class IllnessConfig(_Section):
    """Illness: onset, duration, medical bills, insurance and lost labour."""

    onset_probability: float = param(
        0.012,
        "per household per month",
        "about 18% of rural households have catastrophic health spending in a year (CFPS 2012, 2018)",
        "probability that a healthy household falls ill",
        ge=0.0,
        le=1.0,
    )
    chronic_share: float = param(
        0.25, "probability", SRC_ASSUMPTION, "share of onsets that are chronic", ge=0.0, le=1.0
    )
    acute_duration: float = param(
        2.0, "months", SRC_ASSUMPTION, "mean duration of an acute illness (geometric)", ge=1.0, le=600.0
    )
    chronic_recovery_probability: float = param(
        0.01, "per month", SRC_ASSUMPTION, "monthly probability that a chronic illness ends", ge=0.0, le=1.0
    )
    bill_median: float = param(
        500.0,
        "yuan per month",
        SRC_ASSUMPTION,
        "median medical bill of an ill household in a month (log-normal)",
        ge=0.0,
        le=1e7,
    )
    bill_sd: float = param(1.0, "log points", SRC_ASSUMPTION, "SD of the log medical bill", ge=0.0, le=5.0)
    reimbursement: float = param(
        0.50,
        "share of the bill",
        "effective reimbursement of the rural cooperative medical scheme about 50% (2013)",
        "share of the bill paid by insurance",
        ge=0.0,
        le=1.0,
    )
    income_loss: float = param(
        0.30, "share of income", SRC_ASSUMPTION, "share of household income lost while ill", ge=0.0, le=1.0
    )


class JobLossConfig(_Section):
    """Job loss of a household's wage earner, and re-employment."""

    probability: float = param(
        0.004,
        "per household with workers per month",
        "about 5% of working households lose a wage job in a normal year (15% in the 2008-09 crisis)",
        "probability of losing a job",
        ge=0.0,
        le=1.0,
    )
    duration: float = param(4.0, "months", SRC_ASSUMPTION, "mean months until re-employment (geometric)", ge=1.0, le=600.0)
    income_loss: float = param(
        0.40,
        "share of income",
        "wage income about 40% of rural per-capita income (NBS 2014)",
        "share of household income lost while unemployed",
        ge=0.0,
        le=1.0,
    )


def _default_lines() -> dict[int, float]:
    return {2013: 2736.0, 2014: 2800.0, 2015: 2855.0, 2016: 2952.0, 2017: 2952.0, 2018: 2995.0, 2019: 3218.0, 2020: 4000.0}


class PovertyConfig(_Section):
    """The poverty line: true status is 12-month per-capita net income below the line of the year."""

    lines: dict[int, float] = param(
        _default_lines,
        "yuan per person per year",
        SRC_NBS_LINE + "; 2017 held at 2016's figure (not in the source); 2018-2020 approximate",
        "poverty line by calendar year; every reported year needs one",
    )

    @field_validator("lines")
    @classmethod
    def _positive(cls, value: dict[int, float]) -> dict[int, float]:
        bad = {y: v for y, v in value.items() if not (0 < v <= 1e7)}
        if bad:
            raise ValueError(f"every line must be in (0, 1e7] yuan, got {bad}")
        return dict(sorted(value.items()))


class RegistrationConfig(_Section):
    """The one-time registration of the poor (2014)."""

    enabled: bool = param(True, "flag", SRC_REG_2014, "run the one-time registration")
    month: Month = param("2014-10", "month", SRC_REG_2014, "month in which households are registered")
    method: Literal["quota", "threshold"] = param(
        "quota",
        "choice",
        "2014 registration ran under quota-based 'scale control' with community review (SCIO 2021)",
        "'quota': county and village quotas, lowest-ranked by the community registered; "
        "'threshold': registered if the assessed income is below the line",
    )
    assessment_sd: float = param(
        0.35,
        "log points",
        "proxy means tests and community rankings mis-rank widely: Alatas et al. (2012) find 30% total mistargeting",
        "SD of the log-normal error of the assessment (threshold) or of the community's perceived income (quota)",
        ge=0.0,
        le=5.0,
    )
    quota_scale: float = param(
        1.28,
        "multiple of estimated poor households",
        "registered 89.62 million people = 1.28 x the survey's 70.17 million poor "
        "(../shared/targets/china_rural_poverty.toml, registration_2014)",
        "national quota as a multiple of the survey estimate of poor households (quota method)",
        ge=0.0,
        le=100.0,
    )
    county_estimate_sd: float = param(
        0.20,
        "log points",
        SRC_ASSUMPTION + "; county poverty rates were estimated from a survey of about 160,000 households",
        "SD of the log error of each county's estimated number of poor households (quota method)",
        ge=0.0,
        le=5.0,
    )
    village_estimate_sd: float = param(
        0.30,
        "log points",
        SRC_ASSUMPTION,
        "SD of the log error of each village's estimated number of poor households (quota method)",
        ge=0.0,
        le=5.0,
    )

    _month = field_validator("month")(_check_month)


class LookbackConfig(_Section):
    """The one-time re-check of the whole register (the 2015-16 'look back')."""

    enabled: bool = param(True, "flag", "2015-16 look-back (SCIO 2021)", "run the look-back")
    start: Month = param("2015-08", "month", "look-back ran August 2015 to June 2016", "first month of the look-back")
    end: Month = param("2016-06", "month", "look-back ran August 2015 to June 2016", "last month of the look-back")
    assessment_sd: float = param(
        0.20,
        "log points",
        SRC_ASSUMPTION + "; a household-by-household re-check, more accurate than the 2014 registration",
        "SD of the log error of the look-back's assessment",
        ge=0.0,
        le=5.0,
    )

    _months = field_validator("start", "end")(_check_month)


class ReviewConfig(_Section):
    """The annual dynamic adjustment of the register: exits and entries."""

    enabled: bool = param(True, "flag", "annual dynamic adjustment from 2017 (SCIO 2021)", "run annual reviews")
    first: Month = param("2017-10", "month", "annual dynamic adjustment from 2017", "month of the first review; one every 12 months after")
    assessment_sd: float = param(0.25, "log points", SRC_ASSUMPTION, "SD of the log error of the review's assessment", ge=0.0, le=5.0)
    exit_multiple: float = param(
        1.0,
        "multiple of the line",
        "exit when income is stably above the line (the 'two assurances, three guarantees' standard)",
        "a registered household assessed at or above this multiple of the line exits",
        gt=0.0,
        le=10.0,
    )
    entry_coverage: float = param(
        0.10,
        "share of unregistered households",
        SRC_ASSUMPTION + "; reviews re-check households near the line, not every household",
        "share of unregistered households assessed for entry at each review",
        ge=0.0,
        le=1.0,
    )

    _month = field_validator("first")(_check_month)


class SelfDeclarationConfig(_Section):
    """Households that perceive themselves poor apply for registration."""

    enabled: bool = param(True, "flag", "self-declaration channel (SCIO 2021)", "channel on")
    start: Month = param("2017-01", "month", "dynamic channels from 2017", "first month the channel runs")
    apply_probability: float = param(
        0.03,
        "per month",
        "Alatas et al. (2016): about 60% of the very poorest apply when they must apply",
        "monthly probability that a household perceiving itself poor applies",
        ge=0.0,
        le=1.0,
    )
    shock_multiplier: float = param(
        3.0, "multiple", SRC_ASSUMPTION, "application probability multiple while ill or out of work (capped at 1)", ge=1.0, le=100.0
    )
    nonpoor_probability: float = param(
        0.001, "per month", SRC_ASSUMPTION, "monthly probability that a household not perceiving itself poor applies", ge=0.0, le=1.0
    )
    perception_sd: float = param(
        0.30, "log points", SRC_ASSUMPTION, "SD of the log error of a household's view of its own income", ge=0.0, le=5.0
    )
    _month = field_validator("start")(_check_month)


class CadreConfig(_Section):
    """Grassroots cadres visit households worst-off first, as they perceive them."""

    enabled: bool = param(True, "flag", "grassroots cadre channel (SCIO 2021)", "channel on")
    start: Month = param("2017-01", "month", "dynamic channels from 2017", "first month the channel runs")
    visits_per_village: int = param(
        4, "households per village per month", SRC_ASSUMPTION, "households each village's cadres visit a month", ge=0, le=100_000
    )
    perception_sd: float = param(
        0.40, "log points", SRC_ASSUMPTION, "SD of the log error of a cadre's view of a household's income", ge=0.0, le=5.0
    )
    connected_share: float = param(
        0.10, "share of households", SRC_ASSUMPTION, "share of households connected to village cadres", ge=0.0, le=1.0
    )
    favouritism: float = param(
        0.30,
        "log points",
        "Alatas et al. (2012): elite capture in community targeting is small but present",
        "how much poorer a connected household looks to a cadre",
        ge=0.0,
        le=5.0,
    )
    revisit_months: int = param(6, "months", SRC_ASSUMPTION, "months before a visited household is visited again", ge=1, le=600)
    _month = field_validator("start")(_check_month)


class DataConfig(_Section):
    """Comparison of other departments' data: medical spending jumps, income or job losses."""

    enabled: bool = param(True, "flag", "sector data comparison channel (SCIO 2021)", "channel on")
    start: Month = param("2018-01", "month", "sector data screening spread from about 2018", "first month the channel runs")
    coverage_formal: float = param(
        0.90, "share of households", SRC_ASSUMPTION, "share of households with formal records covered by the data", ge=0.0, le=1.0
    )
    coverage_informal: float = param(
        0.40, "share of households", SRC_ASSUMPTION, "share of households in informal work covered by the data", ge=0.0, le=1.0
    )
    informal_share: float = param(
        0.50, "share of households", SRC_ASSUMPTION, "share of households whose work is informal", ge=0.0, le=1.0
    )
    medical_share_threshold: float = param(
        0.40,
        "share of 12-month income",
        "catastrophic health spending is commonly defined at 40% of capacity to pay (WHO)",
        "flag when out-of-pocket medical spending over 12 months passes this share of income",
        ge=0.0,
        le=1e6,
    )
    medical_threshold: float = param(
        20_000.0,
        "yuan per household per 12 months",
        SRC_ASSUMPTION,
        "flag when out-of-pocket medical spending over 12 months passes this amount",
        ge=0.0,
        le=1e9,
    )
    income_drop_threshold: float = param(
        0.40,
        "share",
        SRC_ASSUMPTION,
        "flag when the last 3 months' income is below (1 - threshold) x that of the 9 months before "
        "(1 = never), or a job is lost",
        ge=0.0,
        le=1.0,
    )
    lag: int = param(2, "months", SRC_ASSUMPTION, "months before a flag reaches the poverty office", ge=0, le=120)
    _month = field_validator("start")(_check_month)


class HotlineConfig(_Section):
    """Missed eligible households call the complaint hotline (12317)."""

    enabled: bool = param(True, "flag", "12317 hotline (SCIO 2021)", "channel on")
    start: Month = param("2017-01", "month", "12317 hotline", "first month the channel runs")
    call_probability: float = param(
        0.005, "per month", SRC_ASSUMPTION, "monthly probability that a missed poor household calls", ge=0.0, le=1.0
    )
    rejected_wait: int = param(
        12, "months", SRC_ASSUMPTION, "months after a rejection during which a household does not call", ge=0, le=600
    )
    _month = field_validator("start")(_check_month)


class ChannelsConfig(_Section):
    """The continuous channels that find newly poor households."""

    self: SelfDeclarationConfig = Field(default_factory=SelfDeclarationConfig)
    cadre: CadreConfig = Field(default_factory=CadreConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    hotline: HotlineConfig = Field(default_factory=HotlineConfig)


class VerificationConfig(_Section):
    """The means test a flagged household goes through before it is registered."""

    assessment_sd: float = param(0.20, "log points", SRC_ASSUMPTION, "SD of the log error of the verification", ge=0.0, le=5.0)
    delay: int = param(
        1,
        "months",
        "identification within 15 days of discovery in the 2021 monitoring mechanism",
        "months from a flag reaching the office to the verification",
        ge=0,
        le=120,
    )
    monitoring_multiple: float = param(
        1.0,
        "multiple of the line",
        "1.5x the line in Anhui's monitoring range after 2020 (../shared/targets, monitoring_after_2020)",
        "register a verified household assessed below this multiple of the line",
        gt=0.0,
        le=10.0,
    )


class SupportConfig(_Section):
    """What a registered household receives, and for how long after it exits."""

    transfer: float = param(
        40.0,
        "yuan per person per month",
        SRC_ASSUMPTION + "; rural dibao averaged about 200 yuan/person/month in 2014 but reached few",
        "monthly cash transfer to each member of a supported household ('blood transfusion')",
        ge=0.0,
        le=1e6,
    )
    transition_months: int = param(
        12,
        "months",
        "'exit without losing policies' during a transition period (SCIO 2021)",
        "months an exited household keeps its support",
        ge=0,
        le=255,
    )
    development_rate: float = param(
        0.005,
        "log points per month",
        SRC_ASSUMPTION + "; industry and employment projects ('hematopoiesis')",
        "monthly gain in the household's own earning capacity while supported; kept after support ends",
        ge=0.0,
        le=1.0,
    )
    development_max: float = param(
        0.20, "log points", SRC_ASSUMPTION, "largest total gain from development support", ge=0.0, le=6.0
    )
    reimbursement: float = param(
        0.80,
        "share of the bill",
        "medical reimbursement for registered households raised to about 80-90% (SCIO 2021)",
        "insurance share of the medical bill for supported households",
        ge=0.0,
        le=1.0,
    )
    reemployment_multiplier: float = param(
        1.5, "multiple", SRC_ASSUMPTION, "re-employment probability multiple for supported households", ge=1.0, le=100.0
    )


class CostConfig(_Section):
    """What each activity costs the government."""

    cadre_visit: float = param(50.0, "yuan per visit", SRC_ASSUMPTION, "cost of one cadre visit", ge=0.0, le=1e9)
    verification: float = param(300.0, "yuan per household", SRC_ASSUMPTION, "cost of one verification", ge=0.0, le=1e9)
    data_match: float = param(5.0, "yuan per flag", SRC_ASSUMPTION, "cost of following up one data flag", ge=0.0, le=1e9)
    data_system_per_household: float = param(
        0.02, "yuan per household per month", SRC_ASSUMPTION, "running cost of the data system while it runs", ge=0.0, le=1e6
    )
    assessment: float = param(
        100.0, "yuan per household", SRC_ASSUMPTION, "cost of one assessment at registration, look-back or review", ge=0.0, le=1e9
    )


class PolicyConfig(_Section):
    """The government's rules for finding and supporting the poor."""

    registration: RegistrationConfig = Field(default_factory=RegistrationConfig)
    lookback: LookbackConfig = Field(default_factory=LookbackConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    channels: ChannelsConfig = Field(default_factory=ChannelsConfig)
    verification: VerificationConfig = Field(default_factory=VerificationConfig)
    support: SupportConfig = Field(default_factory=SupportConfig)
    cost: CostConfig = Field(default_factory=CostConfig)


class Config(_Section):
    """A whole experiment: what is simulated, for how long, under which rules."""

    name: str = param("povsim", "text", "-", "experiment name; the default output folder is results/<name>/", min_length=1)
    description: str = param("", "text", "-", "free text")
    seed: int = param(20140401, "integer", "-", "seed of every random stream", ge=0, lt=2**64)
    simulation: SimulationConfig = Field(default_factory=SimulationConfig)
    population: PopulationConfig = Field(default_factory=PopulationConfig)
    income: IncomeConfig = Field(default_factory=IncomeConfig)
    illness: IllnessConfig = Field(default_factory=IllnessConfig)
    job_loss: JobLossConfig = Field(default_factory=JobLossConfig)
    poverty: PovertyConfig = Field(default_factory=PovertyConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", value):
            raise ValueError(f"a name is letters, digits, '_', '.', '-' (used as a folder name), got {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "Config":
        start = parse_month(self.simulation.start)
        end = parse_month(self.simulation.end)
        missing = [y for y in range(start // 12, end // 12 + 1) if y not in self.poverty.lines]
        if missing:
            raise ValueError(
                f"poverty.lines has no line for year(s) {missing}; allowed: a line for every year "
                f"from {start // 12} to {end // 12}"
            )
        pol = self.policy
        months = [("policy.registration.month", pol.registration)]
        months += [("policy.lookback.start", pol.lookback), ("policy.lookback.end", pol.lookback)]
        months += [("policy.review.first", pol.review)]
        months += [(f"policy.channels.{n}.start", getattr(pol.channels, n)) for n in ("self", "cadre", "data", "hotline")]
        bad = []
        for key, section in months:
            value = getattr(section, key.rsplit(".", 1)[1])
            if section.enabled and not start <= parse_month(value) <= end:
                bad.append(
                    f"{key} = {value!r} is outside the simulated period; "
                    f"allowed: {self.simulation.start} to {self.simulation.end} (or disable the rule)"
                )
        lb = pol.lookback
        if lb.enabled and parse_month(lb.end) < parse_month(lb.start):
            bad.append(f"policy.lookback.end = {lb.end!r} is before policy.lookback.start = {lb.start!r}")
        if bad:
            raise ValueError("\n  ".join(bad))
        return self

    # -- convenience ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The resolved config, every default filled in, as JSON-ready data."""
        return self.model_dump(mode="json")

    def with_overrides(self, overrides: dict[str, Any]) -> "Config":
        """A new validated config with dotted-path overrides applied."""
        return _validate(_apply_overrides(self.to_dict(), overrides))


# --------------------------------------------------------------------------------------
# Loading, overrides and error messages
# --------------------------------------------------------------------------------------


def _section_at(path: tuple) -> type[BaseModel] | None:
    """The model class found by walking ``path`` of field names from :class:`Config`."""
    model: Any = Config
    for part in path:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        model = field.annotation
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


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
            lines.append(f"{key} = {value!r}: {msg}")
    return "invalid config:\n  " + "\n  ".join(lines)


def _validate(data: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err)) from None


def _apply_overrides(data: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Apply ``{"a.b.c": value}`` patches to a nested dict; refuse paths that name no key."""
    data = json.loads(json.dumps(data))  # deep copy; the caller's dict is never changed
    for path, value in (overrides or {}).items():
        parts = str(path).split(".")
        node = data
        model: Any = Config
        for depth, part in enumerate(parts):
            fields = model.model_fields if isinstance(model, type) and issubclass(model, BaseModel) else None
            is_last = depth == len(parts) - 1
            if fields is not None:
                if part not in fields:
                    raise ConfigError(
                        f"invalid override {path!r} = {value!r}: unknown key {'.'.join(parts[: depth + 1])!r}; "
                        f"allowed keys here: {', '.join(sorted(fields))}"
                    )
                model = fields[part].annotation
            else:
                model = None  # a free-form mapping such as poverty.lines
            if is_last:
                node[part] = value
            else:
                child = node.get(part)
                if child is None:
                    child = node[part] = {}
                if not isinstance(child, dict):
                    raise ConfigError(f"invalid override {path!r}: {'.'.join(parts[: depth + 1])!r} is not a section")
                node = child
    return data


def read_toml(path: str | Path, kind: str) -> dict[str, Any]:
    """A TOML file's contents; a missing file or malformed TOML is a :class:`ConfigError` naming ``kind``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{kind} not found: {str(path)!r}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"malformed TOML in {str(path)!r}: {err}") from None


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read and validate an experiment file (TOML), with optional dotted-path overrides.

    ``path=None`` gives the defaults.  Raises :class:`ConfigError` for a missing
    file, malformed TOML, an unknown key, a wrong type or a value out of range.
    The experiment-level keys (:data:`EXPERIMENT_KEYS`: ``[scenarios.*]``,
    ``replicates``, ``[sweep]``) are read by :mod:`povsim.experiments`, not here:
    this returns the file's baseline config.
    """
    if path is None:
        return _validate(_apply_overrides(Config().to_dict(), overrides))
    path = Path(path)
    data = read_toml(path, "experiment file")
    for key in EXPERIMENT_KEYS:
        data.pop(key, None)
    data.setdefault("name", path.stem)
    merged = _merge(Config, Config().to_dict(), data)
    return _validate(_apply_overrides(merged, overrides))


def _merge(model: type[BaseModel], defaults: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """``data`` laid over ``defaults``, section by section; a value that is not a section replaces.

    Unknown keys are kept so that validation reports them.
    """
    out = dict(defaults)
    for key, value in data.items():
        field = model.model_fields.get(key)
        ann = field.annotation if field is not None else None
        if isinstance(ann, type) and issubclass(ann, BaseModel) and isinstance(value, dict):
            out[key] = _merge(ann, defaults.get(key, {}), value)
        else:
            out[key] = value
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
    """Every parameter: key path, unit, default, allowed range, source, description."""
    rows: list[dict[str, Any]] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            ann = field.annotation
            key = f"{prefix}{name}"
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, key + ".")
                continue
            extra = field.json_schema_extra or {}
            bounds = []
            for m in field.metadata:
                for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
                    if getattr(m, attr, None) is not None:
                        bounds.append(f"{sym} {getattr(m, attr)}")
            default = field.get_default(call_default_factory=True)
            rows.append(
                {
                    "key": key,
                    "unit": extra.get("unit", ""),
                    "default": default,
                    "allowed": ", ".join(bounds) or "-",
                    "source": extra.get("source", ""),
                    "description": field.description or "",
                }
            )

    walk(Config, "")
    return rows
