/**
 * The one channel between a cluster worker and its primary: typed questions with answers
 * (or an error answer), and one-way notices, over Node's IPC. Everything that crosses
 * processes goes through it, so a question never waits on a handler that failed: a
 * handler that throws sends back an error answer, and the asker's promise rejects.
 *
 * @example
 *   const ch = new Channel(process);                        // in a worker
 *   ch.serve({ readiness: () => gw.readiness() });
 *   const fresh = await ch.ask('replay', { key, ttlMs }, 1000);
 */
import type { Worker } from 'node:cluster';
import type { Config } from '../config/schema.js';

/** What `/readyz` says about a gateway process. */
export interface Readiness {
  ready: boolean;
  reason?: string;
  /** The cluster primary's answer: how many workers are ready. */
  workers?: number;
}

/** Every question that crosses processes, with its payload and its answer. */
export interface Questions {
  /** Primary → worker: is this worker ready (`/readyz` of the pod)? */
  readiness: { ask: null; answer: Readiness };
  /** Worker → primary: remember a DPoP proof id; true when it was not seen before. */
  replay: { ask: { key: string; ttlMs: number }; answer: boolean };
  /**
   * Worker → primary, once at start: the config the primary read and validated (the first
   * workers compile it instead of reading the file), and the hash of its text; null once
   * the pod has started (a replacement worker reads the file, as the others reload it).
   */
  config: { ask: null; answer: { source: Config; textHash: string } | null };
}

/** One-way messages: a worker's listeners are up; the primary asks a worker to drain. */
export type Notice = 'started' | 'drain';

type Kind = keyof Questions;
type Handlers = { [K in Kind]?: (payload: Questions[K]['ask']) => Questions[K]['answer'] | Promise<Questions[K]['answer']> };

const TAG = 'tokengate';

type Message =
  | { tag: typeof TAG; ask: Kind; id: number; payload: unknown }
  | { tag: typeof TAG; answer: number; ok: true; value: unknown }
  | { tag: typeof TAG; answer: number; ok: false; error: string }
  | { tag: typeof TAG; notice: Notice };

/** Why a question got no answer: the other end is gone, it did not answer in time, or its handler failed. */
export class ChannelError extends Error {
  constructor(readonly kind: 'closed' | 'timeout' | 'failed', message: string) {
    super(message);
    this.name = 'ChannelError';
  }
}

/** One end of the IPC link: `process` in a worker, a `Worker` in the primary. */
export type Endpoint = NodeJS.Process | Worker;

interface Pending {
  resolve(value: unknown): void;
  reject(err: ChannelError): void;
  timer: NodeJS.Timeout;
}

/** A send to a process that has gone: nothing to do (see {@link Channel.send}). */
const IGNORE_SEND_ERROR = (): void => {};

/** A typed, request/answer channel over one IPC endpoint. */
export class Channel {
  private readonly pending = new Map<number, Pending>();
  private seq = 0;
  private handlers: Handlers = {};
  private readonly noticeListeners = new Map<Notice, Array<() => void>>();

  constructor(private readonly endpoint: Endpoint) {
    (endpoint as NodeJS.EventEmitter).on('message', (m: Message) => this.receive(m));
    // A closed link answers nothing more: fail what waits now rather than at its timeout.
    (endpoint as NodeJS.EventEmitter).on('disconnect', () => {
      for (const [id, p] of this.pending) this.settle(id, p, () => p.reject(new ChannelError('closed', 'the other process is gone')));
    });
  }

  private get open(): boolean {
    const ep = this.endpoint;
    return 'isConnected' in ep ? ep.isConnected() : ep.connected === true && typeof ep.send === 'function';
  }

  private send(m: Message): void {
    // With a callback a send that fails (the other process exited in between: EPIPE) is
    // reported here instead of as an 'error' event that would crash this process. What
    // waits for an answer then fails at its timeout or at 'disconnect'.
    if (this.open) (this.endpoint as { send(m: unknown, cb: (err: Error | null) => void): unknown }).send(m, IGNORE_SEND_ERROR);
  }

  /**
   * Asks the other end; rejects with a {@link ChannelError} when the link is closed, no
   * answer comes within `timeoutMs`, or the handler there failed. Callers fail closed.
   */
  ask<K extends Kind>(kind: K, payload: Questions[K]['ask'], timeoutMs: number): Promise<Questions[K]['answer']> {
    return new Promise((resolve, reject) => {
      if (!this.open) return reject(new ChannelError('closed', 'the other process is gone'));
      const id = ++this.seq;
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new ChannelError('timeout', `no answer to ${kind} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.send({ tag: TAG, ask: kind, id, payload });
    });
  }

  /** Answers the questions that arrive, one handler per kind (a kind without one gets an error answer). */
  serve(handlers: Handlers): void {
    this.handlers = { ...this.handlers, ...handlers };
  }

  /** Sends a one-way notice. */
  notify(notice: Notice): void {
    this.send({ tag: TAG, notice });
  }

  /** Calls `listener` on every `notice` that arrives. */
  onNotice(notice: Notice, listener: () => void): void {
    const list = this.noticeListeners.get(notice) ?? [];
    list.push(listener);
    this.noticeListeners.set(notice, list);
  }

  private settle(id: number, p: Pending, how: () => void): void {
    this.pending.delete(id);
    clearTimeout(p.timer);
    how();
  }

  private receive(m: Message): void {
    if (m === null || typeof m !== 'object' || m.tag !== TAG) return; // prom-client's and Node's own messages
    if ('notice' in m) {
      for (const l of this.noticeListeners.get(m.notice) ?? []) l();
    } else if ('ask' in m) {
      void this.answer(m.ask, m.id, m.payload);
    } else {
      const p = this.pending.get(m.answer);
      if (!p) return; // answered after its timeout
      this.settle(m.answer, p, () => (m.ok ? p.resolve(m.value) : p.reject(new ChannelError('failed', m.error))));
    }
  }

  private async answer(kind: Kind, id: number, payload: unknown): Promise<void> {
    const handler = this.handlers[kind] as ((p: unknown) => unknown) | undefined;
    try {
      if (!handler) throw new Error(`no handler for ${kind}`);
      this.send({ tag: TAG, answer: id, ok: true, value: await handler(payload) });
    } catch (e) {
      // The message names the failure only (handlers never see tokens: replay keys are hashes).
      this.send({ tag: TAG, answer: id, ok: false, error: (e as Error)?.message ?? 'failed' });
    }
  }
}
