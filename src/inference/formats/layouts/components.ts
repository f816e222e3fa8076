// Opening a checkpoint (file, sharded index or component folder) as its FLUX.1 components, each
// with its layout, architecture config and tensors, or a LayoutError saying what is wrong.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { openTensors, TensorSource } from '../safetensors';
import { ClipConfig, deriveClip, deriveDit, deriveT5, deriveVae, DitConfig, Json, Need, T5Config, VaeConfig } from './configs';
import { applyConfig, clipFromJson, configFileFor, configSection, ditFromJson, readJson, t5FromJson, vaeFromJson } from './configFiles';
import { ComponentKind, detectLayouts, KIND_NAMES, Layout, LayoutError, LayoutMatch, LAYOUTS, listSome } from './detect';
import { DitWeights } from './ditWeights';
import { isModelFolder, listFolder, SUBFOLDERS } from './folder';
import { componentView } from './prefixed';
import { withWeightScales } from './scaledFp8';
import { assertComplete, assertDitShapes, checkWhole, clipRequiredNames, ditRequiredNames, t5RequiredNames, vaeRequiredNames } from './required';

interface ComponentBase {
  layout: Layout;
  /** What was opened: a .safetensors file, a .safetensors.index.json, or a component folder. */
  path: string;
  /** The .safetensors files holding the tensors. */
  files: string[];
  /** Prefix removed from the file's names ('' for none). */
  prefix: string;
  /** The tensors, under the layout's names (prefix removed). */
  tensors: TensorSource;
  /** The config file used, or undefined when everything came from tensor shapes and FLUX.1 defaults. */
  configFile?: string;
  /** Assumptions made for values neither a config nor the shapes give. */
  notes: string[];
  /** Closes the files (they reopen on the next read). */
  close(): void;
}

export interface DitComponent extends ComponentBase { kind: 'dit'; config: DitConfig; weights: DitWeights }
export interface VaeComponent extends ComponentBase { kind: 'vae'; config: VaeConfig; hasEncoder: boolean }
export interface ClipComponent extends ComponentBase { kind: 'clip'; config: ClipConfig }
export interface T5Component extends ComponentBase { kind: 't5'; config: T5Config }
export type Component = DitComponent | VaeComponent | ClipComponent | T5Component;

function buildComponent(opened: string, source: TensorSource, match: LayoutMatch, otherPrefixes: string[], configFile: string | undefined): Component {
  const tensors = withWeightScales(componentView(source, match.prefix, otherPrefixes));
  const at = source.path;
  const files = [...new Set(tensors.names().map((n) => tensors.info(n).file))];
  let json: Json | undefined;
  if (configFile) {
    json = configSection(readJson(configFile), match.kind);
    if (!json) configFile = undefined;
  }
  const base = { layout: match.layout, path: opened, files, prefix: match.prefix, tensors, configFile, close: () => tensors.close() };
  const absent = (names: string[]) => names.filter((n) => !tensors.has(n));
  const shared = otherPrefixes.length > 1;
  const need: Need = (name) => {
    assertComplete(match.kind, match.layout, at, absent([name]));
    return tensors.info(name).shape;
  };

  switch (match.kind) {
    case 'dit': {
      const weights = new DitWeights(tensors, match.layout as 'bfl-dit' | 'diffusers-dit');
      const missingSources = (bfl: string[]) => [...new Set(bfl.filter((n) => !weights.has(n)).flatMap((n) => {
        const s = weights.sourceNames(n).filter((x) => !tensors.has(x));
        return s.length ? s : [n];
      }))];
      const ditNeed: Need = (name) => {
        assertComplete('dit', match.layout, at, missingSources([name]));
        return weights.tensor(name).shape;
      };
      const d = deriveDit(weights, ditNeed);
      const { config, notes } = applyConfig(d, json && ditFromJson(json, configFile!), configFile, at);
      checkWhole(at, 'dit', 'number of attention heads', config.num_heads, shared);
      assertComplete('dit', match.layout, at, missingSources(ditRequiredNames(config)));
      assertDitShapes(at, config, weights);
      const unused = weights.unused();
      const scales = unused.filter((n) => n.endsWith('.weight_scale'));
      if (scales.length) throw new LayoutError(at, `fp8 weight scales ("${scales[0]}"…) in a diffusers-layout DiT, which MajicFLUX reads only in the BFL layout (ComfyUI's): use the BFL-layout file, or the unscaled weights`);
      if (unused.length) notes.push(`${unused.length} tensor${unused.length > 1 ? 's' : ''} not used by FLUX.1: ${listSome(unused, 3)}`);
      return { ...base, kind: 'dit', config, weights, notes };
    }
    case 'vae': {
      const layout = match.layout as 'ldm-vae' | 'diffusers-vae';
      const d = deriveVae(tensors, layout, need);
      d.config.ch_mult.forEach((m, i) => checkWhole(at, 'vae', `ch_mult[${i}]`, m, shared));
      const { config, notes } = applyConfig(d, json && vaeFromJson(json, configFile!), configFile, at);
      assertComplete('vae', layout, at, absent(vaeRequiredNames(config, layout, d.hasEncoder)));
      return { ...base, kind: 'vae', config, hasEncoder: d.hasEncoder, notes };
    }
    case 'clip': {
      const { config, notes } = applyConfig(deriveClip(tensors, need), json && clipFromJson(json, configFile!), configFile, at);
      checkWhole(at, 'clip', 'number of attention heads', config.num_attention_heads, shared);
      assertComplete('clip', match.layout, at, absent(clipRequiredNames(config)));
      return { ...base, kind: 'clip', config, notes };
    }
    case 't5': {
      const d = deriveT5(tensors, need);
      checkWhole(at, 't5', 'd_kv', d.config.d_kv, shared);
      const { config, notes } = applyConfig(d, json && t5FromJson(json, configFile!), configFile, at);
      assertComplete('t5', match.layout, at, absent(t5RequiredNames(config)));
      return { ...base, kind: 't5', config, notes };
    }
  }
}

/** inspect and the Models view say when fp8 weights carry scales (ComfyUI's scaled fp8). */
function withScaleNote(c: Component): Component {
  const scaled = c.tensors.names().filter((n) => n.endsWith('.weight_scale')).length;
  if (scaled) c.notes.push(`scaled fp8: ${scaled} weight${scaled > 1 ? 's' : ''} carry a scale, applied when decoding (the weights stay 1 byte)`);
  return c;
}

/**
 * Every FLUX.1 component in a checkpoint: a `.safetensors` file, a `.safetensors.index.json`, or a
 * component folder (`transformer/`, `vae/`, `text_encoder/`, `text_encoder_2/`). Throws a
 * LayoutError or SafetensorsError that names the file and the problem.
 */
export function openComponents(p: string): Component[] {
  const abs = path.resolve(p);
  if (fs.existsSync(abs) && fs.statSync(abs).isDirectory()) {
    if (isModelFolder(fs.readdirSync(abs))) throw new LayoutError(abs, 'is a whole model folder, not one component: open it with openModel()');
    const entries = listFolder(abs).map((e) => e.label);
    if (!entries.some((e) => e.endsWith('.safetensors') || e.endsWith('.safetensors.index.json'))) {
      const expected = Object.values(SUBFOLDERS).map((s) => `${s}/`).join(', ');
      throw new LayoutError(abs, `not a FLUX.1 model or component: no .safetensors file here and none of ${expected}. Found: ${entries.length ? listSome(entries, 12) : 'nothing (empty folder)'}`);
    }
  }
  const source = openTensors(abs);
  try {
    const names = source.names();
    const matches = detectLayouts(names);
    if (!matches.length) {
      throw new LayoutError(source.path, `not a FLUX.1 component: its ${names.length} tensor names match none of the known layouts (${LAYOUTS.map((l) => l.layout).join(', ')}). First names: ${listSome(names.slice(0, 5), 5) || '(none)'}`);
    }
    const files = [...new Set(names.map((n) => source.info(n).file))];
    const configFile = configFileFor(abs, files);
    const prefixes = matches.map((m) => m.prefix);
    return matches.map((m) => withScaleNote(buildComponent(abs, source, m, prefixes, configFile)));
  } catch (e) {
    source.close();
    throw e;
  }
}

/**
 * The tensors of one component, for graph builders that read a path themselves: what
 * openComponent would serve (prefix removed, other components of an all-in-one file hidden, weight
 * scales under the names onnx/weights.ts reads), without its checks. A file holding only this
 * component keeps its own names.
 */
export function componentTensors(p: string, kind: ComponentKind): TensorSource {
  const source = openTensors(p);
  try {
    const matches = detectLayouts(source.names());
    const mine = matches.filter((m) => m.kind === kind);
    if (matches.length && !mine.length) throw new LayoutError(source.path, `holds no ${KIND_NAMES[kind]}; found: ${matches.map((m) => `${KIND_NAMES[m.kind]} under "${m.prefix}"`).join(', ')}`);
    const view = matches.length > 1 ? componentView(source, mine[0].prefix, matches.map((m) => m.prefix)) : source;
    return withWeightScales(view);
  } catch (e) {
    source.close();
    throw e;
  }
}

/** The one component of the given kind (or the only component) in a checkpoint. */
export function openComponent<K extends ComponentKind>(p: string, kind?: K): Extract<Component, { kind: K }> {
  const all = openComponents(p);
  const wanted = kind ? all.filter((c) => c.kind === kind) : all;
  const at = path.resolve(p);
  if (wanted.length !== 1) for (const c of all) c.close();
  if (!wanted.length) {
    throw new LayoutError(at, `holds no ${KIND_NAMES[kind!]}; found: ${all.map((c) => `${KIND_NAMES[c.kind]} (${c.layout})`).join(', ')}`);
  }
  if (wanted.length > 1) {
    throw new LayoutError(at, `holds ${wanted.length} components (${wanted.map((c) => `${KIND_NAMES[c.kind]}${c.prefix ? ` under "${c.prefix}"` : ''}`).join(', ')}): say which kind to open`);
  }
  return wanted[0] as Extract<Component, { kind: K }>;
}
