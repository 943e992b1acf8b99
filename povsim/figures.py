"""Every figure of the documentation, rebuilt from the experiment files (``povsim figures``).

This module owns the figures in ``docs/figures/``: which experiment each comes from,
how it is run, and the provenance each figure carries.  :func:`build_figures` runs
the experiment files in ``experiments/`` (each once, however many figures use it),
draws the figures with :mod:`povsim.plots`, writes each PNG atomically (a temporary
file beside it, then a rename) and rewrites ``index.md`` beside them.

Every figure says where it came from twice:

* in its caption, drawn on the figure: the experiment file, seed, households, povsim
  version, date and scale;
* in its PNG metadata (``Title``, ``Description`` = the caption, ``Source``,
  ``Software``, ``Creation Time``, and ``Provenance``: the same facts as JSON),
  which :func:`read_figure` reads back.  ``index.md`` is written from that
  metadata alone (:func:`index_markdown`), so it always matches the PNGs beside it.

Scale: :data:`FULL` runs each experiment file as written; :data:`QUICK` caps every
experiment at 20,000 households and measures speed at smaller sizes (about a minute
on 2 cores once Numba's cache is warm).  A :class:`Scale` of your own (tiny, in the
tests) works the same way.
"""

from __future__ import annotations

import datetime as dt
import gc
import importlib.util
import json
import os
import platform
import sys
import tempfile
import textwrap
import time
import tomllib
import tracemalloc
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .config import ONE_TIME_THRESHOLD

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

# numpy and pandas are imported where they are used, so `povsim --help` stays quick

__all__ = [
    "Scale",
    "FULL",
    "QUICK",
    "FigureSpec",
    "FIGURES",
    "build_figures",
    "official_targets",
    "official_headcount",
    "cost_points",
    "measure_performance",
    "with_caption",
    "save_figure",
    "read_figure",
    "index_markdown",
    "write_index",
    "PERF_OVERRIDES",
]

INDEX = "index.md"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DPI = 150


# --------------------------------------------------------------------------------------
# Scale
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """How big the runs behind the figures are.

    ``households``: ``None`` runs every experiment file at its own size; otherwise every
    experiment gets this many households, or at most this many when ``cap`` is true.
    The performance figure times the engine and the plain NumPy step at
    ``engine_sizes`` and ``numpy_sizes`` households and the Mesa model at
    ``mesa_sizes``, each for ``months`` months.
    """

    name: str
    households: int | None = None
    cap: bool = False
    engine_sizes: tuple[int, ...] = (1_000, 10_000, 100_000, 1_000_000)
    numpy_sizes: tuple[int, ...] = (1_000, 10_000, 100_000, 1_000_000)
    mesa_sizes: tuple[int, ...] = (300, 1_000, 3_000, 10_000)
    months: int = 12

    def households_for(self, file_households: int) -> int:
        """Households to run for an experiment file that asks for ``file_households``."""
        if self.households is None:
            return file_households
        return min(file_households, self.households) if self.cap else self.households


#: every experiment file at its own scale; speed measured up to a million households
FULL = Scale("full")

#: at most 20,000 households per experiment; speed measured up to 100,000 households
QUICK = Scale(
    "quick",
    households=20_000,
    cap=True,
    engine_sizes=(1_000, 10_000, 100_000),
    numpy_sizes=(1_000, 10_000, 100_000),
    mesa_sizes=(300, 1_000),
    months=6,
)


# --------------------------------------------------------------------------------------
# Official figures (package data)
# --------------------------------------------------------------------------------------


def official_targets() -> dict[str, Any]:
    """The official figures shipped with povsim (``povsim/data/targets/china_rural_poverty.toml``)."""
    path = resources.files("povsim") / "data" / "targets" / "china_rural_poverty.toml"
    return tomllib.loads(path.read_text(encoding="utf-8"))


def official_headcount() -> pd.DataFrame:
    """The NBS rural poverty headcount at each year end: ``year``, ``millions``, ``incidence``, ``derived``.

    ``incidence`` is a share of the rural population; ``derived`` marks the years whose
    figure is derived from adjacent years rather than read in a release.  The table's
    ``source`` is in ``.attrs["source"]``.
    """
    import pandas as pd

    table = official_targets()["rural_poor_headcount"]
    derived = set(table.get("derived_years", []))
    out = pd.DataFrame(
        {
            "year": table["years"],
            "millions": table["millions"],
            "incidence": table["incidence"],
            "derived": [y in derived for y in table["years"]],
        }
    )
    out.attrs["source"] = table["source"]
    out.attrs["description"] = table["description"]
    return out


# --------------------------------------------------------------------------------------
# Provenance, captions and files
# --------------------------------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now().astimezone().replace(microsecond=0)


def _experiment_text(experiments: list[dict]) -> str:
    parts = []
    for e in experiments:
        n = len(e["scenarios"])
        scen = f"{n} scenarios, " if n > 1 else ""
        each = " each" if n > 1 else ""
        parts.append(f"{e['file']} ({scen}seed {e['seed']}, {e['households']:,} households{each})")
    return "; ".join(parts)


def provenance_text(prov: dict) -> str:
    """The provenance sentence of a caption, from a provenance record."""
    when = prov["created"][:10]
    made = f"`{prov['command']}` (povsim {prov['povsim_version']}, {when}, scale: {prov['scale']})"
    if prov.get("experiments"):
        return f"Source: {_experiment_text(prov['experiments'])}. Made by {made}."
    m = prov.get("measured", {})
    return (
        f"Measured by {made}, on {m.get('cpu', 'an unknown CPU')} with {m.get('numba_threads', '?')} Numba threads "
        f"(config: {m.get('config', '?')}, seed {m.get('seed', '?')})."
    )


def with_caption(fig, text: str, fontsize: float = 7.0, dpi: int = DPI):
    """A new figure: ``fig`` drawn as it is, with ``text`` wrapped in a strip beneath it.

    ``fig`` is rendered first (its own layout untouched, legends and all), then placed
    pixel for pixel above the caption, so the result is meant for raster output at
    ``dpi`` (PNG).
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig.set_dpi(dpi)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba()).copy()
    height_px, width_px = image.shape[:2]
    width_in = width_px / dpi
    chars = max(40, int((width_in - 0.25) * 72 / (fontsize * 0.56)))
    lines: list[str] = []
    for paragraph in text.split("\n"):
        lines += textwrap.wrap(paragraph, chars) or [""]
    caption_px = int(round((len(lines) * fontsize * 1.3 + 14) / 72 * dpi))
    out = Figure(figsize=(width_in, (height_px + caption_px) / dpi), dpi=dpi)
    out.figimage(image, xo=0, yo=caption_px, origin="upper")
    out.text(0.1 / width_in, (caption_px - 0.08 * dpi) / (height_px + caption_px), "\n".join(lines), ha="left",
             va="top", fontsize=fontsize, color="#333333", linespacing=1.3)
    return out


def save_figure(fig, path: str | Path, title: str, caption: str, provenance: dict) -> Path:
    """Write ``fig`` with ``caption`` beneath it to ``path`` as a PNG with its provenance in the metadata.

    Written atomically: to a temporary file beside ``path``, renamed over it only when
    complete, so an interrupted run never leaves a half-written figure.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    captioned = with_caption(fig, caption)
    sources = [e["file"] for e in provenance.get("experiments", [])]
    metadata = {
        "Title": title,
        "Description": caption,
        "Author": "povsim figures",
        "Software": f"povsim {provenance['povsim_version']}",
        "Source": ", ".join(sources) if sources else "measured by povsim figures",
        "Creation Time": provenance["created"],
        "Provenance": json.dumps(provenance, sort_keys=True),
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        captioned.savefig(tmp, format="png", dpi=DPI, metadata=metadata)
        _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_figure(path: str | Path) -> dict[str, Any]:
    """A figure's title, caption and provenance, read back from its PNG metadata."""
    from PIL import Image

    path = Path(path)
    with open(path, "rb") as f:
        if f.read(8) != PNG_SIGNATURE:
            raise ValueError(f"{str(path)!r} is not a PNG file")
    with Image.open(path) as image:
        text = dict(image.text)
        size = image.size
    if "Provenance" not in text:
        raise ValueError(f"{str(path)!r} has no povsim provenance in its metadata (not made by povsim figures)")
    return {
        "title": text.get("Title", ""),
        "caption": text.get("Description", ""),
        "source": text.get("Source", ""),
        "software": text.get("Software", ""),
        "created": text.get("Creation Time", ""),
        "provenance": json.loads(text["Provenance"]),
        "size": size,
    }


def _publish(tmp: str | Path, path: Path) -> None:
    """Give a finished temporary file the permissions of a normal new file (mkstemp's are 0600), then rename it."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def _write_text_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------------
# Running the experiments behind the figures
# --------------------------------------------------------------------------------------


class _Context:
    """Runs each experiment file once, at the chosen scale, and remembers its results."""

    def __init__(self, experiments: Path, scale: Scale, benchmarks: Path | None, log: Callable[[str], None],
                 command: str):
        self.experiments = experiments
        self.command = command
        self.scale = scale
        self.benchmarks = benchmarks
        self.log = log
        self.created = _now().isoformat()
        self._loaded: dict[str, Any] = {}
        self._results: dict[str, Any] = {}

    def relative(self, file: str) -> str:
        return f"{self.experiments.name}/{file}"

    def load(self, file: str):
        """The validated :class:`~povsim.experiments.Experiment` of ``file`` at this scale."""
        from .config import ConfigError
        from .experiments import Experiment

        if file not in self._loaded:
            path = self.experiments / file
            if not path.is_file():
                raise ConfigError(f"experiment file not found: {str(path)!r} (povsim figures needs it)")
            size = Experiment.from_file(path).configs["baseline"].population.households
            overrides = {"population.households": self.scale.households_for(size)}
            self._loaded[file] = Experiment.from_file(path, overrides=overrides)
        return self._loaded[file]

    def run(self, file: str):
        """The :class:`~povsim.experiments.ExperimentResult` of ``file``, run once."""
        if file not in self._results:
            exp = self.load(file)
            cfg = exp.configs["baseline"]
            self.log(
                f"  running {self.relative(file)}: {len(exp.configs)} scenario(s) x "
                f"{cfg.population.households:,} households ..."
            )
            t0 = time.perf_counter()
            self._results[file] = exp.run()
            self.log(f"  ... {time.perf_counter() - t0:.1f} s")
        return self._results[file]

    def record(self, file: str) -> dict:
        exp = self.load(file)
        cfg = exp.configs["baseline"]
        return {
            "file": self.relative(file),
            "seed": cfg.seed,
            "households": cfg.population.households,
            "scenarios": list(exp.configs),
            "reported": f"{cfg.simulation.start} to {cfg.simulation.end}",
            "burn_in_years": cfg.simulation.burn_in_years,
        }

    def provenance(self, figure: "FigureSpec", **extra: Any) -> dict:
        from . import __version__

        prov = {
            "figure": figure.name,
            "number": figure.number,
            "povsim_version": __version__,
            "created": self.created,
            "scale": self.scale.name,
            "command": self.command,
            "experiments": [self.record(f) for f in figure.experiments],
            "python": platform.python_version(),
        }
        prov.update(extra)
        return prov


# --------------------------------------------------------------------------------------
# The figures
# --------------------------------------------------------------------------------------

RULE_LABELS = {
    "baseline": "One-time registration only (2014-10)",
    "plus_lookback": "+ look-back (2015-08 to 2016-06)",
    "plus_reviews": "+ annual reviews (from 2017-10)",
    "plus_channels": "+ continuous channels and hotline (from 2017)",
}


def _events(configs) -> list[tuple[str, pd.Timestamp, pd.Timestamp]]:
    """Registration, look-back, first review and first channel month over every scenario, as timestamps."""
    import pandas as pd

    from .config import format_month
    from .timeline import Timeline

    def ts(month: int) -> pd.Timestamp:
        return pd.Timestamp(format_month(month) + "-01")

    found: dict[str, tuple[int, int]] = {}
    for cfg in configs:
        tl = Timeline.from_config(cfg)
        for name, first, last in tl.events:
            kind = name.split()[0]
            if kind == "review":
                first = last = min(first, found.get("annual reviews", (first, first))[0])
                found["annual reviews"] = (first, last)
            else:
                found[{"registration": "registration", "lookback": "look-back"}[kind]] = (first, last)
        if tl.channels:
            start = min(tl.channels.values())
            found["channels"] = (min(start, found.get("channels", (start, start))[0]),) * 2
    return [(label, ts(a), ts(b)) for label, (a, b) in sorted(found.items(), key=lambda kv: kv[1])]


def _fig_errors_by_rule(ctx: _Context, spec: "FigureSpec"):
    from .plots import plot_errors_by_rule

    file = spec.experiments[0]
    res = ctx.run(file)
    fig = plot_errors_by_rule(
        res.metrics(), labels=RULE_LABELS, events=_events(res.experiment.configs.values()), title=spec.title
    )
    what = (
        "Monthly exclusion error (poor households not registered / poor households) and inclusion error "
        "(registered households not poor / registered households) under each identification rule; each "
        "scenario adds one rule to the one above it, and all meet the same shocks (common random numbers). "
        "Shaded: the look-back window; dotted: the registration, first review and first channel month."
    )
    return fig, what, ctx.provenance(spec)


def _fig_channels(ctx: _Context, spec: "FigureSpec"):
    import pandas as pd

    from .metrics import ROUTES
    from .plots import plot_channels

    file = spec.experiments[0]
    result = ctx.run(file).by_scenario()["baseline"]
    m = result.metrics
    delays = result.detection_delays()
    entries = pd.DataFrame(
        {
            "entered": [int(m[f"entered_{r}"].sum()) for r in ROUTES],
            "poor": [int(delays.loc[r].sum()) for r in ROUTES],  # every poor entrant: known onset or not
        },
        index=pd.Index(ROUTES, name="route"),
    )
    unknown = int(delays["unknown"].sum())
    fig = plot_channels(entries, delays, title=spec.title)
    first, last = m["month"].iloc[0].strftime("%Y-%m"), m["month"].iloc[-1].strftime("%Y-%m")
    what = (
        f"Left: households entering the register {first} to {last} by route, and of them those truly poor at "
        "entry. Right: for each route, the share of its poor entrants registered within x months of falling "
        f"poor (result.detection_delays()); {unknown:,} poor entrants who were poor since before the record "
        "began (onset unknown, mostly at the 2014 registration) are left out."
    )
    return fig, what, ctx.provenance(spec, unknown_onset=unknown)


def _fig_headcount(ctx: _Context, spec: "FigureSpec"):
    import numpy as np

    from .plots import plot_headcount_vs_official

    file = spec.experiments[0]
    m = ctx.run(file).by_scenario()["baseline"].metrics
    official = official_headcount()
    years = set(m["year"])
    shown = official[official["year"].isin(years)].reset_index(drop=True)
    fig = plot_headcount_vs_official(m, shown, title=spec.title)
    december = m[m["month"].dt.month == 12].set_index("year")["headcount_rate"]
    pairs = ", ".join(
        f"{int(r.year)} {100 * december.get(r.year, np.nan):.1f} vs {100 * r.incidence:.1f}" for r in shown.itertuples()
    )
    what = (
        "Share of rural people living in households whose 12-month per-capita net income is below the year's "
        "line: the model (monthly, and in December) against the official year-end incidence, "
        f"{official.attrs['source']}; hollow squares are derived from adjacent years. Model vs official, %: "
        f"{pairs}. The experiment's parameters are fitted to the 2013-2019 values (docs/calibration.md); 2020 is not a target."
    )
    return fig, what, ctx.provenance(spec, official_source=official.attrs["source"])


SCENARIO_LABELS = {
    "onetime_vs_dynamic.toml": {
        "baseline": "one-time only",
        "plus_lookback": "+ look-back",
        "plus_reviews": "+ reviews",
        "plus_channels": "+ channels & hotline",
    },
    "channels.toml": {"baseline": "no channels"},
}

GROUP_LABELS = {
    "onetime_vs_dynamic.toml": "rules added one at a time (onetime_vs_dynamic)",
    "channels.toml": "channels alone and combined, with reviews (channels)",
}


def cost_points(results: dict[str, Any]) -> pd.DataFrame:
    """One row per scenario of each experiment: its costs per household per year and its exclusion error.

    ``results`` maps an experiment file name to its
    :class:`~povsim.experiments.ExperimentResult`.  Costs are summed over the reported
    months and divided by households x years; the exclusion error is the mean over
    months with a register (:func:`povsim.experiments.headline`).
    """
    import pandas as pd

    from .experiments import headline

    rows = []
    for file, res in results.items():
        labels = SCENARIO_LABELS.get(file, {})
        for name, result in res.by_scenario().items():
            m = result.metrics
            household_years = result.manifest["households"] * len(m) / 12.0
            total = float(m["cost_total"].sum())
            transfers = float(m["cost_transfers"].sum())
            # in channels.toml, "X_hotline" is scenario "X" with the hotline: drawn open, beside X, unlabelled
            hotline_twin = file == "channels.toml" and name.endswith("hotline")
            base = name.removesuffix("_hotline") if name != "hotline" else "baseline"
            rows.append(
                {
                    "group": GROUP_LABELS.get(file, file),
                    "experiment": file,
                    "scenario": name,
                    "label": labels.get(base, base.replace("_", " + ")),
                    "hollow": hotline_twin,
                    "hollow_meaning": "the same channels plus the 12317 hotline" if hotline_twin else None,
                    "identification_cost": (total - transfers) / household_years,
                    "total_cost": total / household_years,
                    "exclusion_error": headline(result)["exclusion_error_mean"],
                }
            )
    return pd.DataFrame(rows)


def _fig_cost(ctx: _Context, spec: "FigureSpec"):
    from .plots import plot_cost_vs_exclusion

    points = cost_points({file: ctx.run(file) for file in spec.experiments})
    fig = plot_cost_vs_exclusion(points, title=spec.title)
    what = (
        "Each scenario of the two experiment files is one point: its mean exclusion error over the months with a "
        "register against its cost per household and year, summed over the reported period; an open marker is the "
        "channels.toml scenario beside it with the hotline added. Left: assessments, "
        "cadre visits, verifications and the data system; right: the same plus cash transfers (policy.cost, "
        "policy.support.transfer)."
    )
    return fig, what, ctx.provenance(spec)


#: the model the speed figure times: the household month step of the one-time model, which the engine,
#: the Mesa model and the plain NumPy step (benchmarks/numpy_step.py) all implement
PERF_OVERRIDES = {
    "simulation.burn_in_years": 1,
    "simulation.start": "2013-01",
    "simulation.end": "2013-12",
    "policy.registration.month": "2013-10",
    **ONE_TIME_THRESHOLD,
}


def _perf_config(households: int):
    from .config import load_config

    return load_config(None, overrides={"population.households": int(households), **PERF_OVERRIDES})


def load_numpy_step(benchmarks: Path | None):
    """``benchmarks/numpy_step.py`` as a module, or ``None`` (and why) when it is not there."""
    if benchmarks is None:
        return None, "NumPy line left out: no benchmarks folder given"
    path = Path(benchmarks) / "numpy_step.py"
    if not path.is_file():
        return None, f"NumPy line left out: {path} not found (it ships with the repository, not the package)"
    name = "_povsim_benchmarks_numpy_step"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # a broken benchmark must not stop the figures: say why the line is missing
        sys.modules.pop(name, None)
        return None, f"NumPy line left out: importing {path} failed ({type(err).__name__}: {err})"
    return module, ""


def _engine(cfg) -> Callable[[], Any]:
    """Build the engine's population; return its month step."""
    from .engine import Simulation

    return Simulation(cfg).step


def _engine_one_thread(cfg) -> Callable[[], Any]:
    """The engine's month step on one thread: beside the one-thread NumPy step, and unhurt by a busy machine."""
    import numba

    from .engine import Simulation

    step = Simulation(cfg).step

    def one_thread() -> Any:
        previous = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            return step()
        finally:
            numba.set_num_threads(previous)

    return one_thread


def _mesa(cfg) -> Callable[[], Any]:
    """Build the Mesa model (one agent per household); return its month step."""
    from .mesa import PovertyModel

    return PovertyModel(cfg).step


def _numpy(module) -> Callable[[Any], Callable[[], Any]]:
    """The plain NumPy step of ``benchmarks/numpy_step.py``, on a population built by povsim."""
    from .population import build_population
    from .rng import split_seed
    from .rules import make_params
    from .timeline import Timeline

    def make(cfg) -> Callable[[], Any]:
        hh = build_population(cfg).households
        params = make_params(cfg)
        k0, k1 = split_seed(cfg.seed)
        tl = Timeline.from_config(cfg)
        month = [tl.first]

        def step() -> Any:
            m = month[0]
            month[0] += 1
            return module.month_step(hh, 0, m, tl.line(m), params, k0, k1)

        return step

    return make


def _timed(make: Callable[[Any], Callable[[], Any]], households: int, months: int) -> dict:
    """Seconds to build and to step ``months`` months, and peak traced bytes for a build and one month."""
    cfg = _perf_config(households)
    gc.collect()
    tracemalloc.start()
    try:
        make(cfg)()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    gc.collect()
    t0 = time.perf_counter()
    step = make(cfg)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(months):
        step()
    run = max(time.perf_counter() - t0, 1e-9)
    del step
    gc.collect()
    return {
        "households": households,
        "build_s": build,
        "step_s": run,
        "hh_months_per_s": households * months / run,
        "bytes_per_household": peak / households,
    }


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def measure_performance(scale: Scale, benchmarks: Path | None, log: Callable[[str], None] = lambda s: None):
    """Time the engine, the plain NumPy step and the Mesa model at the scale's sizes.

    Returns ``(table, info)``: one row per implementation and size (``implementation``,
    ``households``, ``build_s``, ``step_s``, ``hh_months_per_s``, ``bytes_per_household``)
    and a dict describing the measurement (CPU, threads, months, notes on lines left out).
    Speed is household-months per second of stepping (the population build is timed
    apart and left out); memory is the peak traced by ``tracemalloc`` (Python objects and
    NumPy arrays, not Numba's internal scratch space) while building and stepping one month.
    """
    import pandas as pd

    import numba

    load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None  # before we add to it
    months = scale.months
    notes = []
    threads = numba.get_num_threads()
    plans: list[tuple[str, Callable, tuple[int, ...]]] = [("Engine (Numba, 1 thread)", _engine, scale.engine_sizes)]
    if threads > 1:
        plans = [
            (f"Engine (Numba, {threads} threads)", _engine, scale.engine_sizes),
            ("Engine (Numba, 1 thread)", _engine_one_thread, scale.engine_sizes),
        ]
    module, why = load_numpy_step(benchmarks)
    if module is None:
        notes.append(why)
    else:
        plans.append(("NumPy step (vectorised, 1 thread)", _numpy(module), scale.numpy_sizes))
    try:
        import povsim.mesa  # noqa: F401

        plans.append(("Mesa model (one agent per household)", _mesa, scale.mesa_sizes))
    except ImportError as err:
        notes.append(f"Mesa line left out: {err}")
    rows = []
    for label, make, sizes in plans:
        make(_perf_config(50))()  # compile or load from cache, outside the timing
        for n in sizes:
            row = _timed(make, int(n), months)
            log(f"  {label}: {n:,} households, {row['hh_months_per_s']:,.0f} household-months/s, "
                f"{row['bytes_per_household']:,.0f} bytes/household")
            rows.append({"implementation": label, **row})
    info = {
        "load_average": load,
        "cpu": _cpu(),
        "logical_cpus": os.cpu_count(),
        "numba_threads": numba.get_num_threads(),
        "months": months,
        "config": "one-time model, household month step (povsim.figures.PERF_OVERRIDES)",
        "seed": _perf_config(1).seed,
        "sizes": {label: list(sizes) for label, _, sizes in plans},
        "notes": notes,
    }
    return pd.DataFrame(rows), info


def _fig_performance(ctx: _Context, spec: "FigureSpec"):
    from .plots import plot_performance

    table, info = measure_performance(ctx.scale, ctx.benchmarks, log=ctx.log)
    note = "; ".join(info["notes"])
    fig = plot_performance(table, title=spec.title, note=note)
    what = (
        f"Measured while the figures were made (not read from a file): the engine on all its threads and on one, "
        "the plain NumPy step (one thread) and the Mesa model each build a population and step "
        f"{info['months']} months of the household month step (shocks, income, poverty; the one-time "
        "model, which all of them implement, with no rule active in the timed months): the same model, the engine "
        "and Mesa bit for bit, the NumPy step up to rare last-bit differences (benchmarks/README.md). "
        "Speed: household-months per second of stepping, the build left out. Memory: peak bytes traced by "
        "Python's tracemalloc while building and stepping one month, per household. Wall-clock timings share the "
        f"machine with whatever else runs: the 1-minute load average was {info['load_average']} on "
        f"{info['logical_cpus']} logical CPUs when measuring began."
        + (f" {note}." if note else "")
    )
    keys = ("cpu", "logical_cpus", "numba_threads", "load_average", "months", "config", "seed", "sizes")
    measured = {k: info[k] for k in keys}
    results = table.round({"build_s": 4, "step_s": 4, "hh_months_per_s": 0, "bytes_per_household": 1})
    return fig, what, ctx.provenance(spec, measured=measured, notes=info["notes"],
                                     results=results.to_dict(orient="records"))


@dataclass(frozen=True)
class FigureSpec:
    """One figure: its number, file, title, the experiment files it is made from, and its builder."""

    number: int
    name: str
    title: str
    experiments: tuple[str, ...]
    build: Callable = field(repr=False)

    @property
    def file(self) -> str:
        return f"{self.name}.png"


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec(1, "errors_by_rule", "Exclusion and inclusion error under each identification rule",
               ("onetime_vs_dynamic.toml",), _fig_errors_by_rule),
    FigureSpec(2, "channels", "Contribution of each channel and its detection delay",
               ("china_2014_2020.toml",), _fig_channels),
    FigureSpec(3, "headcount_vs_official", "Model against the official poverty headcount, 2013-2020",
               ("china_2014_2020.toml",), _fig_headcount),
    FigureSpec(4, "cost_vs_exclusion", "Cost against exclusion error, by rule and channel setting",
               ("onetime_vs_dynamic.toml", "channels.toml"), _fig_cost),
    FigureSpec(5, "performance", "Engine speed and memory against population size, beside NumPy and Mesa",
               (), _fig_performance),
)

FIGURE_NAMES = tuple(f.name for f in FIGURES)


def _spec(name: str) -> FigureSpec:
    for f in FIGURES:
        if f.name == name:
            return f
    raise ValueError(f"unknown figure {name!r}; allowed: {', '.join(FIGURE_NAMES)}")


# --------------------------------------------------------------------------------------
# Building everything, and the index page
# --------------------------------------------------------------------------------------


def build_figures(
    out: str | Path = "docs/figures",
    scale: Scale = FULL,
    experiments: str | Path = "experiments",
    benchmarks: str | Path | None = None,
    only: list[str] | tuple[str, ...] | None = None,
    log: Callable[[str], None] | None = None,
    command: str | None = None,
) -> list[Path]:
    """Make the figures (all, or those named in ``only``) into ``out`` and rewrite its ``index.md``.

    ``experiments`` is the folder of experiment files; ``benchmarks`` the folder holding
    ``numpy_step.py`` (default: ``benchmarks/`` beside ``experiments``).  Every
    experiment file needed is read and validated before anything runs: a missing file
    or a bad key raises :class:`~povsim.config.ConfigError` and nothing is written.
    ``command`` is recorded in each figure's provenance (default: the ``povsim figures``
    command line that gives ``scale``).  Returns the paths written (figures, then the index).
    """
    from .config import ConfigError

    log = log or (lambda s: None)
    out = Path(out)
    experiments = Path(experiments)
    if not experiments.is_dir():
        raise ConfigError(
            f"experiments folder not found: {str(experiments)!r}; run from the repository root or pass "
            "--experiments DIR"
        )
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"output path {str(out)!r} exists and is not a folder")
    if benchmarks is None:
        benchmarks = experiments.resolve().parent / "benchmarks"
    specs = [_spec(n) for n in dict.fromkeys(only)] if only else list(FIGURES)
    if scale.months < 1:
        raise ValueError(f"scale.months = {scale.months}: must be at least 1")
    if command is None:
        command = {"full": "povsim figures", "quick": "povsim figures --quick"}.get(
            scale.name, f"povsim.figures.build_figures(scale={scale!r})"
        )
    ctx = _Context(experiments, scale, Path(benchmarks), log, command)
    for spec in specs:  # validate every experiment file before any run
        for file in spec.experiments:
            ctx.load(file)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in specs:
        log(f"figure {spec.number} ({spec.name}): {spec.title}")
        t0 = time.perf_counter()
        fig, what, prov = spec.build(ctx, spec)
        caption = f"Figure {spec.number}. {spec.title}. {what} {provenance_text(prov)}"
        written.append(save_figure(fig, out / spec.file, spec.title, caption, prov))
        log(f"  wrote {out / spec.file} ({time.perf_counter() - t0:.1f} s)")
    written.append(write_index(out))
    return written


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def index_markdown(folder: str | Path) -> str:
    """``index.md`` for the figures in ``folder``, written from each PNG's own metadata."""
    folder = Path(folder)
    lines = [
        "# Figures",
        "",
        "Generated by `povsim figures` from the figures' own PNG metadata; do not edit by hand.",
        "Each figure is rebuilt from the experiment files in `experiments/` with one command",
        "(see the [students' guide](../guide-students.md)); its caption, drawn on the figure and repeated",
        "here, and its PNG metadata say which experiment file, seed, population and povsim version made it, and when.",
        "",
    ]
    missing = []
    for spec in FIGURES:
        path = folder / spec.file
        if not path.is_file():
            missing.append(spec)
            continue
        meta = read_figure(path)
        prov = meta["provenance"]
        lines += [f"## Figure {spec.number}. {meta['title']}", "", f"![{meta['title']}]({spec.file})", ""]
        lines += [meta["caption"], ""]
        lines += ["| provenance | |", "|---|---|"]
        for e in prov.get("experiments", []):
            lines.append(
                f"| experiment | `{e['file']}`: seed {e['seed']}, {e['households']:,} households, "
                f"{len(e['scenarios'])} scenario(s) ({', '.join(e['scenarios'])}), {e['reported']}, "
                f"{e['burn_in_years']} burn-in year(s) |"
            )
        m = prov.get("measured")
        if m:
            lines.append(f"| measured on | {_md_escape(m['cpu'])}, {m['logical_cpus']} logical CPUs, "
                         f"{m['numba_threads']} Numba threads, load average {m['load_average']} at the start |")
            lines.append(f"| measured | {m['months']} months of {_md_escape(m['config'])}, seed {m['seed']} |")
            for label, sizes in m["sizes"].items():
                lines.append(f"| {_md_escape(label)} | {', '.join(f'{s:,}' for s in sizes)} households |")
        for note in prov.get("notes", []):
            lines.append(f"| note | {_md_escape(note)} |")
        lines += [
            f"| made by | `{prov['command']}`, povsim {prov['povsim_version']}, Python {prov['python']}, "
            f"{prov['scale']} scale |",
            f"| date | {prov['created']} |",
            f"| file | `{spec.file}`, {meta['size'][0]} x {meta['size'][1]} pixels |",
            "",
        ]
    if missing:
        lines += ["## Not built yet", ""]
        lines += [f"- Figure {s.number}. {s.title} (`{s.file}`): run `povsim figures`." for s in missing]
        lines.append("")
    return "\n".join(lines)


def write_index(folder: str | Path) -> Path:
    """Rewrite ``folder/index.md`` from the figures there (atomically); return its path."""
    folder = Path(folder)
    path = folder / INDEX
    _write_text_atomically(path, index_markdown(folder))
    return path
