import {
  attachTransport,
  BaseSession,
  fanoutLoop,
  type Message,
  type SendResult,
  type SessionRegistry,
} from '../../src/index.js';
import type { Transport, TransportHost } from '../../src/index.js';

/**
 * An in-memory transport for pure unit tests of the registry: sessions record what they were sent. Never a
 * stand-in for a real socket in transport tests.
 */
export class MemoryTransport<TData = unknown> implements Transport {
  readonly name = 'memory';
  readonly host: TransportHost<TData>;
  fanouts = 0;
  constructor(registry: SessionRegistry<TData>) {
    this.host = attachTransport(registry, this);
  }
  fanout(
    message: Message,
    sessions: ReadonlySet<BaseSession<never>>,
    except: ReadonlySet<BaseSession<never>> | null,
  ) {
    this.fanouts++;
    fanoutLoop(message, sessions, except);
  }
  open(channels: string[], data?: TData): MemorySession<TData> {
    const session = new MemorySession<TData>({
      host: this.host,
      data: data as TData,
      params: {},
      remoteAddress: '127.0.0.1',
      backpressure: this.host.options.backpressure,
    });
    this.host.open(session, channels);
    return session;
  }
  async close(): Promise<void> {}
}

export class MemorySession<TData> extends BaseSession<TData> {
  readonly transport = 'memory';
  readonly received: Message[] = [];
  buffered = 0;
  failWith: Error | null = null;
  closedWith: [number, string] | null = null;
  get bufferedAmount(): number {
    return this.buffered;
  }
  protected write(message: Message): SendResult {
    if (this.failWith !== null) throw this.failWith;
    this.received.push(message);
    return 'sent';
  }
  protected doClose(code: number, reason: string): void {
    this.closedWith = [code, reason];
    queueMicrotask(() => this.host.closed(this, code, reason));
  }
  terminate(): void {
    this.host.closed(this, 1006, '');
  }
  texts(): string[] {
    return this.received.map((m) => (typeof m.data === 'string' ? m.data : m.data.toString('hex')));
  }
}
