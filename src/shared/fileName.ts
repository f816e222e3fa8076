// Output file names from a template such as `{date}-{seed}-{slug}.png`, for the extension and the
// CLI alike (the same image gets the same name from either). Pure: no vscode, no fs.

import type { ImageMetadata } from './params';

export const TEMPLATE_FIELDS = ['date', 'time', 'seed', 'slug', 'steps', 'width', 'height', 'guidance', 'index', 'model'] as const;
export type TemplateField = (typeof TEMPLATE_FIELDS)[number];

export const DEFAULT_TEMPLATE = '{date}-{seed}-{slug}.png';

export type TemplateValues = Pick<ImageMetadata, 'seed' | 'prompt' | 'steps' | 'width' | 'height' | 'guidance' | 'model'> & {
  date: Date;
  /** 1-based number of the image within its run (`count: 4` gives 1..4). */
  index: number;
};

export type TemplateProblem =
  | { kind: 'empty' }
  | { kind: 'unknownField'; field: string }
  | { kind: 'unclosedBrace' }
  | { kind: 'absolute' }
  | { kind: 'parent' }
  | { kind: 'extension'; ext: string }
  | { kind: 'badCharacter'; char: string };

const PLACEHOLDER = /\{([^{}]*)\}/g;
// Characters no file system we ship to accepts in a name (Windows is the strictest).
// eslint-disable-next-line no-control-regex -- control characters are among the refused ones
const BAD_CHARS = /[<>:"|?*\u0000-\u001f]/;

/** Names Windows opens as a device whatever the folder or extension (CON.png is the console). */
const WINDOWS_DEVICE = /^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?$/i;

/**
 * Why Windows would not take `name` (one folder or file name) as written: a character it refuses,
 * a trailing dot or space (dropped, so another name is written), a device name; or undefined.
 */
export function windowsNameProblem(name: string): string | undefined {
  const bad = BAD_CHARS.exec(name);
  if (bad) return `${JSON.stringify(name)} holds ${JSON.stringify(bad[0])}, which Windows does not allow in a name`;
  if (/[. ]$/.test(name) && name !== '.' && name !== '..') return `${JSON.stringify(name)} ends with a dot or a space, which Windows drops from a name`;
  if (WINDOWS_DEVICE.test(name)) return `${JSON.stringify(name)} is a device name on Windows, not a file; choose another name`;
  return undefined;
}

/** Checks a template; returns the problems (none: usable). `/` makes sub-folders. */
export function checkTemplate(template: string): TemplateProblem[] {
  const problems: TemplateProblem[] = [];
  const t = template.trim();
  if (!t) return [{ kind: 'empty' }];
  for (const m of t.matchAll(PLACEHOLDER)) {
    if (!(TEMPLATE_FIELDS as readonly string[]).includes(m[1])) problems.push({ kind: 'unknownField', field: m[1] });
  }
  const literal = t.replace(PLACEHOLDER, 'x');
  if (/[{}]/.test(literal)) problems.push({ kind: 'unclosedBrace' });
  if (/^([/\\]|[A-Za-z]:)/.test(t)) problems.push({ kind: 'absolute' });
  if (t.split(/[/\\]/).some((seg) => seg === '..')) problems.push({ kind: 'parent' });
  const bad = BAD_CHARS.exec(literal);
  if (bad && !/^[A-Za-z]:/.test(t)) problems.push({ kind: 'badCharacter', char: bad[0] });
  const ext = /\.([^./\\{}]*)$/.exec(t);
  if (!ext) problems.push({ kind: 'extension', ext: '' });
  else if (ext[1].toLowerCase() !== 'png') problems.push({ kind: 'extension', ext: ext[1] });
  return problems;
}

/**
 * A short, file-name-safe summary of a prompt: lower-case words (any script: a Chinese prompt keeps
 * its characters), joined by `-`, at most `max` characters, cut at a word boundary. `image` when
 * nothing usable is left.
 */
export function slugify(prompt: string, max = 48): string {
  const words = prompt
    .normalize('NFKC')
    .toLowerCase()
    .split(/[^\p{L}\p{N}]+/u)
    .filter(Boolean);
  let out = '';
  for (const w of words) {
    const next = out ? `${out}-${w}` : w;
    if (next.length > max) {
      if (!out) out = [...w].slice(0, max).join('');
      break;
    }
    out = next;
  }
  return out || 'image';
}

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

export function formatDate(d: Date): string {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

export function formatTime(d: Date): string {
  return `${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}`;
}

function fieldValue(field: TemplateField, v: TemplateValues): string {
  switch (field) {
    case 'date': return formatDate(v.date);
    case 'time': return formatTime(v.date);
    case 'seed': return String(v.seed);
    case 'slug': return slugify(v.prompt);
    case 'steps': return String(v.steps);
    case 'width': return String(v.width);
    case 'height': return String(v.height);
    case 'guidance': return String(v.guidance);
    case 'index': return String(v.index);
    case 'model': return slugify(v.model, 32);
  }
}

/**
 * One path segment that every file system takes, Windows' included: its forbidden characters become
 * `_`, trailing dots and spaces go (Windows drops them silently), and a device name (CON, NUL,
 * COM1, …, with or without an extension) gets a `_` in front.
 */
function windowsSafe(segment: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are among the replaced ones
  const s = segment.replace(/[<>:"|?*\\{}\u0000-\u001f]/g, '_').trim().replace(/[. ]+$/, '');
  return /^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?$/i.test(s) ? `_${s}` : s;
}

/** `name` with `.png` added unless it ends so already, in any case (`X.PNG` stays as it is). */
export function withPngExtension(name: string): string {
  return /\.png$/i.test(name) ? name : `${name}.png`;
}

/**
 * Renders a template into a relative path with `/` separators. Unknown placeholders are left out,
 * characters a file system rejects become `_`, and `.png` is added when the template lacks it, so
 * any template gives a usable name (checkTemplate reports what was wrong).
 */
export function renderTemplate(template: string, values: TemplateValues): string {
  let t = template.trim() || '{date}-{seed}-{slug}.png';
  t = t.replace(/\\/g, '/').replace(/^([A-Za-z]:)?\/+/, '');
  const rendered = t.replace(PLACEHOLDER, (_, f: string) =>
    (TEMPLATE_FIELDS as readonly string[]).includes(f) ? fieldValue(f as TemplateField, values) : '',
  );
  const segments = rendered
    .split('/')
    .map(windowsSafe)
    .filter(Boolean); // '.' and '..' are left empty by windowsSafe
  if (!segments.length) segments.push('image');
  let last = segments[segments.length - 1];
  last = withPngExtension(last);
  if (last === '.png') last = 'image.png';
  segments[segments.length - 1] = last;
  return segments.join('/');
}
