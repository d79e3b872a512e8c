#!/bin/bash
# issue 18: the Shallow Net hybrids on hetrec split A, chosen on validation users (split seed 42)
cd /work/wt-runs18d
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=/work/wt-runs18d/src HF_HUB_OFFLINE=1
/work/main/.venv/bin/tunespace benchmark recsys --dataset hetrec --data /work/shared/data/hetrec2011-lastfm-2k \
  --cutoff 2010-01-01 --test-start 2010-07-01 --text-encoder minilm --part validation \
  --models shallow,shallow-hybrid,shallow-finetune --backends minilm,tags --epochs 8 --cold-ranking new \
  --out /work/runs/hyb/hetrec-validation
