// Issue 14's acceptance test: every surface that states or checks a generation's parameters uses
// params.ts's numbers. A surface is one entry below: what it states (compared with what params.ts
// says it should state) and/or what it accepts (walked at each limit and one step past it).

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseFlux } from '../../src/extension/fluxFile/parser';
import { initMessage, PANEL_DEFAULTS, validateFromWebview } from '../../src/extension/panel/protocol';
import { PANEL_SCRIPTS } from '../../src/extension/panel/scripts';
import { validateSettings } from '../../src/extension/settings';
import { generateCommand, parseGenerateParams } from '../../src/inference/cli/generate';
import { checkParameters } from '../../src/inference/formats/infotext';
import { isValidationError, validateRequest } from '../../src/shared/protocol';
import { DEFAULTS, LIMITS, RANDOM_SEED, resolveParams } from '../../src/shared/params';

const ROOT = path.join(__dirname, '..', '..');

type Field = 'steps' | 'width' | 'height' | 'guidance' | 'seed' | 'count' | 't5MaxLength' | 'shift';

/** Each field's accepted range and the step past its ends that must be refused. */
const RANGES: Record<Field, { min: number; max: number; past: number }> = {
  steps: { ...LIMITS.steps, past: 1 },
  width: { min: LIMITS.side.min, max: LIMITS.side.max, past: LIMITS.side.multiple },
  height: { min: LIMITS.side.min, max: LIMITS.side.max, past: LIMITS.side.multiple },
  guidance: { ...LIMITS.guidance, past: 1 },
  // -1 is the random marker everywhere, so the walk below the range starts one further down.
  seed: { min: RANDOM_SEED, max: LIMITS.seed.max, past: 1 },
  count: { ...LIMITS.count, past: 1 },
  t5MaxLength: { ...LIMITS.t5MaxLength, past: 1 },
  shift: { ...LIMITS.shift, past: 0.05 },
};
const GENERATION_FIELDS: Field[] = ['steps', 'width', 'height', 'guidance', 'seed', 't5MaxLength', 'shift'];
/** A CLI flag's name for a field. */
const flagOf = (field: Field) => (field === 't5MaxLength' ? '--t5-max-length' : `--${field}`);

interface Surface {
  name: string;
  /** What the surface states about the limits, and what params.ts says it should state. */
  states?: () => { actual: unknown; expected: unknown };
  /** The fields it checks, and whether it takes `value` for `field` (everything else at a good value). */
  fields?: Field[];
  accepts?: (field: Field, value: number) => boolean;
}

const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
// `configuration` is one object or a list of sections.
const setting = (key: string) => [pkg.contributes.configuration].flat().map((c: { properties: Record<string, Record<string, unknown>> }) => c.properties[`majicflux.${key}`]).find(Boolean);
const GOOD = { prompt: 'a lighthouse', seed: 42, steps: 4, width: 512, height: 768, guidance: 3.5 };

const SURFACES: Surface[] = [
  {
    name: "package.json's majicflux.defaults.* settings",
    states: () => {
      const s = (k: string, extra: string[] = []) => {
        const p = setting(`defaults.${k}`);
        return Object.fromEntries(['minimum', 'maximum', 'default', ...extra].map((f) => [f, p?.[f]]));
      };
      const side = (d: number) => ({ minimum: LIMITS.side.min, maximum: LIMITS.side.max, default: d, multipleOf: LIMITS.side.multiple });
      return {
        actual: { steps: s('steps'), width: s('width', ['multipleOf']), height: s('height', ['multipleOf']), guidance: s('guidance'), seed: s('seed') },
        expected: {
          steps: { minimum: LIMITS.steps.min, maximum: LIMITS.steps.max, default: DEFAULTS.steps },
          width: side(DEFAULTS.width),
          height: side(DEFAULTS.height),
          guidance: { minimum: LIMITS.guidance.min, maximum: LIMITS.guidance.max, default: DEFAULTS.guidance },
          seed: { minimum: RANDOM_SEED, maximum: LIMITS.seed.max, default: DEFAULTS.seed },
        },
      };
    },
  },
  {
    name: 'settings validation (majicflux.defaults.*)',
    fields: ['steps', 'width', 'height', 'guidance', 'seed'],
    accepts: (field, value) => {
      const { settings, problems } = validateSettings((k) => (k === `defaults.${field}` ? value : undefined));
      return problems.length === 0 && settings.defaults[field as 'steps'] === value;
    },
  },
  {
    name: "the panel's init message (the limits the webview's form uses)",
    states: () => ({
      // The dropped-file limit is no generation parameter (droppedImages.ts owns it).
      actual: (({ droppedImage: _, ...l }) => l)(initMessage({ defaults: { ...GOOD, prompt: '', negativePrompt: '', trueCfgScale: 1, ...PANEL_DEFAULTS }, history: [], demo: false, trusted: true, model: 'demo' }).limits),
      expected: {
        steps: LIMITS.steps,
        side: LIMITS.side,
        guidance: LIMITS.guidance,
        seed: LIMITS.seed,
        trueCfgScale: LIMITS.trueCfgScale,
        loraStrength: LIMITS.loraStrength,
        loras: LIMITS.loras,
        strength: LIMITS.strength,
        hiresScale: LIMITS.hiresScale,
      },
    }),
  },
  {
    name: "the panel's validator (Generate from the webview)",
    fields: ['steps', 'width', 'height', 'guidance', 'seed'],
    accepts: (field, value) => validateFromWebview({ type: 'generate', params: { ...GOOD, [field]: value } }) !== undefined,
  },
  {
    name: "the CLI's generate flags",
    fields: GENERATION_FIELDS,
    accepts: (field, value) => {
      try {
        return parseGenerateParams(['a lighthouse', flagOf(field), String(value)])[field as 'steps'] === value;
      } catch {
        return false;
      }
    },
  },
  {
    name: "the CLI's generate help",
    states: () => {
      const range = (help: string, flag: string) => /^\s*(--\S+)[^,]*, (\S+) to (\S+), default (\S+)/m.exec(help.split('\n').find((l) => l.trimStart().startsWith(`${flag} `)) ?? '')?.slice(2).map(Number);
      return {
        actual: { steps: range(generateCommand.usage, '--steps'), guidance: range(generateCommand.usage, '--guidance'), t5MaxLength: range(generateCommand.usage, '--t5-max-length') },
        expected: {
          steps: [LIMITS.steps.min, LIMITS.steps.max, DEFAULTS.steps],
          guidance: [LIMITS.guidance.min, LIMITS.guidance.max, DEFAULTS.guidance],
          t5MaxLength: [LIMITS.t5MaxLength.min, LIMITS.t5MaxLength.max, DEFAULTS.t5MaxLength],
        },
      };
    },
  },
  {
    name: "the protocol's generate request (server and remote clients)",
    fields: GENERATION_FIELDS,
    accepts: (field, value) => {
      const r = validateRequest({ id: 1, type: 'generate', job: { params: { prompt: 'a lighthouse', [field]: value }, output: '/o/a.png' } });
      return !isValidationError(r) && r.type === 'generate' && r.job.params[field as 'steps'] === value;
    },
  },
  {
    name: 'the pipeline (resolveParams, called by FluxPipeline.generate before anything loads)',
    fields: GENERATION_FIELDS,
    accepts: (field, value) => {
      try {
        return resolveParams({ prompt: 'a lighthouse', [field]: value })[field as 'steps'] === value;
      } catch {
        return false;
      }
    },
  },
  {
    name: "a PNG's parameters read back (Re-run from image)",
    fields: ['steps', 'width', 'height', 'guidance'],
    accepts: (field, value) => {
      const { params, dropped } = checkParameters({ prompt: 'a lighthouse', [field]: value });
      return dropped.length === 0 && (params as Record<string, unknown>)[field] === value;
    },
  },
  {
    name: 'the .flux parser',
    fields: ['steps', 'width', 'height', 'guidance', 'seed', 'count'],
    accepts: (field, value) => {
      const doc = parseFlux(`a lighthouse\n${field}: ${value}\n`);
      const got = doc.blocks[0].values[field as keyof typeof doc.blocks[0]['values']];
      return doc.problems.length === 0 && (got === value || (value === RANDOM_SEED && got === 'random'));
    },
  },
];

describe("params-limits: every surface uses params.ts's numbers", () => {
  for (const s of SURFACES) {
    if (s.states) {
      it(`${s.name} states params.ts's limits and defaults`, () => {
        const { actual, expected } = s.states!();
        assert.deepEqual(actual, expected);
      });
    }
    if (s.accepts) {
      it(`${s.name} accepts each limit and refuses one step past it`, () => {
        for (const field of s.fields!) {
          const { min, max, past } = RANGES[field];
          for (const ok of [min, max]) assert.equal(s.accepts!(field, ok), true, `${field} ${ok} refused`);
          for (const bad of [min - past, max + past, max + 1]) assert.equal(s.accepts!(field, bad), false, `${field} ${bad} accepted`);
        }
      });
    }
  }

  it('no limit params.ts owns is written into the panel\'s HTML or script', () => {
    const html = fs.readFileSync(path.join(ROOT, 'src', 'extension', 'panel', 'html.ts'), 'utf8');
    const scripts = fs.readdirSync(path.join(ROOT, 'media', 'panel'));
    assert.ok(scripts.length >= PANEL_SCRIPTS.length);
    const script = scripts.map((f) => fs.readFileSync(path.join(ROOT, 'media', 'panel', f), 'utf8')).join('\n');
    assert.doesNotMatch(html, /\b(min|max)="/);
    for (const n of [LIMITS.side.min, LIMITS.side.max, LIMITS.steps.max, 4096]) assert.doesNotMatch(script, new RegExp(`\\b${n}\\b`), `media/panel/ has ${n}`);
  });
});

// Issue 13's numbers, on the surfaces that carry them (the panel's are the UI slice's).
type Field13 = 'trueCfgScale' | 'strength' | 'hiresScale' | 'hiresStrength' | 'hiresSteps' | 'loraStrength';
const RANGES13: Record<Field13, { min: number; max: number; past: number }> = {
  trueCfgScale: { ...LIMITS.trueCfgScale, past: 0.5 },
  strength: { ...LIMITS.strength, past: 0.01 },
  hiresScale: { ...LIMITS.hiresScale, past: 0.05 },
  hiresStrength: { ...LIMITS.strength, past: 0.01 },
  hiresSteps: { ...LIMITS.steps, past: 1 },
  loraStrength: { ...LIMITS.loraStrength, past: 1 },
};
const INPUT_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'params-limits-'));
const IMAGE = path.join(INPUT_DIR, 'in.png');
const LORA = path.join(INPUT_DIR, 'style.safetensors');
fs.writeFileSync(IMAGE, 'x');
fs.writeFileSync(LORA, 'x');
/** The generate parameters that set `field` to `v` (hires at 512² so ×4 fits the side limit). */
const params13 = (field: Field13, v: number): Record<string, unknown> => ({
  trueCfgScale: { trueCfgScale: v },
  strength: { image: IMAGE, strength: v },
  hiresScale: { width: 512, height: 512, hires: { scale: v } },
  hiresStrength: { hires: { scale: 1.5, strength: v } },
  hiresSteps: { hires: { scale: 1.5, steps: v } },
  loraStrength: { loras: [{ path: LORA, strength: v }] },
})[field];
/** The value of `field` in generate parameters (or resolved ones). */
const read13 = (field: Field13, p: { trueCfgScale?: number; strength?: number; hires?: { scale?: number; strength?: number; steps?: number }; loras?: { strength?: number }[] }) =>
  ({ trueCfgScale: p.trueCfgScale, strength: p.strength, hiresScale: p.hires?.scale, hiresStrength: p.hires?.strength, hiresSteps: p.hires?.steps, loraStrength: p.loras?.[0]?.strength })[field];
const attempt = (fn: () => boolean) => {
  try {
    return fn();
  } catch {
    return false;
  }
};
const ALL13 = Object.keys(RANGES13) as Field13[];

const SURFACES13: { name: string; accepts: (field: Field13, v: number) => boolean }[] = [
  {
    name: "the CLI's generate flags",
    accepts: (field, v) => {
      const flags: Record<Field13, string[]> = {
        trueCfgScale: ['--true-cfg', String(v)], strength: ['--image', IMAGE, '--strength', String(v)], hiresScale: ['--width', '512', '--height', '512', '--hires-scale', String(v)],
        hiresStrength: ['--hires-strength', String(v)], hiresSteps: ['--hires-steps', String(v)], loraStrength: ['--lora', `${LORA}:${v}`],
      };
      return attempt(() => read13(field, parseGenerateParams(['a lighthouse', ...flags[field]])) === v);
    },
  },
  {
    name: "the protocol's generate request",
    accepts: (field, v) => {
      const r = validateRequest({ id: 1, type: 'generate', job: { params: { prompt: 'a lighthouse', ...params13(field, v) }, output: '/o/a.png' } });
      return !isValidationError(r) && r.type === 'generate' && read13(field, r.job.params) === v;
    },
  },
  { name: 'the pipeline (resolveParams)', accepts: (field, v) => attempt(() => read13(field, resolveParams({ prompt: 'a lighthouse', ...params13(field, v) })) === v) },
  {
    name: "a PNG's parameters read back (Re-run from image)",
    accepts: (field, v) => {
      const raw: Record<Field13, Record<string, unknown>> = {
        trueCfgScale: { cfgScale: v }, strength: { image: 'in.png', strength: v }, hiresScale: { hires: { scale: v } }, hiresStrength: { hires: { scale: 2, strength: v } },
        hiresSteps: { hires: { scale: 2, steps: v } }, loraStrength: { loras: [{ name: 'style', strength: v }] },
      };
      const { params, dropped } = checkParameters({ prompt: 'a lighthouse', ...raw[field] });
      return dropped.length === 0 && read13(field, { ...params, trueCfgScale: params.cfgScale }) === v;
    },
  },
  {
    name: 'the .flux parser',
    accepts: (field, v) => {
      const line: Record<Field13, string> = {
        trueCfgScale: `cfg: ${v}`, strength: `image: in.png\nstrength: ${v}`, hiresScale: `width: 512\nheight: 512\nhires: ${v}`, hiresStrength: `hires_strength: ${v}`, hiresSteps: `hires_steps: ${v}`, loraStrength: `lora: style.safetensors:${v}`,
      };
      const doc = parseFlux(`a lighthouse\n${line[field]}\n`);
      const b = doc.blocks[0].values;
      return doc.problems.length === 0 && read13(field, b) === v;
    },
  },
];

describe("params-limits: issue 13's limits on the CLI, protocol, resolveParams, PNG read-back and .flux", () => {
  after(() => fs.rmSync(INPUT_DIR, { recursive: true, force: true }));
  for (const s of SURFACES13) {
    it(`${s.name} accepts each limit and refuses one step past it`, () => {
      for (const field of ALL13) {
        const { min, max, past } = RANGES13[field];
        for (const ok of [min, max]) assert.equal(s.accepts(field, ok), true, `${field} ${ok} refused`);
        for (const bad of [min - past, max + past, max + 1]) assert.equal(s.accepts(field, bad), false, `${field} ${bad} accepted`);
      }
    });
  }

  it("the CLI's generate help states the new ranges", () => {
    const range = (flag: string) => /^\s*(--\S+)[^,]*, (\S+) to (\S+), default (\S+)/m.exec(generateCommand.usage.split('\n').find((l) => l.trimStart().startsWith(`${flag} `)) ?? '')?.slice(2).map(Number);
    assert.deepEqual(
      { trueCfg: range('--true-cfg'), strength: range('--strength'), hiresScale: range('--hires-scale'), hiresStrength: range('--hires-strength') },
      {
        trueCfg: [LIMITS.trueCfgScale.min, LIMITS.trueCfgScale.max, DEFAULTS.trueCfgScale],
        strength: [LIMITS.strength.min, LIMITS.strength.max, DEFAULTS.strength],
        hiresScale: [LIMITS.hiresScale.min, LIMITS.hiresScale.max, DEFAULTS.hiresScale],
        hiresStrength: [LIMITS.strength.min, LIMITS.strength.max, DEFAULTS.hiresStrength],
      },
    );
  });
});

// Issue 13's parameters on the extension's surfaces: the panel's form and validator, the settings.
describe("params-limits: issue 13's parameters in the panel and the settings", () => {
  const generate = (extra: object) => validateFromWebview({ type: 'generate', params: { ...GOOD, ...extra } }) !== undefined;
  const walk = (name: string, { min, max }: { min: number; max: number }, past: number, accepts: (x: number) => boolean) => {
    for (const ok of [min, max]) assert.equal(accepts(ok), true, `${name} ${ok} refused`);
    for (const bad of [min - past, max + past]) assert.equal(accepts(bad), false, `${name} ${bad} accepted`);
  };

  it("the panel's validator accepts each limit and refuses one step past it", () => {
    walk('trueCfgScale', LIMITS.trueCfgScale, 0.1, (x) => generate({ trueCfgScale: x }));
    walk('LoRA strength', LIMITS.loraStrength, 0.1, (x) => generate({ loras: [{ path: '/l/a.safetensors', strength: x }] }));
    walk('strength', LIMITS.strength, 0.005, (x) => generate({ image: '/i/a.png', strength: x }));
    const hires = { scale: DEFAULTS.hiresScale, strength: DEFAULTS.hiresStrength, upscale: DEFAULTS.hiresUpscale };
    walk('hires scale', LIMITS.hiresScale, 0.01, (x) => generate({ hires: { ...hires, scale: x } }));
    walk('hires strength', LIMITS.strength, 0.005, (x) => generate({ hires: { ...hires, strength: x } }));
    walk('hires steps', LIMITS.steps, 1, (x) => generate({ hires: { ...hires, steps: x } }));
    const loras = (n: number) => Array.from({ length: n }, (_, i) => ({ path: `/l/${i}.safetensors`, strength: 1 }));
    assert.equal(generate({ loras: loras(LIMITS.loras.max) }), true);
    assert.equal(generate({ loras: loras(LIMITS.loras.max + 1) }), false);
    assert.equal(generate({ imageFit: 'crop' }) && generate({ imageFit: 'stretch' }), true);
    assert.equal(generate({ imageFit: 'fill' }), false);
    assert.equal(generate({ negativePrompt: 'x'.repeat(LIMITS.prompt.maxChars) }), true);
    assert.equal(generate({ negativePrompt: 'x'.repeat(LIMITS.prompt.maxChars + 1) }), false);
  });

  it("package.json's new settings state params.ts's limits and defaults", () => {
    const cfg = setting('defaults.trueCfgScale')!;
    assert.deepEqual([cfg.minimum, cfg.maximum, cfg.default], [LIMITS.trueCfgScale.min, LIMITS.trueCfgScale.max, DEFAULTS.trueCfgScale]);
    const neg = setting('defaults.negativePrompt')!;
    assert.deepEqual([neg.maxLength, neg.default], [LIMITS.prompt.maxChars, DEFAULTS.negativePrompt]);
    assert.equal(setting('loras.folder')?.default, '');
  });

  it('settings validation takes the true CFG scale within the limits and refuses past them', () => {
    walk('defaults.trueCfgScale', LIMITS.trueCfgScale, 0.1, (x) => {
      const { settings, problems } = validateSettings((k) => (k === 'defaults.trueCfgScale' ? x : undefined));
      return problems.length === 0 && settings.defaults.trueCfgScale === x;
    });
  });
});
