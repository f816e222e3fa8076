// Prompt tokenizers for FLUX.1: CLIP-L (tokenizer/) and T5-XXL (tokenizer_2/), padded and truncated
// the way diffusers' FluxPipeline does it.
//
// Both run on @huggingface/tokenizers. FLUX.1-dev's tokenizer/ folder has only vocab.json + merges.txt,
// so the CLIP tokenizer.json that transformers builds for CLIPTokenizer is assembled in memory
// (NFC, \s+ -> " ", lowercase; CLIP's split regex; byte-level; BPE with "</w>"). Measured against
// test/fixtures/flux-tiny/cases/tokenizers.json (transformers 5.17 CLIPTokenizer / T5Tokenizer):
// all 15 prompts match id for id for both tokenizers, so there is no hand-written BPE. The golden ids
// follow the tokenizers-backed CLIP, not the old slow path without ftfy: a run of CJK characters is one
// word (only its last byte gets "</w>"), accents are kept, a literal <|endoftext|> becomes 49407.
// Load on the dev machine: CLIP 0.26-0.5 s (vocab 49,408, merges 48,894), T5 0.17-0.25 s; encoding a
// typical prompt takes well under 1 ms.

import { stat } from 'node:fs/promises';
import { readRegularFile } from '../system/regularFile';
import * as path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';

export interface TokenizeResult {
  /** Padded ids, length = maxLength. */
  ids: Int32Array;
  /** Real tokens including specials, after truncation, before padding. */
  length: number;
  /** Tokens including specials that the whole prompt would need. */
  untruncatedLength: number;
  truncated: boolean;
  /** Unknown tokens among the real tokens. */
  unknownCount: number;
  /** unknownCount / real tokens excluding specials; 0 when there are none. */
  unknownRatio: number;
  /**
   * The part of the prompt that was cut off (best effort). Always a suffix of the prompt, so the cut
   * starts at `text.length - truncatedText.length`. Undefined when nothing was cut.
   */
  truncatedText?: string;
}

export class TokenizerFileError extends Error {
  constructor(readonly file: string, problem: string) {
    super(`${file}: ${problem}`);
    this.name = 'TokenizerFileError';
  }
}

const CLIP_HINT = 'expected the FLUX.1-dev tokenizer/ folder with vocab.json and merges.txt';
const T5_HINT = 'expected the FLUX.1-dev tokenizer_2/ folder with tokenizer.json (T5 unigram tokenizer)';

const CLIP_BOS = '<|startoftext|>';
const CLIP_EOS = '<|endoftext|>';
// transformers' CLIP pre-tokenizer pattern (Split, invert: the matches are the words).
const CLIP_SPLIT = "'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+";

/** How special tokens frame the text ids. */
interface Frame {
  prefix: number[];
  suffix: number[];
  pad: number;
  /** Id the model emits for unknown text, or null if it cannot emit one. */
  unk: number | null;
}

export class ClipTokenizer {
  private constructor(private readonly lib: Tokenizer, private readonly frame: Frame) {}

  static async fromFolder(dir: string): Promise<ClipTokenizer> {
    await requireFolder(dir, CLIP_HINT);
    const vocabFile = path.join(dir, 'vocab.json');
    const mergesFile = path.join(dir, 'merges.txt');
    // One after the other: with both missing, the error names vocab.json every time (in parallel,
    // whichever read failed first won, and the message changed from run to run).
    const vocabText = await readRequired(vocabFile, CLIP_HINT);
    const mergesText = await readRequired(mergesFile, CLIP_HINT);
    const vocab = parseVocab(vocabText, vocabFile);
    return ClipTokenizer.fromData(vocab, parseMerges(mergesText, mergesFile), vocabFile);
  }

  /** Builds from parsed vocab.json and merges (pairs, in rank order). */
  static fromData(vocab: Record<string, number>, merges: [string, string][], vocabFile = 'vocab.json'): ClipTokenizer {
    const bos = vocab[CLIP_BOS];
    const eos = vocab[CLIP_EOS];
    if (bos === undefined || eos === undefined) {
      throw new TokenizerFileError(vocabFile, `has no ${CLIP_BOS} / ${CLIP_EOS} entries; ${CLIP_HINT}`);
    }
    const added = (id: number, content: string, normalized: boolean) =>
      ({ id, content, normalized, special: true, single_word: false, lstrip: false, rstrip: false });
    const lib = new Tokenizer(
      {
        added_tokens: [added(bos, CLIP_BOS, true), added(eos, CLIP_EOS, false)],
        normalizer: {
          type: 'Sequence',
          normalizers: [{ type: 'NFC' }, { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'Lowercase' }],
        },
        pre_tokenizer: {
          type: 'Sequence',
          pretokenizers: [
            { type: 'Split', pattern: { Regex: CLIP_SPLIT }, behavior: 'Removed', invert: true },
            { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
          ],
        },
        model: {
          type: 'BPE', vocab, merges, unk_token: CLIP_EOS, continuing_subword_prefix: '', end_of_word_suffix: '</w>',
          fuse_unk: false, byte_fallback: false, dropout: null,
        },
        // Specials, padding and truncation are applied in frameIds(); decoding is not needed.
        post_processor: null,
        decoder: null,
      },
      {},
    );
    // CLIP's unk is <|endoftext|> (= EOS) and byte-level BPE covers every byte, so the model never
    // emits it; a 49407 inside the text is a literal <|endoftext|> the user typed.
    return new ClipTokenizer(lib, { prefix: [bos], suffix: [eos], pad: eos, unk: null });
  }

  /** FluxPipeline: BOS + text + EOS, truncated to maxLength keeping EOS last, padded with EOS. */
  encode(text: string, maxLength = 77): TokenizeResult {
    return frameIds(this.lib, this.frame, text, maxLength);
  }
}

export class T5Tokenizer {
  private constructor(private readonly lib: Tokenizer, private readonly frame: Frame) {}

  static async fromFolder(dir: string): Promise<T5Tokenizer> {
    await requireFolder(dir, T5_HINT);
    const file = path.join(dir, 'tokenizer.json');
    return T5Tokenizer.fromJson(parseJson(await readRequired(file, T5_HINT), file), file);
  }

  /** Builds from a parsed tokenizer.json. */
  static fromJson(json: unknown, file = 'tokenizer.json'): T5Tokenizer {
    if (!isObject(json) || !isObject(json.model) || !Array.isArray(json.model.vocab)) {
      throw new TokenizerFileError(file, `is not a tokenizers model file (no model.vocab); ${T5_HINT}`);
    }
    let lib: Tokenizer;
    try {
      lib = new Tokenizer(json, {});
    } catch (e) {
      throw new TokenizerFileError(file, `could not be loaded (${(e as Error).message}); ${T5_HINT}`);
    }
    const id = (token: string) => {
      const found = lib.token_to_id(token);
      if (found === undefined) throw new TokenizerFileError(file, `has no ${token} token; ${T5_HINT}`);
      return found;
    };
    return new T5Tokenizer(lib, { prefix: [], suffix: [id('</s>')], pad: id('<pad>'), unk: id('<unk>') });
  }

  /** FluxPipeline: text + </s>, truncated to maxLength keeping </s> last, padded with <pad> = 0. */
  encode(text: string, maxLength = 512): TokenizeResult {
    return frameIds(this.lib, this.frame, text, maxLength);
  }
}

function textIds(lib: Tokenizer, text: string): number[] {
  return lib.encode(text, { add_special_tokens: false }).ids;
}

function frameIds(lib: Tokenizer, frame: Frame, text: string, maxLength: number): TokenizeResult {
  const specials = frame.prefix.length + frame.suffix.length;
  if (!Number.isInteger(maxLength) || maxLength <= specials) {
    throw new RangeError(`maxLength must be an integer above ${specials}, got ${maxLength}`);
  }
  const budget = maxLength - specials;
  const all = textIds(lib, text);
  const kept = all.length > budget ? all.slice(0, budget) : all;

  const ids = new Int32Array(maxLength).fill(frame.pad);
  ids.set(frame.prefix, 0);
  ids.set(kept, frame.prefix.length);
  ids.set(frame.suffix, frame.prefix.length + kept.length);

  const unknownCount = frame.unk === null ? 0 : kept.filter((id) => id === frame.unk).length;
  const truncated = all.length > budget;
  const result: TokenizeResult = {
    ids,
    length: specials + kept.length,
    untruncatedLength: specials + all.length,
    truncated,
    unknownCount,
    unknownRatio: kept.length > 0 ? unknownCount / kept.length : 0,
  };
  if (truncated) result.truncatedText = cutOff(lib, text, budget);
  return result;
}

/**
 * The library reports no offsets, so find where the cut falls in the original text by counting the
 * tokens of prefixes. Whitespace is a token boundary for both tokenizers, so counts at word starts
 * grow monotonically: first find the word that straddles the budget, then the code point inside it
 * (partial words can tokenize differently, so that part is approximate, which is fine for an underline).
 */
function cutOff(lib: Tokenizer, text: string, budget: number): string {
  const fits = (end: number) => textIds(lib, text.slice(0, end)).length <= budget;
  const words = [...Array.from(text.matchAll(/\S+/gu), (m) => m.index), text.length];
  const w = lastFit(words.length, (i) => fits(words[i]));
  const points: number[] = [];
  for (let i = words[w]; i < words[w + 1]; i += text.codePointAt(i)! > 0xffff ? 2 : 1) points.push(i);
  const cut = points[lastFit(points.length, (i) => fits(points[i]))];
  return text.slice(cut).trimStart();
}

/**
 * Largest i < n with ok(i), given ok(0) and ok monotone (true then false). Gallops up from 0 before
 * bisecting, so the cost follows the answer rather than n.
 */
function lastFit(n: number, ok: (i: number) => boolean): number {
  let lo = 0;
  let step = 1;
  while (lo + step < n && ok(lo + step)) {
    lo += step;
    step *= 2;
  }
  let hi = Math.min(n, lo + step);
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (ok(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

async function requireFolder(dir: string, hint: string): Promise<void> {
  const info = await stat(dir).catch(() => null);
  if (!info) throw new TokenizerFileError(dir, `folder not found; ${hint}`);
  if (!info.isDirectory()) throw new TokenizerFileError(dir, `is not a folder; ${hint}`);
}

/** Tokenizer files are a few MB (T5's tokenizer.json 2.4 MB); anything past this is not one. */
const MAX_TOKENIZER_FILE_BYTES = 64 << 20;

async function readRequired(file: string, hint: string): Promise<string> {
  // A FIFO or device under a tokenizer's name is refused, not read forever (readRegularFile).
  const buf = await readRegularFile(file, MAX_TOKENIZER_FILE_BYTES, (problem, why) =>
    new TokenizerFileError(file, `${why.code === 'ENOENT' ? 'file is missing' : problem}; ${hint}`));
  return buf.toString('utf8');
}

function parseJson(text: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new TokenizerFileError(file, `invalid JSON (${(e as Error).message}); the file may be truncated, download it again`);
  }
}

function parseVocab(text: string, file: string): Record<string, number> {
  const json = parseJson(text, file);
  if (!isObject(json) || Object.values(json).some((v) => !Number.isInteger(v))) {
    throw new TokenizerFileError(file, `is not a vocabulary (expected an object of token -> integer id); ${CLIP_HINT}`);
  }
  return json as Record<string, number>;
}

function parseMerges(text: string, file: string): [string, string][] {
  const merges: [string, string][] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].replace(/\r$/, '');
    if (line === '' || (i === 0 && line.startsWith('#version'))) continue;
    const pair = line.split(' ');
    if (pair.length !== 2 || !pair[0] || !pair[1]) {
      throw new TokenizerFileError(file, `line ${i + 1} is not a merge ("left right"): ${JSON.stringify(line.slice(0, 80))}`);
    }
    merges.push(pair as [string, string]);
  }
  if (merges.length === 0) throw new TokenizerFileError(file, `has no merges; ${CLIP_HINT}`);
  return merges;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
