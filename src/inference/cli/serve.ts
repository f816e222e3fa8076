// `majicflux serve`: the inference server over TCP, for running the model on another machine (a
// GPU host) while VS Code runs here. Same server and protocol as the extension's child process.

import * as crypto from 'node:crypto';
import * as net from 'node:net';
import * as path from 'node:path';
import { EP_CHOICES, MEMORY_MODES, ModelError, ModelSpec, UserError, WEIGHT_CHOICES } from '../../shared/api';
import { resolveModel } from '../models/files';
import { cacheMaxBytesFlag, checkPartFlags, choiceFlag, CliOutput, EXIT_FAILURE, EXIT_USAGE, parseCommandArgs, rejectEmptyPaths, statIfAny, Subcommand, UsageError, wholeNumberFlag } from './common';
import { checkCanCreate } from './generateFiles';
import { PROTOCOL_VERSION, ServerSettings } from '../../shared/protocol';
import { DEFAULT_HEARTBEAT_MS } from '../server/server';
import { exitStuck, serveTcp } from '../server/transports';

export const DEFAULT_PORT = 7860;

export const SERVE_HELP = `Usage: majicflux serve [options]
       (or: node dist/server.js serve [options])

Runs the inference server over TCP so that VS Code on another machine can use this machine's
GPU. One client at a time: a second one is turned away while the first is connected. A client
that disconnects has its queued and running jobs cancelled; the model stays loaded for the next.

Connection:
  --host HOST        address to listen on (default 127.0.0.1: this machine only). Anything else
                     exposes the server to the network, unencrypted: prefer an SSH tunnel.
  --port N           TCP port (default ${DEFAULT_PORT}; 0 picks a free one and prints it)
  --token TOKEN      secret the client must send in its hello. Default: $MAJICFLUX_TOKEN, else
                     a random one generated now and printed below. (A token on the command
                     line is visible to other users of this machine in the process list.)
Model (used whatever model the client names; without them, the client's paths are used, and
they must exist on this machine):
  --model DIR|FILE   FLUX.1-dev-style folder, or one all-in-one .safetensors (ComfyUI/Forge)
  --transformer FILE single-file DiT (e.g. majicflus_v134.safetensors)
  --vae PATH         ae.safetensors or a diffusers vae/ folder
Runtime defaults (a client's settings replace them):
  --weights auto|fp8|fp16|fp32|int8|int4
  --ep auto|cpu|webgpu|cuda|dml|coreml
  --memory auto|sequential|resident
  --threads N        CPU threads for onnxruntime
  --cache DIR        converted-weight cache folder
  --cache-max-gb N   disk the weight caches may take, GiB (default 0: no limit); clients can't change it
Output:
  --output-dir DIR   PNGs are written here (default ./generated). Clients name files relative
                     to it and cannot write outside it; with returnImage they also get the bytes.
  --heartbeat-ms N   heartbeat interval (default ${DEFAULT_HEARTBEAT_MS})
  --models-dir DIR   allow clients to download registry models into this folder (relative
                     paths only; without it, downloads are refused) and name models in it
  --inputs-dir DIR   clients may name input files (latentsFile, input images, LoRAs) in this
                     folder, which must exist
Clients read files only inside these folders and the model's, write only into the output folder,
and set no server path (their cache folder is ignored): see docs/PROTOCOL.md, "Security model".

Remote use through an SSH tunnel (recommended; nothing but SSH is exposed):
  on the GPU host:     majicflux serve --model /models/FLUX.1-dev
  on your machine:     ssh -N -L ${DEFAULT_PORT}:127.0.0.1:${DEFAULT_PORT} gpu-host
  in VS Code:          majicflux.server.remoteHost = 127.0.0.1, remotePort = ${DEFAULT_PORT},
                       and the token printed by serve

Stop with Ctrl+C: the running job is cancelled at its next step and the model released.
Exit status: 0 after a clean stop; 1 a missing or incomplete --model, or the port cannot be used;
2 bad arguments (an output, models or inputs folder that cannot be used included), all before
anything listens.
`;

const STD_IO: CliOutput = { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) };

/** Runs until SIGINT/SIGTERM; resolves with the exit code (0 after a clean stop, 2 for bad arguments). */
export async function serveCommand(argv: string[], io: CliOutput = STD_IO): Promise<number> {
  try {
    return await serve(argv, io);
  } catch (err) {
    // A model given at start that is missing or incomplete: a failure (1), as for generate, not a usage error.
    if (err instanceof ModelError) {
      io.err(`majicflux serve: ${err.message}\n`);
      return EXIT_FAILURE;
    }
    if (err instanceof UserError || err instanceof UsageError) {
      io.err(`majicflux serve: ${(err as Error).message}\nRun "majicflux serve --help" for usage.\n`);
      return EXIT_USAGE;
    }
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') {
      const { address, port } = err as NodeJS.ErrnoException & { address?: string; port?: number };
      io.err(`majicflux serve: port ${port} of ${address} is already in use (another majicflux serve?): stop that, or choose another with --port N (0 picks a free one)\n`);
      return EXIT_FAILURE;
    }
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
      io.err(`majicflux serve: --host ${(err as NodeJS.ErrnoException & { hostname?: string }).hostname}: no such host name here (${code}); give an address of this machine, or leave --host out for 127.0.0.1\nRun "majicflux serve --help" for usage.\n`);
      return EXIT_USAGE;
    }
    if (code === 'EACCES' || code === 'EADDRNOTAVAIL') {
      io.err(`majicflux serve: cannot listen: ${(err as Error).message}${code === 'EADDRNOTAVAIL' ? ' (--host is not an address of this machine)' : ' (ports below 1024 need administrator rights: choose another with --port N)'}\n`);
      return EXIT_FAILURE;
    }
    throw err;
  }
}

/** For cli.ts's COMMANDS list. */
export const serveSubcommand: Subcommand = {
  name: 'serve',
  summary: 'run the inference server over TCP for a remote client (GPU host)',
  usage: SERVE_HELP,
  run: (args, io) => serveCommand(args, io),
};

async function serve(argv: string[], io: CliOutput): Promise<number> {
  const { values } = parseCommandArgs(
    argv,
    {
      host: { type: 'string' }, port: { type: 'string' }, token: { type: 'string' },
      model: { type: 'string' }, transformer: { type: 'string' }, vae: { type: 'string' },
      weights: { type: 'string' }, ep: { type: 'string' }, memory: { type: 'string' }, threads: { type: 'string' }, cache: { type: 'string' }, 'cache-max-gb': { type: 'string' },
      'output-dir': { type: 'string' }, 'models-dir': { type: 'string' }, 'inputs-dir': { type: 'string' }, 'heartbeat-ms': { type: 'string' },
    },
    false,
  );
  if (values.help) {
    io.out(SERVE_HELP);
    return 0;
  }
  // "" would be the current folder: for --output-dir, a folder every client may then read and write.
  rejectEmptyPaths(Object.fromEntries((['output-dir', 'inputs-dir', 'models-dir', 'model', 'transformer', 'vae', 'cache'] as const).map((f) => [`--${f}`, values[f]])));
  // --vae alone served no model, the VAE silently unused.
  checkPartFlags(values.model, { '--transformer': values.transformer, '--vae': values.vae });
  // "" would listen on every interface of the machine, not the loopback the user left it at.
  if (values.host !== undefined && !values.host.trim()) throw new UsageError('--host is empty (an unset variable?); give an address, or leave it out for 127.0.0.1');
  const host = values.host ?? '127.0.0.1';
  const port = wholeNumberFlag('port', values.port, 0, 65535) ?? DEFAULT_PORT;
  const heartbeatMs = wholeNumberFlag('heartbeat-ms', values['heartbeat-ms'], 0, 3_600_000) ?? DEFAULT_HEARTBEAT_MS;
  const token = values.token ?? process.env.MAJICFLUX_TOKEN ?? crypto.randomBytes(18).toString('base64url');
  const generated = values.token === undefined && process.env.MAJICFLUX_TOKEN === undefined;
  if (token.length < 8) throw new UserError('--token must be at least 8 characters');
  const model: ModelSpec | undefined = values.model || values.transformer ? { dir: values.model, transformer: values.transformer, vae: values.vae } : undefined;
  const settings: ServerSettings | undefined = model
    ? {
        model,
        weights: choiceFlag('weights', values.weights, WEIGHT_CHOICES),
        ep: choiceFlag('ep', values.ep, EP_CHOICES),
        memory: choiceFlag('memory', values.memory, MEMORY_MODES),
        threads: wholeNumberFlag('threads', values.threads, 0, 1024),
        cacheDir: values.cache,
      }
    : undefined;
  const outputDir = path.resolve(values['output-dir'] ?? 'generated');
  const modelsDir = values['models-dir'] === undefined ? undefined : path.resolve(values['models-dir']);
  const inputsDir = values['inputs-dir'] === undefined ? undefined : path.resolve(values['inputs-dir']);
  // Checked now, with the owner at the terminal, not by the first client's job over the tunnel.
  checkCanCreate('--output-dir', outputDir);
  if (modelsDir !== undefined) checkCanCreate('--models-dir', modelsDir);
  if (inputsDir !== undefined && !statIfAny(inputsDir)?.isDirectory()) throw new UsageError(`--inputs-dir: ${inputsDir} is not a folder; create it, or name the folder clients' input files are put in`);
  if (model) resolveModel(model);

  if (!isLoopback(host)) {
    io.err(
      `WARNING: listening on ${host}, not loopback. Anyone who can reach this port can try tokens, and traffic\n` +
        `(the token, prompts, images) is NOT encrypted. Prefer --host 127.0.0.1 with an SSH tunnel (see --help).\n`,
    );
  }
  const cacheDir = values.cache === undefined ? undefined : path.resolve(values.cache);
  const cacheMaxBytes = cacheMaxBytesFlag(values['cache-max-gb']);
  const handle = await serveTcp({ host, port, token, heartbeatMs, outputDir, modelsDir, inputsDir, cacheDir, cacheMaxBytes, settings: settings && { ...settings, cacheMaxBytes }, fixedModel: model });
  const where = `${handle.host.includes(':') ? `[${handle.host}]` : handle.host}:${handle.port}`;
  io.out(
    `MajicFLUX server listening on ${where} (protocol ${PROTOCOL_VERSION})\n` +
      `Token: ${generated ? token : '(as given)'}\n` +
      `Output folder: ${outputDir}\n` +
      `From another machine: ssh -N -L ${handle.port}:127.0.0.1:${handle.port} <this-host>, then connect to 127.0.0.1:${handle.port}\n`,
  );

  return new Promise((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      io.err(`${signal}: stopping…\n`);
      handle.close().then(
        () => {
          if (handle.stuck) exitStuck();
          resolve(0);
        },
        (err: Error) => {
          io.err(`error while stopping: ${err.message}\n`);
          resolve(1);
        },
      );
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}

function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (net.isIPv4(host)) return host.startsWith('127.');
  if (net.isIPv6(host)) return host === '::1';
  return false;
}
