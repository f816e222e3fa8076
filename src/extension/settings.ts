// The `majicflux.*` settings: reading, validating (invalid values fall back to the default and are
// reported), and turning them into the server's settings. Pure: no vscode import, so unit tests run
// in plain Node; configuration.ts feeds it from the workspace configuration.

import * as os from 'node:os';
import * as path from 'node:path';
import * as v from 'valibot';
import { COMPONENTS, EP_CHOICES, MEMORY_MODES, WEIGHT_CHOICES } from '../shared/api';
import type { ComponentName, EpChoice, MemoryMode, ModelSpec, WeightChoice } from '../shared/api';
import type { ServerSettings } from '../shared/protocol';
import { checkTemplate, DEFAULT_TEMPLATE } from '../shared/fileName';
import * as P from '../shared/params';
import type { ImageParams } from '../shared/params';
import { templateArgs } from './fluxFile/parser';

export const SECTION = 'majicflux';

export const WEIGHT_FORMATS: readonly WeightChoice[] = WEIGHT_CHOICES;

export const OPEN_RESULT = ['beside', 'active', 'none'] as const;
export type OpenResult = (typeof OPEN_RESULT)[number];

export interface Settings {
  model: { path: string; transformer: string; vae: string; textEncoder: string; textEncoder2: string };
  weights: WeightChoice;
  memory: MemoryMode;
  /** GiB; 0: detect. */
  memoryBudgetGB: number;
  /** GiB of GPU memory; 0: detect (inference/system/gpuMemory.ts). */
  gpuMemoryGB: number;
  /** Where converted weights are cached ('' = the per-user cache folder) and how many GiB they may take (0: no limit). */
  weightCache: { folder: string; maxGB: number };
  executionProvider: EpChoice;
  stageExecutionProvider: Partial<Record<ComponentName, EpChoice>>;
  /** openResult: where an image from the palette, a selection, a re-run or the walkthrough opens once saved. */
  output: { folder: string; fileName: string; openResult: OpenResult };
  /** A seed of -1 (RANDOM_SEED) draws one per image. The negative prompt and true CFG scale prefill the panel. */
  defaults: Omit<ImageParams, 'prompt'> & { trueCfgScale: number; negativePrompt: string };
  /** A folder of LoRA files ('' = none): the panel lists its .safetensors, re-runs look LoRAs up there by name. */
  loras: { folder: string };
  previewEverySteps: number;
  server: { idleShutdownMinutes: number; remoteHost: string; remotePort: number };
  models: {
    /** Extra folders to look for models in (expanded, absolute). */
    searchPaths: string[];
    /** Where downloads go; '' = the extension's global storage (`<globalStorage>/models`). */
    downloadFolder: string;
    /** Mirrors of the hubs (base URLs); '' = the official one. */
    huggingfaceEndpoint: string;
    modelscopeEndpoint: string;
  };
}

export const DEFAULTS: Settings = {
  model: { path: '', transformer: '', vae: '', textEncoder: '', textEncoder2: '' },
  weights: 'auto',
  memory: 'auto',
  memoryBudgetGB: 0,
  gpuMemoryGB: 0,
  weightCache: { folder: '', maxGB: 0 },
  executionProvider: 'auto',
  stageExecutionProvider: {},
  output: { folder: 'generated', fileName: DEFAULT_TEMPLATE, openResult: 'beside' },
  defaults: {
    steps: P.DEFAULTS.steps,
    width: P.DEFAULTS.width,
    height: P.DEFAULTS.height,
    guidance: P.DEFAULTS.guidance,
    seed: P.DEFAULTS.seed,
    trueCfgScale: P.DEFAULTS.trueCfgScale,
    negativePrompt: P.DEFAULTS.negativePrompt,
  },
  loras: { folder: '' },
  previewEverySteps: 1,
  server: { idleShutdownMinutes: 10, remoteHost: '', remotePort: 7860 },
  models: { searchPaths: [], downloadFolder: '', huggingfaceEndpoint: '', modelscopeEndpoint: '' },
};

export type SettingProblemCode =
  | 'wrongType'
  | 'notOneOf'
  | 'outOfRange'
  | 'notMultipleOf16'
  | 'pathMissing'
  | 'badTemplate'
  | 'badStageKey'
  | 'remoteHost'
  | 'badUrl'
  | 'tooLong'
  | 'notAFolder'
  | 'relativeNoFolder';

export interface SettingProblem {
  /** Full key, e.g. `majicflux.defaults.width`. */
  key: string;
  code: SettingProblemCode;
  args: Record<string, string | number>;
}

export interface Context {
  /** First workspace folder, for `${workspaceFolder}` and relative paths. */
  workspaceFolder?: string;
  exists?: (p: string) => boolean;
  /** Is there a file (not a folder) at `p`? For the folder settings. */
  isFile?: (p: string) => boolean;
  home?: string;
}

/** `~`, `${workspaceFolder}`, `${userHome}` and relative paths (to the workspace folder). '' stays ''. */
export function expandPath(p: string, ctx: Context): string {
  const home = ctx.home ?? os.homedir();
  let s = p.trim();
  if (!s) return '';
  s = s.replace(/\$\{userHome\}/g, home);
  if (ctx.workspaceFolder) s = s.replace(/\$\{workspaceFolder\}/g, ctx.workspaceFolder);
  if (s === '~' || s.startsWith('~/') || s.startsWith('~\\')) s = path.join(home, s.slice(1));
  if (!path.isAbsolute(s) && ctx.workspaceFolder) s = path.join(ctx.workspaceFolder, s);
  return path.normalize(s);
}

/** Validates raw values (`get('defaults.width')`); returns usable settings and what was wrong. */
export function validateSettings(get: (key: string) => unknown, ctx: Context = {}): { settings: Settings; problems: SettingProblem[] } {
  const problems: SettingProblem[] = [];
  const report = (key: string, code: SettingProblemCode, args: Record<string, string | number> = {}) =>
    problems.push({ key: `${SECTION}.${key}`, code, args });

  // One reader for every scalar: the schema decides, its first issue becomes the problem reported.
  const read = <S extends v.GenericSchema>(key: string, schema: S, def: v.InferOutput<S>, expected: string, range?: Range): v.InferOutput<S> => {
    const raw = get(key);
    if (raw === undefined || raw === null) return def;
    const r = v.safeParse(schema, raw);
    if (r.success) return r.output;
    const [code, args] = problemOf(r.issues[0].type, raw, expected, range);
    report(key, code, args);
    return def;
  };
  const str = (key: string, def: string): string => read(key, v.string(), def, 'string');
  const oneOf = <T extends string>(key: string, allowed: readonly T[], def: T): T =>
    get(key) === '' ? def : (read(key, v.picklist(allowed), def, allowed.join(', ')) as T);
  const num = (key: string, def: number, min: number, max: number, integer: boolean): number =>
    integer
      ? read(key, v.pipe(v.number(), v.finite(), v.integer(), v.minValue(min), v.maxValue(max)), def, 'integer', { min, max })
      : read(key, v.pipe(v.number(), v.finite(), v.minValue(min), v.maxValue(max)), def, 'number', { min, max });
  // The generation defaults: params.ts's schemas, behind a type check so that a wrong type is reported as one.
  const param = (key: Exclude<keyof Settings['defaults'], 'negativePrompt'>, schema: v.GenericSchema<number, number>, range: Range, integer = true) =>
    read(`defaults.${key}`, v.pipe(integer ? v.pipe(v.number(), v.integer()) : v.pipe(v.number(), v.finite()), schema), DEFAULTS.defaults[key], integer ? 'integer' : 'number', range);
  // A relative path with no folder open would be taken from the process's working folder: refused, said.
  const absolute = (key: string, raw: string): string => {
    const p = expandPath(raw, ctx);
    if (!p || path.isAbsolute(p)) return p;
    report(key, 'relativeNoFolder', { value: raw.trim() });
    return '';
  };
  const modelPath = (key: string): string => {
    const raw = str(key, '');
    const p = absolute(key, raw);
    if (p && !(ctx.exists ?? (() => true))(p)) report(key, 'pathMissing', { path: p });
    return p;
  };
  // A file where a folder belongs would fail only at its first use (a download, a weight conversion, the LoRA list).
  const notAFile = (key: string, p: string): string => {
    if (p && ctx.isFile?.(p)) report(key, 'notAFolder', { path: p });
    return p;
  };

  const folders = (key: string): string[] => {
    const v = get(key);
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) {
      report(key, 'wrongType', { expected: 'array of folder paths' });
      return [];
    }
    const out: string[] = [];
    for (const raw of v as string[]) {
      const p = absolute(key, raw);
      if (!p || out.includes(p)) continue;
      if (!(ctx.exists ?? (() => true))(p)) report(key, 'pathMissing', { path: p });
      else notAFile(key, p);
      out.push(p);
    }
    return out;
  };
  const url = (key: string): string => {
    const raw = str(key, '').trim();
    if (!raw) return '';
    if (!isHttpUrl(raw)) {
      report(key, 'badUrl', { value: raw });
      return '';
    }
    return raw.replace(/\/+$/, '');
  };

  const stage: Partial<Record<ComponentName, EpChoice>> = {};
  const rawStage = get('executionProviderPerStage');
  if (rawStage !== undefined && rawStage !== null) {
    if (typeof rawStage !== 'object' || Array.isArray(rawStage)) report('executionProviderPerStage', 'wrongType', { expected: 'object' });
    else {
      for (const [k, v] of Object.entries(rawStage as Record<string, unknown>)) {
        if (!(COMPONENTS as readonly string[]).includes(k)) report('executionProviderPerStage', 'badStageKey', { stage: k, allowed: COMPONENTS.join(', ') });
        else if (typeof v !== 'string' || !(EP_CHOICES as readonly string[]).includes(v)) report('executionProviderPerStage', 'notOneOf', { value: `${k}: ${String(v)}`, allowed: EP_CHOICES.join(', ') });
        else stage[k as ComponentName] = v as EpChoice;
      }
    }
  }

  let fileName = str('output.fileName', DEFAULTS.output.fileName);
  const tProblems = checkTemplate(fileName);
  if (tProblems.length) {
    report('output.fileName', 'badTemplate', { value: fileName, ...templateArgs(tProblems[0]) });
    fileName = DEFAULTS.output.fileName;
  }

  let remoteHost = str('server.remoteHost', '').trim();
  if (remoteHost && !/^[A-Za-z0-9.\-:[\]]+$/.test(remoteHost)) {
    report('server.remoteHost', 'remoteHost', { value: remoteHost });
    remoteHost = '';
  }

  const settings: Settings = {
    model: {
      path: modelPath('model.path'),
      transformer: modelPath('model.transformer'),
      vae: modelPath('model.vae'),
      textEncoder: modelPath('model.textEncoder'),
      textEncoder2: modelPath('model.textEncoder2'),
    },
    weights: oneOf('weights', WEIGHT_FORMATS, DEFAULTS.weights),
    memory: oneOf('memory', MEMORY_MODES, DEFAULTS.memory),
    memoryBudgetGB: num('memoryBudgetGB', 0, 0, 4096, false),
    gpuMemoryGB: num('gpuMemoryGB', 0, 0, 4096, false),
    weightCache: { folder: notAFile('weightCache.folder', absolute('weightCache.folder', str('weightCache.folder', ''))), maxGB: num('weightCache.maxGB', 0, 0, 1 << 20, false) },
    executionProvider: oneOf('executionProvider', EP_CHOICES, DEFAULTS.executionProvider),
    stageExecutionProvider: stage,
    output: { folder: str('output.folder', DEFAULTS.output.folder).trim() || DEFAULTS.output.folder, fileName, openResult: oneOf('output.openResult', OPEN_RESULT, DEFAULTS.output.openResult) },
    defaults: {
      steps: param('steps', P.Steps, P.LIMITS.steps),
      width: param('width', P.Width, P.LIMITS.side),
      height: param('height', P.Height, P.LIMITS.side),
      guidance: param('guidance', P.Guidance, P.LIMITS.guidance, false),
      seed: param('seed', P.Seed, { min: P.RANDOM_SEED, max: P.LIMITS.seed.max }),
      trueCfgScale: param('trueCfgScale', P.TrueCfgScale, P.LIMITS.trueCfgScale, false),
      negativePrompt: read('defaults.negativePrompt', P.NegativePrompt, DEFAULTS.defaults.negativePrompt, 'string', { min: 0, max: P.LIMITS.prompt.maxChars }),
    },
    loras: { folder: notAFile('loras.folder', modelPath('loras.folder')) },
    previewEverySteps: num('previewEverySteps', DEFAULTS.previewEverySteps, 0, 1000, true),
    server: {
      idleShutdownMinutes: num('server.idleShutdownMinutes', DEFAULTS.server.idleShutdownMinutes, 0, 24 * 60, false),
      remoteHost,
      remotePort: num('server.remotePort', DEFAULTS.server.remotePort, 1, 65535, true),
    },
    models: {
      searchPaths: folders('models.searchPaths'),
      downloadFolder: notAFile('models.downloadFolder', absolute('models.downloadFolder', str('models.downloadFolder', ''))),
      huggingfaceEndpoint: url('models.huggingfaceEndpoint'),
      modelscopeEndpoint: url('models.modelscopeEndpoint'),
    },
  };
  return { settings, problems };
}

interface Range {
  min: number;
  max: number;
}

/** A schema's first issue as a setting problem; `expected` is the type, or the choices of a picklist. */
function problemOf(issue: string, value: unknown, expected: string, range?: Range): [SettingProblemCode, Record<string, string | number>] {
  switch (issue) {
    case 'picklist':
      return ['notOneOf', { value: String(value), allowed: expected }];
    case 'multiple_of':
      return ['notMultipleOf16', { value: value as number }];
    case 'max_length':
      if (range) return ['tooLong', { length: (value as string).length, max: range.max }];
      break;
    case 'min_value':
    case 'max_value':
    case 'check':
      if (range) return ['outOfRange', { value: value as number, ...range }];
  }
  return ['wrongType', { expected }];
}

/**
 * `majicflux.models.searchPaths` with `add` appended (no duplicates). A value of the wrong type is
 * kept as far as it holds paths — a single string as one folder, an array's strings — rather than
 * spread into its characters or dropped.
 */
export function withSearchPaths(current: unknown, add: readonly string[]): string[] {
  const kept = Array.isArray(current) ? current.filter((x): x is string => typeof x === 'string') : typeof current === 'string' && current.trim() ? [current] : [];
  return [...kept, ...add.filter((p, i) => !kept.includes(p) && add.indexOf(p) === i)];
}

/** An absolute http(s) URL with a host (a hub mirror such as https://hf-mirror.com). */
export function isHttpUrl(s: string): boolean {
  try {
    const u = new URL(s);
    return (u.protocol === 'https:' || u.protocol === 'http:') && !!u.hostname && !u.username && !u.password;
  } catch {
    return false;
  }
}

/** True when no model is configured: the bundled demo model (random weights) is used. */
export function usesDemoModel(s: Settings): boolean {
  return !s.model.path && !s.model.transformer;
}

export function modelSpec(s: Settings): ModelSpec {
  if (usesDemoModel(s)) return {}; // the server's bundled demo model
  const spec: ModelSpec = {};
  if (s.model.path) spec.dir = s.model.path;
  if (s.model.transformer) spec.transformer = s.model.transformer;
  if (s.model.vae) spec.vae = s.model.vae;
  if (s.model.textEncoder) spec.textEncoder = s.model.textEncoder;
  if (s.model.textEncoder2) spec.textEncoder2 = s.model.textEncoder2;
  return spec;
}

/** A short model name for the status bar and metadata. */
export function modelName(s: Settings): string {
  if (usesDemoModel(s)) return 'demo';
  const p = s.model.transformer || s.model.path;
  return path.basename(p).replace(/\.(safetensors|gguf)$/i, '');
}

export function serverSettings(s: Settings): ServerSettings {
  const out: ServerSettings = { model: modelSpec(s), weights: s.weights, ep: s.executionProvider, memory: s.memory };
  if (Object.keys(s.stageExecutionProvider).length) out.stageEp = { ...s.stageExecutionProvider };
  if (s.memoryBudgetGB > 0) out.memoryBudget = Math.round(s.memoryBudgetGB * 2 ** 30);
  if (s.gpuMemoryGB > 0) out.gpuMemory = Math.round(s.gpuMemoryGB * 2 ** 30);
  if (s.weightCache.folder) out.cacheDir = s.weightCache.folder;
  if (s.weightCache.maxGB > 0) out.cacheMaxBytes = Math.round(s.weightCache.maxGB * 2 ** 30);
  return out;
}

/** Settings whose change needs the server restarted (or reconfigured). */
export function serverKey(s: Settings): string {
  return JSON.stringify([serverSettings(s), s.server.remoteHost, s.server.remotePort]);
}
