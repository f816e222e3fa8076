// What every `majicflux` subcommand shares: its shape, argument parsing, exit codes.

import { parseArgs } from 'node:util';

export interface CliOutput {
  out(text: string): void;
  err(text: string): void;
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

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

type OptionSpec = NonNullable<Parameters<typeof parseArgs>[0]>['options'];

/** parseArgs with -h/--help added and its errors turned into UsageErrors. */
export function parseCommandArgs<O extends NonNullable<OptionSpec>>(args: string[], options: O) {
  try {
    return parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } } as O & { help: { type: 'boolean'; short: 'h' } }, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

