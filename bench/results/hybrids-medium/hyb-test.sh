#!/bin/bash
# issue 18: the configurations chosen on validation users (runs/hyb/validation-std-*), on test users once,
# 3 split seeds, cold pairs ranked among the cold items alone. usage: hyb-test.sh shallow|bert4rec|cold
cd /work/wt-runs18c
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=/work/wt-runs18c/src HF_HUB_OFFLINE=1
case $1 in
  shallow) models=knn,ease-content,shallow,shallow-hybrid,shallow-finetune; backends=htcl ;;
  bert4rec) models=bert4rec,bert4rec-hybrid,bert4rec-finetune; backends=htcl ;;
  cold) models=knn,ease-content; backends=musicnn-msd,clamp-abc,random ;;
esac
params=""
for m in ${models//,/ }; do params="$params --param $m.standardize=false"; done
/work/main/.venv/bin/tunespace benchmark recsys --dataset folder --data /work/runs/corpus-medium --cutoff 2025-01-01 \
  --test-start 2025-01-01 --models $models --backends $backends \
  --embeddings /work/runs/corpus-medium/emb/htcl-s1 --embeddings random=/work/runs/hyb/corpus-random-128.parquet \
  --epochs 8 --split-seeds 3 --cold-ranking new $params --out /work/runs/hyb/test-$1
