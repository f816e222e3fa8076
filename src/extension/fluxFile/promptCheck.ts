// What the text encoders will make of a prompt: CLIP reads 77 tokens, T5 up to 512 and only the
// languages of its vocabulary (mostly English). Tokenizing runs here in the extension host: it is
// pure JavaScript, loads in ~0.3 s once per tokenizer folder (lazily, cached) and encodes a prompt in
// well under a millisecond, so diagnostics work while the server is stopped, without a round trip
// per keystroke and even in an untrusted workspace (nothing is executed).

import * as path from 'node:path';
import type { TokenizeResult } from '../../inference/formats/tokenizers';

export const CLIP_MAX_TOKENS = 77;
export const T5_MAX_TOKENS = 512;
/** Above this share of unknown T5 tokens the prompt is mostly lost on T5. */
export const T5_UNKNOWN_RATIO = 0.3;

export interface PromptEncoders {
  clip(text: string): TokenizeResult;
  t5(text: string): TokenizeResult;
}

export type PromptIssue =
  | { code: 'clipTruncated'; tokens: number; max: number; cutOffset: number }
  | { code: 't5Truncated'; tokens: number; max: number; cutOffset: number }
  | { code: 't5Unreadable'; percent: number; unknown: number };

export function checkPrompt(prompt: string, enc: PromptEncoders, t5MaxLength = T5_MAX_TOKENS): PromptIssue[] {
  const issues: PromptIssue[] = [];
  const clip = enc.clip(prompt);
  if (clip.truncated) {
    issues.push({ code: 'clipTruncated', tokens: clip.untruncatedLength, max: CLIP_MAX_TOKENS, cutOffset: cutOffset(prompt, clip) });
  }
  const t5 = enc.t5(prompt);
  if (t5.truncated) {
    issues.push({ code: 't5Truncated', tokens: t5.untruncatedLength, max: t5MaxLength, cutOffset: cutOffset(prompt, t5) });
  }
  if (t5.unknownCount >= 1 && t5.unknownRatio >= T5_UNKNOWN_RATIO) {
    issues.push({ code: 't5Unreadable', percent: Math.round(t5.unknownRatio * 100), unknown: t5.unknownCount });
  }
  return issues;
}

function cutOffset(prompt: string, r: TokenizeResult): number {
  return r.truncatedText === undefined ? prompt.length : prompt.length - r.truncatedText.length;
}

const cache = new Map<string, Promise<PromptEncoders>>();

/**
 * The encoders of a model folder (its tokenizer/ and tokenizer_2/), loaded once. Falls back to
 * `fallbackDir` (the bundled demo model's real FLUX.1-dev tokenizers) when the folder lacks them.
 */
export function loadEncoders(modelDir: string | undefined, fallbackDir: string, t5MaxLength = T5_MAX_TOKENS): Promise<PromptEncoders> {
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
