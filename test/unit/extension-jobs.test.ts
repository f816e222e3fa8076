import * as assert from 'node:assert/strict';
import type { ImageMetadata } from '../../src/shared/params';
import type { Event, JobEvent, JobRequest, StatusInfo } from '../../src/shared/protocol';
import { History, blockKey } from '../../src/extension/history';
import { InferenceClient, Job, Jobs } from '../../src/extension/jobs';
import { jobProgress, PHASES } from '../../src/extension/progress';

type EventBody = JobEvent extends infer E ? (E extends JobEvent ? Omit<E, 'jobId' | 'type'> : never) : never;
const meta = (prompt: string): ImageMetadata => ({ prompt, seed: 1, steps: 2, width: 64, height: 64, guidance: 3.5, shift: 'dynamic', t5MaxLength: 512, model: 'demo', weights: 'fp8', sampler: 'euler', software: 'test' });

/** A scripted server: each job emits started, two steps, then done (or waits to be cancelled). */
class FakeClient implements InferenceClient {
  n = 0;
  cancelled: string[] = [];
  labels: (string | undefined)[] = [];
  private listeners = new Map<string, { on: (e: Event) => void; resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  constructor(private readonly mode: 'finish' | 'hang' | 'fail' = 'finish') {}
  async generate(job: JobRequest, onEvent: (e: Event) => void, label?: string) {
    this.labels.push(label);
    const jobId = `s${++this.n}`;
    let resolve!: (v: unknown) => void;
    let reject!: (e: Error) => void;
    const done = new Promise<unknown>((res, rej) => ((resolve = res), (reject = rej)));
    this.listeners.set(jobId, { on: onEvent, resolve, reject });
    setImmediate(() => {
      const ev = (e: EventBody) => onEvent({ type: 'event', jobId, ...e } as Event);
      ev({ event: 'started' });
      ev({ event: 'step', step: 1, steps: 2, preview: { width: 2, height: 2, pngBase64: 'AA==' } });
      if (this.mode === 'fail') {
        ev({ event: 'failed', message: 'out of memory', detail: 'stack' });
        reject(Object.assign(new Error('out of memory'), { name: 'JobFailedError' }));
        return;
      }
      if (this.mode === 'hang') return;
      ev({ event: 'step', step: 2, steps: 2 });
      const done = { type: 'event', event: 'done', jobId, file: job.output, metadata: meta(job.params.prompt), stages: [], notes: [] } as Event;
      onEvent(done);
      resolve(done);
    });
    return { jobId, done };
  }
  async cancel(jobId: string) {
    this.cancelled.push(jobId);
    const l = this.listeners.get(jobId);
    l?.on({ type: 'event', event: 'cancelled', jobId });
    l?.reject(Object.assign(new Error('generation cancelled'), { name: 'CancelledError' }));
  }
  async status(): Promise<StatusInfo> {
    throw new Error('unused');
  }
}

const req = (prompt: string): JobRequest => ({ params: { prompt, seed: 1 }, output: `/tmp/${prompt}.png` });

describe('extension: jobs', () => {
  it('follows a job through its events to done', async () => {
    const jobs = new Jobs({ client: async () => new FakeClient() });
    const seen: string[] = [];
    jobs.onDidChange((j) => seen.push(`${j.state}${j.step !== undefined ? j.step : ''}`));
    const job = jobs.submit(req('cat'), { kind: 'palette' });
    assert.equal(jobs.active().length, 1);
    const end = await jobs.whenFinished(job);
    assert.equal(end.state, 'done');
    assert.equal(end.result?.file, '/tmp/cat.png');
    assert.equal(end.preview?.pngBase64, 'AA==');
    assert.deepEqual(seen, ['pending', 'queued', 'running', 'running1', 'running2', 'done2']);
    assert.equal(jobs.active().length, 0);
  });

  it('progress: the stages in order, never back; loading and first-use preparation inside them (issue 15 item 2)', async () => {
    // The server's events for a first run in sequential mode (test/unit/server.test.ts checks the server sends these).
    const script: EventBody[] = [
      { event: 'started' },
      { event: 'stage', stage: 'text', state: 'start' },
      { event: 'loading', component: 't5', phase: 'load' },
      { event: 'loading', component: 't5', phase: 'loaded' },
      { event: 'stage', stage: 'text', state: 'end' },
      { event: 'stage', stage: 'denoise', state: 'start' },
      { event: 'loading', component: 'dit', phase: 'load' },
      { event: 'loading', component: 'dit', phase: 'prepare', fraction: 0.3 },
      { event: 'loading', component: 'dit', phase: 'prepare', fraction: 0.75 },
      { event: 'loading', component: 'dit', phase: 'load' },
      { event: 'loading', component: 'dit', phase: 'loaded' },
      { event: 'step', step: 1, steps: 2 },
      { event: 'step', step: 2, steps: 2 },
      { event: 'stage', stage: 'denoise', state: 'end' },
      { event: 'stage', stage: 'decode', state: 'start' },
      { event: 'stage', stage: 'save', state: 'start' },
    ];
    const client: InferenceClient = {
      generate: async (job, onEvent) => {
        const done = new Promise<unknown>((resolve) =>
          setImmediate(() => {
            for (const e of script) onEvent({ type: 'event', jobId: 's1', ...e } as Event);
            const end = { type: 'event', event: 'done', jobId: 's1', file: job.output, metadata: meta(job.params.prompt), stages: [], notes: [] } as Event;
            onEvent(end);
            resolve(end);
          }),
        );
        return { jobId: 's1', done };
      },
      cancel: () => undefined,
      status: () => Promise.reject(new Error('unused')),
    };
    const jobs = new Jobs({ client: async () => client });
    const seen: string[] = [];
    const ranks: number[] = [];
    jobs.onDidChange((j) => {
      const p = jobProgress(j);
      if (!p) return;
      ranks.push(PHASES.indexOf(p.phase));
      seen.push(`${p.phase}${p.loading ? ` ${p.loading.preparing ? 'preparing' : 'loading'} ${p.loading.component}${p.loading.percent !== undefined ? ` ${p.loading.percent}%` : ''}` : ''}${p.phase === 'denoise' ? ` ${p.step}/${p.steps}` : ''}`);
    });
    await jobs.whenFinished(jobs.submit({ params: { prompt: 'cat', seed: 1, steps: 2 }, output: '/tmp/cat.png' }, { kind: 'palette' }));
    assert.deepEqual(seen, [
      'waiting', 'queued', 'starting',
      'text', 'text loading t5', 'text', 'text',
      // Before the first step: the step count from 0, never "waiting for the server" (seen after "Encoding the prompt…").
      'denoise 0/2', 'denoise loading dit 0/2', 'denoise preparing dit 30% 0/2', 'denoise preparing dit 75% 0/2', 'denoise loading dit 0/2', 'denoise 0/2',
      'denoise 1/2', 'denoise 2/2', 'denoise 2/2',
      'decode', 'save',
    ]);
    assert.deepEqual(ranks, [...ranks].sort((a, b) => a - b), 'never goes back');
  });

  it('cancels a running job, and logs it under the id the server messages use too', async () => {
    const client = new FakeClient('hang');
    const lines: string[] = [];
    const log = { info: (m: string) => lines.push(m), warn: (m: string) => lines.push(m), error: (m: string) => lines.push(m) };
    const jobs = new Jobs({ client: async () => client, log });
    const job = jobs.submit(req('dog'), { kind: 'panel' });
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(job.state, 'running');
    await jobs.cancel(job.id);
    const end = await jobs.whenFinished(job);
    assert.equal(end.state, 'cancelled');
    assert.deepEqual(client.cancelled, ['s1']);
    // Issue 15 item 10: a cancelled job is logged; the server client names the job as the log does.
    assert.deepEqual(client.labels, [job.id]);
    assert.ok(lines.includes(`${job.id}: the server's s1`), lines.join('\n'));
    assert.ok(lines.some((l) => l.startsWith(`${job.id} cancelled`)), lines.join('\n'));
  });

  it('cancels a job before the server has it', async () => {
    let release!: (c: InferenceClient) => void;
    const client = new FakeClient('hang');
    const jobs = new Jobs({ client: () => new Promise((r) => (release = r)) });
    const job = jobs.submit(req('bird'), { kind: 'panel' });
    await jobs.cancel(job.id);
    release(client);
    assert.equal((await jobs.whenFinished(job)).state, 'cancelled');
    assert.equal(client.n, 0, 'never sent');
  });

  it('reports failures with the server message, and a server that cannot start', async () => {
    const jobs = new Jobs({ client: async () => new FakeClient('fail') });
    const end = await jobs.whenFinished(jobs.submit(req('x'), { kind: 'palette' }));
    assert.equal(end.state, 'failed');
    assert.equal(end.error?.message, 'out of memory');
    const dead = new Jobs({ client: async () => { throw new Error('the server did not start: node not found'); } });
    const end2 = await dead.whenFinished(dead.submit(req('y'), { kind: 'palette' }));
    assert.equal(end2.error?.message, 'the server did not start: node not found');
  });

  it('a job waiting in the queue when the server stopped is submitted again to the restarted one (twice at most, and not once cancelled)', async () => {
    const lost = (jobId: string) => Object.assign(new Error(`The MajicFLUX server stopped unexpectedly (signal SIGKILL) while job ${jobId} was waiting in the queue; it will restart on the next request.`), { name: 'JobFailedError', notStarted: true });
    // The first `stops` submissions are lost in the queue (the server crashed on the job before them), then it works.
    const losing = (stops: number) => {
      const c = new FakeClient();
      const generate = c.generate.bind(c);
      c.generate = async (job, onEvent, label) => {
        if (c.n >= stops) return generate(job, onEvent, label);
        const jobId = `s${++c.n}`;
        c.labels.push(label);
        return { jobId, done: new Promise<unknown>((_, reject) => setImmediate(() => reject(lost(label ?? jobId)))) };
      };
      return c;
    };
    const warnings: string[] = [];
    const log = { info: () => {}, warn: (m: string) => warnings.push(m), error: () => {} };
    const client = losing(2);
    const jobs = new Jobs({ client: async () => client, log });
    const seen: string[] = [];
    jobs.onDidChange((j) => seen.push(j.state));
    const job = jobs.submit(req('queued behind a crash'), { kind: 'palette' });
    const end = await jobs.whenFinished(job);
    assert.equal(end.state, 'done', end.error?.message);
    assert.equal(end.result?.file, '/tmp/queued behind a crash.png');
    assert.equal(end.resubmitted, 2);
    assert.deepEqual(client.labels, [job.id, job.id, job.id], 'the same job, under its own id each time');
    assert.deepEqual(seen.slice(0, 4), ['pending', 'queued', 'pending', 'queued']);
    assert.deepEqual(warnings, [`${job.id}: the server stopped while it waited in the queue; submitted again`, `${job.id}: the server stopped while it waited in the queue; submitted again`]);

    // The server stopped before it answered the request itself (ServerError, notStarted): submitted again too.
    const unanswered = new FakeClient();
    const answer = unanswered.generate.bind(unanswered);
    let refused = 0;
    unanswered.generate = async (job, onEvent, label) => {
      if (refused++ === 0) throw Object.assign(new Error('The MajicFLUX server stopped unexpectedly (signal SIGKILL) while answering a request; it will restart on the next request.'), { name: 'ServerError', code: 'stopped', notStarted: true });
      return answer(job, onEvent, label);
    };
    const inFlight = new Jobs({ client: async () => unanswered, log });
    const sentOnce = await inFlight.whenFinished(inFlight.submit(req('in flight'), { kind: 'palette' }));
    assert.equal(sentOnce.state, 'done', sentOnce.error?.message);
    assert.equal(sentOnce.resubmitted, 1);

    // Cancelled while its request was unanswered, then the server stopped: cancelled, not sent again.
    let lose!: () => void;
    const hanging = new FakeClient();
    hanging.generate = (() => new Promise((_, reject) => (lose = () => reject(Object.assign(new Error('stopped'), { name: 'ServerError', code: 'stopped', notStarted: true }))))) as FakeClient['generate'];
    const unsent = new Jobs({ client: async () => hanging, log });
    const u = unsent.submit(req('cancelled unanswered'), { kind: 'palette' });
    await new Promise((r) => setImmediate(r));
    await unsent.cancel(u.id);
    lose();
    const ended = await unsent.whenFinished(u);
    assert.equal(ended.state, 'cancelled');
    assert.equal(ended.resubmitted, undefined);

    // A third loss in a row fails it, with the server's message.
    const always = new Jobs({ client: async () => losing(99), log });
    const failed = await always.whenFinished(always.submit(req('never runs'), { kind: 'palette' }));
    assert.equal(failed.state, 'failed');
    assert.match(failed.error!.message, /while job job-1 was waiting in the queue; it will restart on the next request\.$/);
    assert.equal(failed.resubmitted, 2);

    // Lost once, then cancelled while it waits for the restarted server: cancelled, not sent again.
    let release!: (c: InferenceClient) => void;
    const slow = losing(1);
    let calls = 0;
    const cancelling = new Jobs({ client: () => (++calls === 1 ? Promise.resolve(slow) : new Promise((r) => (release = r))) });
    const c = cancelling.submit(req('cancelled between'), { kind: 'panel' });
    await new Promise<void>((r) => cancelling.onDidChange((j) => j.state === 'pending' && j.resubmitted && r()));
    await cancelling.cancel(c.id);
    release(slow);
    assert.equal((await cancelling.whenFinished(c)).state, 'cancelled');
    assert.equal(slow.n, 1, 'not sent again');
  });

  it('writes an image a remote server sent back', async () => {
    const client = new FakeClient();
    const orig = client.generate.bind(client);
    client.generate = async (job, on) => orig(job, (e) => on(e.event === 'done' ? { ...e, pngBase64: Buffer.from('png').toString('base64') } : e));
    const saved: Buffer[] = [];
    const jobs = new Jobs({ client: async () => client, saveImage: async (j: Job, png: Buffer) => (saved.push(png), `/local/${j.id}.png`) });
    const end = await jobs.whenFinished(jobs.submit(req('z'), { kind: 'palette' }, '/local/z.png'));
    assert.equal(end.state, 'done');
    assert.equal(end.result?.file, `/local/${end.id}.png`);
    assert.equal(saved[0].toString(), 'png');
  });

  /** A remote server as serverSession gives it: the done event carries the image, and `done` resolves with that same event. */
  function remoteClient(): FakeClient {
    const client = new FakeClient();
    const orig = client.generate.bind(client);
    const withPng = <E>(e: E) => (e && typeof e === 'object' && (e as { event?: string }).event === 'done' ? { ...e, pngBase64: Buffer.from('png').toString('base64') } : e);
    client.generate = async (job, on) => {
      const h = await orig(job, (e) => on(withPng(e)));
      return { ...h, done: h.done.then(withPng) };
    };
    return client;
  }

  it('a remote image is done once saved here, with the local path (was: done at once with the server\'s path, the save still under way)', async () => {
    let finishSave!: () => void;
    const jobs = new Jobs({
      client: async () => remoteClient(),
      // A real disk: the write takes a few turns of the event loop.
      saveImage: () => new Promise<string>((r) => (finishSave = () => r('/local/cat.png'))),
    });
    const job = jobs.submit(req('a cat'), { kind: 'palette' }, '/local/cat.png');
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(job.state, 'running', 'still saving');
    finishSave();
    const end = await jobs.whenFinished(job);
    assert.equal(end.state, 'done');
    assert.equal(end.result?.file, '/local/cat.png');
  });

  it('a cancel while a remote image is being saved stops the save: the job is cancelled, not done', async () => {
    const client = remoteClient();
    let saveSignal: AbortSignal | undefined;
    let saving!: () => void;
    const started = new Promise<void>((r) => (saving = r));
    const jobs = new Jobs({
      client: async () => client,
      saveImage: (_j: Job, _png: Buffer, signal: AbortSignal) => {
        saveSignal = signal;
        saving();
        // A slow disk: settles only when aborted.
        return new Promise<string>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
      },
    });
    const job = jobs.submit(req('slow disk'), { kind: 'palette' }, '/local/slow.png');
    await started;
    await jobs.cancel(job.id);
    const end = await jobs.whenFinished(job);
    assert.equal(saveSignal?.aborted, true);
    assert.equal(end.state, 'cancelled');
    assert.equal(end.error, undefined, 'not a failure');
  });
});

describe('extension: history', () => {
  it('records images per workspace and per .flux block, dropping missing files', () => {
    const store = new Map<string, unknown>();
    const files = new Set(['/ws/a.png', '/ws/b.png']);
    const memento = { get: <T>(k: string) => store.get(k) as T, update: async (k: string, v: unknown) => void store.set(k, v) };
    const h = new History(memento, (p) => files.has(p));
    const key = blockKey('a  cat\n');
    const a = h.add({ file: '/ws/a.png', params: meta('a cat'), fluxFile: '/ws/p.flux', blockKey: key });
    h.add({ file: '/ws/b.png', params: meta('b') });
    assert.equal(blockKey('a cat'), key, 'whitespace does not change a block key');
    assert.deepEqual(h.forBlock('/ws/p.flux', key).map((e) => e.id), [a.id]);
    assert.equal(h.list().length, 2);
    // Survives a reload through the memento.
    const again = new History(memento, (p) => files.has(p));
    assert.equal(again.get(a.id)?.file, '/ws/a.png');
    files.delete('/ws/a.png');
    assert.deepEqual(again.list().map((e) => e.file), ['/ws/b.png']);
    // The input images recorded, without looking at any file (what the dropped-image pruning keeps).
    again.add({ file: '/ws/c.png', params: { ...meta('c'), image: '/gs/inputs/abc.png' } });
    files.clear();
    assert.deepEqual(again.inputImages(), ['/gs/inputs/abc.png']);
    // Garbage in the memento is ignored.
    store.set('majicflux.history', [{ id: 1 }, null, 'x']);
    assert.equal(new History(memento).list().length, 0);
  });
});
