// What every checkpoint reader serves (safetensors files, sharded sets, GGUF files) and the
// positioned reads they share.

import * as fs from 'node:fs';
import { toFloat16Bits, toFloat32 } from './dtypes';
import { SafetensorsError, TensorInfo } from './safetensorsHeader';

/** Anything that serves tensors by name: one file or a sharded set. */
export interface TensorSource {
  readonly path: string;
  names(): string[];
  has(name: string): boolean;
  info(name: string): TensorInfo;
  readBytes(name: string): Buffer;
  readF32(name: string): Float32Array;
  /** IEEE half bits. */
  readF16(name: string): Uint16Array;
  close(): void;
}

export abstract class Reader implements TensorSource {
  abstract readonly path: string;
  abstract names(): string[];
  abstract info(name: string): TensorInfo;
  abstract close(): void;
  protected abstract fd(file: string): number;

  has(name: string): boolean {
    return this.names().includes(name);
  }

  readBytes(name: string): Buffer {
    const t = this.info(name);
    const buf = Buffer.allocUnsafe(t.byteLength);
    let done = 0;
    while (done < t.byteLength) {
      const n = fs.readSync(this.fd(t.file), buf, done, t.byteLength - done, t.offset + done);
      if (n === 0) throw new SafetensorsError(t.file, `unexpected end of file while reading tensor "${name}" (the file was truncated after it was opened?)`);
      done += n;
    }
    return buf;
  }

  readF32(name: string): Float32Array {
    return toFloat32(this.readBytes(name), this.info(name).dtype);
  }

  readF16(name: string): Uint16Array {
    return toFloat16Bits(this.readBytes(name), this.info(name).dtype);
  }
}

/** One file whose header listed its tensors (a safetensors or GGUF file): lookup by name. */
export abstract class OneFileReader extends Reader {
  protected abstract readonly tensors: Map<string, TensorInfo>;
  /** The format's own error for a problem with this file. */
  protected abstract error(problem: string): Error;

  names(): string[] {
    return [...this.tensors.keys()];
  }

  override has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw this.error(`no tensor named "${name}" (the file has ${this.tensors.size} tensors${similarNames(name, this.names())})`);
    return t;
  }
}

/** "; similar names: …" for a name that is not there (a typo or another naming), else ''. */
export function similarNames(name: string, names: string[]): string {
  const tail = name.split('.').slice(-2).join('.');
  const similar = names.filter((n) => n.endsWith(tail)).slice(0, 3);
  return similar.length ? `; similar names: ${similar.join(', ')}` : '';
}
