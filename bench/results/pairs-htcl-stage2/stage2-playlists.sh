#!/bin/bash
# Issue 16, beyond the paper: HTCL stage 2 with a playlist pair source instead of listening history, on the same
# schedule as the sweep's stage-2 runs (bench/htcl_listener_sweep.sh): head tuning, batch 256, 2000 steps, lambda 0.1.
set -e
data=/work/runs/sweep/seed0/latent-1
for source in playlist-random playlist-top playlist-emb; do
  [ -f $data/runs/$source/train_report.json ] && continue
  OMP_NUM_THREADS=1 PYTHONPATH=/work/wt15/src nice -n 5 /work/main/.venv/bin/tunespace htcl finetune --data $data \
    --init /work/runs/htcl/s1 --out $data/runs/$source --tune head --set audio.adapter_hidden=256 \
    --set train.batch_size=256 --set train.lr=0.001 --set train.warmup_steps=100 --steps 2000 --device cpu \
    --pairs $source --lambda 0.1 --popularity-correction 0
done
echo done
