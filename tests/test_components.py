"""The components and the registry: declarations once, everything else derived, code and data in agreement."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import numba as nb
import numpy as np

import povsim
from povsim import components as C
from povsim import metrics as M
from povsim.components import schedule as S
from povsim.components.base import add_binned

PACKAGE = Path(povsim.__file__).resolve().parent
MODULE_OF = {importlib.import_module(f"povsim.components.{m}").COMPONENT.name: m for m in C.MODULES}


# --- the schedule: code and data -------------------------------------------------------------------


def _calls(function: ast.FunctionDef) -> list[tuple[str, str]]:
    """(module, function) of every ``module.function(...)`` or ``function(...)`` call, in source order."""
    out = []
    for node in (n for statement in function.body for n in ast.walk(statement)):  # not the decorators
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
                out.append((f.value.id, f.attr, node.lineno, node.col_offset))
            elif isinstance(f, ast.Name):
                out.append(("", f.id, node.lineno, node.col_offset))
    return [(m, name) for m, name, _, _ in sorted(out, key=lambda c: (c[2], c[3]))]


def _schedule_in_code() -> list[tuple[str, str]]:
    tree = ast.parse((PACKAGE / "components" / "schedule.py").read_text())
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    hooks = []
    for module, name in _calls(functions["village_month"]):
        if module == "" and name in ("household_update", "household_events"):
            hooks.extend(c for c in _calls(functions[name]) if c[0])
        elif module and module != "p":
            hooks.append((module, name))
    return hooks


def test_village_month_calls_exactly_the_schedule_in_order():
    in_data = [(MODULE_OF[step.component], step.hook) for step in S.SCHEDULE]
    in_code = _schedule_in_code()
    assert in_code == in_data


def test_every_scheduled_hook_exists_with_the_signature_of_its_level():
    village = ["hh", "vs", "v", "first_id", "month", "line", "p", "k0", "k1", "acc", "s"]
    household = village[:3] + ["i"] + village[3:]
    for step in S.SCHEDULE:
        hook = getattr(importlib.import_module(f"povsim.components.{MODULE_OF[step.component]}"), step.hook)
        args = list(hook.py_func.__code__.co_varnames[: hook.py_func.__code__.co_argcount])
        assert args == (village if step.level == "village" else household), (step, args)


def test_household_steps_of_a_phase_are_consecutive_and_phases_in_order():
    phases = [step.phase for step in S.SCHEDULE]
    assert phases == sorted(phases)
    for phase in {s.phase for s in S.SCHEDULE if s.level == "household"}:
        levels = [s.level for s in S.SCHEDULE if s.phase == phase]
        assert set(levels) == {"household"}, phase  # a household phase is one loop over the households


def test_model_doc_prints_the_schedule():
    """docs/model.md's order of events is generated from SCHEDULE (tools/docs_pages.py)."""
    text = (PACKAGE.parent / "docs" / "model.md").read_text()
    for step in S.SCHEDULE:
        assert f"`{MODULE_OF[step.component]}.{step.hook}`" in text, step


# --- draws -----------------------------------------------------------------------------------------


def test_no_two_draws_share_a_stream_and_index():
    seen = {}
    for owner, d in C.DRAWS:
        key = (d.stream, d.index)
        assert key not in seen, f"{owner} and {seen.get(key)} both draw stream {d.stream}, index {d.index}"
        seen[key] = owner
        assert d.stream in C.STREAMS.values()


def test_a_stream_keyed_by_more_than_one_id_space_separates_them_by_month_zero():
    """Village, county and province draws are made with month 0, which no simulated month is."""
    for _, d in C.DRAWS:
        if d.space != "household":
            assert d.month == "0"
    timeline = povsim.load_config(None).simulation
    assert povsim.config.parse_month(timeline.start) - 12 * 50 > 0


def _declared_value(module, node):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return getattr(module, node.id, None)  # None: a local variable (an index computed in a loop)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return getattr(getattr(module, node.value.id), node.attr)
    return None  # an expression: an index computed in a loop


def test_every_draw_in_the_model_is_declared():
    """Every rng.draw4 / rng.fill_uniforms call of the model names a (stream, index) of the draw table."""
    declared = {(d.stream, d.index) for _, d in C.DRAWS}
    files = sorted((PACKAGE / "components").glob("*.py")) + [PACKAGE / "population.py"]
    used = set()
    for path in files:
        module_name = "povsim." + path.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".")
        module_name = module_name.removesuffix(".__init__")
        module = importlib.import_module(module_name)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in (
                "draw4", "fill_uniforms"
            ):
                stream = _declared_value(module, node.args[2])
                index = _declared_value(module, node.args[5] if node.func.attr == "draw4" else node.args[6])
                assert stream is not None, f"{path.name}: a draw's stream is not a named constant"
                if index is None:  # a computed index: the stream must have declared draws
                    assert any(s == stream for s, _ in declared), f"{path.name}: stream {stream} is not declared"
                    continue
                used.add((stream, index))
                assert (stream, index) in declared, f"{path.name}: stream {stream}, index {index} is not declared"
    assert len(used) >= 10


def test_streams_of_rng_agree_with_the_declarations():
    """povsim.rng keeps the numbers of the model's streams for scripts and tests; they are the components'."""
    named = {n[len("STREAM_"):].lower(): getattr(povsim.rng, n) for n in dir(povsim.rng) if n.startswith("STREAM_")}
    assert named == {name: C.STREAMS[name] for name in named}
    assert set(named) == set(C.STREAMS)


# --- routes, state, counts, columns ------------------------------------------------------------------


def test_routes_are_derived_from_the_components():
    assert C.ROUTE_NAMES == ("none", "registration", "lookback", "review", "self", "cadre", "data", "hotline")
    assert C.CHANNELS == ("self", "cadre", "data", "hotline")
    from povsim import plots

    assert plots.ROUTE_LABELS == {r.name: r.label for r in C.ROUTES}
    assert plots.ROUTE_COLOURS == {r.name: r.colour for r in C.ROUTES}
    assert len(set(plots.ROUTE_COLOURS.values())) == len(C.ROUTES)


def test_config_sections_sit_at_their_components_paths():
    cfg = povsim.load_config(None)
    for component in C.COMPONENTS:
        if component.section is not None:
            assert isinstance(component.section_of(cfg), component.section), component.path


def test_kernel_parameters_keep_the_configs_names():
    cfg = povsim.load_config(None, overrides={"policy.channels.cadre.visits_per_village": 7})
    p = C.make_params(cfg)
    assert p.cadre.visits_per_village == 7
    assert p.cadre.rejected_wait == cfg.policy.channels.cadre.rejected_wait
    for name in ("apply_probability", "shock_multiplier", "nonpoor_probability", "perception_sd"):
        assert getattr(p.self, name) == getattr(cfg.policy.channels.self, name)


def test_state_is_allocated_as_declared():
    hh = C.allocate(5)
    assert hh._fields == tuple(s.name for _, s in C.HOUSEHOLD_STATE)
    for (_, s), array in zip(C.HOUSEHOLD_STATE, hh):
        assert array.dtype == np.dtype(s.dtype) and array.shape == (5, *s.shape)
        assert (array == s.fill).all()
    per_household = sum(s.bytes for _, s in C.HOUSEHOLD_STATE)
    assert per_household <= 64
    from povsim.population import build_population

    pop = build_population(povsim.load_config(None, overrides={"population.households": 1000}))
    assert pop.bytes_per_household() < per_household + 1  # the villages add well under a byte


def test_slots_cover_every_count_once():
    sizes = []
    for component in C.COMPONENTS:
        for item in component.metrics:
            if isinstance(item, (C.Count, C.Bins)):
                sizes.append((C.SLOTS[item.name], C._slots_of(item)))
    sizes.sort()
    assert sizes[0][0] == 0
    for (a, n), (b, _) in zip(sizes, sizes[1:]):
        assert a + n == b  # contiguous, no overlap
    assert sizes[-1][0] + sizes[-1][1] == C.N_SLOTS
    assert C.SLOT._fields == tuple(C.SLOTS)


def test_every_column_is_declared_once_with_a_definition_and_a_kind():
    assert list(M.COLUMNS) == list(C.COLUMNS)
    for name, info in C.COLUMNS.items():
        assert info.definition and info.kind in ("time", "count", "ratio", "index", "months", "cost", "yuan"), name
    assert [c for c in C.COLUMNS if c.startswith("flags_")] == [f"flags_{c}" for c in C.CHANNELS]
    assert [c for c in C.COLUMNS if c.startswith("entered_")] == [f"entered_{r.name}" for r in C.ROUTES]


def test_cost_total_adds_every_cost_column():
    cfg = povsim.load_config(None, overrides={"population.households": 2000, "simulation.end": "2018-12"})
    m = povsim.run(cfg).metrics
    costs = [name for name, info in C.COLUMNS.items() if info.kind == "cost"]
    assert costs == ["cost_assessment", "cost_cadre", "cost_verification", "cost_data", "cost_transfers"]
    total = m[costs[0]].to_numpy().copy()
    for name in costs[1:]:
        total = total + m[name].to_numpy()
    np.testing.assert_array_equal(total, m["cost_total"].to_numpy())
    assert (m["cost_cadre"] == m["cadre_visits"] * cfg.policy.cost.cadre_visit).all()


# --- binned counts ---------------------------------------------------------------------------------


@nb.njit
def _bin_values(values, bins):
    acc = np.zeros(bins + 2, np.int64)
    for v in values:
        add_binned(acc, 1, bins, v)
    return acc


def test_binned_counts_clamp_into_their_bins():
    acc = _bin_values(np.array([-3, 0, 1, 1, 4, 5, 99]), 5)
    assert list(acc) == [0, 2, 2, 0, 0, 3, 0]  # -3 and 0 in bin 0; 4, 5 and 99 in the last (open) bin


def test_the_delay_histogram_is_the_binned_detection_delay():
    cfg = povsim.load_config("experiments/quickstart.toml", overrides={"population.households": 3000})
    sim = povsim.Simulation(cfg)
    result = sim.run()
    totals = np.array([sim.totals[m] for m in sorted(sim.totals)])
    binned = M.binned(totals, "detection_delay")
    assert list(binned.columns) == list(C.BINS["detection_delay"].labels)
    assert result.delays.drop(columns="unknown").equals(binned)
    assert binned.to_numpy().sum() == result.metrics[[f"entered_{r}" for r in M.ROUTES]].to_numpy().sum() - (
        totals[:, M.ENTERED_NONPOOR : M.ENTERED_NONPOOR + C.N_ROUTES].sum()
        + totals[:, M.DELAY_UNKNOWN : M.DELAY_UNKNOWN + C.N_ROUTES].sum()
    )


# --- village state ---------------------------------------------------------------------------------


def test_village_state_holds_each_villages_lookback_month_and_quota():
    cfg = povsim.load_config(None, overrides={"population.households": 3000, "population.households_per_village": 100})
    sim = povsim.Simulation(cfg)
    vs = sim.population.villages
    start, end = (povsim.config.parse_month(cfg.policy.lookback.start), povsim.config.parse_month(cfg.policy.lookback.end))
    assert ((vs.lookback_month >= start) & (vs.lookback_month <= end)).all()
    assert len(set(vs.lookback_month.tolist())) > 3  # drawn village by village
    assert (vs.id == vs.start[:-1]).all()  # a whole population: village id = its first household's id
    while not sim.quota_month:
        sim.step()
    assert (vs.quota == 0).all()
    sim.step()
    assert vs.quota.sum() > 0 and (vs.quota <= np.diff(vs.start)).all()


def test_compiled_sources_are_found_by_the_layout():
    from povsim import _jit

    sources = _jit.compiled_sources()
    for name in C.MODULES:
        assert f"components/{name}.py" in sources
    for name in ("engine.py", "rng.py", "elementary.py", "population.py", "components/schedule.py"):
        assert name in sources
    assert "cli.py" not in sources and "config.py" not in sources
