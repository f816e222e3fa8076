// What the text encoders will make of a prompt: CLIP reads 77 tokens, T5 up to its max length and
// only the languages of its vocabulary (mostly English). One rule for both readers of it: the
// editor's `.flux` diagnostics (src/extension/fluxFile) and the pipeline's notes on a generation.
// Pure: it reads tokenizer results, it does not tokenize.

import type { TokenizeResult } from './tokenizers';

export const CLIP_MAX_TOKENS = 77;
/** At or above this share of unknown T5 tokens the prompt is mostly lost on T5 (docs/FLUX-FILE.md: ≥ 30 %). */
export const T5_UNKNOWN_RATIO = 0.3;

export type PromptIssue =
  | { code: 'clipTruncated'; tokens: number; max: number; cutOffset: number }
  | { code: 't5Truncated'; tokens: number; max: number; cutOffset: number }
  | { code: 't5Unreadable'; percent: number; unknown: number };

/** The issues of `prompt` given how CLIP and T5 (at `t5MaxLength`) tokenized it. */
export function promptIssues(prompt: string, clip: TokenizeResult, t5: TokenizeResult, t5MaxLength: number): PromptIssue[] {
  const issues: PromptIssue[] = [];
  if (clip.truncated) issues.push({ code: 'clipTruncated', tokens: clip.untruncatedLength, max: CLIP_MAX_TOKENS, cutOffset: cutOffset(prompt, clip) });
  if (t5.truncated) issues.push({ code: 't5Truncated', tokens: t5.untruncatedLength, max: t5MaxLength, cutOffset: cutOffset(prompt, t5) });
  if (t5.unknownCount >= 1 && t5.unknownRatio >= T5_UNKNOWN_RATIO) {
    issues.push({ code: 't5Unreadable', percent: Math.round(t5.unknownRatio * 100), unknown: t5.unknownCount });
  }
  return issues;
}

/** An issue as a line of the generation's notes (the CLI and the server's log; the editor has its own, localized). */
export function promptNote(issue: PromptIssue, prompt: string): string {
  switch (issue.code) {
    case 'clipTruncated':
      return `CLIP reads only the first ${issue.max} tokens; it ignores everything from "${ignoredStart(prompt, issue.cutOffset)}" on`;
    case 't5Truncated':
      return `T5 reads only the first ${issue.max} tokens; it ignores everything from "${ignoredStart(prompt, issue.cutOffset)}" on`;
    case 't5Unreadable':
      return `T5 could not read ${issue.percent}% of the prompt's tokens (T5 knows English best)`;
  }
}

/**
 * The first words of what an encoder ignores, for a message that says where the cut is in words
 * (on a long one-line prompt the underline starts off-screen).
 */
export function ignoredStart(prompt: string, cutOffset: number, maxWords = 4, maxChars = 40): string {
  const rest = prompt.slice(cutOffset).trim();
  const words = rest.split(/\s+/).slice(0, maxWords).join(' ');
  const short = words.length > maxChars ? words.slice(0, maxChars).trimEnd() : words;
  return short.length < rest.length ? `${short}…` : short;
}

/** How far back a cut inside a word moves to the word's start (a longer "word" is cut where it is). */
const WORD_SNAP = 40;

function cutOffset(prompt: string, r: TokenizeResult): number {
  const at = r.truncatedText === undefined ? prompt.length : prompt.length - r.truncatedText.length;
  // A cut between two tokens of one word ("wo|rd28") is shown from the word's start: people read words.
  let start = at;
  while (start > 0 && at - start < WORD_SNAP && !/\s/.test(prompt[start - 1])) start--;
  return start > 0 && /\s/.test(prompt[start - 1]) ? start : at;
}
