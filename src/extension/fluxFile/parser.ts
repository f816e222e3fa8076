// The `.flux` prompt file format (docs/FLUX-FILE.md). Pure and total: any string parses, problems are
// reported with positions, nothing throws.
//
//   # comment
//   steps: 28              ← parameters before the first prompt: defaults for the whole file
//
//   a lighthouse on a cliff at dawn,
//   oil painting
//   seed: 42
//   count: 2
//
//   a second prompt        ← blank lines separate blocks
//
// A line is a parameter when it starts with one word and a colon (`seed: 42`); a line starting with
// `\` is always prompt text (`\note: this is prompt`). Prompt lines are joined with a space.

import * as v from 'valibot';
import { checkTemplate, TemplateProblem } from '../../shared/fileName';
import { closest } from '../../shared/didYouMean';
import {
  Count, GenerateParams, Guidance, Height, HIRES_UPSCALERS, HiresScale, IMAGE_FITS, ImageParams, Lora, LIMITS, LORA_TAG, LoraStrength, nearestSides, NegativePrompt, parseDecimal, resolveParams, splitLoraSpec, Steps, Strength, TrueCfgScale, UsedSeed, VAE_TILING, Width,
} from '../../shared/params';

export interface Position {
  line: number;
  /** UTF-16 code units, like VS Code. */
  character: number;
}

export interface Span {
  start: Position;
  end: Position;
}

export const PARAM_KEYS = [
  'seed', 'steps', 'width', 'height', 'guidance', 'count', 'out',
  'negative', 'cfg', 'lora', 'image', 'strength', 'image_fit', 'hires', 'hires_strength', 'hires_steps', 'hires_upscale', 'vae_tiling',
] as const;
export type ParamKey = (typeof PARAM_KEYS)[number];
/** Other spellings a key is read under. */
const KEY_ALIASES = new Map<string, ParamKey>([['negative_prompt', 'negative']]);
/** Keys that may be given on several lines of a block; their values add up. */
const REPEATABLE: ReadonlySet<string> = new Set<ParamKey>(['lora']);

/**
 * The values a block sets: params.ts's, with a seed of 'random' (a new one for every image), a count
 * and a file name; issue 13's under the generate request's names (`image` and LoRA paths as
 * written, resolved by inputs.ts before a run).
 */
export type BlockValues = Partial<Omit<ImageParams, 'prompt' | 'seed'>> &
  Partial<Pick<GenerateParams, 'negativePrompt' | 'trueCfgScale' | 'loras' | 'image' | 'strength' | 'imageFit' | 'hires' | 'vaeTiling'>> & {
    seed?: ImageParams['seed'] | 'random';
    count?: v.InferOutput<typeof Count>;
    out?: string;
  };
type Hires = NonNullable<BlockValues['hires']>;

/** Where each key's value goes: a BlockValues field, or a field of `hires` (the `hires…` keys). */
const FIELD: Record<ParamKey, keyof BlockValues | ['hires', keyof Hires]> = {
  seed: 'seed', steps: 'steps', width: 'width', height: 'height', guidance: 'guidance', count: 'count', out: 'out',
  negative: 'negativePrompt', cfg: 'trueCfgScale', lora: 'loras', image: 'image', strength: 'strength', image_fit: 'imageFit',
  hires: ['hires', 'scale'], hires_strength: ['hires', 'strength'], hires_steps: ['hires', 'steps'], hires_upscale: ['hires', 'upscale'], vae_tiling: 'vaeTiling',
};

export interface ParamLine {
  /** As written. */
  key: string;
  /** Lower-cased. */
  name: string;
  known: boolean;
  value: string;
  line: number;
  keySpan: Span;
  valueSpan: Span;
}

/** One line's contribution to a prompt: `text` sits at `offset` in the joined prompt. */
export interface PromptPiece {
  line: number;
  character: number;
  offset: number;
  text: string;
}

export interface FluxBlock {
  /** 0-based among prompt blocks. */
  index: number;
  /** First to last non-blank line of the paragraph (comments included). */
  span: Span;
  prompt: string;
  pieces: PromptPiece[];
  params: ParamLine[];
  /** Valid values given in this block (invalid ones are reported and left out). */
  values: BlockValues;
}

export interface FluxDefaults {
  spans: Span[];
  params: ParamLine[];
  values: BlockValues;
}

export type ProblemCode =
  | 'unknownKey'
  | 'duplicateKey'
  | 'emptyValue'
  | 'notInteger'
  | 'notNumber'
  | 'outOfRange'
  | 'notMultipleOf16'
  | 'badSeed'
  | 'badOut'
  | 'notOneOf'
  | 'tooLong'
  | 'tooManyLoras'
  | 'loraWithoutFile'
  | 'loraTagInPrompt'
  | 'imageOptionWithoutImage'
  | 'negativeWithoutCfg'
  | 'refusedTogether'
  | 'orphanParams';

export interface FluxProblem {
  code: ProblemCode;
  severity: 'error' | 'warning' | 'info';
  span: Span;
  /** Values for the message; `suggestion` is a replacement a quick fix may offer. */
  args: Record<string, string | number>;
}

export interface FluxDocument {
  blocks: FluxBlock[];
  defaults: FluxDefaults;
  problems: FluxProblem[];
  lineCount: number;
}

type Line =
  | { kind: 'blank' }
  | { kind: 'comment' }
  | { kind: 'separator' }
  | { kind: 'prompt'; character: number; text: string }
  | { kind: 'param'; key: string; keyStart: number; value: string; valueStart: number };

// A key is one ASCII word; `://` keeps URLs in prompts from looking like parameters. A1111's
// "Negative prompt:" (two words) is read as a key too, an unknown one: pasted from A1111 it would
// otherwise join the prompt silently — the very words meant to steer away — and A1111's negative
// may run over several lines, which no rule here could tell from the prompt. So it is an error on
// its line with `negative` offered, and the user decides what belongs to it.
const PARAM_RE = /^([A-Za-z][A-Za-z0-9_-]*|negative[ \t]+prompt)[ \t]*:(?!\/\/)/i;

function classify(raw: string): Line {
  const indent = raw.length - raw.trimStart().length;
  const body = raw.trim();
  if (!body) return { kind: 'blank' };
  if (body.startsWith('#')) return { kind: 'comment' };
  if (/^-{3,}$/.test(body)) return { kind: 'separator' };
  if (body.startsWith('\\')) {
    const rest = body.slice(1);
    const text = rest.trimStart();
    if (!text) return { kind: 'blank' };
    return { kind: 'prompt', character: indent + 1 + (rest.length - text.length), text };
  }
  const m = PARAM_RE.exec(body);
  if (m) {
    const afterColon = raw.slice(indent + m[0].length);
    // ` # ...` ends the value: a comment after a parameter.
    const hash = afterColon.search(/(^|\s)#/);
    const valueRaw = hash < 0 ? afterColon : afterColon.slice(0, hash);
    const lead = valueRaw.length - valueRaw.trimStart().length;
    return { kind: 'param', key: m[1], keyStart: indent, value: valueRaw.trim(), valueStart: indent + m[0].length + lead };
  }
  return { kind: 'prompt', character: indent, text: body };
}

const span = (line: number, start: number, end: number): Span => ({ start: { line, character: start }, end: { line, character: end } });

// A Map, not an object literal: `constructor` or `__proto__` typed as a key must not find Object's own.
const ALIASES = new Map<string, ParamKey>(
  Object.entries({
    scale: 'guidance', n: 'count', num: 'count', images: 'count', output: 'out', file: 'out', w: 'width', h: 'height',
    negative_prompt: 'negative', neg: 'negative', true_cfg: 'cfg', cfg_scale: 'cfg', loras: 'lora', init_image: 'image', denoise: 'strength', denoising_strength: 'strength',
  } as const),
);

export function suggestKey(key: string): ParamKey | undefined {
  const k = key.toLowerCase().replace(/\s+/g, ' ');
  if (k === 'negative prompt') return 'negative';
  const alias = ALIASES.get(k);
  if (alias) return alias;
  return closest(k, PARAM_KEYS);
}

function parseInteger(s: string): number | undefined {
  if (!/^[+-]?\d+$/.test(s)) return undefined;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : undefined;
}


/** Validates one parameter; pushes problems; returns the value to use, if valid. */
function parseValue(p: ParamLine, problems: FluxProblem[]): BlockValues[keyof BlockValues] | undefined {
  const at = p.valueSpan;
  const problem = (code: ProblemCode, args: Record<string, string | number> = {}, severity: FluxProblem['severity'] = 'error') =>
    problems.push({ code, severity, span: at, args: { key: p.name, value: p.value, ...args } });
  if (p.value === '') {
    problems.push({ code: 'emptyValue', severity: 'error', span: p.keySpan, args: { key: p.name } });
    return undefined;
  }
  // The text is read here (where a value is not a number); whether the number is allowed is params.ts's call.
  const check = (schema: v.GenericSchema<number, number>, n: number, range: { min: number; max: number }) => {
    const r = v.safeParse(schema, n);
    if (r.success) return n;
    if (r.issues[0].type !== 'multiple_of') return void problem('outOfRange', { min: range.min, max: range.max });
    const [lower, upper] = nearestSides(n);
    const suggestion = n - lower < upper - n ? lower : upper;
    return void problem('notMultipleOf16', { lower, upper, suggestion: String(suggestion) });
  };
  const number = (schema: v.GenericSchema<number, number>, range: { min: number; max: number }) => {
    const n = parseDecimal(p.value);
    if (n === undefined) return void problem('notNumber', { ...range });
    return check(schema, n, range);
  };
  const oneOf = <T extends string>(choices: readonly T[]): T | undefined => {
    const c = p.value.toLowerCase() as T;
    if (choices.includes(c)) return c;
    return void problem('notOneOf', { allowed: choices.join(', '), suggestion: closest(c, choices) ?? choices[0] });
  };
  const integer = (schema: v.GenericSchema<number, number>, range: { min: number; max: number }) => {
    const n = parseInteger(p.value);
    if (n === undefined) return void problem('notInteger', { min: range.min, max: range.max });
    return check(schema, n, range);
  };
  switch (p.name as ParamKey) {
    case 'seed': {
      const s = p.value.toLowerCase();
      if (s === 'random' || s === '-1') return 'random';
      const n = parseInteger(p.value);
      if (n === undefined || !v.is(UsedSeed, n)) return void problem('badSeed', { max: LIMITS.seed.max });
      return n;
    }
    case 'steps':
      return integer(Steps, LIMITS.steps);
    case 'count':
      return integer(Count, LIMITS.count);
    case 'width':
      return integer(Width, LIMITS.side);
    case 'height':
      return integer(Height, LIMITS.side);
    case 'guidance':
      return number(Guidance, LIMITS.guidance);
    case 'cfg':
      return number(TrueCfgScale, LIMITS.trueCfgScale);
    case 'strength':
    case 'hires_strength':
      return number(Strength, LIMITS.strength);
    case 'hires':
      return number(HiresScale, LIMITS.hiresScale);
    case 'hires_steps':
      return integer(Steps, LIMITS.steps);
    case 'image_fit':
      return oneOf(IMAGE_FITS);
    case 'hires_upscale':
      return oneOf(HIRES_UPSCALERS);
    case 'vae_tiling':
      return oneOf(VAE_TILING);
    case 'image':
      return p.value;
    case 'negative':
      if (!v.is(NegativePrompt, p.value)) return void problem('tooLong', { max: LIMITS.prompt.maxChars });
      return p.value;
    case 'lora': {
      // Comma-separated or one per line; each `FILE[:STRENGTH]`.
      const loras: Lora[] = [];
      for (const item of p.value.split(',').map((x) => x.trim()).filter(Boolean)) {
        const l = splitLoraSpec(item);
        if (!l.path) {
          problems.push({ code: 'loraWithoutFile', severity: 'error', span: at, args: { key: 'lora', value: item } });
          continue;
        }
        if (l.badStrength !== undefined) {
          problems.push({ code: 'notNumber', severity: 'error', span: at, args: { key: 'LoRA strength', value: l.badStrength, ...LIMITS.loraStrength } });
          continue;
        }
        if (l.strength !== undefined && !v.is(LoraStrength, l.strength)) {
          problems.push({ code: 'outOfRange', severity: 'error', span: at, args: { key: 'LoRA strength', value: String(l.strength), ...LIMITS.loraStrength } });
          continue;
        }
        loras.push(l.strength === undefined ? { path: l.path } : { path: l.path, strength: l.strength });
      }
      return loras;
    }
    case 'out': {
      const issues = checkTemplate(p.value);
      if (issues.length) return void problem('badOut', templateArgs(issues[0]));
      return p.value;
    }
  }
  return undefined;
}

export function templateArgs(t: TemplateProblem): Record<string, string> {
  switch (t.kind) {
    case 'unknownField': return { reason: t.kind, field: t.field };
    case 'extension': return { reason: t.kind, ext: t.ext };
    case 'badCharacter': return { reason: t.kind, char: t.char };
    default: return { reason: t.kind };
  }
}

function collectParams(params: ParamLine[], problems: FluxProblem[]): BlockValues {
  const values: BlockValues = {};
  const seen = new Map<string, ParamLine>();
  for (const p of params) {
    if (!p.known) {
      const suggestion = suggestKey(p.key);
      problems.push({ code: 'unknownKey', severity: 'error', span: p.keySpan, args: suggestion ? { key: p.key, suggestion } : { key: p.key } });
      continue;
    }
    const field = FIELD[p.name as ParamKey];
    const v = parseValue(p, problems);
    if (REPEATABLE.has(p.name)) {
      const all = [...(values.loras ?? []), ...((v as Lora[] | undefined) ?? [])];
      if (all.length > LIMITS.loras.max) problems.push({ code: 'tooManyLoras', severity: 'error', span: p.valueSpan, args: { key: p.name, max: LIMITS.loras.max } });
      else if (all.length) values.loras = all;
      continue;
    }
    if (seen.has(p.name)) {
      problems.push({ code: 'duplicateKey', severity: 'warning', span: seen.get(p.name)!.keySpan, args: { key: p.name, line: p.line + 1 } });
    }
    seen.set(p.name, p);
    if (Array.isArray(field)) {
      const hires: Record<string, unknown> = { ...values.hires };
      if (v !== undefined) hires[field[1]] = v;
      else delete hires[field[1]];
      if (Object.keys(hires).length) values.hires = hires as Hires;
      else delete values.hires;
    } else if (v !== undefined) (values as Record<string, unknown>)[field] = v;
    else delete (values as Record<string, unknown>)[field];
  }
  return values;
}

export function parseFlux(text: string): FluxDocument {
  const src = typeof text === 'string' ? text : String(text ?? '');
  const rawLines = src.split(/\r\n|\r|\n/);
  const problems: FluxProblem[] = [];
  const blocks: FluxBlock[] = [];
  const defaults: FluxDefaults = { spans: [], params: [], values: {} };

  // Paragraphs: runs of lines not broken by blank lines or separators.
  let para: { line: number; raw: string; parsed: Line }[] = [];
  const flush = () => {
    const content = para.filter((l) => l.parsed.kind !== 'comment');
    if (!content.length) {
      para = [];
      return;
    }
    const first = para[0];
    const last = para[para.length - 1];
    const pspan: Span = { start: { line: first.line, character: 0 }, end: { line: last.line, character: last.raw.length } };
    const pieces: PromptPiece[] = [];
    const params: ParamLine[] = [];
    let prompt = '';
    for (const l of content) {
      const p = l.parsed;
      if (p.kind === 'prompt') {
        if (prompt) prompt += ' ';
        pieces.push({ line: l.line, character: p.character, offset: prompt.length, text: p.text });
        prompt += p.text;
      } else if (p.kind === 'param') {
        const lower = p.key.toLowerCase().replace(/\s+/g, ' ');
        const name = KEY_ALIASES.get(lower) ?? lower;
        params.push({
          key: p.key,
          name,
          known: (PARAM_KEYS as readonly string[]).includes(name),
          value: p.value,
          line: l.line,
          keySpan: span(l.line, p.keyStart, p.keyStart + p.key.length),
          valueSpan: span(l.line, p.valueStart, p.valueStart + p.value.length),
        });
      }
    }
    if (pieces.length) {
      blocks.push({ index: blocks.length, span: pspan, prompt, pieces, params, values: collectParams(params, problems) });
    } else if (!blocks.length) {
      defaults.spans.push(pspan);
      defaults.params.push(...params);
    } else {
      problems.push({ code: 'orphanParams', severity: 'warning', span: pspan, args: {} });
    }
    para = [];
  };
  rawLines.forEach((raw, line) => {
    const parsed = classify(raw);
    if (parsed.kind === 'blank' || parsed.kind === 'separator') flush();
    else para.push({ line, raw, parsed });
  });
  flush();
  defaults.values = collectParams(defaults.params, problems);
  // A negative prompt alone changes nothing (true CFG is off at cfg 1), as in diffusers: say so.
  for (const b of blocks) {
    const v = { ...defaults.values, ...b.values };
    const line = [...b.params, ...defaults.params].find((p) => p.name === 'negative');
    if (v.negativePrompt !== undefined && !((v.trueCfgScale ?? 1) > 1) && line) problems.push({ code: 'negativeWithoutCfg', severity: 'warning', span: line.keySpan, args: { key: 'negative' } });
    // Image-to-image settings with no input image change nothing (the CLI refuses them): say so.
    if (v.image === undefined) {
      const set = b.params.filter((x) => (x.name === 'strength' && b.values.strength !== undefined) || (x.name === 'image_fit' && b.values.imageFit !== undefined));
      for (const p of set) problems.push({ code: 'imageOptionWithoutImage', severity: 'warning', span: p.keySpan, args: { key: p.name } });
    }
    // An A1111 LoRA tag would reach the model as words (a run refuses it: params.ts resolveParams).
    const tag = LORA_TAG.exec(b.prompt);
    if (tag) {
      const start = promptPosition(b, tag.index);
      const end = promptPosition(b, tag.index + tag[0].length);
      const spec = `${tag[1].trim()}.safetensors:${tag[2]?.trim() || 1}`;
      problems.push({ code: 'loraTagInPrompt', severity: 'error', span: start.line === end.line ? { start, end } : { start, end: start }, args: { key: 'lora', value: tag[0], suggestion: spec } });
    } else {
      const refused = refusedTogether(b, v);
      if (refused) problems.push(refused);
    }
  }
  problems.sort((a, b) => a.span.start.line - b.span.start.line || a.span.start.character - b.span.start.character);
  return { blocks, defaults, problems, lineCount: rawLines.length };
}

/**
 * Values each fine alone that a run refuses together (params.ts resolveParams' cross-field checks,
 * e.g. a hires pass past the largest side, or too small to add a patch): marked while typing, on
 * the line most likely to change. With an input image and no size the run's size is the image's,
 * unknown here: not checked.
 */
function refusedTogether(b: FluxBlock, values: BlockValues): FluxProblem | undefined {
  // Only a hires pass or an input image brings cross-field checks; the rest would only cost typing
  // time in a file of thousands of prompts.
  if (values.hires === undefined && values.image === undefined) return undefined;
  if (values.image !== undefined && (values.width === undefined || values.height === undefined)) return undefined;
  try {
    // The schema drops what is not a generation parameter (count, out); 'random' is no seed to check.
    resolveParams({ ...values, seed: undefined, prompt: b.prompt });
    return undefined;
  } catch (e) {
    const message = (e as Error).message;
    // The line of a value the check is about, where this block sets it; else the block's prompt. Never
    // a line of the file's defaults: an error there refuses every block (fluxFile/index.ts blockErrors).
    const keys = /^(?:a hires pass|hires strength)/.test(message) ? ['hires', 'hires_strength', 'hires_steps', 'width', 'height'] : /^strength/.test(message) ? ['strength', 'steps'] : [];
    const at = keys.map((k) => b.params.find((p) => p.name === k)).find((p) => p);
    const first = b.pieces[0];
    const span = at ? at.keySpan : { start: { line: first.line, character: first.character }, end: { line: first.line, character: first.character + first.text.length } };
    return { code: 'refusedTogether', severity: 'error', span, args: { value: message } };
  }
}

/** Where an offset into `block.prompt` is in the document (the end of the prompt for offsets past it). */
export function promptPosition(block: FluxBlock, offset: number): Position {
  let piece = block.pieces[0];
  for (const p of block.pieces) {
    if (p.offset <= offset) piece = p;
    else break;
  }
  const within = Math.max(0, Math.min(offset - piece.offset, piece.text.length));
  return { line: piece.line, character: piece.character + within };
}

/** The spans covering `block.prompt` from `offset` to its end, one per line. */
export function promptSpansFrom(block: FluxBlock, offset: number): Span[] {
  const out: Span[] = [];
  for (const p of block.pieces) {
    const end = p.offset + p.text.length;
    if (end <= offset) continue;
    const from = Math.max(0, offset - p.offset);
    out.push(span(p.line, p.character + from, p.character + p.text.length));
  }
  return out;
}

/** The block whose paragraph contains `line`, if any. */
export function blockAtLine(doc: FluxDocument, line: number): FluxBlock | undefined {
  return doc.blocks.find((b) => b.span.start.line <= line && line <= b.span.end.line);
}

/** Block values over file defaults over `base` (the settings' defaults). */
export function effectiveValues<T extends BlockValues>(doc: FluxDocument, block: FluxBlock, base: T): T & BlockValues {
  const out = { ...base, ...doc.defaults.values, ...block.values };
  // The hires pass's keys combine field by field (`hires: 2` at the top, `hires_steps: 10` in a block).
  const hires = { ...base.hires, ...doc.defaults.values.hires, ...block.values.hires };
  return Object.keys(hires).length ? { ...out, hires } : out;
}
