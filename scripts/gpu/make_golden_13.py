#!/usr/bin/env python3
"""Golden fixtures for image-to-image, true CFG and LoRA on the tiny FLUX models (issue 13), made
with the reference (diffusers FluxImg2ImgPipeline / FluxPipeline / load_lora_weights) in float32 on
the CPU. Run on a host with torch + diffusers + transformers (+ peft for load_lora_weights); the
reference's code is never part of the product, the fixtures are data.

    python3 scripts/gpu/make_golden_13.py test/fixtures/flux-tiny OUT_DIR

Writes into OUT_DIR (copy into test/fixtures/flux-tiny/cases/):
  img2img.json + img2img-N.safetensors   input_image [H,W,3] in [0,1] (the pixels fed), image_latents
                                         (packed, after shift/scale, encoder mean), noise (packed),
                                         initial_latents (packed, noised), latents_after_step_K, image
  cfg.json + cfg-N.safetensors           FluxPipeline with negative_prompt + true_cfg_scale:
                                         initial_latents, latents_after_step_K, image
  lora-*.safetensors                     LoRA files in each format people download (random, rank 4)
  lora.json + lora-cases.safetensors     transformer outputs for transformer.safetensors case `a`
                                         with LoRAs applied at strengths; plus a short pipeline run
                                         with a kohya LoRA that also holds CLIP (lora_te1_) layers
"""
import json
import os
import sys
import traceback

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import diffusers
import transformers
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxImg2ImgPipeline, FluxPipeline, FluxTransformer2DModel
from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
from transformers import CLIPTextModel, CLIPTokenizer, T5EncoderModel, T5Tokenizer

FIX, OUT = sys.argv[1], sys.argv[2]
M = os.path.join(FIX, 'models')
CASES = os.path.join(FIX, 'cases')
os.makedirs(OUT, exist_ok=True)
torch.set_grad_enabled(False)
report = {'torch': torch.__version__, 'diffusers': diffusers.__version__, 'transformers': transformers.__version__, 'errors': {}}
try:
    if os.environ.get('NO_PEFT'):
        raise ImportError('NO_PEFT set')
    import peft
    report['peft'] = peft.__version__
except Exception as e:  # noqa: BLE001
    report['peft'] = f'missing ({e})'

gen = json.load(open(os.path.join(FIX, 'generated.json')))
f32 = torch.float32


def load_parts():
    transformer = FluxTransformer2DModel.from_pretrained(os.path.join(M, 'transformer'), torch_dtype=f32)
    vcfg = {k: v for k, v in gen['configs']['vae'].items() if not k.startswith('_')}
    vae = AutoencoderKL(**vcfg)
    sd = convert_ldm_vae_checkpoint(load_file(os.path.join(M, 'ae.safetensors')), vae.config)
    missing, unexpected = vae.load_state_dict({k: v.to(f32) for k, v in sd.items()}, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    te = CLIPTextModel.from_pretrained(os.path.join(M, 'text_encoder'), torch_dtype=f32)
    te2 = T5EncoderModel.from_pretrained(os.path.join(M, 'text_encoder_2'), torch_dtype=f32)
    tok = CLIPTokenizer.from_pretrained(os.path.join(M, 'tokenizer'))
    tok2 = T5Tokenizer.from_pretrained(os.path.join(M, 'tokenizer_2'))
    sched = FlowMatchEulerDiscreteScheduler.from_pretrained(os.path.join(M, 'scheduler'))
    return dict(scheduler=sched, vae=vae, text_encoder=te, tokenizer=tok, text_encoder_2=te2, tokenizer_2=tok2, transformer=transformer)


def c(t):
    return t.detach().to(torch.float32).contiguous().cpu()


def recorder(store):
    def cb(pipe, i, t, kw):
        store[f'latents_after_step_{i}'] = c(kw['latents'])
        return {}
    return cb


def run_case(name, fn):
    try:
        fn()
    except Exception:  # noqa: BLE001
        report['errors'][name] = traceback.format_exc()
        print(report['errors'][name], file=sys.stderr)


# ------------------------------------------------------------------------------------------------
# Image-to-image: the encoder's mean (sample_mode "argmax": deterministic, what ComfyUI/Forge use),
# the noise drawn by the pipeline recorded, two strengths.
def img2img():
    import diffusers.pipelines.flux.pipeline_flux_img2img as mod
    parts = load_parts()
    pipe = FluxImg2ImgPipeline(**parts)
    captured = {}
    orig_randn = mod.randn_tensor
    orig_retrieve = mod.retrieve_latents

    def randn(*a, **k):
        t = orig_randn(*a, **k)
        captured['noise'] = t.clone()
        return t

    def retrieve(enc, generator=None, sample_mode='sample'):
        return orig_retrieve(enc, generator=generator, sample_mode='argmax')

    mod.randn_tensor = randn
    mod.retrieve_latents = retrieve
    orig_scale_noise = pipe.scheduler.scale_noise

    def scale_noise(sample, timestep, noise=None):
        captured['image_latents'] = sample.clone()
        out = orig_scale_noise(sample, timestep, noise)
        captured['initial'] = out.clone()
        captured['timestep'] = float(timestep.flatten()[0])
        return out

    pipe.scheduler.scale_noise = scale_noise
    src = np.asarray(Image.open(os.path.join(CASES, 'pipeline-1.png')).convert('RGB'))  # 128 x 192
    H, W = src.shape[:2]
    meta = []
    for n, (strength, steps, prompt, seed) in enumerate([(0.6, 4, 'a watercolor painting of a red fox in the snow, soft light', 7), (0.35, 4, 'an oil painting of a lighthouse at dusk', 11)]):
        store = {}
        g = torch.Generator('cpu').manual_seed(seed)
        out = pipe(prompt=prompt, image=Image.fromarray(src), height=H, width=W, strength=strength, num_inference_steps=steps,
                   guidance_scale=3.5, max_sequence_length=512, generator=g, output_type='np', callback_on_step_end=recorder(store))
        h2, w2 = H // 16, W // 16
        pack = lambda t: c(FluxImg2ImgPipeline._pack_latents(t, 1, 16, h2 * 2, w2 * 2))  # noqa: E731
        store['input_image'] = c(torch.from_numpy(src.astype(np.float32) / 255.0))
        store['image_latents'] = pack(captured['image_latents'])
        store['noise'] = pack(captured['noise'])
        store['initial_latents'] = pack(captured['initial'])
        store['image'] = c(torch.from_numpy(out.images[0].astype(np.float32)))
        save_file(store, os.path.join(OUT, f'img2img-{n}.safetensors'))
        Image.fromarray(np.round(out.images[0] * 255).astype(np.uint8)).save(os.path.join(OUT, f'img2img-{n}.png'))
        sig = pipe.scheduler.sigmas.tolist()
        meta.append(dict(file=f'img2img-{n}.safetensors', png=f'img2img-{n}.png', input='pipeline-1.png', prompt=prompt, height=H, width=W, strength=strength,
                         num_inference_steps=steps, steps_run=sum(1 for k in store if k.startswith('latents_after_step_')), guidance_scale=3.5,
                         max_sequence_length=512, first_sigma=captured['timestep'] / 1000.0, sigmas=sig, encoder='mean (sample_mode argmax)'))
    json.dump(meta, open(os.path.join(OUT, 'img2img.json'), 'w'), indent=1, ensure_ascii=False)
    mod.randn_tensor = orig_randn
    mod.retrieve_latents = orig_retrieve


# ------------------------------------------------------------------------------------------------
# True CFG: FluxPipeline with a negative prompt, given initial latents.
def cfg():
    parts = load_parts()
    pipe = FluxPipeline(**{k: v for k, v in parts.items()})
    meta = []
    for n, (prompt, neg, scale, H, W, steps, seed) in enumerate([
        ('a red fox in the snow', 'blurry, low quality', 4.0, 128, 128, 3, 3),
        ('a city street at night', '', 2.5, 64, 128, 2, 5),
    ]):
        g = torch.Generator('cpu').manual_seed(seed)
        lat = torch.randn((1, (H // 16) * (W // 16), 64), generator=g, dtype=f32)
        store = {'initial_latents': lat.clone()}
        out = pipe(prompt=prompt, negative_prompt=neg, true_cfg_scale=scale, height=H, width=W, num_inference_steps=steps, guidance_scale=3.5,
                   max_sequence_length=512, latents=lat, output_type='np', callback_on_step_end=recorder(store))
        store['image'] = c(torch.from_numpy(out.images[0].astype(np.float32)))
        save_file(store, os.path.join(OUT, f'cfg-{n}.safetensors'))
        Image.fromarray(np.round(out.images[0] * 255).astype(np.uint8)).save(os.path.join(OUT, f'cfg-{n}.png'))
        meta.append(dict(file=f'cfg-{n}.safetensors', png=f'cfg-{n}.png', prompt=prompt, negative_prompt=neg, true_cfg_scale=scale, height=H, width=W,
                         num_inference_steps=steps, guidance_scale=3.5, max_sequence_length=512))
    json.dump(meta, open(os.path.join(OUT, 'cfg.json'), 'w'), indent=1, ensure_ascii=False)


# ------------------------------------------------------------------------------------------------
# LoRA files in the formats people download. Random, rank 4; values sized so the effect is clear
# (output changes by tens of percent) without blowing up.
def lora_files():
    bfl = load_file(os.path.join(M, 'flux-tiny.safetensors'))
    te_sd = load_file(os.path.join(M, 'text_encoder', 'model.safetensors'))
    g = torch.Generator('cpu').manual_seed(1234)
    R = 4

    def pair(out_f, in_f, r=R, s=0.15):
        return (torch.randn((r, in_f), generator=g) * s, torch.randn((out_f, r), generator=g) * s)

    linears = sorted(k[:-len('.weight')] for k, v in bfl.items() if k.endswith('.weight') and v.ndim == 2)
    files = {}
    # kohya / sd-scripts: lora_unet_<bfl name with _>, lora_down/lora_up/alpha; plus CLIP (lora_te1_).
    k = {}
    for name in linears:
        out_f, in_f = bfl[name + '.weight'].shape
        a, b = pair(out_f, in_f)
        key = 'lora_unet_' + name.replace('.', '_')
        k[key + '.lora_down.weight'], k[key + '.lora_up.weight'], k[key + '.alpha'] = a, b, torch.tensor(2.0)
    for tname, t in te_sd.items():
        if t.ndim == 2 and '.layers.' in tname and tname.endswith('.weight') and ('self_attn' in tname or '.mlp.' in tname):
            key = 'lora_te1_' + tname[:-len('.weight')].replace('.', '_')
            a, b = pair(t.shape[0], t.shape[1])
            k[key + '.lora_down.weight'], k[key + '.lora_up.weight'], k[key + '.alpha'] = a, b, torch.tensor(4.0)
    files['kohya'] = k
    # The same without CLIP layers, for the transformer-only comparison.
    files['kohya-dit'] = {kk: vv for kk, vv in k.items() if kk.startswith('lora_unet_')}
    # diffusers / PEFT (ai-toolkit, SimpleTuner): transformer.<diffusers module>.lora_A/lora_B, no alpha (scale 1).
    tr = FluxTransformer2DModel.from_pretrained(os.path.join(M, 'transformer'), torch_dtype=f32)
    p = {}
    for mname, mod in tr.named_modules():
        if isinstance(mod, torch.nn.Linear):
            a, b = pair(mod.out_features, mod.in_features, s=0.1)
            p[f'transformer.{mname}.lora_A.weight'], p[f'transformer.{mname}.lora_B.weight'] = a, b
    files['peft'] = p
    # XLabs: double blocks' attention only, processor.{qkv,proj}_lora{1,2}.{down,up}.
    x = {}
    for i in range(gen['configs']['transformer']['num_layers']):
        for part, stream in (('1', 'img'), ('2', 'txt')):
            q = bfl[f'double_blocks.{i}.{stream}_attn.qkv.weight']
            pr = bfl[f'double_blocks.{i}.{stream}_attn.proj.weight']
            a, b = pair(q.shape[0], q.shape[1])
            x[f'double_blocks.{i}.processor.qkv_lora{part}.down.weight'], x[f'double_blocks.{i}.processor.qkv_lora{part}.up.weight'] = a, b
            a, b = pair(pr.shape[0], pr.shape[1])
            x[f'double_blocks.{i}.processor.proj_lora{part}.down.weight'], x[f'double_blocks.{i}.processor.proj_lora{part}.up.weight'] = a, b
    files['xlabs'] = x
    for name, sd in files.items():
        save_file({kk: vv.to(torch.bfloat16) if vv.ndim else vv for kk, vv in sd.items()}, os.path.join(OUT, f'lora-{name}.safetensors'))
    return list(files)


def lora_cases():
    names = lora_files()
    inputs = load_file(os.path.join(CASES, 'transformer.safetensors'))
    parts = load_parts()
    pipe = FluxPipeline(**parts)

    def forward():
        o = pipe.transformer(hidden_states=inputs['hidden_states'], encoder_hidden_states=inputs['encoder_hidden_states'], pooled_projections=inputs['pooled_projections'],
                             timestep=inputs['a.timestep'], guidance=inputs['a.guidance'], img_ids=inputs['img_ids'], txt_ids=inputs['txt_ids'], return_dict=False)[0]
        return c(o)

    out = {'base': forward()}
    if not report['peft'][0].isdigit():
        return lora_cases_merged(names, pipe, forward, out)
    combos = [('kohya-dit', [('kohya-dit', 1.0)]), ('kohya-dit@0.5', [('kohya-dit', 0.5)]), ('peft@0.7', [('peft', 0.7)]), ('xlabs', [('xlabs', 1.0)]),
              ('kohya-dit@0.8+peft@-0.5', [('kohya-dit', 0.8), ('peft', -0.5)])]
    loaded = set()
    for _, combo in combos:
        for f, _ in combo:
            if f not in loaded:
                sd = load_file(os.path.join(OUT, f'lora-{f}.safetensors'))
                pipe.load_lora_weights({k: v.to(f32) for k, v in sd.items()}, adapter_name=f.replace('-', '_'))
                loaded.add(f)
    for key, combo in combos:
        pipe.set_adapters([f.replace('-', '_') for f, _ in combo], [w for _, w in combo])
        out[key] = forward()
    pipe.unload_lora_weights()
    assert torch.equal(forward(), out['base']), 'unloading left the base changed'
    save_file(out, os.path.join(OUT, 'lora-cases.safetensors'))
    meta = {'inputs': 'transformer.safetensors case a', 'rank': 4, 'files': {n: f'lora-{n}.safetensors' for n in names},
            'alpha': {'kohya unet': 2.0, 'kohya te1': 4.0, 'peft': None, 'xlabs': None},
            'cases': {k: [{'file': f'lora-{f}.safetensors', 'strength': w} for f, w in combo] for k, combo in combos}}
    # A whole run with the kohya LoRA including CLIP layers: its effect on the pooled CLIP vector too.
    sd = load_file(os.path.join(OUT, 'lora-kohya.safetensors'))
    pipe.load_lora_weights({k: v.to(f32) for k, v in sd.items()}, adapter_name='kohya_all')
    pipe.set_adapters(['kohya_all'], [0.8])
    g = torch.Generator('cpu').manual_seed(9)
    H, W, steps = 64, 128, 2
    lat = torch.randn((1, (H // 16) * (W // 16), 64), generator=g, dtype=f32)
    store = {'initial_latents': lat.clone()}
    prompt = 'a paper lantern floating on a river'
    pe, ppe, _ = pipe.encode_prompt(prompt=prompt, prompt_2=None, max_sequence_length=512)
    store['clip_pooled'] = c(ppe)
    store['t5_hidden'] = c(pe)
    o = pipe(prompt=prompt, height=H, width=W, num_inference_steps=steps, guidance_scale=3.5, max_sequence_length=512, latents=lat, output_type='np',
             callback_on_step_end=recorder(store))
    store['image'] = c(torch.from_numpy(o.images[0].astype(np.float32)))
    save_file(store, os.path.join(OUT, 'lora-pipeline.safetensors'))
    Image.fromarray(np.round(o.images[0] * 255).astype(np.uint8)).save(os.path.join(OUT, 'lora-pipeline.png'))
    meta['pipeline'] = dict(file='lora-pipeline.safetensors', png='lora-pipeline.png', lora='lora-kohya.safetensors', strength=0.8, prompt=prompt, height=H, width=W,
                            num_inference_steps=steps, guidance_scale=3.5, max_sequence_length=512)
    json.dump(meta, open(os.path.join(OUT, 'lora.json'), 'w'), indent=1)


COMBOS = [('kohya-dit', [('kohya-dit', 1.0)]), ('kohya-dit@0.5', [('kohya-dit', 0.5)]), ('peft@0.7', [('peft', 0.7)]), ('xlabs', [('xlabs', 1.0)]),
          ('kohya-dit@0.8+peft@-0.5', [('kohya-dit', 0.8), ('peft', -0.5)])]


def lora_cases_merged(names, pipe, forward, out):
    # Without peft, load_lora_weights can't run: diffusers' own converters still map each format
    # to diffusers module names (the part a reference is for); W += strength · B @ A is PEFT's math.
    from diffusers.loaders.lora_conversion_utils import _convert_kohya_flux_lora_to_diffusers, _convert_xlabs_flux_lora_to_diffusers
    report['lora_method'] = 'diffusers converters + merge W += s*B@A (peft missing)'
    base = {k: v.clone() for k, v in pipe.transformer.state_dict().items()}

    def converted(f):
        sd = {k: v.to(f32) for k, v in load_file(os.path.join(OUT, f'lora-{f}.safetensors')).items()}
        if f.startswith('kohya'):
            return _convert_kohya_flux_lora_to_diffusers(sd)
        if f == 'xlabs':
            return _convert_xlabs_flux_lora_to_diffusers(sd)
        return sd

    for key, combo in COMBOS:
        pipe.transformer.load_state_dict(base)
        for f, w in combo:
            sd = converted(f)
            for k, a in sd.items():
                if not k.endswith('.lora_A.weight') or not k.startswith('transformer.'):
                    continue
                mod = pipe.transformer.get_submodule(k[len('transformer.'):-len('.lora_A.weight')])
                b = sd[k.replace('.lora_A.', '.lora_B.')]
                mod.weight += w * (b @ a)
        out[key] = forward()
    pipe.transformer.load_state_dict(base)
    save_file(out, os.path.join(OUT, 'lora-cases.safetensors'))
    meta = {'inputs': 'transformer.safetensors case a', 'rank': 4, 'files': {n: f'lora-{n}.safetensors' for n in names},
            'alpha': {'kohya unet': 2.0, 'kohya te1': 4.0, 'peft': None, 'xlabs': None}, 'method': report['lora_method'],
            'cases': {k: [{'file': f'lora-{f}.safetensors', 'strength': w} for f, w in combo] for k, combo in COMBOS}}
    json.dump(meta, open(os.path.join(OUT, 'lora.json'), 'w'), indent=1)


run_case('img2img', img2img)
run_case('cfg', cfg)
run_case('lora', lora_cases)
json.dump(report, open(os.path.join(OUT, 'generated-13.json'), 'w'), indent=1)
print(json.dumps({k: (v if k != 'errors' else list(v)) for k, v in report.items()}))
