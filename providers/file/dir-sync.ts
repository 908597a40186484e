import { close, fsync, open } from './fs.ts';

/** fsync a directory, so the renames and unlinks in it so far survive a power loss. */
export async function fsyncDir(dir: string): Promise<void> {
  const fd = await open(dir, 'r');
  try {
    await fsync(fd);
  } finally {
    await close(fd);
  }
}

/**
 * Share directory fsyncs between concurrent writers (group commit): one fsync makes every rename
 * done before it started durable, so a writer whose rename is done joins the next fsync to start
 * rather than doing its own. The promise resolves once an fsync that started after the call has
 * completed: one already running may have started before the caller's rename, so callers then wait
 * for the one queued behind it, which all of them share.
 */
export function groupCommit(sync: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  let queued: Promise<void> | undefined;
  const start = (): Promise<void> => {
    const p: Promise<void> = sync().finally(() => {
      if (running === p) running = undefined;
    });
    running = p;
    return p;
  };
  return () => {
    if (queued) return queued;
    if (!running) return start();
    const after = (): Promise<void> => {
      queued = undefined;
      return start();
    };
    queued = running.then(after, after);
    return queued;
  };
}
