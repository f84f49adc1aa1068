// One started virtqueue of the device: kick watching, draining, completion batching, stop/pause.
// Generic over what the chains mean; the virtio-scsi queues plug in a ChainHandler.
//
// Per wakeup: read the kick counter, drain the avail ring with notifications disabled, re-enable
// and re-check (virtio 1.2 §2.7.10 race), then publish used->idx once and send at most one call.
// Completions that arrive later (file I/O) are batched to the libuv check phase (setImmediate),
// so all completions of one loop iteration cost one used->idx store and one eventfd write.

import { SplitQueue, VirtqueueError, hasFeature, VirtioFeature, type DescriptorChain, type GuestMemory } from '../virtqueue';
import type { VringSetup } from './vhost-user/device';
import type { Poller } from './binding';
import { native } from './native';
import type { Logger } from './log';

/** What a queue kind does with its chains. */
export interface ChainHandler {
  /** Take a popped chain. Complete it now or later with vring.complete(). Throwing a VirtqueueError breaks the queue. */
  handle(chain: DescriptorChain): void;
  /**
   * Chains the handler keeps without a deadline (event-queue buffers). On stop or pause they are
   * given back: the handler forgets them and returns how many, and the ring is rewound by that
   * many avail entries so they are popped again after restart. They must be the most recently
   * popped chains (FIFO use guarantees it).
   */
  releaseHeld(): number;
  /** Number of chains currently held by releaseHeld()'s rules. */
  heldCount(): number;
}

export const CHAINS_PER_TURN = 64; // V8.2: then yield to the loop so the socket and other queues get served
export const DEFAULT_STOP_DEADLINE_MS = 3000; // V8.3, like SPDK's session stop timeout
/**
 * During a long drain, publish used->idx (and call, if the driver's used_event asks for it)
 * every this many completions instead of once at the end. A driver on another vCPU then starts
 * refilling while the rest of the batch is still being served, instead of both sides taking
 * turns a whole batch at a time; EVENT_IDX keeps the extra calls to the driver's re-arms.
 * Measured with bench/'s generator split across vCPUs, 4 KiB QD32: about +40 % IOPS at 16
 * (0.06 calls/IO), similar at 8 (0.12), less at 1 and 4 (0.25-0.6 calls/IO).
 */
export const PUBLISH_EVERY = 16;
/** Upper bound of the spin-before-sleep option: beyond this, polling starves the other side on a small box. */
export const MAX_POLL_US = 1000;

export interface VringOptions {
  /** GET_VRING_BASE / memory-table pause waits this long for in-flight requests (V8.3). */
  stopDeadlineMs?: number;
  /** Spin-before-sleep budget after a drain, µs (0..MAX_POLL_US; default 0). */
  pollUs?: number;
  /** Runs after every drain: an I/O engine submits what the drain queued (one io_uring_enter per batch). */
  afterDrain?: () => void;
}

type State = 'running' | 'pausing' | 'paused' | 'stopping' | 'stopped' | 'broken';

export class Vring {
  readonly index: number;
  private queue: SplitQueue;
  private poller: Poller | null = null;
  private state: State = 'running';
  private enabled: boolean;
  private callFd: number;
  private readonly errFd: number;
  private readonly kickFd: number;
  private flushScheduled = false;
  private draining = false;
  /** completions since the last publication during this drain */
  private drainCompleted = 0;
  private drainScheduled = false;
  private pendingPublish = false;
  private waiter: ((lastAvailIdx: number) => void) | null = null;
  private deadline: NodeJS.Timeout | null = null;
  private readonly config: VringSetup;
  /** Counters for benchmarks and tests. spinHits: drains that found work while spinning. */
  readonly stats = { kicks: 0, calls: 0, chains: 0, spinHits: 0 };
  /** Spin-before-sleep budget in ms (0: re-arm at once). */
  private readonly pollMs: number;
  private readonly stopDeadlineMs: number;
  private readonly afterDrain: (() => void) | null;

  constructor(
    setup: VringSetup,
    private readonly handler: ChainHandler,
    private readonly log: Logger,
    opts: VringOptions = {},
  ) {
    const pollUs = opts.pollUs ?? 0;
    if (!(pollUs >= 0 && pollUs <= MAX_POLL_US)) throw new RangeError(`pollUs must be 0..${MAX_POLL_US}, got ${pollUs}`);
    this.pollMs = pollUs / 1000;
    this.stopDeadlineMs = opts.stopDeadlineMs ?? DEFAULT_STOP_DEADLINE_MS;
    this.afterDrain = opts.afterDrain ?? null;
    this.index = setup.index;
    this.config = setup;
    this.enabled = setup.enabled;
    this.callFd = setup.callFd;
    this.errFd = setup.errFd;
    this.kickFd = setup.kickFd;
    this.queue = this.makeQueue(setup.memory, setup.lastAvailIdx); // throws VirtqueueError on a bad ring
    if (this.kickFd >= 0) {
      this.poller = native.createPoller(this.kickFd, (status) => this.onKick(status));
      this.poller.start(1);
    }
    // Buffers may already be waiting (a guest that kicked before we started, or a reconnect).
    this.scheduleDrain();
  }

  private makeQueue(memory: GuestMemory, lastAvailIdx: number): SplitQueue {
    const f = this.config.features;
    return new SplitQueue(
      memory,
      {
        size: this.config.size,
        descTable: this.config.descTable,
        availRing: this.config.availRing,
        usedRing: this.config.usedRing,
        eventIdx: hasFeature(f, VirtioFeature.RING_EVENT_IDX),
        indirect: hasFeature(f, VirtioFeature.RING_INDIRECT_DESC),
      },
      lastAvailIdx,
    );
  }

  get size(): number { return this.config.size; }
  get features(): bigint { return this.config.features; }

  /** True while completions may still be written to guest memory. */
  get live(): boolean {
    return this.state === 'running' || this.state === 'pausing' || this.state === 'stopping';
  }

  setEnabled(enabled: boolean): void {
    this.enabled = enabled;
    if (enabled) this.scheduleDrain();
  }

  setCallFd(fd: number): void {
    this.callFd = fd;
  }

  private onKick(status: number): void {
    if (status < 0) {
      this.fail(`kick fd poll error ${status}`);
      return;
    }
    native.eventfdRead(this.kickFd);
    this.stats.kicks++;
    this.drain();
  }

  private scheduleDrain(): void {
    if (this.drainScheduled) return;
    this.drainScheduled = true;
    setImmediate(this.drainFromLoop);
  }

  private readonly drainFromLoop = (): void => {
    this.drainScheduled = false;
    this.drain();
  };

  private drain(): void {
    if (this.state !== 'running' || !this.enabled) return;
    let budget = CHAINS_PER_TURN;
    this.draining = true;
    try {
      for (;;) {
        this.queue.disableNotification();
        let chain: DescriptorChain | null = null;
        while (budget > 0 && this.state === 'running' && (chain = this.queue.pop()) !== null) {
          budget--;
          this.stats.chains++;
          this.handler.handle(chain);
        }
        if (this.state !== 'running') break;
        if (budget === 0) {
          // Leave notifications off: we come back on the next turn anyway.
          this.scheduleDrain();
          break;
        }
        // With notifications still off, a driver on another vCPU can add buffers without the
        // 20-60 µs kick-and-wakeup round trip (performance.md §1.3).
        if (this.pollMs > 0 && this.spin()) continue;
        if (!this.queue.enableNotification()) break;
      }
    } catch (err) {
      if (err instanceof VirtqueueError) {
        this.fail(`${err.code}: ${err.message}`);
        return;
      }
      throw err;
    } finally {
      this.draining = false;
      if (this.afterDrain !== null) this.afterDrain();
    }
    this.flush();
  }

  /** Publish what completed, then watch avail->idx for up to pollMs; true if buffers arrived. */
  private spin(): boolean {
    this.flush();
    const queue = this.queue;
    const end = performance.now() + this.pollMs;
    do {
      if (queue.hasAvailable()) {
        this.stats.spinHits++;
        return true;
      }
    } while (performance.now() < end);
    return false;
  }

  /** Record a finished chain. writtenLen = bytes the device wrote into the chain's writable part. */
  complete(chain: DescriptorChain, writtenLen: number): void {
    if (!this.live) return; // abandoned after a stop deadline: never touch guest memory again
    this.queue.pushUsed(chain, writtenLen);
    this.pendingPublish = true;
    if (this.draining) {
      // Inside drain() the drain's own flush publishes the rest: no loop turn, no Immediate object.
      if (++this.drainCompleted >= PUBLISH_EVERY) this.flush();
    } else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushFromLoop);
    }
    if (this.waiter && this.pendingCount() === 0) this.finishWait();
  }

  private readonly flushFromLoop = (): void => {
    this.flushScheduled = false;
    this.flush();
  };

  private flush(): void {
    this.drainCompleted = 0;
    if (!this.pendingPublish || !this.live) return;
    this.pendingPublish = false;
    if (this.queue.publishUsed() && this.callFd >= 0) {
      native.eventfdWrite(this.callFd, 1);
      this.stats.calls++;
    }
  }

  /** Chains popped and not completed, not counting the ones the handler can give back. */
  private pendingCount(): number {
    return this.queue.inFlight - this.handler.heldCount();
  }

  /** The queue is broken by a driver error: stop it for good, tell the frontend (err fd), keep the process. */
  fail(reason: string): void {
    if (this.state === 'broken' || this.state === 'stopped') return;
    this.log.rateLimited(`vring-broken-${this.index}`, 'error', `virtqueue ${this.index} broken: ${reason}`);
    this.stopPoller();
    const waiter = this.waiter;
    this.state = 'broken';
    if (this.errFd >= 0) native.eventfdWrite(this.errFd, 1);
    if (waiter) this.finishWait();
  }

  /**
   * GET_VRING_BASE: stop popping, let in-flight requests complete (bounded by the deadline), then
   * report the next avail index to process. Held chains are handed back by rewinding.
   */
  stop(done: (lastAvailIdx: number) => void): void {
    this.stopPoller();
    if (this.state === 'stopped') {
      done(this.resumeIndex());
      return;
    }
    const target: State = 'stopping';
    this.waitIdle(target, 'stopped', done);
  }

  /** Memory-table change: stop touching guest memory until resume(). */
  pause(done: () => void): void {
    this.stopPoller();
    if (this.state === 'broken' || this.state === 'stopped') {
      done();
      return;
    }
    this.waitIdle('pausing', 'paused', () => done());
  }

  resume(memory: GuestMemory | null): void {
    if (this.state !== 'paused') return;
    if (memory === null) {
      this.state = 'stopped';
      return;
    }
    try {
      this.queue = this.makeQueue(memory, this.resumeIndex());
    } catch (err) {
      if (err instanceof VirtqueueError) {
        this.state = 'running';
        this.fail(`after memory change: ${err.code}: ${err.message}`);
        return;
      }
      throw err;
    }
    this.pausedIndex = -1;
    this.state = 'running';
    if (this.kickFd >= 0) {
      this.poller = native.createPoller(this.kickFd, (status) => this.onKick(status));
      this.poller.start(1);
    }
    this.scheduleDrain();
  }

  private pausedIndex = -1;

  private resumeIndex(): number {
    return this.pausedIndex >= 0 ? this.pausedIndex : this.queue.lastAvailIdx;
  }

  private waitIdle(during: State, after: 'stopped' | 'paused', done: (lastAvailIdx: number) => void): void {
    const wasBroken = this.state === 'broken';
    if (!wasBroken) this.state = during;
    this.flush();
    this.waiter = (idx) => {
      if (!wasBroken) this.state = after;
      done(idx);
    };
    if (wasBroken || this.pendingCount() === 0) {
      this.finishWait();
      return;
    }
    this.deadline = setTimeout(() => {
      this.log.warn(`virtqueue ${this.index}: ${this.pendingCount()} request(s) still in flight after ${this.stopDeadlineMs} ms; abandoning them`);
      this.finishWait();
    }, this.stopDeadlineMs);
  }

  private finishWait(): void {
    if (this.deadline) {
      clearTimeout(this.deadline);
      this.deadline = null;
    }
    const waiter = this.waiter;
    if (!waiter) return;
    this.waiter = null;
    this.flush();
    const held = this.handler.releaseHeld();
    this.pausedIndex = (this.queue.lastAvailIdx - held) & 0xffff;
    waiter(this.pausedIndex);
  }

  private stopPoller(): void {
    if (this.poller) {
      this.poller.close();
      this.poller = null;
    }
  }

  /** Final teardown (session end): no more guest-memory access, no fds touched afterwards. */
  destroy(): void {
    this.stopPoller();
    if (this.deadline) clearTimeout(this.deadline);
    this.deadline = null;
    this.waiter = null;
    this.state = 'stopped';
  }
}
