// Entry point of dist/server.js: picks the transport and starts the server (server.ts).
//
//   node dist/server.js              protocol on stdin/stdout (other clients, scripts)
//   node dist/server.js --fd 3       protocol on an extra pipe at fd 3 (what serverClient.ts uses)
//   node dist/server.js serve …      TCP, with a token (cli/serve.ts; same as `majicflux serve`)
//
// Why fd 3 for our own client: stdout belongs to every native library loaded into the process
// (onnxruntime, CUDA, sharp/libvips) and any of them may printf to it. In stdio mode we route
// console.* and process.stdout.write to stderr, but a C library's buffered write can still land in
// the middle of a protocol line. An extra pipe is never written by anybody else, and Node (and
// Electron run as node) supports extra stdio pipes on Windows, macOS and Linux alike (libuv passes
// them as it passes NODE_CHANNEL_FD). stdout and stderr then carry only diagnostics.

import '../system/privacy'; // first: telemetry off before onnxruntime loads
import { serveCommand } from '../cli/serve';
import { DEFAULT_CANCEL_GRACE_MS } from './server';
import { servePipe } from './transports';

const USAGE = `Usage: node dist/server.js [--stdio | --fd N] [--heartbeat-ms N] [--cancel-grace-ms N]
       node dist/server.js serve --help          (TCP, for a remote GPU host)

The MajicFLUX inference server. Speaks NDJSON (docs/PROTOCOL.md) on stdin/stdout (default) or on
an inherited pipe at file descriptor N. A cancelled job that has not stopped after
--cancel-grace-ms (default $MAJICFLUX_CANCEL_GRACE_MS, else ${DEFAULT_CANCEL_GRACE_MS}) is taken as stuck and abandoned.
`;

export async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'serve') {
    return serveCommand(argv.slice(1));
  }
  let transport: 'stdio' | 'fd' = 'stdio';
  let fd = 3;
  let heartbeatMs: number | undefined;
  let cancelGraceMs: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--stdio') transport = 'stdio';
    else if (a === '--fd') {
      transport = 'fd';
      fd = Number(argv[++i]);
    } else if (a === '--heartbeat-ms') heartbeatMs = Number(argv[++i]);
    else if (a === '--cancel-grace-ms') cancelGraceMs = Number(argv[++i]);
    else if (a === '--help' || a === '-h') {
      process.stderr.write(USAGE);
      return 0;
    } else {
      process.stderr.write(`unknown argument ${a}\n${USAGE}`);
      return 2;
    }
  }
  if (cancelGraceMs !== undefined && !(cancelGraceMs >= 0)) {
    process.stderr.write('--cancel-grace-ms needs a number of milliseconds ≥ 0\n');
    return 2;
  }
  if (!Number.isInteger(fd) || fd < 3) {
    process.stderr.write('--fd needs a descriptor number ≥ 3\n');
    return 2;
  }
  return servePipe(transport, { fd, heartbeatMs, cancelGraceMs });
}

if (require.main === module) {
  process.on('unhandledRejection', (reason) => process.stderr.write(`unhandled rejection: ${reason instanceof Error ? reason.stack : String(reason)}\n`));
  process.on('uncaughtException', (err) => {
    // State is unknown now: exit, and let the client report it and restart us.
    process.stderr.write(`fatal: ${err.stack ?? err.message}\n`);
    process.exit(70);
  });
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: Error) => {
      process.stderr.write(`fatal: ${err.stack ?? err.message}\n`);
      process.exit(1);
    },
  );
}
