// `majicflux serve` as its owner starts it: what would fail a remote client's first job (a model
// that is not there, an output folder that cannot be made) is said at start, at the terminal, and
// nothing listens.

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { runCli } from '../helpers/cli';

const TINY = path.resolve(__dirname, '..', 'fixtures', 'flux-tiny', 'models');

describe('CLI: majicflux serve, refused at start', function () {
  this.timeout(60_000);
  let tmp: string;

  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-serve-'));
    fs.writeFileSync(path.join(tmp, 'a-file'), 'x');
  });

  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  // Each used to print "listening" and a token; the client heard of the problem at its first job.
  it('a missing or incomplete --model, an --output-dir, --models-dir or --inputs-dir that cannot be used', async () => {
    const file = path.join(tmp, 'a-file');
    for (const [args, code, why] of [
      [['--model', path.join(tmp, 'no-such-model')], 1, /Model folder not found: .*no-such-model/],
      [['--model', path.join(TINY, 'transformer')], 1, /The model in .*transformer is incomplete\. Missing: no VAE found/],
      [['--output-dir', file], 2, /--output-dir: cannot create a folder in .*a-file: it is a file/],
      [['--output-dir', path.join(file, 'sub')], 2, /--output-dir: cannot create a folder in .*a-file: it is a file/],
      [['--models-dir', file], 2, /--models-dir: cannot create a folder in .*a-file: it is a file/],
      [['--inputs-dir', path.join(tmp, 'no-such-folder')], 2, /--inputs-dir: .*no-such-folder is not a folder; create it/],
    ] as const) {
      const r = await runCli(['serve', '--port', '0', ...args], tmp, { killAfterMs: 15_000 });
      assert.equal(r.code, code, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, why);
      assert.doesNotMatch(r.stdout, /listening|Token/, 'nothing listens');
      assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
    }
    assert.ok(!fs.existsSync(path.join(tmp, 'generated')), 'no output folder made for a server that did not start');
  });

  // A stack trace: "Error: getaddrinfo ENOTFOUND no-such-host.invalid at GetAddrInfoReqWrap.onlookup".
  it('a --host that does not resolve is a bad argument, without a stack trace', async () => {
    const r = await runCli(['serve', '--port', '0', '--host', 'no-such-host.invalid', '--output-dir', path.join(tmp, 'out')], tmp, { killAfterMs: 30_000 });
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stderr, /^majicflux serve: --host no-such-host\.invalid: no such host name here \((ENOTFOUND|EAI_AGAIN)\); give an address of this machine, or leave --host out for 127\.0\.0\.1$/m);
    assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
  });

  // It said "cannot listen: listen EADDRINUSE: address already in use 127.0.0.1:7860".
  it('a port in use says so and what to do, exit 1', async () => {
    const taken = net.createServer();
    const port = await new Promise<number>((resolve) => taken.listen(0, '127.0.0.1', () => resolve((taken.address() as net.AddressInfo).port)));
    try {
      const r = await runCli(['serve', '--port', String(port), '--output-dir', path.join(tmp, 'out')], tmp, { killAfterMs: 15_000 });
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stderr, new RegExp(`^majicflux serve: port ${port} of 127\\.0\\.0\\.1 is already in use \\(another majicflux serve\\?\\): stop that, or choose another with --port N \\(0 picks a free one\\)$`, 'm'));
    } finally {
      taken.close();
    }
  });
});
