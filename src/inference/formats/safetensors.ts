// Lazy safetensors reader: parses and validates the header, then reads tensors by name with
// positioned reads. A 12 GB checkpoint costs only its header in memory.
// Format: u64 little-endian header length N, N bytes of JSON, then the data section.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { notRegularKind, notRegularProblem, openRegularSync, readRegularFileSync } from '../system/regularFile';
import { GgufFile, isGgufFile } from './gguf';
import { servedGguf } from './t5Gguf';
import { MAX_HEADER_BYTES, parseHeader, SafetensorsError, TensorInfo } from './safetensorsHeader';
import { OneFileReader, Reader, similarNames, TensorSource } from './tensorReader';

export { elementCount, MAX_HEADER_BYTES, MAX_TENSORS, SafetensorsError } from './safetensorsHeader';
export type { TensorInfo } from './safetensorsHeader';
export type { TensorSource } from './tensorReader';

export class SafetensorsFile extends OneFileReader {
  readonly path: string;
  readonly metadata: Record<string, string>;
  readonly headerBytes: number;
  protected readonly tensors: Map<string, TensorInfo>;
  private handle: number | undefined;

  private constructor(file: string, tensors: Map<string, TensorInfo>, metadata: Record<string, string>, headerBytes: number) {
    super();
    this.path = file;
    this.tensors = tensors;
    this.metadata = metadata;
    this.headerBytes = headerBytes;
  }

  static open(file: string): SafetensorsFile {
    const abs = path.resolve(file);
    const { fd, size } = openRegularSync(abs, (problem, why) => new SafetensorsError(abs, why.kind === 'a folder' ? 'is a folder, not a .safetensors file' : problem));
    try {
      const { tensors, metadata, headerBytes } = parseHeader(abs, fd, size);
      const f = new SafetensorsFile(abs, tensors, metadata, headerBytes);
      f.handle = fd;
      return f;
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  protected error(problem: string): Error {
    return new SafetensorsError(this.path, problem);
  }

  /** The open file descriptor (reopened after close()). */
  descriptor(): number {
    // Reopened by path: refuse whatever may have replaced the file since (a FIFO would block).
    this.handle ??= openRegularSync(this.path, (problem) => new SafetensorsError(this.path, problem)).fd;
    return this.handle;
  }

  protected fd(): number {
    return this.descriptor();
  }

  close(): void {
    if (this.handle !== undefined) fs.closeSync(this.handle);
    this.handle = undefined;
  }
}

/**
 * What a `*.safetensors.index.json` lists: its tensor name → shard file map and the shard files
 * (absolute, each once, in first-listed order). Every reader of an index goes through here so that
 * none follows a shard name out of the index's folder.
 */
export function readShardIndex(indexPath: string): { weightMap: Record<string, string>; shards: string[] } {
  const abs = path.resolve(indexPath);
  // An index is a name → file map: as large as a header at most.
  const text = readRegularFileSync(abs, MAX_HEADER_BYTES, (problem, why) => new SafetensorsError(abs, why.code ? `cannot read index: ${why.code}` : problem)).toString('utf8');
  let index: { weight_map?: Record<string, string> };
  try {
    index = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsError(abs, `index is not valid JSON (${(e as Error).message})`);
  }
  if (!index || typeof index.weight_map !== 'object' || index.weight_map === null) {
    throw new SafetensorsError(abs, 'index has no "weight_map" object');
  }
  const dir = path.dirname(abs);
  for (const [name, shard] of Object.entries(index.weight_map)) {
    if (typeof shard !== 'string' || !shard || path.isAbsolute(shard) || shard.split(/[\\/]/).includes('..')) {
      throw new SafetensorsError(abs, `index maps tensor "${name}" to ${JSON.stringify(shard)}, which is not a shard file name in ${dir}`);
    }
  }
  return { weightMap: index.weight_map, shards: [...new Set(Object.values(index.weight_map))].map((s) => path.join(dir, s)) };
}

/** Sharded checkpoint: `*.safetensors.index.json` with a `weight_map` of tensor name → shard file. */
export class ShardedSafetensors extends Reader {
  readonly path: string;
  readonly shards: SafetensorsFile[];
  private readonly byName: Map<string, SafetensorsFile>;

  private constructor(indexPath: string, shards: SafetensorsFile[], byName: Map<string, SafetensorsFile>) {
    super();
    this.path = indexPath;
    this.shards = shards;
    this.byName = byName;
  }

  static open(indexPath: string): ShardedSafetensors {
    const abs = path.resolve(indexPath);
    const { weightMap, shards } = readShardIndex(abs);
    const dir = path.dirname(abs);
    const files = new Map<string, SafetensorsFile>();
    const byName = new Map<string, SafetensorsFile>();
    const missing = shards.filter((s) => !fs.existsSync(s)).map((s) => path.relative(dir, s));
    if (missing.length) {
      throw new SafetensorsError(abs, `shard${missing.length > 1 ? 's' : ''} listed in the index not found in ${dir}: ${missing.join(', ')}`);
    }
    try {
      for (const [name, shard] of Object.entries(weightMap)) {
        let f = files.get(shard);
        if (!f) {
          f = SafetensorsFile.open(path.join(dir, shard));
          files.set(shard, f);
        }
        if (!f.has(name)) throw new SafetensorsError(f.path, `the index ${path.basename(abs)} puts tensor "${name}" in this shard, but the shard has no such tensor`);
        byName.set(name, f);
      }
    } catch (e) {
      for (const f of files.values()) f.close();
      throw e;
    }
    return new ShardedSafetensors(abs, [...files.values()], byName);
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  override has(name: string): boolean {
    return this.byName.has(name);
  }

  info(name: string): TensorInfo {
    const f = this.byName.get(name);
    if (!f) throw new SafetensorsError(this.path, `no tensor named "${name}" in any shard${similarNames(name, this.names())}`);
    return f.info(name);
  }

  protected fd(file: string): number {
    return this.shards.find((s) => s.path === file)!.descriptor();
  }

  close(): void {
    for (const s of this.shards) s.close();
  }
}

/**
 * Open a checkpoint given a `.safetensors` file, a `.safetensors.index.json`, a `.gguf` file, or a folder holding
 * exactly one of `model.safetensors(.index.json)` / `diffusion_pytorch_model.safetensors(.index.json)`
 * or a single `*.safetensors` file.
 */
export function openTensors(p: string): TensorSource {
  const abs = path.resolve(p);
  let st: fs.Stats;
  try {
    st = fs.statSync(abs);
  } catch {
    throw new SafetensorsError(abs, 'no such file or folder');
  }
  if (st.isFile()) return abs.endsWith('.index.json') ? ShardedSafetensors.open(abs) : isGgufFile(abs) ? servedGguf(GgufFile.open(abs)) : SafetensorsFile.open(abs);
  const kind = notRegularKind(st);
  if (kind !== 'a folder') throw new SafetensorsError(abs, `${notRegularProblem(kind!)} or folder`);
  let entries: string[];
  try {
    entries = fs.readdirSync(abs);
  } catch (e) {
    throw new SafetensorsError(abs, `cannot read folder: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const index = entries.filter((e) => e.endsWith('.safetensors.index.json'));
  if (index.length === 1) return ShardedSafetensors.open(path.join(abs, index[0]));
  if (index.length > 1) throw new SafetensorsError(abs, `folder has ${index.length} .safetensors.index.json files; open the one you mean: ${index.join(', ')}`);
  const files = entries.filter((e) => e.endsWith('.safetensors'));
  if (files.length === 1) return SafetensorsFile.open(path.join(abs, files[0]));
  if (files.length === 0) throw new SafetensorsError(abs, 'folder has no .safetensors file');
  throw new SafetensorsError(abs, `folder has ${files.length} .safetensors files and no .safetensors.index.json to say how they fit together: ${files.join(', ')}`);
}

