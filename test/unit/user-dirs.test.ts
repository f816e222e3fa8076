import * as assert from 'node:assert/strict';
import { cacheRoot } from '../../src/inference/system/userDirs';

describe('the cache folder on each platform (userDirs.cacheRoot)', () => {
  it('Linux: ~/.cache/majicflux, or under $XDG_CACHE_HOME', () => {
    assert.equal(cacheRoot({}, '/home/ana', 'linux'), '/home/ana/.cache/majicflux');
    assert.equal(cacheRoot({ XDG_CACHE_HOME: '/fast/cache' }, '/home/ana', 'linux'), '/fast/cache/majicflux');
  });

  it('Windows: %LOCALAPPDATA%\\majicflux, with backslashes', () => {
    assert.equal(cacheRoot({ LOCALAPPDATA: 'C:\\Users\\Ana\\AppData\\Local' }, 'C:\\Users\\Ana', 'win32'), 'C:\\Users\\Ana\\AppData\\Local\\majicflux');
    assert.equal(cacheRoot({}, 'C:\\Users\\Ana', 'win32'), 'C:\\Users\\Ana\\AppData\\Local\\majicflux', 'without LOCALAPPDATA');
  });

  it('macOS: ~/Library/Caches/majicflux', () => {
    assert.equal(cacheRoot({}, '/Users/ana', 'darwin'), '/Users/ana/Library/Caches/majicflux');
  });
});
