#!/usr/bin/env bash
# Issue 18's hostile files against the commands that read them, as a user would meet them: a model
# with Rich markup and terminal escapes in its metadata, NaN and Inf in different layers, a file cut in
# half, a flipped header byte, a header claiming 100 MiB, a mask of 2s beside its model, YAML alias
# bombs of 8 and 9 levels. Prints per command: exit code, wall time, bytes and lines on stderr, raw ESC
# bytes printed, the message.
# Leaves everything in a fresh temporary folder and lists anything written there by a refused command.
#   bash bench/hostile_files.sh      (with smu installed; about a minute on 2 cores)
set -u
cd "$(mktemp -d)"
t() { local s=$(date +%s.%N); "$@" >out.txt 2>err.txt; local rc=$?; local e=$(date +%s.%N);
      printf '%-60s rc=%s %5.2fs stderr=%dB lines=%d raw-ESC=%s | %s\n' "$*" "$rc" "$(awk "BEGIN {print $e - $s}")" \
      "$(wc -c <err.txt)" "$(wc -l <err.txt)" "$(grep -c $'\x1b' out.txt err.txt | awk -F: '{s+=$2} END {print s}')" \
      "$(head -c 230 err.txt | tr '\n' ' ')"; }
smu prune --dataset digits --arch cnn --epochs 2 --rewind-epoch 1 --rate 0.5 -q --out base >/dev/null
python - <<'PY'
import torch
from smu.io import tensorfile
m = "base/round-1/model.safetensors"
tensors, meta = tensorfile.read_tensors(m), tensorfile.read_metadata(m)
hostile = "[bold red]INJECTED[/] \x1b]0;pwned-title\x07 \x1b[31mred\x1b[0m"
tensorfile.save_tensors("hostile/model.safetensors", tensors, meta | {"smu.command": hostile, "smu.note": hostile})
for name, layer, value in (("nan-fc", "net.fc.bias", float("nan")), ("inf-conv", next(k for k in tensors if tensors[k].ndim == 4), float("inf"))):
    bad = dict(tensors); bad[layer] = bad[layer].clone(); bad[layer].view(-1)[0] = value
    tensorfile.save_tensors(f"{name}/model.safetensors", bad, meta)
raw = open(m, "rb").read()
open("truncated.safetensors", "wb").write(raw[: len(raw) // 2])
flipped = bytearray(raw); flipped[20] ^= 0xFF; open("flipped.safetensors", "wb").write(bytes(flipped))
import shutil
shutil.copytree("base/round-1", "twos")
mask = tensorfile.read_tensors("twos/mask.safetensors")
tensorfile.save_tensors("twos/mask.safetensors", {k: v * 2 for k, v in mask.items()}, tensorfile.read_metadata("twos/mask.safetensors"))
open("bighead.safetensors", "wb").write((100 * 2**20).to_bytes(8, "little") + b"{" + b" " * 1000)
lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
for prev, cur in zip("abcdefg", "bcdefgh"):
    lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 10) + "]")
open("bomb8.yaml", "w").write("\n".join(lines) + "\nseeds: *h\n")
open("bomb9.yaml", "w").write("\n".join(lines) + "\ni: &i [" + ", ".join(["*h"] * 10) + "]\nseeds: *i\n")
PY
printf 'bomb8.yaml: %s bytes\n' "$(wc -c <bomb8.yaml)"
t smu inspect hostile/model.safetensors; grep -m1 -o 'INJECTED.\{0,60\}' out.txt
for m in nan-fc inf-conv; do
  t smu eval --model $m/model.safetensors --forget class:1
  t smu unlearn --model $m/model.safetensors --method ft --forget class:1 --epochs 1 --out u-$m
  t smu inspect $m/model.safetensors
done
for f in truncated flipped bighead; do t smu eval --model $f.safetensors --forget class:1; done
t smu eval --model twos/model.safetensors --forget class:1
t smu unlearn --model twos/model.safetensors --method ft --forget class:1 --epochs 1 --out u-twos
t smu eval --model base/dense/model.safetensors --mask twos/mask.safetensors --forget class:1
t smu inspect twos/mask.safetensors
t smu run bomb8.yaml --dry-run
t smu run bomb9.yaml --dry-run
echo "left behind: $(ls -d u-* runs 2>/dev/null | tr '\n' ' ')"
