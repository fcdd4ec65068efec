/**
 * The soak's server: `offramp serve` as a child process, and what the soak
 * reads from it (metrics, resident memory).
 *
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { PROJECT_ROOT, withHugePages } from '../src/util/index.js';

/** dist/src/main.js, beside this file's dist/bench/soak-server.js. */
const MAIN = fileURLToPath(new URL('../src/main.js', import.meta.url));
const SHARED = path.resolve(PROJECT_ROOT, '..', 'shared', 'models', 'stories260K');

export interface Server {
  url: string;
  apiKey: string;
  pid: number;
  log: string[];
  stop(): Promise<number | null>;
}

/** Starts `offramp serve` on stories260K with its default settings (exits on), on a free loopback port, with the debug routes; resolves once /health is 200. */
export async function startServer(options: { maxRunning: number; maxQueued: number; maxBodyBytes: number }): Promise<Server> {
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'offramp-soak-'));
  const apiKey = `soak-${randomUUID()}`;
  const env: NodeJS.ProcessEnv = { ...process.env, OFFRAMP_CACHE_DIR: cache, OFFRAMP_API_KEY: apiKey };
  delete env.NODE_TEST_CONTEXT; // a child that sees it reports to the test runner
  const args = [
    MAIN,
    'serve',
    ...['--model', path.join(SHARED, 'stories260K.bin'), '--tokenizer', path.join(SHARED, 'tok512.bin'), '--host', '127.0.0.1', '--port', '0'],
    ...['--max-running', String(options.maxRunning), '--max-queued', String(options.maxQueued)],
    ...['--max-body-bytes', String(options.maxBodyBytes), '--queue-timeout', '30', '--shutdown-grace', '5', '--debug-routes'],
  ];
  // --expose-gc (workers inherit it): POST /debug/gc before each memory reading.
  // With the tunable already set, serve runs in this child itself (no second process): its pid, whose memory is read, is the server's.
  const child: ChildProcess = spawn(process.execPath, ['--expose-gc', ...args], { env: withHugePages(env), stdio: ['ignore', 'ignore', 'pipe'] });
  const log: string[] = [];
  let pending = '';
  child.stderr!.on('data', (bytes: Buffer) => {
    pending += bytes.toString();
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    log.push(...lines);
    if (log.length > 200) log.splice(0, log.length - 200);
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const stop = async (): Promise<number | null> => {
    if (child.exitCode === null) child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), 20_000)));
    const code = await Promise.race([exited, timeout]);
    clearTimeout(timer);
    if (code === 'timeout') child.kill('SIGKILL');
    fs.rmSync(cache, { recursive: true, force: true });
    return code === 'timeout' ? null : code;
  };
  const deadline = Date.now() + 120_000;
  let url = '';
  while (Date.now() < deadline && child.exitCode === null) {
    url ||= log.map((l) => /listening on (http:\/\/\S+)/.exec(l)?.[1]).find((u) => u) ?? '';
    if (
      url &&
      (await fetch(`${url}/health`).then(
        (r) => r.status,
        () => 0,
      )) === 200
    )
      return { url, apiKey, pid: child.pid!, log, stop };
    await sleep(50);
  }
  await stop();
  throw new Error(`the server did not become ready:\n${log.join('\n')}`);
}

/** Collects garbage in the server's threads, lets it settle, and reads its VmRSS. */
export async function settledRss(server: Server): Promise<number | null> {
  for (let i = 0; i < 2; i++) {
    await fetch(`${server.url}/debug/gc`, { method: 'POST', headers: { authorization: `Bearer ${server.apiKey}` } });
    await sleep(300);
  }
  return residentKb(server.pid);
}

/** VmRSS of a process in kB (Linux), or null. */
export function residentKb(pid: number): number | null {
  try {
    const match = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}

/** GET /metrics as a map from series (name with labels) to value. */
export async function scrape(server: Server): Promise<Map<string, number>> {
  const text = await (await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${server.apiKey}` } })).text();
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !line) continue;
    const at = line.lastIndexOf(' ');
    values.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return values;
}

/** Scrapes until nothing runs, waits or is in flight and every slot is free, or `timeoutMs` passes; returns the last scrape. */
export async function waitIdle(server: Server, maxRunning: number, timeoutMs: number): Promise<Map<string, number>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = await scrape(server);
    const idle =
      m.get('offramp:num_requests_running') === 0 &&
      m.get('offramp:num_requests_waiting') === 0 &&
      m.get('offramp:num_requests_in_flight') === 0 &&
      m.get('offramp:num_free_slots') === maxRunning;
    if (idle || Date.now() > deadline) return m;
    await sleep(100);
  }
}
