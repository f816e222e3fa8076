// The link to one inference server: a child process we start (the protocol on an extra pipe, fd 3)
// or a TCP connection to `majicflux serve`. Only bytes in and out and how the link ended: what the
// lines mean is the session's business (serverSession.ts).

import { ChildProcess, spawn } from 'node:child_process';
import * as net from 'node:net';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { LineSplitter } from '../shared/ndjson';

export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export interface RemoteServer {
  host: string;
  port: number;
  /** Printed by `majicflux serve`. */
  token: string;
}

/** Where the server is: started here (the first four) or `remote`. */
export interface LinkOptions {
  /** dist/server.js; default: next to this bundle (dist/extension.js and dist/server.js share a folder). */
  serverPath?: string;
  /** Node to run it with; default process.execPath (in VS Code, its Electron, run as node). */
  nodePath?: string;
  /** Extra environment for the server process. */
  env?: Record<string, string>;
  cwd?: string;
  /** Connect to a `majicflux serve` server instead of starting one. */
  remote?: RemoteServer;
}

export interface LinkEnd {
  code: number | null;
  signal: NodeJS.Signals | null;
  error?: Error;
}

export interface Link {
  readonly remote: boolean;
  readonly pid?: number;
  send(line: string): void;
  /** End our side: the server sees end of input and shuts down (local) or drops us (remote). */
  end(): void;
  kill(): void;
  readonly ended: Promise<LinkEnd>;
  /** Last lines of the server's stderr, for error details. */
  recentOutput(): string;
}

function forEachLine(stream: Readable, onLine: (line: string) => void): void {
  const splitter = new LineSplitter(onLine, () => undefined, 1 << 20);
  stream.on('data', (c: Buffer) => splitter.push(c));
  stream.on('end', () => splitter.end());
  stream.on('error', () => undefined);
}

export function spawnServer(loc: LinkOptions, onData: (chunk: Buffer) => void, logger: Logger): Link {
  const script = loc.serverPath ?? path.join(__dirname, 'server.js');
  const child: ChildProcess = spawn(loc.nodePath ?? process.execPath, [script, '--fd', '3'], {
    // fd 3 carries the protocol; stdout/stderr are diagnostics only (see server.ts for why).
    stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    env: { ...process.env, ...loc.env, ELECTRON_RUN_AS_NODE: '1' },
    cwd: loc.cwd,
    windowsHide: true,
  });
  // All four are null when the spawn itself failed (then 'error' follows).
  const channel = child.stdio[3] as net.Socket | null;
  const tail: string[] = [];
  const onOutput = (line: string) => {
    tail.push(line);
    if (tail.length > 30) tail.shift();
    const level = /\] (error|warn|info|debug): /.exec(line)?.[1] as keyof Logger | undefined;
    logger[level ?? 'info'](`server: ${line}`);
  };
  if (child.stdout) forEachLine(child.stdout, onOutput);
  if (child.stderr) forEachLine(child.stderr, onOutput);
  channel?.on('data', onData);
  channel?.on('error', (err) => logger.debug(`server channel: ${err.message}`));
  const ended = new Promise<LinkEnd>((resolve) => {
    child.once('error', (error) => resolve({ code: null, signal: null, error }));
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  return {
    remote: false,
    pid: child.pid,
    send: (line) => void channel?.write(line),
    end: () => void channel?.end(),
    kill: () => void child.kill('SIGKILL'),
    ended,
    recentOutput: () => tail.join('\n'),
  };
}

export function connectServer(loc: RemoteServer, onData: (chunk: Buffer) => void): Link {
  const socket = net.connect({ host: loc.host, port: loc.port });
  socket.setNoDelay(true);
  socket.on('data', onData);
  let error: Error | undefined;
  socket.on('error', (err) => (error = err));
  const ended = new Promise<LinkEnd>((resolve) => socket.once('close', () => resolve({ code: null, signal: null, error })));
  return {
    remote: true,
    send: (line) => void socket.write(line),
    end: () => void socket.end(),
    kill: () => void socket.destroy(),
    ended,
    recentOutput: () => '',
  };
}
