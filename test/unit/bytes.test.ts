import * as assert from 'node:assert/strict';
import { formatBytes } from '../../src/shared/bytes';

const KiB = 1024;
const MiB = 2 ** 20;
const GiB = 2 ** 30;

describe('formatBytes (src/shared/bytes.ts): every size shown to a user', () => {
  it('whole bytes below 1 KiB', () => {
    assert.equal(formatBytes(0), '0 B');
    assert.equal(formatBytes(1023), '1023 B');
  });

  it('the largest binary unit that keeps the number ≥ 1, 2 decimals below 10 and 1 from 10', () => {
    assert.equal(formatBytes(1536), '1.50 KiB');
    assert.equal(formatBytes(3 * MiB), '3.00 MiB');
    assert.equal(formatBytes(250 * MiB), '250.0 MiB');
    assert.equal(formatBytes(0.25 * GiB), '256.0 MiB');
    assert.equal(formatBytes(9.1 * GiB), '9.10 GiB');
    assert.equal(formatBytes(23.8 * GiB), '23.8 GiB');
    assert.equal(formatBytes(2048 * GiB), '2.00 TiB');
    assert.equal(formatBytes(10 * KiB - 1), '10.0 KiB');
    assert.equal(formatBytes(MiB - 1), '1.00 MiB');
  });

  it('"?" for what is no size', () => {
    for (const v of [-1, NaN, Infinity]) assert.equal(formatBytes(v), '?');
  });
});
