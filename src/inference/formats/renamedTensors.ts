// Views that serve another source's tensors under other names (one component of an all-in-one
// file, ComfyUI's weight scales, a llama.cpp T5 under transformers' names) differ only in how a
// name maps to the file's: the reads, the path and closing forward the same way for all of them.

import { TensorInfo } from './safetensorsHeader';
import { TensorSource } from './tensorReader';

export abstract class RenamedTensors implements TensorSource {
  constructor(protected readonly inner: TensorSource) {}

  abstract names(): string[];
  abstract has(name: string): boolean;
  /** The inner source's name for `name`; throws (or names nothing there) when this view lacks it. */
  protected abstract innerName(name: string): string;

  get path(): string {
    return this.inner.path;
  }

  /** Named as this view names it (`info(n).name === n`); file and offset locate the bytes. */
  info(name: string): TensorInfo {
    return { ...this.inner.info(this.innerName(name)), name };
  }

  readBytes(name: string): Buffer {
    return this.inner.readBytes(this.innerName(name));
  }

  readF32(name: string): Float32Array {
    return this.inner.readF32(this.innerName(name));
  }

  readF16(name: string): Uint16Array {
    return this.inner.readF16(this.innerName(name));
  }

  close(): void {
    this.inner.close();
  }
}
