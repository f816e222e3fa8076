// Checks one model's parts from file headers only: each weight part (a file, an index and its
// shards, or a component folder), the tokenizer folders, and a ModelSpec's parts together.
//
// Rules:
//  * Part status, from headers: `missing` when nothing is there, a shard an index lists is absent,
//    the file holds no such component, or a Hugging Face `.incomplete` blob stands in for it;
//    `corrupt` when the reader fails (truncated, garbage, a bad index: the reader's message) or
//    the tensors are not a complete FLUX component; `wrong-dtype` when a weight tensor of rank ≥ 2
//    has a non-float dtype (U8/I8/I32… packed quantizations such as bitsandbytes nf4/int8, which
//    the graphs cannot use); else `present`. Weights in a float dtype other than the registry
//    lists (e.g. an fp8 copy of the bf16 DiT) stay `present` with a note: the pipeline converts
//    any float dtype. Tokenizers: the files MajicFLUX's tokenizers read (tokenizer/vocab.json +
//    merges.txt, tokenizer_2/tokenizer.json), JSON that parses.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ModelSpec } from '../../shared/api';
import { errorText } from '../../shared/api';
import { PART_ROLES, PartCheck, PartRole, Registry, RegistryModel } from '../../shared/models';
import { Component, openComponent } from '../formats/layouts/components';
import { ComponentKind, KIND_NAMES, LayoutError } from '../formats/layouts/detect';
import { SUBFOLDERS } from '../formats/layouts/folder';
import { ModelScan, scanModelFolder } from '../formats/layouts/model';
import { canDecode, isGgmlQuant } from '../formats/ggml';
import { isGgufFile } from '../formats/gguf';
import { elementCount, openTensors, TensorSource } from '../formats/safetensors';
import { isFile, scanSingleFile, shippedTokenizer, weightPartFiles } from './files';
import { isFloatDtype } from './weightBytes';
import { partsOf } from './registry';
import { schedulerConfigProblem } from '../pipeline/schedulerConfig';

const WEIGHT_ROLES: readonly ComponentKind[] = ['dit', 'vae', 'clip', 't5'];
const SPEC_KEY: Record<ComponentKind, 'transformer' | 'vae' | 'textEncoder' | 'textEncoder2'> = { dit: 'transformer', vae: 'vae', clip: 'textEncoder', t5: 'textEncoder2' };
export const ROLE_NAMES: Record<PartRole, string> = { ...KIND_NAMES, tokenizer: 'CLIP tokenizer', tokenizer2: 'T5 tokenizer' };


function fileSize(p: string): number {
  try {
    return fs.statSync(p).size;
  } catch {
    return 0;
  }
}

/** Whether a path is (or links to) a Hugging Face blob still being downloaded. */
function isIncomplete(p: string): boolean {
  try {
    return fs.realpathSync(p).endsWith('.incomplete');
  } catch {
    return p.endsWith('.incomplete');
  }
}

/** Weight files of a folder that are still being downloaded, by name. */
function unfinishedDownloads(dir: string): string[] {
  try {
    return fs.readdirSync(dir).filter((n) => /\.(safetensors|gguf)\.(part|incomplete)$/.test(n)).sort();
  } catch {
    return [];
  }
}

interface DtypeSummary {
  dtypes: Record<string, number>;
  params: number;
  /** Dtypes of rank ≥ 2 tensors the graphs cannot use. */
  unusable: string[];
  /** Float dtypes of the rank ≥ 2 tensors. */
  matrixDtypes: Set<string>;
}

function summarize(src: TensorSource): DtypeSummary {
  const s: DtypeSummary = { dtypes: {}, params: 0, unusable: [], matrixDtypes: new Set() };
  for (const n of src.names()) {
    const t = src.info(n);
    s.dtypes[t.dtype] = (s.dtypes[t.dtype] ?? 0) + 1;
    s.params += elementCount(t.shape);
    if (t.shape.length >= 2) {
      if (!isFloatDtype(t.dtype) && !(isGgmlQuant(t.dtype) && canDecode(t.dtype))) {
        if (!s.unusable.includes(t.dtype)) s.unusable.push(t.dtype);
      } else s.matrixDtypes.add(t.dtype);
    }
  }
  return s;
}

function wrongDtypeMessage(role: PartRole, unusable: string[]): string {
  if (unusable.every(isGgmlQuant)) return `the ${ROLE_NAMES[role]}'s weights are GGUF ${unusable.join('/')}, a quantization MajicFLUX cannot read: download the Q8_0, Q4_0, Q5_0, Q5_1, Q4_1 or Q2_K–Q6_K file of the same model instead.`;
  return `the ${ROLE_NAMES[role]}'s weights are ${unusable.join('/')}: a packed quantization (bitsandbytes nf4/int8 or similar) that MajicFLUX cannot run. Use the original bf16/fp16/fp8 file; MajicFLUX makes fp8, int8 or int4 weights itself (setting majicflux.weights).`;
}

/** Dtypes of each checked part's rank ≥ 2 tensors (its weights proper), for the registry comparison. */
const matrixDtypes = new WeakMap<PartCheck, Set<string>>();

function withMatrixDtypes(p: PartCheck, s: DtypeSummary): PartCheck {
  matrixDtypes.set(p, s.matrixDtypes);
  return p;
}

function presentCheck(role: ComponentKind, c: Component): PartCheck {
  const s = summarize(c.tensors);
  // A component under a prefix may share its file with others (an all-in-one checkpoint): its own tensors' bytes.
  const bytes = c.prefix ? c.tensors.names().reduce((a, n) => a + c.tensors.info(n).byteLength, 0) : c.files.reduce((a, f) => a + fileSize(f), 0);
  const base: PartCheck = { role, status: 'present', path: c.path, layout: c.layout, dtypes: s.dtypes, params: s.params, bytes };
  if (s.unusable.length) return { ...base, status: 'wrong-dtype', message: wrongDtypeMessage(role, s.unusable) };
  return withMatrixDtypes(base, s);
}

/** One weight part at a path (file, index or component folder), from its headers. */
export function checkWeightPart(p: string, role: ComponentKind): PartCheck {
  const abs = path.resolve(p);
  if (!fs.existsSync(abs)) return { role, status: 'missing', path: abs, message: `${abs} does not exist` };
  const files = weightPartFiles(abs)?.files ?? [abs];
  const bytes = files.filter((f) => f.endsWith('.safetensors') || isGgufFile(f)).reduce((a, f) => a + fileSize(f), 0);
  if (!files.length) {
    // A download cut short leaves D.part (ours) or D.incomplete (Hugging Face's): say that, not "no file".
    const unfinished = unfinishedDownloads(abs);
    return { role, status: 'missing', path: abs, message: unfinished.length ? `${unfinished.join(', ')}: the download has not finished (run the same download again to resume it)` : `${abs} holds no .safetensors file` };
  }
  const absent = files.filter((f) => !fs.existsSync(f)).sort();
  if (absent.length) return { role, status: 'missing', path: abs, bytes, message: `${absent.map((f) => path.basename(f)).join(', ')} not found in ${path.dirname(absent[0])} (listed in ${path.basename(files[0])})` };
  const unfinished = files.filter(isIncomplete);
  if (unfinished.length) return { role, status: 'missing', path: abs, bytes, message: `${unfinished.map((f) => path.basename(f)).join(', ')}: the download has not finished` };
  let src: TensorSource;
  try {
    src = openTensors(abs);
  } catch (e) {
    return { role, status: 'corrupt', path: abs, bytes, message: errorText(e) };
  }
  let s: DtypeSummary;
  try {
    s = summarize(src);
  } finally {
    src.close();
  }
  if (s.unusable.length) return { role, status: 'wrong-dtype', path: abs, bytes, dtypes: s.dtypes, params: s.params, message: wrongDtypeMessage(role, s.unusable) };
  let c: Component;
  try {
    c = openComponent(abs, role);
  } catch (e) {
    const msg = errorText(e);
    const notThere = e instanceof LayoutError && / holds no |not a FLUX\.1 component/.test(msg);
    return { role, status: notThere ? 'missing' : 'corrupt', path: abs, bytes, dtypes: s.dtypes, params: s.params, message: msg };
  }
  try {
    return presentCheck(role, c);
  } finally {
    c.close();
  }
}

const TOKENIZER_FILES: Record<'tokenizer' | 'tokenizer2', { folder: string; needs: string[]; json: string[]; hint: string }> = {
  tokenizer: { folder: 'tokenizer', needs: ['vocab.json', 'merges.txt'], json: ['vocab.json'], hint: 'tokenizer/ with vocab.json and merges.txt' },
  tokenizer2: { folder: 'tokenizer_2', needs: ['tokenizer.json'], json: ['tokenizer.json'], hint: 'tokenizer_2/ with tokenizer.json' },
};

const tokenizerCache = new Map<string, { key: string; check: PartCheck }>();

/** A tokenizer folder: the files MajicFLUX's tokenizers read, present and parseable (cached while they are unchanged). */
export function checkTokenizerPart(dir: string, role: 'tokenizer' | 'tokenizer2'): PartCheck {
  const abs = path.resolve(dir);
  const key = TOKENIZER_FILES[role].needs.map((f) => {
    try {
      const st = fs.statSync(path.join(abs, f));
      return `${st.size}:${st.mtimeMs}`;
    } catch {
      return '-';
    }
  }).join('|');
  const hit = tokenizerCache.get(`${role}\0${abs}`);
  if (hit && hit.key === key) return { ...hit.check };
  const check = checkTokenizerFolder(abs, role);
  tokenizerCache.set(`${role}\0${abs}`, { key, check });
  return { ...check };
}

function checkTokenizerFolder(abs: string, role: 'tokenizer' | 'tokenizer2'): PartCheck {
  const spec = TOKENIZER_FILES[role];
  if (!fs.existsSync(abs)) return { role, status: 'missing', message: `no ${ROLE_NAMES[role]}: expected ${spec.hint}` };
  const lacking = spec.needs.filter((f) => !fs.existsSync(path.join(abs, f)) || isIncomplete(path.join(abs, f)));
  if (lacking.length) return { role, status: 'missing', path: abs, message: `${abs} lacks ${lacking.join(' and ')} (MajicFLUX's ${ROLE_NAMES[role]} reads ${spec.needs.join(' and ')})` };
  let bytes = 0;
  for (const f of spec.needs) {
    const p = path.join(abs, f);
    const size = fileSize(p);
    bytes += size;
    if (size === 0) return { role, status: 'corrupt', path: abs, bytes, message: `${p} is empty` };
    if (spec.json.includes(f)) {
      try {
        JSON.parse(fs.readFileSync(p, 'utf8'));
      } catch (e) {
        return { role, status: 'corrupt', path: abs, bytes, message: `${p} is not valid JSON (${errorText(e)}): download it again` };
      }
    }
  }
  return { role, status: 'present', path: abs, bytes };
}

/** A model folder's scan, or an all-in-one checkpoint's (models/files.ts scanSingleFile). */
export function safeScan(dir: string): ModelScan | undefined {
  try {
    return fs.statSync(dir).isFile() ? scanSingleFile(dir) : scanModelFolder(dir);
  } catch {
    return undefined;
  }
}

export function closeScan(scan: ModelScan | undefined): void {
  for (const c of scan?.components ?? []) c.close();
}

/** Which role a root checkpoint that could not be read most likely is, from its name. */
function roleByName(file: string): ComponentKind {
  const n = path.basename(file).toLowerCase();
  if (/(^|[-_.])(ae|vae)([-_.]|$)|autoencoder/.test(n)) return 'vae';
  if (/clip/.test(n)) return 'clip';
  if (/t5|umt5/.test(n)) return 't5';
  return 'dit';
}

/** The part checks of a ModelSpec (a folder with overrides), headers only. `scan` reuses a scan of spec.dir. */
export function checkSpecParts(spec: ModelSpec, scan?: ModelScan): PartCheck[] {
  const dir = spec.dir ? path.resolve(spec.dir) : undefined;
  const ownScan = dir && !scan;
  if (dir && !scan && fs.existsSync(dir)) scan = safeScan(dir);
  try {
    const parts: PartCheck[] = [];
    const singleFile = dir !== undefined && isFile(dir);
    const rootFiles = dir ? (singleFile ? [dir] : listSafetensors(dir)) : [];
    const opened = new Set(scan?.components.map((c) => c.path) ?? []);
    for (const role of WEIGHT_ROLES) {
      const given = spec[SPEC_KEY[role]];
      if (given) {
        parts.push(checkWeightPart(given, role));
        continue;
      }
      const chosen = scan?.chosen[role];
      if (chosen) {
        parts.push(presentCheck(role, chosen));
        continue;
      }
      if (!dir) {
        parts.push({ role, status: 'missing', message: `no ${KIND_NAMES[role]} given` });
        continue;
      }
      if (!fs.existsSync(dir)) {
        parts.push({ role, status: 'missing', message: `model folder not found: ${dir}` });
        continue;
      }
      const sub = path.join(dir, SUBFOLDERS[role]);
      if (!singleFile && fs.existsSync(sub)) {
        parts.push(checkWeightPart(sub, role));
        continue;
      }
      const broken = rootFiles.filter((f) => !opened.has(f) && roleByName(f) === role);
      if (broken.length) {
        parts.push(checkWeightPart(broken[0], role));
        continue;
      }
      const note = scan?.missing.find((m) => m.includes(KIND_NAMES[role]) || m.includes(`${SUBFOLDERS[role]}/`));
      parts.push({ role, status: 'missing', message: note ?? `no ${KIND_NAMES[role]} in ${dir}` });
    }
    for (const role of ['tokenizer', 'tokenizer2'] as const) {
      const given = role === 'tokenizer' ? spec.tokenizer : spec.tokenizer2;
      // An all-in-one file (its scan names them) and parts given without a folder use the tokenizers shipped with MajicFLUX.
      const shipped = singleFile ? (role === 'tokenizer' ? scan?.tokenizer : scan?.tokenizer2) : dir === undefined ? shippedTokenizer(role) : undefined;
      const where = given ?? shipped ?? (dir && !singleFile ? path.join(dir, TOKENIZER_FILES[role].folder) : undefined);
      // One reason for every part of a folder that is not there, so a check can say it once.
      if (!given && dir && !fs.existsSync(dir)) parts.push({ role, status: 'missing', message: `model folder not found: ${dir}` });
      else parts.push(where ? checkTokenizerPart(where, role) : { role, status: 'missing', message: `no ${ROLE_NAMES[role]} given` });
    }
    markScheduler(parts, scan);
    return PART_ROLES.map((r) => parts.find((p) => p.role === r)!);
  } finally {
    if (ownScan) closeScan(scan);
  }
}

/**
 * The scheduler config travels with the DiT (the registry lists it in the DiT's part): one the
 * generation would refuse makes the DiT part corrupt, so the check says so before a job does.
 */
function markScheduler(parts: PartCheck[], scan: ModelScan | undefined): void {
  const i = parts.findIndex((p) => p.role === 'dit');
  const problem = scan?.scheduler && parts[i].status === 'present' ? schedulerConfigProblem(scan.scheduler) : undefined;
  if (problem) parts[i] = { ...parts[i], status: 'corrupt', message: `${problem}: download the model's scheduler/scheduler_config.json again` };
}

function listSafetensors(dir: string): string[] {
  try {
    return fs.readdirSync(dir).filter((e) => e.endsWith('.safetensors')).map((e) => path.join(dir, e)).filter((p) => {
      try {
        return fs.statSync(p).isFile() || isIncomplete(p);
      } catch {
        return false;
      }
    });
  } catch {
    return [];
  }
}

/**
 * Notes, on present parts, weights in a dtype other than the registry publishes (none of the
 * dtypes of the part's rank ≥ 2 tensors is among the registry's: e.g. an fp8 copy of the bf16
 * DiT). The pipeline converts any float dtype, so the part stays present.
 */
export function noteRegistryDtypes(parts: PartCheck[], model: RegistryModel | undefined, registry: Registry): void {
  if (!model) return;
  let resolved: ReturnType<typeof partsOf>;
  try {
    resolved = partsOf(model, registry);
  } catch {
    return;
  }
  for (const p of parts) {
    const expected = resolved.find((r) => r.role === p.role)?.dtypes;
    if (!expected?.length || p.status !== 'present' || !p.dtypes) continue;
    const held = [...(matrixDtypes.get(p) ?? Object.keys(p.dtypes))];
    if (!held.length || held.some((d) => expected.includes(d))) continue;
    const note = `published as ${expected.join('/')}; this copy holds ${held.join('/')} (a converted variant: usable, but not the registry's file)`;
    p.message = p.message ? `${p.message}; ${note}` : note;
  }
}

