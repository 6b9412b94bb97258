/**
 * Noticing that files were replaced, the way editors, Kubernetes volumes and cert-manager
 * replace them. Shared by the config reload (src/reload.ts) and the TLS certificate
 * reload (src/server/tls.ts).
 *
 * The DIRECTORIES are watched, not the files: editors replace files by rename, and a
 * Kubernetes ConfigMap or Secret volume updates by writing a new timestamped directory and
 * atomically renaming the `..data` symlink that `tls.crt -> ..data/tls.crt` points
 * through; a watch on the old file would never fire again. Events are debounced, and the
 * caller compares a content hash ({@link contentHash}), so a burst of events (or one
 * touching other files) acts at most once, and only when the content changed.
 */
import { createHash } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';

/** SHA-256 (hex) over `parts`, each length-prefixed: what was read, to compare with the last one taken. */
export function contentHash(...parts: ReadonlyArray<string | Uint8Array>): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(`${Buffer.byteLength(p)}:`).update(p);
  return h.digest('hex');
}

/** Options for {@link watchFileDirs}. */
export interface WatchOptions {
  /** Quiet time after the last event before `onChange` runs (default 250 ms). */
  debounceMs?: number;
  /** Longest a burst of events may postpone `onChange` (default 4 × debounceMs). */
  maxWaitMs?: number;
  /** A watcher failed after it started (the directory went away, ...). */
  onError(e: Error): void;
}

/**
 * Watches the directories of `files` and calls `onChange` after each burst of events
 * there. Any entry may matter (`..data`, a temp file renamed over ours, ours): every event
 * restarts the debounce, but another file that keeps changing cannot postpone `onChange`
 * for ever (at most `maxWaitMs` after the burst's first event). Throws when a directory
 * cannot be watched (nothing is left watching then); returns the function that stops.
 */
export function watchFileDirs(files: readonly string[], onChange: () => void, opts: WatchOptions): () => void {
  const debounceMs = opts.debounceMs ?? 250;
  const maxWaitMs = opts.maxWaitMs ?? debounceMs * 4;
  let timer: NodeJS.Timeout | null = null;
  let firstEventAt = 0;
  const onEvent = (): void => {
    const now = Date.now();
    if (timer) clearTimeout(timer);
    else firstEventAt = now;
    timer = setTimeout(() => {
      timer = null;
      onChange();
    }, Math.max(0, Math.min(debounceMs, firstEventAt + maxWaitMs - now)));
  };
  const watchers: FSWatcher[] = [];
  const stop = (): void => {
    if (timer) clearTimeout(timer);
    timer = null;
    for (const w of watchers) w.close();
  };
  try {
    for (const dir of new Set(files.map((f) => dirname(f)))) {
      const w = watch(dir, { persistent: false }, onEvent);
      w.on('error', opts.onError);
      watchers.push(w);
    }
  } catch (e) {
    stop();
    throw e;
  }
  return stop;
}
