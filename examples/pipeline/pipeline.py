"""An ML pipeline across the stack's four buckets, run on the cluster with `npm run job`:

    npm run job -- submit examples/pipeline -- python pipeline.py [--rows N]

1. makes a small raw data set (customers, four measurements, whether they churned) and puts it in the staging bucket;
2. Ray Data turns it into features, written as Parquet to the feature store;
3. writes a train/test split to the model-store bucket (the pipeline's training data);
4. trains a logistic-regression model on shards of the training set across the cluster's nodes (numpy only: no
   framework to install on every node), averages the shards' models and saves the result to the results bucket
   (the model outputs) under one fixed key, so each run adds a version of the same object;
5. writes predictions for the test set and the run's metrics to the results bucket.

The buckets and the region come from the environment every Ray process on the stack's nodes has
(RAY_CLUSTER_*_BUCKET, AWS_REGION); credentials come from the instance role. AWS_ENDPOINT_URL_S3, when set, points
at an S3-compatible store instead of AWS's own (pyarrow does not read it by itself).
"""

import argparse
import json
import os
import socket
import time
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray

FEATURES = ["tenure", "spend", "tickets", "logins", "spend_per_login", "tickets_per_tenure"]
MODEL_KEY = "models/pipeline/model.json"


def buckets():
    return {
        "staging": os.environ["RAY_CLUSTER_STAGING_DATA_BUCKET"],
        "features": os.environ["RAY_CLUSTER_FEATURE_STORE_BUCKET"],
        "training": os.environ["RAY_CLUSTER_MODEL_STORE_BUCKET"],
        "results": os.environ["RAY_CLUSTER_RESULTS_BUCKET"],
    }


def s3():
    """The buckets' filesystem: region from the environment, credentials from the instance role (refreshed by
    pyarrow itself, never copied into the job)."""
    return pafs.S3FileSystem(region=os.environ["AWS_REGION"], endpoint_override=os.environ.get("AWS_ENDPOINT_URL_S3"))


def put_json(fs, path, value):
    with fs.open_output_stream(path) as f:
        f.write(json.dumps(value, indent=2).encode("utf-8"))


def raw_data(rows, seed):
    """Customers whose churn depends on their measurements, with noise: a model can learn it, not perfectly."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, rows).astype(float)
    spend = rng.gamma(2.0, 40.0, rows)
    tickets = rng.poisson(1.5, rows).astype(float)
    logins = rng.poisson(20, rows).astype(float) + 1
    score = -0.06 * tenure + 0.9 * tickets - 0.04 * logins + 0.004 * spend + rng.normal(0, 0.8, rows) + 1.0
    churned = (score > 0).astype(np.int64)
    return pa.table({"customer": np.arange(rows), "tenure": tenure, "spend": spend, "tickets": tickets,
                     "logins": logins, "churned": churned})


def featurize(batch):
    batch["spend_per_login"] = batch["spend"] / batch["logins"]
    batch["tickets_per_tenure"] = batch["tickets"] / batch["tenure"]
    return batch


@ray.remote(num_cpus=1, scheduling_strategy="SPREAD")
def fit_shard(shard, mean, std, steps=300, rate=0.5):
    """Gradient descent of a logistic regression on one shard of the training set; returns its weights and where it ran."""
    rows = shard.to_pandas()
    x = (rows[FEATURES].to_numpy(dtype=float) - mean) / std
    y = rows["churned"].to_numpy()
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(x @ w + b)))
        w -= rate * (x.T @ (p - y)) / len(y)
        b -= rate * float(np.mean(p - y))
    return {"weights": w.tolist(), "bias": b, "rows": int(len(y)), "host": socket.gethostname()}


def predict(model, columns):
    x = (np.column_stack([np.asarray(columns[f], dtype=float) for f in FEATURES]) - model["mean"]) / model["std"]
    return 1 / (1 + np.exp(-(x @ np.asarray(model["weights"]) + model["bias"])))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--shards", type=int, default=0, help="training shards; 0 is one per node")
    args = parser.parse_args()
    ray.init(logging_level="ERROR")
    run = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
    b, fs = buckets(), s3()
    print(f"run {run}: buckets {json.dumps(b)}")

    # 1. Raw data lands in staging.
    raw_path = f"{b['staging']}/raw/run={run}/customers.csv"
    with fs.open_output_stream(raw_path) as f:
        pacsv.write_csv(raw_data(args.rows, seed=int(time.time())), f)
    print(f"1. raw: {args.rows} rows to s3://{raw_path}")

    # 2. Ray Data makes features, as Parquet in the feature store.
    features = ray.data.read_csv(raw_path, filesystem=fs).map_batches(featurize, batch_format="pandas")
    features_path = f"{b['features']}/features/run={run}"
    features.write_parquet(features_path, filesystem=fs)
    features = ray.data.read_parquet(features_path, filesystem=fs)
    print(f"2. features: {features.count()} rows to s3://{features_path}/")

    # 3. The train/test split is the pipeline's training data.
    train, test = features.train_test_split(test_size=0.2, shuffle=True, seed=7)
    training_path = f"{b['training']}/training/run={run}"
    train.write_parquet(f"{training_path}/train", filesystem=fs)
    test.write_parquet(f"{training_path}/test", filesystem=fs)
    train = ray.data.read_parquet(f"{training_path}/train", filesystem=fs).materialize()
    test_rows = ray.data.read_parquet(f"{training_path}/test", filesystem=fs).to_pandas()
    print(f"3. split: {train.count()} train and {len(test_rows)} test rows to s3://{training_path}/")

    # 4. Train on shards across the nodes; the model is the shards' average.
    stats = train.select_columns(FEATURES).to_pandas()
    mean, std = stats.mean().to_numpy(), stats.std().to_numpy() + 1e-9
    shards = train.split(args.shards or len([n for n in ray.nodes() if n["Alive"]]), equal=True)
    fits = ray.get([fit_shard.remote(shard, mean, std) for shard in shards])
    total = sum(f["rows"] for f in fits)
    model = {
        "kind": "logistic-regression",
        "features": FEATURES,
        "mean": mean.tolist(),
        "std": std.tolist(),
        "weights": np.sum([np.asarray(f["weights"]) * f["rows"] / total for f in fits], axis=0).tolist(),
        "bias": sum(f["bias"] * f["rows"] / total for f in fits),
        "run": run,
        "trainedOn": sorted({f["host"] for f in fits}),
    }
    put_json(fs, f"{b['results']}/{MODEL_KEY}", model)
    print(f"4. model: trained on {len(fits)} shards on {', '.join(model['trainedOn'])}; s3://{b['results']}/{MODEL_KEY}")

    # 5. Predictions and metrics.
    p = predict(model, test_rows)
    y = test_rows["churned"].to_numpy()
    predictions = pa.table({"customer": test_rows["customer"].to_numpy(), "churn_probability": p, "churned": y})
    predictions_path = f"{b['results']}/predictions/run={run}/predictions.parquet"
    with fs.open_output_stream(predictions_path) as f:
        pq.write_table(predictions, f)
    eps = 1e-12
    metrics = {
        "run": run,
        "rows": {"raw": args.rows, "features": features.count(), "train": train.count(), "test": len(test_rows)},
        "accuracy": float(np.mean((p > 0.5) == y)),
        "logLoss": float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))),
        "churnRate": float(np.mean(y)),
        "trainedOn": model["trainedOn"],
        "paths": {"raw": raw_path, "features": features_path, "training": training_path,
                  "model": f"{b['results']}/{MODEL_KEY}", "predictions": predictions_path},
    }
    put_json(fs, f"{b['results']}/metrics/run={run}.json", metrics)
    put_json(fs, f"{b['results']}/metrics/latest.json", metrics)
    print(f"5. accuracy {metrics['accuracy']:.3f}, log loss {metrics['logLoss']:.3f}; s3://{b['results']}/metrics/run={run}.json")
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
