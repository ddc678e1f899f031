"""Hyper-parameter search chosen on validation only, then one refit on train + validation and one test evaluation.

``tune(cfg, TuneConfig(...), out)`` runs an Optuna study over the model's declared search space: every trial builds
the model with the trial's values, fits it on the split's training part and measures ``metric`` on the validation
part (full ranking, the evaluator's path). The test part is never looked at during the search. Trainer-based models
report their per-epoch validation metric to the study, so a trial whose curve falls behind the others' is pruned
(Optuna's median rule), and the epoch at which the chosen trial peaked becomes the refit's epoch count.

Search spaces are declared next to each model's config, as the class attribute ``search_space``: a dict from a
config field (``"train.lr"`` for a field of the Trainer's table) to a spec::

    ("float", low, high)       uniform float             ("log", low, high)       log-uniform float
    ("int", low, high)         uniform int (inclusive)   ("logint", low, high)    log-uniform int
    ("choice", (a, b, ...))    one of the values

A field given in the run config (``--set model.l2=100``) is fixed and left out of the search. The grid sampler
takes ``grid_points`` values per numeric range (geometric for log ranges) and every choice.

With ``storage`` (any SQLAlchemy URL, e.g. ``sqlite:///study.db``) several processes or machines share one study:
each runs trials until the study holds ``trials`` finished (complete or pruned) trials.

The tune run folder (a :class:`~recforge.experiments.folder.RunFolder` of kind ``"tune"``) holds::

    config.toml    {"run": the base RunConfig, "tune": the TuneConfig}
    trials.csv     the study table: one row per trial (number, state, value, seconds, best epoch, parameters)
    chosen.toml    the chosen RunConfig with ``refit = true`` (``recforge train --config chosen.toml`` re-runs it)
    preset.toml    the same settings as a shipped preset file, with the producing command and figures
    history.png    optimisation history (every trial's validation value and the best so far)
    importance.png parameter importance (fANOVA over the finished trials; absent with fewer than two)
    report.html    all of the above on one self-contained page
    refit/         with ``refit``: a recommender run folder fitted on train + validation, evaluated once on test
    metrics.json   with ``refit``: that run's test metrics (mean and 95% CI)
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import html
import io
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tomli_w

from recforge.config import check_choices, dump_toml, to_dict
from recforge.errors import ConfigError, DataError
from recforge.evaluate.evaluator import evaluate
from recforge.experiments.folder import RunFolder
from recforge.experiments.presets import preset_text
from recforge.experiments.provenance import dataset_files
from recforge.experiments.runs import (
    Run,
    RunConfig,
    bind_side_information,
    build_model,
    default_out,
    load_data,
    make_split,
    refit_split,
    seed_everything,
    train_run,
)
from recforge.metrics.ranking import parse_metric
from recforge.models.base import TrainerFit
from recforge.registry import get_model

log = logging.getLogger(__name__)

Spec = tuple[Any, ...]
KINDS = ("float", "log", "int", "logint", "choice")


@dataclass(frozen=True)
class TuneConfig:
    """How to search: the validation metric, the sampler, the budget, pruning, the shared storage, the refit."""

    metric: str = "ndcg@10"  #: validation metric to maximise (full ranking)
    sampler: Literal["tpe", "grid", "random"] = "tpe"  #: Optuna sampler
    trials: int = 20  #: finished (complete or pruned) trials the study should hold, over all processes sharing it
    timeout_s: float = 0.0  #: this process starts no trial after this many seconds (0 = no limit)
    grid_points: int = 4  #: values per numeric parameter for the grid sampler
    pruner: Literal["median", "none"] = "median"  #: prunes Trainer-based trials by their validation curves
    storage: str | None = None  #: SQLAlchemy URL of a shared study (e.g. sqlite:///study.db); None: in memory
    study_name: str | None = None  #: the study's name in the storage (default: <model>-<data>)
    refit: bool = False  #: fit the chosen setting on train + validation and evaluate it once on test
    #: settings a new study tries first (e.g. a point an earlier validation search chose), each {key: value} over
    #: searched keys; the sampler proposes the remaining trials
    enqueue: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        check_choices(self, prefix="tune.")
        parse_metric(self.metric)
        if self.trials < 1:
            raise ConfigError(f"tune.trials must be >= 1, got {self.trials}")
        if self.timeout_s < 0:
            raise ConfigError(f"tune.timeout_s must be >= 0, got {self.timeout_s}")
        if self.grid_points < 2:
            raise ConfigError(f"tune.grid_points must be >= 2, got {self.grid_points}")


@dataclass
class TuneResult:
    """What a study chose: the best validation value and parameters, the chosen run config (``refit = true``),
    the number of finished trials, the run folder, and the refit run when one was asked for."""

    path: Path
    best_value: float
    best_params: dict[str, Any]
    chosen: RunConfig
    n_finished: int
    refit_run: Run | None = None


# ---------------------------------------------------------------------------------------------- search spaces
def _field_type(config_class: type, key: str) -> None:
    """ConfigError unless ``key`` ("a" or "train.a") names a field of ``config_class`` (or of its train table)."""
    head, _, rest = key.partition(".")
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    if head not in fields:
        raise ConfigError(f"search space key {key!r}: {config_class.__name__} has no field {head!r}")
    if rest:
        inner = fields[head].default_factory() if fields[head].default_factory is not dataclasses.MISSING else None
        if not dataclasses.is_dataclass(inner) or rest not in {f.name for f in dataclasses.fields(inner)}:
            raise ConfigError(f"search space key {key!r}: no field {rest!r} in {config_class.__name__}.{head}")


def check_space(space: dict[str, Spec], config_class: type) -> None:
    """ConfigError for an unknown key, an unknown kind or bounds that are not ``low < high`` (``> 0`` for logs)."""
    for key, spec in space.items():
        _field_type(config_class, key)
        if not spec or spec[0] not in KINDS:
            raise ConfigError(f"search space {key!r}: kind must be one of {KINDS}, got {spec!r}")
        if spec[0] == "choice":
            if len(spec) != 2 or not isinstance(spec[1], tuple | list) or not spec[1]:
                raise ConfigError(f"search space {key!r}: ('choice', (values...)) expected, got {spec!r}")
            continue
        if len(spec) != 3 or not spec[1] < spec[2] or (spec[0] in ("log", "logint") and spec[1] <= 0):
            raise ConfigError(f"search space {key!r}: (kind, low, high) with low < high expected, got {spec!r}")


def _get(model: dict[str, Any], key: str) -> Any:
    node: Any = model
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _set(model: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A copy of the model table with ``key`` ("a" or "train.a") set to ``value``."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in model.items()}
    head, _, rest = key.partition(".")
    if rest:
        out.setdefault(head, {})[rest] = value
    else:
        out[head] = value
    return out


def search_space(cfg: RunConfig) -> dict[str, Spec]:
    """The model's declared search space minus the fields the run config fixes (checked)."""
    config_class = get_model(cfg.model["name"]).config_class
    declared = getattr(config_class, "search_space", None)  # a class attribute of plain data, not a capability
    if declared is None:
        raise ConfigError(f"model {cfg.model['name']!r} declares no search space (add `search_space` to "
                          f"{config_class.__name__}, see recforge.experiments.tune)")
    space = dict(declared)
    check_space(space, config_class)
    return {k: v for k, v in space.items() if _get(cfg.model, k) is None}


def grid_values(spec: Spec, points: int) -> list[Any]:
    """The values the grid sampler tries for one spec: every choice, or ``points`` values across the range."""
    kind = spec[0]
    if kind == "choice":
        return list(spec[1])
    low, high = spec[1], spec[2]
    values = np.geomspace(low, high, points) if kind in ("log", "logint") else np.linspace(low, high, points)
    if kind in ("int", "logint"):
        return sorted({int(round(v)) for v in values})
    return [float(f"{v:.6g}") for v in values]


def _suggest(trial: Any, key: str, spec: Spec) -> Any:
    kind = spec[0]
    if kind == "choice":
        return trial.suggest_categorical(key, list(spec[1]))
    if kind in ("int", "logint"):
        return trial.suggest_int(key, int(spec[1]), int(spec[2]), log=kind == "logint")
    return trial.suggest_float(key, float(spec[1]), float(spec[2]), log=kind == "log")


# ---------------------------------------------------------------------------------------------- the study
def _study(cfg: RunConfig, tc: TuneConfig, space: dict[str, Spec]) -> Any:
    import optuna  # lazy: only tuning needs it

    # A shared study gets a different sampler seed per process, so that processes do not propose the same points.
    seed = cfg.seed if tc.storage is None else (cfg.seed * 1_000_003 + os.getpid()) % 2**32
    if tc.sampler == "grid" and space:
        sampler: Any = optuna.samplers.GridSampler({k: grid_values(v, tc.grid_points) for k, v in space.items()},
                                                   seed=seed)
    elif tc.sampler == "tpe":
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(3, min(10, tc.trials // 3)))
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2) if tc.pruner == "median"
              else optuna.pruners.NopPruner())
    name = tc.study_name or f"{cfg.model['name']}-{Path(cfg.data['name']).stem}"
    return optuna.create_study(study_name=name, storage=tc.storage, sampler=sampler, pruner=pruner,
                               direction="maximize", load_if_exists=True)


def _trial_config(cfg: RunConfig, params: dict[str, Any], metric: str) -> RunConfig:
    """``cfg`` with the trial's parameters set; a Trainer-based model early-stops on the tuning metric unless the
    config names another."""
    model = dict(cfg.model)
    for key, value in params.items():
        model = _set(model, key, value)
    if issubclass(get_model(model["name"]), TrainerFit) and _get(model, "train.eval_metric") is None:
        model = _set(model, "train.eval_metric", metric)
    return dataclasses.replace(cfg, model=model, refit=False)


def _finished(study: Any) -> list[Any]:
    import optuna  # lazy: only tuning needs it

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return [t for t in study.get_trials(deepcopy=False) if t.state in states]


def tune(cfg: RunConfig, tc: TuneConfig, out: str | Path | None = None, *, command: str | None = None,
         on_trial: Callable[[dict[str, Any]], None] | None = None) -> TuneResult:
    """Search ``cfg.model``'s hyper-parameters on the validation part of ``cfg``'s split and write a tune run folder.

    ``command`` (the command line that ran this) goes into ``preset.toml``; ``on_trial(row)`` is called with each
    finished trial's table row (number, state, value, seconds, best_epoch, params) of this process.
    """
    import optuna  # lazy: only tuning needs it

    if cfg.refit:
        raise ConfigError("tune chooses on validation: the base config must not have refit = true")
    space = search_space(cfg)
    if out is None:
        run_out = default_out(cfg)
        out = run_out.with_name(f"tune-{run_out.name}")
    out = Path(out)
    seed_everything(cfg.seed)
    dataset = load_data(cfg)
    split = make_split(cfg, dataset.interactions)
    if split.valid is None:
        raise ConfigError(f"tuning needs a validation part; split {split.name} has none")
    study = _study(cfg, tc, space)
    for params in tc.enqueue if not study.get_trials(deepcopy=False) else ():
        if not params or set(params) - set(space):
            raise ConfigError(f"enqueued setting {params}: keys must be searched ones ({sorted(space)})")
        study.enqueue_trial(params)
    budget = 1 if not space else tc.trials  # nothing to search: one trial measures the fixed setting

    def objective(trial: Any) -> float:
        t0 = time.perf_counter()
        params = {k: _suggest(trial, k, spec) for k, spec in space.items()}
        tcfg = _trial_config(cfg, params, tc.metric)
        seed_everything(cfg.seed)
        model = build_model(tcfg)
        bind_side_information(model, dataset, split)
        if isinstance(model, TrainerFit):
            key = f"valid_{model.config.train.eval_metric}"

            def report(epoch: int, row: dict[str, float]) -> None:
                if key in row:
                    trial.report(row[key], epoch)
                    if trial.should_prune():
                        raise optuna.TrialPruned(f"pruned after epoch {epoch}: {key}={row[key]:.5f}")

            model.callbacks.append(report)
        try:
            model.fit(split.train, split.valid)
        finally:
            trial.set_user_attr("seconds", round(time.perf_counter() - t0, 3))
            trial.set_user_attr("pid", os.getpid())  # which process ran it (shared studies)
        if isinstance(model, TrainerFit) and model.train_result_ is not None:
            trial.set_user_attr("best_epoch", model.train_result_.best_epoch)
        value = evaluate(model, split, metrics=(tc.metric,), on="valid", batch_size=cfg.eval.batch_size,
                         exclude_seen=cfg.eval.exclude_seen, n_boot=0, seed=cfg.seed, progress=False).mean(tc.metric)
        log.info("trial %d: %s=%.5f with %s", trial.number, tc.metric, value, params)
        return value

    def announce(study: Any, trial: Any) -> None:
        if on_trial is not None:
            on_trial(_row(trial))

    callbacks: list[Any] = [optuna.study.MaxTrialsCallback(
        budget, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)), announce]
    remaining = budget - len(_finished(study))
    if remaining > 0:
        study.optimize(objective, n_trials=remaining, timeout=tc.timeout_s or None, callbacks=callbacks,
                       catch=(DataError,))
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        failed = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.FAIL]
        why = failed[0].system_attrs.get("fail_reason", "") if failed else "no trial finished within the budget"
        raise DataError(f"the study has no complete trial: {why}")
    best = study.best_trial
    chosen = _chosen(cfg, best, tc.metric)

    with RunFolder.create(out, kind="tune", name=cfg.model["name"], seed=cfg.seed,
                          config={"run": to_dict(cfg), "tune": to_dict(tc)}) as folder:
        rows = [_row(t) for t in study.get_trials(deepcopy=False)]
        _write_table(folder.path / "trials.csv", rows, list(space))
        dump_toml(to_dict(chosen), folder.path / "chosen.toml")
        plots = {"history.png": plot_history(rows, tc.metric)}
        importance = _importance(study, space)
        if importance:
            plots["importance.png"] = plot_importance(importance)
        for name, png in plots.items():
            (folder.path / name).write_bytes(png)
        refit_run = None
        if tc.refit:
            refit_run = train_run(chosen, out=folder.path / "refit", dataset=dataset, split=refit_split(split),
                                  progress=False)
            folder.write_metrics({"test": refit_run.metrics["test"]})
        about: dict[str, Any] = {"command": command or "", "metric": tc.metric, "valid": round(best.value, 6),
                                 "trials": len(_finished(study)), "sampler": tc.sampler}
        if refit_run is not None:
            about["test"] = round(refit_run.metrics["test"][tc.metric]["mean"], 6)
        (folder.path / "preset.toml").write_text(preset_text(chosen.model, True, about), encoding="utf-8")
        (folder.path / "report.html").write_text(
            _html(cfg, tc, rows, list(space), chosen, plots, importance, refit_run), encoding="utf-8")
        info = dict(getattr(dataset, "info", {}) or {})
        folder.finish(data_files=info.get("files") or dataset_files(info), split=split, extra={
            "model": cfg.model["name"], "dataset": cfg.data["name"], "split": split.summary(),
            "study": {"name": study.study_name, "storage": tc.storage, "finished": len(_finished(study)),
                      "best_trial": best.number, "best_valid": best.value, "best_params": best.params,
                      "importance": importance},
        })
    final = Run(out / "refit") if refit_run is not None else None
    return TuneResult(path=out, best_value=best.value, best_params=dict(best.params), chosen=chosen,
                      n_finished=len(_finished(study)), refit_run=final)


def _chosen(cfg: RunConfig, best: Any, metric: str) -> RunConfig:
    """The best trial's RunConfig for a refit: its parameters, and for Trainer-based models the epoch at which its
    validation curve peaked (there is no validation left to stop on)."""
    chosen = _trial_config(cfg, best.params, metric)
    epochs = best.user_attrs.get("best_epoch")
    model = chosen.model
    if epochs:
        model = _set(model, "train.epochs", int(epochs))
    return dataclasses.replace(chosen, model=model, refit=True)


def _row(trial: Any) -> dict[str, Any]:
    return {"number": trial.number, "state": trial.state.name.lower(), "value": trial.value,
            "seconds": trial.user_attrs.get("seconds"), "best_epoch": trial.user_attrs.get("best_epoch"),
            "params": dict(trial.params)}


def _write_table(path: Path, rows: list[dict[str, Any]], keys: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["number", "state", "value", "seconds", "best_epoch", *keys])
        for r in rows:
            w.writerow([r["number"], r["state"], "" if r["value"] is None else r["value"], r["seconds"] or "",
                        r["best_epoch"] or "", *(r["params"].get(k, "") for k in keys)])


def _importance(study: Any, space: dict[str, Spec]) -> dict[str, float] | None:
    """fANOVA importance of each searched parameter over the complete trials; None with fewer than two."""
    import optuna  # lazy: only tuning needs it

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if not space or len(complete) < 2:
        return None
    try:
        raw = optuna.importance.get_param_importances(study, params=list(space))
    except (RuntimeError, ValueError) as exc:  # e.g. a parameter that never varied
        log.info("no parameter importance: %s", exc)
        return None
    return {k: float(v) for k, v in raw.items()}


# ---------------------------------------------------------------------------------------------- plots and report
def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt  # lazy: plotting only

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _figure(w: float, h: float) -> tuple[Any, Any]:
    import matplotlib  # lazy: plotting only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(w, h))


def plot_history(rows: list[dict[str, Any]], metric: str) -> bytes:
    """Each complete trial's validation value by trial number, and the best value so far (PNG bytes)."""
    fig, ax = _figure(7, 4)
    done = [r for r in rows if r["state"] == "complete"]
    xs = [r["number"] for r in done]
    ys = [r["value"] for r in done]
    ax.scatter(xs, ys, s=18, label="trial")
    if ys:
        ax.step(xs, np.maximum.accumulate(ys), where="post", color="C3", label="best so far")
    pruned = [r["number"] for r in rows if r["state"] == "pruned"]
    if pruned:
        ax.scatter(pruned, [min(ys) if ys else 0.0] * len(pruned), marker="x", color="grey", label="pruned")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title("optimisation history")
    ax.legend()
    return _png(fig)


def plot_importance(importance: dict[str, float]) -> bytes:
    """Horizontal bars of parameter importance (PNG bytes)."""
    names = list(importance)[::-1]
    fig, ax = _figure(6, 0.5 * len(names) + 1.2)
    ax.barh(names, [importance[n] for n in names])
    ax.set_xlabel("importance (fANOVA)")
    ax.set_title("parameter importance")
    return _png(fig)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.5g}"
    return "" if v is None else str(v)


def _html(cfg: RunConfig, tc: TuneConfig, rows: list[dict[str, Any]], keys: list[str], chosen: RunConfig,
          plots: dict[str, bytes], importance: dict[str, float] | None, refit_run: Any) -> str:
    esc = html.escape
    head = ["trial", "state", f"valid {tc.metric}", "seconds", "best epoch", *keys]
    body = "".join("<tr>" + "".join(f"<td>{esc(_fmt(c))}</td>" for c in (
        r["number"], r["state"], r["value"], r["seconds"], r["best_epoch"], *(r["params"].get(k) for k in keys)))
        + "</tr>" for r in rows)
    parts = [
        f"<h1>tune {esc(cfg.model['name'])} on {esc(cfg.data['name'])}</h1>",
        f"<p>sampler {esc(tc.sampler)}, pruner {esc(tc.pruner)}, {len(rows)} trials; chosen on validation "
        f"{esc(tc.metric)} only.</p>",
        "<h2>chosen configuration</h2>",
        f"<pre>{esc(tomli_w.dumps(to_dict(chosen)))}</pre>",
    ]
    if refit_run is not None:
        m = refit_run.metrics["test"]
        cells = "".join(f"<tr><td>{esc(k)}</td><td>{v['mean']:.4f} [{v['ci_low']:.4f}, {v['ci_high']:.4f}]</td></tr>"
                        for k, v in m.items() if not k.startswith("_"))
        parts.append("<h2>refit on train + validation: test metrics (one evaluation)</h2>"
                     f"<table><tr><th>metric</th><th>mean [95% CI]</th></tr>{cells}</table>")
    for name, png in plots.items():
        parts.append(f"<h2>{esc(name[:-4])}</h2><img src='data:image/png;base64,"
                     f"{base64.b64encode(png).decode()}'/>")
    if importance:
        parts.append("<p>" + ", ".join(f"{esc(k)} {v:.2f}" for k, v in importance.items()) + "</p>")
    parts.append("<h2>trials</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + f"</tr>{body}</table>")
    style = "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;" \
            "padding:2px 6px;text-align:right}"
    return f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head><body>" \
           + "".join(parts) + "</body></html>"
