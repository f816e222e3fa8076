import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';

const ROOT = path.join(__dirname, '..', '..');
const read = (f: string) => JSON.parse(fs.readFileSync(path.join(ROOT, f), 'utf8')) as Record<string, string>;

function walk(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []));
}

/** Every string passed to vscode.l10n.t (as `t('…')`) in src/extension. */
function sourceStrings(): Set<string> {
  const out = new Set<string>();
  for (const f of walk(path.join(ROOT, 'src', 'extension'))) {
    const src = fs.readFileSync(f, 'utf8');
    for (const m of src.matchAll(/\bt\(\s*'((?:[^'\\]|\\.)*)'/g)) out.add(JSON.parse(`"${m[1].replace(/\\'/g, "'").replace(/"/g, '\\"')}"`));
    assert.ok(!/\bt\(\s*`/.test(src), `${f}: l10n.t takes a plain string literal, not a template`);
  }
  return out;
}

const placeholders = (s: string) => [...s.matchAll(/\{(\d+)\}/g)].map((m) => m[1]).sort().join(',');

describe('extension: localization', () => {
  it('translates every l10n.t string into Simplified Chinese, with the same placeholders', () => {
    const strings = sourceStrings();
    const zh = read('l10n/bundle.l10n.zh-cn.json');
    const en = read('l10n/bundle.l10n.json');
    assert.ok(strings.size > 100);
    for (const s of strings) {
      assert.ok(s in zh, `missing zh-cn translation: ${s}`);
      assert.ok(s in en, `missing in bundle.l10n.json: ${s}`);
      assert.equal(placeholders(zh[s]), placeholders(s), `placeholders differ: ${s}`);
    }
    for (const k of Object.keys(zh)) assert.ok(strings.has(k), `stale zh-cn entry: ${k}`);
  });

  it('has English and Chinese for every %key% of the manifest', () => {
    const pkg = fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8');
    const keys = new Set([...pkg.matchAll(/"%([^%"]+)%"/g)].map((m) => m[1]));
    const en = read('package.nls.json');
    const zh = read('package.nls.zh-cn.json');
    assert.ok(keys.size > 20);
    for (const k of keys) {
      assert.ok(en[k], `package.nls.json lacks ${k}`);
      assert.ok(zh[k], `package.nls.zh-cn.json lacks ${k}`);
    }
    assert.deepEqual(Object.keys(zh).sort(), Object.keys(en).sort());
  });
});
