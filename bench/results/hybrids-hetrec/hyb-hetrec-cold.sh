#!/bin/bash
# issue 18: hetrec cold artists get their name as content (minilm-name); ranked among the cold artists alone
cd /work/wt-runs18b
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=/work/wt-runs18b/src HF_HUB_OFFLINE=1
/work/main/.venv/bin/tunespace benchmark recsys --dataset hetrec --data /work/shared/data/hetrec2011-lastfm-2k \
  --cutoff 2010-01-01 --test-start 2010-07-01 --text-encoder minilm --models knn,ease-content \
  --backends minilm-name,random --embeddings random=/work/runs/hyb/hetrec-random-128.parquet \
  --split-seeds 3 --no-popularity-aware --cold-ranking new --out /work/runs/hyb/hetrec-cold-names
