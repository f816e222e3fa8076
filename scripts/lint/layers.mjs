// An ESLint rule that keeps the layers apart (src/extension, src/inference, src/shared): which
// files and packages each part of the tree may load. The zones themselves are data, in
// eslint.config.mjs.
//
// Why not the core no-restricted-imports: it sees only import declarations and matches the
// specifier's text. The extension loads inference modules lazily, through require() and
// `typeof import()`, and the same file is '../inference/x' from one folder and '../../inference/x'
// from the next; so this rule reads every way a module is named and resolves relative ones to a
// path from the repository root before comparing.
import { builtinModules } from 'node:module';
import * as path from 'node:path';

/**
 * A zone: files whose repository path starts with one of `target` (a folder ends with '/'; a file
 * is named without its extension) may not load
 *   - `from`: files under these folders or these files, except those in `except`;
 *   - `packages`: these packages (any subpath of them too);
 *   - with `onlyPackages`: any package but node's built-ins and these.
 */
const zoneSchema = {
  type: 'object',
  properties: {
    target: { type: 'array', items: { type: 'string' }, minItems: 1 },
    from: { type: 'array', items: { type: 'string' } },
    except: { type: 'array', items: { type: 'string' } },
    packages: { type: 'array', items: { type: 'string' } },
    onlyPackages: { type: 'array', items: { type: 'string' } },
    message: { type: 'string' },
  },
  required: ['target', 'message'],
  additionalProperties: false,
};

const builtins = new Set(builtinModules);

/** 'src/a/b' is in 'src/a/' (a folder) and in 'src/a/b' (that file). */
function within(p, entries) {
  return (entries ?? []).some((e) => (e.endsWith('/') ? p.startsWith(e) : p === e));
}

/** A relative specifier as a path from the root, posix, extension dropped: both spellings of a module compare equal. */
function resolveRelative(root, file, spec) {
  const abs = path.resolve(path.dirname(file), spec);
  return path.relative(root, abs).split(path.sep).join('/').replace(/\.(ts|mts|cts|js|mjs|cjs)$/, '');
}

/** 'node:fs' and 'fs' → null (built-in); '@scope/pkg/sub' → '@scope/pkg'; 'pkg/sub' → 'pkg'. */
function packageName(spec) {
  if (spec.startsWith('node:') || builtins.has(spec) || builtins.has(spec.split('/')[0])) return null;
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

const boundaries = {
  meta: {
    type: 'problem',
    docs: { description: 'Which files and packages each layer of src/ may load (import, export from, import(), require(), import types)' },
    schema: { type: 'array', items: zoneSchema },
    messages: { denied: "'{{spec}}' is out of bounds here: {{message}}" },
  },
  create(context) {
    const root = context.cwd;
    const file = context.filename;
    const self = resolveRelative(root, file, path.basename(file));
    const zones = context.options.filter((z) => within(self, z.target));
    if (zones.length === 0) return {};

    function check(node, spec) {
      if (typeof spec !== 'string') return;
      for (const z of zones) {
        let denied;
        if (spec.startsWith('.')) {
          const p = resolveRelative(root, file, spec);
          denied = within(p, z.from) && !within(p, z.except);
        } else {
          const pkg = packageName(spec);
          denied = pkg !== null && ((z.packages ?? []).includes(pkg) || (z.onlyPackages !== undefined && !z.onlyPackages.includes(pkg)));
        }
        if (denied) {
          // one report per import, from the first zone that denies it
          context.report({ node, messageId: 'denied', data: { spec, message: z.message } });
          return;
        }
      }
    }

    return {
      ImportDeclaration: (n) => check(n.source, n.source.value),
      ExportNamedDeclaration: (n) => n.source && check(n.source, n.source.value),
      ExportAllDeclaration: (n) => check(n.source, n.source.value),
      ImportExpression: (n) => n.source.type === 'Literal' && check(n.source, n.source.value),
      CallExpression: (n) => {
        if (n.callee.type === 'Identifier' && n.callee.name === 'require' && n.arguments[0]?.type === 'Literal') check(n.arguments[0], n.arguments[0].value);
      },
      TSImportType: (n) => {
        const lit = n.source ?? n.argument?.literal;
        if (lit?.type === 'Literal') check(lit, lit.value);
      },
      TSExternalModuleReference: (n) => n.expression.type === 'Literal' && check(n.expression, n.expression.value),
    };
  },
};

export default { meta: { name: 'majicflux-layers' }, rules: { boundaries } };
