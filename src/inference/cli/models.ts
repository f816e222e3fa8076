// `majicflux models list|check|download|known`: the same code as the extension's Find/Check/Download
// Models commands (models/service.ts), printed for a terminal or as JSON.

import * as path from 'node:path';
import { ModelSpec, UserError } from '../../shared/api';
import { formatBytes } from '../../shared/bytes';
import { checkOne, Height, Width } from '../../shared/params';
import { checkPartFlags, cliInvocation, CliOutput, decimal, EXIT_FAILURE, EXIT_OK, parseCommandArgs, rejectEmptyPaths, statIfAny, Subcommand, UsageError } from './common';
import { checkCanCreate } from './generateFiles';
import { DownloadError } from '../models/hubErrors';
import { mirrorsFromEnv } from '../models/hub';
import { DEMO_MODEL_NAME, demoModelNamed } from '../models/demo';
import { loadRegistry } from '../models/registry';
import { checkModels, defaultModelsDir, downloadModel, findModels, planModelDownload } from '../models/service';
import { commonProblem, HUB_NAMES, HubName, ModelCheckReport, PART_ROLES, PartCheck, PartRole, FoundModel, DownloadProgress } from '../../shared/models';

const USAGE = `Usage: majicflux models <command> [options]

Commands:
  known                      the models MajicFLUX knows how to download, with their sources
  list [--search DIR]...     models found on this machine: the folders given, ./models, the
                             MajicFLUX models folder, the Hugging Face and ModelScope caches
  check [DIR]                check a model's files (headers only; --verify reads them whole and
                             compares sha256) and say which weight format and memory mode fit
                             this machine; DIR "demo" is the bundled demo model
  download MODEL             fetch a model from Hugging Face or ModelScope (resumable, verified)

check options:
  --transformer FILE         single-file DiT (e.g. majicflus_v134.safetensors) instead of DIR's
  --vae PATH, --text-encoder PATH, --text-encoder-2 PATH   other parts given separately
  --verify                   read every file and compare its sha256 (slow: ~30 GB for FLUX.1-dev)
  --size WxH                 also estimate memory at this image size (default 512x512, 1024x1024)
  --gpu-memory GB            GPU memory to plan for (default: nvidia-smi, when present)
download options:
  --hub huggingface|modelscope   where from (default: the model's first source)
  --dest DIR                 models folder (default ${defaultModelsDir()}); files go to
                             DIR/<owner>/<repo>/…
  --parts LIST               only these parts: ${PART_ROLES.join(',')} (default: all)
  Hugging Face token for gated models (FLUX.1-dev): the HF_TOKEN environment variable, or
  --token-file FILE. Mirrors: HF_ENDPOINT (e.g. https://hf-mirror.com), MODELSCOPE_DOMAIN.
  Ctrl+C stops the download; running it again resumes.
common:
  --json                     print one JSON object
  -h, --help                 show this help

Exit status: 0 success (check: the model is complete and fits in some configuration); 1 a
missing or corrupt part, nothing fits, or a failed download; 2 bad arguments (an unknown model,
part or hub, an unreadable --token-file included).`;

export const modelsCommand: Subcommand = {
  name: 'models',
  summary: 'find, check and download models',
  usage: USAGE,
  async run(args, io) {
    const { values, positionals } = parseCommandArgs(args, {
      json: { type: 'boolean' },
      search: { type: 'string', multiple: true },
      transformer: { type: 'string' },
      vae: { type: 'string' },
      'text-encoder': { type: 'string' },
      'text-encoder-2': { type: 'string' },
      verify: { type: 'boolean' },
      size: { type: 'string' },
      'gpu-memory': { type: 'string' },
      hub: { type: 'string' },
      dest: { type: 'string' },
      parts: { type: 'string' },
      'token-file': { type: 'string' },
    });
    if (values.help) {
      io.out(USAGE + '\n');
      return EXIT_OK;
    }
    const [sub, ...rest] = positionals;
    const json = values.json === true;
    const gpuMemory = values['gpu-memory'] === undefined ? undefined : gib(values['gpu-memory'], '--gpu-memory');
    switch (sub) {
      case 'known': {
        const reg = loadRegistry();
        if (json) io.out(JSON.stringify(reg, null, 2) + '\n');
        else for (const m of reg.models) io.out(`${m.id.padEnd(16)} ${m.name}: ${m.description}\n${' '.repeat(17)}from ${m.sources.map((s) => `${s.hub} ${s.repo}${s.gated ? ' (gated: needs a token)' : ''}`).join(', ')}\n`);
        return EXIT_OK;
      }
      case 'list': {
        if (rest.length) throw new UsageError('list takes no positional arguments (use --search DIR)');
        // A folder that is not there is a typo, not "no models found".
        for (const dir of values.search ?? []) {
          rejectEmptyPaths({ '--search': dir });
          if (!statIfAny(dir)) throw new UsageError(`--search: ${path.resolve(dir)} does not exist`);
        }
        const { found, machine } = await findModels({ searchPaths: [...(values.search ?? []), path.resolve('models')], gpuMemory });
        if (json) io.out(JSON.stringify({ found, machine }, null, 2) + '\n');
        else io.out(found.length ? found.map(formatFound).join('\n') : `No FLUX.1 models found. Download one with: ${cliInvocation()} models download flux1-dev\n`);
        return EXIT_OK;
      }
      case 'check': {
        if (rest.length > 1) throw new UsageError('check takes one model folder');
        rejectEmptyPaths({ 'the model folder': rest[0], '--transformer': values.transformer, '--vae': values.vae, '--text-encoder': values['text-encoder'], '--text-encoder-2': values['text-encoder-2'] });
        if (rest[0] === DEMO_MODEL_NAME) checkPartFlags(rest[0], { '--transformer': values.transformer, '--vae': values.vae, '--text-encoder': values['text-encoder'], '--text-encoder-2': values['text-encoder-2'] });
        const demo = values.transformer ? undefined : demoModelNamed(rest[0]);
        const spec: ModelSpec = demo ?? {
          dir: rest[0] === undefined ? undefined : path.resolve(rest[0]),
          transformer: resolve(values.transformer),
          vae: resolve(values.vae),
          textEncoder: resolve(values['text-encoder']),
          textEncoder2: resolve(values['text-encoder-2']),
        };
        if (!spec.dir && !spec.transformer) throw new UsageError('check needs a model folder or --transformer FILE');
        const size = values.size === undefined ? undefined : parseSize(values.size);
        const report = await checkModels(stripUndefined(spec), { verify: values.verify, gpuMemory, ...size, downloadCommand: (id) => `${cliInvocation()} models download ${id}` });
        io.out(json ? JSON.stringify(report, null, 2) + '\n' : formatCheck(report));
        const fits = report.estimates.some((e) => e.fitsRam);
        return report.model.complete && fits ? EXIT_OK : EXIT_FAILURE;
      }
      case 'download':
        return download(rest, values, io, json);
      case undefined:
        throw new UsageError('models needs a command: known, list, check or download');
      default:
        throw new UsageError(`unknown models command "${sub}" (known, list, check, download)`);
    }
  },
};

async function download(rest: string[], values: Record<string, unknown>, io: CliOutput, json: boolean): Promise<number> {
  if (rest.length !== 1) throw new UsageError(`download takes one model id (${loadRegistry().models.map((m) => m.id).join(', ')})`);
  const hub = values.hub as string | undefined;
  if (hub !== undefined && !HUB_NAMES.includes(hub as HubName)) throw new UsageError(`--hub must be ${HUB_NAMES.join(' or ')}`);
  const parts = values.parts === undefined ? undefined : (values.parts as string).split(',').map((p) => p.trim());
  for (const p of parts ?? []) if (!PART_ROLES.includes(p as PartRole)) throw new UsageError(`--parts: unknown part "${p}" (${PART_ROLES.join(', ')})`);
  rejectEmptyPaths({ '--dest': values.dest as string | undefined });
  const dest = path.resolve((values.dest as string | undefined) ?? defaultModelsDir());
  // Before the hub is asked: a file in the way failed only when the first file was written.
  checkCanCreate('--dest', dest);
  const request = { model: rest[0], hub: hub as HubName | undefined, dest, parts: parts as PartRole[] | undefined, endpoints: mirrorsFromEnv() };
  // An unknown model, or a part or hub it does not have, is a bad argument like any other.
  const plan = asUsageError(() => planModelDownload(request));
  const token = await readToken(values['token-file'] as string | undefined);
  const controller = new AbortController();
  const onSigint = () => {
    io.err('\nstopping; run the same command again to resume\n');
    controller.abort();
  };
  process.once('SIGINT', onSigint);
  const tty = process.stderr.isTTY === true && !json;
  let lastLine = 0;
  try {
    const result = await downloadModel(
      { ...request, token },
      {
        signal: controller.signal,
        log: (level, message) => {
          if (level !== 'debug') io.err(`${tty ? '\r\x1b[K' : ''}${message}\n`);
        },
        onProgress: (p) => {
          // Before the first byte or the size is known there is nothing to report (and offline
          // there never will be: the error says why).
          if (p.bytes === 0 && p.total === 0) return;
          const now = Date.now();
          if (!tty && now - lastLine < 5000 && p.bytes < p.total) return;
          lastLine = now;
          io.err(`${tty ? '\r\x1b[K' : ''}${progressLine(p)}${tty ? '' : '\n'}`);
        },
      },
      plan,
    );
    if (tty) io.err('\n');
    if (json) io.out(JSON.stringify(result, null, 2) + '\n');
    else {
      const fetched = result.files.filter((f) => !f.skipped);
      io.out(`Downloaded ${fetched.length} file${fetched.length === 1 ? '' : 's'} (${result.files.length - fetched.length} already there), all sha256-verified.\n`);
      io.out(`Use it with: majicflux generate${specArgs(result.spec)} --prompt "…"\n`);
    }
    return EXIT_OK;
  } catch (err) {
    if (tty) io.err('\n');
    if (err instanceof DownloadError) {
      io.err(`majicflux models download: ${err.message}\n`);
      return EXIT_FAILURE;
    }
    throw err;
  } finally {
    process.off('SIGINT', onSigint);
  }
}

/** Hub base URLs from the environment, as the hubs' own clients read them (HF_ENDPOINT, MODELSCOPE_DOMAIN). */

async function readToken(file: string | undefined): Promise<string | undefined> {
  if (file !== undefined) {
    const fs = await import('node:fs/promises');
    try {
      return (await fs.readFile(file, 'utf8')).trim() || undefined;
    } catch (e) {
      throw new UsageError(`cannot read the token file ${file}: ${(e as Error).message}`);
    }
  }
  return process.env.HF_TOKEN || process.env.HUGGING_FACE_HUB_TOKEN || undefined;
}

function asUsageError<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof UserError) throw new UsageError(e.message);
    throw e;
  }
}

function specArgs(spec: ModelSpec): string {
  const q = (p: string) => (/\s/.test(p) ? JSON.stringify(p) : p);
  return `${spec.dir ? ` --model ${q(spec.dir)}` : ''}${spec.transformer ? ` --transformer ${q(spec.transformer)}` : ''}`;
}

function resolve(p: string | undefined): string | undefined {
  return p === undefined ? undefined : path.resolve(p);
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

function gib(text: string, flag: string): number {
  const v = decimal(text);
  if (!Number.isFinite(v) || v <= 0 || v > 4096) throw new UsageError(`${flag} must be a number of GB, e.g. 12`);
  return Math.round(v * 2 ** 30);
}

function parseSize(text: string): { width: number; height: number } {
  const m = /^(\d+)[x×](\d+)$/.exec(text.trim());
  if (!m) throw new UsageError(`--size must look like 1024x768, got "${text}"`);
  const width = checkOne(Width, Number(m[1]));
  const height = checkOne(Height, Number(m[2]));
  if ('message' in width) throw new UsageError(`--size: ${width.message}`);
  if ('message' in height) throw new UsageError(`--size: ${height.message}`);
  return { width: width.value, height: height.value };
}


export function progressLine(p: DownloadProgress): string {
  const done = p.total > 0 ? `${((100 * p.bytes) / p.total).toFixed(1)}% ${formatBytes(p.bytes)} of ${formatBytes(p.total)}` : `${formatBytes(p.bytes)} (total size not known yet)`;
  const speed = `${formatBytes(p.bytesPerSecond)}/s`;
  const eta = p.etaSeconds === undefined ? '' : `, ${formatDuration(p.etaSeconds)} left`;
  return `${done} · ${speed}${eta} · file ${Math.min(p.filesDone + 1, p.files)}/${p.files} ${p.file}`;
}

export function formatDuration(s: number): string {
  if (s < 60) return `${Math.ceil(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

const STATUS_MARK: Record<PartCheck['status'], string> = { present: 'ok', missing: 'MISSING', 'wrong-dtype': 'WRONG DTYPE', corrupt: 'CORRUPT' };

function formatParts(parts: PartCheck[], indent = '  '): string[] {
  return parts.map((p) => {
    const dtypes = p.dtypes ? ` ${Object.keys(p.dtypes).join('/')}` : '';
    const size = p.bytes ? ` ${formatBytes(p.bytes)}` : '';
    const verified = p.verified ? ` sha256 ${p.verified}` : '';
    return `${indent}${p.role.padEnd(10)} ${STATUS_MARK[p.status].padEnd(11)}${p.path ? ` ${p.path}` : ''}${dtypes}${size}${verified}${p.message ? `\n${indent}${' '.repeat(23)}${p.message}` : ''}`;
  });
}

function formatFound(m: FoundModel): string {
  return [`${m.name} (${m.id}) — ${m.complete ? 'complete' : 'incomplete'}, ${m.where}: ${m.root}`, ...formatParts(m.parts), ''].join('\n');
}

export function formatCheck(r: ModelCheckReport): string {
  const m = r.machine;
  // A folder that is not there: one line, not the reason six times over memory estimates for nothing.
  const common = r.model.complete ? undefined : commonProblem(r.model);
  if (common && !r.model.parts.some((p) => p.status === 'present')) return `${r.model.name}: cannot be used: ${common}\n`;
  const lines = [
    `${r.model.name}: ${r.model.complete ? 'complete' : 'INCOMPLETE'} (${r.model.root})`,
    ...formatParts(r.model.parts),
    '',
    `This machine: ${m.platform}-${m.arch}, ${m.cpus} CPU threads, ${formatBytes(m.totalMemory)} RAM (${formatBytes(m.freeMemory)} free)${m.gpuMemory ? `, ${m.gpuName ?? 'GPU'} ${formatBytes(m.gpuMemory)}` : ''}`,
    '',
    'Peak memory (weights held + working set):',
    `  ${'weights'.padEnd(8)} ${'mode'.padEnd(11)} ${'size'.padEnd(10)} ${'peak'.padStart(10)}  fits`,
  ];
  for (const e of r.estimates) {
    const fits = [e.fitsRam ? 'RAM' : '', e.fitsGpu ? 'GPU' : ''].filter(Boolean).join('+') || 'no';
    lines.push(`  ${e.weights.padEnd(8)} ${e.mode.padEnd(11)} ${`${e.width}x${e.height}`.padEnd(10)} ${formatBytes(e.peak).padStart(10)}  ${fits}`);
  }
  lines.push('', ...r.advice, '');
  return lines.join('\n');
}
