// One component of an all-in-one checkpoint seen on its own: its name prefix removed and the
// other components' tensors hidden.

import { SafetensorsError, TensorInfo, TensorSource } from '../safetensors';

/**
 * The tensors of `inner` whose names start with `prefix`, named without it — minus those under
 * `others`, the longer prefixes of other components in the same file.
 */
class PrefixedTensors implements TensorSource {
  private readonly stripped: Set<string>;

  constructor(private readonly inner: TensorSource, private readonly prefix: string, others: string[]) {
    const mine = (n: string) => n.startsWith(prefix) && !others.some((o) => o.length > prefix.length && n.startsWith(o));
    this.stripped = new Set(inner.names().filter(mine).map((n) => n.slice(prefix.length)));
  }

  get path(): string {
    return this.inner.path;
  }

  names(): string[] {
    return [...this.stripped];
  }

  has(name: string): boolean {
    return this.stripped.has(name);
  }

  private full(name: string): string {
    if (!this.stripped.has(name)) throw new SafetensorsError(this.inner.path, `no tensor named "${this.prefix}${name}"`);
    return this.prefix + name;
  }

  /** Named as this view names it (`info(n).name === n`); file and offset locate the bytes. */
  info(name: string): TensorInfo {
    return { ...this.inner.info(this.full(name)), name };
  }

  readBytes(name: string): Buffer {
    return this.inner.readBytes(this.full(name));
  }

  readF32(name: string): Float32Array {
    return this.inner.readF32(this.full(name));
  }

  readF16(name: string): Uint16Array {
    return this.inner.readF16(this.full(name));
  }

  close(): void {
    this.inner.close();
  }
}

/** The source seen as one component: its prefix removed, other components' tensors hidden. */
export function componentView(source: TensorSource, prefix: string, otherPrefixes: string[]): TensorSource {
  const nested = otherPrefixes.filter((o) => o.length > prefix.length && o.startsWith(prefix));
  return prefix || nested.length ? new PrefixedTensors(source, prefix, nested) : source;
}
