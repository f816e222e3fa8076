import * as assert from 'node:assert/strict';
import { closest, editDistance } from '../../src/shared/didYouMean';

describe('didYouMean', () => {
  it('editDistance counts insertions, deletions, substitutions and neighbour swaps as one edit each', () => {
    assert.equal(editDistance('promt', 'prompt'), 1);
    assert.equal(editDistance('prot', 'port'), 1);
    assert.equal(editDistance('seed', 'seed'), 0);
    assert.equal(editDistance('', 'abc'), 3);
    assert.equal(editDistance('kitten', 'sitting'), 3);
  });

  it('closest suggests only names within a third of the typed length (at least one edit)', () => {
    const names = ['prompt', 'port', 'json', 'steps', 'seed'];
    assert.equal(closest('promt', names), 'prompt');
    assert.equal(closest('prot', names), 'port');
    assert.equal(closest('jsn', names), 'json');
    assert.equal(closest('zzzzzz', names), undefined);
  });
});
