// "Check Models": a model's parts (headers only, or every byte with `verify`), this machine's
// memory, the peak memory of each weight format and memory mode, and advice in plain sentences.
//
// Verification (`verify: true`) reads every file of the present parts and computes its sha256. A
// file is compared with the registry's sha256 when the registry has one for it (matched by its
// path inside the repository), else with the checksum recorded for it earlier in the checksum
// store (a JSON file keyed by real path, valid while size and modification time are unchanged),
// else its sha256 is recorded there (not for a part its headers already show corrupt). A part is
// `mismatch` when any file differs (and then `corrupt`), `recorded` when a file had no known
// checksum yet, else `match`. A part's sha256 is its file's, or for several files the sha256 of
// the lines "<sha256>  <file name>\n" in path order.

import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ComponentName, ModelSpec, WeightFormat } from '../../shared/api';
import { COMPONENTS } from '../../shared/api';
import { formatBytes } from '../../shared/bytes';
import { gpuMemory, GpuProbe } from '../system/gpuMemory';
import { cudaInstalled, cudaInstallHint } from '../onnx/providers';
import { clipParams, ditParams, FLUX_DEV, t5Params, vaeParams } from './architecture';
import { foundFromSpec } from './discovery';
import { weightPartFiles } from './files';
import { sha256File } from './partFiles';
import { DetailedEstimate, estimateMemory, usableMemory } from './memory';
import { ComponentShapes, readShapes, ShapeSource } from './tensorShapes';
import { hubLabel, loadRegistry, partsOf } from './registry';
import type { FoundModel, MachineInfo, ModelCheckReport, PartCheck, PartRole, Registry } from '../../shared/models';

const GiB = 2 ** 30;

// ─── This machine ───────────────────────────────────────────────────────────────────────────────

export interface MachineInfoOptions {
  /** GPU memory from the user's setting, bytes: wins over nvidia-smi. */
  gpuMemory?: number;
  /** The nvidia-smi command (tests). */
  nvidiaSmi?: string;
  /** Where the other GPU sources are looked for (tests). */
  gpu?: GpuProbe;
  timeoutMs?: number;
}

/** RAM and CPUs from the OS; the GPU's name and total memory (system/gpuMemory.ts), the user's setting overriding the memory. */
export async function machineInfo(opts: MachineInfoOptions = {}): Promise<MachineInfo> {
  const gpu = await gpuMemory({ ...opts.gpu, ...(opts.nvidiaSmi ? { nvidiaSmi: opts.nvidiaSmi } : {}), ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}) });
  const info: MachineInfo = { platform: os.platform(), arch: os.arch(), cpus: os.cpus().length, totalMemory: os.totalmem(), freeMemory: os.freemem() };
  if (gpu) {
    if (gpu.name) info.gpuName = gpu.name;
    info.gpuMemory = gpu.total;
  }
  if (opts.gpuMemory !== undefined && opts.gpuMemory > 0) info.gpuMemory = opts.gpuMemory;
  return info;
}

// ─── Checksums ──────────────────────────────────────────────────────────────────────────────────

interface StoreEntry {
  size: number;
  mtimeMs: number;
  sha256: string;
  recorded: string;
}

interface Store {
  version: 1;
  files: Record<string, StoreEntry>;
}

function readStore(file: string): Store {
  try {
    const j = JSON.parse(fs.readFileSync(file, 'utf8')) as Store;
    if (j && j.version === 1 && typeof j.files === 'object' && j.files) return j;
  } catch {
    // missing or unreadable: start afresh
  }
  return { version: 1, files: {} };
}

function writeStore(file: string, store: Store): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(store, null, 1));
  fs.renameSync(tmp, file);
}

function identityOf(file: string): { key: string; size: number; mtimeMs: number } {
  const key = fs.realpathSync(file);
  const st = fs.statSync(key);
  return { key, size: st.size, mtimeMs: st.mtimeMs };
}

/** The checksum recorded for a file, when its size and modification time are those recorded. */
export function recordedChecksum(store: string, file: string): string | undefined {
  try {
    const id = identityOf(file);
    const e = readStore(store).files[id.key];
    // within a millisecond: what copies and utimes keep of a modification time
    return e && e.size === id.size && Math.abs(e.mtimeMs - id.mtimeMs) < 1 ? e.sha256 : undefined;
  } catch {
    return undefined;
  }
}

/** Records checksums (e.g. the downloader's, verified against the hub) for files as they are now. */
export function recordChecksums(store: string, files: { path: string; sha256: string }[]): void {
  if (!files.length) return;
  const s = readStore(store);
  for (const f of files) {
    try {
      const id = identityOf(f.path);
      s.files[id.key] = { size: id.size, mtimeMs: id.mtimeMs, sha256: f.sha256.toLowerCase(), recorded: new Date().toISOString() };
    } catch {
      // a file gone since: nothing to record
    }
  }
  writeStore(store, s);
}

export { sha256File };

const TOKENIZER_NAMES = ['vocab.json', 'merges.txt', 'tokenizer.json', 'special_tokens_map.json', 'tokenizer_config.json', 'spiece.model'];

/** The files a part stands for, those there: a checkpoint and its shards (and the folder's config.json), or a tokenizer folder's files. */
export function partFiles(part: PartCheck): string[] {
  const p = part.path;
  if (!p) return [];
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    return [];
  }
  const existing = (files: string[]) => [...new Set(files)].filter((f) => fs.existsSync(f) && fs.statSync(f).isFile()).sort();
  if (part.role === 'tokenizer' || part.role === 'tokenizer2') return st.isDirectory() ? existing(TOKENIZER_NAMES.map((n) => path.join(p, n))) : [];
  const w = weightPartFiles(p);
  return w ? existing([...w.files, ...(w.folder ? [path.join(w.folder, 'config.json')] : [])]) : [];
}

/** Registry checksums of a model's parts by path inside the repository. */
function registryChecksums(model: FoundModel, registry: Registry): Map<PartRole, { path: string; sha256: string }[]> {
  const out = new Map<PartRole, { path: string; sha256: string }[]>();
  const entry = registry.models.find((m) => m.id === model.id);
  if (!entry) return out;
  for (const p of partsOf(entry, registry)) out.set(p.role, p.files.filter((f) => f.sha256).map((f) => ({ path: f.path, sha256: f.sha256!.toLowerCase() })));
  return out;
}

async function verifyPart(part: PartCheck, known: { path: string; sha256: string }[], store: string | undefined, record: { path: string; sha256: string }[]): Promise<PartCheck> {
  const files = partFiles(part);
  if (!files.length) return part;
  const lines: string[] = [];
  const mismatched: string[] = [];
  let recordedNow = false;
  for (const f of files) {
    const sha = await sha256File(f);
    lines.push(`${sha}  ${path.basename(f)}\n`);
    const unix = f.split(path.sep).join('/');
    const reg = known.find((k) => unix.endsWith(`/${k.path}`) || unix === k.path);
    const expected = reg?.sha256 ?? (store ? recordedChecksum(store, f) : undefined);
    if (expected === undefined) {
      // a part the headers already found broken is hashed, never recorded as a reference
      if (part.status !== 'corrupt') record.push({ path: f, sha256: sha });
      recordedNow = true;
    } else if (expected !== sha) {
      mismatched.push(`${path.basename(f)} (sha256 ${sha.slice(0, 12)}…, expected ${expected.slice(0, 12)}… ${reg ? 'from the registry' : 'as recorded earlier'})`);
    }
  }
  const sha256 = files.length === 1 ? lines[0].slice(0, 64) : createHash('sha256').update(lines.join('')).digest('hex');
  if (mismatched.length) {
    const msg = `${mismatched.join(', ')} differs: the file is damaged or not the expected one — download it again`;
    return { ...part, status: 'corrupt', sha256, verified: 'mismatch', message: part.message ? `${part.message}; ${msg}` : msg };
  }
  return { ...part, sha256, verified: recordedNow ? 'recorded' : 'match' };
}

// ─── The check ──────────────────────────────────────────────────────────────────────────────────

export interface CheckOptions {
  /** Read every file and compare sha256 (slow: ~33 GB for FLUX.1-dev). */
  verify?: boolean;
  /** JSON file where verified checksums are recorded and looked up. */
  checksumStore?: string;
  machine?: MachineInfo;
  /** A size to estimate besides 512² and 1024² (and to advise for). */
  width?: number;
  height?: number;
  /** T5 tokens (default: the registry model's t5MaxLength, else 512). */
  t5MaxLength?: number;
  registry?: Registry;
  /** How the reader downloads a registry model, as they can run it (the CLI's own command, or the editor's). */
  downloadCommand?: DownloadCommand;
}

/** A download instruction for a registry model id, in the reader's terms. */
export type DownloadCommand = (id: string) => string;
/** For the editor (the server's clients): its command, which the Models view also offers. */
export const EDITOR_DOWNLOAD: DownloadCommand = (id) => `the command "MajicFLUX: Download Model…" (${id})`;

function isFoundModel(x: ModelSpec | FoundModel): x is FoundModel {
  return Array.isArray((x as FoundModel).parts) && typeof (x as FoundModel).spec === 'object';
}

/** Tensor shapes of the present weight parts; FLUX.1-dev's (synthetic.ts) stand in for the others. */
export function shapesOf(model: FoundModel): { shapes: ComponentShapes; standIns: ComponentName[] } {
  const standIns: ComponentName[] = [];
  const shapes = {} as ComponentShapes;
  const flux: Record<ComponentName, () => ShapeSource> = {
    dit: () => ditParams(FLUX_DEV.dit).map((p) => ({ name: p.name, shape: p.shape, dtype: 'BF16' })),
    clip: () => clipParams(FLUX_DEV.clip).map((p) => ({ name: p.name, shape: p.shape, dtype: 'BF16' })),
    t5: () => t5Params(FLUX_DEV.t5).map((p) => ({ name: p.name, shape: p.shape, dtype: 'BF16' })),
    vae: () => vaeParams(FLUX_DEV.vae).map((p) => ({ name: p.name, shape: p.shape, dtype: 'F32' })),
  };
  for (const c of COMPONENTS) {
    const part = model.parts.find((p) => p.role === c);
    let s: ShapeSource | undefined;
    if (part?.path && (part.status === 'present' || part.status === 'wrong-dtype')) {
      try {
        s = readShapes(part.path, c);
      } catch {
        s = undefined;
      }
    }
    if (!s) {
      standIns.push(c);
      s = flux[c]();
    }
    shapes[c] = s;
  }
  return { shapes, standIns };
}

/**
 * Checks a model (a ModelSpec, or a FoundModel from discovery), estimates its memory in every
 * weight format and memory mode, and says what fits this machine.
 */
export async function checkModel(spec: ModelSpec | FoundModel, opts: CheckOptions = {}): Promise<ModelCheckReport> {
  const registry = opts.registry ?? loadRegistry();
  let model: FoundModel = isFoundModel(spec) ? { ...spec, parts: spec.parts.map((p) => ({ ...p })) } : foundFromSpec(spec, 'configured', registry);
  if (opts.verify) {
    const known = registryChecksums(model, registry);
    const record: { path: string; sha256: string }[] = [];
    const parts: PartCheck[] = [];
    for (const p of model.parts) parts.push(p.status === 'missing' ? p : await verifyPart(p, known.get(p.role) ?? [], opts.checksumStore, record));
    if (opts.checksumStore) recordChecksums(opts.checksumStore, record);
    model = { ...model, parts, complete: parts.every((p) => p.status === 'present') };
  }
  const machine = opts.machine ?? (await machineInfo());
  const entry = registry.models.find((m) => m.id === model.id);
  const t5Tokens = opts.t5MaxLength ?? entry?.defaults?.t5MaxLength;
  const userSize = opts.width && opts.height ? { width: opts.width, height: opts.height } : undefined;
  const { shapes, standIns } = shapesOf(model);
  const estimates = estimateMemory(shapes, { machine, sizes: userSize ? [userSize] : [], t5Tokens });
  const advice = adviceFor(model, machine, estimates, userSize ?? { width: 1024, height: 1024 }, standIns, registry, opts.downloadCommand);
  return { model, machine, estimates, advice };
}

// ─── Advice ─────────────────────────────────────────────────────────────────────────────────────


/** Best first: quality of the weights, then resident (no reloading between images) before sequential. */
const PREFERENCE: readonly [WeightFormat, 'resident' | 'sequential'][] = [
  ['fp16', 'resident'],
  ['fp16', 'sequential'],
  ['fp8', 'resident'],
  ['fp8', 'sequential'],
  ['int8', 'resident'],
  ['int8', 'sequential'],
  ['int4', 'resident'],
  ['int4', 'sequential'],
];

function gpuLabel(machine: MachineInfo): string {
  return `${formatBytes(machine.gpuMemory!)} ${machine.gpuName ?? 'GPU'}`;
}

/** The advice sentences for one image size, best option first. */
export function adviceFor(
  model: FoundModel,
  machine: MachineInfo,
  estimates: DetailedEstimate[],
  size: { width: number; height: number },
  standIns: ComponentName[] = [],
  registry: Registry = loadRegistry(),
  downloadCommand: DownloadCommand = EDITOR_DOWNLOAD,
): string[] {
  const out: string[] = [];
  const missing = model.parts.filter((p) => p.status !== 'present');
  if (missing.length) {
    const what = missing.map((p) => `${p.role} (${p.status})`).join(', ');
    out.push(`The model is not usable yet: ${what}.${standIns.length ? ` The estimates use FLUX.1-dev's sizes for the ${standIns.join(', ')}.` : ''}`);
  }
  const at = estimates.filter((e) => e.width === size.width && e.height === size.height);
  const pick = (f: WeightFormat, m: string) => at.find((e) => e.weights === f && e.mode === m);
  const options = PREFERENCE.map(([f, m]) => pick(f, m)).filter((e): e is DetailedEstimate => e !== undefined);
  if (!options.length) return out;
  const usable = usableMemory(machine);
  const ram = `${formatBytes(machine.totalMemory)} of RAM`;
  const dims = `${size.width}×${size.height}`;
  const name = (e: DetailedEstimate) => `${e.weights} + ${e.mode}`;
  const gpuKnown = machine.gpuMemory !== undefined;

  // The planning share of RAM, not the total, decides: "needs 22 GiB, does not fit 24 GiB" alone
  // reads as a contradiction, so say what is usable, what is free and what fits instead.
  const ramLimit = `the ≈ ${formatBytes(usable.ram)} usable of your ${ram} (${formatBytes(machine.freeMemory)} free now)`;
  const cpuLine = (e: DetailedEstimate) =>
    e.fitsRam ? `${name(e)}: peak ≈ ${formatBytes(e.peak)} — fits your ${ram}` : `${name(e)}: needs ≈ ${formatBytes(e.peak)} — more than ${ramLimit}${bestCpu ? `; ${name(bestCpu)} fits (peak ≈ ${formatBytes(bestCpu.peak)})` : ''}`;
  const gpuLine = (e: DetailedEstimate) =>
    e.fitsGpu
      ? `${name(e)}: the GPU needs ≈ ${formatBytes(e.gpuPeak!)} — fits your ${gpuLabel(machine)}`
      : `${name(e)}: the GPU needs ≈ ${formatBytes(e.gpuPeak!)} — does not fit your ${gpuLabel(machine)}${e.fitsRam ? ` (on the CPU: peak ≈ ${formatBytes(e.peak)}, fits your ${ram})` : ''}`;

  const bestGpu = gpuKnown ? options.find((e) => e.fitsGpu) : undefined;
  const bestCpu = options.find((e) => e.fitsRam);
  if (bestGpu) {
    out.push(`Choose ${bestGpu.weights} weights with memory mode ${bestGpu.mode} at ${dims}: the GPU needs ≈ ${formatBytes(bestGpu.gpuPeak!)} of your ${gpuLabel(machine)}.`);
    if (bestGpu.weights === 'fp8') out.push(`fp8 on the GPU needs the CUDA provider${cudaInstalled() ? '' : ` (${cudaInstallHint()})`}; with WebGPU or DirectML choose int8 or int4 instead.`);
  } else if (bestCpu) {
    out.push(`Choose ${bestCpu.weights} weights with memory mode ${bestCpu.mode} at ${dims}: peak ≈ ${formatBytes(bestCpu.peak)} of your ${ram}${gpuKnown ? ` (nothing fits your ${gpuLabel(machine)}, so the CPU runs it)` : ''}.`);
    if (bestCpu.peak > machine.freeMemory + 0.5 * GiB && bestCpu.peak <= usable.ram) out.push(`Only ${formatBytes(machine.freeMemory)} is free now: close other programs first, or the system will swap.`);
  } else {
    const smallest = [...options].sort((a, b) => a.peak - b.peak)[0];
    const smaller = estimates.filter((e) => e.width * e.height < size.width * size.height && (e.fitsRam || e.fitsGpu)).sort((a, b) => b.width * b.height - a.width * a.height || a.peak - b.peak)[0];
    out.push(
      `Nothing fits this machine at ${dims}: the smallest option, ${name(smallest)}, needs ≈ ${formatBytes(smallest.peak)}.` +
        (smaller ? ` At ${smaller.width}×${smaller.height}, ${name(smaller)} fits (peak ≈ ${formatBytes(smaller.fitsGpu ? smaller.gpuPeak! : smaller.peak)}).` : '') +
        ' A remote GPU server (majicflux.server.remoteHost) can run it instead.',
    );
  }
  for (const e of options) out.push(gpuKnown ? gpuLine(e) : cpuLine(e));
  if (!gpuKnown) out.push('No NVIDIA GPU was found (nvidia-smi), so these are CPU numbers; give the GPU memory (the majicflux.gpuMemoryGB setting, or majicflux models check --gpu-memory GB) to plan for another GPU. On the CPU, fp8 steps measured 1.4× slower than fp32 or int8 (16 cores, docs/BENCHMARKS.md): fp8 and int8 save memory; int8 also keeps the speed.');
  const gated = registryGate(model, registry, downloadCommand);
  if (gated) out.push(gated);
  return out;
}

/** For an incomplete registry model: where its missing parts can be downloaded. */
function registryGate(model: FoundModel, registry: Registry, downloadCommand: DownloadCommand): string | undefined {
  if (model.complete || model.id === 'custom') return undefined;
  try {
    const entry = registry.models.find((m) => m.id === model.id);
    if (!entry) return undefined;
    const src = entry.sources[0];
    return `The missing parts can be downloaded with ${downloadCommand(entry.id)} (from ${hubLabel(src.hub)}${src.gated ? `, after accepting the licence at ${src.licenceUrl ?? `https://huggingface.co/${src.repo}`}` : ''}).`;
  } catch {
    return undefined;
  }
}
