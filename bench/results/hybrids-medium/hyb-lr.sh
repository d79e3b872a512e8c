#!/bin/bash
# issue 18: frozen-content BERT4Rec diagnosis, learning rate 3e-3 against the default 1e-3 (validation users)
cd /work/wt-runs18c
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=/work/wt-runs18c/src HF_HUB_OFFLINE=1
/work/main/.venv/bin/tunespace benchmark recsys --dataset folder --data /work/runs/corpus-medium --cutoff 2025-01-01 \
  --test-start 2025-01-01 --part validation --models bert4rec --backends mfcc,musicnn-msd,htcl \
  --embeddings /work/runs/corpus-medium/emb/htcl-s1 --epochs 8 --param bert4rec.standardize=true \
  --param bert4rec.lr=0.003 --param bert4rec-random.lr=0.003 --no-popularity-aware --out /work/runs/hyb/validation-bert4rec-lr3e-3
