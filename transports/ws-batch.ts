import type { Message } from '../src/message.js';

/**
 * Write coalescing for the ws transport.
 *
 * Every message a session receives during one event-loop turn is held back and written at the end of the turn
 * as one buffer. Sessions that received the same messages in the same order share one node of this trie, so
 * the concatenated bytes are built once per distinct sequence (usually once per turn for a whole channel),
 * not once per socket: a burst of ten publishes costs one `socket.write` of shared bytes per session.
 */
export class Run {
  readonly parent: Run | null;
  readonly message: Message | null;
  readonly frame: Buffer | null;
  /** Frame bytes from the root to here. */
  readonly bytes: number;
  #nextMessage: Message | null = null;
  #next: Run | null = null;
  #more: Map<Message, Run> | null = null;
  #joined: Buffer | null = null;

  constructor(parent: Run | null, message: Message | null, frame: Buffer | null) {
    this.parent = parent;
    this.message = message;
    this.frame = frame;
    this.bytes = (parent?.bytes ?? 0) + (frame?.length ?? 0);
  }

  /** The node for this sequence followed by `message`; one lookup, no allocation when it exists. */
  child(message: Message, frame: Buffer): Run {
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

  /** The messages from the root to here, oldest first. */
  messages(): Message[] {
    const out: Message[] = [];
    for (let run: Run | null = this; run !== null && run.message !== null; run = run.parent)
      out.push(run.message);
    return out.reverse();
  }
}
