#!/usr/bin/env bash
# Train the bundled default model (assets/model/) from nothing, on the synthetic benchmark.
#
#     bash tools/train_bundled.sh            # every step resumes: re-run it after an interruption
#
# Steps: generate the train split (seed 1) and a val split (seed 2, never used for training);
# pretrain a region classifier on rendered crops (tools/pretrain.py, 4 x 8 epochs; the train and
# val proposals fill the cache beside the first 8); train MultiBox from its trunk after 24 epochs
# (tools/train_multibox.py --pretrained, beside the last 8);
# fine-tune the six region classifiers from its 32-epoch checkpoint (tools/train.py --pretrained,
# members 0..5, each with its own seed, context padding and crop jitter, box regressors fitted);
# export slim fp16 copies with their configs, class names and the commit they were trained from
# to assets/model/.
# Environment: PY (python), DATA (split folder root), RUNS (training outputs),
# TRAIN_IMAGES / VAL_IMAGES (split sizes), JOBS (members trained side by side, default 2: one per
# core here), THREADS (torch threads per job), SETS (extra --set overrides for every member, e.g.
# "classifier.input_size=96 classifier.padding=7").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-data}
RUNS=${RUNS:-runs}
TRAIN_IMAGES=${TRAIN_IMAGES:-2000}
VAL_IMAGES=${VAL_IMAGES:-300}
JOBS=${JOBS:-2}
export OMP_NUM_THREADS=${THREADS:-1}

split() {  # split NAME IMAGES SEED
    if [ ! -f "$DATA/$1/annotations.json" ]; then
        "$PY" tools/make_synthetic.py --out "$DATA/$1" --images "$2" --seed "$3" --split "$1"
    fi
}
split train "$TRAIN_IMAGES" 1
split val "$VAL_IMAGES" 2

# The train/val proposals once (one process), side by side with the pretraining's first stage.
"$PY" tools/train.py --config configs/detector.yaml --member 0 --out "$RUNS/detector" --proposals-only \
    --set "data.train=$DATA/train" --set "data.val=$DATA/val" --set data.workers=1 &
proposals=$!
pretrain() {  # pretrain EPOCHS [THREADS]: resume the pretraining and stretch it to EPOCHS
    OMP_NUM_THREADS=${2:-$((${THREADS:-1} * JOBS))} "$PY" tools/pretrain.py --config configs/pretrain.yaml \
        --out "$RUNS/pretrain" --resume --set "train.epochs=$1"
}
# Four stages of 8 epochs: each resume re-plans the cosine over the longer run, so the rate
# restarts lower each time (README, "Pretraining and the recipe").
pretrain 8
wait "$proposals"
pretrain 16
pretrain 24
PRETRAINED="$RUNS/pretrain/pretrain.pt"
[ -f "$RUNS/pretrain24.pt" ] || cp "$PRETRAINED" "$RUNS/pretrain24.pt"

# MultiBox from the 24-epoch trunk (one thread), side by side with the last pretraining stage.
mkdir -p assets/model
(OMP_NUM_THREADS=${THREADS:-1} "$PY" tools/train_multibox.py --config configs/multibox.yaml \
    --train "$DATA/train" --val "$DATA/val" --out "$RUNS/multibox" --resume \
    --pretrained "$RUNS/pretrain24.pt" && \
 "$PY" tools/export_multibox.py "$RUNS/multibox/checkpoint.pt" assets/model/multibox.pt) &
multibox=$!
pretrain 32 "${THREADS:-1}"
wait "$multibox"

overrides=(--set "data.train=$DATA/train" --set "data.val=$DATA/val"
           --set "data.multibox_weights=assets/model/multibox.pt" --set train.bbox_regression=true
           --pretrained "$PRETRAINED")
for extra in ${SETS:-}; do overrides+=(--set "$extra"); done
member() {  # member I: train (or resume) member I and export it
    "$PY" tools/train.py --config configs/detector.yaml --member "$1" --out "$RUNS/detector" \
        --resume "${overrides[@]}" --export "assets/model/member_$1.pt"
}
if [ "$JOBS" -le 1 ]; then
    for m in 0 1 2 3 4 5; do member "$m"; done
else  # JOBS at a time, each logging to its own file; a failed member stops the script
    mkdir -p "$RUNS/detector"
    running=()
    for m in 0 1 2 3 4 5; do
        log="$RUNS/detector/member_$m.log"
        echo "member $m: training, progress in $log"
        (member "$m" > "$log" 2>&1 || { echo "member $m failed: $(tail -n 1 "$log")" >&2; exit 1; }) &
        running+=($!)
        if [ ${#running[@]} -ge "$JOBS" ]; then wait "${running[0]}"; running=("${running[@]:1}"); fi
    done
    for pid in "${running[@]}"; do wait "$pid"; done
fi
