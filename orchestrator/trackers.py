"""The sweep in the experiment trackers researchers watch: MLflow and Weights & Biases, as views of the sweep,
never its record (the store is).

`--track mlflow,wandb` (or a sweep file's `track`, or $SCS_TRACK) gives each trial one run for its whole
life, resumes included: MLflow a parent run per sweep (its name, the sweep file, the code version, the plan's
size; at the end its tables and report) and a child run per trial (`mlflow.parentRunId`); W&B one run per
trial, grouped by the sweep. Each run carries the trial's config as params, the tags a researcher filters by
(arch, layer, activation, pooling, normalization, seed, paper table, budget), one point per epoch with the
epoch as step, the final row's values, and its status at the end (FINISHED, FAILED, KILLED for pruned).

Why not Tune's own MLflowLoggerCallback / WandbLoggerCallback: they keep no state across `Tuner.restore`, so a
resumed trial gets a second MLflow run (the first stays RUNNING) and its W&B history is reset (resume=False);
MLflow's has no parent run; both freeze the tracking address into the pickled tuner. Here:

- epochs are logged once a checkpoint covers them (or the trial has ended): a resumed trial re-runs exactly the
  epochs after its last checkpoint, so no epoch is logged twice (short of a tracker that failed partway
  through a batch: after a resume, that batch is logged again rather than lost), and every value logged is
  the one the store keeps (but for epochs a tracker already held when its trial re-ran them, below: those keep
  the first run's values, the same where the re-run repeats them exactly, as the checkpoint's generator states
  make it on one device); the trial -> run map is Tune's saved callback state (get_state/set_state), and
  after a driver killed before Tune saved it, the run is found by its trial-id tag;
- a resumed driver asks each run which epochs it holds rather than trusting the count saved with Tune's
  state, which can be behind the tracker (a driver killed after MLflow took a checkpoint's epochs but before
  Tune saved its state: the trial re-runs them from the checkpoint before, and they are not logged again) or
  ahead of it (W&B keeps a run's values for sure only once the run is finished, so a killed driver can take
  the last epochs it gave W&B with it; W&B online answers from its summary on the server, offline nothing is
  known, so none). The epochs a run lacks up to the trial's checkpoint are logged again from the trial's
  results (result.json, the store's own source); W&B offline thus writes a resumed run's whole history into
  the resumed run's folder;
- where to log (MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_NAME, WANDB_PROJECT, WANDB_MODE, ...) is read from the
  driver's environment in setup(), never from the pickle, and which trackers ($SCS_TRACK) too;
- a tracker that fails never fails a trial: the sweep goes on, the failure is said once, that tracker stops
  for the rest of the driver's run. Calls are few (one batch per trial and checkpoint) and time out fast.
"""
from __future__ import annotations

import json
import math
import os
import re
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common.errors import first_line
from common.vocabulary import TRACKERS

from .errors import UsageError

__all__ = ["TRACKERS", "TRACK_ENV", "EPOCH_METRICS", "FORWARDED_ENV", "forwarded_env", "parse_track",
           "check_trackers", "finish_sweep", "mlflow_uri", "MLflowRuns", "WandbRuns", "run_label", "fail_fast_env"]

TRACK_ENV = "SCS_TRACK"        # the trackers a driver logs to (set from --track / the sweep file / the plan)
EPOCH_METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "train_time_s", "eval_time_s", "lr")
TAG_KEYS = ("arch", "layer", "activation", "pooling", "normalization", "seed")
DEFAULT_EXPERIMENT = "scs-sweep"
# where to log, passed from the submitting shell to a Ray Job's driver (`scs-sweep submit`; sbatch passes the whole
# environment itself). Secrets (WANDB_API_KEY, MLFLOW_TRACKING_TOKEN / PASSWORD) are not: a Job's environment is
# shown by `ray job list` and the dashboard; the head keeps its own (~/.netrc, its environment)
FORWARDED_ENV = (TRACK_ENV, "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_TRACKING_USERNAME",
                 "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_MODE", "WANDB_DIR", "WANDB_BASE_URL")


def forwarded_env() -> dict[str, str]:
    """The trackers' settings of this shell that a Ray Job's driver needs (FORWARDED_ENV), as they are set."""
    return {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}


def parse_track(text) -> tuple:
    """'mlflow,wandb' (or a list) -> ('mlflow', 'wandb'); UsageError for any other name."""
    items = text if isinstance(text, (list, tuple)) else str(text or "").split(",")
    kinds = tuple(dict.fromkeys(k.strip().lower() for k in items if k and k.strip()))
    unknown = [k for k in kinds if k not in TRACKERS]
    if unknown:
        raise UsageError(f"--track {unknown[0]!r}: the trackers are {', '.join(TRACKERS)} (comma-separated)")
    return kinds


def fail_fast_env() -> None:
    """A tracker that does not answer costs seconds, not MLflow's default minutes of retries."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    os.environ.setdefault("WANDB_INIT_TIMEOUT", "60")


def mlflow_uri(local_dir: Path | None = None) -> str:
    """MLFLOW_TRACKING_URI, else a SQLite file beside the sweep's local files (MLflow 3's default backend;
    the driver is its only writer)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    folder = local_dir or Path.cwd()
    return f"sqlite:///{(folder / 'mlflow.db').resolve()}"


def check_trackers(kinds: tuple) -> list[str]:
    """Each tracker asked for is installed and, where it has a server, answers: one UsageError line naming the
    fix otherwise (before Ray starts). Returns a line per tracker saying where it logs."""
    fail_fast_env()
    lines = []
    if "mlflow" in kinds:
        try:
            import mlflow  # noqa: F401
        except ImportError:
            raise UsageError("--track mlflow: MLflow is not installed here: pip install 'scs-sweep[mlflow]' "
                             "(in this checkout: .venv/bin/pip install -e '.[mlflow]')") from None
        uri = mlflow_uri()
        if uri.startswith(("http://", "https://")):
            try:
                with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10) as answer:
                    answer.read()
            except OSError as exc:
                raise UsageError(f"--track mlflow: the MLflow server at {uri} (MLFLOW_TRACKING_URI) does not answer "
                                 f"({first_line(exc)}); start it (mlflow server --backend-store-uri "
                                 f"sqlite:///mlflow.db --host 127.0.0.1 --port 5000) or point MLFLOW_TRACKING_URI at "
                                 f"one") from None
        where = uri if os.environ.get("MLFLOW_TRACKING_URI") else "a SQLite file beside the sweep (mlflow.db)"
        lines.append(f"MLflow at {where}, experiment {os.environ.get('MLFLOW_EXPERIMENT_NAME', DEFAULT_EXPERIMENT)}")
    if "wandb" in kinds:
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise UsageError("--track wandb: Weights & Biases is not installed here: pip install 'scs-sweep[wandb]' "
                             "(in this checkout: .venv/bin/pip install -e '.[wandb]')") from None
        mode = os.environ.get("WANDB_MODE", "online")
        if mode == "online" and not os.environ.get("WANDB_API_KEY") and not _netrc_has_wandb():
            raise UsageError("--track wandb: no W&B login here: set WANDB_API_KEY (or `wandb login`), or "
                             "WANDB_MODE=offline to log to files and `wandb sync` them later")
        lines.append(f"W&B project {os.environ.get('WANDB_PROJECT', DEFAULT_EXPERIMENT)} ({mode})")
    return lines


def _netrc_has_wandb() -> bool:
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="replace")


def run_label(spec) -> str:
    c = spec.config
    return f"{spec.group} {c.get('arch')}/{c.get('layer')}/{c.get('activation')}/{c.get('pooling')}/" \
           f"{c.get('normalization')} seed {c.get('seed')}"


def _epoch_metrics(result: dict) -> dict:
    return {k: float(result[k]) for k in EPOCH_METRICS if isinstance(result.get(k), (int, float))
            and math.isfinite(float(result[k]))}


class MLflowRuns:
    """One MLflow experiment: a parent run for the sweep, a child run per trial."""

    def __init__(self, sweep: dict, local_dir: Path | None):
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=mlflow_uri(local_dir))
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", DEFAULT_EXPERIMENT)
        found = self.client.get_experiment_by_name(name)
        self.experiment = found.experiment_id if found else self.client.create_experiment(name)
        self.sweep = sweep
        self.parent = self._parent()

    def _find(self, tags: dict) -> str:
        query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        runs = self.client.search_runs([self.experiment], filter_string=query, max_results=1)
        return runs[0].info.run_id if runs else ""

    def _parent(self) -> str:
        params = {"sweep": self.sweep["name"], "source": str(self.sweep.get("source", "")),
                  "trials_planned": str(self.sweep.get("trials", "")),
                  "code_version": str(self.sweep.get("code_version", ""))}
        found = self._find({"scs.sweep": self.sweep["name"], "scs.role": "sweep"})
        if found:
            self.client.update_run(found, status="RUNNING")
            self._log_missing_params(found, params)
            return found
        run = self.client.create_run(self.experiment, run_name=self.sweep["name"],
                                     tags={"scs.sweep": self.sweep["name"], "scs.role": "sweep",
                                           "scs.code_version": self.sweep.get("code_version", "")})
        self._log_missing_params(run.info.run_id, params)
        if self.sweep.get("sweep_file"):
            self.client.log_text(run.info.run_id, self.sweep["sweep_file"], "sweep.toml")
        return run.info.run_id

    def _log_missing_params(self, run_id: str, params: dict) -> None:
        """Log the params the run lacks: a driver killed between creating a run and logging its params
        leaves a run with tags only, found again on resume (MLflow refuses a param logged twice
        with another value, so those already there are left as they are)."""
        from mlflow.entities import Param

        have = self.client.get_run(run_id).data.params
        missing = [Param(k, v) for k, v in sorted(params.items()) if k not in have]
        for start in range(0, len(missing), 100):
            self.client.log_batch(run_id, params=missing[start:start + 100])

    def start(self, trial_id: str, spec, known: str) -> str:
        """The trial's run: the one it had (its id from Tune's state, else found by its trial-id tag), else new."""
        c = spec.config
        params = {k: json.dumps(v) if isinstance(v, (list, dict)) else str(v) for k, v in c.items()}
        run_id = known or self._find({"scs.trial_id": trial_id, "scs.sweep": self.sweep["name"]})
        if run_id:
            self.client.update_run(run_id, status="RUNNING")
            self._log_missing_params(run_id, params)
            return run_id
        tags = {"mlflow.parentRunId": self.parent, "scs.sweep": self.sweep["name"], "scs.trial_id": trial_id,
                "scs.role": "trial", "group": spec.group, "paper_table": spec.paper_table or "",
                "budget": spec.budget, **{k: str(c.get(k)) for k in TAG_KEYS}}
        run = self.client.create_run(self.experiment, run_name=run_label(spec), tags=tags)
        self._log_missing_params(run.info.run_id, params)
        return run.info.run_id

    def logged_epochs(self, run_id: str) -> int:
        history = self.client.get_metric_history(run_id, "test_acc")
        return max((m.step for m in history), default=0)

    def log(self, run_id: str, epochs: list[dict], extra: dict | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, int(row["epoch"])) for row in epochs for k, v in _epoch_metrics(row).items()]
        if extra:
            step = int(extra.pop("_step", 0))
            metrics += [Metric(k, float(v), now, step) for k, v in extra.items()]
        for start in range(0, len(metrics), 1000):
            self.client.log_batch(run_id, metrics=metrics[start:start + 1000])

    def end(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status=status)

    def end_sweep(self, files: dict) -> None:
        for name, text in files.items():
            self.client.log_text(self.parent, text, name)
        self.client.set_terminated(self.parent, status="FINISHED")


class WandbRuns:
    """One W&B run per trial, grouped by the sweep, resumed in place by its id."""

    # log() hands the values to W&B's service process, which writes the run's file (and sends it) in batches:
    # a run is kept for sure only once finished. Measured (wandb 0.31, offline): two epochs logged, then the
    # process group killed 3 s later: the run's file held neither (hence logged_epochs, asked on each resume)

    def __init__(self, sweep: dict, local_dir: Path | None):
        import wandb

        self.wandb, self.sweep, self.runs = wandb, sweep, {}
        self.dir = Path(os.environ.get("WANDB_DIR") or (local_dir or Path.cwd()))
        self.dir.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def run_id(sweep: str, trial_id: str) -> str:
        return re.sub(r"[^A-Za-z0-9_-]", "-", f"{sweep}-{trial_id}")[:64]

    def start(self, trial_id: str, spec, known: str) -> str:
        run_id = known or self.run_id(self.sweep["name"], trial_id)
        c = spec.config
        run = self.wandb.init(project=os.environ.get("WANDB_PROJECT", DEFAULT_EXPERIMENT), group=self.sweep["name"],
                              name=run_label(spec), id=run_id, resume="allow", dir=str(self.dir), config=dict(c),
                              tags=[f"{k}={c.get(k)}" for k in TAG_KEYS] + [f"paper_table={spec.paper_table}",
                                                                          f"budget={spec.budget}"],
                              reinit="create_new")
        self.runs[run_id] = run
        return run_id

    def logged_epochs(self, run_id: str) -> int:
        run = self.runs.get(run_id)
        return int(run.summary.get("epoch", 0) or 0) if run is not None else 0

    def log(self, run_id: str, epochs: list[dict], extra: dict | None = None) -> None:
        run = self.runs[run_id]
        for row in epochs:
            run.log({**_epoch_metrics(row), "epoch": int(row["epoch"])}, step=int(row["epoch"]))
        if extra:
            extra.pop("_step", None)
            run.summary.update(extra)

    def end(self, run_id: str, status: str) -> None:
        run = self.runs.pop(run_id, None)
        if run is not None:
            run.summary["status"] = status
            run.finish(exit_code=0 if status == "FINISHED" else 1)

    def end_sweep(self, files: dict) -> None:
        for run_id in list(self.runs):
            self.runs.pop(run_id).finish()


def finish_sweep(sweep, kinds: tuple, local_dir: Path | None) -> None:
    """At the sweep's end: its tables and report to the MLflow parent run, which ends FINISHED."""
    if "mlflow" not in kinds:
        return
    from results.report import write_report
    from results.store import get_store
    from results.tables import render_all

    try:
        store = get_store(sweep.store)
        files = {"tables.md": render_all(store, sweep.name, "md", True, False),
                 "tables.csv": render_all(store, sweep.name, "csv", False, False)}
        with tempfile.TemporaryDirectory() as tmp:
            files["report.html"] = write_report(store, tmp, sweep.name).read_text()
        info = {"name": sweep.name}
        MLflowRuns(info, local_dir).end_sweep(files)
    except Exception as exc:  # noqa: BLE001 - a tracker never fails the sweep
        print(f"scs-sweep: mlflow: the tables and report were not logged ({type(exc).__name__}: "
              f"{first_line(exc, 200)})", file=sys.stderr, flush=True)

