// Where MajicFLUX keeps what it makes on the user's machine (converted weights, the demo model,
// downloaded models, recorded checksums): one folder, in the place each platform reserves for
// caches, so it is found, cleaned and excluded from backups the way the user expects.

import * as os from 'node:os';
import * as path from 'node:path';

/**
 * The cache root: $XDG_CACHE_HOME/majicflux when set (any platform), else ~/.cache/majicflux on
 * Linux, %LOCALAPPDATA%\majicflux on Windows, ~/Library/Caches/majicflux on macOS.
 */
export function cacheRoot(env: NodeJS.ProcessEnv = process.env, home = os.homedir(), platform: NodeJS.Platform = process.platform): string {
  const p = platform === 'win32' ? path.win32 : path.posix;
  if (env.XDG_CACHE_HOME) return p.join(env.XDG_CACHE_HOME, 'majicflux');
  if (platform === 'win32') return p.join(env.LOCALAPPDATA || p.join(home, 'AppData', 'Local'), 'majicflux');
  if (platform === 'darwin') return p.join(home, 'Library', 'Caches', 'majicflux');
  return p.join(home, '.cache', 'majicflux');
}
