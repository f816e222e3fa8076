// The one never-overwrite naming rule for written images: a taken `name.ext` becomes `name-1.ext`,
// `name-2.ext`, … Node built-ins only, so the extension host can use it as well as the server.

import * as path from 'node:path';

/** How many numbered names are tried before giving up (a folder holding that many is a mistake). */
export const MAX_NUMBERED = 100_000;

/** Candidate `i` for `target`: the target itself for 0, else `name-i.ext`. */
export function numberedName(target: string, i: number): string {
  if (i === 0) return target;
  const ext = path.extname(target);
  return `${target.slice(0, target.length - ext.length)}-${i}${ext}`;
}

function noFreeName(target: string): Error {
  return new Error(`no free file name like ${target} (tried ${MAX_NUMBERED})`);
}

/** The first candidate for `target` that `taken` does not claim (a file there, or a name promised to another job). */
export function firstFreeName(target: string, taken: (candidate: string) => boolean): string {
  for (let i = 0; i < MAX_NUMBERED; i++) {
    const candidate = numberedName(target, i);
    if (!taken(candidate)) return candidate;
  }
  throw noFreeName(target);
}

/** As firstFreeName, for a check that must wait (the file system's). */
export async function firstFreeNameAsync(target: string, taken: (candidate: string) => Promise<boolean>): Promise<string> {
  for (let i = 0; i < MAX_NUMBERED; i++) {
    const candidate = numberedName(target, i);
    if (!(await taken(candidate))) return candidate;
  }
  throw noFreeName(target);
}
