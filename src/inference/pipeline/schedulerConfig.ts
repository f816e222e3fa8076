// diffusers' scheduler_config.json for FLUX: the fields the schedule uses, their defaults, and the
// checks that refuse an option the schedule does not implement (a wrong schedule would give a
// wrong image silently).

import * as path from 'node:path';
import { Fail, readRegularFile, readRegularFileSync } from '../system/regularFile';

/** The fields of diffusers' scheduler_config.json that FLUX uses. */
export interface SchedulerConfig {
  num_train_timesteps: number;
  shift: number;
  use_dynamic_shifting: boolean;
  base_shift: number;
  max_shift: number;
  base_image_seq_len: number;
  max_image_seq_len: number;
  time_shift_type: 'exponential' | 'linear';
  shift_terminal: number | null;
}

/** FLUX.1-dev/schnell-style defaults, used for fields a config file leaves out (or with no file). */
export const DEFAULT_SCHEDULER_CONFIG: Readonly<SchedulerConfig> = Object.freeze({
  num_train_timesteps: 1000,
  shift: 3.0,
  use_dynamic_shifting: true,
  base_shift: 0.5,
  max_shift: 1.15,
  base_image_seq_len: 256,
  max_image_seq_len: 4096,
  time_shift_type: 'exponential',
  shift_terminal: null,
});

// Options diffusers supports that change the schedule and that we do not implement.
const UNSUPPORTED_FLAGS = ['use_karras_sigmas', 'use_exponential_sigmas', 'use_beta_sigmas', 'invert_sigmas'];

/** Merges a parsed scheduler_config.json over the defaults, checking types. */
export function parseSchedulerConfig(raw: unknown, source = 'scheduler config'): SchedulerConfig {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new Error(`${source}: expected a JSON object`);
  }
  const obj = raw as Record<string, unknown>;
  const cfg: SchedulerConfig = { ...DEFAULT_SCHEDULER_CONFIG };
  const num = (key: 'num_train_timesteps' | 'shift' | 'base_shift' | 'max_shift' | 'base_image_seq_len' | 'max_image_seq_len') => {
    const v = obj[key];
    if (v === undefined || v === null) return;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${source}: ${key} must be a number`);
    cfg[key] = v;
  };
  num('num_train_timesteps');
  num('shift');
  num('base_shift');
  num('max_shift');
  num('base_image_seq_len');
  num('max_image_seq_len');
  if (obj.use_dynamic_shifting !== undefined && obj.use_dynamic_shifting !== null) {
    if (typeof obj.use_dynamic_shifting !== 'boolean') throw new Error(`${source}: use_dynamic_shifting must be true or false`);
    cfg.use_dynamic_shifting = obj.use_dynamic_shifting;
  }
  if (obj.time_shift_type !== undefined && obj.time_shift_type !== null) {
    if (obj.time_shift_type !== 'exponential' && obj.time_shift_type !== 'linear') {
      throw new Error(`${source}: time_shift_type ${JSON.stringify(obj.time_shift_type)} is not supported (exponential or linear)`);
    }
    cfg.time_shift_type = obj.time_shift_type;
  }
  if (obj.shift_terminal !== undefined && obj.shift_terminal !== null) {
    const t = obj.shift_terminal;
    if (typeof t !== 'number' || !(t >= 0 && t < 1)) throw new Error(`${source}: shift_terminal must be a number in [0, 1)`);
    cfg.shift_terminal = t === 0 ? null : t; // diffusers tests truthiness: 0 means off
  }
  for (const flag of UNSUPPORTED_FLAGS) {
    if (obj[flag] === true) throw new Error(`${source}: ${flag} is not supported`);
  }
  if (cfg.max_image_seq_len === cfg.base_image_seq_len) {
    throw new Error(`${source}: max_image_seq_len must differ from base_image_seq_len`);
  }
  return cfg;
}

const MAX_SCHEDULER_BYTES = 1 << 20;

/** Where a `location` (model folder, scheduler folder, or the JSON file) may hold the config, in order. */
function schedulerCandidates(location: string): string[] {
  return location.endsWith('.json') ? [location] : [path.join(location, 'scheduler', 'scheduler_config.json'), path.join(location, 'scheduler_config.json')];
}

// A FIFO or device there is refused, not read forever (readRegularFile).
const refused = (file: string): Fail => (problem, why) => Object.assign(new Error(`${file}: ${problem}`), { code: why.code });
const absent = (err: unknown) => ['ENOENT', 'ENOTDIR'].includes((err as NodeJS.ErrnoException).code ?? '');

function parseSchedulerFile(file: string, text: string): SchedulerConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file}: invalid JSON (${(err as Error).message})`, { cause: err });
  }
  return parseSchedulerConfig(raw, file);
}

/**
 * Reads `scheduler_config.json`. `location` may be the model folder (with a `scheduler/`
 * subfolder), the scheduler folder itself, or the JSON file. A missing file gives the defaults;
 * a malformed one throws.
 */
export async function readSchedulerConfig(location: string): Promise<SchedulerConfig> {
  for (const file of schedulerCandidates(location)) {
    let text: string;
    try {
      text = (await readRegularFile(file, MAX_SCHEDULER_BYTES, refused(file))).toString('utf8');
    } catch (err) {
      if (absent(err)) continue;
      throw err;
    }
    return parseSchedulerFile(file, text);
  }
  return { ...DEFAULT_SCHEDULER_CONFIG };
}

/** What the generation would refuse in a model's scheduler config (`models check`, before a job finds it); undefined when it reads, or is absent. */
export function schedulerConfigProblem(location: string): string | undefined {
  for (const file of schedulerCandidates(location)) {
    try {
      parseSchedulerFile(file, readRegularFileSync(file, MAX_SCHEDULER_BYTES, refused(file)).toString('utf8'));
      return undefined;
    } catch (err) {
      if (absent(err)) continue;
      return (err as Error).message;
    }
  }
  return undefined;
}
