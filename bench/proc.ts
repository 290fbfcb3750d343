/**
 * Child processes of the bench: forked with tsx and the advanced (structured-clone) IPC serialization, each
 * request bounded by a timeout, every child killed when the bench exits, fails or is interrupted.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const live = new Set<ChildProcess>();
let hooked = false;

function killAll(): void {
  for (const child of live) child.kill('SIGKILL');
  live.clear();
}

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      killAll();
      process.stderr.write(`\nbench: ${signal}, child processes stopped\n`);
      process.exit(130);
    });
  }
}

/** Children still running (for a final check). */
export function liveChildren(): number {
  return live.size;
}

/** Kills every child at once (error paths). */
export function killAllChildren(): void {
  killAll();
}

const tsxLoader = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

type Reply = { op: string };
interface Waiter {
  test: (m: Reply) => boolean;
  resolve: (m: Reply) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export class Proc<Cmd, Rep extends Reply> {
  readonly name: string;
  readonly child: ChildProcess;
  #waiters = new Set<Waiter>();
  #exited: Promise<void>;
  #failure: Error | null = null;

  constructor(name: string, script: string, args: string[], execArgv: string[] = []) {
    hookExit();
    this.name = name;
    const path = fileURLToPath(new URL(script, import.meta.url));
    this.child = fork(path, args, {
      execArgv: ['--import', tsxLoader, ...execArgv],
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    live.add(this.child);
    this.#exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        live.delete(this.child);
        this.#fail(new Error(`${name} exited (${signal ?? code})`));
        resolve();
      });
    });
    this.child.on('message', (m: Rep) => {
      if (m.op === 'error') {
        this.#fail(new Error(`${name}: ${(m as unknown as { message: string }).message}`));
        return;
      }
      for (const w of this.#waiters) {
        if (w.test(m)) {
          this.#waiters.delete(w);
          clearTimeout(w.timer);
          w.resolve(m);
          return;
        }
      }
    });
  }

  #fail(err: Error): void {
    this.#failure ??= err;
    for (const w of this.#waiters) {
      clearTimeout(w.timer);
      w.reject(err);
    }
    this.#waiters.clear();
  }

  /** Resolves with the next reply of kind `op` (matching `test`), registered before anything is sent. */
  wait<K extends Rep['op']>(
    op: K,
    timeoutMs: number,
    test: (m: Extract<Rep, { op: K }>) => boolean = () => true,
  ): Promise<Extract<Rep, { op: K }>> {
    if (this.#failure !== null) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        test: (m) => m.op === op && test(m as Extract<Rep, { op: K }>),
        resolve: resolve as (m: Reply) => void,
        reject,
        timer: setTimeout(() => {
          this.#waiters.delete(waiter);
          reject(new Error(`${this.name}: no "${op}" within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.#waiters.add(waiter);
    });
  }

  send(cmd: Cmd): void {
    if (this.#failure !== null) throw this.#failure;
    this.child.send(cmd as object);
  }

  /** Sends `cmd` and waits for the reply `op`. */
  request<K extends Rep['op']>(cmd: Cmd, op: K, timeoutMs: number): Promise<Extract<Rep, { op: K }>> {
    const reply = this.wait(op, timeoutMs);
    this.send(cmd);
    return reply;
  }

  /** Asks the child to stop with `cmd`, kills it after `graceMs`. */
  async stop(cmd: Cmd, graceMs = 5000): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      try {
        this.child.send(cmd as object);
      } catch {
        // already gone
      }
      const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
      await this.#exited;
      clearTimeout(timer);
    }
  }
}
