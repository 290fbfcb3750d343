import type { Duplex } from 'node:stream';
import { MessageBatch, type DropReason, type Message } from '../src/index.js';

/**
 * Write coalescing for the ws transport: the one owner of what a session was sent but not yet written.
 *
 * Every frame a session receives during one event-loop turn is held and written at the end of the turn as one
 * buffer, so a burst of ten publishes costs one `socket.write` per session. Sessions that received the same
 * messages in the same order share one node of a trie (`Run`), so the concatenated bytes are built once per
 * distinct sequence (usually once per turn for a whole channel), not once per socket.
 *
 * Across turns (`window` > 0): a session written less than `window` ms ago is *busy*; what it is sent next is
 * held until the writer's window timer (one for the whole transport, armed by the first busy hold, so nothing
 * waits longer than `window` ms) and then written as one buffer. A session not written for `window` ms is
 * written at the end of the turn as before, so a quiet channel never waits. "Written" is stamped when the
 * flush that wrote it ended: when writing to every socket takes longer than the window (the server is behind),
 * every session stays busy and costs one write per window instead of one per message. The stamp is one small
 * object shared by every session of a flush, kept in the session's `held` slot: nothing per session.
 *
 * Held bytes count toward a session's `bufferedAmount`, so a turn that publishes a lot (a backlog replayed at
 * start-up, a broker's backlog delivered on resume) would make a client that reads as fast as it can look slow:
 * once a session holds `handOff` bytes they are handed to its socket at once, and only what the socket really
 * could not take stays counted. A session whose socket is gone when its bytes are due has them retracted: moved
 * from the delivered count to the dropped count.
 */
export class WsWriter {
  /** Bytes held for one session before they are handed to its socket within the turn. */
  readonly handOff: number;
  /** The longest a busy session's writes are held across turns, in ms; 0: only within a turn. */
  readonly window: number;
  #root = new Run(null, null, null);
  /** Sessions to write at the end of this turn. */
  #pending: WriterTarget[] = [];
  #scheduled = false;
  /** Busy sessions held for the window timer. */
  #waiting: WriterTarget[] = [];
  #timer: NodeJS.Timeout | null = null;
  /** The clock when this turn first held something (read once per turn, only with a window). */
  #now = 0;

  constructor(handOff: number, window = 0) {
    this.handOff = handOff;
    this.window = window;
  }

  /** Bytes held for `target`, not yet handed to its socket. */
  held(target: WriterTarget): number {
    const run = target.held;
    return run instanceof Run ? run.bytes : 0;
  }

  /** Sessions waiting for the window timer (for tests and diagnostics). */
  get waiting(): number {
    return this.#waiting.length;
  }

  /**
   * Holds `frame` (the framed `message`, or the joined frames of a batch) for `target` until the end of the turn
   * (or the window, when the session is busy and not `endOfTurn`), or writes now past `handOff`.
   */
  hold(target: WriterTarget, message: Message | MessageBatch, frame: Buffer, endOfTurn = false): void {
    let run = target.held;
    if (!(run instanceof Run)) {
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(this.#flushTurn);
        if (this.window > 0) this.#now = performance.now();
      }
      if (run !== null && !endOfTurn && this.#now - run.at < this.window) {
        this.#waiting.push(target);
        if (this.#timer === null) this.#timer = setTimeout(this.#flushWindow, this.window).unref();
      } else this.#pending.push(target);
      run = this.#root;
    }
    run = run.child(message, frame);
    if (run.bytes < this.handOff) {
      target.held = run;
      return;
    }
    // Still in its list: the next frame starts a new sequence from the root, shared again by every session
    // that handed off at the same point.
    target.held = this.#root;
    this.#write(target, run);
  }

  /** Writes what is held for `target` now (a close frame must follow the frames sent before it). */
  flush(target: WriterTarget): void {
    const run = target.held;
    if (!(run instanceof Run) || run.frame === null) return;
    target.held = this.#root;
    this.#write(target, run);
  }

  /** Retracts what is held for `target`, never to be written (its socket closed). */
  discard(target: WriterTarget, reason: DropReason): void {
    const run = target.held;
    if (!(run instanceof Run) || run.frame === null) return;
    target.held = this.#root;
    retract(target, run, reason);
  }

  #write(target: WriterTarget, run: Run): void {
    const socket = target.socket();
    if (socket === null) {
      retract(target, run, 'closed');
      return;
    }
    try {
      socket.write(run.joined());
    } catch (err) {
      target.failed(err);
      retract(target, run, 'error');
    }
  }

  /** Writes every session of `list`; each is stamped with the time the whole flush ended. */
  #flush(list: WriterTarget[]): void {
    const stamp = this.window > 0 ? new Stamp() : null;
    for (const target of list) {
      const run = target.held;
      if (!(run instanceof Run)) continue;
      target.held = stamp;
      if (run.frame !== null) this.#write(target, run);
    }
    if (stamp !== null) stamp.at = performance.now();
  }

  // One write per session per turn, however many messages the turn published (below `handOff`).
  readonly #flushTurn = (): void => {
    const pending = this.#pending;
    this.#pending = [];
    this.#scheduled = false;
    this.#root = new Run(null, null, null);
    this.#flush(pending);
  };

  // One write per busy session per window, however many turns published to it.
  readonly #flushWindow = (): void => {
    const waiting = this.#waiting;
    this.#waiting = [];
    this.#timer = null;
    this.#flush(waiting);
  };
}

/**
 * When a session was last written: the end of the flush that wrote it (`performance.now()`). One object per
 * flush, shared by every session it wrote.
 */
export class Stamp {
  at = Infinity;
}

/** One session as the writer sees it. */
export interface WriterTarget {
  /**
   * Owned by the writer: the frames held for this session (a `Run`: it is in the turn's or the window's list);
   * else when it was last written (a `Stamp`), or null.
   */
  held: Run | Stamp | null;
  /** The socket to write to; null when it cannot take a write anymore. */
  socket(): Duplex | null;
  /** A message counted as delivered that will never be written. */
  retracted(message: Message, reason: DropReason): void;
  /** Writing to the socket threw. */
  failed(error: unknown): void;
}

function retract(target: WriterTarget, run: Run, reason: DropReason): void {
  for (const held of run.messages()) {
    if (held instanceof MessageBatch) for (const message of held.messages) target.retracted(message, reason);
    else target.retracted(held, reason);
  }
}

/** A node of the trie of sequences held in one turn: the frames from the root to here. */
export class Run {
  readonly parent: Run | null;
  readonly message: Message | MessageBatch | null;
  readonly frame: Buffer | null;
  /** Frame bytes from the root to here. */
  readonly bytes: number;
  #nextMessage: Message | MessageBatch | null = null;
  #next: Run | null = null;
  #more: Map<Message | MessageBatch, Run> | null = null;
  #joined: Buffer | null = null;

  constructor(parent: Run | null, message: Message | MessageBatch | null, frame: Buffer | null) {
    this.parent = parent;
    this.message = message;
    this.frame = frame;
    this.bytes = (parent?.bytes ?? 0) + (frame?.length ?? 0);
  }

  /** The node for this sequence followed by `message`; one lookup, no allocation when it exists. */
  child(message: Message | MessageBatch, frame: Buffer): Run {
    if (this.#nextMessage === message) return this.#next as Run;
    if (this.#nextMessage === null) {
      this.#nextMessage = message;
      return (this.#next = new Run(this, message, frame));
    }
    const more = (this.#more ??= new Map());
    let run = more.get(message);
    if (run === undefined) more.set(message, (run = new Run(this, message, frame)));
    return run;
  }

  /** All frames from the root to here as one buffer, built once and shared by every session at this node. */
  joined(): Buffer {
    if (this.#joined !== null) return this.#joined;
    if (this.parent !== null && this.parent.frame === null) return (this.#joined = this.frame as Buffer);
    const out = Buffer.allocUnsafe(this.bytes);
    let end = this.bytes;
    for (let run: Run | null = this; run !== null && run.frame !== null; run = run.parent) {
      end -= run.frame.length;
      run.frame.copy(out, end);
    }
    return (this.#joined = out);
  }

  /** The messages (and batches) from the root to here, oldest first. */
  messages(): (Message | MessageBatch)[] {
    const out: (Message | MessageBatch)[] = [];
    for (let run: Run | null = this; run !== null && run.message !== null; run = run.parent)
      out.push(run.message);
    return out.reverse();
  }
}
