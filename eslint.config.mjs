// `npm run lint` (part of `npm test`): the layers' boundaries, then a few correctness rules that
// hold today. No stylistic rules: formatting is not what this checks.
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';
import layers from './scripts/lint/layers.mjs';

/**
 * The inference modules the extension host may load besides src/shared/. Each is pure: no native
 * module (onnxruntime-node, sharp), no process or GPU state, safe to evaluate inside VS Code's
 * extension host, and it loads nothing from src/inference/ outside this list (a zone below keeps
 * that true). Paths from the repository root, without the extension.
 */
export const EXTENSION_MAY_LOAD = [
  // .flux files' prompt-length check counts tokens with the model's own tokenizers
  // (@huggingface/tokenizers is plain JavaScript).
  'src/inference/formats/tokenizers',
  // "Rerun from image" reads the parameters a PNG carries: its text chunks (node:zlib only).
  'src/inference/formats/pngText',
  // The A1111 parameters text those chunks hold: string parsing, no imports.
  'src/inference/formats/infotext',
  // Its LoRA tags/hashes and the checks of the image-to-image, hires and true-CFG fields: string logic only.
  'src/inference/formats/infotextExtras',
  // SwarmUI's JSON parameters (sui_image_params): JSON and string logic only.
  'src/inference/formats/infotextSwarm',
  // ComfyUI's graph (its `prompt` chunk): JSON and string logic only.
  'src/inference/formats/infotextComfy',
  // InvokeAI's JSON (its invokeai_metadata chunk): JSON logic only.
  'src/inference/formats/infotextInvoke',
  // Reading a user-chosen file only when it is a regular file (not a FIFO or device): node:fs only.
  'src/inference/system/regularFile',
  // The prompt check's rules, shared by the .flux diagnostics and the CLI: string logic only.
  'src/inference/formats/promptCheck',
  // The never-overwrite naming rule (name-1.png, …) the extension and the server share: node:fs only.
  'src/inference/system/freeName',
  // Saving what a remote server sent back, atomically (temp file, fsync, link): node:fs and node:crypto only.
  'src/inference/system/atomicWrite',
  // Whether the process that left a temp file runs (process.kill with signal 0): no imports.
  'src/inference/system/pids',
  // Whether an output folder can be written, asked before a job (the CLI asks it too): node:fs only.
  'src/inference/system/writableFolder',
];

const NATIVE = ['onnxruntime-node', 'sharp'];

/** Zones for scripts/lint/layers.mjs: each says which files may not load what, and why. */
export const ZONES = [
  {
    target: ['src/inference/', 'src/shared/'],
    packages: ['vscode'],
    message: 'the inference server, the CLI and the shared contract run outside VS Code, where there is no vscode module.',
  },
  {
    target: ['src/inference/'],
    from: ['src/extension/'],
    message: 'the inference side never depends on the extension host; what both need belongs in src/shared/.',
  },
  {
    target: ['src/shared/'],
    from: ['src/inference/', 'src/extension/'],
    message: 'src/shared/ is the contract both sides import, so it imports neither side.',
  },
  {
    target: ['src/shared/'],
    onlyPackages: ['valibot'],
    message: 'src/shared/ may use node built-ins and valibot only: both sides load it, the extension host included.',
  },
  {
    target: ['src/extension/'],
    from: ['src/inference/'],
    except: EXTENSION_MAY_LOAD,
    message: 'the extension reaches the inference side through src/shared/ (and the server protocol); only the pure modules in eslint.config.mjs EXTENSION_MAY_LOAD are allowed.',
  },
  {
    target: EXTENSION_MAY_LOAD,
    from: ['src/inference/'],
    except: EXTENSION_MAY_LOAD,
    message: 'a module the extension may load must load only other such modules (EXTENSION_MAY_LOAD), or the extension would reach the rest through it.',
  },
  {
    target: ['src/extension/', 'src/shared/', ...EXTENSION_MAY_LOAD],
    packages: NATIVE,
    message: 'native modules load only in the inference server process, never in the extension host.',
  },
  {
    target: ['src/'],
    from: ['test/', 'scripts/'],
    message: 'production code never depends on tests or development scripts (they are not in the package).',
  },
];

export default defineConfig(
  { ignores: ['dist/**', 'out/**', 'dist-vsix/**', '.vscode-test/**', 'generated/**', 'bench-out/**', 'media/**', 'test/fixtures/**'] },
  {
    linterOptions: { reportUnusedDisableDirectives: 'error' },
  },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    plugins: { layers },
    rules: {
      'layers/boundaries': ['error', ...ZONES],
      // A name starting with _ is unused on purpose (a destructured field left out, a callback's
      // position held).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_', ignoreRestSiblings: true }],
      // A `let` read by a closure before its one assignment (a session and its connection's callbacks) stays `let`.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      // A require() is how a module is bundled yet evaluated only when first needed; tests, scripts
      // and the inference side use it freely, the extension host (below) only with a reason given.
      '@typescript-eslint/no-require-imports': 'off',
    },
  },
  {
    // Test doubles (a DOM element, a registry mutated field by field) are loosely typed on purpose.
    files: ['test/**'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    // In the extension host every module evaluated at start-up delays VS Code, so a require() is a
    // deliberate lazy load: each one says why next to an eslint-disable.
    files: ['src/extension/**/*.ts'],
    rules: { '@typescript-eslint/no-require-imports': 'error' },
  },
  {
    // Node's globals for the plain JavaScript build and test scripts (TypeScript checks the rest).
    files: ['**/*.mjs', '**/*.js', '**/*.cjs'],
    languageOptions: {
      globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', URL: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', fetch: 'readonly', require: 'readonly', module: 'writable', __dirname: 'readonly' },
    },
  },
  {
    // The functions this script hands to the browser (page.evaluate) run in VS Code's web page.
    files: ['scripts/vscode-test.mjs'],
    languageOptions: { globals: { window: 'readonly', document: 'readonly', MutationObserver: 'readonly', getComputedStyle: 'readonly' } },
  },
);
