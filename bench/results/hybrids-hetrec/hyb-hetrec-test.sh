#!/bin/bash
# issue 18: hetrec split A, the hybrid chosen on validation users (shallow-hybrid+pop over MiniLM tag text) with its
# frozen row, once on the test users of 3 split seeds
cd /work/wt-runs18d
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=/work/wt-runs18d/src HF_HUB_OFFLINE=1
/work/main/.venv/bin/tunespace benchmark recsys --dataset hetrec --data /work/shared/data/hetrec2011-lastfm-2k \
  --cutoff 2010-01-01 --test-start 2010-07-01 --text-encoder minilm \
  --models shallow,shallow-hybrid --backends minilm --epochs 8 --split-seeds 3 --cold-ranking new \
  --out /work/runs/hyb/hetrec-test
