"""Every figure of the documentation, rebuilt from the experiment files (``povsim figures``).

This module owns the figures in ``docs/figures/``: which experiment each comes from,
how it is run, and the provenance each figure carries.  :func:`build_figures` runs
the experiment files in ``experiments/`` (each once, however many figures use it),
draws the figures with :mod:`povsim.plots`, writes each PNG atomically (a temporary
file beside it, then a rename, :mod:`povsim.files`) and rewrites ``index.md`` beside them:
into ``results/figures/`` by default, into ``docs/figures/`` only when asked
(``povsim figures --docs``).  ``manifest.json`` in that folder records every file it wrote
there with its checksum; a file of the same name it did not write, or one changed since,
is never overwritten: the build is refused before anything runs
(:func:`check_overwritable`).  The experiments folder is read for its TOML files only.

The speed figure is drawn from a saved measurement, not measured here: a JSON file
(``docs/figures/performance.json`` in the repository) written by
``python benchmarks/speed_figure.py``, which times the engine, the plain NumPy step
and the Mesa model and records the machine it ran on.  This module reads that file
(:func:`read_measurement`) and imports nothing from ``benchmarks/``.

Every figure says where it came from twice:

* in its caption, drawn on the figure: the experiment file, seed, households, povsim
  version, date and scale (for the speed figure: the measurement file, the command that
  measured, its date and the machine);
* in its PNG metadata (``Title``, ``Description`` = the caption, ``Source``,
  ``Software``, ``Creation Time``, and ``Provenance``: the same facts as JSON),
  which :func:`read_figure` reads back.  ``index.md`` is written from that
  metadata alone (:func:`index_markdown`), so it always matches the PNGs beside it.

Scale: :data:`FULL` runs each experiment file as written; :data:`QUICK` caps every
experiment at 20,000 households (about a minute on 2 cores once Numba's cache is
warm).  A :class:`Scale` of your own (tiny, in the tests) works the same way.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import textwrap
import time
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .files import atomic_file, sha256, write_text_atomically

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
    "read_measurement",
    "MEASUREMENT",
    "with_caption",
    "save_figure",
    "png_with_caption",
    "read_figure",
    "index_markdown",
    "write_index",
    "figures_manifest",
    "check_overwritable",
    "FIGURES_MANIFEST",
]

INDEX = "index.md"
#: the record ``povsim figures`` keeps in its output folder: every file it wrote there, with its checksum
FIGURES_MANIFEST = "manifest.json"
FIGURES_KIND = "povsim figures"
#: the speed measurement the speed figure is drawn from, beside the experiments folder
#: (written by ``python benchmarks/speed_figure.py``)
MEASUREMENT = Path("docs") / "figures" / "performance.json"
#: what a measurement file says it is
MEASUREMENT_KIND = "povsim speed measurement"
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
    The speed figure is drawn from its measurement file at any scale.
    """

    name: str
    households: int | None = None
    cap: bool = False

    def households_for(self, file_households: int) -> int:
        """Households to run for an experiment file that asks for ``file_households``."""
        if self.households is None:
            return file_households
        return min(file_households, self.households) if self.cap else self.households


#: every experiment file at its own scale
FULL = Scale("full")

#: at most 20,000 households per experiment
QUICK = Scale("quick", households=20_000, cap=True)


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
    system = f", {m['system']}" if m.get("system") else ""
    return (
        f"Measured by `{m.get('command', '?')}` (povsim {m.get('povsim_version', '?')}, "
        f"{str(m.get('created', '?'))[:10]}) on {m.get('cpu', 'an unknown CPU')} ({m.get('logical_cpus', '?')} "
        f"logical CPUs{system}) with "
        f"{m.get('numba_threads', '?')} Numba threads (config: {m.get('config', '?')}, seed {m.get('seed', '?')}); "
        f"drawn from {prov.get('measurement', '?')} by {made}."
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
        "Source": ", ".join(sources) if sources else provenance.get("measurement", "povsim figures"),
        "Creation Time": provenance["created"],
        "Provenance": json.dumps(provenance, sort_keys=True),
    }
    with atomic_file(path) as tmp:
        captioned.savefig(tmp, format="png", dpi=DPI, metadata=metadata)
    return path


def png_with_caption(fig, title: str, caption: str, provenance: dict, dpi: int = DPI) -> bytes:
    """``fig`` with ``caption`` beneath it as PNG bytes, ``title``, caption and provenance in the metadata.

    The metadata are those of :func:`save_figure` (read back by :func:`read_figure`);
    ``provenance`` needs ``povsim_version`` and ``created``.  For figures written by
    another writer (an experiment's folder, a run's ``errors.png``).
    """
    from io import BytesIO

    metadata = {
        "Title": title,
        "Description": caption,
        "Author": "povsim",
        "Software": f"povsim {provenance['povsim_version']}",
        "Source": str(provenance.get("source", "povsim")),
        "Creation Time": provenance["created"],
        "Provenance": json.dumps(provenance, sort_keys=True, default=str),
    }
    buffer = BytesIO()
    with_caption(fig, caption, dpi=dpi).savefig(buffer, format="png", dpi=dpi, metadata=metadata)
    return buffer.getvalue()


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


def _shown(path: Path) -> str:
    """``path`` as a caption names it: relative to the working folder when inside it."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def read_measurement(path: str | Path) -> dict[str, Any]:
    """A speed measurement written by ``python benchmarks/speed_figure.py``, checked.

    Raises :class:`~povsim.config.ConfigError` when the file is missing, is not JSON,
    or lacks what the speed figure and its caption need (the machine, the command, the
    date, the sizes, the results).
    """
    from .config import ConfigError

    path = Path(path)
    make = "make it with `python benchmarks/speed_figure.py` from the repository root, or pass --measurement FILE"
    if not path.is_file():
        raise ConfigError(f"speed measurement not found: {str(path)!r} (the performance figure needs it); {make}")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"speed measurement {str(path)!r} is not readable JSON ({err}); {make}") from None
    if not isinstance(record, dict) or record.get("kind") != MEASUREMENT_KIND:
        raise ConfigError(f"{str(path)!r} is not a speed measurement (no \"kind\": \"{MEASUREMENT_KIND}\"); {make}")
    needed = {
        "": ("command", "created", "povsim_version", "python", "machine", "months", "config", "seed", "sizes", "notes",
             "results"),
        "machine": ("cpu", "logical_cpus", "numba_threads", "load_average", "system"),
    }
    machine = record.get("machine") if isinstance(record.get("machine"), dict) else {}
    missing = [k for k in needed[""] if k not in record]
    missing += [f"machine.{k}" for k in needed["machine"] if k not in machine]
    columns = ("implementation", "households", "hh_months_per_s", "bytes_per_household")
    results = record.get("results")
    if not missing and (not isinstance(results, list) or not results
                        or not all(isinstance(r, dict) and all(c in r for c in columns) for r in results)):
        missing.append(f"results (a list of rows with {', '.join(columns)})")
    if missing:
        raise ConfigError(f"speed measurement {str(path)!r} lacks {', '.join(missing)}; {make}")
    return record


# --------------------------------------------------------------------------------------
# Running the experiments behind the figures
# --------------------------------------------------------------------------------------


class _Context:
    """Runs each experiment file once, at the chosen scale, and remembers its results."""

    def __init__(self, experiments: Path, scale: Scale, measurement: Path, log: Callable[[str], None],
                 command: str):
        self.experiments = experiments
        self.command = command
        self.scale = scale
        self.measurement = measurement
        self.log = log
        self.created = _now().isoformat()
        self._loaded: dict[str, Any] = {}
        self._measurement: dict[str, Any] | None = None
        self._results: dict[str, Any] = {}

    def relative(self, file: str) -> str:
        return f"{self.experiments.name}/{file}"

    @property
    def shown_measurement(self) -> str:
        """The speed measurement file, as captions name it."""
        return _shown(self.measurement)

    def measured(self) -> dict[str, Any]:
        """The speed measurement the speed figure is drawn from (:func:`read_measurement`), read once."""
        if self._measurement is None:
            self._measurement = read_measurement(self.measurement)
        return self._measurement

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
    "plus_reviews": "+ exits (from 2014-12) and annual reviews (from 2017-10)",
    "plus_channels": "+ continuous channels and hotline (from 2017)",
}


def _fig_errors_by_rule(ctx: _Context, spec: "FigureSpec"):
    from .plots import plot_errors_by_rule, policy_events

    file = spec.experiments[0]
    res = ctx.run(file)
    tidy = res.metrics()
    fig = plot_errors_by_rule(tidy, labels=RULE_LABELS, events=policy_events(res.experiment.configs.values()),
                              title=spec.title)
    replicates = int(tidy.groupby("scenario")["replicate"].nunique().max()) if "replicate" in tidy else 1
    spread = (
        f"each line the mean of {replicates} replicates, the band around it its 95% interval (t-based); "
        if replicates > 1 else ""
    )
    what = (
        "Monthly exclusion error (poor households not registered / poor households) and inclusion error "
        "(registered households not poor / registered households) under each identification rule; each "
        "scenario adds one rule to the one above it, and all meet the same shocks (common random numbers); "
        f"{spread}grey span: the look-back window; dotted: the registration, first exits, first review and first channel month."
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

    from .components.poverty import describe as describe_poverty
    from .plots import plot_headcount_vs_official

    file = spec.experiments[0]
    baseline = ctx.run(file).by_scenario()["baseline"]
    m = baseline.metrics
    official = official_headcount()
    years = set(m["year"])
    shown = official[official["year"].isin(years)].reset_index(drop=True)
    fig = plot_headcount_vs_official(m, shown, title=spec.title)
    december = m[m["month"].dt.month == 12].set_index("year")["headcount_rate"]
    pairs = ", ".join(
        f"{int(r.year)} {100 * december.get(r.year, np.nan):.1f} vs {100 * r.incidence:.1f}" for r in shown.itertuples()
    )
    what = (
        "Share of rural people living in poor households (poverty on "
        f"{describe_poverty(baseline.config.poverty)}): the model (monthly, and in December) against the "
        "official year-end incidence, "
        f"{official.attrs['source']}; hollow squares are derived from adjacent years. Model vs official, %: "
        f"{pairs}. The experiment's fitted parameters were fitted to the 2013-2019 values with poverty on the last "
        "12 months' income net of medical spending, not on this measure (docs/calibration.md); 2020 is not a target."
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


def _fig_performance(ctx: _Context, spec: "FigureSpec"):
    import pandas as pd

    from .plots import plot_performance

    record = ctx.measured()
    machine = record["machine"]
    table = pd.DataFrame(record["results"])
    note = "; ".join(record["notes"])
    fig = plot_performance(table, title=spec.title, note=note)
    what = (
        "A saved measurement, not one made while the figures were drawn: the engine on all its threads and on one, "
        "the plain NumPy step (one thread) and the Mesa model each build a population and step "
        f"{record['months']} months of the household month step (shocks, income, poverty; the one-time "
        "model, which all of them implement, with no rule active in the timed months): the same model, the engine "
        "and Mesa bit for bit, the NumPy step up to rare last-bit differences (benchmarks/README.md). "
        "Speed: household-months per second of stepping, the build left out. Memory: peak bytes traced by "
        "Python's tracemalloc while building and stepping one month, per household. Wall-clock timings share the "
        f"machine with whatever else runs: the 1-minute load average was {machine['load_average']} on "
        f"{machine['logical_cpus']} logical CPUs when measuring began."
        + (f" {note}." if note else "")
    )
    measured = {
        **{k: machine[k] for k in ("cpu", "logical_cpus", "numba_threads", "load_average", "system")},
        **{k: record.get(k) for k in ("numpy", "numba", "mesa")},
        **{k: record[k] for k in ("command", "created", "povsim_version", "python", "months", "config", "seed",
                                  "sizes")},
    }
    return fig, what, ctx.provenance(spec, measurement=ctx.shown_measurement, measured=measured,
                                     notes=record["notes"], results=record["results"])


@dataclass(frozen=True)
class FigureSpec:
    """One figure: its number, file, title, the experiment files it is made from, and its builder.

    ``measured``: drawn from the speed measurement file rather than from experiments.
    """

    number: int
    name: str
    title: str
    experiments: tuple[str, ...]
    build: Callable = field(repr=False)
    measured: bool = False

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
               (), _fig_performance, measured=True),
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
    out: str | Path = "results/figures",
    scale: Scale = FULL,
    experiments: str | Path = "experiments",
    measurement: str | Path | None = None,
    only: list[str] | tuple[str, ...] | None = None,
    log: Callable[[str], None] | None = None,
    command: str | None = None,
) -> list[Path]:
    """Make the figures (all, or those named in ``only``) into ``out`` and rewrite its ``index.md``.

    ``experiments`` is the folder of experiment files; ``measurement`` the speed
    measurement the speed figure is drawn from (default: :data:`MEASUREMENT` beside
    ``experiments``, written by ``python benchmarks/speed_figure.py``).  Every experiment
    file needed, and the measurement when the speed figure is made, is read and
    validated before anything runs: a missing file or a bad key raises
    :class:`~povsim.config.ConfigError` and nothing is written.
    ``command`` is recorded in each figure's provenance (default: the ``povsim figures``
    command line that gives ``scale``).  A file of the same name in ``out`` that ``povsim figures`` did
    not write there, or that changed since (:func:`check_overwritable`), raises ``FileExistsError``
    before anything runs.  Returns the paths written (figures, then the index); ``manifest.json``
    records them, with their checksums.
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
    if measurement is None:
        measurement = experiments.parent / MEASUREMENT
    specs = [_spec(n) for n in dict.fromkeys(only)] if only else list(FIGURES)
    check_overwritable(out, [spec.file for spec in specs] + [INDEX])  # before anything runs
    if command is None:
        command = {"full": "povsim figures", "quick": "povsim figures --quick"}.get(
            scale.name, f"povsim.figures.build_figures(scale={scale!r})"
        )
    ctx = _Context(experiments, scale, Path(measurement), log, command)
    for spec in specs:  # validate every experiment file, and the measurement, before any run
        for file in spec.experiments:
            ctx.load(file)
        if spec.measured:
            ctx.measured()
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
    _record_written(out, [path.name for path in written], command)
    return written


def figures_manifest(folder: str | Path) -> dict[str, Any] | None:
    """The record of what ``povsim figures`` wrote in ``folder`` (its ``manifest.json``), or None if it has none."""
    try:
        manifest = json.loads((Path(folder) / FIGURES_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("kind") != FIGURES_KIND or not isinstance(manifest.get("files"), dict):
        return None
    return manifest


def check_overwritable(folder: str | Path, names: list[str]) -> None:
    """Refuse (``FileExistsError``, one line naming the file) to write ``names`` into ``folder`` where one of them,
    or its ``manifest.json``, is there and was not written by ``povsim figures`` as it is now.

    A file of the same name may be replaced only when the folder's manifest lists it with the
    checksum it has: one the user put there, or edited since, is never overwritten.
    """
    import os

    folder = Path(folder)
    if not folder.is_dir():
        return
    manifest = figures_manifest(folder)
    advice = "move it, or choose another --out"
    record = folder / FIGURES_MANIFEST
    if os.path.lexists(record) and manifest is None:
        raise FileExistsError(f"{record}: exists and is not the record povsim figures keeps of its files; {advice}")
    for name in names:
        path = folder / name
        if not os.path.lexists(path):
            continue
        if manifest is None:
            raise FileExistsError(f"{path}: exists and povsim figures did not write it (no {FIGURES_MANIFEST} in "
                                  f"{folder}); {advice}")
        digest = manifest["files"].get(name)
        if digest is None:
            raise FileExistsError(f"{path}: exists and povsim figures did not write it (not in {record}); {advice}")
        if path.is_symlink() or not path.is_file() or sha256(path) != digest:
            raise FileExistsError(f"{path}: changed since povsim figures wrote it (its checksum differs from "
                                  f"{record}'s); {advice}")


def _record_written(folder: Path, names: list[str], command: str) -> Path:
    """Rewrite ``folder``'s manifest: the files written now and those of earlier runs still as they were written."""
    from . import __version__

    earlier = (figures_manifest(folder) or {}).get("files", {})
    files = {name: digest for name, digest in earlier.items()
             if name not in names and (folder / name).is_file() and sha256(folder / name) == digest}
    files.update({name: sha256(folder / name) for name in names})
    manifest = {"kind": FIGURES_KIND, "povsim_version": __version__, "command": command,
                "created": _now().isoformat(timespec="seconds"), "files": dict(sorted(files.items()))}
    return write_text_atomically(folder / FIGURES_MANIFEST, json.dumps(manifest, indent=2) + "\n")


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
        "The speed figure is drawn from a saved measurement (the repository's is `docs/figures/performance.json`;",
        "`python benchmarks/speed_figure.py` makes a new one); its caption names the file, the command that measured,",
        "the date and the machine.",
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
            lines.append(f"| measurement | `{prov['measurement']}` |")
            lines.append(f"| measured by | `{m['command']}`, povsim {m['povsim_version']}, Python {m['python']}, "
                         f"{m['created']} |")
            system = f"{_md_escape(m['system'])}, " if m.get("system") else ""
            lines.append(f"| measured on | {_md_escape(m['cpu'])}, {m['logical_cpus']} logical CPUs, {system}"
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
    write_text_atomically(path, index_markdown(folder))
    return path
