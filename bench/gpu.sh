#!/usr/bin/env bash
# Benchmarks 1, 3 and 4 on one GPU: ResNet-18 on CIFAR-10-shaped synthetic data (no download).
# Prints the same ratio tables as on the CPU, with absolute images/s; written to finish in under
# 5 minutes on one recent GPU (not yet run on one: see docs/PERFORMANCE.md).
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
