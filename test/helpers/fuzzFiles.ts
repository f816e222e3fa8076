// The loop the file-reader fuzz tests share (safetensors, GGUF): each mutated copy is written to a
// file, opened and checked by the reader, then by the layout detector. A case either opens, is
// refused with the reader's own error or a LayoutError, or fails the test naming its case and seed.

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openComponents } from '../../src/inference/formats/layouts/components';
import { LayoutError } from '../../src/inference/formats/layouts/detect';
import { fuzzLoop, rng, Rng } from './prng';
import { tempDir } from './writeSafetensors';

export interface ReaderFuzz<R extends { close(): void }> {
  seed: number;
  cases: number;
  budgetMs: number;
  /** The file name's ending, which the layout detector goes by. */
  ext: string;
  /** One mutated file. */
  mutate(r: Rng): Buffer;
  open(file: string): R;
  /** Asserts that what opened is valid (`size`: the file's bytes). */
  check(reader: R, size: number): void;
  /** The reader's own error for a file it refuses. */
  refusal: abstract new (...args: never[]) => Error;
}

/** Runs the cases; asserts enough ran and that some opened and some were refused. */
export function fuzzReader<R extends { close(): void }>(f: ReaderFuzz<R>): void {
  const r = rng(f.seed);
  const outcomes = { opened: 0, refused: 0, layout: 0 };
  const tmp = tempDir('fuzz-reader-');
  try {
    const ran = fuzzLoop(f.cases, f.budgetMs, (i) => {
      const bytes = f.mutate(r);
      const file = path.join(tmp.dir, `case-${i}.${f.ext}`);
      fs.writeFileSync(file, bytes);
      try {
        const reader = f.open(file);
        try {
          f.check(reader, bytes.length);
        } finally {
          reader.close();
        }
        outcomes.opened++;
        for (const c of openComponents(file)) c.close();
      } catch (e) {
        if (e instanceof LayoutError) outcomes.layout++;
        else if (e instanceof f.refusal) outcomes.refused++;
        else assert.fail(`case ${i} (seed ${f.seed}): unexpected ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      } finally {
        fs.rmSync(file);
      }
    });
    if (process.env.FUZZ_VERBOSE) console.log(ran, outcomes);
    assert.ok(ran >= 50, `only ${ran} cases ran in ${f.budgetMs} ms`);
    assert.ok(outcomes.opened > 0 && outcomes.refused > 0, JSON.stringify(outcomes));
  } finally {
    tmp.cleanup();
  }
}
