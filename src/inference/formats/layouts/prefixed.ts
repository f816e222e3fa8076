// One component of an all-in-one checkpoint seen on its own: its name prefix removed and the
// other components' tensors hidden.

import { RenamedTensors } from '../renamedTensors';
import { SafetensorsError, TensorSource } from '../safetensors';

/**
 * The tensors of `inner` whose names start with `prefix`, named without it — minus those under
 * `others`, the longer prefixes of other components in the same file.
 */
class PrefixedTensors extends RenamedTensors {
  private readonly stripped: Set<string>;

  constructor(inner: TensorSource, private readonly prefix: string, others: string[]) {
    super(inner);
    const mine = (n: string) => n.startsWith(prefix) && !others.some((o) => o.length > prefix.length && n.startsWith(o));
    this.stripped = new Set(inner.names().filter(mine).map((n) => n.slice(prefix.length)));
  }

  names(): string[] {
    return [...this.stripped];
  }

  has(name: string): boolean {
    return this.stripped.has(name);
  }

  protected innerName(name: string): string {
    if (!this.stripped.has(name)) throw new SafetensorsError(this.inner.path, `no tensor named "${this.prefix}${name}"`);
    return this.prefix + name;
  }
}

/** The source seen as one component: its prefix removed, other components' tensors hidden. */
export function componentView(source: TensorSource, prefix: string, otherPrefixes: string[]): TensorSource {
  const nested = otherPrefixes.filter((o) => o.length > prefix.length && o.startsWith(prefix));
  return prefix || nested.length ? new PrefixedTensors(source, prefix, nested) : source;
}
