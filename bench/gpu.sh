#!/usr/bin/env bash
# Benchmarks 1, 3 and 4 on one GPU: ResNet-18 on CIFAR-10-shaped synthetic data (no download).
# Prints the same ratio tables as on the CPU, with absolute images/s; written to finish in under
# 5 minutes on one recent GPU (not yet run on one: see docs/PERFORMANCE.md). Then DDP scaling over
# the machine's GPUs (about a minute per GPU count).
#   bash bench/gpu.sh            (from the repository root, with smu installed)
set -euo pipefail
cd "$(dirname "$0")"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
common=(--arch resnet18 --shape cifar10 --synthetic --device cuda)
python train_throughput.py "${common[@]}" --images 25600 --repeats 5 --no-original
python train_throughput.py "${common[@]}" --images 25600 --repeats 5 --no-original --amp
python train_throughput.py "${common[@]}" --images 25600 --repeats 5 --no-original --amp --compile
python iu_per_sample.py "${common[@]}" --images 256 --repeats 3
python ff_fisher.py "${common[@]}" --images 1024 --repeats 3
# DDP scaling: the same training on 1, 2, 4 and 8 GPUs (as many as there are), 256 images per GPU
# per step (weak scaling), torchrun on this machine; images/s and efficiency against one GPU.
gpus=$(python -c "import torch; print(torch.cuda.device_count())")
record=$(mktemp /tmp/smu-ddp-XXXXXX.jsonl)
for n in 1 2 4 8; do
    if [ "$n" -gt "$gpus" ]; then echo "# DDP on $n GPUs: skipped (this machine has $gpus)"; continue; fi
    torchrun --standalone --nproc-per-node "$n" ddp_scaling.py --arch resnet18 --shape cifar10 --synthetic \
        --device cuda --batch-per-rank 256 --steps 40 --repeats 3 --record "$record" > /dev/null
done
python ddp_scaling.py --report "$record"
# --executor local on the GPUs: the quickstart with one and with two steps per GPU (CUDA_VISIBLE_DEVICES
# per worker), against the serial executor, and whether the tables are the same (RTE aside).
tmp=$(mktemp -d /tmp/smu-local-XXXXXX)
for how in "serial:" "local:--executor local" "local-half:--executor local --gpus-per-step 0.5"; do
    name=${how%%:*}; args=${how#*:}
    /usr/bin/time -f "# quickstart $name: %e s" smu run quickstart device=cuda --out "$tmp/$name" --json $args \
        > "$tmp/$name.json"
done
python -c "
import json
def table(name):
    report = json.load(open(f'$tmp/{name}.json'))['report']
    for t in report:
        for row in t['rows']:
            for cells in row['cells'].values():
                cells.pop('rte_min')
    return report
same = table('serial') == table('local') == table('local-half')
print('# --executor local on the GPUs reports what the serial executor reports:', same, '(a GPU gives the same bytes as far as its kernels are deterministic)')
"
