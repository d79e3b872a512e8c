#!/usr/bin/env bash
# The listener-model sweep of HTCL stage 2 (issue 13): does a stage-2 variant learn audio-carried taste, or only
# popularity? The corpus's log is regenerated at several latent weights (`tunespace corpus relisten`: tracks,
# audio and captions unchanged, only how much of each listener's taste lives in note statistics moves), every
# variant is trained on each log from the same stage-1 run, and `htcl evaluate` reports each one raw and
# popularity-aware (+pop, beta on validation users), choosing among them on validation users only and testing
# every variant against the popularity-aware control (--test-all-runs: the variants not chosen are labelled
# information only). `bench/htcl_sweep_report.py` then gathers the logs into one table and a plot.
#
#   bench/htcl_listener_sweep.sh WORK CORPUS STAGE1 [RESULTS]
#
# CORPUS: a built corpus (`tunespace corpus build`) with MFCC embeddings in CORPUS/emb/mfcc; STAGE1: a stage-1 run
# on it (`tunespace htcl pretrain`). Each step is skipped when its output exists, so a stopped sweep resumes.
# RESULTS defaults to bench/results/htcl-sweep/$(basename WORK). LATENT_WEIGHTS (default "0 1 2") and SPLIT_SEEDS
# (default 5) can be set in the environment. About 12 minutes per latent weight on 2 CPU cores.
set -euo pipefail
work=${1:?usage: bench/htcl_listener_sweep.sh WORK CORPUS STAGE1 [RESULTS]}
corpus=$(realpath "${2:?corpus folder}")
stage1=$(realpath "${3:?stage-1 run folder}")
results=${4:-$(dirname "$0")/results/htcl-sweep/$(basename "$work")}
latent_weights=${LATENT_WEIGHTS:-0 1 2}
split_seeds=${SPLIT_SEEDS:-5}
mkdir -p "$work" "$results" "$corpus/.cache"

# Stage 2 on the frozen stage-1 trunk (head tuning), the schedule of bench/htcl_medium.sh.
stage2() {
    local data=$1 name=$2
    shift 2
    [ -f "$data/runs/$name/train_report.json" ] && return 0
    tunespace htcl finetune --data "$data" --init "$stage1" --out "$data/runs/$name" --tune head \
        --set audio.adapter_hidden=256 --set train.batch_size=256 --set train.lr=0.001 \
        --set train.warmup_steps=100 --steps 2000 --device cpu "$@"
}

for weight in $latent_weights; do
    data=$work/latent-$weight
    [ -f "$data/build.json" ] || tunespace corpus relisten "$corpus" --out "$data" --latent-weight "$weight"
    # the same audio files through links: share the decoded-audio and trunk-feature caches
    [ -e "$data/.cache" ] || ln -s "$corpus/.cache" "$data/.cache"
    # the control: the same schedule with the preference weight at 0 (only the audio-text loss trains the head)
    stage2 "$data" control --pairs history --lambda 1 --catalogue-negatives 2000 --popularity-correction 0.25 \
        --set stage.preference_sources.history.weight=0
    # history pairs (a 4-track profile -> one more track against 2,000 catalogue draws): popularity left in the
    # embedding (alpha 0, the design the issue found to learn popularity) or taken out by the full logQ (alpha 1)
    stage2 "$data" history-a0 --pairs history --lambda 0.1 --catalogue-negatives 2000 --popularity-correction 0
    stage2 "$data" history-a1 --pairs history --lambda 0.1 --catalogue-negatives 2000 --popularity-correction 1
    # the listener source: each listener's latest 20 % of tracks ranked among the whole catalogue from the rest,
    # with the popularity weight fixed at 1 or learned from 1, at two semantic weights
    stage2 "$data" listener-fixed --pairs listener --lambda 0.1 --popularity-correction 1
    stage2 "$data" listener-learned --pairs listener --lambda 0.1 --popularity-correction 1 --learn-popularity
    stage2 "$data" listener-learned-l05 --pairs listener --lambda 0.5 --popularity-correction 1 --learn-popularity
    [ -f "$data/eval/provenance.json" ] || tunespace htcl evaluate --data "$data" --run "$stage1" \
        --run "$data/runs/control" --run "$data/runs/history-a0" --run "$data/runs/history-a1" \
        --run "$data/runs/listener-fixed" --run "$data/runs/listener-learned" \
        --run "$data/runs/listener-learned-l05" --embeddings "$data/emb/mfcc" --stage1 "$(basename "$stage1")" \
        --control control --select-on validation --split-seeds "$split_seeds" --test-all-runs --out "$data/eval"
    mkdir -p "$results/latent-$weight"
    cp "$data"/eval/*.csv "$data"/eval/provenance.json "$data/build.json" "$results/latent-$weight/"
    for run in "$data"/runs/*/; do
        name=$(basename "$run")
        mkdir -p "$results/latent-$weight/runs/$name"
        cp "$run/train_report.json" "$run/config.yaml" "$run/provenance.json" "$results/latent-$weight/runs/$name/"
    done
done
python "$(dirname "$0")/htcl_sweep_report.py" "$results" --work "$work"
