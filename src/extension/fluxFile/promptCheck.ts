// The prompt checks (inference/formats/promptCheck.ts, shared with the pipeline) for the editor.
// Tokenizing runs here in the extension host: it is
// pure JavaScript, loads in ~0.3 s once per tokenizer folder (lazily, cached) and encodes a prompt in
// well under a millisecond, so diagnostics work while the server is stopped, without a round trip
// per keystroke and even in an untrusted workspace (nothing is executed).

import * as path from 'node:path';
import { CLIP_MAX_TOKENS, PromptIssue, promptIssues } from '../../inference/formats/promptCheck';
import type { TokenizeResult } from '../../inference/formats/tokenizers';
import { DEFAULTS } from '../../shared/params';

export type { PromptIssue } from '../../inference/formats/promptCheck';
export { ignoredStart } from '../../inference/formats/promptCheck';

export interface PromptEncoders {
  clip(text: string): TokenizeResult;
  t5(text: string): TokenizeResult;
}

// The diagnostics check every block again after each edit: a file of thousands of prompts took
// ~0.7 s per 5,000 of them on every pause in typing, blocking the extension host. A prompt's issues
// depend only on its text and the encoders, so the unchanged ones are remembered (bounded).
const checked = new WeakMap<PromptEncoders, Map<string, PromptIssue[]>>();
const MAX_REMEMBERED = 20_000;

export function checkPrompt(prompt: string, enc: PromptEncoders, t5MaxLength: number = DEFAULTS.t5MaxLength): PromptIssue[] {
  let memo = checked.get(enc);
  if (!memo) checked.set(enc, (memo = new Map()));
  const key = `${t5MaxLength}\u0000${prompt}`;
  const hit = memo.get(key);
  if (hit) return hit;
  const issues = promptIssues(prompt, enc.clip(prompt), enc.t5(prompt), t5MaxLength);
  if (memo.size >= MAX_REMEMBERED) memo.clear();
  memo.set(key, issues);
  return issues;
}

const cache = new Map<string, Promise<PromptEncoders>>();

/**
 * The encoders of a model folder (its tokenizer/ and tokenizer_2/), loaded once. Falls back to
 * `fallbackDir` (the bundled demo model's real FLUX.1-dev tokenizers) when the folder lacks them.
 */
export function loadEncoders(modelDir: string | undefined, fallbackDir: string, t5MaxLength: number = DEFAULTS.t5MaxLength): Promise<PromptEncoders> {
  const key = `${modelDir ?? ''}\u0000${fallbackDir}\u0000${t5MaxLength}`;
  let p = cache.get(key);
  if (!p) {
    p = (async () => {
      // require, not import(): esbuild then bundles the module but evaluates it only here.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const { ClipTokenizer, T5Tokenizer } = require('../../inference/formats/tokenizers') as typeof import('../../inference/formats/tokenizers');
      const pick = async <T>(sub: string, load: (dir: string) => Promise<T>): Promise<T> => {
        if (modelDir) {
          try {
            return await load(path.join(modelDir, sub));
          } catch {
            // a model folder without tokenizers (e.g. single files): the FLUX.1 tokenizers are all the same
          }
        }
        return load(path.join(fallbackDir, sub));
      };
      const [clip, t5] = await Promise.all([pick('tokenizer', (d) => ClipTokenizer.fromFolder(d)), pick('tokenizer_2', (d) => T5Tokenizer.fromFolder(d))]);
      return { clip: (t: string) => clip.encode(t, CLIP_MAX_TOKENS), t5: (t: string) => t5.encode(t, t5MaxLength) };
    })();
    p.catch(() => cache.delete(key));
    cache.set(key, p);
  }
  return p;
}
