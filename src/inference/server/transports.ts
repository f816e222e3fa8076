// The transports that carry the protocol to InferenceServer (server.ts): a pipe pair for the
// extension's child process (stdio or an inherited fd), or TCP with a token for `majicflux serve`.

import * as net from 'node:net';
import type { Sink } from './connection';
import { InferenceServer, ServerOptions } from './server';

/**
 * stdin/stdout: stdout is reserved for protocol lines from here on. console.* and anything else
 * that calls process.stdout.write is sent to stderr instead.
 */
function claimStdout(): Sink {
  const out = process.stdout;
  const write = out.write.bind(out) as (data: string, cb?: (err?: Error | null) => void) => boolean;
  out.write = ((chunk: string | Uint8Array, encoding?: BufferEncoding | ((err?: Error | null) => void), cb?: (err?: Error | null) => void) =>
    typeof encoding === 'function' ? process.stderr.write(chunk, encoding) : process.stderr.write(chunk, encoding as BufferEncoding, cb)) as typeof out.write;
  return { write: (data, cb) => write(data, cb), once: (event, listener) => out.once(event, listener) };
}

/** Serves one client over a pipe pair (stdio or fd); resolves with the exit code when it is over. */
export function servePipe(transport: 'stdio' | 'fd', opts: ServerOptions & { fd?: number }): Promise<number> {
  return new Promise((resolve) => {
    const server = new InferenceServer(opts);
    let input: NodeJS.ReadableStream;
    let sink: Sink;
    if (transport === 'fd') {
      const socket = new net.Socket({ fd: opts.fd ?? 3, readable: true, writable: true });
      input = socket;
      sink = { write: (d, cb) => socket.write(d, cb), end: (cb) => socket.end(cb), once: (event, listener) => socket.once(event, listener), destroy: () => socket.destroy() };
    } else {
      sink = claimStdout();
      input = process.stdin;
    }
    let ending = false;
    const end = (why: string) => {
      if (ending) return;
      ending = true;
      server.log('info', `shutting down (${why})`);
      server
        .shutdown()
        .catch((err: Error) => server.log('error', `shutdown: ${err.message}`))
        .then(() => session.conn.close())
        .then(() => {
          if (server.stuck) exitStuck();
          resolve(0);
        });
    };
    const session = server.attach(input, sink, transport, () => end('the client closed the connection'));
    server.onShutdownRequest = () => end('requested');
    process.once('SIGTERM', () => end('SIGTERM'));
    process.once('SIGINT', () => end('SIGINT'));
  });
}

/**
 * Ends a process that abandoned a job stuck in I/O. A normal exit would wait for that thread (Node
 * joins its threads on exit, and a read of a FIFO or a hung network share never returns), so the
 * process ends itself with SIGKILL; everything it owed its client has been sent by now.
 */
export function exitStuck(): never {
  process.stderr.write('exiting hard: a job is stuck in a read that never returns, which would keep the process from ending\n');
  process.kill(process.pid, 'SIGKILL');
  throw new Error('unreachable');
}

export interface TcpServerHandle {
  host: string;
  port: number;
  /** Stop listening, cancel the client's jobs, free the model. */
  close(): Promise<void>;
  /** A job was abandoned while stuck in I/O: the process cannot exit normally (see exitStuck). */
  readonly stuck: boolean;
}

/** Open TCP connections at once: the client, and others waiting for their hello or their turn. */
export const MAX_TCP_CONNECTIONS = 64;

/** Serves over TCP, one client at a time; a token is required in `hello`. */
export async function serveTcp(opts: ServerOptions & { host: string; port: number; token: string }): Promise<TcpServerHandle> {
  const server = new InferenceServer({ ...opts, echoLogs: true });
  const sockets = new Set<net.Socket>();
  const tcp = net.createServer((socket) => {
    sockets.add(socket);
    socket.setNoDelay(true);
    // A peer that vanished without closing (laptop asleep, network gone) must not hold the one slot forever.
    socket.setKeepAlive(true, 15_000);
    socket.on('close', () => sockets.delete(socket));
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    server.attach(socket, socket, 'tcp', () => server.log('info', `client ${peer} disconnected`), socket.remoteAddress ?? peer);
    server.log('info', `client ${peer} connected`);
  });
  // Connections past this are closed at once: a flood of idle sockets (each dropped only after the
  // hello timeout) could otherwise take the file descriptors the jobs need to open model files.
  tcp.maxConnections = MAX_TCP_CONNECTIONS;
  server.onShutdownRequest = (session) => void session.conn.close();
  if (opts.outputDir) await server.sweep(opts.outputDir);
  await new Promise<void>((resolve, reject) => {
    tcp.once('error', reject);
    tcp.listen(opts.port, opts.host, () => {
      tcp.off('error', reject);
      resolve();
    });
  });
  const address = tcp.address() as net.AddressInfo;
  return {
    host: address.address,
    port: address.port,
    async close() {
      tcp.close();
      await server.shutdown();
      for (const s of sockets) s.end();
    },
    get stuck() {
      return server.stuck;
    },
  };
}
