#!/usr/bin/env python3
"""Fill the tensor files listed by `node dist/bench.js --prepare-manifest` with random values.

Benchmark helper for a GPU host (never part of the product): PyTorch draws the values on the GPU,
so the 11.9 B-parameter DiT and T5-XXL are written at disk speed instead of in an hour of
single-threaded JavaScript. Same distributions as src/inference/models/synthetic.ts (not the same values):
weights N(0, 1/fan_in), biases N(0, 0.02²), norm scales N(1, 0.05²), embeddings N(0, 0.5²).
Each file is streamed: one tensor in memory at a time.

    python3 scripts/gpu/fill_synthetic.py MANIFEST.json [--seed 7] [--only flux-fp8]
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import torch

DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "F8_E4M3": torch.float8_e4m3fn}


def values(t, gen, device):
    shape, kind = t["shape"], t["kind"]
    x = torch.randn(shape, generator=gen, device=device, dtype=torch.float32)
    if kind == "weight":
        fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
        x.mul_(1 / math.sqrt(fan_in))
    elif kind == "bias":
        x.mul_(0.02)
    elif kind == "norm":
        x.mul_(0.05).add_(1)
    elif kind == "embedding":
        x.mul_(0.5)
    return x.to(DTYPES[t["dtype"]])


def write_file(entry, gen, device):
    tensors = entry["tensors"]
    header, offset = {}, 0
    for t in tensors:
        size = math.prod(t["shape"]) * torch.tensor([], dtype=DTYPES[t["dtype"]]).element_size()
        header[t["name"]] = {"dtype": t["dtype"], "shape": t["shape"], "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    os.makedirs(os.path.dirname(entry["file"]), exist_ok=True)
    with open(entry["file"], "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for t in tensors:
            x = values(t, gen, device)
            f.write(x.view(torch.uint8).cpu().numpy().tobytes())
    return offset


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("manifest")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--only", help="fill only files whose path contains this")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator(device=device)
    gen.manual_seed(args.seed)
    t0 = time.time()
    total = 0
    for entry in json.load(open(args.manifest)):
        if args.only and args.only not in entry["file"]:
            continue
        total += write_file(entry, gen, device)
        print(f"{time.time() - t0:6.1f} s  {entry['file']}", file=sys.stderr, flush=True)
    print(f"wrote {total / 2**30:.1f} GiB in {time.time() - t0:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
