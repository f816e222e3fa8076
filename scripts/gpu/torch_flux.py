#!/usr/bin/env python3
"""PyTorch eager FLUX.1 DiT forward, for same-machine benchmark comparisons only (never part of
the product). Written from the architecture of black-forest-labs/flux (model.py, modules/layers.py):
double-stream blocks with joint attention over [txt, img], single-stream blocks with the parallel
MLP, adaLN modulation, QK RMSNorm, 3-axis RoPE, SDPA attention.

Weights come from a BFL-layout checkpoint (e.g. the synthetic flux-fp8.safetensors):
  bf16  every weight upcast to bf16 once (resident 2 bytes/param)
  fp8   F8_E4M3 weights kept as they are, each upcast to bf16 just before its matmul (the
        "fp8 storage + per-layer upcast" method)

Also a matmul throughput probe (the same [4096, 3072] x [3072, 3072] product the WebGPU probe
runs), and --check: the float32 output of this implementation for inputs dumped by
`bench.js --dump`, against the output dumped there (an independent check of the ONNX graph).

    python3 scripts/gpu/torch_flux.py CHECKPOINT --sizes 512,1024 --txt 512 --out result.json
    python3 scripts/gpu/torch_flux.py CHECKPOINT --check dump/*.safetensors --out check.json
"""
import argparse
import json
import math
import os
import statistics
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file


class Flux:
    """`dtype`: the compute type; weights of another type are converted at each use (fp8 → bf16)."""

    def __init__(self, sd, cfg, dtype=torch.bfloat16):
        self.sd, self.cfg, self.dtype = sd, cfg, dtype
        self.h = cfg["hidden_size"]
        self.heads = cfg["num_heads"]
        self.dh = self.h // self.heads

    def w(self, name):
        t = self.sd[name]
        return t if t.dtype == self.dtype else t.to(self.dtype)

    def linear(self, x, name):
        b = self.sd.get(f"{name}.bias")
        return F.linear(x, self.w(f"{name}.weight"), None if b is None else self.w(f"{name}.bias"))

    def mlp_embedder(self, x, name):
        return self.linear(F.silu(self.linear(x, f"{name}.in_layer")), f"{name}.out_layer")

    def modulation(self, vec, name, n):
        return self.linear(F.silu(vec), name)[:, None, :].chunk(n, dim=-1)

    def ln(self, x):
        return F.layer_norm(x, (self.h,), eps=1e-6)

    def qk_norm(self, q, k, name):
        def rms(x, scale):
            xf = x.float()
            return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype) * self.w(scale)
        return rms(q, f"{name}.query_norm.scale"), rms(k, f"{name}.key_norm.scale")

    def split_heads(self, qkv):
        B, L, _ = qkv.shape
        q, k, v = qkv.view(B, L, 3, self.heads, self.dh).permute(2, 0, 3, 1, 4)
        return q, k, v  # [B, H, L, Dh]

    def attention(self, q, k, v, pe):
        q, k = rope(q, pe), rope(k, pe)
        x = F.scaled_dot_product_attention(q, k, v)
        B, H, L, D = x.shape
        return x.transpose(1, 2).reshape(B, L, H * D)

    def double_block(self, img, txt, vec, pe, n):
        im = self.modulation(vec, f"{n}.img_mod.lin", 6)
        tm = self.modulation(vec, f"{n}.txt_mod.lin", 6)
        iq, ik, iv = self.split_heads(self.linear((1 + im[1]) * self.ln(img) + im[0], f"{n}.img_attn.qkv"))
        iq, ik = self.qk_norm(iq, ik, f"{n}.img_attn.norm")
        tq, tk, tv = self.split_heads(self.linear((1 + tm[1]) * self.ln(txt) + tm[0], f"{n}.txt_attn.qkv"))
        tq, tk = self.qk_norm(tq, tk, f"{n}.txt_attn.norm")
        attn = self.attention(torch.cat((tq, iq), 2), torch.cat((tk, ik), 2), torch.cat((tv, iv), 2), pe)
        ta, ia = attn[:, : txt.shape[1]], attn[:, txt.shape[1]:]
        img = img + im[2] * self.linear(ia, f"{n}.img_attn.proj")
        img = img + im[5] * self.mlp(((1 + im[4]) * self.ln(img) + im[3]), f"{n}.img_mlp")
        txt = txt + tm[2] * self.linear(ta, f"{n}.txt_attn.proj")
        txt = txt + tm[5] * self.mlp(((1 + tm[4]) * self.ln(txt) + tm[3]), f"{n}.txt_mlp")
        return img, txt

    def mlp(self, x, n):
        return self.linear(F.gelu(self.linear(x, f"{n}.0"), approximate="tanh"), f"{n}.2")

    def single_block(self, x, vec, pe, n):
        shift, scale, gate = self.modulation(vec, f"{n}.modulation.lin", 3)
        fused = self.linear((1 + scale) * self.ln(x) + shift, f"{n}.linear1")
        qkv, mlp = torch.split(fused, [3 * self.h, fused.shape[-1] - 3 * self.h], dim=-1)
        q, k, v = self.split_heads(qkv)
        q, k = self.qk_norm(q, k, f"{n}.norm")
        out = self.linear(torch.cat((self.attention(q, k, v, pe), F.gelu(mlp, approximate="tanh")), -1), f"{n}.linear2")
        return x + gate * out

    def forward(self, img, txt, y, t, guidance, pe):
        c = self.cfg
        img = self.linear(img, "img_in")
        vec = self.mlp_embedder(timestep_embedding(t, 256).to(img.dtype), "time_in")
        if c.get("guidance_embed"):
            vec = vec + self.mlp_embedder(timestep_embedding(guidance, 256).to(img.dtype), "guidance_in")
        vec = vec + self.mlp_embedder(y, "vector_in")
        txt = self.linear(txt, "txt_in")
        for i in range(c["depth"]):
            img, txt = self.double_block(img, txt, vec, pe, f"double_blocks.{i}")
        x = torch.cat((txt, img), 1)
        for i in range(c["depth_single_blocks"]):
            x = self.single_block(x, vec, pe, f"single_blocks.{i}")
        img = x[:, txt.shape[1]:]
        shift, scale = self.linear(F.silu(vec), "final_layer.adaLN_modulation.1")[:, None, :].chunk(2, dim=-1)
        return self.linear((1 + scale) * self.ln(img) + shift, "final_layer.linear")


def timestep_embedding(t, dim, max_period=10000, factor=1000.0):
    t = t * factor
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def rope_tables(ids, axes, theta):
    """ids [L, 3] → (cos, sin) [L, Dh/2] in float32."""
    parts = []
    for a, d in enumerate(axes):
        omega = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64, device=ids.device) / d)
        parts.append(ids[:, a:a + 1].double() * omega[None])
    ang = torch.cat(parts, -1)
    return torch.cos(ang).float(), torch.sin(ang).float()


def rope(x, pe):
    cos, sin = pe  # [L, Dh/2]
    xf = x.float().reshape(*x.shape[:-1], -1, 2)
    x0, x1 = xf[..., 0], xf[..., 1]
    out = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), -1)
    return out.reshape(x.shape).to(x.dtype)


def inputs(cfg, size, txt_len, device):
    h = w = size // 16
    n = h * w
    img_ids = torch.zeros(h, w, 3, device=device)
    img_ids[..., 1] = torch.arange(h, device=device)[:, None]
    img_ids[..., 2] = torch.arange(w, device=device)[None, :]
    ids = torch.cat((torch.zeros(txt_len, 3, device=device), img_ids.reshape(n, 3)), 0)
    g = torch.Generator(device=device).manual_seed(0)
    bf = torch.bfloat16
    return dict(
        img=torch.randn(1, n, cfg["in_channels"], generator=g, device=device).to(bf),
        txt=torch.randn(1, txt_len, cfg["context_in_dim"], generator=g, device=device).to(bf),
        y=torch.randn(1, cfg["vec_in_dim"], generator=g, device=device).to(bf),
        t=torch.tensor([0.5], device=device),
        guidance=torch.tensor([3.5], device=device),
        pe=rope_tables(ids, cfg["axes_dim"], cfg["theta"]),
    )


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def bench(model, cfg, size, txt_len, reps, device="cuda", warmup=True):
    """Median of `reps` forwards after a warm-up (cuBLAS/SDPA handles, autotuning; oneDNN
    primitives on the CPU). Returns (median, all times, warm-up time or None)."""
    x = inputs(cfg, size, txt_len, device)
    if device == "cpu":  # inputs in the compute type (the CUDA path keeps them bf16 as before)
        x = {k: (v.to(model.dtype) if k in ("img", "txt", "y") else v) for k, v in x.items()}
    w = None
    if warmup:
        t0 = time.perf_counter()
        model.forward(**x)
        sync(device)
        w = time.perf_counter() - t0
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        model.forward(**x)
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, w


def denoise(model, cfg, size, txt_len, steps, device="cuda"):
    """A whole `steps`-step Euler denoise (one DiT forward per step, the latents updated on the
    GPU), after the warm-up bench() did: seconds from the first forward to the last result."""
    x = inputs(cfg, size, txt_len, device)
    sigmas = torch.linspace(1, 0, steps + 1, device=device)
    img = x["img"]
    sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        v = model.forward(**{**x, "img": img, "t": sigmas[i : i + 1].to(x["t"].dtype)})
        img = img + (sigmas[i + 1] - sigmas[i]) * v.to(img.dtype)
    sync(device)
    return time.perf_counter() - t0


def rss_gib():
    """(current, peak) resident memory of this process in GiB (Linux)."""
    import resource
    cur = 0
    with open("/proc/self/statm") as f:
        cur = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return cur / 2**30, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def cpu_main(args, cfg):
    """PyTorch CPU eager: the same forward in fp32 or bf16 (weights converted once from the
    checkpoint, resident), `torch.get_num_threads()` intra-op threads."""
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {"torch": torch.__version__, "device": "cpu", "threads": torch.get_num_threads(), "txt_tokens": args.txt,
              "cpu": open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(" :\t"),
              "amx": "amx_bf16" in open("/proc/cpuinfo").read(), "mkldnn_bf16": torch.backends.mkldnn.is_available(), "runs": []}
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}), flush=True)
    t0 = time.perf_counter()
    src = load_file(args.checkpoint, device="cpu")
    result["load_s"] = time.perf_counter() - t0
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    for mode in args.modes.split(","):
        t0 = time.perf_counter()
        sd = {k: v.to(dtypes[mode]) for k, v in src.items()}
        convert = time.perf_counter() - t0
        model = Flux(sd, cfg, dtypes[mode])
        for size in (int(s) for s in args.sizes.split(",")):
            s, times, w = bench(model, cfg, size, args.txt, args.reps, "cpu", warmup=not args.no_warmup)
            cur, peak = rss_gib()
            run = {"mode": mode, "size": size, "s_per_step": s, "times": times, "warmup_s": w, "convert_s": convert,
                   "rss_gib": cur, "peak_rss_gib": peak}
            result["runs"].append(run)
            print(json.dumps(run), flush=True)
            if args.out:
                json.dump(result, open(args.out, "w"), indent=1)
        del model, sd
    return result


@torch.inference_mode()
def check(checkpoint, cfg, dumps):
    """fp32 (and bf16) outputs of this implementation vs each dump's `out`."""
    sd = {k: v.float() for k, v in load_file(checkpoint, device="cuda").items()}
    cases = []
    for path in dumps:
        d = load_file(path, device="cuda")
        n, m = d["img"].shape[1], d["txt"].shape[1]
        side = int(round(math.sqrt(n)))
        img_ids = torch.zeros(side, side, 3, device="cuda")
        img_ids[..., 1] = torch.arange(side, device="cuda")[:, None]
        img_ids[..., 2] = torch.arange(side, device="cuda")[None, :]
        ids = torch.cat((torch.zeros(m, 3, device="cuda"), img_ids.reshape(n, 3)), 0)
        x = dict(img=d["img"], txt=d["txt"], y=d["vec"], t=d["timestep"], guidance=d["guidance"], pe=rope_tables(ids, cfg["axes_dim"], cfg["theta"]))
        cases.append((path, x, d["out"].float()))
    refs = [Flux(sd, cfg, torch.float32).forward(**x).float() for _, x, _ in cases]
    for k in list(sd):  # in place: fp32 and bf16 copies of 11.9 B weights don't fit together
        sd[k] = sd[k].to(torch.bfloat16)
    torch.cuda.empty_cache()
    out = []
    for (path, x, onnx), ref in zip(cases, refs):
        bf = Flux(sd, cfg, torch.bfloat16).forward(**{k: (v.to(torch.bfloat16) if torch.is_tensor(v) and v.dtype == torch.float32 and k in ("img", "txt", "y") else v) for k, v in x.items()}).float()
        rel = lambda a: ((a - ref).norm() / ref.norm()).item()
        out.append({"dump": path, "onnx_vs_torch_fp32_rel_l2": rel(onnx), "torch_bf16_vs_fp32_rel_l2": rel(bf), "max_abs_ref": ref.abs().max().item()})
        print(json.dumps(out[-1]), flush=True)
    return out


@torch.inference_mode()
def matmul_probe():
    out = {}
    a = torch.randn(4096, 3072, device="cuda")
    b = torch.randn(3072, 3072, device="cuda")
    for name, dt in (("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", torch.float32)):
        x, y = a.to(dt), b.to(dt)
        for _ in range(3):
            x @ y
        torch.cuda.synchronize()
        n = 50
        t0 = time.perf_counter()
        for _ in range(n):
            x @ y
        torch.cuda.synchronize()
        ms = (time.perf_counter() - t0) / n * 1e3
        out[name] = {"ms": ms, "tflops": 2 * 4096 * 3072 * 3072 / ms / 1e9}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("--sizes", default="512,1024")
    ap.add_argument("--txt", type=int, default=512)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--modes", default="fp8,bf16")
    ap.add_argument("--out")
    ap.add_argument("--check", nargs="*")
    ap.add_argument("--device", default="cuda", help="cuda, or cpu (modes fp32,bf16: CPU eager baseline)")
    ap.add_argument("--threads", type=int, help="CPU intra-op threads (default: torch's)")
    ap.add_argument("--no-warmup", action="store_true", help="CPU: time the first forward too (one-step runs)")
    ap.add_argument("--denoise", default="", help="GPU: also time whole denoises, e.g. 1024:20,512:28 (size:steps)")
    args = ap.parse_args()
    cfg = json.load(open(args.checkpoint.replace(".safetensors", ".config.json")))
    if args.device == "cpu":
        result = cpu_main(args, cfg)
        if args.out:
            json.dump(result, open(args.out, "w"), indent=1)
        return
    if args.check:
        result = check(args.checkpoint, cfg, args.check)
        if args.out:
            json.dump(result, open(args.out, "w"), indent=1)
        return
    result = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(), "txt_tokens": args.txt, "matmul": matmul_probe(), "runs": []}
    t0 = time.perf_counter()
    sd = load_file(args.checkpoint, device="cuda")
    result["load_s"] = time.perf_counter() - t0
    model = None
    for mode in args.modes.split(","):
        model = None  # drop the previous mode's weights before measuring this one
        if mode == "bf16":
            sd = {k: v.to(torch.bfloat16) for k, v in sd.items()}
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        weights = torch.cuda.memory_allocated()
        model = Flux(sd, cfg)
        for size in (int(s) for s in args.sizes.split(",")):
            torch.cuda.reset_peak_memory_stats()
            s = bench(model, cfg, size, args.txt, args.reps)
            run = {"mode": mode, "size": size, "s_per_step": s, "weights_gib": weights / 2**30, "max_allocated_gib": torch.cuda.max_memory_allocated() / 2**30}
            for spec in filter(None, args.denoise.split(",")):
                dsize, dsteps = (int(v) for v in spec.split(":"))
                if dsize == size:
                    run[f"denoise_{dsteps}_steps_s"] = denoise(model, cfg, size, args.txt, dsteps)
            result["runs"].append(run)
            print(json.dumps(run), flush=True)
    if args.out:
        json.dump(result, open(args.out, "w"), indent=1)
    print(json.dumps(result["matmul"]))


if __name__ == "__main__":
    main()
