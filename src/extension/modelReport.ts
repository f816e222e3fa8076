// What "Check Models" and "Download Model…" say: the server's check report as Markdown and as a
// one-line summary, the demo model's explanation, and download progress text. Pure (no vscode):
// text goes through the `t` given (vscode.l10n.t in the extension, a formatter in unit tests).

import { formatBytes } from '../shared/bytes';
import { commonProblem } from '../shared/models';
import type { DownloadProgress, FoundModel, FoundWhere, MachineInfo, ModelCheckReport, PartCheck, PartRole, PartStatus } from '../shared/models';

/** vscode.l10n.t's shape: a message with {0}, {1} … placeholders. */
export type Translate = (message: string, ...args: Array<string | number | boolean>) => string;

/** The figures the demo explanation compares the machine with. */
const GiB = 2 ** 30;

export function formatSpeed(bytesPerSecond: number, t: Translate): string {
  return t('{0}/s', formatBytes(bytesPerSecond));
}

/** A duration for people: "45 s", "12 min", "2 h 05 min". */
export function formatDuration(seconds: number, t: Translate): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 90) return t('{0} s', s);
  const min = Math.round(s / 60);
  if (min < 60) return t('{0} min', min);
  return t('{0} h {1} min', Math.floor(min / 60), String(min % 60).padStart(2, '0'));
}

/** One progress line of a download: percent, bytes, speed, time left, the file being fetched. */
export function progressText(p: DownloadProgress, t: Translate): { message: string; percent?: number } {
  const parts: string[] = [];
  const percent = p.total > 0 ? Math.min(100, Math.floor((p.bytes / p.total) * 100)) : undefined;
  if (percent !== undefined) parts.push(`${percent}%`);
  parts.push(p.total > 0 ? t('{0} of {1}', formatBytes(p.bytes), formatBytes(p.total)) : formatBytes(p.bytes));
  if (p.bytesPerSecond > 0) parts.push(formatSpeed(p.bytesPerSecond, t));
  if (p.etaSeconds !== undefined && p.bytes < p.total) parts.push(t('{0} left', formatDuration(p.etaSeconds, t)));
  if (p.file) {
    const name = p.file.split(/[\\/]/).pop() ?? p.file;
    parts.push(p.files > 1 ? t('file {0} of {1}: {2}', Math.min(p.filesDone + 1, p.files), p.files, name) : name);
  }
  return { message: parts.join(' · '), percent };
}

// ---- names ----------------------------------------------------------------------------------

export function roleLabel(role: PartRole, t: Translate): string {
  switch (role) {
    case 'dit': return t('DiT (transformer)');
    case 'clip': return t('CLIP text encoder');
    case 't5': return t('T5 text encoder');
    case 'vae': return t('VAE');
    case 'tokenizer': return t('CLIP tokenizer');
    case 'tokenizer2': return t('T5 tokenizer');
  }
}

export function statusLabel(status: PartStatus, t: Translate): string {
  switch (status) {
    case 'present': return t('present');
    case 'missing': return t('missing');
    case 'wrong-dtype': return t('wrong dtype');
    case 'corrupt': return t('corrupt');
  }
}

export const STATUS_MARK: Record<PartStatus, string> = { present: '✅', missing: '❌', 'wrong-dtype': '⚠️', corrupt: '💥' };

export function whereLabel(where: FoundWhere, t: Translate): string {
  switch (where) {
    case 'configured': return t('configured');
    case 'workspace': return t('in the workspace');
    case 'global-storage': return t('downloaded by MajicFLUX');
    case 'search-path': return t('in a search folder');
    case 'huggingface-cache': return t('Hugging Face cache');
    case 'modelscope-cache': return t('ModelScope cache');
  }
}

/** "BF16 ×780, F32 ×4", most frequent first. */
export function dtypeSummary(dtypes: Record<string, number> | undefined): string {
  if (!dtypes) return '';
  return Object.entries(dtypes)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([d, n]) => `${d} ×${n}`)
    .join(', ');
}

/** Parameters as "11.9 B", "123 M", "4.2 K". */
export function formatParams(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)} B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(n >= 1e8 ? 0 : 1)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} K`;
  return String(n);
}

/** Parts that are not usable, as "T5 text encoder (missing)". */
export function partProblems(model: FoundModel, t: Translate): string[] {
  return model.parts.filter((p) => p.status !== 'present').map((p) => `${roleLabel(p.role, t)} (${statusLabel(p.status, t)})`);
}

// ---- Markdown -------------------------------------------------------------------------------

/** Text safe inside a Markdown table cell. */
export function mdCell(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\r?\n/g, ' ').replace(/([*_[\]<>#`])/g, '\\$1');
}

/** A code span that survives backticks in the text (and `|` inside a table). */
export function mdCode(s: string, inTable = false): string {
  const runs = s.match(/`+/g) ?? [];
  const fence = '`'.repeat(Math.max(0, ...runs.map((r) => r.length)) + 1);
  const body = inTable ? s.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ') : s;
  const pad = body.startsWith('`') || body.endsWith('`') ? ' ' : '';
  return `${fence}${pad}${body}${pad}${fence}`;
}

export function machineLine(m: MachineInfo, t: Translate): string {
  const gpu = m.gpuName || m.gpuMemory ? `, ${t('GPU')}: ${[m.gpuName, m.gpuMemory ? formatBytes(m.gpuMemory) : ''].filter(Boolean).join(' ')}` : '';
  return `**${t('This machine')}:** ${m.platform}-${m.arch}, ${m.cpus} ${t('CPU threads')}, ${formatBytes(m.totalMemory)} ${t('RAM')} (${formatBytes(m.freeMemory)} ${t('free')})${gpu}`;
}

function partRow(p: PartCheck, t: Translate): string {
  let status = `${STATUS_MARK[p.status]} ${statusLabel(p.status, t)}`;
  if (p.message) status += ` — ${mdCell(p.message)}`;
  if (p.verified) status += ` · sha256 ${p.verified === 'match' ? t('matches') : p.verified === 'mismatch' ? t('DOES NOT MATCH') : t('recorded')}`;
  const cells = [
    roleLabel(p.role, t),
    status,
    p.path ? mdCode(p.path, true) : '—',
    [p.layout ?? '', dtypeSummary(p.dtypes)].filter(Boolean).map(mdCell).join(' · ') || '—',
    p.params !== undefined ? formatParams(p.params) : '—',
    p.bytes !== undefined ? formatBytes(p.bytes) : '—',
  ];
  return `| ${cells.join(' | ')} |`;
}

const yesNo = (v: boolean | undefined, t: Translate) => (v === undefined ? '—' : v ? `✅ ${t('yes')}` : `❌ ${t('no')}`);

/** The full report, for a Markdown preview. */
export function reportMarkdown(r: ModelCheckReport, t: Translate): string {
  const m = r.model;
  const lines: string[] = [`# ${t('MajicFLUX model check')}`, ''];
  lines.push(m.complete ? `## ✅ ${mdCell(m.name)}` : `## ⚠️ ${mdCell(m.name)} — ${t('incomplete')}`, '');
  lines.push(`${mdCode(m.root)} · ${whereLabel(m.where, t)}`, '', machineLine(r.machine, t), '');

  lines.push(`## ${t('Parts')}`, '', `| ${t('part')} | ${t('status')} | ${t('file')} | ${t('layout and dtypes')} | ${t('parameters')} | ${t('size')} |`, '|---|---|---|---|---|---|');
  for (const p of m.parts) lines.push(partRow(p, t));
  lines.push('');
  if (!m.complete) {
    lines.push(t('Missing or unusable: {0}. Run MajicFLUX: Download Model… to fetch the missing parts, or point the majicflux.model.* settings at them.', partProblems(m, t).join(', ')), '');
  }

  if (r.estimates.length) {
    const sizes = [...new Set(r.estimates.map((e) => `${e.width}×${e.height}`))];
    const gpu = r.estimates.some((e) => e.fitsGpu !== undefined);
    lines.push(`## ${t('Memory at {0}', sizes.join(', '))}`, '');
    lines.push(
      `| ${t('weights')} | ${t('mode')} | CLIP | T5 | DiT | VAE | ${t('peak')} | ${t('fits RAM')} |${gpu ? ` ${t('fits GPU')} |` : ''}`,
      `|---|---|---|---|---|---|---|---|${gpu ? '---|' : ''}`,
    );
    for (const e of r.estimates) {
      const c = e.components;
      const mode = e.mode === 'sequential' ? t('sequential') : t('resident');
      const size = sizes.length > 1 ? ` (${e.width}×${e.height})` : '';
      lines.push(`| ${e.weights} | ${mode}${size} | ${formatBytes(c.clip)} | ${formatBytes(c.t5)} | ${formatBytes(c.dit)} | ${formatBytes(c.vae)} | **${formatBytes(e.peak)}** | ${yesNo(e.fitsRam, t)} |${gpu ? ` ${yesNo(e.fitsGpu, t)} |` : ''}`);
    }
    lines.push('', t('"sequential" loads one part at a time (the least memory); "resident" keeps every part loaded between images (the fastest). The peak includes the largest working set.'), '');
  }

  if (r.advice.length) {
    lines.push(`## ${t('What fits this machine')}`, '');
    for (const a of r.advice) lines.push(`- ${a}`);
    lines.push('');
  }

  lines.push(`## ${t('Settings for this model')}`, '', '```json', JSON.stringify(specSettings(m.spec), null, 2), '```', '');
  return lines.join('\n');
}

/** What tells two models found in one folder apart: the single-file DiT, when the spec names one. */
export function variantOf(spec: FoundModel['spec']): string {
  return spec.transformer ? (spec.transformer.split(/[\\/]/).pop() ?? '') : '';
}

/** The majicflux.model.* settings that select a model spec. */
export function specSettings(spec: FoundModel['spec']): Record<string, string> {
  const out: Record<string, string> = {};
  if (spec.dir) out['majicflux.model.path'] = spec.dir;
  if (spec.transformer) out['majicflux.model.transformer'] = spec.transformer;
  if (spec.vae) out['majicflux.model.vae'] = spec.vae;
  if (spec.textEncoder) out['majicflux.model.textEncoder'] = spec.textEncoder;
  if (spec.textEncoder2) out['majicflux.model.textEncoder2'] = spec.textEncoder2;
  return out;
}

/** One sentence for a notification: complete or not, then the best advice. */

export function reportSummary(r: ModelCheckReport, t: Translate): string {
  const m = r.model;
  const common = m.complete ? undefined : commonProblem(m);
  if (common) return t('Model {0} cannot be used: {1}.', m.name, common);
  if (!m.complete) return t('Model {0} is incomplete: {1}.', m.name, partProblems(m, t).join(', '));
  return r.advice[0] ? t('Model {0} is complete. {1}', m.name, r.advice[0]) : t('Model {0} is complete.', m.name);
}

// ---- the demo model -------------------------------------------------------------------------

export type DemoMachine = Pick<MachineInfo, 'platform' | 'arch' | 'cpus' | 'totalMemory' | 'freeMemory'>;

export function demoSummary(t: Translate): string {
  return t('No model configured: using the bundled demo model (random weights, images are noise).');
}

/** What the demo model is, and what FLUX.1-dev would need on this machine. */
export function demoMarkdown(m: DemoMachine, t: Translate): string {
  return [
    `# ${t('MajicFLUX model check')}`,
    '',
    `**${t('This machine')}:** ${m.platform}-${m.arch}, ${m.cpus} ${t('CPU threads')}, ${formatBytes(m.totalMemory)} ${t('RAM')} (${formatBytes(m.freeMemory)} ${t('free')})`,
    '',
    `## ${t('Demo model')}`,
    '',
    t('No model is configured (majicflux.model.path), so MajicFLUX uses its bundled demo model: the real FLUX.1 architecture at toy size with random weights. Its images are coloured noise; it shows that everything works.'),
    '',
    t('For real images, download FLUX.1-dev (or a fine-tune such as majicflus) and set majicflux.model.path to its folder, or majicflux.model.transformer to a single .safetensors file.'),
    '',
    t('MajicFLUX: Download Model… fetches one for you (resumable, checksums verified); MajicFLUX: Find Models lists the models already on this machine.'),
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
    m.totalMemory * 0.8 >= 22 * GiB
      ? t('This machine has enough memory to keep FLUX.1-dev fp8 resident.')
      : m.totalMemory * 0.8 >= 12 * GiB
        ? t('This machine can run FLUX.1-dev fp8 in sequential mode (memory "auto" picks it).')
        : t('This machine has less memory than FLUX.1-dev fp8 needs even in sequential mode; use a remote GPU server (majicflux.server.remoteHost) or a smaller model.'),
  ].join('\n');
}
