#!/usr/bin/env bash
# Download the wheels of benchmarks/gpu_wheels.txt (CPython 3.12, manylinux x86_64) into .whl/ for the lent GPU
# machine, which has no network; then slim bitsandbytes to the libraries that machine can load (CPU, CUDA 13.x:
# its torch is cu130), so everything travels well inside the 64 MiB limit with the repository. .whl/ is ignored.
#
#   bash benchmarks/fetch_gpu_wheels.sh            # then: du -sh .whl
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
mkdir -p .whl
rm -f .whl/*.whl
grep -v '^#' benchmarks/gpu_wheels.txt | sed 's/#.*//' | awk 'NF {print $1}' >.whl/requirements.txt
"$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d .whl -r .whl/requirements.txt
rm .whl/requirements.txt
"$PY" - <<'PY'
"""Rewrite the bitsandbytes wheel without the libraries for other CUDA/ROCm/XPU versions (RECORD updated)."""
import glob
import os
import zipfile

(path,) = glob.glob(".whl/bitsandbytes-*.whl")
keep = ("libbitsandbytes_cpu.so", "libbitsandbytes_cuda130.so", "libbitsandbytes_cuda132.so")
slim = path + ".slim"
with zipfile.ZipFile(path) as source, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as target:
    dropped = {n for n in source.namelist() if n.endswith(".so") and os.path.basename(n) not in keep}
    for info in source.infolist():
        if info.filename in dropped:
            continue
        data = source.read(info)
        if info.filename.endswith(".dist-info/RECORD"):
            lines = data.decode().splitlines()
            data = ("\n".join(line for line in lines if line.split(",")[0] not in dropped) + "\n").encode()
        target.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
before = os.path.getsize(path)
os.replace(slim, path)
print(f"bitsandbytes: dropped {len(dropped)} libraries, {before / 2**20:.1f} -> {os.path.getsize(path) / 2**20:.1f} MiB")
PY
ls -l .whl
du -ch .whl/*.whl | tail -1
