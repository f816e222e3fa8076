// `generate`'s files: the --out and --cache paths checked before anything loads, and the PNG
// written after minutes of work without losing it to a name taken meanwhile or a failed write.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../../shared/api';
import { FileExistsError, writePngAtomic } from '../formats/png';
import { cleanStaleTemps, type WriteOptions } from '../system/atomicWrite';
import { MAX_OUTPUT_NAME_BYTES } from '../server/paths';
import { imageNotSavedMessage } from '../system/fsErrors';
import { folderProblem } from '../system/writableFolder';
import { CliOutput, statIfAny, UsageError } from './common';

/** The absolute --out path, refused now if writing it would fail after the whole generation. */
export function checkedOut(out: string, overwrite: boolean): string {
  const file = path.resolve(out);
  // The temporary file's longer name would fail only once the image is made (ENAMETOOLONG).
  const bytes = Buffer.byteLength(path.basename(file));
  if (bytes > MAX_OUTPUT_NAME_BYTES) throw new UsageError(`--out: the file name is ${bytes} bytes long; at most ${MAX_OUTPUT_NAME_BYTES} (room is kept for the temporary file's name): choose a shorter one`);
  const stat = statIfAny(file);
  if (stat?.isDirectory()) throw new UsageError(`${file} is a folder; --out names the PNG file to write (e.g. ${path.join(out, 'image.png')})`);
  if (stat && !overwrite) throw new UsageError(`${file} already exists; pass --overwrite to replace it, or choose another --out`);
  // PNG bytes under a .jpg name open as a broken JPEG in some viewers, and the parameters ride in PNG chunks.
  const ext = path.extname(file);
  if (ext.toLowerCase() !== '.png') throw new UsageError(`--out: the image is written as PNG; name it ${ext ? file.slice(0, -ext.length) : file}.png`);
  checkCanCreate('--out', path.dirname(file));
  return file;
}

/**
 * --cache: not a file, nor inside one (found only after the text encoders ran, as an ENOTDIR). Not
 * checked for writing: a complete cache on a read-only share is read, never written.
 */
export function checkedCacheDir(dir: string): string {
  const abs = path.resolve(dir);
  const stat = statIfAny(abs);
  if (stat && !stat.isDirectory()) throw new UsageError(`--cache: ${abs} is a file; --cache names the folder the converted weights are kept in`);
  if (!stat) checkCanCreate('--cache', abs, () => true);
  return dir;
}

/** The folder exists, or its nearest existing ancestor is a folder this process can write in (`writable` asks that). */
export function checkCanCreate(flag: string, dir: string, writable?: (dir: string) => boolean): void {
  const problem = folderProblem(dir, writable);
  if (problem?.code === 'fileInTheWay') throw new UsageError(`${flag}: cannot create a folder in ${problem.path}: it is a file`);
  if (problem) throw new UsageError(`${flag}: cannot write in ${problem.path} (permission denied)`);
}

/**
 * writePngAtomic, after minutes of generation: a name another run took meanwhile gets the next free
 * name rather than losing this image; a folder that cannot be written is a message, not a stack.
 */
export async function writePng(file: string, png: Uint8Array, options: WriteOptions, seed: number, io: CliOutput): Promise<string> {
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    // What a run killed while saving (a second Ctrl+C, kill -9) left here: as the server does at its first job.
    const removed = await cleanStaleTemps(path.dirname(file));
    if (removed.length) io.err(`removed ${removed.length} temporary file${removed.length > 1 ? 's' : ''} left in ${path.dirname(file)} by a run that was killed while saving\n`);
    try {
      return await writePngAtomic(file, png, options);
    } catch (e) {
      if (!(e instanceof FileExistsError)) throw e;
      const written = await writePngAtomic(file, png, { unique: true, signal: options.signal });
      io.err(`warning: ${file} appeared while generating (another run?); saved as ${written} instead\n`);
      return written;
    }
  } catch (e) {
    if (options.signal?.aborted) throw e;
    throw new UserError(imageNotSavedMessage(file, e, `Free some space or choose a writable --out, then run again with --seed ${seed} to get the same image.`));
  }
}
