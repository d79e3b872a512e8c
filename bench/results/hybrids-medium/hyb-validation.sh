#!/bin/bash
# issue 18: trained hybrids and the standardize default, chosen on validation users (split seed 0)
# usage: hyb-validation.sh false|true
std=$1
cd /work/wt-runs18
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=/work/wt-runs18/src HF_HUB_OFFLINE=1
models=knn,ease-content,shallow,shallow-hybrid,shallow-finetune,bert4rec,bert4rec-hybrid,bert4rec-finetune
params=""
for m in ${models//,/ }; do params="$params --param $m.standardize=$std"; done
/work/main/.venv/bin/tunespace benchmark recsys --dataset folder --data /work/runs/corpus-medium --cutoff 2025-01-01 \
  --test-start 2025-01-01 --part validation --models $models \
  --backends mfcc,musicnn-msd,htcl --embeddings /work/runs/corpus-medium/emb/htcl-s1 \
  --epochs 8 $params --out /work/runs/hyb/validation-std-$std
