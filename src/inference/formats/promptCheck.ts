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
      return `CLIP sees only the first ${issue.max} tokens; cut: "${prompt.slice(issue.cutOffset)}"`;
    case 't5Truncated':
      return `T5 sees only the first ${issue.max} tokens`;
    case 't5Unreadable':
      return `T5 could not read ${issue.percent}% of the prompt's tokens (T5 knows English best)`;
  }
}

function cutOffset(prompt: string, r: TokenizeResult): number {
  return r.truncatedText === undefined ? prompt.length : prompt.length - r.truncatedText.length;
}
