// What every `majicflux` subcommand shares: its shape, argument parsing, exit codes.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { closest } from '../../shared/didYouMean';
import { DEMO_MODEL_NAME } from '../models/demo';
import { checkOne, parseDecimal } from '../../shared/params';

export interface CliOutput {
  out(text: string): void;
  err(text: string): void;
  /** Whether err writes to a terminal: progress is redrawn in place there, one line per update elsewhere. */
  errIsTTY?: boolean;
}

export interface Subcommand {
  name: string;
  /** One line for the command list. */
  summary: string;
  /** The full `--help` text. */
  usage: string;
  run(args: string[], io: CliOutput): number | Promise<number>;
}

/** Bad arguments: reported with a pointer to --help, exit code 2. */
export class UsageError extends Error {}

/** A flag whose value must be one of `allowed`, when given. */
export function choiceFlag<T extends string>(name: string, v: string | undefined, allowed: readonly T[]): T | undefined {
  if (v === undefined) return undefined;
  if (!allowed.includes(v as T)) throw new UsageError(`--${name} must be one of ${allowed.join(', ')}; got "${v}"`);
  return v as T;
}

/** `--cache-max-gb N`: the disk the weight caches may take, in bytes (0 or absent: no limit). */
export function cacheMaxBytesFlag(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const gb = decimal(v);
  if (!Number.isFinite(gb) || gb < 0) throw new UsageError(`--cache-max-gb must be a number of GiB ≥ 0 (0: no limit), got "${v}"`);
  return gb > 0 ? Math.round(gb * 2 ** 30) : undefined;
}

/** A flag whose value must be a whole number from min to max, when given. */
export function wholeNumberFlag(name: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = decimal(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be a whole number from ${min} to ${max}, got "${v}"`);
  return n;
}

/** A value as its params.ts schema accepts it, or a UsageError with the schema's message. */
export function checked<S extends Parameters<typeof checkOne>[0]>(schema: S, value: unknown) {
  const r = checkOne(schema, value);
  if ('message' in r) throw new UsageError(r.message);
  return r.value;
}

/** A numeric flag's value, when given, as its schema accepts it. */
export function flag<S extends Parameters<typeof checkOne>[0]>(name: string, schema: S, text: string | undefined) {
  const n = num(name, text);
  return n === undefined ? undefined : checked(schema, n);
}

export function num(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = decimal(v);
  if (!Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got "${v}"`);
  return n;
}

/** A flag's text as a decimal number, else NaN (params.ts parseDecimal). */
export function decimal(v: string): number {
  return parseDecimal(v) ?? NaN;
}

/**
 * Refuses a path given as "" — `--model "$FLUX_DIR"` with the variable unset — which would
 * otherwise mean the current folder, or for --model the demo model's coloured noise.
 */
export function rejectEmptyPaths(paths: Record<string, string | undefined>): void {
  for (const [what, value] of Object.entries(paths)) {
    if (value !== undefined && !value.trim()) throw new UsageError(`${what} is empty (an unset variable?); give a path, or leave it out`);
  }
}

/**
 * The part flags (--transformer, --vae, …) beside the demo model or no model: `--model demo --vae
 * ae.safetensors` ran the demo with the VAE silently unused, and so did `--vae` with no --model.
 * `model` is --model's value (or models check's folder); `parts` the part flags by name.
 */
export function checkPartFlags(model: string | undefined, parts: Record<string, string | undefined>): void {
  const given = Object.keys(parts).filter((k) => parts[k] !== undefined);
  if (!given.length) return;
  const them = given.length > 1 ? 'them' : given[0];
  if (model === DEMO_MODEL_NAME) throw new UsageError(`the demo model (random weights) has its own parts and takes no ${given.join(', ')}: name a FLUX.1 model folder instead of demo, or leave ${them} out`);
  if (model === undefined && parts['--transformer'] === undefined) throw new UsageError(`${given.join(', ')} replace${given.length > 1 ? '' : 's'} a part of a model: add --model DIR (the folder with the other parts), or --transformer FILE with the other parts, or leave ${them} out`);
}

/** fs.stat, or undefined where nothing is (a path through a file included: ENOTDIR). */
export function statIfAny(p: string): fs.Stats | undefined {
  try {
    return fs.statSync(p);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new UsageError(`cannot read ${p}: ${(e as Error).message}`);
  }
}

/** An input file the user named: it must exist and be a file (checked before anything loads). */
export function checkedInputFile(flag: string, file: string): string {
  const stat = statIfAny(file);
  if (!stat) throw new UsageError(`${flag}: ${path.resolve(file)} does not exist`);
  if (!stat.isFile()) throw new UsageError(`${flag}: ${path.resolve(file)} is not a file`);
  return file;
}

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
/** Stopped by Ctrl+C: 128 + SIGINT, what a shell reports for a command interrupted the same way. */
export const EXIT_CANCELLED = 130;

type OptionSpec = NonNullable<Parameters<typeof parseArgs>[0]>['options'];

/**
 * parseArgs with -h/--help added and its errors turned into UsageErrors: a misspelled option names
 * the closest real one, and a negative number after an option is its value (`--seed -1`), which
 * parseArgs alone takes for another option.
 */
export function parseCommandArgs<O extends NonNullable<OptionSpec>>(args: string[], options: O, allowPositionals = true) {
  const all = { ...options, help: { type: 'boolean', short: 'h' } } as O & { help: { type: 'boolean'; short: 'h' } };
  let parsed;
  try {
    parsed = parseArgs({ args: joinNegativeValues(args, all), options: all, allowPositionals, strict: true, tokens: true });
  } catch (e) {
    throw new UsageError(parseErrorMessage(e as NodeJS.ErrnoException, Object.keys(all)));
  }
  rejectRepeatedFlags(parsed.tokens, all);
  const { values, positionals } = parsed;
  return { values, positionals };
}

/** Flags whose value is a secret: named when repeated, never echoed. */
const SECRET_FLAGS = new Set(['token']);

/**
 * parseArgs keeps the last of a single-valued flag given twice, so `--steps 20 … --steps 30` (an
 * edited command line, a script's default plus an override) ran silently with one of them: which
 * one the user meant is theirs to say. The same value twice, or a switch twice, is unambiguous.
 */
function rejectRepeatedFlags(tokens: ReturnType<typeof parseArgs>['tokens'] & object, options: NonNullable<OptionSpec>): void {
  const seen = new Map<string, string | undefined>();
  for (const t of tokens) {
    if (t.kind !== 'option' || options[t.name]?.multiple) continue;
    if (seen.has(t.name) && seen.get(t.name) !== t.value) {
      const values = SECRET_FLAGS.has(t.name) ? '' : ` ("${seen.get(t.name)}" and "${t.value}")`;
      throw new UsageError(`--${t.name} is given twice${values}; give it once`);
    }
    seen.set(t.name, t.value);
  }
}

function joinNegativeValues(args: string[], options: NonNullable<OptionSpec>): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const name = /^--([^=]+)$/.exec(args[i])?.[1];
    if (args[i] === '--') return [...out, ...args.slice(i)];
    if (name && options[name]?.type === 'string' && /^-\d/.test(args[i + 1] ?? '')) out.push(`${args[i]}=${args[++i]}`);
    else out.push(args[i]);
  }
  return out;
}

function parseErrorMessage(e: NodeJS.ErrnoException, names: string[]): string {
  if (e.code !== 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return e.message;
  // Node's text ("Unknown option '--promt'. To specify a positional argument …") is about '--'.
  const option = /'(-[^']*)'/.exec(e.message)?.[1] ?? '';
  const typed = option.replace(/^--?/, '').split('=')[0];
  const guess = option.startsWith('--') ? closest(typed, names) : undefined;
  return `unknown option ${option}${guess ? `; did you mean --${guess}?` : ''}`;
}

/**
 * How to run this CLI again, as the user can type it: `majicflux` when that name on PATH is this
 * script (npm install -g / npm link), else `node "<this script>"`, so a command we print is
 * runnable as printed.
 */
export function cliInvocation(script = process.argv[1] ?? '', env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): string {
  const names = platform === 'win32' ? ['majicflux.cmd', 'majicflux.ps1', 'majicflux.exe'] : ['majicflux'];
  const real = (p: string) => {
    try {
      return fs.realpathSync(p);
    } catch {
      return undefined;
    }
  };
  const self = real(script);
  for (const dir of (env.PATH ?? env.Path ?? '').split(platform === 'win32' ? ';' : ':')) {
    if (!dir) continue;
    for (const n of names) {
      const found = real(path.join(dir, n));
      // npm's Windows shims are scripts that call node on dist/cli.js: finding one is enough.
      if (found && (platform === 'win32' || found === self)) return 'majicflux';
    }
  }
  if (!/[^\w@%+=:,./\\-]/.test(script)) return `node ${script}`;
  // Quoted for the shell it will be pasted into: cmd.exe takes double quotes; POSIX shells single
  // quotes, inside which nothing ($, `, \) is expanded.
  return platform === 'win32' ? `node "${script}"` : `node '${script.replace(/'/g, `'\\''`)}'`;
}
