"""Faults in input files and overrides: one line naming the file or key, the problem and what is allowed,
exit 2, nothing written, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import QUICKSTART, run_cli

import povsim
from povsim.config import ConfigError, load_config

FAULTS = {
    "not-utf8": (b"[population]\nhouseholds = 500\n# caf\xe9\n", "is not UTF-8 text (byte 0xe9"),
    "toml-date": (b'[policy.review]\nfirst = 2017-10-01\n',
                  'first = 2017-10-01 is a TOML date or time; allowed: a month as a string in quotes, '
                  'e.g. first = "2017-10"'),
    "share-in-percent": (b"[policy.channels.data]\nmedical_share_threshold = 40\n",
                         "medical_share_threshold = 40: Input should be less than or equal to 10 (a share is a "
                         "fraction, not percent: write 0.4 for 40%)"),
    "probability-in-percent": (b"[illness]\nonset_probability = 30\n",
                               "(a probability is a fraction, not percent: write 0.3 for 30%)"),
    "toml-time": (b'[policy.review]\nfirst = 10:30:00\n', "is a TOML date or time"),
    "long-name": (b'name = "' + b"a" * 300 + b'"\n', "300 characters long; allowed: at most 100"),
    "dotdot-name": (b'name = "a..b"\n', "a name is letters, digits"),
    "nan-in-list": (b"[population]\nsize_probabilities = [nan, 0.2, 0.24, 0.22, 0.13, 0.07, 0.03, 0.11]\n",
                    "element 0 is nan; allowed: each probability a number from 0 to 1"),
    "string-in-list": (b'[population]\nsize_probabilities = ["x", 0.2, 0.24, 0.22, 0.13, 0.07, 0.03, 0.11]\n',
                       "population.size_probabilities.0 = 'x'"),
}


@pytest.mark.parametrize("case", list(FAULTS))
def test_a_faulty_file_gets_one_line_and_exit_2(case, tmp_path):
    content, expected = FAULTS[case]
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    out = tmp_path / "out"
    proc = run_cli("run", str(path), "--households", "500", "--out", str(out), "--quiet")
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("key, value, hint", [
    ("population.worker_probability", 55, "write 0.55 for 55%"),
    ("policy.channels.self.apply_probability", 1.5, "write 0.015 for 1.5%"),  # a rate per month
    ("policy.support.reimbursement", {"2014": 80}, "write 0.8 for 80%"),  # a schedule by year
    ("policy.assessment.exclusion_shares", {"vehicle": 5}, "write 0.05 for 5%"),  # a table of shares
    ("population.size_probabilities", [10, 20, 70], "write 0.1 for 10%"),  # a list of probabilities
    ("income.persistent_sd", 30, None),  # not a share: out of range, no hint
    ("policy.lookback.add_multiple", 80, None),  # a multiple of the line
    ("illness.onset_probability", 250, None),  # not a percentage either
])
def test_a_share_written_in_percent_gets_a_hint(key, value, hint):
    with pytest.raises(ConfigError) as caught:
        load_config(overrides={key: value})
    message = str(caught.value)
    assert key in message
    if hint is None:
        assert "percent" not in message, message
    else:
        assert "is a fraction, not percent: " + hint in message, message


def test_a_folder_or_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="is a folder; allowed: a TOML file"):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_file_is_named(tmp_path):
    path = tmp_path / "locked.toml"
    path.write_text("[population]\nhouseholds = 500\n")
    path.chmod(0)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(path)


def test_a_date_in_an_override_is_refused_with_the_month_form():
    with pytest.raises(ConfigError, match=r'policy.review.first = 2017-10-01 is a TOML date.*first = "2017-10"'):
        load_config(overrides={"policy.review.first": povsim.config.parse_override("x=2017-10-01")[1]})


def test_a_table_for_a_section_merges_into_it(tmp_path):
    """``--set population={households=500}`` sets that key and keeps the section's others (the file's, or
    the defaults), never resetting them."""
    path = tmp_path / "exp.toml"
    path.write_text('[population]\nhouseholds = 2000\nvillages_per_county = 2\n')
    cfg = load_config(path, overrides={"population": {"households": 500}})
    assert cfg.population.households == 500 and cfg.population.villages_per_county == 2
    nested = load_config(overrides={"policy": {"review": {"exit_years": 3}}})
    assert nested.policy.review.exit_years == 3 and nested.policy.review.first == "2017-10"
    with pytest.raises(ConfigError, match="unknown key 'population.householdz'"):
        load_config(overrides={"population": {"householdz": 5}})


def test_every_written_config_is_valid_json(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("run", str(QUICKSTART), "--households", "500", "--set", "simulation.burn_in_years=1",
                   "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    json.loads((out / "config.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in config.json"))


@pytest.mark.parametrize("name", ["../escape", "/tmp/absolute", "a" * 101])
def test_a_calibration_name_is_checked_like_every_name(name, tmp_path):
    from povsim.calibrate import Calibration

    path = tmp_path / "cal.toml"
    path.write_text(f'name = "{name}"\nexperiment = "x.toml"\ntargets = "t.toml"\n'
                    '[parameters]\n"income.median" = [6000.0, 9000.0]\n')
    with pytest.raises(ConfigError, match="cal.toml: name"):
        Calibration.from_file(path)


def test_params_into_a_closed_pipe_exits_quietly():
    """``povsim params | head``: the reader goes away; povsim stops without a word and exits 0."""
    proc = subprocess.Popen([sys.executable, "-m", "povsim.cli", "params"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the only reader: every write now fails with a broken pipe
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert err == b""
