#!/usr/bin/env bash
# The README's HTCL figures on the medium built-in corpus, end to end: corpus, MFCC, stage 1, the stage-2 grid,
# then `htcl evaluate` choosing among the stage-2 runs on validation users over several split seeds and reporting
# test figures for the chosen run and the fixed arms only. Every step is skipped when its output exists, so a
# stopped run resumes. The evaluation folder's tables, its provenance.json and each run's train_report.json and
# config.yaml are copied to RESULTS (committed: the README's HTCL figures name these files).
#
#   bench/htcl_medium.sh WORK [RESULTS]      (RESULTS defaults to bench/results/htcl-medium)
#
# About 25 minutes on 2 CPU cores with nothing else running.
set -euo pipefail
work=${1:?usage: bench/htcl_medium.sh WORK [RESULTS]}
results=${2:-$(dirname "$0")/results/htcl-medium}
split_seeds=${SPLIT_SEEDS:-5}
corpus=$work/corpus-medium
mkdir -p "$work" "$results"

[ -f "$corpus/build.json" ] || tunespace corpus build --size medium --out "$corpus"
tunespace embed --backend mfcc --data "$corpus" --out "$corpus/emb/mfcc"  # reuses finished shards
[ -f "$work/s1/train_report.json" ] \
    || tunespace htcl pretrain --data "$corpus" --config tiny --steps 400 --out "$work/s1" --device cpu

# Stage 2 with the frozen stage-1 trunk (head tuning), history pairs ranked against 2,000 catalogue draws.
stage2() {
    local name=$1
    shift
    [ -f "$work/$name/train_report.json" ] && return 0
    tunespace htcl finetune --data "$corpus" --init "$work/s1" --out "$work/$name" --pairs history --tune head \
        --set audio.adapter_hidden=256 --set train.batch_size=256 --set train.lr=0.001 \
        --set train.warmup_steps=100 --steps 2000 --device cpu "$@"
}
# The control: the same schedule with the preference weight at 0 (only the audio-text loss trains the head).
stage2 control --lambda 1 --catalogue-negatives 2000 --popularity-correction 0.25 \
    --set stage.preference_sources.history.weight=0
# The candidates, chosen among on validation users only.
stage2 l01-a0 --lambda 0.1 --catalogue-negatives 2000 --popularity-correction 0
stage2 l01-a025 --lambda 0.1 --catalogue-negatives 2000 --popularity-correction 0.25
stage2 l01-a05 --lambda 0.1 --catalogue-negatives 2000 --popularity-correction 0.5
stage2 l05-a025 --lambda 0.5 --catalogue-negatives 2000 --popularity-correction 0.25
stage2 l0-a025 --lambda 0 --catalogue-negatives 2000 --popularity-correction 0.25
stage2 l1-inbatch --lambda 1 --catalogue-negatives 0

candidates=(l01-a0 l01-a025 l01-a05 l05-a025 l0-a025 l1-inbatch)
runs=(--run "$work/s1" --run "$work/control")
for name in "${candidates[@]}"; do runs+=(--run "$work/$name"); done
tunespace htcl evaluate --data "$corpus" "${runs[@]}" --embeddings "$corpus/emb/mfcc" --stage1 s1 \
    --control control --select-on validation --split-seeds "$split_seeds" --out "$work/eval"

cp "$work"/eval/*.csv "$work"/eval/*.json "$results"/
for name in s1 control "${candidates[@]}"; do
    mkdir -p "$results/runs/$name"
    cp "$work/$name/train_report.json" "$work/$name/config.yaml" "$work/$name/provenance.json" "$results/runs/$name/"
done
echo "copied the evaluation tables and records to $results"
