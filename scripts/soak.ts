// Soak mode of the benchmark (not CI): drives dist/server.js over stdio through N jobs — each with
// its own prompt (so the embedding cache churns), a latent preview every step, every Kth cancelled
// mid-run — and reports the server's RSS as it goes. A server whose memory is bounded levels off
// after the first jobs; one that keeps something per job climbs steadily.
//
//   npm run bench -- --soak 1000 [--dir MODEL_DIR] [--size 64,256] [--steps 2] [--soak-memory auto|sequential|resident] [--cancel-every 2]

import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';

export interface SoakOptions {
  jobs: number;
  /** Model folder; the golden tiny model by default. */
  model: string;
  /** Image sizes, cycled through job by job (the adversarial run varied them). */
  sizes: number[];
  steps: number;
  memory: string;
  /** Cancel every Nth job once it has started (0: none). */
  cancelEvery: number;
  /** Sample RSS every N jobs. */
  sampleEvery: number;
  /** Where to write the samples as JSON. */
  out: string;
}

export interface SoakSample {
  jobs: number;
  rssMiB: number;
  seconds: number;
}

type Message = { id?: number; type: string; event?: string; jobId?: string; status?: { rss: number }; message?: string };

/** A minimal stdio client: one request at a time, events routed to the waiting job. */
class Link {
  private nextId = 1;
  private readonly replies = new Map<number, (m: Message) => void>();
  private eventSink: (m: Message) => void = () => undefined;

  constructor(private readonly child: ChildProcess) {
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      let m: Message;
      try {
        m = JSON.parse(line) as Message;
      } catch {
        return;
      }
      if (m.type === 'event') this.eventSink(m);
      else if (typeof m.id === 'number') this.replies.get(m.id)?.(m);
    });
  }

  request(body: Record<string, unknown>): Promise<Message> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.replies.set(id, (m) => {
        this.replies.delete(id);
        resolve(m);
      });
      this.child.stdin!.write(JSON.stringify({ id, ...body }) + '\n');
    });
  }

  onEvent(sink: (m: Message) => void): void {
    this.eventSink = sink;
  }
}

async function runJob(link: Link, i: number, o: SoakOptions, outDir: string): Promise<string> {
  const cancel = o.cancelEvery > 0 && i % o.cancelEvery === o.cancelEvery - 1;
  let jobId: string | undefined;
  const ended = new Promise<string>((resolve) => {
    link.onEvent((m) => {
      if (m.jobId !== jobId) return;
      if (cancel && m.event === 'step') void link.request({ type: 'cancel', jobId });
      if (m.event === 'done' || m.event === 'failed' || m.event === 'cancelled') resolve(m.event === 'failed' ? `failed: ${m.message}` : m.event);
    });
  });
  const size = o.sizes[i % o.sizes.length];
  const params = { prompt: `soak job ${i}: a lighthouse on a cliff at dawn, variation ${i * 7919}`, seed: i, steps: o.steps, width: size, height: size };
  const reply = await link.request({ type: 'generate', job: { params, output: path.join(outDir, `soak-${i}.png`), previewEvery: 1 } });
  if (reply.type !== 'queued') throw new Error(`job ${i}: ${JSON.stringify(reply)}`);
  jobId = reply.jobId;
  const outcome = await ended;
  fs.rmSync(path.join(outDir, `soak-${i}.png`), { force: true });
  return outcome;
}

export async function soak(serverJs: string, o: SoakOptions): Promise<SoakSample[]> {
  const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'majicflux-soak-'));
  const child = spawn(process.execPath, ['--expose-gc', serverJs], { stdio: ['pipe', 'pipe', 'inherit'] });
  const link = new Link(child);
  const samples: SoakSample[] = [];
  const t0 = performance.now();
  try {
    const hello = await link.request({ type: 'hello', protocol: 1, client: 'bench soak', settings: { model: { dir: o.model }, weights: 'fp32', ep: 'cpu', memory: o.memory }, heartbeatMs: 0 });
    if (hello.type !== 'hello') throw new Error(`hello: ${JSON.stringify(hello)}`);
    const outcomes: Record<string, number> = {};
    for (let i = 0; i <= o.jobs; i++) {
      if (i % o.sampleEvery === 0 || i === o.jobs) {
        const s = await link.request({ type: 'status' });
        const sample = { jobs: i, rssMiB: Math.round((s.status?.rss ?? 0) / 2 ** 20), seconds: Math.round((performance.now() - t0) / 1000) };
        samples.push(sample);
        console.error(`soak: ${sample.jobs} jobs, server RSS ${sample.rssMiB} MiB (${sample.seconds} s) ${JSON.stringify(outcomes)}`);
        fs.writeFileSync(o.out, JSON.stringify({ options: o, samples }, null, 1));
      }
      if (i === o.jobs) break;
      const outcome = await runJob(link, i, o, outDir);
      outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
    }
    await link.request({ type: 'shutdown' });
  } finally {
    child.kill();
    fs.rmSync(outDir, { recursive: true, force: true });
  }
  const first = samples.find((s) => s.jobs >= o.sampleEvery) ?? samples[0];
  const last = samples[samples.length - 1];
  console.log(`soak: RSS ${samples[0].rssMiB} MiB at start, ${first.rssMiB} MiB after ${first.jobs} jobs, ${last.rssMiB} MiB after ${last.jobs} (peak ${Math.max(...samples.map((s) => s.rssMiB))} MiB); wrote ${o.out}`);
  return samples;
}
