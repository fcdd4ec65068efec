/**
 * The soak's clients: the mixed load (streamed and whole answers, clients
 * that hang up, malformed requests) and the bursts past the queue, drawn from
 * a seeded PRNG and judged into the soak's counters and incidents.
 *
 * @module
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Rng } from '../src/util/index.js';
import { REQUEST_TIMEOUT_MS, type Incident, type Kind, type SoakCounters } from './soak-counters.js';
import { exchange, send, type Malformed, type SoakCase } from './soak-requests.js';
import type { Server } from './soak-server.js';

/** What the clients send to, draw from and record into. */
export interface SoakClientsSetup {
  server: Server;
  cases: readonly SoakCase[];
  /** Each case's solo text, which every finished answer must equal. */
  expected: ReadonlyMap<string, string>;
  malformed: readonly Malformed[];
  counters: SoakCounters;
  incidents: Incident[];
  seed: number;
  /** The server's batch slots and queue: a burst sends 8 more requests than both hold. */
  maxRunning: number;
  maxQueued: number;
}

export class SoakClients {
  private readonly rand: () => number;

  constructor(private readonly setup: SoakClientsSetup) {
    // Seeded: the same seed gives the same mix of requests.
    const generator = new Rng(setup.seed);
    this.rand = () => generator.next();
  }

  /** One client's next request, by weight. */
  async mixed(): Promise<void> {
    const r = this.rand();
    if (r < 0.55) await this.generation('stream', true);
    else if (r < 0.7) await this.generation('whole', false);
    else if (r < 0.82) await this.generation('disconnect', true);
    else await this.sendMalformed();
  }

  /** More streams at once than the server's slots and queue hold: some must be refused with 429. */
  async burst(): Promise<void> {
    const { maxRunning, maxQueued, counters } = this.setup;
    const size = maxRunning + maxQueued + 8;
    counters.bursts.count += 1;
    counters.bursts.sent += size;
    await Promise.all(Array.from({ length: size }, () => this.generation('burst', true)));
  }

  private pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.rand() * items.length)]!;
  }

  private async generation(kind: Kind, streamed: boolean): Promise<void> {
    const { server, cases, expected, counters, incidents } = this.setup;
    const rand = this.rand;
    const soakCase = this.pick(cases);
    const hangUp = kind === 'disconnect' ? (rand() < 0.3 ? { abortAfterMs: Math.floor(rand() * 20) } : { abortAfterFrames: Math.floor(rand() * 6) }) : {};
    const outcome = await send(server.url, soakCase, {
      stream: streamed,
      apiKey: server.apiKey,
      timeoutMs: REQUEST_TIMEOUT_MS,
      includeUsage: rand() < 0.3,
      ...hangUp,
    });
    counters.judgeGeneration(incidents, kind, soakCase, expected.get(soakCase.id), outcome);
    // A client told to come back later (429, 503) waits a little, as the OpenAI clients do.
    if (kind !== 'burst' && (outcome.status === 429 || outcome.status === 503)) await sleep(rand() * 1000 * Math.min(1, Number(outcome.retryAfter ?? 1)));
  }

  private async sendMalformed(): Promise<void> {
    const { server, malformed, counters, incidents } = this.setup;
    const bad = this.pick(malformed);
    const key: Record<string, string> = bad.key === false ? {} : { authorization: `Bearer ${bad.key === 'wrong' ? 'soak-wrong-key' : server.apiKey}` };
    const outcome = await exchange(server.url, bad.path, bad.body, { 'content-type': 'application/json', ...key }, { timeoutMs: REQUEST_TIMEOUT_MS });
    counters.judgeMalformed(incidents, bad, outcome);
  }
}
