"""tunespace's BERT4Rec (random init) side by side with RecBole's, on MovieLens-100k (tunespace issue 5).

    python bench/recsys_recbole.py                               # both sides, 40 min cap each
    python bench/recsys_recbole.py --max-minutes 30 --threads 2  # what was run for the issue
    python bench/recsys_recbole.py --sides tunespace             # rerun one side; the other's last result is reused
    python bench/recsys_recbole.py --limit-users 40 --max-minutes 1 --recbole-eval-every 5   # smoke test

What it does:

1. Builds RecBole's environment unless it is there already (`--recbole-env`, default /tmp/recbole-env, outside
   the repo): `python3.11 -m venv`, then pip installs torch==2.13.0, recbole, setuptools<81, numpy<2, pandas<3, and
   checks that `import recbole` works (with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1). If that fails the script says why
   and exits 0: a comparison with nothing to compare against is skipped, not failed.
2. One split for both sides, leave-one-out by time (RecBole's `LS: valid_and_test` with `order: TO`): every user's
   ratings in ml-100k.inter (the copy inside the RecBole wheel) ordered by timestamp, ties by numeric item id; the
   last one is the test item, the one before the validation item, the rest train. Every rating is one
   interaction (ml-100k has no repeated user-item pair). The catalogue is all 1682 items on both sides, including
   the few that only occur as someone's validation or test item. The split is written as RecBole benchmark files
   (`benchmark_filename: [train, valid, test]`, rows `user_id, item_id_list, item_id`): a train row for every
   prefix of every train sequence (the latest `--max-len` items before the target, as RecBole's own augmentation
   does), one validation row per user (the train sequence -> the validation item) and one test row (train +
   validation sequence -> the test item). tunespace fits on the same train interactions (timestamps replaced by
   the position in the order above, so both sides see one order).
3. Protocol, both sides: full ranking over the catalogue; validation ranks exclude the user's train items, test
   ranks the user's train and validation items (the standard leave-one-out protocol), with the test prediction
   made from the train + validation sequence (tunespace: the fitted weights with the sequences and seen items
   extended by the validation item, nothing retrained). Ties are pessimistic (the target loses them), as in
   tunespace's evaluation. NOTE: RecBole itself does NOT exclude history for sequential models (its
   FullSortEvalDataLoader passes no history index when MODEL_TYPE is sequential), so the RecBole side is evaluated
   here by this script's own ranking of `model.full_sort_predict`; RecBole's native numbers (no exclusion) are
   printed as well, and the same no-exclusion numbers for tunespace.
4. RecBole's BERT4Rec runs in a subprocess in its environment: max_seq_length 200, hidden 64, 2 layers, 2 heads,
   inner 256, batch 256, mask ratio 0.2, Adam 1e-3, RecBole's defaults otherwise (ft_ratio 0.5: half of the
   batches mask only each row's last item; layer-norm eps 1e-12), dropout `--dropout` for hidden and attention.
   Its training loop is RecBole's Trainer optimizer and `model.calculate_loss` over RecBole's train dataloader
   (with its mask_itemseq transform), batch by batch, so that validation can also run every
   `--recbole-eval-every` batches: an epoch is ~380 batches and takes tens of minutes on a CPU, and validating
   only at epoch ends would measure time to target in steps of an epoch. Validation (NDCG@10, Hit@10) also runs
   at every epoch end and when the time cap stops training mid-epoch.
5. tunespace's `bert4rec-random` with the same numbers (hidden 64, 2 layers, 2 heads, feed-forward 256, batch
   256, max_len 200, mask 0.2, Adam 1e-3, dropout `--dropout`), early-stopping on validation NDCG@10
   (validation_k=10) with its own patience and plateau learning-rate decay. One tunespace epoch is one window per
   user (943 sequences), a RecBole epoch every prefix (~97k rows), so epochs are not comparable: time is.
6. Both sides are capped by `--max-minutes` of training wall time (validation included; a run stops at the first
   check past the cap) and by their epoch counts. Reported: per-checkpoint wall time and validation NDCG@10, test
   NDCG@10 and HR@10 at the best validation checkpoint, and the wall time each side took to reach `--target`
   (default 0.95 x the lower of the two sides' best validation NDCG@10), with and without validation time. The
   ratios printed are tunespace / RecBole for quality and RecBole / tunespace for time; the issue's goal is
   quality ratios >= 1 and a time ratio >= 2.

Results (JSON, per side and combined) and RecBole's data files go to `--workdir` (default /tmp/recbole-bench); a
provenance record of each run (command, commit, packages, machine, load, settings, the figures printed, and which
side's result was reused from an earlier run) goes to `--results` (default bench/results).
Only the standard library is imported at the top: the same file runs as RecBole's child process (`--child`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

DATASET = "ml100k-loo"  # not "ml-100k": RecBole would merge in its own ml-100k.yaml (filters, load_col)
PINS = ["torch==2.13.0", "recbole", "setuptools<81", "numpy<2", "pandas<3"]
CHILD_ENV = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
K = 10


# -- RecBole's environment -------------------------------------------------------------------------------------------
def _env_python(env: Path) -> Path:
    return env / "bin" / "python"


def recbole_version(python: Path) -> str | None:
    """recbole's version as the environment imports it (with the heavy imports a run needs), or None."""
    if not python.exists():
        return None
    probe = ("import recbole, torch, numpy, pandas\n"
             "from recbole.model.sequential_recommender import BERT4Rec\n"
             "from recbole.trainer import Trainer\n"
             "print(recbole.__version__, torch.__version__, numpy.__version__, pandas.__version__)")
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True,
                          env={**os.environ, **CHILD_ENV})
    return done.stdout.strip().splitlines()[-1] if done.returncode == 0 and done.stdout.strip() else None


def build_recbole_env(env: Path, log: Path) -> tuple[Path | None, str]:
    """(python of RecBole's environment, versions) or (None, why it could not be built)."""
    python = _env_python(env)
    version = recbole_version(python)
    if version is not None:
        return python, version
    base = shutil.which("python3.11") or (sys.executable if sys.version_info[:2] == (3, 11) else None)
    if base is None:
        return None, "no python3.11 to build RecBole's environment with"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"building RecBole's environment in {env} (log: {log}) ...", flush=True)
    with open(log, "w") as out:
        steps = [] if python.exists() else [[base, "-m", "venv", str(env)]]
        steps.append([str(python), "-m", "pip", "install", *PINS])
        for step in steps:
            if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                return None, f"`{' '.join(step)}` failed; see {log}"
    version = recbole_version(python)
    if version is None:
        return None, f"recbole was installed in {env} but does not import; see {log}"
    return python, version


def ml100k_in_env(python: Path) -> Path | None:
    """ml-100k.inter inside the environment's recbole package, found without importing recbole."""
    where = subprocess.run([str(python), "-c", "import importlib.util as u; "
                            "print(u.find_spec('recbole').submodule_search_locations[0])"],
                           capture_output=True, text=True)
    if where.returncode != 0:
        return None
    path = Path(where.stdout.strip()) / "dataset_example" / "ml-100k" / "ml-100k.inter"
    return path if path.is_file() else None


# -- the split ----------------------------------------------------------------------------------------------------
def leave_one_out(inter_path: Path, limit_users: int | None):
    """Every rating with its `role` (train / valid / test) and `position` in its user's time order."""
    import pandas as pd

    from tunespace.data.loaders.movielens import load_movielens_100k

    frame = load_movielens_100k(inter_path).interactions[["user_id", "track_id", "timestamp"]].copy()
    frame["user_num"] = frame["user_id"].astype(int)
    frame["item_num"] = frame["track_id"].astype(int)
    frame = frame.sort_values(["user_num", "timestamp", "item_num"], kind="stable").reset_index(drop=True)
    if limit_users:
        frame = frame[frame["user_num"].isin(sorted(frame["user_num"].unique())[:limit_users])]
    sizes = frame.groupby("user_num")["item_num"].transform("size")
    frame = frame[sizes >= 3].reset_index(drop=True)
    sizes = frame.groupby("user_num")["item_num"].transform("size")
    frame["position"] = frame.groupby("user_num").cumcount()
    frame["role"] = "train"
    frame.loc[frame["position"] == sizes - 2, "role"] = "valid"
    frame.loc[frame["position"] == sizes - 1, "role"] = "test"
    # tunespace orders a user's events by (timestamp, item index): distinct synthetic times pin the order above
    frame["timestamp"] = pd.Timestamp("2000-01-01", tz="UTC") + pd.to_timedelta(frame["position"], unit="s")
    frame["weight"] = 1.0
    return frame


def export_recbole(frame, folder: Path, max_len: int) -> None:
    """RecBole benchmark files for the split, plus the items each user's ranking excludes at validation / test."""
    folder.mkdir(parents=True, exist_ok=True)
    header = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    files = {part: open(folder / f"{DATASET}.{part}.inter", "w") for part in ("train", "valid", "test")}
    exclude = {"valid": {}, "test": {}}
    try:
        for handle in files.values():
            handle.write(header)
        for user, rows in frame.groupby("user_id", sort=False):
            items = rows["track_id"].tolist()  # in time order
            train, valid, test = items[:-2], items[-2], items[-1]
            for t in range(1, len(train)):
                files["train"].write(f"{user}\t{' '.join(train[max(0, t - max_len):t])}\t{train[t]}\n")
            files["valid"].write(f"{user}\t{' '.join(train[-max_len:])}\t{valid}\n")
            files["test"].write(f"{user}\t{' '.join((train + [valid])[-max_len:])}\t{test}\n")
            exclude["valid"][user], exclude["test"][user] = train, train + [valid]
    finally:
        for handle in files.values():
            handle.close()
    (folder / "exclude.json").write_text(json.dumps(exclude))


# -- RecBole's side (runs in RecBole's environment) ---------------------------------------------------------------
def recbole_child(workdir: Path) -> None:
    job = json.loads((workdir / "recbole_job.json").read_text())
    import numpy as np
    import torch

    torch.set_num_threads(job["threads"])
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import BERT4Rec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    started = time.perf_counter()
    config = Config(model="BERT4Rec", dataset=DATASET, config_dict={
        "data_path": str(workdir / "data"), "benchmark_filename": ["train", "valid", "test"],
        "load_col": {"inter": ["user_id", "item_id_list", "item_id"]}, "alias_of_item_id": ["item_id_list"],
        "MAX_ITEM_LIST_LENGTH": job["max_len"], "hidden_size": job["hidden"], "inner_size": job["ff_dim"],
        "n_layers": job["layers"], "n_heads": job["heads"], "hidden_dropout_prob": job["dropout"],
        "attn_dropout_prob": job["dropout"], "mask_ratio": job["mask_prob"], "ft_ratio": job["ft_ratio"],
        "train_batch_size": job["batch_size"], "eval_batch_size": job["batch_size"], "learning_rate": job["lr"],
        "train_neg_sample_args": None, "epochs": job["epochs"], "stopping_step": job["stopping_step"],
        "seed": job["seed"],
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "metrics": ["NDCG", "Hit"], "topk": [K], "valid_metric": f"NDCG@{K}",
        "use_gpu": False, "device": "cpu", "show_progress": False, "state": "WARNING",
        "checkpoint_dir": str(workdir / "saved"), "reproducibility": True, "worker": 0})
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])  # as run_recbole does before building the model
    model = BERT4Rec(config, train_data.dataset).to(config["device"])
    trainer = Trainer(config, model)
    optimizer = trainer.optimizer

    raw = json.loads((workdir / "data" / DATASET / "exclude.json").read_text())
    n_users = dataset.user_num
    excluded = {}
    for part, per_user in raw.items():
        rows = [torch.zeros(0, dtype=torch.long)] * n_users
        for user, items in per_user.items():
            rows[int(dataset.token2id("user_id", user))] = torch.from_numpy(
                np.asarray(dataset.token2id("item_id", items), dtype=np.int64))
        excluded[part] = rows

    @torch.no_grad()
    def evaluate(loader, part: str) -> dict:
        model.eval()
        ndcg, hit, native_ndcg, native_hit = [], [], [], []
        for interaction, _, _, targets in loader:
            scores = model.full_sort_predict(interaction).clone()
            scores[:, 0] = -math.inf  # padding
            for store_ndcg, store_hit, exclude in ((native_ndcg, native_hit, False), (ndcg, hit, True)):
                if exclude:
                    users = interaction["user_id"].tolist()
                    cols = [excluded[part][u] for u in users]
                    rows = torch.cat([torch.full_like(c, r) for r, c in enumerate(cols)])
                    cols = torch.cat(cols)
                    assert not (cols == targets[rows]).any(), "a target is among the excluded items"
                    scores[rows, cols] = -math.inf
                target = scores.gather(1, targets[:, None])
                rank = (scores > target).sum(1) + (scores == target).sum(1) - 1  # the target loses ties
                store_hit.append((rank < K).double())
                store_ndcg.append(torch.where(rank < K, 1.0 / torch.log2(rank.double() + 2), 0.0))
        mean = lambda parts: float(torch.cat(parts).mean())  # noqa: E731
        return {"ndcg": mean(ndcg), "hr": mean(hit), "native_ndcg": mean(native_ndcg), "native_hr": mean(native_hit),
                "users": int(sum(len(p) for p in ndcg))}

    setup_s = time.perf_counter() - started
    n_batches = len(train_data)
    print(f"RECBOLE setup {setup_s:.1f}s: {len(train_data.dataset)} train rows, {n_batches} batches per epoch, "
          f"{dataset.user_num - 1} users, {dataset.item_num - 1} items", flush=True)
    cap = job["max_minutes"] * 60.0
    clock = time.perf_counter()
    train_s = valid_s = 0.0
    checkpoints, best, best_state = [], -math.inf, None
    stale_epochs, stopped = 0, "epochs"
    epoch = batches = 0

    def validate(at_epoch_end: bool) -> float:
        nonlocal valid_s, best, best_state
        tick = time.perf_counter()
        result = evaluate(valid_data, "valid")
        valid_s += time.perf_counter() - tick
        point = {"epoch": round(epoch - 1 + batch_in_epoch / n_batches, 4), "batches": batches,
                 "wall_s": time.perf_counter() - clock, "train_s": train_s, "valid_s": valid_s,
                 "valid_ndcg": result["ndcg"], "valid_hr": result["hr"], "valid_native_ndcg": result["native_ndcg"],
                 "epoch_end": at_epoch_end, "loss": loss_sum / max(loss_count, 1),
                 "load1": os.getloadavg()[0]}
        checkpoints.append(point)
        print("CHECKPOINT " + json.dumps(point), flush=True)
        if result["ndcg"] > best:
            best = result["ndcg"]
            best_state = {key: value.detach().clone() for key, value in model.state_dict().items()}
        return result["ndcg"]

    best_at_epoch_end = -math.inf
    while epoch < job["epochs"] and stopped == "epochs":
        epoch += 1
        model.train()
        batch_in_epoch, loss_sum, loss_count = 0, 0.0, 0
        for interaction in train_data:
            tick = time.perf_counter()
            model.train()
            optimizer.zero_grad()
            loss = model.calculate_loss(interaction)
            loss.backward()
            optimizer.step()
            train_s += time.perf_counter() - tick
            batches += 1
            batch_in_epoch += 1
            loss_sum, loss_count = loss_sum + float(loss), loss_count + 1
            if time.perf_counter() - clock > cap:
                stopped = "time"
                break
            if job["eval_every"] and batch_in_epoch % job["eval_every"] == 0 and batch_in_epoch < n_batches:
                validate(False)
        value = validate(batch_in_epoch == n_batches)
        if batch_in_epoch == n_batches:
            if value > best_at_epoch_end:
                best_at_epoch_end, stale_epochs = value, 0
            else:
                stale_epochs += 1
                if stale_epochs >= job["stopping_step"]:
                    stopped = "early stopping"
    wall_s = time.perf_counter() - clock
    model.load_state_dict(best_state)
    best_point = max(checkpoints, key=lambda p: (p["valid_ndcg"], -p["batches"]))
    test = evaluate(test_data, "test")
    result = {"side": "recbole", "setup_s": setup_s, "wall_s": wall_s, "train_s": train_s, "valid_s": valid_s,
              "batches_per_epoch": n_batches, "train_rows": len(train_data.dataset),
              "epochs_completed": sum(p["epoch_end"] for p in checkpoints), "batches": batches, "stopped": stopped,
              "checkpoints": checkpoints, "best": best_point, "test": test, "versions": job["versions"]}
    (workdir / "recbole_result.json").write_text(json.dumps(result, indent=1))
    print(f"RECBOLE done: stopped by {stopped}, test {test}", flush=True)


def run_recbole(args, python: Path, versions: str, key: str) -> dict | None:
    job = {"threads": args.threads, "max_len": args.max_len, "hidden": args.hidden, "ff_dim": args.ff_dim,
           "layers": args.layers, "heads": args.heads, "dropout": args.dropout, "mask_prob": args.mask_prob,
           "ft_ratio": args.recbole_ft_ratio, "batch_size": args.batch_size, "lr": args.lr,
           "epochs": args.recbole_epochs, "stopping_step": args.recbole_stopping_step, "seed": args.seed,
           "max_minutes": args.max_minutes, "eval_every": args.recbole_eval_every, "versions": versions}
    (args.workdir / "recbole_job.json").write_text(json.dumps(job, indent=1))
    result_path = args.workdir / "recbole_result.json"
    result_path.unlink(missing_ok=True)
    env = {**os.environ, **CHILD_ENV, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": ""}
    log = args.workdir / "recbole_child.log"
    print(f"RecBole {versions.split()[0]}: training (log {log}) ...", flush=True)
    # the child's cwd is the workdir: RecBole's Trainer writes log_tensorboard/ into the current folder
    with open(log, "w") as out:
        child = subprocess.Popen([str(python), str(Path(__file__).resolve()), "--child", str(args.workdir)],
                                 cwd=args.workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True)
        assert child.stdout is not None
        for line in child.stdout:
            out.write(line)
            out.flush()
            if line.startswith(("CHECKPOINT", "RECBOLE")):
                print("  recbole " + _short(line), flush=True)
        code = child.wait()
    if code != 0 or not result_path.exists():
        tail = "".join(log.read_text().splitlines(True)[-30:])
        print(f"RecBole's run failed (exit {code}); the end of {log}:\n{tail}")
        return None
    result = json.loads(result_path.read_text())
    result["key"] = key
    result_path.write_text(json.dumps(result, indent=1))
    return result


def _short(line: str) -> str:
    if not line.startswith("CHECKPOINT"):
        return line.strip()
    p = json.loads(line.split(" ", 1)[1])
    return (f"epoch {p['epoch']:.2f} ({p['batches']} batches): valid NDCG@{K} {p['valid_ndcg']:.4f}, "
            f"HR@{K} {p['valid_hr']:.4f}, loss {p['loss']:.3f}, wall {p['wall_s']:.0f}s (train {p['train_s']:.0f}s), "
            f"load {p.get('load1', float('nan')):.1f}")


# -- tunespace's side ------------------------------------------------------------------------------------------------
class _TimeUp(Exception):
    pass


def run_tunespace(args, frame, key: str) -> dict:
    import numpy as np
    import torch

    from tunespace.data.catalog import IdMap
    from tunespace.data.interactions import InteractionMatrix
    from tunespace.evaluation.evaluate import evaluate
    from tunespace.recommenders.bert4rec import RandomBert4Rec, latest

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    users = IdMap.from_values(frame["user_id"], name="user_id")
    items = IdMap.from_values(frame["track_id"], name="track_id")  # all items, as RecBole's catalogue
    columns = ["user_id", "track_id", "timestamp", "weight"]
    train = InteractionMatrix.from_frame(frame.loc[frame["role"] == "train", columns], users, items)
    validation = frame.loc[frame["role"] == "valid", ["user_id", "track_id"]].reset_index(drop=True)
    test = frame.loc[frame["role"] == "test", ["user_id", "track_id"]].reset_index(drop=True)
    checkpoints: list[dict] = []
    timing = {"valid_s": 0.0}
    best: dict = {"state": None}
    cap = args.max_minutes * 60.0

    def on_epoch(report) -> None:
        wall = time.perf_counter() - clock
        point = {"epoch": report.epoch, "wall_s": wall, "train_s": wall - timing["valid_s"],
                 "valid_s": timing["valid_s"], "valid_ndcg": report.validation_ndcg,
                 "loss": report.losses.get("loss", float("nan")), "lr": report.learning_rate,
                 "load1": os.getloadavg()[0]}
        checkpoints.append(point)
        if report.best_epoch == report.epoch:
            best["state"] = {k: v.detach().clone() for k, v in model.net.state_dict().items()}
        if report.epoch % args.print_every == 0 or report.best_epoch == report.epoch:
            print(f"  tunespace epoch {report.epoch}: valid NDCG@{K} {report.validation_ndcg:.4f} (best epoch "
                  f"{report.best_epoch}), loss {point['loss']:.3f}, lr {report.learning_rate:.0e}, wall {wall:.0f}s",
                  flush=True)
        if wall > cap:
            raise _TimeUp

    model = RandomBert4Rec(device="cpu", hidden=args.hidden, layers=args.layers, heads=args.heads,
                           ff_dim=args.ff_dim, dropout=args.dropout, max_len=args.max_len, mask_prob=args.mask_prob,
                           batch_size=args.batch_size, epochs=args.epochs, patience=args.patience, lr=args.lr,
                           plateau_patience=args.plateau_patience,
                           validation_k=K, seed=args.seed, on_epoch=on_epoch)

    def timed(method):
        def wrapper(*a, **kw):
            tick = time.perf_counter()
            try:
                return method(*a, **kw)
            finally:
                timing["valid_s"] += time.perf_counter() - tick
        return wrapper

    # validation time, for the train-only figures: the loop validates by _refresh(validation users) + this
    model._refresh = timed(model._refresh)
    model._validation_ndcg = timed(model._validation_ndcg)
    setup_s = time.perf_counter() - started
    print(f"tunespace: {train.n_users} users, {train.n_items} items, {train.matrix.nnz} train interactions",
          flush=True)
    clock = time.perf_counter()
    stopped = "epochs"
    try:
        model.fit(train, validation)
        if len(checkpoints) < args.epochs:
            stopped = "early stopping"
    except _TimeUp:  # what fit does at its end: keep the best epoch's weights
        stopped = "time"
        model.net.load_state_dict(best["state"])
    wall_s = time.perf_counter() - clock
    del model._refresh, model._validation_ndcg

    # test: the same weights, predicting from train + validation, excluding train + validation items
    history = InteractionMatrix.from_frame(frame.loc[frame["role"] != "test", columns], users, items)
    model._set_sequences(*latest(*history.sequences(), keep=args.max_len), np.ones(len(items), dtype=bool))
    model._seen = history.binary()
    model._refresh()
    result = evaluate(model, test, ks=(K,)).per_user
    native = evaluate(model, test, ks=(K,), exclude_seen=False).per_user
    best_point = max(checkpoints, key=lambda p: (p["valid_ndcg"], -p["epoch"]))
    return {"side": "tunespace", "setup_s": setup_s, "wall_s": wall_s, "train_s": wall_s - timing["valid_s"],
            "valid_s": timing["valid_s"], "epochs_completed": len(checkpoints), "stopped": stopped,
            "checkpoints": checkpoints, "best": best_point, "key": key,
            "test": {"ndcg": float(result[f"ndcg@{K}"].mean()), "hr": float(result[f"hit_rate@{K}"].mean()),
                     "native_ndcg": float(native[f"ndcg@{K}"].mean()),
                     "native_hr": float(native[f"hit_rate@{K}"].mean()), "users": len(result)}}


# -- the report ----------------------------------------------------------------------------------------------------
def time_to(result: dict, target: float) -> dict | None:
    for point in result["checkpoints"]:
        if point["valid_ndcg"] is not None and point["valid_ndcg"] >= target:
            return point
    return None


def report(results: dict[str, dict], target_arg: float | None, args) -> dict:
    ts, rb = results.get("tunespace"), results.get("recbole")
    print("\n" + "=" * 100)
    print(f"MovieLens-100k, leave-one-out by time; max length {args.max_len}, hidden {args.hidden}, {args.layers} "
          f"layers, {args.heads} heads, batch {args.batch_size}, mask {args.mask_prob}, dropout {args.dropout}, "
          f"{args.threads} threads, cap {args.max_minutes:g} min per side")
    header = (f"{'side':<10} {'epochs':>7} {'stopped':>14} {'s/epoch':>8} {'best valid':>10} {'at epoch':>8} "
              f"{'test NDCG@10':>12} {'test HR@10':>10} {'native N@10':>11} {'native HR@10':>12} {'wall s':>7} "
              f"{'valid s':>7}")
    print(header)
    for name, r in (("tunespace", ts), ("recbole", rb)):
        if r is None:
            print(f"{name:<10} (no result)")
            continue
        ends = [p for p in r["checkpoints"] if p.get("epoch_end", True)]
        per_epoch = ends[-1]["wall_s"] / len(ends) if ends else float("nan")
        epochs = r["epochs_completed"] if name == "tunespace" else r["checkpoints"][-1]["epoch"]
        t = r["test"]
        print(f"{name:<10} {epochs:>7.2f} {r['stopped']:>14} {per_epoch:>8.1f} {r['best']['valid_ndcg']:>10.4f} "
              f"{r['best']['epoch']:>8} {t['ndcg']:>12.4f} {t['hr']:>10.4f} {t['native_ndcg']:>11.4f} "
              f"{t['native_hr']:>12.4f} {r['wall_s']:>7.0f} {r['valid_s']:>7.0f}")
    loads = {name: [p["load1"] for p in r["checkpoints"] if "load1" in p] for name, r in (("tunespace", ts),
                                                                                        ("recbole", rb)) if r}
    if any(loads.values()):
        print("mean 1-minute load average at the checkpoints (the machine's other work slows both sides): " +
              ", ".join(f"{name} {sum(v) / len(v):.1f}" for name, v in loads.items() if v))
    summary: dict = {}
    if ts is None or rb is None:
        return summary
    lower = min(("tunespace", ts["best"]["valid_ndcg"]), ("recbole", rb["best"]["valid_ndcg"]), key=lambda x: x[1])
    target = target_arg if target_arg is not None else 0.95 * lower[1]
    how = "given" if target_arg is not None else f"0.95 x {lower[0]}'s best validation NDCG@10 {lower[1]:.4f}"
    print(f"\ntarget validation NDCG@10 {target:.4f} ({how})")
    if target <= 0:
        print("  (a target of 0 is reached by any model: the time ratio below means nothing)")
    reached = {}
    for name, r in (("tunespace", ts), ("recbole", rb)):
        point = time_to(r, target)
        reached[name] = point
        if point is None:
            print(f"  {name:<10} not reached in {r['wall_s']:.0f}s (best {r['best']['valid_ndcg']:.4f})")
        else:
            print(f"  {name:<10} reached at epoch {point['epoch']}: {point['wall_s']:.0f}s wall "
                  f"({point['train_s']:.0f}s training, the rest validation), valid NDCG@10 {point['valid_ndcg']:.4f}")
    q_ndcg = ts["test"]["ndcg"] / rb["test"]["ndcg"] if rb["test"]["ndcg"] else float("nan")
    q_hr = ts["test"]["hr"] / rb["test"]["hr"] if rb["test"]["hr"] else float("nan")
    print(f"\nratios (goal: quality >= 1, time >= 2)")
    print(f"  test NDCG@10 tunespace / RecBole: {q_ndcg:.3f}")
    print(f"  test HR@10   tunespace / RecBole: {q_hr:.3f}")
    summary = {"target": target, "target_rule": how, "ratio_test_ndcg": q_ndcg, "ratio_test_hr": q_hr}
    if reached["tunespace"] is not None and reached["recbole"] is not None:
        for label, field in (("wall", "wall_s"), ("training only", "train_s")):
            ratio = reached["recbole"][field] / reached["tunespace"][field]
            summary[f"ratio_time_{field}"] = ratio
            print(f"  time to target RecBole / tunespace ({label}): {ratio:.2f}")
    elif reached["tunespace"] is not None:
        ratio = rb["wall_s"] / reached["tunespace"]["wall_s"]
        summary["ratio_time_wall_s_lower_bound"] = ratio
        print(f"  time to target RecBole / tunespace (wall): > {ratio:.2f} (RecBole did not reach it)")
    else:
        print("  time to target: tunespace did not reach it")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/recbole-bench"))
    parser.add_argument("--recbole-env", type=Path, default=Path("/tmp/recbole-env"))
    parser.add_argument("--sides", choices=["both", "tunespace", "recbole"], default="both",
                        help="run these; the other side's last result in --workdir is reused if it matches")
    parser.add_argument("--max-minutes", type=float, default=40.0, help="training wall-time cap per side")
    parser.add_argument("--epochs", type=int, default=200, help="tunespace's epoch cap (its default)")
    parser.add_argument("--patience", type=int, default=16, help="tunespace's early-stopping patience (its default)")
    parser.add_argument("--plateau-patience", type=int, default=5,
                        help="tunespace's learning-rate plateau patience (its default; a large value keeps the rate)")
    parser.add_argument("--recbole-epochs", type=int, default=300, help="RecBole's epoch cap (its default)")
    parser.add_argument("--recbole-stopping-step", type=int, default=10, help="RecBole's patience (its default)")
    parser.add_argument("--recbole-eval-every", type=int, default=50,
                        help="also validate RecBole every N batches (0: at epoch ends only)")
    parser.add_argument("--recbole-ft-ratio", type=float, default=0.5, help="RecBole's ft_ratio (its default)")
    parser.add_argument("--target", type=float, help="validation NDCG@10 to time (default: 0.95 x the lower best)")
    parser.add_argument("--max-len", type=int, default=200)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--ff-dim", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--mask-prob", type=float, default=0.2)
    parser.add_argument("--dropout", type=float, default=0.1, help="both sides (RecBole: hidden and attention)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--threads", type=int, default=2, help="torch threads, both sides")
    parser.add_argument("--limit-users", type=int, help="only the first N users (smoke tests)")
    parser.add_argument("--print-every", type=int, default=10, help="tunespace: print every N epochs")
    parser.add_argument("--results", type=Path, default=None,
                        help="folder for this run's provenance record (default: bench/results)")
    args = parser.parse_args()
    if args.child is not None:
        recbole_child(args.child)
        return

    from tunespace.provenance import bench_record_path, recorded_run

    record_path = bench_record_path(__file__, args.results)
    with recorded_run(record_path) as record:
        record["settings"] = vars(args)
        compare(args, record)
    print(f"provenance record: {record_path}")


def compare(args, record: dict) -> None:
    """The comparison itself (main minus argument parsing); fills `record` with the figures it prints."""
    args.workdir.mkdir(parents=True, exist_ok=True)
    python, versions = build_recbole_env(args.recbole_env, args.workdir / "recbole-env-install.log")
    if python is None:
        print(f"skipping the RecBole comparison: {versions}")
        record["skipped"] = versions
        return
    record["recbole_env"] = versions
    inter = ml100k_in_env(python)
    if inter is None:
        print(f"skipping the RecBole comparison: no dataset_example/ml-100k/ml-100k.inter in {args.recbole_env}")
        record["skipped"] = f"no ml-100k.inter in {args.recbole_env}"
        return
    print(f"RecBole's environment: {args.recbole_env} (recbole, torch, numpy, pandas: {versions})")
    frame = leave_one_out(inter, args.limit_users)
    counts = frame["role"].value_counts().to_dict()
    print(f"split: {frame['user_id'].nunique()} users, {frame['track_id'].nunique()} items, {counts}")
    export_recbole(frame, args.workdir / "data" / DATASET, args.max_len)
    shared = {k: getattr(args, k) for k in ("max_minutes", "max_len", "hidden", "ff_dim", "layers", "heads",
                                            "batch_size", "mask_prob", "dropout", "lr", "seed", "threads",
                                            "limit_users")}
    tunespace_key = hashlib.sha1(json.dumps({**shared, "epochs": args.epochs, "patience": args.patience,
                                             "plateau": args.plateau_patience},
                                            sort_keys=True).encode()).hexdigest()[:12]
    recbole_key = hashlib.sha1(json.dumps({**shared, "epochs": args.recbole_epochs,
                                           "stop": args.recbole_stopping_step, "every": args.recbole_eval_every,
                                           "ft": args.recbole_ft_ratio}, sort_keys=True).encode()).hexdigest()[:12]
    results: dict[str, dict] = {}
    figures = record["figures"] = {"split": {"users": frame["user_id"].nunique(), "items": frame["track_id"].nunique(),
                                             **counts}, "sides": {}}
    for side, key in (("tunespace", tunespace_key), ("recbole", recbole_key)):
        path = args.workdir / f"{side}_result.json"
        if args.sides in ("both", side):
            result = run_tunespace(args, frame, key) if side == "tunespace" else run_recbole(args, python, versions,
                                                                                              key)
            if result is not None:
                path.write_text(json.dumps(result, indent=1))
                results[side] = result
                figures["sides"][side] = _headline(result, reused_from=None)
        elif path.exists() and json.loads(path.read_text()).get("key") == key:
            results[side] = json.loads(path.read_text())
            print(f"reusing {path}")
            figures["sides"][side] = _headline(results[side], reused_from=path)
        else:
            print(f"no {side} result for these settings in {args.workdir}; run with --sides {side} or both")
    summary = figures["summary"] = report(results, args.target, args)
    (args.workdir / "summary.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                           "summary": summary}, indent=1))


def _headline(result: dict, reused_from: Path | None) -> dict:
    """One side's result without its per-checkpoint list (that stays in --workdir), and where it came from."""
    return {**{k: v for k, v in result.items() if k != "checkpoints"}, "checkpoints": len(result["checkpoints"]),
            "reused_from": None if reused_from is None else str(reused_from)}


if __name__ == "__main__":
    main()
