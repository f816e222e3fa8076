// "Check Models": finds the parts of the configured model (file headers only, nothing is loaded)
// and compares what each weight format needs with this machine's memory.

import * as os from 'node:os';
import * as vscode from 'vscode';
import { WEIGHT_FORMATS } from '../inference/api';
import type { ComponentName, WeightFormat } from '../inference/api';
import { Settings, modelSpec, usesDemoModel } from './settings';

const t = vscode.l10n.t;

export interface ModelReport {
  demo: boolean;
  ok: boolean;
  /** Why the model cannot be used (missing parts). */
  error?: string;
  name?: string;
  parts?: Record<string, string>;
  /** Resident bytes per component for each weight format. */
  needs?: Record<WeightFormat, Record<ComponentName, number>>;
  machine: { totalMemory: number; freeMemory: number; platform: string; arch: string; cpus: number };
  /** The memory mode that fits this machine for the configured weight format. */
  advice?: { fits: 'resident' | 'sequential' | 'no'; weights: WeightFormat; largest: number; total: number };
}

const COMPONENTS: ComponentName[] = ['clip', 't5', 'dit', 'vae'];
const FORMATS: readonly WeightFormat[] = WEIGHT_FORMATS;

export function checkModel(settings: Settings): ModelReport {
  const machine = { totalMemory: os.totalmem(), freeMemory: os.freemem(), platform: os.platform(), arch: os.arch(), cpus: os.cpus().length };
  if (usesDemoModel(settings)) return { demo: true, ok: true, name: 'demo', machine };
  // Header reads only (safetensors JSON headers); bundled, evaluated on first use.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { resolveModel } = require('../inference/modelFiles') as typeof import('../inference/modelFiles');
  try {
    const files = resolveModel(modelSpec(settings));
    const needs = Object.fromEntries(
      FORMATS.map((f) => [f, Object.fromEntries(COMPONENTS.map((c) => [c, files.residentBytes(f, c)]))]),
    ) as ModelReport['needs'];
    // `auto` means fp8 on CPU/CUDA, the most common case; the Check Models table shows every format.
    const weights: WeightFormat = settings.weights === 'auto' ? 'fp8' : settings.weights;
    const per = needs![weights];
    const total = COMPONENTS.reduce((a, c) => a + per[c], 0);
    const largest = Math.max(...COMPONENTS.map((c) => per[c]));
    const budget = 0.8 * machine.totalMemory;
    const fits = total <= budget ? 'resident' : largest <= budget ? 'sequential' : 'no';
    return {
      demo: false,
      ok: true,
      name: files.name,
      parts: { transformer: files.transformer, vae: files.vae, textEncoder: files.textEncoder, textEncoder2: files.textEncoder2, tokenizer: files.tokenizer, tokenizer2: files.tokenizer2 },
      needs,
      machine,
      advice: { fits, weights, largest, total },
    };
  } catch (err) {
    return { demo: false, ok: false, error: (err as Error).message, machine };
  }
}

export const gib = (b: number) => `${(b / 2 ** 30).toFixed(b < 2 ** 30 ? 2 : 1)} GiB`;

/** The report as Markdown, for a preview. */
export function reportMarkdown(r: ModelReport): string {
  const lines: string[] = [`# ${t('MajicFLUX model check')}`, ''];
  const m = r.machine;
  lines.push(`**${t('This machine')}:** ${m.platform}-${m.arch}, ${m.cpus} ${t('CPU threads')}, ${gib(m.totalMemory)} ${t('RAM')} (${gib(m.freeMemory)} ${t('free')})`, '');
  if (r.demo) {
    lines.push(
      `## ${t('Demo model')}`,
      '',
      t('No model is configured (majicflux.model.path), so MajicFLUX uses its bundled demo model: the real FLUX.1 architecture at toy size with random weights. Its images are coloured noise; it shows that everything works.'),
      '',
      t('For real images, download FLUX.1-dev (or a fine-tune such as majicflus) and set majicflux.model.path to its folder, or majicflux.model.transformer to a single .safetensors file.'),
      '',
      `## ${t('Memory needs of FLUX.1-dev')}`,
      '',
      `| ${t('weights')} | DiT | T5 | CLIP + VAE | ${t('all resident')} |`,
      '|---|---|---|---|---|',
      '| fp8 | 11.1 GiB | 9.1 GiB (bf16) | 0.4 GiB | ≈ 21 GiB |',
      '| fp16 | 22.2 GiB | 9.1 GiB | 0.4 GiB | ≈ 32 GiB |',
      '',
      t('With memory mode "sequential" only one part is loaded at a time, so fp8 needs about {0} of free memory (the DiT); "resident" keeps all parts loaded for speed.', '12 GiB'),
      '',
      m.totalMemory * 0.8 >= 22 * 2 ** 30
        ? t('This machine has enough memory to keep FLUX.1-dev fp8 resident.')
        : m.totalMemory * 0.8 >= 12 * 2 ** 30
          ? t('This machine can run FLUX.1-dev fp8 in sequential mode (memory "auto" picks it).')
          : t('This machine has less memory than FLUX.1-dev fp8 needs even in sequential mode; use a remote GPU server (majicflux.server.remoteHost) or a smaller model.'),
    );
    return lines.join('\n');
  }
  if (!r.ok) {
    lines.push(`## ❌ ${t('The model cannot be used')}`, '', r.error ?? '', '');
    return lines.join('\n');
  }
  lines.push(`## ✅ ${r.name}`, '', `| ${t('part')} | ${t('file')} |`, '|---|---|');
  for (const [k, v] of Object.entries(r.parts ?? {})) lines.push(`| ${k} | \`${v}\` |`);
  lines.push('', `## ${t('Memory needs')}`, '', `| ${t('weights')} | CLIP | T5 | DiT | VAE | ${t('all resident')} |`, '|---|---|---|---|---|---|');
  for (const f of FORMATS) {
    const n = r.needs![f];
    lines.push(`| ${f} | ${gib(n.clip)} | ${gib(n.t5)} | ${gib(n.dit)} | ${gib(n.vae)} | ${gib(COMPONENTS.reduce((a, c) => a + n[c], 0))} |`);
  }
  const a = r.advice!;
  lines.push(
    '',
    a.fits === 'resident'
      ? t('With {0} weights everything fits in memory at once: memory mode "auto" keeps the model resident between images.', a.weights)
      : a.fits === 'sequential'
        ? t('With {0} weights the whole model ({1}) does not fit in 80% of RAM, but its largest part ({2}) does: memory mode "auto" loads one part at a time (sequential).', a.weights, gib(a.total), gib(a.largest))
        : t('With {0} weights even the largest part ({1}) does not fit in 80% of RAM: choose fp8 weights, or use a remote GPU server.', a.weights, gib(a.largest)),
  );
  return lines.join('\n');
}

export function reportSummary(r: ModelReport): string {
  if (r.demo) return t('No model configured: using the bundled demo model (random weights, images are noise).');
  if (!r.ok) return t('The configured model cannot be used: {0}', r.error ?? '');
  const a = r.advice!;
  return t('Model {0} is complete. {1} weights need {2} resident ({3} in sequential mode); this machine has {4}.', r.name!, a.weights, gib(a.total), gib(a.largest), gib(r.machine.totalMemory));
}
