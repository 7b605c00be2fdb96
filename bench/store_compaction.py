"""What compaction buys a query: a 1,000-trial smoke-sized store, on this disk and on an S3 server on
loopback (moto's, as the tests use), queried before and after `compact`.

Writes the store the way a smoke sweep's driver does (one file per trial per table: trials, epochs,
layers), counts its files, then times `scs-sweep query`'s own work (the store opened and the SQL run, in
this process: the interpreter's start-up excluded) for two GROUP BY statements, and DuckDB's read_parquet
over the same files for comparison; compacts; and times them again. Each figure is the median of --repeat
runs. The S3 part runs against the store URI given with --s3: an S3 server on loopback, e.g. moto's
(`pip install "moto[server]"`, in the project's test extra), the way the tests stand in for S3:

    moto_server -H 127.0.0.1 -p 5055 &
    AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true \
      python -m bench.store_compaction [--trials 1000] [--repeat 5] [--out /tmp/store_compaction] \
      [--s3 "s3://bench/store?endpoint_override=http://127.0.0.1:5055&scheme=http&allow_bucket_creation=true"]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common.locations import Location
from results.query import run_query
from results.rows import rows_for_trial
from results.store import ParquetStore

QUERIES = {
    "trials GROUP BY": "SELECT layer, pooling, count(*) AS n, avg(final_acc) AS acc FROM trials GROUP BY ALL",
    "epochs JOIN trials GROUP BY": "SELECT t.layer, e.epoch, avg(e.test_acc) AS acc FROM epochs e "
                                   "JOIN trials t USING (experiment, trial_id) GROUP BY ALL",
}
VARIANTS = [(layer, act, pool) for layer in ("conv", "scs") for act in ("relu", "none") for pool in ("max", "maxabs")]


def plant(store: ParquetStore, trials: int, epochs: int = 2) -> None:
    """`trials` smoke trials of Table 1's variants: what a smoke sweep's store holds per trial."""
    for i in range(trials):
        layer, act, pool = VARIANTS[i % len(VARIANTS)]
        config = dict(arch="rohrer100k", layer=layer, activation=act, pooling=pool, normalization="none",
                      dropout=0.0, image_dim=32, p_mode="learned", seed=i // len(VARIANTS), epochs=epochs,
                      batch_size=128, dataset="synthetic", n_train=256, n_test=128)
        results = [{"epoch": e, "train_loss": 1.0 / e, "train_acc": 0.3, "test_loss": 1.0, "test_acc": 0.2 + 0.1 * e,
                    "train_time_s": 1.0, "eval_time_s": 0.1, "lr": 0.01, "params": 100_000,
                    "layers": [{"layer_index": j, "layer_name": f"features.{j}", "layer_type": layer,
                                "weight_norm": 1.0, "grad_norm": 0.5, "p_mean": 2.0, "p_min": 1.0, "p_max": 3.0,
                                "q": 0.001, "p_values": [1.0, 2.0, 3.0]} for j in range(4)]}
                   for e in range(1, epochs + 1)]
        tid = f"bench_{i:05d}"
        store.write_trial("smoke", tid, rows_for_trial("smoke", tid, "table1", "smoke", config, results, "done"))


def median_s(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_queries(uri: str, repeat: int) -> dict:
    """Seconds of each query's own work: a fresh ParquetStore (as the CLI opens one) and the SQL."""
    return {name: median_s(lambda sql=sql: run_query(ParquetStore(uri), sql), repeat) for name, sql in QUERIES.items()}


def duckdb_direct(root: Path, repeat: int) -> float:
    import duckdb

    sql = (f"SELECT layer, pooling, count(*) AS n, avg(final_acc) AS acc FROM read_parquet("
           f"'{root}/trials/**/*.parquet', hive_partitioning=true) GROUP BY ALL")
    return median_s(lambda: duckdb.sql(sql).fetchall(), repeat)


def cli_wall(uri: str, env: dict) -> float:
    """The whole `scs-sweep query` command, interpreter start-up included (one run)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "orchestrator.cli", "query", QUERIES["trials GROUP BY"], "--store", uri],
                   env=env, capture_output=True, check=True)
    return time.perf_counter() - start


def files_of(uri: str) -> int:
    return len(Location(uri).files())


def measure(label: str, uri: str, repeat: int, env: dict, local_root: Path | None) -> dict:
    out = {"files": files_of(uri), **time_queries(uri, repeat), "cli wall (start-up included)": cli_wall(uri, env)}
    if local_root is not None:
        out["duckdb read_parquet (trials GROUP BY)"] = duckdb_direct(local_root, repeat)
    print(f"{label}: " + "; ".join(f"{k} {v:.3f} s" if isinstance(v, float) else f"{k} {v:,}" for k, v in out.items()),
          flush=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.store_compaction", description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--out", default="/tmp/store_compaction")
    p.add_argument("--s3", default="", metavar="URI", help="also a store at this URI (an empty prefix; its bucket is "
                   "made when the URI allows bucket creation)")
    args = p.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")

    local = out / "store"
    start = time.perf_counter()
    plant(ParquetStore(str(local)), args.trials)
    print(f"wrote {args.trials:,} trials in {time.perf_counter() - start:.1f} s", flush=True)
    measure("local, before compaction", str(local), args.repeat, env, local)
    start = time.perf_counter()
    done = ParquetStore(str(local)).compact("smoke")
    print(f"local compaction: {done['files_before']:,} trial files -> {done['files_after']} in "
          f"{time.perf_counter() - start:.2f} s", flush=True)
    measure("local, after compaction", str(local), args.repeat, env, local)

    if args.s3:
        where = Location(args.s3)
        try:
            where.fs.create_dir(where.bucket)
        except OSError:
            pass  # there already, or made by its owner
        start = time.perf_counter()
        plant(ParquetStore(args.s3), args.trials)
        print(f"S3: wrote {args.trials:,} trials in {time.perf_counter() - start:.1f} s", flush=True)
        measure("S3, before compaction", args.s3, args.repeat, env, None)
        start = time.perf_counter()
        done = ParquetStore(args.s3).compact("smoke")
        print(f"S3 compaction: {done['files_before']:,} trial files -> {done['files_after']} in "
              f"{time.perf_counter() - start:.2f} s", flush=True)
        measure("S3, after compaction", args.s3, args.repeat, env, None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
