"""Configs are data, validated in full: bad input is refused with the key, the value and what is allowed."""

from __future__ import annotations

import pytest
from helpers import QUICKSTART

import povsim
from povsim.config import Config, ConfigError, load_config, parameter_table, parse_month, parse_override


def _error(overrides=None, path=None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides=overrides)
    return str(info.value)


def _write(tmp_path, text: str, name: str = "exp.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- defaults ---------------------------------------------------------------------------------


def test_defaults_validate():
    cfg = load_config()
    assert isinstance(cfg, Config)
    assert cfg == Config()
    # the defaults are what the model documents
    assert cfg.population.households == 1_000_000
    assert cfg.policy.registration.month == "2014-10"
    assert cfg.simulation.start == "2013-01" and cfg.simulation.end == "2020-12"
    assert sorted(cfg.poverty.lines) == list(range(2013, 2021))
    assert abs(sum(cfg.population.size_probabilities) - 1.0) < 1e-9


def test_public_names():
    assert povsim.ConfigError is ConfigError
    assert povsim.load_config is load_config
    assert issubclass(ConfigError, ValueError)


def test_quickstart_file_loads_with_its_name():
    cfg = load_config(QUICKSTART)
    assert cfg.name == "quickstart"
    assert cfg.population.households == 1_000_000


def test_file_without_name_takes_the_file_stem(tmp_path):
    cfg = load_config(_write(tmp_path, "seed = 5\n", "my_exp.toml"))
    assert cfg.name == "my_exp"
    assert cfg.seed == 5


def test_file_sections_keep_other_defaults(tmp_path):
    cfg = load_config(_write(tmp_path, "[illness]\nonset_probability = 0.02\n"))
    default = Config().to_dict()
    got = cfg.to_dict()
    assert got["illness"]["onset_probability"] == 0.02
    got["illness"]["onset_probability"] = default["illness"]["onset_probability"]
    got["name"] = default["name"]
    assert got == default


def test_nested_override_keeps_other_defaults():
    cfg = load_config(overrides={"policy.registration.assessment_sd": 0.1, "population.households": 1234})
    default = Config().to_dict()
    got = cfg.to_dict()
    assert got["policy"]["registration"]["assessment_sd"] == 0.1
    assert got["population"]["households"] == 1234
    got["policy"]["registration"]["assessment_sd"] = default["policy"]["registration"]["assessment_sd"]
    got["population"]["households"] = default["population"]["households"]
    assert got == default


def test_override_of_one_poverty_line_keeps_the_others():
    default = Config().poverty.lines
    cfg = load_config(overrides={"poverty.lines.2014": 3000})
    assert cfg.poverty.lines[2014] == 3000.0
    assert {y: v for y, v in cfg.poverty.lines.items() if y != 2014} == {
        y: v for y, v in default.items() if y != 2014
    }
    assert sorted(cfg.poverty.lines) == sorted(default)


def test_overrides_apply_on_top_of_a_file():
    cfg = load_config(QUICKSTART, overrides={"population.households": 5000, "seed": 3})
    assert (cfg.name, cfg.population.households, cfg.seed) == ("quickstart", 5000, 3)
    assert cfg.policy.support.transfer == Config().policy.support.transfer  # the file leaves the default


def test_overrides_do_not_change_the_callers_dict():
    overrides = {"poverty.lines.2014": 3000, "population.households": 10}
    before = dict(overrides)
    load_config(overrides=overrides)
    assert overrides == before


def test_with_overrides_validates():
    cfg = load_config()
    assert cfg.with_overrides({"seed": 9}).seed == 9
    assert cfg.seed == 20140401
    with pytest.raises(ConfigError, match="seed"):
        cfg.with_overrides({"seed": -9})


def test_to_dict_round_trips():
    cfg = load_config(overrides={"poverty.lines.2015": 2900, "seed": 2**63})
    again = Config.model_validate(cfg.to_dict())
    assert again == cfg


# --- bad input ---------------------------------------------------------------------------------


def test_unknown_override_key_lists_valid_keys():
    msg = _error({"population.householdz": 5})
    assert "population.householdz" in msg
    assert "5" in msg
    for key in ("households", "households_per_village", "worker_probability", "size_probabilities"):
        assert key in msg


def test_unknown_top_level_override_key():
    msg = _error({"sead": 5})
    assert "sead" in msg
    for key in ("seed", "population", "illness", "policy"):
        assert key in msg


def test_unknown_key_in_file_lists_valid_keys(tmp_path):
    msg = _error(path=_write(tmp_path, "[illness]\nonset_probabilty = 0.02\n"))
    assert "illness.onset_probabilty" in msg
    assert "0.02" in msg
    for key in ("onset_probability", "chronic_share", "acute_duration"):
        assert key in msg


def test_unknown_section_in_file(tmp_path):
    msg = _error(path=_write(tmp_path, "[ilness]\nonset_probability = 0.02\n"))
    assert "ilness" in msg
    assert "illness" in msg  # the allowed keys


@pytest.mark.parametrize(
    "key, value, allowed",
    [
        ("population.households", "many", "integer"),
        ("illness.onset_probability", "often", "number"),
        ("policy.registration.enabled", "maybe", "bool"),
        ("population.households", 2.5, "integer"),
        ("poverty.lines.2014", "high", "number"),
    ],
)
def test_wrong_type(key, value, allowed):
    msg = _error({key: value})
    assert key in msg
    assert repr(value) in msg
    assert allowed in msg.lower()


def test_wrong_type_in_file(tmp_path):
    msg = _error(path=_write(tmp_path, '[population]\nhouseholds = "many"\n'))
    assert "population.households" in msg and "'many'" in msg and "integer" in msg


@pytest.mark.parametrize(
    "key, value, allowed",
    [
        ("illness.onset_probability", 1.5, "less than or equal to 1"),
        ("population.households", -5, "greater than or equal to 1"),
        ("population.households", 0, "greater than or equal to 1"),
        ("income.persistent_rho", 1.0, "less than 1"),
        ("income.median", 0.0, "greater than 0"),
        ("simulation.burn_in_years", 0, "greater than or equal to 1"),
        ("seed", -1, "greater than or equal to 0"),
        ("seed", 2**64, "less than"),
        ("job_loss.duration", 0.5, "greater than or equal to 1"),
    ],
)
def test_out_of_range(key, value, allowed):
    msg = _error({key: value})
    assert key in msg
    assert repr(value) in msg
    assert allowed in msg


def test_out_of_range_in_file(tmp_path):
    msg = _error(path=_write(tmp_path, "[illness]\nonset_probability = 1.5\n"))
    assert "illness.onset_probability" in msg and "1.5" in msg and "less than or equal to 1" in msg


def test_negative_poverty_line():
    msg = _error({"poverty.lines.2014": -5})
    assert "poverty.lines" in msg and "-5" in msg and "(0, 1e7]" in msg


@pytest.mark.parametrize("month", ["2012-12", "2021-01"])
def test_registration_month_outside_simulated_period(month):
    msg = _error({"policy.registration.month": month})
    assert "policy.registration.month" in msg
    assert repr(month) in msg
    assert "2013-01 to 2020-12" in msg


def test_registration_month_outside_period_allowed_when_registration_disabled():
    cfg = load_config(overrides={"policy.registration.month": "2021-01", "policy.registration.enabled": False})
    assert cfg.policy.registration.month == "2021-01"


def test_registration_month_checked_against_overridden_period():
    msg = _error({"simulation.end": "2014-06"})
    assert "policy.registration.month" in msg and "'2014-10'" in msg and "2013-01 to 2014-06" in msg


@pytest.mark.parametrize(
    "key, value",
    [
        ("policy.registration.month", "2014-13"),
        ("policy.registration.month", "2014-00"),
        ("simulation.start", "2014-13"),
        ("simulation.end", "2015/12"),
        ("simulation.start", "14-01"),
    ],
)
def test_malformed_month(key, value):
    msg = _error({key: value})
    assert key in msg
    assert repr(value) in msg
    assert "YYYY-MM" in msg


def test_end_before_start():
    msg = _error({"simulation.start": "2016-01", "simulation.end": "2015-12", "policy.registration.enabled": False})
    assert "2015-12" in msg and "2016-01" in msg and "end >= start" in msg


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    msg = _error(path=path)
    assert str(path) in msg
    assert "not found" in msg


def test_malformed_toml(tmp_path):
    path = _write(tmp_path, "[population\nhouseholds = 5\n")
    msg = _error(path=path)
    assert "malformed TOML" in msg
    assert str(path) in msg


def test_missing_poverty_line_for_a_reported_year():
    msg = _error({"simulation.end": "2021-12"})
    assert "poverty.lines" in msg
    assert "[2021]" in msg
    assert "2013 to 2021" in msg


def test_missing_poverty_line_can_be_supplied():
    cfg = load_config(overrides={"simulation.end": "2021-12", "poverty.lines.2021": 4100})
    assert cfg.poverty.lines[2021] == 4100.0


@pytest.mark.parametrize("probs, total", [([0.5, 0.4], "0.9"), ([0.5, 0.6], "1.1")])
def test_size_probabilities_must_sum_to_one(probs, total):
    msg = _error({"population.size_probabilities": probs})
    assert "population.size_probabilities" in msg
    assert repr(probs) in msg
    assert "sum to 1" in msg
    assert total in msg


def test_size_probabilities_negative():
    msg = _error({"population.size_probabilities": [1.2, -0.2]})
    assert "population.size_probabilities" in msg and "element 0 is 1.2" in msg and "from 0 to 1" in msg


def test_size_probabilities_too_many_sizes():
    msg = _error({"population.size_probabilities": [0.1] * 10})
    assert "population.size_probabilities" in msg and "8" in msg


def test_bad_name():
    msg = _error({"name": "../escape"})
    assert "name" in msg and "'../escape'" in msg and "letters, digits" in msg


def test_every_error_is_reported_at_once():
    msg = _error({"population.households": -5, "illness.onset_probability": 1.5})
    assert "population.households" in msg and "illness.onset_probability" in msg


def test_override_into_a_value_that_is_not_a_section():
    msg = _error({"seed.low": 5})
    assert "seed" in msg


@pytest.mark.parametrize("key", ["population.households", "illness.onset_probability"])
def test_bool_is_not_a_number(key):
    _error({key: True})


# --- command-line values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("population.households=10000", ("population.households", 10000)),
        ("illness.onset_probability=0.02", ("illness.onset_probability", 0.02)),
        ('simulation.end="2015-12"', ("simulation.end", "2015-12")),
        ("simulation.end=2015-12", ("simulation.end", "2015-12")),
        ("policy.registration.enabled=false", ("policy.registration.enabled", False)),
        ("population.size_probabilities=[0.5, 0.5]", ("population.size_probabilities", [0.5, 0.5])),
    ],
)
def test_parse_override(text, expected):
    assert parse_override(text) == expected


def test_parse_override_needs_equals():
    with pytest.raises(ConfigError, match="key.path=value"):
        parse_override("population.households")


@pytest.mark.parametrize(
    "text, index", [("2014-10", 2014 * 12 + 9), ("2013-01", 2013 * 12), ("2020-12", 2020 * 12 + 11)]
)
def test_parse_month(text, index):
    assert parse_month(text) == index


# --- parameter table ----------------------------------------------------------------------------


def test_parameter_table_has_unit_and_source_for_every_parameter():
    rows = parameter_table()
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys))
    for row in rows:
        assert row["unit"].strip(), row["key"]
        assert row["source"].strip(), row["key"]
        assert row["description"].strip(), row["key"]


def _leaf_keys(data: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in data.items():
        if isinstance(v, dict) and k not in ("lines", "exclusion_shares", "exit_plan", "transfer"):  # tables: one key
            out |= _leaf_keys(v, f"{prefix}{k}.")
        else:
            out.add(f"{prefix}{k}")
    return out


def test_parameter_table_covers_every_config_key():
    rows = {r["key"]: r for r in parameter_table()}
    assert set(rows) == _leaf_keys(Config().to_dict())
    assert rows["illness.onset_probability"]["default"] == Config().illness.onset_probability
    assert rows["illness.onset_probability"]["fitted"] and not rows["illness.chronic_share"]["fitted"]
    assert rows["illness.onset_probability"]["allowed"] == ">= 0.0, <= 1.0"
    assert rows["poverty.lines"]["default"] == Config().poverty.lines


# --- the identification rules ---------------------------------------------------------------------

RULE_MONTHS = [
    ("policy.registration.month", "policy.registration.enabled"),
    ("policy.lookback.start", "policy.lookback.enabled"),
    ("policy.lookback.end", "policy.lookback.enabled"),
    ("policy.review.first", "policy.review.enabled"),
    ("policy.channels.self.start", "policy.channels.self.enabled"),
    ("policy.channels.cadre.start", "policy.channels.cadre.enabled"),
    ("policy.channels.data.start", "policy.channels.data.enabled"),
    ("policy.channels.hotline.start", "policy.channels.hotline.enabled"),
]


def test_default_rules_mirror_china_2014_2020():
    pol = load_config().policy
    assert (pol.registration.enabled, pol.registration.method, pol.registration.month) == (True, "quota", "2014-10")
    assert (pol.lookback.enabled, pol.lookback.start, pol.lookback.end) == (True, "2015-08", "2016-06")
    assert (pol.review.enabled, pol.review.first) == (True, "2017-10")
    for name in ("self", "cadre", "hotline"):
        channel = getattr(pol.channels, name)
        assert (channel.enabled, channel.start) == (True, "2017-01"), name
    assert (pol.channels.data.enabled, pol.channels.data.start) == (True, "2018-01")


@pytest.mark.parametrize("key, enabled", RULE_MONTHS, ids=[k for k, _ in RULE_MONTHS])
@pytest.mark.parametrize("month", ["2012-12", "2021-01"])
def test_rule_month_outside_simulated_period(key, enabled, month):
    # keep the look-back window ordered, so that only the period check can object
    extra = {}
    if key == "policy.lookback.start" and month == "2021-01":
        extra = {"policy.lookback.end": "2021-02", "poverty.lines.2021": 4000}
    if key == "policy.lookback.end" and month == "2012-12":
        extra = {"policy.lookback.start": "2012-11"}
    msg = _error({key: month, **extra})
    assert f"{key} = {month!r} is outside the simulated period" in msg
    assert "2013-01 to 2020-12" in msg
    assert "disable" in msg


@pytest.mark.parametrize("key, enabled", RULE_MONTHS, ids=[k for k, _ in RULE_MONTHS])
def test_rule_month_outside_period_allowed_when_the_rule_is_disabled(key, enabled):
    cfg = load_config(overrides={key: "2021-01", enabled: False})
    assert _get(cfg, key) == "2021-01"


def _get(cfg, dotted):
    node = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def test_lookback_end_before_start():
    msg = _error({"policy.lookback.start": "2016-01", "policy.lookback.end": "2015-12"})
    assert "policy.lookback.end = '2015-12' is before policy.lookback.start = '2016-01'" in msg


def test_a_short_period_refuses_every_default_rule_at_once():
    msg = _error({"simulation.end": "2015-12"})
    for key, _ in RULE_MONTHS[2:]:  # the registration and the look-back start fall inside
        assert key in msg, key
    assert "policy.registration.month" not in msg and "policy.lookback.start" not in msg


@pytest.mark.parametrize(
    "key, value, allowed",
    [
        ("policy.channels.data.lag", -1, "greater than or equal to 0"),
        ("policy.verification.delay", -1, "greater than or equal to 0"),
        ("policy.channels.self.apply_probability", 1.5, "less than or equal to 1"),
        ("policy.channels.hotline.call_probability", 1.01, "less than or equal to 1"),
        ("policy.channels.cadre.connected_share", -0.1, "greater than or equal to 0"),
        ("policy.channels.data.coverage_formal", 2.0, "less than or equal to 1"),
        ("policy.channels.data.income_drop_threshold", 1.5, "less than or equal to 1"),
        ("policy.review.entry_coverage", 1.2, "less than or equal to 1"),
        ("policy.review.exit_multiple", 0.0, "greater than 0"),
        ("policy.support.transition_months", 256, "less than or equal to 255"),
        ("policy.support.reemployment_multiplier", 0.5, "greater than or equal to 1"),
        ("policy.registration.quota_scale", -1.0, "greater than or equal to 0"),
        ("policy.cost.verification", -5.0, "greater than or equal to 0"),
        ("policy.channels.cadre.rejected_wait", -1, "greater than or equal to 0"),
    ],
)
def test_rule_parameter_out_of_range(key, value, allowed):
    msg = _error({key: value})
    assert f"{key} = {value!r}" in msg
    assert allowed in msg


@pytest.mark.parametrize(
    "key, value, allowed",
    [
        ("policy.channels.data.lag", 1.5, "integer"),
        ("policy.verification.delay", "1", "integer"),
        ("policy.channels.self.enabled", "yes", "bool"),
        ("policy.channels.cadre.visits_per_village", 2.0, "integer"),
        ("policy.support.transfer", "40", "number"),
    ],
)
def test_rule_parameter_wrong_type(key, value, allowed):
    msg = _error({key: value})
    assert f"{key} = {value!r}" in msg
    assert allowed in msg.lower()


@pytest.mark.parametrize("method", ["lottery", "Quota", ""])
def test_unknown_registration_method(method):
    msg = _error({"policy.registration.method": method})
    assert f"policy.registration.method = {method!r}" in msg
    assert "'quota' or 'threshold'" in msg


def test_unknown_rule_key_lists_the_keys_of_its_section():
    msg = _error({"policy.channels.hotline.call_prob": 0.1})
    assert "policy.channels.hotline.call_prob" in msg
    for key in ("call_probability", "rejected_wait", "start", "enabled"):
        assert key in msg


def test_unknown_rule_key_in_file(tmp_path):
    msg = _error(path=_write(tmp_path, "[policy.channels.data]\nlags = 3\n"))
    assert "policy.channels.data.lags" in msg and "lag" in msg and "coverage_formal" in msg


def test_rule_error_in_file_names_the_key(tmp_path):
    msg = _error(path=_write(tmp_path, '[policy.channels.self]\napply_probability = 1.5\nstart = "2022-01"\n'))
    assert "policy.channels.self.apply_probability" in msg and "1.5" in msg
