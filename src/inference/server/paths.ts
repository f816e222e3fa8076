// Which paths a client may name, checked before any work (docs/PROTOCOL.md, "Security model").
//
// The local client (stdio/fd: the extension, run by the machine's owner) may name any path, as the
// owner could open it anyway. A TCP client has the token but is not the owner: it may read only
// inside the folders the owner named at start, write only inside the output folder, and set no
// server path at all. Real paths are compared, so a symlink inside an allowed folder does not lead
// out of it.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { notRegularKind, notRegularProblem } from '../system/regularFile';
import { ModelSpec, UserError } from '../../shared/api';
import { TEMP_NAME_ROOM } from '../system/atomicWrite';
import { windowsNameProblem } from '../../shared/fileName';
import { folderProblem } from '../system/writableFolder';

/** Longest output file name (bytes): the temp file adds TEMP_NAME_ROOM, a `-N` for a taken name up to 6, and 255 is the usual limit. */
export const MAX_OUTPUT_NAME_BYTES = 255 - TEMP_NAME_ROOM - 6;

/** `p` lies below `root`: only a real `..` component leaves it (`..foo.png` is an ordinary name). */
export function isInside(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel !== '' && !path.isAbsolute(rel) && rel.split(path.sep)[0] !== '..';
}

/** `p` with every symlink in its existing part resolved; a part that does not exist yet is appended as written. */
export function realish(p: string): string {
  let head = path.resolve(p);
  const rest: string[] = [];
  for (;;) {
    try {
      return path.join(fs.realpathSync.native(head), ...rest);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw e;
    }
    const parent = path.dirname(head);
    if (parent === head) return path.join(head, ...rest);
    rest.unshift(path.basename(head));
    head = parent;
  }
}

/**
 * `p` is `root` or below it once every symlink is resolved; false when a real path cannot be
 * found (a symlink loop, no permission): a link inside an allowed folder may lead out.
 */
export function atOrInsideReal(root: string, p: string): boolean {
  try {
    const r = realish(root);
    const real = realish(p);
    return real === r || isInside(r, real);
  } catch {
    return false;
  }
}

/** Longest folder or file name most file systems take: 255 bytes on Linux, 255 UTF-16 units on Windows and macOS. */
const MAX_NAME = 255;
const nameLength = (name: string) => (process.platform === 'linux' ? Buffer.byteLength(name) : name.length);

/**
 * Why no file system would take `p` whatever it holds — a NUL, a folder or file name past 255
 * bytes — or undefined. Checked before anything else: Node would throw with the whole resolved path
 * (the server's folders), or the name would fail only when the finished image is saved.
 */
export function pathNameProblem(p: string, what: string): string | undefined {
  if (p.includes('\0')) return `${what} contains a NUL character`;
  const long = p.split(/[\\/]/).find((name) => nameLength(name) > MAX_NAME);
  const unit = process.platform === 'linux' ? 'bytes' : 'characters';
  return long === undefined ? undefined : `${what} ${JSON.stringify(p)} has a folder or file name of ${nameLength(long)} ${unit}; at most ${MAX_NAME} are allowed`;
}

/**
 * Why `file` cannot be an output PNG (before any work: a bad name must not cost a whole generation),
 * or undefined. `base`: a remote client's output folder, which its messages name paths relative to.
 */
export function outputNameProblem(file: string, base?: string): string | undefined {
  if (file.includes('\0')) return 'output contains a NUL character';
  const name = path.basename(file);
  if (Buffer.byteLength(name) > MAX_OUTPUT_NAME_BYTES) return `output file name is ${Buffer.byteLength(name)} bytes long; at most ${MAX_OUTPUT_NAME_BYTES} are allowed (room is kept for the temporary file's name)`;
  const shown = (p: string) => JSON.stringify(base === undefined ? p : path.relative(base, p));
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined; // not there yet: the usual case (missing folders are made)
    if (code === 'ENOTDIR') {
      const inTheWay = folderProblem(path.dirname(file), () => true);
      return `output ${shown(file)} goes through ${shown(inTheWay?.path ?? path.dirname(file))}, which is a file, not a folder`;
    }
    return `output ${shown(file)} cannot be written (${code ?? 'error'})`;
  }
  if (st.isDirectory()) return `output ${shown(file)} is an existing folder; name a file inside it`;
  return undefined;
}

/** An input file must be a regular file: opening a FIFO or a device would block or never end. */
export function regularFileProblem(file: string, what: string, expected = 'a .safetensors file', shown = file): string | undefined {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (e) {
    return `${what} ${JSON.stringify(shown)} cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`;
  }
  const kind = notRegularKind(st);
  return kind && `${what} ${JSON.stringify(shown)} ${notRegularProblem(kind)}; name ${expected}`;
}

/**
 * `text` with every server path of `names` (server path → the name the client gave) replaced by that
 * name, as written and inside JSON quotes: a remote client hears of its files as it named them.
 */
export function asNamed(text: string, names: ReadonlyMap<string, string>): string {
  // Longest first: a path that begins another is replaced only where it stands alone.
  for (const [server, named] of [...names].sort((a, b) => b[0].length - a[0].length)) {
    text = text.split(JSON.stringify(server).slice(1, -1)).join(JSON.stringify(named).slice(1, -1)).split(server).join(named);
  }
  return text;
}

/** Where an absolute path starts: POSIX `/` (not a URL's `//host`), a Windows drive, UNC; `file://` before it too. */
const PATH_START = String.raw`(?:file:\/\/)?(?:\/(?!\/)|[A-Za-z]:[\\/]|\\\\)`;
/** A character of an unquoted path. */
const CH = String.raw`[^\s'"${'`'}()[\],;]`;
/**
 * An absolute path in free text: whole between quotes (spaces and all); unquoted after a space,
 * bracket, `=`, `,` or `:`, running on over a space while the next word holds a separator
 * (`/Users/j/Application Support/x.bin`, `C:\Users\John Smith\x`), not over plain words.
 */
const PATH_IN_TEXT = new RegExp(String.raw`(['"${'`'}])(${PATH_START}[^'"${'`'}\n]*)\1|(^|[\s([=,:])(${PATH_START}${CH}*(?: ${CH}*[\\/]${CH}*)*)`, 'g');

/**
 * The server's own text (a log line, an error) as a remote client may read it: no stack frames
 * (they name the install), and a path outside the folders the owner allowed shown as
 * `<server path>`; paths inside them stay, as the client may name those itself.
 */
export function forRemoteClient(text: string, roots: RemoteRoots): string {
  const allowed = (p: string) => {
    const file = path.resolve(p.replace(/^file:\/\//, '').replace(/(?::\d+)*[.:]*$/, ''));
    return roots.read.some((r) => file === r || isInside(r, file));
  };
  return text
    .split('\n')
    .filter((line) => !/^\s+at /.test(line))
    .join('\n')
    .replace(PATH_IN_TEXT, (whole, quote: string | undefined, quoted: string | undefined, before: string | undefined, bare: string | undefined) => {
      if (quote !== undefined) return allowed(quoted!) ? whole : `${quote}<server path>${quote}`;
      const p = bare!.replace(/[.:]+$/, '');
      return allowed(p) ? whole : `${before}<server path>${bare!.slice(p.length)}`;
    });
}

export interface RemoteRoots {
  /** Files and folders a remote client may read from (the model given at start, inputs, output, models). */
  read: string[];
  /** The one folder it may write into. */
  output: string;
  /** Relative input names are taken from here. */
  inputs: string;
}

/** The folders `serve` allows, from its options. */
export function remoteRoots(o: { outputDir: string; inputsDir?: string; modelsDir?: string; model?: ModelSpec }): RemoteRoots {
  const model = o.model ?? {};
  // Files count as themselves (their folder may be the owner's home), folders with their contents.
  const given = [model.dir, model.transformer, model.vae, model.textEncoder, model.textEncoder2, model.tokenizer, model.tokenizer2, o.inputsDir, o.modelsDir];
  const roots = given.filter((p): p is string => !!p).map((p) => path.resolve(p));
  const output = path.resolve(o.outputDir);
  return { read: [...new Set([output, ...roots])], output, inputs: o.inputsDir ? path.resolve(o.inputsDir) : output };
}

/**
 * What a client may name. `remote` undefined: the owner's own client, which may name any path (an
 * output must still be absolute and a sensible name, an input a regular file).
 */
export class PathPolicy {
  constructor(readonly remote?: RemoteRoots) {}

  /** The server's own text (log lines, internal errors) as this client may read it (forRemoteClient); the owner's client reads it whole. */
  forClient(text: string): string {
    return this.remote ? forRemoteClient(text, this.remote) : text;
  }

  /** An input file a job reads, resolved; refuses (UserError) what it may not name or what is not a regular file (`expected`: what to name instead). */
  inputFile(file: string, what: string, expected?: string): string {
    const named = pathNameProblem(file, what);
    if (named) throw new UserError(named);
    const abs = this.remote ? path.resolve(this.remote.inputs, file) : path.resolve(file);
    if (this.remote && !this.readable(abs)) throw new UserError(`${what} ${JSON.stringify(file)} is outside the folders this server reads from; put it in the server's inputs folder (serve --inputs-dir) and name it relative to that`);
    // A remote client learns nothing of where the server's folders are: the file as it named it.
    const problem = regularFileProblem(abs, what, expected, this.remote ? file : abs);
    if (problem) throw new UserError(problem);
    // The file itself, not its name: a symlink put at the name later changes nothing.
    return this.remote ? realish(abs) : abs;
  }

  /** Refuses (UserError) a model a remote client names outside the allowed folders. */
  modelSpec(spec: ModelSpec): void {
    if (!this.remote) return;
    // The demo model is written where `demo` says: a remote client names no folder to write in.
    if (spec.demo !== undefined) throw new UserError('model.demo: a remote client cannot have this server write the demo model; start the server with --model to choose the model there');
    for (const key of ['dir', 'transformer', 'vae', 'textEncoder', 'textEncoder2', 'tokenizer', 'tokenizer2'] as const) {
      const p = spec[key];
      const named = p === undefined ? undefined : pathNameProblem(p, `model.${key}`);
      if (named) throw new UserError(named);
      if (p !== undefined && !this.readable(path.resolve(p))) {
        throw new UserError(`model.${key} ${JSON.stringify(p)} is outside the folders this server reads models from; start the server with --model (or --models-dir) to choose the model there`);
      }
    }
  }

  /** The absolute output path for a job, or why it is refused. */
  output(output: string): string | { error: string } {
    if (output.includes('\0')) return { error: 'output contains a NUL character' };
    // "sub/" or "sub/." would be written as a file named "sub".
    if (/[\\/]$|(^|[\\/])\.\.?$/.test(output)) return { error: `output ${JSON.stringify(output)} names a folder, not a file; name a file inside it (like ${JSON.stringify(path.join(output, 'image.png'))})` };
    const folders = path.dirname(output);
    const named = folders === '.' ? undefined : pathNameProblem(folders, 'output');
    if (named) return { error: named };
    let abs: string;
    if (this.remote) {
      abs = path.resolve(this.remote.output, output);
      if (!isInside(this.remote.output, abs) || !this.writable(abs)) return { error: `output ${JSON.stringify(output)} is outside the server's output folder` };
    } else {
      if (!path.isAbsolute(output)) return { error: `output must be an absolute path, got ${JSON.stringify(output)}` };
      abs = path.resolve(output);
    }
    if (process.platform === 'win32') {
      // What Windows refuses, or reads as a device or a data stream, fails only when the image is saved.
      const names = (this.remote ? output : abs.slice(path.parse(abs).root.length)).split(/[\\/]/).filter(Boolean);
      const windows = names.map(windowsNameProblem).find((p) => p !== undefined);
      if (windows) return { error: `output ${windows}` };
    }
    const problem = outputNameProblem(abs, this.remote?.output);
    return problem ? { error: problem } : abs;
  }

  /** Just before a job reads its inputs: a symlink made while it waited in the queue must not lead out either. */
  assertReadable(file: string, what: string): void {
    if (this.remote && !this.readable(file)) throw new UserError(`${what} now leads outside the folders this server reads from (a symbolic link?); not reading it`);
  }

  /** Just before writing: a symlink made since the job was accepted must not lead out either. */
  assertWritable(file: string): void {
    if (this.remote && !this.writable(file)) throw new UserError(`output ${JSON.stringify(file)} now leads outside the server's output folder (a symbolic link?); not writing it`);
  }

  /** A path whose real path cannot be found (a symlink loop, no permission) is not inside. */
  private writable(abs: string): boolean {
    try {
      return isInside(realish(this.remote!.output), realish(abs));
    } catch {
      return false;
    }
  }

  private readable(abs: string): boolean {
    return this.remote!.read.some((root) => atOrInsideReal(root, abs));
  }
}
