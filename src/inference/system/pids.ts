// Whether the process that left a file behind (its id in the file's name) still runs: a temp file
// or partial folder of a live process is its work in progress, not litter.

/** True for this process, a running one (another user's too: EPERM), and wherever the answer is unclear; false once it is gone (ESRCH). */
export function processRunning(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}
