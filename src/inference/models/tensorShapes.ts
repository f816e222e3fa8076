// The tensors of a component's checkpoint as its header describes them (names, shapes, dtypes):
// what the memory model reads, cached so repeated checks do not reopen the files.

import * as fs from 'node:fs';
import type { ComponentName } from '../../shared/api';
import { openComponent } from '../formats/layouts/components';
import { ComponentKind } from '../formats/layouts/detect';
import { openTensors } from '../formats/safetensors';

/** One tensor as a header describes it. */
export interface TensorShape {
  name: string;
  shape: readonly number[];
  dtype: string;
}

/** The tensors of one component (names, shapes, dtypes: what a safetensors header gives). */
export type ShapeSource = readonly TensorShape[];
export type ComponentShapes = Record<ComponentName, ShapeSource>;

const shapeCache = new Map<string, { key: string; shapes: TensorShape[] }>();

function identity(p: string): string {
  try {
    const st = fs.statSync(p);
    return `${st.size}:${st.mtimeMs}`;
  } catch {
    return 'missing';
  }
}

/**
 * The tensors of a component's checkpoint (headers only): the component's own view when the layout reader
 * recognises it (prefix removed, other components of an all-in-one file left out), else every
 * tensor of the file. Cached by path, size and modification time. Throws what the readers throw.
 */
export function readShapes(p: string, kind?: ComponentKind): TensorShape[] {
  const key = `${kind ?? ''}\0${p}`;
  const id = identity(p);
  const hit = shapeCache.get(key);
  if (hit && hit.key === id) return hit.shapes;
  let shapes: TensorShape[] | undefined;
  if (kind) {
    try {
      const c = openComponent(p, kind);
      try {
        shapes = c.tensors.names().map((n) => ({ name: n, shape: c.tensors.info(n).shape, dtype: c.tensors.info(n).dtype }));
      } finally {
        c.close();
      }
    } catch {
      shapes = undefined;
    }
  }
  if (!shapes) {
    const src = openTensors(p);
    try {
      shapes = src.names().map((n) => ({ name: n, shape: src.info(n).shape, dtype: src.info(n).dtype }));
    } finally {
      src.close();
    }
  }
  shapeCache.set(key, { key: id, shapes });
  return shapes;
}
