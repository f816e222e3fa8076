// The `majicflux` command line: a small dispatcher over subcommands, each parsing its own
// arguments with util.parseArgs. Add a command by writing a Subcommand and listing it in COMMANDS.
// Exit codes: 0 success, 1 failure (bad file, incomplete model), 2 usage error.

import '../system/privacy'; // first: telemetry off before onnxruntime loads
import * as path from 'node:path';
import { KIND_NAMES, LayoutError } from '../formats/layouts/detect';
import { ComponentReport, inspectPath, InspectReport } from '../formats/layouts/inspect';
import { SafetensorsError } from '../formats/safetensors';
import { formatBytes } from '../../shared/bytes';
import { closest } from '../../shared/didYouMean';
import { UserError } from '../../shared/api';
import { demoModelNamed } from '../models/demo';
import { VERSION } from '../pipeline/pipeline';
import { generateCommand } from './generate';
import { serveSubcommand } from './serve';
import { modelsCommand } from './models';
import { CliOutput, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, parseCommandArgs, rejectEmptyPaths, Subcommand, UsageError } from './common';

export type { CliOutput, Subcommand };
export { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, parseCommandArgs, UsageError };

// ─── inspect ────────────────────────────────────────────────────────────────────────────────────

const INSPECT_USAGE = `Usage: majicflux inspect <path> [--json]

Shows what a FLUX.1 model folder or checkpoint holds, from the file headers only (fast, even for
12 GB files): the layout of each component, its architecture, dtypes, parameter count and size.

<path> can be:
  a model folder        FLUX.1-dev style: transformer/ or a single DiT file, ae.safetensors or
                        vae/, text_encoder/, text_encoder_2/, tokenizer/, tokenizer_2/
  a component folder    e.g. transformer/, text_encoder_2/ (sharded checkpoints included)
  a .safetensors file   e.g. flux1-dev.safetensors, ae.safetensors
  a .safetensors.index.json
  demo                  the bundled demo model (random weights), written into the cache on first use

Options:
  --json      print one JSON object (fields: docs/CLI-inspect.md)
  -h, --help  show this help

Exit status: 0 when the path is a complete model or a readable checkpoint; 1 when it is broken,
not a FLUX.1 model, or a model folder with missing pieces (the report still prints); 2 for bad
arguments.`;

export const inspectCommand: Subcommand = {
  name: 'inspect',
  summary: 'show what a FLUX.1 model folder or checkpoint holds',
  usage: INSPECT_USAGE,
  run(args, io) {
    const { values, positionals } = parseCommandArgs(args, { json: { type: 'boolean' } });
    if (values.help) {
      io.out(INSPECT_USAGE + '\n');
      return EXIT_OK;
    }
    if (positionals.length !== 1) throw new UsageError(positionals.length ? `inspect takes one path, got ${positionals.length}` : 'inspect needs a path');
    rejectEmptyPaths({ 'the path': positionals[0] });
    let report: InspectReport;
    try {
      report = inspectPath(demoModelNamed(positionals[0])?.dir ?? positionals[0]);
    } catch (e) {
      if (e instanceof LayoutError || e instanceof SafetensorsError) {
        io.err(`majicflux inspect: ${e.message}\n`);
        return EXIT_FAILURE;
      }
      throw e;
    }
    const demo = !values.json && demoModelNamed(positionals[0]) ? 'The bundled demo model (random weights: its images are coloured noise), written into the cache:\n' : '';
    io.out(values.json ? JSON.stringify(report, null, 2) + '\n' : demo + formatReport(report));
    if (report.missing.length) {
      io.err(`majicflux inspect: ${report.path}: incomplete model folder:\n${report.missing.map((m) => `  - ${m}`).join('\n')}\n`);
      return EXIT_FAILURE;
    }
    return EXIT_OK;
  },
};

function formatReport(r: InspectReport): string {
  const lines: string[] = [];
  const rel = (p: string) => (r.type === 'model' ? path.relative(r.path, p) || '.' : p);
  if (r.type === 'model') {
    lines.push(`${r.path}: FLUX.1 model folder${r.complete ? '' : ' (incomplete)'}`);
  } else {
    lines.push(`${r.path}: checkpoint with ${r.components.length} component${r.components.length > 1 ? 's' : ''}`);
  }
  for (const c of r.components) {
    lines.push('');
    lines.push(`${KIND_NAMES[c.kind]}${c.used === undefined ? '' : c.used ? '  [used]' : '  [not used]'}`);
    lines.push(`  layout:  ${c.layout}: ${c.description}`);
    const isFolder = !/\.(safetensors|json)$/.test(c.path);
    if (r.type === 'model') lines.push(`  path:    ${rel(c.path)}${isFolder ? '/' : ''}${c.files.length > 1 ? ` (${c.files.length} files)` : ''}`);
    if (c.prefix) lines.push(`  prefix:  ${c.prefix}`);
    lines.push(`  config:  ${c.configFile ? rel(c.configFile) : 'from tensor shapes and FLUX.1 defaults'}`);
    for (const a of architectureLines(c)) lines.push(`  ${a}`);
    lines.push(`  size:    ${fmtCount(c.stats.parameters)} parameters, ${formatBytes(c.stats.bytes)} in ${c.stats.tensors} tensors`);
    lines.push(`  dtypes:  ${Object.entries(c.stats.dtypes).map(([d, s]) => `${d} ${s.tensors} tensors / ${fmtCount(s.parameters)} params / ${formatBytes(s.bytes)}`).join('; ')}`);
    for (const n of c.notes) lines.push(`  note:    ${n}`);
  }
  lines.push('');
  if (r.type === 'model') {
    lines.push(`Tokenizers: CLIP ${r.tokenizers?.clip ? rel(r.tokenizers.clip) + '/' : 'missing'}, T5 ${r.tokenizers?.t5 ? rel(r.tokenizers.t5) + '/' : 'missing'}`);
    lines.push(`Scheduler:  ${r.scheduler ? rel(r.scheduler) + '/' : 'none (FLUX.1 defaults apply)'}`);
    lines.push(`Total of the used components: ${fmtCount(r.totals.parameters)} parameters, ${formatBytes(r.totals.bytes)}`);
    for (const m of r.missing) lines.push(`Missing: ${m}`);
    for (const p of r.problems) lines.push(`Problem: ${p}`);
  } else if (r.components.length > 1) {
    lines.push(`Total: ${fmtCount(r.totals.parameters)} parameters, ${formatBytes(r.totals.bytes)}`);
  }
  return lines.join('\n').replace(/\n+$/, '') + '\n';
}

function architectureLines(c: ComponentReport): string[] {
  const a = c.architecture as Record<string, unknown>;
  const list = (v: unknown) => `[${(v as number[]).join(', ')}]`;
  const yes = (v: unknown) => (v ? 'yes' : 'no');
  switch (c.kind) {
    case 'dit':
      return [
        `arch:    hidden ${a.hidden_size}, ${a.num_heads} heads × ${a.head_dim}, ${a.depth} double + ${a.depth_single_blocks} single blocks, MLP ${a.mlp_hidden_dim} (ratio ${a.mlp_ratio})`,
        `         RoPE axes ${list(a.axes_dim)}, theta ${a.theta}; channels in ${a.in_channels} / out ${a.out_channels}; text context ${a.context_in_dim}, pooled vector ${a.vec_in_dim}`,
        `         guidance embedding ${yes(a.guidance_embed)}, qkv bias ${yes(a.qkv_bias)}`,
      ];
    case 'vae':
      return [
        `arch:    ch ${a.ch}, ch_mult ${list(a.ch_mult)}, ${a.num_res_blocks} res blocks, ${a.z_channels} latent channels, ${a.downsample_factor}× downsampling`,
        `         image channels in ${a.in_channels} / out ${a.out_ch}; latent scale ${a.scale_factor}, shift ${a.shift_factor}; encoder ${yes(a.has_encoder)}`,
      ];
    case 'clip':
      return [`arch:    ${a.num_hidden_layers} layers, width ${a.hidden_size}, ${a.num_attention_heads} heads × ${a.head_dim}, MLP ${a.intermediate_size} (${a.hidden_act}), vocab ${a.vocab_size}, ${a.max_position_embeddings} positions`];
    case 't5':
      return [`arch:    ${a.num_layers} layers, d_model ${a.d_model}, ${a.num_heads} heads × ${a.d_kv}, d_ff ${a.d_ff} (${a.is_gated_act ? 'gated ' : ''}${a.dense_act_fn}), vocab ${a.vocab_size}, ${a.relative_attention_num_buckets} position buckets`];
  }
}

/** 11901408320 → "11.90 B (11,901,408,320)" */
export function fmtCount(n: number): string {
  const units: Array<[number, string]> = [[1e9, 'B'], [1e6, 'M'], [1e3, 'K']];
  const [scale, unit] = units.find(([s]) => n >= s) ?? [1, ''];
  const exact = n.toLocaleString('en-US');
  return unit ? `${(n / scale).toFixed(2)} ${unit} (${exact})` : exact;
}

// ─── dispatcher ─────────────────────────────────────────────────────────────────────────────────

export const COMMANDS: Subcommand[] = [generateCommand, inspectCommand, modelsCommand, serveSubcommand];

function topUsage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'Usage: majicflux <command> [options]',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Run "majicflux <command> --help" for a command\'s options; "majicflux --version" for the version.',
  ].join('\n') + '\n';
}

export async function main(argv: string[], io: CliOutput = { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t), errIsTTY: process.stderr.isTTY === true }): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help') {
    (name === undefined ? io.err : io.out)(topUsage());
    return name === undefined ? EXIT_USAGE : EXIT_OK;
  }
  if (name === '--version' || name === '-v' || name === 'version') {
    io.out(`majicflux ${VERSION}\n`);
    return EXIT_OK;
  }
  const unknown = (typed: string) => {
    const guess = closest(typed, COMMANDS.map((c) => c.name));
    io.err(`majicflux: unknown command "${typed}"${guess ? `; did you mean ${guess}?` : ''}\n\n${topUsage()}`);
    return EXIT_USAGE;
  };
  if (name === 'help') {
    const cmd = COMMANDS.find((c) => c.name === rest[0]);
    // "help genrate" showed the command list as if asked for it, exit 0.
    if (!cmd && rest[0] !== undefined) return unknown(rest[0]);
    io.out(cmd ? cmd.usage + '\n' : topUsage());
    return EXIT_OK;
  }
  const cmd = COMMANDS.find((c) => c.name === name);
  if (!cmd) return unknown(name);
  try {
    return await cmd.run(rest, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`majicflux ${cmd.name}: ${e.message}\nRun "majicflux ${cmd.name} --help" for usage.\n`);
      return EXIT_USAGE;
    }
    // Errors about the user's input or files say what to do; anything else is a bug: show the stack.
    const expected = e instanceof UserError || e instanceof LayoutError || e instanceof SafetensorsError;
    io.err(`majicflux ${cmd.name}: ${expected ? (e as Error).message : e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return EXIT_FAILURE;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      process.stderr.write(`majicflux: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exitCode = EXIT_FAILURE;
    },
  );
}
