// What `majicflux inspect <path>` reports: per-dtype counts from headers, each component's
// architecture, and a model folder's completeness.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { TensorDType } from '../dtypes';
import { ggufNotes } from '../gguf';
import { elementCount, TensorSource } from '../safetensors';
import { Component, openComponents } from './components';
import { describeLayout, ComponentKind, KIND_ORDER, Layout, LayoutError } from './detect';
import { isModelFolder } from './folder';
import { scanModelFolder } from './model';

export interface DtypeStats {
  tensors: number;
  parameters: number;
  bytes: number;
}

export interface TensorStats extends DtypeStats {
  /** Per dtype, e.g. { BF16: {...}, F8_E4M3: {...} }. */
  dtypes: Partial<Record<TensorDType, DtypeStats>>;
}

/** Counts from headers only. */
export function tensorStats(src: TensorSource): TensorStats {
  const s: TensorStats = { tensors: 0, parameters: 0, bytes: 0, dtypes: {} };
  for (const n of src.names()) {
    const t = src.info(n);
    const params = elementCount(t.shape);
    const d = (s.dtypes[t.dtype] ??= { tensors: 0, parameters: 0, bytes: 0 });
    for (const x of [s, d]) {
      x.tensors += 1;
      x.parameters += params;
      x.bytes += t.byteLength;
    }
  }
  return s;
}

export interface ComponentReport {
  kind: ComponentKind;
  layout: Layout;
  description: string;
  path: string;
  files: string[];
  prefix: string;
  /** Model folders: whether this is the component used for its kind. */
  used?: boolean;
  configFile: string | null;
  architecture: Record<string, number | number[] | boolean | string>;
  notes: string[];
  stats: TensorStats;
}

export interface InspectReport {
  path: string;
  type: 'model' | 'checkpoint';
  components: ComponentReport[];
  /** Model folders only. */
  complete?: boolean;
  tokenizers?: { clip: string | null; t5: string | null };
  scheduler?: string | null;
  missing: string[];
  problems: string[];
  /** Over the used components (model) or all components (checkpoint). */
  totals: { parameters: number; bytes: number };
}

function architectureOf(c: Component): ComponentReport['architecture'] {
  switch (c.kind) {
    case 'dit':
      return { ...c.config, head_dim: c.config.hidden_size / c.config.num_heads, mlp_hidden_dim: Math.round(c.config.hidden_size * c.config.mlp_ratio) };
    case 'vae':
      return { ...c.config, downsample_factor: 2 ** (c.config.ch_mult.length - 1), has_encoder: c.hasEncoder };
    case 'clip':
      return { ...c.config, head_dim: c.config.hidden_size / c.config.num_attention_heads };
    case 't5':
      return { ...c.config };
  }
}

export function componentReport(c: Component, used?: boolean): ComponentReport {
  return {
    kind: c.kind,
    layout: c.layout,
    description: describeLayout(c.layout),
    path: c.path,
    files: c.files,
    prefix: c.prefix,
    ...(used === undefined ? {} : { used }),
    configFile: c.configFile ?? null,
    architecture: architectureOf(c),
    notes: [...c.notes, ...ggufNotes(c.tensors)],
    stats: tensorStats(c.tensors),
  };
}

function totals(reports: ComponentReport[]) {
  return reports.reduce((t, r) => ({ parameters: t.parameters + r.stats.parameters, bytes: t.bytes + r.stats.bytes }), { parameters: 0, bytes: 0 });
}

/** What `majicflux inspect <path>` reports: a model folder, a component folder, a file or an index. */
export function inspectPath(p: string): InspectReport {
  const abs = path.resolve(p);
  let st: fs.Stats;
  try {
    st = fs.statSync(abs);
  } catch {
    throw new LayoutError(abs, 'no such file or folder');
  }
  if (st.isDirectory() && isModelFolder(fs.readdirSync(abs))) {
    const scan = scanModelFolder(abs);
    const chosen = new Set(Object.values(scan.chosen));
    const rank = (c: Component) => KIND_ORDER.indexOf(c.kind) * 2 + (chosen.has(c) ? 0 : 1);
    const components = [...scan.components].sort((a, b) => rank(a) - rank(b)).map((c) => componentReport(c, chosen.has(c)));
    return {
      path: abs,
      type: 'model',
      components,
      complete: scan.missing.length === 0,
      tokenizers: { clip: scan.tokenizer ?? null, t5: scan.tokenizer2 ?? null },
      scheduler: scan.scheduler ?? null,
      missing: scan.missing,
      problems: scan.problems,
      totals: totals(components.filter((c) => c.used)),
    };
  }
  const components = openComponents(abs).map((c) => componentReport(c));
  return { path: abs, type: 'checkpoint', components, missing: [], problems: [], totals: totals(components) };
}
