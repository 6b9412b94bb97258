/**
 * Where log lines go: stdout, written in batches.
 *
 * One access line per request is the contract; writing each line on its own costs a
 * system call (or a thread-pool round trip) per request, the largest single cost of a
 * proxied request (the README's Performance section has the figures). Lines are gathered and
 * written together when a batch is full or, at the latest, `intervalMs` after the first
 * line of a batch, and at exit. A batch is made of whole lines and at most `maxBatchBytes`
 * bytes, so with `maxBatchBytes` ≤ 4096 (PIPE_BUF) several processes writing to one pipe
 * never interleave inside a line.
 *
 * Writes are synchronous, like pino's default destination. If the descriptor is
 * non-blocking and full (EAGAIN), the rest is written asynchronously and later batches
 * queue behind it, in order; the event loop is never put to sleep.
 */
import { write as writeAsync, writeSync } from 'node:fs';

/** Options of a {@link BatchedLineWriter}. */
export interface LineWriterOptions {
  /** File descriptor (default 1, stdout). */
  fd?: number;
  /** Largest batch in bytes; a single longer line is written alone. Default 16384. */
  maxBatchBytes?: number;
  /** Longest time a line waits in a batch. Default 100 ms. */
  intervalMs?: number;
  /** Longest wait at exit for a full stdout pipe to take the last lines. Default {@link EXIT_WAIT_MS}. */
  exitWaitMs?: number;
}

/** Default longest wait at exit for a full stdout pipe to take the last lines. */
export const EXIT_WAIT_MS = 2000;
const PAUSE = new Int32Array(new SharedArrayBuffer(4));

/**
 * A pino destination that writes whole lines in batches (see the module comment). Its
 * methods are pino's destination interface (`write`, `flush`) and nothing that pino
 * would take for an event emitter's: pino calls `emit('message', ...)` on a destination
 * that has an `emit` method.
 */
export class BatchedLineWriter {
  private readonly fd: number;
  private readonly maxBatchBytes: number;
  private readonly intervalMs: number;
  private readonly exitWaitMs: number;
  /** The batch being gathered: `used` bytes of whole lines, UTF-8; reused once written. */
  private readonly batch: Buffer;
  private used = 0;
  private timer: NodeJS.Timeout | null = null;
  /** Batches waiting behind an asynchronous write (after EAGAIN), oldest first. */
  private readonly queued: Buffer[] = [];
  private asyncWriting = false;
  private readonly flushBound = (): void => this.flush();
  /**
   * At exit: whatever is queued or gathered, in order, synchronously (an asynchronous write
   * cannot finish any more). A full non-blocking pipe is waited for, up to `exitWaitMs`
   * in all, so a slow log reader does not lose the last lines. (Only
   * when `process.exit()` is called while an asynchronous write is in flight can the part of
   * the first batch it had written appear twice; a natural exit never has one in flight.)
   */
  readonly flushAtExit = (): void => {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.used > 0) this.queued.push(Buffer.from(this.batch.subarray(0, this.used)));
    this.used = 0;
    const deadline = Date.now() + this.exitWaitMs;
    for (const b of this.queued.splice(0)) {
      let off = 0;
      while (off < b.length) {
        try {
          off += writeSync(this.fd, b, off);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || Date.now() > deadline) return;
          Atomics.wait(PAUSE, 0, 0, 1); // 1 ms: the reader is behind
        }
      }
    }
  };

  constructor(opts: LineWriterOptions = {}) {
    this.fd = opts.fd ?? 1;
    this.maxBatchBytes = opts.maxBatchBytes ?? 16384;
    this.intervalMs = opts.intervalMs ?? 100;
    this.exitWaitMs = opts.exitWaitMs ?? EXIT_WAIT_MS;
    this.batch = Buffer.allocUnsafe(this.maxBatchBytes);
    process.once('exit', this.flushAtExit);
  }

  /** Adds one line (pino passes each line with its newline). */
  write(line: string): boolean {
    // A string of n UTF-16 code units is at most 3n bytes of UTF-8: only a line that might
    // not fit in what is left of the batch is measured.
    if (this.used + 3 * line.length > this.maxBatchBytes) {
      const n = Buffer.byteLength(line);
      if (this.used + n > this.maxBatchBytes) {
        this.flush();
        if (n > this.maxBatchBytes) {
          this.send(Buffer.from(line)); // longer than a batch: written alone
          return true;
        }
      }
    }
    this.used += this.batch.write(line, this.used);
    if (this.used >= this.maxBatchBytes) this.flush();
    else if (this.timer === null) {
      this.timer = setTimeout(this.flushBound, this.intervalMs);
      this.timer.unref();
    }
    return true;
  }

  /** Writes what is gathered now (pino calls this on `logger.flush()`). */
  flush(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.used === 0) return;
    const n = this.used;
    this.used = 0;
    this.send(this.batch.subarray(0, n));
  }

  /** Writes `bytes` now, or queues a copy of them behind an asynchronous write in progress. */
  private send(bytes: Buffer): void {
    if (this.asyncWriting) this.queued.push(Buffer.from(bytes));
    else this.writeOut(bytes);
  }

  /** Writes a batch synchronously; what the descriptor does not take now goes to the asynchronous queue. */
  private writeOut(batch: Buffer): void {
    let off = 0;
    try {
      while (off < batch.length) off += writeSync(this.fd, batch, off);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') return; // stdout closed: nothing to do
      this.asyncWriting = true;
      this.queued.unshift(Buffer.from(batch.subarray(off))); // a copy: the batch buffer is reused
      this.drainQueue();
    }
  }

  /** Writes the queue asynchronously, oldest first; a full descriptor is retried 10 ms later. */
  private drainQueue(): void {
    const head = this.queued[0];
    if (head === undefined) {
      this.asyncWriting = false;
      return;
    }
    writeAsync(this.fd, head, 0, head.length, null, (err, n) => {
      if (err && err.code !== 'EAGAIN') {
        this.queued.length = 0; // stdout closed
        this.asyncWriting = false;
        return;
      }
      if (err) return void setTimeout(() => this.drainQueue(), 10).unref();
      if (n < head.length) this.queued[0] = head.subarray(n);
      else this.queued.shift();
      this.drainQueue();
    });
  }
}
